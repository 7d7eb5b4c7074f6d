//! Small pure helpers shared by the PSA connectors (BMS, VSA, NinjaOne, OTRS): the correlation
//! marker written into tickets, lenient date parsing, status-name heuristics and a multipart
//! body builder whose output can be re-sent on retry.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::de::DeserializeOwned;

use crate::config::ConnectionConfig;
use crate::connectors::{CheckReport, ConnectorError};
use crate::domain::{MappedStatus, Outcome};

/// Parses `connections.<name>.options` into a connector's option struct. The `http` table
/// belongs to the HTTP layer and is skipped; unknown keys are errors naming the key.
pub fn options<T: DeserializeOwned>(name: &str, cfg: &ConnectionConfig) -> Result<T, ConnectorError> {
    let mut table = cfg.options.clone();
    table.remove("http");
    T::deserialize(toml::Value::Table(table))
        .map_err(|e| ConnectorError::Config(format!("connections.{name}.options: {}", e.message())))
}

/// `base_url` without a trailing slash.
pub fn base_url(cfg: &ConnectionConfig) -> String {
    cfg.base_url.trim_end_matches('/').to_string()
}

/// Fills `{id}` and `{number}` in a ticket link template.
pub fn ticket_url(template: Option<&str>, id: &str, number: Option<&str>) -> Option<String> {
    template.map(|t| t.replace("{id}", id).replace("{number}", number.unwrap_or(id)))
}

/// Collects the steps of a connection check.
#[derive(Debug, Default)]
pub struct Check {
    steps: Vec<String>,
}

impl Check {
    pub fn pass(&mut self, step: impl Into<String>) {
        self.steps.push(format!("ok: {}", step.into()));
    }

    /// Ends the check as failed with a diagnosis.
    pub fn fail(mut self, step: impl Into<String>) -> CheckReport {
        self.steps.push(format!("FAILED: {}", step.into()));
        CheckReport { ok: false, steps: self.steps }
    }

    pub fn done(self) -> CheckReport {
        CheckReport { ok: true, steps: self.steps }
    }
}

/// A transport-level diagnosis, or `None` for errors that need a connector-specific one.
pub fn transport_diagnosis(e: &ConnectorError) -> Option<String> {
    Some(match e {
        ConnectorError::Unreachable(m) => format!("server unreachable (check base_url, DNS, firewall): {m}"),
        ConnectorError::Tls(m) => format!("TLS handshake failed (certificate or protocol): {m}"),
        ConnectorError::Timeout(m) => format!("server did not answer in time: {m}"),
        ConnectorError::Secrets(m) => format!("cannot read the connection's secret: {m}"),
        ConnectorError::Config(m) => format!("configuration: {m}"),
        ConnectorError::RateLimited { retry_after_secs } => {
            format!("rate limited by the server (retry after {retry_after_secs:?} s)")
        }
        _ => return None,
    })
}

/// Upper bound on pages read in one listing (guards against a server that ignores paging).
pub const MAX_PAGES: u32 = 10_000;

/// Text that precedes the correlation key in ticket bodies (searchable in every target).
pub const MARKER_PREFIX: &str = "Ticket Bridge reference: tb-";

/// The searchable token for a correlation key (`tb-<key>`).
pub fn marker_token(key: &str) -> String {
    format!("tb-{key}")
}

/// The marker line for a correlation key.
pub fn marker_line(key: &str) -> String {
    format!("{MARKER_PREFIX}{key}")
}

/// `body` with the marker line appended (once).
pub fn body_with_marker(body: &str, key: &str) -> String {
    let line = marker_line(key);
    if body.contains(&line) {
        return body.to_string();
    }
    let body = body.trim_end();
    if body.is_empty() { line } else { format!("{body}\n\n{line}") }
}

