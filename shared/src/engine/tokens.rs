//! Token upkeep: per connection, under a lease, refresh renewable tokens that expire within the
//! window and warn about personal access tokens a person must renew.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

use super::{BridgeEvent, Engine};
use crate::connectors::{TokenKind, TokenState};

/// What happened to one connection's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TokenOutcome {
    /// Nothing expires soon (or nothing expires at all).
    Fresh {
        expires_at: Option<DateTime<Utc>>,
    },
    Refreshed {
        expires_at: Option<DateTime<Utc>>,
    },
    /// A personal access token expires within the warning period.
    PatExpiring {
        expires_at: DateTime<Utc>,
    },
    /// Another runner holds the connection's refresh lease.
    Busy,
    Failed {
        error: String,
    },
}

/// Per-connection outcomes of one refresh run.
pub type TokenReport = BTreeMap<String, TokenOutcome>;

impl Engine {
    /// Runs token upkeep for every connection.
    pub async fn refresh_tokens(&self, now: DateTime<Utc>) -> TokenReport {
        let mut report = TokenReport::new();
        for name in self.config.connections.keys() {
            let outcome = self.refresh_connection(name, now).await;
            match &outcome {
                TokenOutcome::Refreshed { .. } => self.metrics.incr("TokenRefreshes", 1),
                TokenOutcome::Failed { .. } => self.metrics.incr("TokenRefreshFailures", 1),
                TokenOutcome::PatExpiring { .. } => self.metrics.incr("PatExpiring", 1),
                _ => {}
            }
            report.insert(name.clone(), outcome);
        }
        report
    }

    async fn refresh_connection(&self, name: &str, now: DateTime<Utc>) -> TokenOutcome {
        let Some(connector) = self.connector(name).cloned() else {
            return TokenOutcome::Failed { error: "no connector".into() };
        };
        let owner = ulid::Ulid::new().to_string();
        let lease = match self.store.acquire_lease(&format!("refresh#{name}"), &owner, now, Duration::minutes(2)).await
        {
            Ok(Some(l)) => l,
            Ok(None) => return TokenOutcome::Busy,
            Err(e) => return TokenOutcome::Failed { error: format!("lease: {e}") },
        };
        let outcome = self.refresh_under_lease(name, connector.as_ref(), now).await;
        if let Err(e) = self.store.release_lease(&lease).await {
            tracing::warn!(connection = name, error = %e, "lease release failed (it expires by itself)");
        }
        outcome
    }

    async fn refresh_under_lease(
        &self,
        name: &str,
        connector: &dyn crate::connectors::Connector,
        now: DateTime<Utc>,
    ) -> TokenOutcome {
        let window = Duration::seconds(i64::try_from(self.config.settings.token_refresh_window_secs).unwrap_or(900));
        let state = match connector.token_state().await {
            Ok(s) => s,
            Err(e) => return TokenOutcome::Failed { error: e.to_string() },
        };
        match state {
            TokenState { kind: TokenKind::None, expires_at } => TokenOutcome::Fresh { expires_at },
            TokenState { kind: TokenKind::Personal, expires_at: Some(at) }
                if at - now <= Duration::days(i64::from(self.config.settings.pat_warn_days)) =>
            {
                tracing::warn!(connection = name, expires_at = %at, "personal access token expires soon; a person must renew it");
                let ev = BridgeEvent {
                    detail_type: "TokenExpiring".into(),
                    detail: serde_json::json!({"connection": name, "expires_at": at, "kind": "personal_access_token"}),
                };
                if let Err(e) = self.events.publish(&ev).await {
                    tracing::warn!(connection = name, error = %e, "event publish failed");
                }
                TokenOutcome::PatExpiring { expires_at: at }
            }
            TokenState { kind: TokenKind::Personal, expires_at } => TokenOutcome::Fresh { expires_at },
            TokenState { kind: TokenKind::Renewable, expires_at } => {
                if expires_at.is_some_and(|at| at - now > window) {
                    return TokenOutcome::Fresh { expires_at };
                }
                match connector.refresh_token().await {
                    Ok(s) => {
                        tracing::info!(connection = name, expires_at = ?s.expires_at, "token refreshed");
                        TokenOutcome::Refreshed { expires_at: s.expires_at }
                    }
                    Err(e) => {
                        tracing::error!(connection = name, error = %e, "token refresh failed");
                        let ev = BridgeEvent {
                            detail_type: "TokenRefreshFailed".into(),
                            detail: serde_json::json!({"connection": name, "error": e.to_string()}),
                        };
                        self.events.publish(&ev).await.ok();
                        TokenOutcome::Failed { error: e.to_string() }
                    }
                }
            }
        }
    }
}
