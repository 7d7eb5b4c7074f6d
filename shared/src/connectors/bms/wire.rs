//! Kaseya BMS v2 wire format: paths, request/response types and pure parsing helpers.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::connectors::psa_util::{category_from_name, parse_datetime, truncate};
use crate::connectors::{ConnectorError, Customer, RemoteStatus};
use crate::domain::{MappedStatus, Outcome};

pub const AUTH_PATH: &str = "/v2/security/authenticate";
pub const REFRESH_PATH: &str = "/v2/security/refreshtoken";
pub const TICKETS_PATH: &str = "/v2/servicedesk/tickets";
pub const SEARCH_PATH: &str = "/v2/servicedesk/tickets/search";
pub const CONTACTS_SEARCH_PATH: &str = "/v2/crm/contacts/search";
pub const ACCOUNTS_LOOKUP_PATH: &str = "/v2/crm/accounts/lookup";

/// `/v2/servicedesk/tickets/{id}`.
pub fn ticket_path(id: i64) -> String {
    format!("{TICKETS_PATH}/{id}")
}

/// `/v2/servicedesk/tickets/{id}/notes`.
pub fn notes_path(id: i64) -> String {
    format!("{TICKETS_PATH}/{id}/notes")
}

/// `POST /v2/servicedesk/tickets/{ticketId}/resolve`.
pub fn resolve_path(id: i64) -> String {
    format!("{TICKETS_PATH}/{id}/resolve")
}

/// `ResolveTicketDto` (required `Comment`; no other members allowed).
#[derive(Debug, Clone, Serialize)]
pub struct ResolveInput {
    #[serde(rename = "Comment")]
    pub comment: String,
    #[serde(rename = "StatusId", skip_serializing_if = "Option::is_none")]
    pub status_id: Option<i64>,
    #[serde(rename = "IsInternal")]
    pub is_internal: bool,
}

/// `/v2/crm/accounts/{id}/locations/lookup`.
pub fn locations_path(account_id: i64) -> String {
    format!("/v2/crm/accounts/{account_id}/locations/lookup")
}

/// Tenant lookup tables that ticket defaults may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lookup {
    Statuses,
    Priorities,
    Queues,
    IssueTypes,
    SubIssueTypes(i64),
}

impl Lookup {
    pub fn path(self) -> String {
        match self {
            Self::Statuses => "/v2/system/statuses/lookup".into(),
            Self::Priorities => "/v2/system/priorities/lookup".into(),
            Self::Queues => "/v2/system/queues/lookup".into(),
            Self::IssueTypes => "/v2/system/issuetypes/lookup".into(),
            Self::SubIssueTypes(id) => format!("/v2/system/issuetypes/{id}/issuesubtypes/lookup"),
        }
    }

    /// The ticket-defaults setting this table resolves (for error messages).
    pub fn setting(self) -> &'static str {
        match self {
            Self::Statuses => "defaults.status",
            Self::Priorities => "defaults.priority",
            Self::Queues => "defaults.queue",
            Self::IssueTypes => "defaults.issue.issue_type",
            Self::SubIssueTypes(_) => "defaults.issue.sub_issue_type",
        }
    }
}

/// `{Code, Message, Details, SubErrors}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiError {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub sub_errors: Option<Vec<String>>,
}

impl ApiError {
    /// The connector error this envelope error stands for.
    pub fn to_error(&self) -> ConnectorError {
        let mut msg = self.message.clone().unwrap_or_else(|| "unspecified error".into());
        if let Some(subs) = self.sub_errors.as_ref().filter(|s| !s.is_empty()) {
            msg = format!("{msg} ({})", subs.join("; "));
        }
        let msg = truncate(&format!("BMS error {}: {msg}", self.code.unwrap_or(0)), 300);
        match self.code {
            Some(401) => ConnectorError::Unauthorized(msg),
            Some(403) => ConnectorError::Forbidden(msg),
            Some(404) => ConnectorError::NotFound(msg),
            Some(429) => ConnectorError::RateLimited { retry_after_secs: None },
            Some(400 | 409 | 422) => ConnectorError::Rejected(msg),
            _ => ConnectorError::Server(msg),
        }
    }
}

/// Every BMS v2 response: `{Success, Error, Result, TotalRecords?}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope<T> {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default = "Option::default")]
    result: Option<T>,
    #[serde(default)]
    total_records: Option<u64>,
}

