//! Why a call to a target failed, and what kind of credential a connection holds: the types the
//! HTTP layer produces and the connectors re-export ([`crate::connectors`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a call to a target failed. Messages never contain secrets.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ConnectorError {
    /// Could not connect (DNS, refused, unreachable).
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("TLS error: {0}")]
    Tls(String),
    #[error("timed out: {0}")]
    Timeout(String),
    /// Credentials rejected (after one forced re-authentication).
    #[error("bad credentials: {0}")]
    Unauthorized(String),
    #[error("token expired: {0}")]
    TokenExpired(String),
    /// Authenticated, but not allowed (missing scope / role, IP not allowed).
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// 429 or a local rate limit; retry after the given seconds.
    #[error("rate limited (retry after {retry_after_secs:?}s)")]
    RateLimited { retry_after_secs: Option<u64> },
    /// The target rejected the request as invalid (our config or data); retrying will not help.
    #[error("rejected by target: {0}")]
    Rejected(String),
    /// 5xx or an error body on a 200 that may pass.
    #[error("target error: {0}")]
    Server(String),
    /// The response could not be understood.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// Connection settings are wrong (names the setting).
    #[error("configuration: {0}")]
    Config(String),
    #[error("secrets: {0}")]
    Secrets(String),
    /// The operation does not exist for this kind of target (e.g. creating customers in RT).
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl ConnectorError {
    /// Whether a later retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_)
                | Self::Timeout(_)
                | Self::RateLimited { .. }
                | Self::Server(_)
                | Self::Malformed(_)
                | Self::TokenExpired(_)
                | Self::Secrets(_)
        )
    }
}

/// What the token refresher should do with a connection's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenKind {
    /// No expiring credential (RT token, basic auth).
    None,
    /// Session / OAuth token the bridge renews itself.
    Renewable,
    /// A token only a person can renew (VSA personal access token).
    Personal,
}

/// Expiry facts about a connection's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenState {
    pub kind: TokenKind,
    /// When the current access/session token lapses, if known.
    pub expires_at: Option<DateTime<Utc>>,
}