/// Whether `text` carries the marker of `key` (exactly, not as a prefix of a longer key).
pub fn has_marker(text: &str, key: &str) -> bool {
    let line = marker_line(key);
    text.match_indices(&line).any(|(i, _)| {
        let rest = &text[i + line.len()..];
        !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// Parses the date formats PSA APIs emit: RFC 3339, naive ISO (taken as UTC), `YYYY-MM-DD HH:MM:SS`,
/// or a bare date (midnight UTC).
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(n.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|n| n.and_utc())
}

/// RFC 3339 with second precision and `Z` (what we send).
pub fn format_datetime(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Category guessed from a status *name* for targets without a stable category (VSA desks).
/// Only unambiguous, common names are recognised; anything else is left to the status map.
pub fn category_from_name(name: &str) -> Option<MappedStatus> {
    let n = name.trim().to_ascii_lowercase();
    match n.as_str() {
        "closed" | "resolved" | "completed" | "complete" | "done" | "fulfilled" => {
            Some(MappedStatus::Closed(Outcome::Fulfilled))
        }
        "cancelled" | "canceled" | "rejected" | "declined" => Some(MappedStatus::Closed(Outcome::Rejected)),
        "hold" | "on hold" | "pending" | "waiting" | "paused" => Some(MappedStatus::Pending),
        _ if n.starts_with("waiting") || n.starts_with("pending") => Some(MappedStatus::Pending),
        "new" | "open" | "in progress" => Some(MappedStatus::Open),
        _ => None,
    }
}

/// Cuts text taken from a response body so errors stay short.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// One part of a multipart/form-data body.
pub struct Part<'a> {
    pub name: &'a str,
    pub value: &'a str,
    /// Content type of the part (`None` = plain form field).
    pub content_type: Option<&'a str>,
}

/// Builds a multipart/form-data body; returns `(content_type_header, body)`. The boundary is
/// random and checked not to occur in any value.
pub fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let mut boundary;
    loop {
        boundary = format!("----tb{:032x}", rand::random::<u128>());
        if !parts.iter().any(|p| p.value.contains(&boundary) || p.name.contains(&boundary)) {
            break;
        }
    }
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let name = p.name.replace('"', "%22");
        body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n").as_bytes());
        if let Some(ct) = p.content_type {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(p.value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Parses an integer id given as text (ids in config and task fields are strings).
pub fn parse_id(what: &str, s: &str) -> Result<i64, String> {
    s.trim().parse::<i64>().map_err(|_| format!("{what} must be a numeric id, got '{}'", truncate(s.trim(), 40)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_appended_once_and_found_exactly() {
        let b = body_with_marker("Hello\n", "01ABC");
        assert_eq!(b, "Hello\n\nTicket Bridge reference: tb-01ABC");
        assert_eq!(body_with_marker(&b, "01ABC"), b);
        assert!(has_marker(&b, "01ABC"));
        assert!(!has_marker(&b, "01AB"), "a prefix of the key must not match");
        assert!(!has_marker("Ticket Bridge reference: tb-01ABCD", "01ABC"));
        assert!(has_marker("x Ticket Bridge reference: tb-01ABC.", "01ABC"));
        assert_eq!(body_with_marker("", "k"), "Ticket Bridge reference: tb-k");
    }

    #[test]
    fn dates_parse_in_all_emitted_forms() {
        let want = "2025-03-04T05:06:07Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(parse_datetime("2025-03-04T05:06:07Z"), Some(want));
        assert_eq!(parse_datetime("2025-03-04T07:06:07+02:00"), Some(want));
        assert_eq!(parse_datetime("2025-03-04T05:06:07"), Some(want));
        assert_eq!(parse_datetime("2025-03-04T05:06:07.000"), Some(want));
        assert_eq!(parse_datetime("2025-03-04 05:06:07"), Some(want));
        assert_eq!(parse_datetime("2025-03-04").unwrap().to_rfc3339(), "2025-03-04T00:00:00+00:00");
        assert_eq!(parse_datetime("soon"), None);
        assert_eq!(parse_datetime(""), None);
        assert_eq!(format_datetime(want), "2025-03-04T05:06:07Z");
    }

    #[test]
    fn name_heuristics_only_cover_clear_names() {
        assert_eq!(category_from_name(" Closed "), Some(MappedStatus::Closed(Outcome::Fulfilled)));
        assert_eq!(category_from_name("Cancelled"), Some(MappedStatus::Closed(Outcome::Rejected)));
        assert_eq!(category_from_name("Waiting on customer"), Some(MappedStatus::Pending));
        assert_eq!(category_from_name("Escalated"), None);
        assert_eq!(category_from_name("Open"), Some(MappedStatus::Open));
    }

    #[test]
    fn multipart_body_has_all_parts_and_a_safe_boundary() {
        let (ct, body) = multipart(&[
            Part { name: "GrantType", value: "password", content_type: None },
            Part { name: "comment", value: "{\"body\":\"a\"}", content_type: Some("application/json") },
        ]);
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        assert!(text.contains("name=\"GrantType\"\r\n\r\npassword\r\n"));
        assert!(text.contains("name=\"comment\"\r\nContent-Type: application/json\r\n\r\n{\"body\":\"a\"}\r\n"));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééé", 3), "é…");
    }

    #[test]
    fn ids_must_be_numeric() {
        assert_eq!(parse_id("AccountId", " 42 "), Ok(42));
        assert!(parse_id("AccountId", "Acme").unwrap_err().contains("AccountId"));
    }
}