/// A successful envelope's payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload<T> {
    pub result: T,
    pub total_records: Option<u64>,
}

/// Parses an envelope, turning `Success:false` / a non-null `Error` (even on HTTP 200) into the
/// matching [`ConnectorError`]. A missing `Result` is malformed.
pub fn parse_envelope<T: DeserializeOwned>(body: &[u8]) -> Result<Payload<T>, ConnectorError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ConnectorError::Malformed(format!("BMS response is not JSON: {e}")))?;
    let env: Envelope<serde_json::Value> =
        serde_json::from_value(value).map_err(|e| ConnectorError::Malformed(format!("BMS envelope: {e}")))?;
    if env.success == Some(false) || (env.success != Some(true) && env.error.is_some()) {
        return Err(env.error.unwrap_or_default().to_error());
    }
    if env.success.is_none() {
        return Err(ConnectorError::Malformed("BMS response has no 'Success' field".into()));
    }
    let raw = env.result.ok_or_else(|| ConnectorError::Malformed("BMS response has no 'Result'".into()))?;
    let result = serde_json::from_value(raw).map_err(|e| ConnectorError::Malformed(format!("BMS Result: {e}")))?;
    Ok(Payload { result, total_records: env.total_records })
}

/// Checks an envelope whose `Result` we do not need (e.g. a created note).
pub fn check_envelope(body: &[u8]) -> Result<(), ConnectorError> {
    parse_envelope::<serde_json::Value>(body).map(|_| ())
}

/// `TokenOutputDto`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TokenOutput {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    pub access_token_expire_on: String,
    #[serde(default)]
    pub refresh_token_expire_on: Option<String>,
}

/// `TicketInputDto` (only the fields we set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TicketInput {
    pub title: String,
    pub details: String,
    pub account_id: i64,
    pub location_id: i64,
    pub status_id: i64,
    pub priority_id: i64,
    pub type_id: i64,
    pub source_id: i64,
    pub open_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_type_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_issue_type_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_default_contract: Option<bool>,
    /// Primary assignee (employee id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee_id: Option<i64>,
    /// Ticket custom field values (`CustomFieldDataInputDto`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_fields_data: Vec<CustomFieldData>,
    /// The asset the alert names (continuous sync's asset records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_asset_id: Option<i64>,
}

/// One custom field value of a new ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomFieldData {
    pub custom_field_id: i64,
    pub data: String,
}

/// The ticket fields we read (`TicketOutputDto` / `TicketListDto`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Ticket {
    pub id: i64,
    #[serde(default)]
    pub ticket_number: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub status_id: Option<i64>,
    #[serde(default)]
    pub status_name: Option<String>,
    #[serde(default)]
    pub completed_date: Option<String>,
    /// `LastActivityUpdate` (date-time; no zone given, read as UTC — assumed).
    #[serde(default)]
    pub last_activity_update: Option<String>,
}

impl Ticket {
    /// Status name plus category: a set `CompletedDate` means closed (rejected when the status
    /// name says cancelled / rejected, else fulfilled); otherwise the status map decides by name.
    pub fn remote_status(&self) -> RemoteStatus {
        let name = self
            .status_name
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| self.status_id.map(|i| format!("status {i}")))
            .unwrap_or_else(|| "unknown".into());
        let completed = self.completed_date.as_deref().and_then(parse_datetime).is_some();
        let category = completed.then(|| match category_from_name(&name) {
            Some(MappedStatus::Closed(outcome)) => MappedStatus::Closed(outcome),
            _ => MappedStatus::Closed(Outcome::Fulfilled),
        });
        RemoteStatus { ticket_id: self.id.to_string(), name, category }
    }
}

/// `TicketFilterDto` (fields we use).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TicketFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_completed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_update_from: Option<String>,
}

/// `GetTicketsInputDto`: body of `POST /v2/servicedesk/tickets/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct SearchInput {
    pub page_number: u32,
    pub page_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    #[serde(default)]
    pub filter: TicketFilter,
}

/// `TicketNotePostInputDto`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NoteInput {
    pub details: String,
    pub is_internal: bool,
    pub note_date: String,
    pub type_id: i64,
}

