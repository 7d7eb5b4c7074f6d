//! NinjaOne public API v2 wire format: OAuth token exchange, tickets, board runs (cursor paging)
//! and status categories derived from system parent statuses.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::connectors::psa_util::truncate;
use crate::connectors::{ConnectorError, Customer, RemoteStatus};
use crate::domain::{MappedStatus, Outcome};

pub const TOKEN_PATH: &str = "/ws/oauth/token";
pub const CREATE_PATH: &str = "/v2/ticketing/ticket";
pub const STATUSES_PATH: &str = "/v2/ticketing/statuses";
pub const BOARDS_PATH: &str = "/v2/ticketing/trigger/boards";
pub const ORGANIZATIONS_PATH: &str = "/v2/organizations";

/// `GET /v2/ticketing/ticket/{id}`.
pub fn ticket_path(id: &str) -> String {
    format!("/v2/ticketing/ticket/{id}")
}

/// `POST /v2/ticketing/ticket/{id}/comment` (multipart, part `comment`).
/// The `PUT /v2/ticketing/ticket/{ticketId}` body that moves `ticket` (as read by
/// `GET` on the same path) to status `status`: the spec's required members copied from the ticket.
pub fn close_update(ticket: &serde_json::Value, status: &str) -> Result<serde_json::Value, ConnectorError> {
    let mut body = serde_json::Map::new();
    for k in ["version", "clientId", "ticketFormId", "subject", "requesterUid"] {
        let v = ticket
            .get(k)
            .filter(|v| !v.is_null())
            .ok_or_else(|| ConnectorError::Malformed(format!("NinjaOne ticket without '{k}'")))?;
        body.insert(k.into(), v.clone());
    }
    // PUT replaces the ticket's fields: carry over the optional ones the ticket has.
    for k in ["locationId", "nodeId", "type", "assignedAppUserId", "severity", "priority", "parentTicketId", "tags"] {
        if let Some(v) = ticket.get(k).filter(|v| !v.is_null()) {
            body.insert(k.into(), v.clone());
        }
    }
    body.insert("status".into(), serde_json::Value::String(status.to_string()));
    Ok(serde_json::Value::Object(body))
}

pub fn comment_path(id: &str) -> String {
    format!("/v2/ticketing/ticket/{id}/comment")
}

/// `GET /v2/ticketing/ticket/{id}/log-entry` (query `type=DESCRIPTION|COMMENT|…`).
pub fn log_entry_path(id: &str) -> String {
    format!("/v2/ticketing/ticket/{id}/log-entry")
}

/// One ticket log entry (description, comment, status change…).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    #[serde(default, rename = "type")]
    pub entry_type: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub html_body: Option<String>,
}

/// `POST /v2/ticketing/trigger/board/{boardId}/run`.
pub fn board_run_path(board_id: &str) -> String {
    format!("/v2/ticketing/trigger/board/{board_id}/run")
}

/// OAuth token response.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub scope: Option<String>,
    /// Present when the server rotates the refresh token (it does on every refresh).
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// OAuth error body (`{"error":"invalid_grant","error_description":"..."}`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
pub struct OAuthError {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// Parses a token response; an OAuth error body (even on 200) is mapped: `invalid_grant` /
/// `invalid_client` / `unauthorized_client` mean bad or revoked credentials.
pub fn parse_token(body: &[u8]) -> Result<TokenResponse, ConnectorError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ConnectorError::Malformed(format!("NinjaOne token response is not JSON: {e}")))?;
    if v.get("error").is_some_and(|e| !e.is_null()) {
        let e: OAuthError = serde_json::from_value(v).unwrap_or_default();
        return Err(oauth_error(&e));
    }
    let t: TokenResponse =
        serde_json::from_value(v).map_err(|e| ConnectorError::Malformed(format!("NinjaOne token response: {e}")))?;
    if t.access_token.is_empty() {
        return Err(ConnectorError::Malformed("NinjaOne token response has an empty access_token".into()));
    }
    Ok(t)
}

/// Maps an OAuth error body.
pub fn oauth_error(e: &OAuthError) -> ConnectorError {
    let code = e.error.clone().unwrap_or_default();
    let msg = truncate(&format!("NinjaOne OAuth {code}: {}", e.error_description.clone().unwrap_or_default()), 300);
    match code.as_str() {
        "invalid_grant" | "invalid_client" | "unauthorized_client" | "invalid_token" => {
            ConnectorError::Unauthorized(msg)
        }
        "invalid_scope" | "access_denied" => ConnectorError::Forbidden(msg),
        "invalid_request" | "unsupported_grant_type" => ConnectorError::Config(msg),
        _ => ConnectorError::Server(msg),
    }
}

