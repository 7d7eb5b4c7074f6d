//! Kaseya VSA 9 REST simulator (Service Desk module).
//!
//! | method | path | notes |
//! |---|---|---|
//! | GET | /api/v1.0/auth | `Basic base64(user:PAT)` → `Result{Token, SessionExpiration (server-local), OffSetInMinutes}` |
//! | GET | /api/v1.0/automation/servicedesks/{deskId}/{status,priorities,categories} | desk catalogues |
//! | POST | /api/v1.0/automation/servicedesktickets/{deskId}/ticket | `{Summary, Description, Priority (id), Status?, Category?, SubmitterEmail?}` |
//! | GET | /api/v1.0/automation/servicedesktickets/{ticketId} | |
//! | GET | /api/v1.0/automation/servicedesks/{deskId}/tickets | `$filter` (OData v3 subset over the list model's fields), `$top` ≤ 100, `$skip`, `$orderby` |
//! | POST | /api/v1.0/automation/servicedesktickets/{ticketId}/notes | `{Text, Hidden, SystemFlag}` |
//! | GET | /api/v1.0/system/orgs | `$top`, `$skip` |
//! | GET | /api/v1.0/assetmgmt/agents | `$top`, `$skip` (see [`agents`]) |
//!
//! Responses use the envelope `{TotalRecords?, Result, ResponseCode, Status, Error}`. A PAT past
//! [`VsaConfig::pat_expires_at`] is refused with 401 "Personal access token has expired"; a
//! name where a numeric id is required gives 500 "Input string was not in a correct format".
//!
//! The ticket list answers rows of the desk-ticket list model ([`LIST_FIELDS`], PsKaseya
//! `Types/KaseyaDefinitions.cs` class `KTicket`, scraped from the VSA 9 REST docs): no
//! `Description`, the status is `TicketStatus`. A `$filter` naming any other field is refused with
//! HTTP 400, as is an unsuffixed numeric literal that overflows `Edm.Int32` (see [`odata`]).
//! POST bodies must be JSON: another media type gets 415 (ASP.NET Web API's formatter rule).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::psa::marker_key;
use crate::server::SimServer;
use crate::sim::{NewTicket, Sim, SimProfile, SimTicket};
use crate::tokens::{TokenCheck, TokenKind};
use crate::{odata, util};

mod agents;
pub use agents::SimAgent;

/// Desk statuses `(StatusId, StatusName)`.
pub const STATUSES: [(i64, &str); 5] = [(1, "Open"), (2, "In Progress"), (3, "Hold"), (4, "Closed"), (5, "Cancelled")];
pub const PRIORITIES: [(i64, &str); 3] = [(11, "Low"), (12, "Medium"), (13, "High")];
pub const CATEGORIES: [(i64, &str); 2] = [(21, "Security"), (22, "Access Request")];
/// Fields of the desk-ticket list model (`KTicket`), the only ones a ticket-list `$filter` may name.
pub const LIST_FIELDS: [&str; 32] = [
    "ServiceDeskId",
    "ServiceDeskTicketId",
    "TicketRef",
    "Summary",
    "TicketStatus",
    "Stage",
    "Priority",
    "Severity",
    "Category",
    "Resolution",
    "Submitter",
    "Assignee",
    "Owner",
    "Organization",
    "Staff",
    "Phone",
    "AgentGuid",
    "InventoryAssetId",
    "CreatedDate",
    "ModifiedDate",
    "LastPublicUpdate",
    "Closed",
    "Due",
    "Promised",
    "Escalation",
    "StageGoal",
    "ResolutionDate",
    "LockedBy",
    "LockedOn",
    "SourceType",
    "Policy",
    "SubmitterEmail",
];
/// First ticket id (VSA ids are large).
pub const FIRST_ID: u64 = 979_868_787_875_001;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct VsaConfig {
    pub username: String,
    pub pat: String,
    /// The PAT stops working after this.
    pub pat_expires_at: Option<DateTime<Utc>>,
    pub session_ttl: Duration,
    /// Server time zone (minutes east of UTC); `SessionExpiration` is given in that zone.
    pub offset_minutes: i64,
    pub service_desk_id: u64,
    pub max_top: usize,
}