/// A lookup row (`{Id, Name, IsActive?}`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupItem {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// Finds a lookup row by name (case-insensitive, trimmed), preferring active rows.
pub fn find_by_name(items: &[LookupItem], name: &str) -> Option<i64> {
    let wanted = name.trim();
    let all: Vec<&LookupItem> = items.iter().filter(|i| i.name.trim().eq_ignore_ascii_case(wanted)).collect();
    all.iter().find(|i| i.is_active != Some(false)).or(all.first()).map(|i| i.id)
}

/// An account location (`AccountLocationLookupOutputDto`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Location {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub is_main: Option<bool>,
}

/// The main location, else the first.
pub fn main_location(locations: &[Location]) -> Option<i64> {
    locations.iter().find(|l| l.is_main == Some(true)).or(locations.first()).map(|l| l.id)
}

/// `ContactsSearchSelectOutputDto` (fields we use).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Contact {
    pub id: i64,
    #[serde(default)]
    pub account_id: Option<i64>,
    #[serde(default)]
    pub email_address: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// Picks the contact for `email` (exact, case-insensitive), within `account` when given,
/// preferring active contacts.
pub fn pick_contact(contacts: &[Contact], account: Option<i64>, email: &str) -> Option<i64> {
    let matches: Vec<&Contact> = contacts
        .iter()
        .filter(|c| c.email_address.as_deref().is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim())))
        .filter(|c| account.is_none() || c.account_id == account)
        .collect();
    matches.iter().find(|c| c.is_active != Some(false)).or(matches.first()).map(|c| c.id)
}

/// `AccountLookupOutputDto`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Account {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub is_active: Option<bool>,
}

impl From<Account> for Customer {
    fn from(a: Account) -> Self {
        Customer { id: a.id.to_string(), name: a.name }
    }
}

/// Ticket source ids (fixed enum in BMS).
pub const SOURCES: [(&str, i64); 10] = [
    ("client portal", 0),
    ("phone", 1),
    ("in person", 2),
    ("on site", 3),
    ("email", 4),
    ("monitoring system", 5),
    ("voicemail", 6),
    ("verbal", 7),
    ("other", 8),
    ("recurring", 9),
];