/// API error body `{resultCode, errorMessage, incidentId}`; `None` when the body is not one.
pub fn api_error(body: &[u8]) -> Option<ConnectorError> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let code = obj.get("resultCode").and_then(|c| c.as_str());
    let message = obj.get("errorMessage").and_then(|c| c.as_str());
    if code.is_none() && message.is_none() {
        return None;
    }
    if code.is_some_and(|c| c.eq_ignore_ascii_case("success")) && message.is_none() {
        return None;
    }
    let code = code.unwrap_or("ERROR");
    let msg = truncate(&format!("NinjaOne {code}: {}", message.unwrap_or("")), 300);
    let upper = code.to_ascii_uppercase();
    Some(if upper.contains("UNAUTHORIZED") || upper.contains("INVALID_TOKEN") {
        ConnectorError::Unauthorized(msg)
    } else if upper.contains("FORBIDDEN") || upper.contains("ACCESS_DENIED") {
        ConnectorError::Forbidden(msg)
    } else if upper.contains("NOT_FOUND") {
        ConnectorError::NotFound(msg)
    } else if upper.contains("INVALID") || upper.contains("BAD_REQUEST") || upper.contains("VALIDATION") {
        ConnectorError::Rejected(msg)
    } else {
        ConnectorError::Server(msg)
    })
}

/// Parses a successful JSON body, treating an error body on a 2xx as the error it carries.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ConnectorError> {
    if let Some(e) = api_error(body) {
        return Err(e);
    }
    serde_json::from_slice(body).map_err(|e| ConnectorError::Malformed(format!("NinjaOne response: {e}")))
}

/// A ticket status (`{statusId, name, displayName, parentId}`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default, deserialize_with = "de_opt_id")]
    pub status_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_id")]
    pub parent_id: Option<String>,
}

fn de_opt_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    })
}

fn de_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    de_opt_id(d)?.ok_or_else(|| serde::de::Error::custom("missing id"))
}

/// Category of a system status name.
pub fn system_category(name: &str) -> Option<MappedStatus> {
    match name.trim().to_ascii_uppercase().as_str() {
        "RESOLVED" | "CLOSED" => Some(MappedStatus::Closed(Outcome::Fulfilled)),
        "WAITING" | "PAUSED" => Some(MappedStatus::Pending),
        "NEW" | "OPEN" => Some(MappedStatus::Open),
        _ => None,
    }
}

/// The status catalogue (`GET /v2/ticketing/statuses`), indexed by id.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    by_id: HashMap<String, Status>,
}

impl Catalogue {
    pub fn new(list: Vec<Status>) -> Self {
        Self { by_id: list.into_iter().filter_map(|s| s.status_id.clone().map(|id| (id, s))).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Id of a status by name or display name (case-insensitive).
    pub fn id_by_name(&self, name: &str) -> Option<String> {
        let n = name.trim();
        self.by_id
            .values()
            .find(|s| {
                s.name.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(n))
                    || s.display_name.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(n))
            })
            .and_then(|s| s.status_id.clone())
    }

    /// Category of a status: its own system name, else the system status its parent chain ends at.
    pub fn category(&self, status: &Status) -> Option<MappedStatus> {
        let mut cur = status.clone();
        for _ in 0..16 {
            if cur.parent_id.is_none() {
                if let Some(c) = cur.name.as_deref().and_then(system_category) {
                    return Some(c);
                }
                // A catalogue entry may carry the name the inline status lacks.
                let known = cur.status_id.as_ref().and_then(|id| self.by_id.get(id));
                return known.and_then(|k| k.name.as_deref()).and_then(system_category);
            }
            let pid = cur.parent_id.clone()?;
            match self.by_id.get(&pid) {
                Some(p) => cur = p.clone(),
                None => return None,
            }
        }
        None
    }
}

/// A ticket (`GET /v2/ticketing/ticket/{id}` and board rows).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub status: Option<Status>,
}

impl Ticket {
    pub fn remote_status(&self, catalogue: &Catalogue) -> RemoteStatus {
        let status = self.status.clone().unwrap_or_default();
        let name = status
            .display_name
            .clone()
            .or_else(|| status.name.clone())
            .or_else(|| {
                status
                    .status_id
                    .as_ref()
                    .and_then(|id| catalogue.by_id.get(id))
                    .and_then(|s| s.display_name.clone().or(s.name.clone()))
            })
            .unwrap_or_else(|| "unknown".into());
        RemoteStatus { ticket_id: self.id.clone(), name, category: catalogue.category(&status) }
    }
}

/// `description` of a new ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Description {
    pub public: bool,
    pub body: String,
}

