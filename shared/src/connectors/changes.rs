//! Incremental status reads: the tickets a target changed after a point in time, read with the
//! target's own change filter (RT TicketSQL `LastUpdated >`, Znuny/OTRS TicketSearch
//! `TicketChangeTimeNewerDate`). Targets without such a filter keep the batched full read.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::{ConnectorError, RemoteStatus};

/// What one incremental read returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangedTickets {
    /// Statuses of every ticket the target changed after the asked time (any ticket it holds,
    /// not only the bridge's: the caller keeps the ones it polls).
    pub statuses: Vec<RemoteStatus>,
    /// The latest change time the target stamped on a returned ticket (its clock), if any.
    pub latest: Option<DateTime<Utc>>,
    /// Requests sent to the target for this read.
    pub requests: u32,
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, the form both RT's TicketSQL date terms and Znuny's TicketSearch
/// date parameters read; sub-seconds are dropped (both targets store whole seconds).
pub fn sql_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Parses a target timestamp: RFC 3339 (`2026-11-30T14:00:00Z`, RT REST2) or
/// `YYYY-MM-DD HH:MM:SS` read as UTC (Znuny `Changed`).
pub fn parse_target_time(s: &str, what: &str) -> Result<DateTime<Utc>, ConnectorError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc())
        .map_err(|_| ConnectorError::Malformed(format!("{what}: '{s}' is not a timestamp")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_target_forms_parse_as_utc() {
        let a = parse_target_time("2026-11-30T14:00:05Z", "x").unwrap();
        let b = parse_target_time("2026-11-30 14:00:05", "x").unwrap();
        assert_eq!(a, b);
        assert_eq!(sql_time(a + chrono::Duration::milliseconds(900)), "2026-11-30 14:00:05");
        assert!(parse_target_time("yesterday", "LastUpdated").unwrap_err().to_string().contains("LastUpdated"));
    }
}
