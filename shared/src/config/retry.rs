//! `[connections.<name>.retry]`: which failures of ticket creation (and of closing a cancelled
//! task's ticket) are retried, and how many attempts a task gets. The default is the behaviour
//! before the setting existed: every class retried, 4xx refusals not, `settings.max_attempts`.

use serde::{Deserialize, Serialize};

/// A kind of failure a retry policy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RetryClass {
    /// The request or the connection timed out (also HTTP 408).
    #[serde(rename = "timeout")]
    Timeout,
    /// DNS, refused or reset connections, TLS failures.
    #[serde(rename = "network")]
    Network,
    /// HTTP 5xx, or an error body on a 2xx.
    #[serde(rename = "5xx")]
    ServerError,
    /// HTTP 429 (or the connection's own rate limit); `Retry-After` is honoured.
    #[serde(rename = "429")]
    RateLimited,
    /// Credentials refused or expired, or not allowed (HTTP 401 / 403).
    #[serde(rename = "auth")]
    Auth,
    /// HTTP 404 / 410.
    #[serde(rename = "not_found")]
    NotFound,
    /// A response that could not be understood.
    #[serde(rename = "malformed")]
    Malformed,
    /// The connection's secret could not be read.
    #[serde(rename = "secrets")]
    Secrets,
    /// An operation the target does not support.
    #[serde(rename = "unsupported")]
    Unsupported,
}

impl RetryClass {
    pub const ALL: [RetryClass; 9] = [
        Self::Timeout,
        Self::Network,
        Self::ServerError,
        Self::RateLimited,
        Self::Auth,
        Self::NotFound,
        Self::Malformed,
        Self::Secrets,
        Self::Unsupported,
    ];
}

/// The retry policy of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts per task before it is dead-lettered (a cancelled task's close: before it is
    /// recorded as failed); unset: `settings.max_attempts`.
    pub max_attempts: Option<u32>,
    /// Failure classes that are retried (default: all).
    pub retry_on: Vec<RetryClass>,
    /// Other HTTP 4xx statuses that are retried (a 4xx is otherwise final), e.g. `[409, 423]`.
    pub retry_statuses: Vec<u16>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: None, retry_on: RetryClass::ALL.to_vec(), retry_statuses: Vec::new() }
    }
}

impl RetryPolicy {
    /// Attempts allowed, falling back to `settings.max_attempts`.
    pub fn attempts(&self, settings_max: u32) -> u32 {
        self.max_attempts.unwrap_or(settings_max)
    }

    /// The first problem with the policy: (field under `retry`, message).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.max_attempts == Some(0) {
            return Some(("max_attempts", "must be at least 1".into()));
        }
        if let Some(s) = self
            .retry_statuses
            .iter()
            .find(|s| !(400..=499).contains(*s) || matches!(s, 401 | 403 | 404 | 408 | 410 | 429))
        {
            return Some((
                "retry_statuses",
                format!(
                    "{s} is not a 4xx status this list can take (400-499 except 401/403 = auth, 404/410 = not_found, \
                     408 = timeout, 429 = 429; use retry_on for those)"
                ),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, RetryClass};

    const BASE: &str = r#"
[connections.desk]
kind = "sandbox"
base_url = "http://127.0.0.1:9"
secret = "tb/desk"
"#;

    fn load(extra: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_toml_with_env(&format!("{BASE}{extra}"), Vec::<(String, String)>::new())
    }

    #[test]
    fn retry_policy_reads_and_defaults_to_todays_behaviour() {
        let c = load("").unwrap();
        let p = &c.connections["desk"].retry;
        assert_eq!((p.max_attempts, p.retry_on.len(), p.retry_statuses.len()), (None, RetryClass::ALL.len(), 0));
        let c = load("[connections.desk.retry]\nmax_attempts = 4\nretry_on = [\"timeout\", \"5xx\", \"429\"]\nretry_statuses = [409]\n")
            .unwrap();
        let p = &c.connections["desk"].retry;
        assert_eq!(p.max_attempts, Some(4));
        assert_eq!(p.retry_on, vec![RetryClass::Timeout, RetryClass::ServerError, RetryClass::RateLimited]);
        assert_eq!(p.retry_statuses, vec![409]);
    }

    #[test]
    fn bad_retry_settings_name_the_key() {
        let err = load("[connections.desk.retry]\nmax_attempts = 0\n").unwrap_err();
        assert_eq!(err.key, "connections.desk.retry.max_attempts");
        let err = load("[connections.desk.retry]\nretry_statuses = [503]\n").unwrap_err();
        assert_eq!(err.key, "connections.desk.retry.retry_statuses");
        let err = load("[connections.desk.retry]\nretry_statuses = [401]\n").unwrap_err();
        assert_eq!(err.key, "connections.desk.retry.retry_statuses");
        let err = load("[connections.desk.retry]\nretry_on = [\"sometimes\"]\n").unwrap_err();
        assert!(err.key.contains("connections.desk.retry"), "{err}");
        assert!(err.to_string().contains("sometimes"), "{err}");
        let err = load("[connections.desk.retry]\nretries = 3\n").unwrap_err();
        assert!(err.key.contains("connections.desk.retry"), "{err}");
    }
}