/// Body of `POST /v2/ticketing/ticket`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewTicket {
    pub client_id: i64,
    pub ticket_form_id: i64,
    pub subject: String,
    pub description: Description,
    pub status: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub ticket_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_uid: Option<String>,
    /// Technician (app user id) the ticket is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_app_user_id: Option<i64>,
    /// Ticket attribute values (`attributeId` + string `value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AttributeValue>,
    /// The location of the user's contact or the alert's device (from the sync's records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_id: Option<i64>,
    /// The device the alert names (`nodeId`, from the sync's asset records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<i64>,
}

/// One ticket attribute value of a new ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeValue {
    pub attribute_id: i64,
    pub value: String,
}

/// The `comment` part of the comment call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub body: String,
    pub public: bool,
    pub time_tracked: i64,
}

/// One board filter. `value` is a string (NinjaOne Public API 2.0 OpenAPI, `getTicketsByBoard`);
/// list operators (`in`, `not_in`, `contains_any`, …) take comma-separated values, as the
/// NinjaOne PowerShell module (homotechsual/NinjaOne, `NinjaOneTicketBoardFilter`) sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub field: String,
    pub operator: String,
    pub value: String,
}

/// Body of a board run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BoardRun {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    pub page_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_cursor_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_criteria: Option<String>,
}

impl BoardRun {
    /// A run selecting the given ticket ids.
    pub fn for_ids(ids: &[String], page_size: u32) -> Result<Self, ConnectorError> {
        let mut nums = Vec::with_capacity(ids.len());
        for id in ids {
            nums.push(id.trim().parse::<i64>().map_err(|_| {
                ConnectorError::Rejected(format!("NinjaOne ticket id must be numeric, got '{}'", truncate(id, 40)))
            })?);
        }
        Ok(Self {
            filters: vec![Filter { field: "id".into(), operator: "in".into(), value: join_ids(&nums) }],
            page_size,
            last_cursor_id: None,
            search_criteria: None,
        })
    }
}

/// Comma-separated ids, the form list operators take.
fn join_ids(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// `metadata` of a board run.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BoardMeta {
    #[serde(default)]
    pub last_cursor_id: Option<i64>,
}

/// Response of a board run.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
pub struct BoardPage {
    #[serde(default)]
    pub data: Vec<Ticket>,
    #[serde(default)]
    pub metadata: BoardMeta,
}

impl BoardPage {
    /// The cursor for the next page, or `None` when this page was the last.
    pub fn next_cursor(&self, page_size: u32, previous: Option<i64>) -> Option<i64> {
        if self.data.is_empty() || (self.data.len() as u32) < page_size {
            return None;
        }
        self.metadata.last_cursor_id.filter(|c| Some(*c) != previous)
    }
}

/// A board (`GET /v2/ticketing/trigger/boards`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Board {
    #[serde(deserialize_with = "de_id")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// An organization (`GET /v2/organizations`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Organization {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
}

