//! Kaseya VSA 9 REST wire format: paths, OData query building, the response envelope and the
//! auth (session) result.

use chrono::{DateTime, Duration, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::connectors::psa_util::{category_from_name, marker_token, parse_datetime, truncate};
use crate::connectors::{ConnectorError, RemoteStatus};

/// All paths are under this prefix of the server URL.
pub const API_PREFIX: &str = "/api/v1.0";
pub const AUTH_PATH: &str = "/api/v1.0/auth";
/// Organizations (customers).
pub const ORGS_PATH: &str = "/api/v1.0/system/orgs";
/// Largest `$top` VSA accepts.
pub const MAX_TOP: u32 = 100;

/// `POST .../automation/servicedesktickets/{deskId}/ticket` (the id is the *desk* id).
pub fn create_path(desk_id: &str) -> String {
    format!("{API_PREFIX}/automation/servicedesktickets/{desk_id}/ticket")
}

/// `GET .../automation/servicedesktickets/{ticketId}`.
pub fn ticket_path(ticket_id: &str) -> String {
    format!("{API_PREFIX}/automation/servicedesktickets/{ticket_id}")
}

/// `POST .../automation/servicedesktickets/{ticketId}/notes`.
pub fn notes_path(ticket_id: &str) -> String {
    format!("{API_PREFIX}/automation/servicedesktickets/{ticket_id}/notes")
}

/// `PUT .../automation/servicedesktickets/{ticketId}/status/{statusId}` (no body).
pub fn status_path(ticket_id: &str, status_id: i64) -> String {
    format!("{API_PREFIX}/automation/servicedesktickets/{ticket_id}/status/{status_id}")
}

/// `GET .../automation/servicedesks/{deskId}/tickets`.
pub fn desk_tickets_path(desk_id: &str) -> String {
    format!("{API_PREFIX}/automation/servicedesks/{desk_id}/tickets")
}

/// Desk catalogues that ticket defaults may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Catalogue {
    Priorities,
    Statuses,
    Categories,
}

impl Catalogue {
    pub fn path(self, desk_id: &str) -> String {
        let tail = match self {
            Self::Priorities => "priorities",
            Self::Statuses => "status",
            Self::Categories => "categories",
        };
        format!("{API_PREFIX}/automation/servicedesks/{desk_id}/{tail}")
    }

    /// `(id field, name field)` of a catalogue row.
    pub fn fields(self) -> (&'static str, &'static str) {
        match self {
            Self::Priorities => ("PriorityId", "PriorityName"),
            Self::Statuses => ("StatusId", "StatusName"),
            Self::Categories => ("CategoryId", "CategoryName"),
        }
    }

    pub fn setting(self) -> &'static str {
        match self {
            Self::Priorities => "defaults.priority",
            Self::Statuses => "defaults.status",
            Self::Categories => "defaults.issue.issue_type",
        }
    }
}

/// Finds a catalogue row's id by name (case-insensitive) in a `Result` array.
pub fn catalogue_id(rows: &[serde_json::Value], cat: Catalogue, name: &str) -> Option<String> {
    let (idf, namef) = cat.fields();
    rows.iter()
        .find(|r| r.get(namef).and_then(|v| v.as_str()).is_some_and(|n| n.trim().eq_ignore_ascii_case(name.trim())))
        .and_then(|r| r.get(idf))
        .and_then(id_text)
}

/// A JSON id (number or string) as text.
pub fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// Quotes a string literal for OData (`'` doubled).
pub fn odata_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `$filter` selecting tickets by id (`ServiceDeskTicketId eq 1M or ...`). Ids must be numeric.
///
/// VSA's OData parser (Microsoft.Data.OData, OData v3) reads an unsuffixed integer literal as
/// `Edm.Int32` and answers HTTP 400 "Unrecognized 'Edm.Int32' literal" when it overflows; VSA ids
/// are 15+ digits. The `M` suffix makes the literal `Edm.Decimal`, the type that holds VSA's
/// up-to-26-digit ids (as PsKaseya writes `ServiceDeskId eq <id>M`).
pub fn filter_by_ids(ids: &[String]) -> Result<String, ConnectorError> {
    let mut parts = Vec::with_capacity(ids.len());
    for id in ids {
        check_id(id)?;
        parts.push(format!("ServiceDeskTicketId eq {id}M"));
    }
    Ok(parts.join(" or "))
}