impl Default for VsaConfig {
    fn default() -> Self {
        Self {
            username: "vsa-admin".into(),
            pat: "0b3b1c5e-7d1a-4c55-9a1e-5f0c2d9e8a77".into(),
            pat_expires_at: None,
            session_ttl: Duration::from_secs(1800),
            offset_minutes: 120,
            service_desk_id: 1001,
            max_top: 100,
        }
    }
}

pub fn profile() -> SimProfile {
    SimProfile {
        name: "kaseya-vsa",
        initial_status: "Open".into(),
        closed_status: "Closed".into(),
        statuses: STATUSES.iter().map(|(_, n)| n.to_string()).collect(),
        closed_statuses: vec!["Closed".into(), "Cancelled".into()],
        error_body: (
            200,
            json!({"Result": null, "ResponseCode": 500, "Status": "Error", "Error": "Object reference not set to an instance of an object."}),
        ),
        server_error_body: json!({"Result": null, "ResponseCode": 500, "Status": "Error", "Error": "An error has occurred."}),
        first_id: FIRST_ID,
        number_prefix: "STD".into(),
    }
}

struct St {
    sim: Sim,
    config: VsaConfig,
    agents: std::sync::Mutex<Vec<agents::SimAgent>>,
}

/// A running VSA simulator.
pub struct Vsa {
    server: SimServer,
    config: VsaConfig,
    st: Arc<St>,
}

impl Vsa {
    pub async fn spawn(config: VsaConfig) -> std::io::Result<Self> {
        let sim = Sim::new(profile());
        let st = Arc::new(St { sim: sim.clone(), config: config.clone(), agents: Default::default() });
        let server = SimServer::spawn_on(SocketAddr::from(([127, 0, 0, 1], 0)), sim, routes(st.clone())).await?;
        Ok(Self { server, config, st })
    }

    pub fn config(&self) -> &VsaConfig {
        &self.config
    }
}

impl Deref for Vsa {
    type Target = SimServer;
    fn deref(&self) -> &SimServer {
        &self.server
    }
}

/// The VSA routes over `sim`.
pub fn router(sim: Sim, config: VsaConfig) -> Router {
    routes(Arc::new(St { sim, config, agents: Default::default() }))
}

fn routes(st: Arc<St>) -> Router {
    Router::new()
        .route("/api/v1.0/auth", get(auth))
        .route(
            "/api/v1.0/automation/servicedesks/{deskId}/status",
            get(|s: State<Arc<St>>, h: HeaderMap, p: Path<String>| catalogue(s, h, p, "status")),
        )
        .route(
            "/api/v1.0/automation/servicedesks/{deskId}/priorities",
            get(|s: State<Arc<St>>, h: HeaderMap, p: Path<String>| catalogue(s, h, p, "priorities")),
        )
        .route(
            "/api/v1.0/automation/servicedesks/{deskId}/categories",
            get(|s: State<Arc<St>>, h: HeaderMap, p: Path<String>| catalogue(s, h, p, "categories")),
        )
        .route("/api/v1.0/automation/servicedesks/{deskId}/tickets", get(list))
        .route("/api/v1.0/automation/servicedesktickets/{deskId}/ticket", post(create))
        .route("/api/v1.0/automation/servicedesktickets/{ticketId}", get(get_ticket))
        .route("/api/v1.0/automation/servicedesktickets/{ticketId}/notes", post(add_note))
        .route("/api/v1.0/automation/servicedesktickets/{ticketId}/status/{statusId}", put(set_status))
        .route("/api/v1.0/system/orgs", get(orgs))
        .route("/api/v1.0/assetmgmt/agents", get(agents::agents))
        .with_state(st)
}

fn ok(result: Value, total: Option<usize>) -> Response {
    let mut body = json!({"Result": result, "ResponseCode": 0, "Status": "OK", "Error": "None"});
    if let Some(t) = total {
        body["TotalRecords"] = json!(t);
    }
    Json(body).into_response()
}

fn fail(status: StatusCode, message: impl ToString) -> Response {
    let body =
        json!({"Result": null, "ResponseCode": status.as_u16(), "Status": "Error", "Error": message.to_string()});
    (status, Json(body)).into_response()
}

