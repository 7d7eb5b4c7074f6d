//! The connection check the Lambda functions log once per cold start.
//!
//! It is a credentials check, not the connector's full `check`: per connection it asks the
//! connector for its [`TokenState`](crate::connectors::TokenState), which reads the connection's
//! secret through the configured backend and makes no vendor call. Why this and not `check`: every
//! cold start of four functions would otherwise cost each vendor a token exchange plus a read
//! (NinjaOne rotates the refresh token on every exchange, and vendors rate-limit), and would add
//! network latency to the first invocation. The secret read is not wasted: the Secrets Manager
//! backend caches it, so the first invocation's connector uses the same copy. What this cannot
//! see (a revoked credential, a wrong tenant) the first real call and `ticket-bridge check` report.

use chrono::{DateTime, Utc};

use super::Engine;
use crate::connectors::TokenKind;

/// The cold-start check of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdStartCheck {
    pub connection: String,
    /// False when the credentials cannot work without a person (secret unreadable, PAT expired).
    pub ok: bool,
    /// What was found, in words; never a secret value.
    pub summary: String,
}

impl Engine {
    /// Checks every connection's stored credentials at `now` and logs one line per connection
    /// (INFO when usable, WARN when not). No vendor call; see the module documentation.
    pub async fn cold_start_check(&self, now: DateTime<Utc>) -> Vec<ColdStartCheck> {
        let mut out = Vec::with_capacity(self.connectors.len());
        for (name, connector) in &self.connectors {
            let (ok, summary) = match connector.token_state().await {
                Err(e) => (false, format!("credentials unusable: {e}")),
                Ok(state) => match (state.kind, state.expires_at) {
                    (TokenKind::None, _) => (true, "credentials stored; no expiring token".to_string()),
                    (TokenKind::Renewable, None) => {
                        (true, "credentials stored; access token fetched on first use".to_string())
                    }
                    (TokenKind::Renewable, Some(at)) if at <= now => {
                        (true, format!("access token expired at {at}; renewed on first use"))
                    }
                    (TokenKind::Renewable, Some(at)) => (true, format!("access token valid until {at}")),
                    (TokenKind::Personal, Some(at)) if at <= now => {
                        (false, format!("personal access token expired at {at}; a person must renew it"))
                    }
                    (TokenKind::Personal, Some(at)) => (true, format!("personal access token valid until {at}")),
                    (TokenKind::Personal, None) => (true, "personal access token stored; no expiry known".to_string()),
                },
            };
            if ok {
                tracing::info!(connection = %name, result = %summary, "connection check at cold start");
            } else {
                tracing::warn!(connection = %name, result = %summary, "connection check at cold start");
            }
            out.push(ColdStartCheck { connection: name.clone(), ok, summary });
        }
        out
    }
}