/// A VSA ticket id must be all digits (it goes into paths and filters).
pub fn check_id(id: &str) -> Result<(), ConnectorError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConnectorError::Rejected(format!("VSA ticket id must be numeric, got '{}'", truncate(id, 40))));
    }
    Ok(())
}

/// Longest `Summary` the connector sends (title plus marker).
pub const SUMMARY_MAX: usize = 250;

/// The summary marker of a correlation key: `[tb-<key>]`.
pub fn summary_marker(key: &str) -> String {
    format!("[{}]", marker_token(key))
}

/// `title [tb-<key>]`, the title shortened so the whole stays within [`SUMMARY_MAX`] characters.
///
/// The desk-ticket list model (`KTicket` in PsKaseya, scraped from the VSA REST docs) has
/// `Summary` but no `Description`, so the marker the correlation search looks for lives here.
pub fn summary_with_marker(title: &str, key: &str) -> String {
    let marker = summary_marker(key);
    let room = SUMMARY_MAX.saturating_sub(marker.chars().count() + 1);
    let title: String = title.trim().chars().take(room).collect();
    if title.is_empty() { marker } else { format!("{} {marker}", title.trim_end()) }
}

/// Whether a summary carries exactly the marker of `key` (the closing bracket rules out a longer key).
pub fn summary_has_marker(summary: &str, key: &str) -> bool {
    summary.contains(&summary_marker(key))
}

/// `$filter` finding tickets whose summary contains `text`.
pub fn filter_summary_contains(text: &str) -> String {
    format!("substringof({},Summary)", odata_quote(text))
}

/// Query parameters for one page of a desk ticket listing.
pub fn page_query(filter: &str, top: u32, skip: u32) -> Vec<(String, String)> {
    vec![
        ("$filter".into(), filter.to_string()),
        ("$top".into(), top.min(MAX_TOP).to_string()),
        ("$skip".into(), skip.to_string()),
        ("$orderby".into(), "ServiceDeskTicketId".into()),
    ]
}

/// `{TotalRecords, Result, ResponseCode, Status, Error}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope {
    #[serde(default)]
    total_records: Option<u64>,
    #[serde(default)]
    result: Option<serde_json::Value>,
    #[serde(default)]
    response_code: Option<i64>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// A successful envelope's payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload<T> {
    pub result: T,
    pub total_records: Option<u64>,
}

fn error_text(e: &Option<serde_json::Value>) -> Option<String> {
    match e {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.trim().is_empty() || s.eq_ignore_ascii_case("none") => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// Parses a VSA response body with the rules of Kaseya's own VSAModule
/// (`private/ConvertFrom-VSAResponseBody.ps1`, `Resolve-VSAResponse`):
/// an empty body (HTTP 204 from some writes) is a success without a result; a `ResponseCode` of
/// 4xx/5xx is an error even on HTTP 200; `ResponseCode` 0 or 20x, or `Status` "OK", is a success;
/// any other envelope is an error. A success without `Result` (status-only envelope) yields
/// `null` as the result, which only callers that expect nothing accept.
pub fn parse_envelope<T: DeserializeOwned>(body: &[u8]) -> Result<Payload<T>, ConnectorError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return null_payload(None, "VSA answered with an empty body");
    }
    let env: Envelope = serde_json::from_slice(body)
        .map_err(|e| ConnectorError::Malformed(format!("VSA response is not a JSON envelope: {e}")))?;
    let code = env.response_code;
    let status_ok = env.status.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("ok"));
    let code_ok = code.is_some_and(|c| c == 0 || (200..300).contains(&c));
    let code_err = code.is_some_and(|c| (400..600).contains(&c));
    if code_err || !(code_ok || status_ok) {
        let err = error_text(&env.error);
        let shown = code.map_or_else(|| "none".to_string(), |c| c.to_string());
        let msg = truncate(
            &format!(
                "VSA error (ResponseCode {shown}): {}",
                err.or(env.status).unwrap_or_else(|| "unspecified".into())
            ),
            300,
        );
        return Err(match code.unwrap_or(0) {
            401 => ConnectorError::Unauthorized(msg),
            403 => ConnectorError::Forbidden(msg),
            404 => ConnectorError::NotFound(msg),
            400 | 409 | 422 => ConnectorError::Rejected(msg),
            _ => ConnectorError::Server(msg),
        });
    }
    match env.result {
        None | Some(serde_json::Value::Null) => null_payload(env.total_records, "VSA response has no 'Result'"),
        Some(raw) => {
            let result =
                serde_json::from_value(raw).map_err(|e| ConnectorError::Malformed(format!("VSA Result: {e}")))?;
            Ok(Payload { result, total_records: env.total_records })
        }
    }
}