impl From<Organization> for Customer {
    fn from(o: Organization) -> Self {
        Customer { id: o.id.to_string(), name: o.name.unwrap_or_default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_response_and_oauth_errors() {
        let t = parse_token(br#"{"access_token":"a","token_type":"Bearer","expires_in":3600,"refresh_token":"r2"}"#)
            .unwrap();
        assert_eq!((t.expires_in, t.refresh_token.as_deref()), (Some(3600), Some("r2")));
        let t = parse_token(br#"{"access_token":"a","expires_in":3600}"#).unwrap();
        assert_eq!(t.refresh_token, None);
        let e = parse_token(br#"{"error":"invalid_grant","error_description":"refresh token reused"}"#).unwrap_err();
        assert!(matches!(&e, ConnectorError::Unauthorized(m) if m.contains("reused")), "{e:?}");
        assert!(matches!(parse_token(br#"{"error":"invalid_scope"}"#).unwrap_err(), ConnectorError::Forbidden(_)));
        assert!(matches!(parse_token(b"{").unwrap_err(), ConnectorError::Malformed(_)));
        assert!(matches!(parse_token(br#"{"access_token":""}"#).unwrap_err(), ConnectorError::Malformed(_)));
    }

    #[test]
    fn api_error_bodies_are_detected_on_success_status() {
        let e =
            parse_body::<Ticket>(br#"{"resultCode":"FAILURE","errorMessage":"db down","incidentId":"x"}"#).unwrap_err();
        assert!(matches!(e, ConnectorError::Server(_)));
        let e = parse_body::<Ticket>(br#"{"resultCode":"TICKET_NOT_FOUND","errorMessage":"no"}"#).unwrap_err();
        assert!(matches!(e, ConnectorError::NotFound(_)));
        let t =
            parse_body::<Ticket>(br#"{"id":5,"status":{"statusId":1000,"name":"NEW","displayName":"New"}}"#).unwrap();
        assert_eq!(t.id, "5");
        assert!(matches!(parse_body::<Ticket>(br#"{"id":null}"#).unwrap_err(), ConnectorError::Malformed(_)));
    }

    #[test]
    fn category_follows_parent_chain_to_system_status() {
        let cat = Catalogue::new(vec![
            Status {
                status_id: Some("1000".into()),
                name: Some("NEW".into()),
                display_name: Some("New".into()),
                parent_id: None,
            },
            Status {
                status_id: Some("3000".into()),
                name: Some("WAITING".into()),
                display_name: Some("Waiting".into()),
                parent_id: None,
            },
            Status {
                status_id: Some("5000".into()),
                name: Some("RESOLVED".into()),
                display_name: Some("Resolved".into()),
                parent_id: None,
            },
            Status {
                status_id: Some("5001".into()),
                name: Some("Fixed by vendor".into()),
                display_name: None,
                parent_id: Some("5000".into()),
            },
            Status {
                status_id: Some("5002".into()),
                name: Some("Fixed twice".into()),
                display_name: None,
                parent_id: Some("5001".into()),
            },
        ]);
        let row = |id: &str, parent: Option<&str>| Ticket {
            id: "1".into(),
            status: Some(Status {
                status_id: Some(id.into()),
                name: None,
                display_name: Some("x".into()),
                parent_id: parent.map(Into::into),
            }),
            ..Default::default()
        };
        assert_eq!(
            row("5002", Some("5001")).remote_status(&cat).category,
            Some(MappedStatus::Closed(Outcome::Fulfilled))
        );
        assert_eq!(row("3000", None).remote_status(&cat).category, Some(MappedStatus::Pending));
        assert_eq!(row("1000", None).remote_status(&cat).category, Some(MappedStatus::Open));
        assert_eq!(row("9999", Some("8888")).remote_status(&cat).category, None);
        assert_eq!(cat.id_by_name("resolved"), Some("5000".into()));
        // Without a catalogue an inline system name still counts.
        let t = Ticket {
            id: "2".into(),
            status: Some(Status { name: Some("CLOSED".into()), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(t.remote_status(&Catalogue::default()).category, Some(MappedStatus::Closed(Outcome::Fulfilled)));
        assert_eq!(t.remote_status(&Catalogue::default()).name, "CLOSED");
    }

    #[test]
    fn board_run_cursor_paging() {
        let run = BoardRun::for_ids(&["3".into(), "4".into()], 2).unwrap();
        let v = serde_json::to_value(&run).unwrap();
        assert_eq!(v, serde_json::json!({"filters":[{"field":"id","operator":"in","value":"3,4"}],"pageSize":2}));
        assert!(BoardRun::for_ids(&["x".into()], 2).is_err());
        let page: BoardPage = serde_json::from_slice(
            br#"{"data":[{"id":3,"status":{"statusId":1000,"displayName":"New"}},{"id":4}],"metadata":{"lastCursorId":4,"columns":[]}}"#,
        )
        .unwrap();
        assert_eq!(page.next_cursor(2, None), Some(4));
        assert_eq!(page.next_cursor(2, Some(4)), None, "a cursor that does not move ends paging");
        assert_eq!(page.next_cursor(3, None), None, "a short page is the last");
        assert_eq!(BoardPage::default().next_cursor(2, None), None);
    }

    #[test]
    fn new_ticket_and_comment_shapes() {
        let t = NewTicket {
            client_id: 2,
            ticket_form_id: 1,
            subject: "s".into(),
            description: Description { public: false, body: "b".into() },
            status: "1000".into(),
            ticket_type: Some("TASK".into()),
            priority: None,
            requester_uid: None,
            assigned_app_user_id: Some(9),
            attributes: vec![AttributeValue { attribute_id: 3, value: "x".into() }],
            location_id: Some(41),
            node_id: None,
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["locationId"], 41);
        assert!(v.get("nodeId").is_none(), "no device: no nodeId");
        assert_eq!(v["clientId"], 2);
        assert_eq!(v["assignedAppUserId"], 9);
        assert_eq!(v["attributes"], serde_json::json!([{"attributeId": 3, "value": "x"}]));
        assert_eq!(v["type"], "TASK");
        assert_eq!(v["description"]["public"], false);
        assert!(v.get("priority").is_none());
        let c = serde_json::to_value(Comment { body: "n".into(), public: false, time_tracked: 0 }).unwrap();
        assert_eq!(c, serde_json::json!({"body":"n","public":false,"timeTracked":0}));
    }
}