fn authorize(st: &St, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = util::bearer(headers) else {
        return Err(fail(StatusCode::UNAUTHORIZED, "Authorization has been denied for this request."));
    };
    match st.sim.tokens().check(token, TokenKind::Access) {
        TokenCheck::Valid(_) => Ok(()),
        TokenCheck::Expired => Err(fail(StatusCode::UNAUTHORIZED, "Session has expired.")),
        TokenCheck::Revoked | TokenCheck::Unknown => {
            Err(fail(StatusCode::UNAUTHORIZED, "Authorization has been denied for this request."))
        }
    }
}

fn desk_ok(st: &St, desk: &str) -> Result<(), Response> {
    if desk == st.config.service_desk_id.to_string() {
        Ok(())
    } else {
        Err(fail(StatusCode::NOT_FOUND, format!("Service desk {desk} was not found.")))
    }
}

async fn auth(State(st): State<Arc<St>>, headers: HeaderMap) -> Response {
    let Some((user, pat)) = util::basic(&headers) else {
        return fail(StatusCode::UNAUTHORIZED, "Basic authorization required.");
    };
    if user != st.config.username || pat != st.config.pat {
        return fail(StatusCode::UNAUTHORIZED, "Invalid credentials.");
    }
    if st.config.pat_expires_at.is_some_and(|e| e <= Utc::now()) {
        return fail(StatusCode::UNAUTHORIZED, "Personal access token has expired.");
    }
    let (token, expires) = st.sim.tokens().issue(TokenKind::Access, &user, &[], Some(st.config.session_ttl));
    let local = expires.unwrap_or_else(Utc::now) + chrono::Duration::minutes(st.config.offset_minutes);
    ok(
        json!({
            "Token": token,
            "UserName": user,
            "SessionExpiration": local.format("%Y-%m-%dT%H:%M:%S").to_string(),
            "OffSetInMinutes": st.config.offset_minutes,
        }),
        None,
    )
}

async fn catalogue(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Path(desk): Path<String>,
    which: &'static str,
) -> Response {
    if let Err(r) = authorize(&st, &headers).and_then(|()| desk_ok(&st, &desk)) {
        return r;
    }
    let rows: Vec<Value> = match which {
        "status" => STATUSES.iter().map(|(i, n)| json!({"StatusId": i, "StatusName": n})).collect(),
        "priorities" => PRIORITIES.iter().map(|(i, n)| json!({"PriorityId": i, "PriorityName": n})).collect(),
        _ => CATEGORIES.iter().map(|(i, n)| json!({"CategoryId": i, "CategoryName": n})).collect(),
    };
    let n = rows.len();
    ok(Value::Array(rows), Some(n))
}

/// A row of the ticket list (the list model: no `Description`, status as `TicketStatus`).
fn list_row(t: &SimTicket) -> Value {
    let dt = |d: chrono::DateTime<Utc>| d.format("%Y-%m-%dT%H:%M:%S").to_string();
    json!({
        "ServiceDeskId": t.fields.get("ServiceDeskId"),
        "ServiceDeskTicketId": t.id,
        "TicketRef": t.number,
        "Summary": t.title,
        "TicketStatus": t.status,
        "Priority": t.priority,
        "Category": t.fields.get("Category"),
        "SubmitterEmail": t.requester,
        "CreatedDate": dt(t.created_at),
        "ModifiedDate": dt(t.updated_at),
        "Closed": t.closed_at.map(dt),
    })
}

/// ASP.NET Web API's answer to a body in a media type no JSON formatter reads.
fn json_body(headers: &HeaderMap) -> Result<(), Response> {
    let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "application/json" || media == "text/json" {
        return Ok(());
    }
    let shown = if media.is_empty() { "application/octet-stream".to_string() } else { media };
    let message = format!("The request entity's media type '{shown}' is not supported for this resource.");
    Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, Json(json!({ "Message": message }))).into_response())
}

