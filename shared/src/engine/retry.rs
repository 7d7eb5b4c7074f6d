//! Applies a connection's [`RetryPolicy`] to a failed call: whether it is retried.

use crate::config::{RetryClass, RetryPolicy};
use crate::connectors::ConnectorError;

/// The policy class of an error; `None` for refusals (4xx other than the classed ones) and
/// configuration errors, which only `retry_statuses` can make retryable.
pub fn class_of(e: &ConnectorError) -> Option<RetryClass> {
    use ConnectorError as E;
    Some(match e {
        E::Timeout(_) => RetryClass::Timeout,
        E::Unreachable(_) | E::Tls(_) => RetryClass::Network,
        E::Server(_) => RetryClass::ServerError,
        E::RateLimited { .. } => RetryClass::RateLimited,
        E::Unauthorized(_) | E::TokenExpired(_) | E::Forbidden(_) => RetryClass::Auth,
        E::NotFound(_) => RetryClass::NotFound,
        E::Malformed(_) => RetryClass::Malformed,
        E::Secrets(_) => RetryClass::Secrets,
        E::Unsupported(_) => RetryClass::Unsupported,
        E::Rejected(_) | E::Config(_) => return None,
    })
}

/// The HTTP status named in a refusal's message (`…: HTTP 409: …`, as the HTTP layer writes it).
fn refused_status(e: &ConnectorError) -> Option<u16> {
    let ConnectorError::Rejected(m) = e else { return None };
    let rest = &m[m.find("HTTP ")? + 5..];
    rest.get(..3).and_then(|d| d.parse().ok())
}

/// Whether `policy` retries `e`.
pub fn retries(policy: &RetryPolicy, e: &ConnectorError) -> bool {
    match class_of(e) {
        Some(c) => policy.retry_on.contains(&c),
        None => refused_status(e).is_some_and(|s| policy.retry_statuses.contains(&s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_retries_what_the_bridge_always_retried() {
        let p = RetryPolicy::default();
        for e in [
            ConnectorError::Timeout("t".into()),
            ConnectorError::Server("s".into()),
            ConnectorError::RateLimited { retry_after_secs: None },
            ConnectorError::Unauthorized("u".into()),
            ConnectorError::NotFound("n".into()),
            ConnectorError::Unreachable("x".into()),
        ] {
            assert!(retries(&p, &e), "{e}");
        }
        assert!(!retries(&p, &ConnectorError::Rejected("POST /t: HTTP 409: busy".into())));
        assert!(!retries(&p, &ConnectorError::Config("c".into())));
    }

    #[test]
    fn classes_and_4xx_codes_are_chosen_per_connection() {
        let p =
            RetryPolicy { max_attempts: Some(2), retry_on: vec![RetryClass::ServerError], retry_statuses: vec![409] };
        assert!(retries(&p, &ConnectorError::Server("s".into())));
        assert!(!retries(&p, &ConnectorError::Timeout("t".into())));
        assert!(!retries(&p, &ConnectorError::Unauthorized("u".into())));
        assert!(retries(&p, &ConnectorError::Rejected("POST /t: HTTP 409: busy".into())));
        assert!(!retries(&p, &ConnectorError::Rejected("POST /t: HTTP 422: bad".into())));
        assert!(!retries(&p, &ConnectorError::Rejected("no status here".into())));
        assert_eq!(p.attempts(8), 2);
        assert_eq!(RetryPolicy::default().attempts(8), 8);
    }
}