/// Source id for a name or a numeric id.
pub fn source_id(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i64>() {
        return Some(n);
    }
    let t = t.to_ascii_lowercase().replace(['-', '_'], " ");
    let t = if t == "monitoring" { "monitoring system".to_string() } else { t };
    SOURCES.iter().find(|(n, _)| *n == t).map(|(_, id)| *id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_envelope_yields_result_and_total() {
        let p: Payload<Vec<Ticket>> = parse_envelope(
            br#"{"Success":true,"Error":null,"Result":[{"Id":7,"TicketNumber":"T20250001","StatusName":"New"}],"TotalRecords":31}"#,
        )
        .unwrap();
        assert_eq!(p.total_records, Some(31));
        assert_eq!(p.result[0].id, 7);
        assert_eq!(p.result[0].ticket_number.as_deref(), Some("T20250001"));
    }

    #[test]
    fn error_envelope_on_200_is_an_error_by_code() {
        let e = parse_envelope::<Ticket>(
            br#"{"Success":false,"Error":{"Code":400,"Message":"AccountId is required","SubErrors":["AccountId"]},"Result":null}"#,
        )
        .unwrap_err();
        assert!(matches!(&e, ConnectorError::Rejected(m) if m.contains("AccountId is required")), "{e:?}");
        let e = parse_envelope::<Ticket>(br#"{"Success":false,"Error":{"Code":401,"Message":"Token expired"}}"#)
            .unwrap_err();
        assert!(matches!(e, ConnectorError::Unauthorized(_)));
        let e = parse_envelope::<Ticket>(br#"{"Success":false,"Error":{"Code":500,"Message":"boom"}}"#).unwrap_err();
        assert!(matches!(e, ConnectorError::Server(_)));
        let e = parse_envelope::<Ticket>(br#"{"Success":false}"#).unwrap_err();
        assert!(matches!(e, ConnectorError::Server(_)));
        // An Error object without Success is still an error.
        let e = parse_envelope::<Ticket>(br#"{"Error":{"Code":404,"Message":"no such ticket"}}"#).unwrap_err();
        assert!(matches!(e, ConnectorError::NotFound(_)));
    }

    #[test]
    fn malformed_envelopes_are_malformed() {
        for body in [
            &b"<html>oops"[..],
            br#"{"Success":true}"#,
            br#"{"Result":{}}"#,
            br#"{"Success":true,"Result":{"Id":"x"}}"#,
        ] {
            let e = parse_envelope::<Ticket>(body).unwrap_err();
            assert!(matches!(e, ConnectorError::Malformed(_)), "{body:?} -> {e:?}");
        }
    }

    #[test]
    fn token_output_parses() {
        let p: Payload<TokenOutput> = parse_envelope(
            br#"{"Success":true,"Error":null,"Result":{"AccessToken":"a","RefreshToken":"r","AccessTokenExpireOn":"2025-01-01T10:00:00Z","RefreshTokenExpireOn":"2025-01-08T10:00:00Z"}}"#,
        )
        .unwrap();
        assert_eq!(p.result.refresh_token.as_deref(), Some("r"));
        assert!(parse_datetime(&p.result.access_token_expire_on).is_some());
    }

    #[test]
    fn completed_date_means_closed() {
        let mut t = Ticket { id: 3, status_name: Some("In Progress".into()), ..Default::default() };
        assert_eq!(t.remote_status().category, None);
        assert_eq!(t.remote_status().name, "In Progress");
        t.completed_date = Some("2025-01-02T03:04:05".into());
        assert_eq!(t.remote_status().category, Some(MappedStatus::Closed(Outcome::Fulfilled)));
        t.status_name = Some("Cancelled".into());
        assert_eq!(t.remote_status().category, Some(MappedStatus::Closed(Outcome::Rejected)));
        t.status_name = None;
        t.status_id = Some(9);
        assert_eq!(t.remote_status().name, "status 9");
    }

    #[test]
    fn ticket_input_serializes_pascal_case_without_empty_options() {
        let v = serde_json::to_value(TicketInput { title: "t".into(), account_id: 5, ..Default::default() }).unwrap();
        assert_eq!(v["Title"], "t");
        assert_eq!(v["AccountId"], 5);
        assert!(v.get("ContactId").is_none());
        let s = serde_json::to_value(SearchInput {
            page_number: 2,
            page_size: 50,
            sort: None,
            filter: TicketFilter { details: Some("x".into()), exclude_completed: Some(1), ..Default::default() },
        })
        .unwrap();
        assert_eq!(s, serde_json::json!({"PageNumber":2,"PageSize":50,"Filter":{"Details":"x","ExcludeCompleted":1}}));
    }

    #[test]
    fn lookups_and_sources_resolve_names() {
        let items = vec![
            LookupItem { id: 1, name: "New".into(), is_active: Some(false) },
            LookupItem { id: 2, name: "new".into(), is_active: Some(true) },
            LookupItem { id: 3, name: "Completed".into(), is_active: None },
        ];
        assert_eq!(find_by_name(&items, " NEW "), Some(2));
        assert_eq!(find_by_name(&items, "completed"), Some(3));
        assert_eq!(find_by_name(&items, "Gone"), None);
        assert_eq!(source_id("Monitoring"), Some(5));
        assert_eq!(source_id("monitoring_system"), Some(5));
        assert_eq!(source_id("7"), Some(7));
        assert_eq!(source_id("fax"), None);
        assert_eq!(Lookup::SubIssueTypes(4).path(), "/v2/system/issuetypes/4/issuesubtypes/lookup");
    }

    #[test]
    fn contact_and_location_choice() {
        let cs = vec![
            Contact { id: 1, account_id: Some(10), email_address: Some("A@x.io".into()), is_active: Some(false) },
            Contact { id: 2, account_id: Some(10), email_address: Some("a@x.io".into()), is_active: Some(true) },
            Contact { id: 3, account_id: Some(11), email_address: Some("a@x.io".into()), is_active: Some(true) },
        ];
        assert_eq!(pick_contact(&cs, Some(10), "a@X.io"), Some(2));
        assert_eq!(pick_contact(&cs, Some(11), "a@x.io"), Some(3));
        assert_eq!(pick_contact(&cs, Some(12), "a@x.io"), None);
        assert_eq!(pick_contact(&cs, None, "b@x.io"), None);
        let ls = vec![
            Location { id: 1, name: None, is_main: Some(false) },
            Location { id: 2, name: None, is_main: Some(true) },
        ];
        assert_eq!(main_location(&ls), Some(2));
        assert_eq!(main_location(&ls[..1]), Some(1));
        assert_eq!(main_location(&[]), None);
    }
}