/// An OData query error the way ASP.NET Web API OData reports it (HTTP 400, `Message`).
fn query_invalid(detail: &str) -> Response {
    let body = json!({
        "Message": format!("The query specified in the URI is not valid. {detail}"),
        "ExceptionMessage": detail,
        "ExceptionType": "Microsoft.Data.OData.ODataException",
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn ticket_json(t: &SimTicket) -> Value {
    json!({
        "ServiceDeskTicketId": t.id,
        "TicketRef": t.number,
        "ServiceDeskId": t.fields.get("ServiceDeskId"),
        "Summary": t.title,
        "Description": t.body,
        "Status": t.status,
        "Priority": t.priority,
        "Category": t.fields.get("Category"),
        "SubmitterEmail": t.requester,
        "CreatedDate": t.created_at.format("%Y-%m-%dT%H:%M:%S").to_string(),
        "LastModifiedDate": t.updated_at.format("%Y-%m-%dT%H:%M:%S").to_string(),
        "ClosedDate": t.closed_at.map(|c| c.format("%Y-%m-%dT%H:%M:%S").to_string()),
    })
}

/// A numeric id field; names are refused the way VSA does (HTTP 500).
fn numeric(req: &Value, key: &str) -> Result<Option<i64>, Response> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_i64()),
        Some(Value::String(s)) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| fail(StatusCode::INTERNAL_SERVER_ERROR, "Input string was not in a correct format.")),
        Some(_) => Err(fail(StatusCode::BAD_REQUEST, format!("{key} is invalid."))),
    }
}

async fn create(State(st): State<Arc<St>>, headers: HeaderMap, Path(desk): Path<String>, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers).and_then(|()| desk_ok(&st, &desk)).and_then(|()| json_body(&headers)) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid JSON.");
    };
    let Some(summary) = req.get("Summary").and_then(Value::as_str).filter(|s| !s.trim().is_empty()) else {
        return fail(StatusCode::BAD_REQUEST, "Summary is required.");
    };
    let priority = match numeric(&req, "Priority") {
        Ok(Some(p)) => p,
        Ok(None) => return fail(StatusCode::BAD_REQUEST, "Priority is required."),
        Err(r) => return r,
    };
    let Some(priority) = PRIORITIES.iter().find(|p| p.0 == priority) else {
        return fail(StatusCode::BAD_REQUEST, "Priority is invalid.");
    };
    let status = match numeric(&req, "Status") {
        Ok(None) => None,
        Ok(Some(s)) => match STATUSES.iter().find(|x| x.0 == s) {
            Some(x) => Some(x.1.to_string()),
            None => return fail(StatusCode::BAD_REQUEST, "Status is invalid."),
        },
        Err(r) => return r,
    };
    let mut fields = BTreeMap::new();
    match numeric(&req, "Category") {
        Ok(None) => {}
        Ok(Some(c)) => match CATEGORIES.iter().find(|x| x.0 == c) {
            Some(x) => {
                fields.insert("Category".to_string(), json!(x.1));
            }
            None => return fail(StatusCode::BAD_REQUEST, "Category is invalid."),
        },
        Err(r) => return r,
    }
    fields.insert("ServiceDeskId".to_string(), json!(st.config.service_desk_id));
    // Kept as sent: VSAModule's New-VSASDTicket passes Assignee (a string) and Attributes (a
    // hashtable) through unchanged; how VSA answers an unknown assignee is not documented.
    for k in ["Assignee", "Attributes"] {
        if let Some(v) = req.get(k).filter(|v| !v.is_null()) {
            fields.insert(k.to_string(), v.clone());
        }
    }
    let description = req.get("Description").and_then(Value::as_str).unwrap_or_default().to_string();
    let seq = st.sim.next_id() - FIRST_ID + 1;
    let t = st.sim.create_ticket(NewTicket {
        number: Some(format!("STD{seq:06}")),
        title: summary.to_string(),
        correlation_key: marker_key(&description),
        body: description,
        status,
        requester: req.get("SubmitterEmail").and_then(Value::as_str).map(str::to_string),
        priority: Some(priority.1.to_string()),
        fields,
        request: req.clone(),
        ..Default::default()
    });
    ok(ticket_json(&t), None)
}

async fn get_ticket(State(st): State<Arc<St>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    match id.parse::<u64>().ok().and_then(|i| st.sim.ticket(i)) {
        Some(t) => ok(ticket_json(&t), None),
        None => fail(StatusCode::NOT_FOUND, format!("Ticket {id} was not found.")),
    }
}