/// A success without a result: fine for callers that expect nothing (`()`, `Value`, `Option`).
fn null_payload<T: DeserializeOwned>(total_records: Option<u64>, why: &str) -> Result<Payload<T>, ConnectorError> {
    serde_json::from_value(serde_json::Value::Null)
        .map(|result| Payload { result, total_records })
        .map_err(|_| ConnectorError::Malformed(why.to_string()))
}

/// `Result` of `GET /api/v1.0/auth`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthResult {
    pub token: String,
    #[serde(default)]
    pub session_expiration: Option<String>,
    /// Server time-zone offset in minutes (local = UTC + offset).
    #[serde(default)]
    pub off_set_in_minutes: Option<i64>,
}

impl AuthResult {
    /// When the session lapses, in UTC. A zone-less `SessionExpiration` is server-local time and
    /// is shifted by `OffSetInMinutes`; with no expiry at all, `fallback` after `now`.
    pub fn expires_at(&self, now: DateTime<Utc>, fallback: Duration) -> DateTime<Utc> {
        let Some(raw) = self.session_expiration.as_deref() else { return now + fallback };
        let has_zone = raw.trim_end().ends_with('Z') || chrono::DateTime::parse_from_rfc3339(raw.trim()).is_ok();
        match parse_datetime(raw) {
            Some(t) if has_zone => t,
            Some(t) => t - Duration::minutes(self.off_set_in_minutes.unwrap_or(0)),
            None => now + fallback,
        }
    }
}

fn de_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    id_text(&v).ok_or_else(|| serde::de::Error::custom("ticket id is neither a number nor a string"))
}

/// A service desk ticket (fields we read).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Ticket {
    #[serde(deserialize_with = "de_id")]
    pub service_desk_ticket_id: String,
    #[serde(default)]
    pub ticket_ref: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, alias = "TicketStatus")]
    pub status: Option<String>,
}

impl Ticket {
    /// VSA statuses are desk-defined names: the category is only guessed for unambiguous names.
    pub fn remote_status(&self) -> RemoteStatus {
        let name = self.status.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "unknown".into());
        RemoteStatus { ticket_id: self.service_desk_ticket_id.clone(), category: category_from_name(&name), name }
    }
}

/// Body of the ticket-create call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct NewTicket {
    pub summary: String,
    pub description: String,
    /// Numeric ids (VSA answers HTTP 500 to names here).
    pub priority: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitter_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitter_name: Option<String>,
    /// Assignee as VSA names it (passed through like VSAModule's New-VSASDTicket does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// Additional ticket attributes (custom fields) by name.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// The create call answers with the new ticket, or only its id.
pub fn created_ticket(result: &serde_json::Value) -> Result<(String, Option<String>), ConnectorError> {
    if let Some(id) = id_text(result) {
        return Ok((id, None));
    }
    let id = result
        .get("ServiceDeskTicketId")
        .and_then(id_text)
        .ok_or_else(|| ConnectorError::Malformed("VSA create response has no ticket id".into()))?;
    let number = result.get("TicketRef").and_then(|v| v.as_str()).map(str::to_string);
    Ok((id, number))
}