/// `$top` / `$skip` with the server's cap (a larger `$top` is an error, as in VSA).
fn paging(st: &St, q: &HashMap<String, String>) -> Result<(usize, usize), Response> {
    let top = match q.get("$top") {
        None => st.config.max_top,
        Some(t) => t.parse::<usize>().map_err(|_| fail(StatusCode::BAD_REQUEST, "$top is invalid."))?,
    };
    if top == 0 || top > st.config.max_top {
        return Err(fail(StatusCode::BAD_REQUEST, format!("$top must be between 1 and {}.", st.config.max_top)));
    }
    let skip = q
        .get("$skip")
        .map(|s| s.parse::<usize>())
        .transpose()
        .map_err(|_| fail(StatusCode::BAD_REQUEST, "$skip is invalid."))?;
    Ok((top, skip.unwrap_or(0)))
}

async fn list(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Path(desk): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers).and_then(|()| desk_ok(&st, &desk)) {
        return r;
    }
    let (top, skip) = match paging(&st, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let filter = match q.get("$filter").filter(|f| !f.trim().is_empty()).map(|f| odata::parse(f)) {
        None => None,
        Some(Ok(e)) => {
            if let Some(unknown) = e.fields().into_iter().find(|f| !LIST_FIELDS.contains(f)) {
                // The type name in this message is assumed; the refusal itself is OData's rule.
                return query_invalid(&format!(
                    "Could not find a property named '{unknown}' on type 'Kaseya.Vsa.ServiceDeskTicket'."
                ));
            }
            Some(e)
        }
        Some(Err(e)) => return query_invalid(&e),
    };
    let rows: Vec<Value> =
        st.sim.tickets().iter().map(list_row).filter(|row| filter.as_ref().is_none_or(|f| f.matches(row))).collect();
    let total = rows.len();
    ok(Value::Array(rows.into_iter().skip(skip).take(top).collect()), Some(total))
}

async fn add_note(State(st): State<Arc<St>>, headers: HeaderMap, Path(id): Path<String>, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers).and_then(|()| json_body(&headers)) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid JSON.");
    };
    let Some(text) = req.get("Text").and_then(Value::as_str).filter(|t| !t.trim().is_empty()) else {
        return fail(StatusCode::BAD_REQUEST, "Text is required.");
    };
    let hidden = req.get("Hidden").and_then(Value::as_bool).unwrap_or(false);
    let Some(tid) = id.parse::<u64>().ok().filter(|i| st.sim.ticket(*i).is_some()) else {
        return fail(StatusCode::NOT_FOUND, format!("Ticket {id} was not found."));
    };
    match st.sim.add_note(tid, None, text.to_string(), hidden, "api") {
        Some(n) => ok(json!({"NoteId": n.id, "Text": n.body, "Hidden": n.internal}), None),
        None => fail(StatusCode::NOT_FOUND, format!("Ticket {id} was not found.")),
    }
}

/// `Update-VSASDTicketStatus`: no body; an unknown ticket or status id is an error envelope.
async fn set_status(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Path((id, status_id)): Path<(String, String)>,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let Some(tid) = id.parse::<u64>().ok().filter(|i| st.sim.ticket(*i).is_some()) else {
        return fail(StatusCode::NOT_FOUND, format!("Ticket {id} was not found."));
    };
    let Some((_, name)) = STATUSES.iter().find(|(i, _)| i.to_string() == status_id) else {
        return fail(StatusCode::BAD_REQUEST, format!("Status {status_id} is not a status of this service desk."));
    };
    match st.sim.set_status(&tid.to_string(), name) {
        Ok(_) => ok(json!(true), None),
        Err(_) => fail(StatusCode::NOT_FOUND, format!("Ticket {id} was not found.")),
    }
}

async fn orgs(State(st): State<Arc<St>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let (top, skip) = match paging(&st, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all = st.sim.customers();
    let rows: Vec<Value> = all.iter().skip(skip).take(top).map(|c| json!({"OrgId": c.id, "OrgName": c.name})).collect();
    ok(Value::Array(rows), Some(all.len()))
}