/// Body of the add-note call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Note {
    pub text: String,
    pub hidden: bool,
    pub system_flag: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_envelope_parses_list_with_total() {
        let p: Payload<Vec<Ticket>> = parse_envelope(
            br#"{"TotalRecords":250,"Result":[{"ServiceDeskTicketId":979868787875855,"TicketRef":"STD000001","Status":"Open"}],"ResponseCode":0,"Status":"OK","Error":"None"}"#,
        )
        .unwrap();
        assert_eq!(p.total_records, Some(250));
        assert_eq!(p.result[0].service_desk_ticket_id, "979868787875855");
        let p: Payload<Ticket> = parse_envelope(
            br#"{"Result":{"ServiceDeskTicketId":"12","TicketStatus":"Closed"},"ResponseCode":0,"Status":"OK","Error":"None"}"#,
        )
        .unwrap();
        assert_eq!(p.result.status.as_deref(), Some("Closed"));
    }

    #[test]
    fn error_envelope_on_200_is_error() {
        let e = parse_envelope::<Ticket>(br#"{"Result":null,"ResponseCode":500,"Status":"Error","Error":"Input string was not in a correct format"}"#)
            .unwrap_err();
        assert!(matches!(&e, ConnectorError::Server(m) if m.contains("correct format")), "{e:?}");
        // The vendor rule: ResponseCode 0 / 20x or Status OK is a success, whatever `Error` says.
        let p: Payload<serde_json::Value> =
            parse_envelope(br#"{"Result":{"x":1},"ResponseCode":201,"Status":"Created","Error":"None"}"#).unwrap();
        assert_eq!(p.result["x"], 1);
        let p: Payload<serde_json::Value> =
            parse_envelope(br#"{"Result":true,"ResponseCode":0,"Status":"OK","Error":"Session expired"}"#).unwrap();
        assert_eq!(p.result, serde_json::json!(true));
        let p: Payload<serde_json::Value> = parse_envelope(br#"{"Status":"OK"}"#).unwrap();
        assert_eq!(p.result, serde_json::Value::Null, "status-only envelope");
        // An empty body (HTTP 204) is a success for callers that expect nothing, not for others.
        assert_eq!(parse_envelope::<serde_json::Value>(b"").unwrap().result, serde_json::Value::Null);
        assert!(matches!(parse_envelope::<Ticket>(b"  ").unwrap_err(), ConnectorError::Malformed(_)));
        let e =
            parse_envelope::<serde_json::Value>(br#"{"Result":null,"ResponseCode":404,"Status":"OK","Error":"gone"}"#)
                .unwrap_err();
        assert!(matches!(e, ConnectorError::NotFound(_)), "a 4xx code wins over Status OK: {e:?}");
        let e =
            parse_envelope::<serde_json::Value>(br#"{"Result":1,"ResponseCode":302,"Status":"Moved"}"#).unwrap_err();
        assert!(matches!(e, ConnectorError::Server(_)), "neither 0/20x nor OK: {e:?}");
        let e =
            parse_envelope::<Ticket>(br#"{"Result":null,"ResponseCode":401,"Status":"Error","Error":"Unauthorized"}"#)
                .unwrap_err();
        assert!(matches!(e, ConnectorError::Unauthorized(_)));
        let e = parse_envelope::<Ticket>(b"not json").unwrap_err();
        assert!(matches!(e, ConnectorError::Malformed(_)));
        let e = parse_envelope::<Ticket>(br#"{"ResponseCode":0,"Status":"OK","Error":"None"}"#).unwrap_err();
        assert!(matches!(e, ConnectorError::Malformed(_)));
    }

    #[test]
    fn session_expiration_honours_zone_and_offset() {
        let now = "2025-05-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let a = AuthResult {
            token: "t".into(),
            session_expiration: Some("2025-05-01T12:30:00".into()),
            off_set_in_minutes: Some(120),
        };
        assert_eq!(a.expires_at(now, Duration::minutes(30)).to_rfc3339(), "2025-05-01T10:30:00+00:00");
        let a = AuthResult {
            token: "t".into(),
            session_expiration: Some("2025-05-01T10:45:00Z".into()),
            off_set_in_minutes: Some(120),
        };
        assert_eq!(a.expires_at(now, Duration::minutes(30)).to_rfc3339(), "2025-05-01T10:45:00+00:00");
        let a = AuthResult { token: "t".into(), session_expiration: None, off_set_in_minutes: None };
        assert_eq!(a.expires_at(now, Duration::minutes(30)), now + Duration::minutes(30));
        let p: Payload<AuthResult> = parse_envelope(
            br#"{"Result":{"Token":"abc","SessionExpiration":"2025-05-01T12:30:00","OffSetInMinutes":0,"UserId":1},"ResponseCode":0,"Status":"OK","Error":"None"}"#,
        )
        .unwrap();
        assert_eq!(p.result.token, "abc");
    }

    #[test]
    fn odata_filters_are_built_safely() {
        assert_eq!(
            filter_by_ids(&["1".into(), "979868787875855".into()]).unwrap(),
            "ServiceDeskTicketId eq 1M or ServiceDeskTicketId eq 979868787875855M"
        );
        assert!(filter_by_ids(&["1 or 1 eq 1".into()]).is_err());
        assert_eq!(filter_summary_contains("it's"), "substringof('it''s',Summary)");
        let q = page_query("x", 500, 200);
        assert!(q.contains(&("$top".into(), "100".into())));
        assert!(q.contains(&("$skip".into(), "200".into())));
    }

    #[test]
    fn summary_marker_fits_and_matches_exactly() {
        let s = summary_with_marker("Disk full", "01JK");
        assert_eq!(s, "Disk full [tb-01JK]");
        assert!(summary_has_marker(&s, "01JK"));
        assert!(!summary_has_marker(&s, "01J"), "a prefix of the key is not the key");
        assert!(!summary_has_marker("Disk full [tb-01JKX]", "01JK"));
        let long = summary_with_marker(&"x".repeat(400), "01JK");
        assert_eq!(long.chars().count(), SUMMARY_MAX);
        assert!(summary_has_marker(&long, "01JK"));
        assert_eq!(summary_with_marker("  ", "k"), "[tb-k]");
    }

    #[test]
    fn create_result_may_be_id_or_object() {
        assert_eq!(created_ticket(&serde_json::json!(123)).unwrap(), ("123".into(), None));
        assert_eq!(
            created_ticket(&serde_json::json!({"ServiceDeskTicketId": 9, "TicketRef": "STD9"})).unwrap(),
            ("9".into(), Some("STD9".into()))
        );
        assert!(created_ticket(&serde_json::json!({"x": 1})).is_err());
    }

    #[test]
    fn catalogue_lookup_by_name() {
        let rows = vec![
            serde_json::json!({"PriorityId": 5, "PriorityName": "High"}),
            serde_json::json!({"PriorityId": "6", "PriorityName": "Low"}),
        ];
        assert_eq!(catalogue_id(&rows, Catalogue::Priorities, "high"), Some("5".into()));
        assert_eq!(catalogue_id(&rows, Catalogue::Priorities, "Low"), Some("6".into()));
        assert_eq!(catalogue_id(&rows, Catalogue::Priorities, "Urgent"), None);
        assert_eq!(Catalogue::Statuses.path("7"), "/api/v1.0/automation/servicedesks/7/status");
    }

    #[test]
    fn status_category_is_guessed_from_name() {
        let t = Ticket { service_desk_ticket_id: "1".into(), status: Some("Closed".into()), ..Default::default() };
        assert!(matches!(t.remote_status().category, Some(crate::domain::MappedStatus::Closed(_))));
        let t = Ticket { service_desk_ticket_id: "1".into(), status: Some("Escalated".into()), ..Default::default() };
        assert_eq!(t.remote_status().category, None);
    }
}
