//! NinjaOne public API v2 simulator (ticketing).
//!
//! | method | path | notes |
//! |---|---|---|
//! | GET | /ws/oauth/authorize | `response_type=code`, `client_id`, `redirect_uri` (exactly a registered one), `scope`, `state`: the user consents at once and is sent (302) to `redirect_uri?code=…&state=…`; the code is single-use and bound to that redirect URI |
//! | POST | /ws/oauth/token | form; `authorization_code` grant (`code`, `redirect_uri`) gives a refresh token when `offline_access` was granted; `refresh_token` grant ROTATES the refresh token (a spent one is refused and counted as a replay); `client_credentials` gives no refresh token |
//! | POST | /v2/ticketing/ticket | `{clientId, ticketFormId, subject, description{public, body}, status, type?, priority?, requesterUid?}` |
//! | GET | /v2/ticketing/ticket/{ticketId} | `status{statusId, name, displayName, parentId}` |
//! | POST | /v2/ticketing/ticket/{ticketId}/comment | multipart, part `comment` = JSON `{body, public}` |
//! | GET | /v2/ticketing/ticket/{ticketId}/log-entry | `type=DESCRIPTION` or `COMMENT` filter |
//! | GET | /v2/ticketing/statuses | system statuses (1000 NEW … 6000 CLOSED) and custom ones with `parentId` |
//! | GET | /v2/ticketing/trigger/boards | boards; 2 = "All tickets" |
//! | POST | /v2/ticketing/trigger/board/{boardId}/run | `{filters[{field, operator, value}], pageSize, lastCursorId, searchCriteria}` → `{data, metadata{lastCursorId}}` |
//! | GET | /v2/organizations | `pageSize`, `after` |
//! | GET | /v2/locations | `pageSize`, `after` (see [`rmm`]) |
//! | GET | /v2/devices | `pageSize`, `after`; `df` refused (not simulated) |
//!
//! JSON endpoints answer 415 to any other `Content-Type`; board filter values must be strings
//! (comma-separated for list operators). Every request and response is also checked against
//! `contracts/ninjaone.json` (see [`crate::contract`]).
//!
//! API errors are `{"resultCode", "errorMessage", "incidentId"}`; OAuth errors `{"error", "error_description"}`.

use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::psa::{contains_ci, content_type_is, marker_key, multipart_fields};
use crate::server::SimServer;
use crate::sim::{NewTicket, Sim, SimProfile, SimTicket};
use crate::tokens::{TokenCheck, TokenKind};
use crate::util;

mod rmm;
pub use rmm::{SimDevice, SimLocation};

/// Statuses `(statusId, name, displayName, parentId)`; system statuses have no parent.
pub const STATUSES: [(i64, &str, &str, Option<i64>); 8] = [
    (1000, "NEW", "New", None),
    (2000, "OPEN", "Open", None),
    (3000, "WAITING", "Waiting", None),
    (4000, "PAUSED", "Paused", None),
    (5000, "RESOLVED", "Resolved", None),
    (6000, "CLOSED", "Closed", None),
    (3001, "Waiting for parts", "Waiting for parts", Some(3000)),
    (5001, "Fixed by vendor", "Fixed by vendor", Some(5000)),
];

/// Boards `(id, name)`.
pub const BOARDS: [(i64, &str); 2] = [(1, "Open tickets"), (2, "All tickets")];

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct NinjaConfig {
    pub client_id: String,
    pub client_secret: String,
    pub access_ttl: Duration,
    pub max_page_size: usize,
    /// Redirect URIs registered for the client app (authorization-code flow; exact match).
    pub redirect_uris: Vec<String>,
}

impl Default for NinjaConfig {
    fn default() -> Self {
        Self {
            client_id: "ninja-client".into(),
            client_secret: "ninja-client-secret-value".into(),
            access_ttl: Duration::from_secs(3600),
            max_page_size: 1000,
            redirect_uris: vec!["http://localhost:9090/".into()],
        }
    }
}

pub fn profile() -> SimProfile {
    SimProfile {
        name: "ninjaone",
        initial_status: "New".into(),
        closed_status: "Resolved".into(),
        statuses: STATUSES.iter().map(|s| s.2.to_string()).collect(),
        closed_statuses: vec!["Resolved".into(), "Closed".into(), "Fixed by vendor".into()],
        error_body: (200, json!({"resultCode": "FAILURE", "errorMessage": "Unexpected error", "incidentId": "inc-42"})),
        server_error_body: json!({"resultCode": "FAILURE", "errorMessage": "Internal error", "incidentId": "inc-500"}),
        first_id: 101,
        number_prefix: String::new(),
    }
}

struct St {
    sim: Sim,
    config: NinjaConfig,
    spent: Mutex<HashSet<String>>,
    replays: AtomicU64,
    /// Authorization codes issued: code → grant (`used` once exchanged).
    codes: Mutex<HashMap<String, CodeGrant>>,
    /// Locations and devices.
    rmm: Mutex<rmm::Rmm>,
}

/// What an authorization code stands for.
struct CodeGrant {
    redirect_uri: String,
    scope: String,
    used: bool,
}

/// A running NinjaOne simulator.
pub struct NinjaOne {
    server: SimServer,
    st: Arc<St>,
}

impl NinjaOne {
    pub async fn spawn(config: NinjaConfig) -> std::io::Result<Self> {
        let sim = Sim::new(profile());
        let st = Arc::new(St {
            sim: sim.clone(),
            config,
            spent: Mutex::default(),
            replays: AtomicU64::new(0),
            codes: Mutex::default(),
            rmm: Mutex::default(),
        });
        let server = SimServer::spawn_on(SocketAddr::from(([127, 0, 0, 1], 0)), sim, routes(st.clone())).await?;
        Ok(Self { server, st })
    }

    pub fn config(&self) -> &NinjaConfig {
        &self.st.config
    }

    /// Issues a refresh token, as the authorization-code flow would (with offline_access).
    pub fn grant_refresh_token(&self) -> String {
        self.st.sim.tokens().issue(TokenKind::Refresh, &self.st.config.client_id, &[], None).0
    }

    /// Spent (rotated) refresh tokens presented again.
    pub fn refresh_replays(&self) -> u64 {
        self.st.replays.load(Ordering::SeqCst)
    }
}

impl Deref for NinjaOne {
    type Target = SimServer;
    fn deref(&self) -> &SimServer {
        &self.server
    }
}

/// The NinjaOne routes over `sim`.
pub fn router(sim: Sim, config: NinjaConfig) -> Router {
    routes(Arc::new(St {
        sim,
        config,
        spent: Mutex::default(),
        replays: AtomicU64::new(0),
        codes: Mutex::default(),
        rmm: Mutex::default(),
    }))
}

fn routes(st: Arc<St>) -> Router {
    Router::new()
        .route("/ws/oauth/authorize", get(oauth_authorize))
        .route("/ws/oauth/token", post(token))
        .route("/v2/ticketing/ticket", post(create))
        .route("/v2/ticketing/ticket/{ticketId}", get(get_ticket).put(update_ticket))
        .route("/v2/ticketing/ticket/{ticketId}/comment", post(comment))
        .route("/v2/ticketing/ticket/{ticketId}/log-entry", get(log_entries))
        .route("/v2/ticketing/statuses", get(statuses))
        .route("/v2/ticketing/trigger/boards", get(boards))
        .route("/v2/ticketing/trigger/board/{boardId}/run", post(run_board))
        .route("/v2/organizations", get(organizations))
        .route("/v2/locations", get(rmm::locations))
        .route("/v2/devices", get(rmm::devices))
        .with_state(st)
}

fn api_error(status: StatusCode, code: &str, message: impl ToString) -> Response {
    (status, Json(json!({"resultCode": code, "errorMessage": message.to_string(), "incidentId": "sim"})))
        .into_response()
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (status, Json(json!({"error": code, "error_description": description}))).into_response()
}

fn authorize(st: &St, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = util::bearer(headers) else {
        return Err(api_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "missing token"));
    };
    match st.sim.tokens().check(token, TokenKind::Access) {
        TokenCheck::Valid(_) => Ok(()),
        TokenCheck::Expired => Err(api_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "token expired")),
        TokenCheck::Revoked | TokenCheck::Unknown => {
            Err(api_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "invalid token"))
        }
    }
}

/// Scopes a NinjaOne client app can be granted.
const SCOPES: [&str; 4] = ["monitoring", "management", "control", "offline_access"];

/// The authorization endpoint, with the user consenting at once. An unknown client or a redirect
/// URI that is not registered gets an error page, never a redirect.
async fn oauth_authorize(State(st): State<Arc<St>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id") != st.config.client_id {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    let redirect = get("redirect_uri");
    if !st.config.redirect_uris.iter().any(|r| r == redirect) {
        return (StatusCode::BAD_REQUEST, "redirect_uri is not registered for this client").into_response();
    }
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let back = |params: &[(&str, &str)]| {
        let query = params.iter().map(|(k, v)| format!("{k}={}", util::urlencode(v))).collect::<Vec<_>>().join("&");
        (StatusCode::FOUND, [(axum::http::header::LOCATION, format!("{redirect}{sep}{query}"))]).into_response()
    };
    let state = get("state");
    if get("response_type") != "code" {
        return back(&[("error", "unsupported_response_type"), ("state", state)]);
    }
    let scope = get("scope");
    if scope.split(' ').any(|s| !SCOPES.contains(&s)) {
        return back(&[("error", "invalid_scope"), ("state", state)]);
    }
    let code = format!("code-{:032x}", rand::random::<u128>());
    st.codes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(code.clone(), CodeGrant { redirect_uri: redirect.to_string(), scope: scope.to_string(), used: false });
    back(&[("code", &code), ("state", state)])
}

async fn token(State(st): State<Arc<St>>, Form(f): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id") != st.config.client_id || get("client_secret") != st.config.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    }
    let tokens = st.sim.tokens();
    let ttl = st.config.access_ttl;
    match get("grant_type") {
        "authorization_code" => {
            let scope = {
                let mut codes = st.codes.lock().unwrap_or_else(|p| p.into_inner());
                match codes.get_mut(get("code")) {
                    None => {
                        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "authorization code is invalid");
                    }
                    Some(g) if g.used => {
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "authorization code was already used",
                        );
                    }
                    Some(g) if g.redirect_uri != get("redirect_uri") => {
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "redirect_uri does not match the authorization request",
                        );
                    }
                    Some(g) => {
                        g.used = true;
                        g.scope.clone()
                    }
                }
            };
            let (access, _) = tokens.issue(TokenKind::Access, &st.config.client_id, &[], Some(ttl));
            let mut body =
                json!({"access_token": access, "token_type": "Bearer", "expires_in": ttl.as_secs(), "scope": scope});
            if scope.split(' ').any(|s| s == "offline_access") {
                body["refresh_token"] = tokens.issue(TokenKind::Refresh, &st.config.client_id, &[], None).0.into();
            }
            Json(body).into_response()
        }
        "refresh_token" => {
            let rt = get("refresh_token").to_string();
            match tokens.check(&rt, TokenKind::Refresh) {
                TokenCheck::Valid(info) => {
                    tokens.consume(&rt, TokenKind::Refresh);
                    st.spent.lock().unwrap_or_else(|p| p.into_inner()).insert(rt);
                    let (access, _) = tokens.issue(TokenKind::Access, &info.subject, &[], Some(ttl));
                    let (next, _) = tokens.issue(TokenKind::Refresh, &info.subject, &[], None);
                    Json(json!({
                        "access_token": access,
                        "token_type": "Bearer",
                        "expires_in": ttl.as_secs(),
                        "scope": "monitoring management control offline_access",
                        "refresh_token": next,
                    }))
                    .into_response()
                }
                TokenCheck::Revoked if st.spent.lock().unwrap_or_else(|p| p.into_inner()).contains(&rt) => {
                    st.replays.fetch_add(1, Ordering::SeqCst);
                    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "refresh token was already used")
                }
                _ => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "refresh token is invalid or revoked"),
            }
        }
        "client_credentials" => {
            if get("scope").contains("offline_access") {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "offline_access is not allowed for client_credentials",
                );
            }
            let (access, _) = tokens.issue(TokenKind::Access, &st.config.client_id, &[], Some(ttl));
            Json(json!({"access_token": access, "token_type": "Bearer", "expires_in": ttl.as_secs(), "scope": get("scope")})).into_response()
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "unsupported grant_type"),
    }
}

/// `v` without null members: the vendor document marks none of these fields nullable, so the
/// simulator leaves absent values out.
fn no_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.into_iter().filter(|(_, x)| !x.is_null()).map(|(k, x)| (k, no_nulls(x))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(no_nulls).collect()),
        other => other,
    }
}

fn status_json(display: &str) -> Value {
    no_nulls(match STATUSES.iter().find(|s| s.2.eq_ignore_ascii_case(display)) {
        Some((id, name, disp, parent)) => {
            json!({"statusId": id, "name": name, "displayName": disp, "parentId": parent})
        }
        None => json!({"name": display, "displayName": display}),
    })
}

fn ticket_json(t: &SimTicket) -> Value {
    no_nulls(json!({
        "id": t.id,
        "version": t.notes.len() + 1,
        "clientId": t.customer_id.as_deref().and_then(|c| c.parse::<i64>().ok()),
        "ticketFormId": t.fields.get("ticketFormId"),
        "locationId": t.fields.get("locationId"),
        "nodeId": t.fields.get("nodeId"),
        "subject": t.title,
        "status": status_json(&t.status),
        "type": t.fields.get("type"),
        "priority": t.priority,
        "requesterUid": t.contact_id,
        "createTime": t.created_at.timestamp() as f64,
        "deleted": false,
    }))
}

async fn create(State(st): State<Arc<St>>, headers: HeaderMap, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    if !content_type_is(&headers, &["application/json"]) {
        return api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type must be application/json",
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(&bytes) else {
        return api_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "invalid JSON");
    };
    let Some(client) = req.get("clientId").and_then(Value::as_i64) else {
        return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "clientId is required");
    };
    if !st.sim.customers().iter().any(|c| c.id == client.to_string()) {
        return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("organization {client} does not exist"));
    }
    let Some(form) = req.get("ticketFormId").and_then(Value::as_i64) else {
        return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "ticketFormId is required");
    };
    let Some(subject) =
        req.get("subject").and_then(Value::as_str).filter(|s| !s.trim().is_empty() && s.chars().count() <= 200)
    else {
        return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "subject is required (at most 200 characters)");
    };
    let desc = req.get("description").cloned().unwrap_or(Value::Null);
    if desc.get("public").and_then(Value::as_bool).is_none() {
        return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "description.public is required");
    }
    let body = desc.get("body").and_then(Value::as_str).unwrap_or_default().to_string();
    let status_in = req.get("status").map(|s| match s {
        Value::String(x) => x.clone(),
        other => other.to_string(),
    });
    let status = match status_in {
        None => return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "status is required"),
        Some(s) => match STATUSES.iter().find(|x| x.0.to_string() == s || x.1.eq_ignore_ascii_case(&s)) {
            Some(x) => x.2.to_string(),
            None => return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("unknown status {s}")),
        },
    };
    let location = req.get("locationId").and_then(Value::as_i64);
    let node = req.get("nodeId").and_then(Value::as_i64);
    let refused =
        st.rmm.lock().unwrap_or_else(std::sync::PoisonError::into_inner).ticket_refs_error(client, location, node);
    if let Some(why) = refused {
        return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", why);
    }
    let mut fields = BTreeMap::new();
    fields.insert("ticketFormId".to_string(), json!(form));
    if let Some(l) = location {
        fields.insert("locationId".to_string(), json!(l));
    }
    if let Some(n) = node {
        fields.insert("nodeId".to_string(), json!(n));
    }
    if let Some(t) = req.get("type").filter(|t| !t.is_null()) {
        fields.insert("type".to_string(), t.clone());
    }
    // Kept as sent (the OpenAPI document gives the shapes; how NinjaOne answers an unknown
    // technician or attribute id is not documented, so the simulator does not invent a refusal).
    if let Some(a) = req.get("assignedAppUserId").filter(|a| !a.is_null()) {
        fields.insert("assignedAppUserId".to_string(), a.clone());
    }
    for attr in req.get("attributes").and_then(Value::as_array).into_iter().flatten() {
        if let (Some(id), Some(v)) = (attr.get("attributeId").and_then(Value::as_i64), attr.get("value")) {
            fields.insert(format!("attribute.{id}"), v.clone());
        }
    }
    let t = st.sim.create_ticket(NewTicket {
        title: subject.to_string(),
        correlation_key: marker_key(&body),
        body,
        status: Some(status),
        customer_id: Some(client.to_string()),
        contact_id: req.get("requesterUid").and_then(Value::as_str).map(str::to_string),
        priority: req.get("priority").and_then(Value::as_str).map(str::to_string),
        fields,
        request: req.clone(),
        ..Default::default()
    });
    Json(ticket_json(&t)).into_response()
}

async fn get_ticket(State(st): State<Arc<St>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    match id.parse::<u64>().ok().and_then(|i| st.sim.ticket(i)) {
        Some(t) => Json(ticket_json(&t)).into_response(),
        None => api_error(StatusCode::NOT_FOUND, "TICKET_NOT_FOUND", format!("ticket {id} not found")),
    }
}

/// `update` (PUT): the spec's required members (`version, clientId, ticketFormId, subject,
/// requesterUid, status`), `status` a status id; a `version` other than the ticket's is refused
/// (the spec calls it the ticket version; the refusal and its code are assumed).
async fn update_ticket(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    if !content_type_is(&headers, &["application/json"]) {
        return api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type must be application/json",
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(&bytes) else {
        return api_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "invalid JSON");
    };
    for k in ["version", "clientId", "ticketFormId", "subject", "requesterUid", "status"] {
        if req.get(k).is_none_or(Value::is_null) {
            return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("{k} is required"));
        }
    }
    let Some(t) = id.parse::<u64>().ok().and_then(|i| st.sim.ticket(i)) else {
        return api_error(StatusCode::NOT_FOUND, "TICKET_NOT_FOUND", format!("ticket {id} not found"));
    };
    let current = ticket_json(&t)["version"].clone();
    if req["version"] != current {
        return api_error(StatusCode::CONFLICT, "VERSION_MISMATCH", format!("ticket {id} is at version {current}"));
    }
    let wanted = req["status"].as_str().unwrap_or_default();
    let Some((_, _, display, _)) = STATUSES.iter().find(|s| s.0.to_string() == wanted) else {
        return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("unknown status '{wanted}'"));
    };
    match st.sim.set_status(&t.id.to_string(), display) {
        Ok(t) => Json(ticket_json(&t)).into_response(),
        Err(e) => api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", e),
    }
}

async fn comment(State(st): State<Arc<St>>, headers: HeaderMap, Path(id): Path<String>, form: Multipart) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let Some(fields) = multipart_fields(form).await else {
        return api_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "expected multipart/form-data");
    };
    let Some(c) = fields.get("comment").and_then(|c| serde_json::from_str::<Value>(c).ok()) else {
        return api_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "part 'comment' must be JSON");
    };
    let (Some(body), Some(public)) = (c.get("body").and_then(Value::as_str), c.get("public").and_then(Value::as_bool))
    else {
        return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "comment.body and comment.public are required");
    };
    let Some(tid) = id.parse::<u64>().ok().filter(|i| st.sim.ticket(*i).is_some()) else {
        return api_error(StatusCode::NOT_FOUND, "TICKET_NOT_FOUND", format!("ticket {id} not found"));
    };
    match st.sim.add_note(tid, None, body.to_string(), !public, "api") {
        Some(_) => StatusCode::OK.into_response(),
        None => api_error(StatusCode::NOT_FOUND, "TICKET_NOT_FOUND", format!("ticket {id} not found")),
    }
}

async fn log_entries(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let Some(t) = id.parse::<u64>().ok().and_then(|i| st.sim.ticket(i)) else {
        return api_error(StatusCode::NOT_FOUND, "TICKET_NOT_FOUND", format!("ticket {id} not found"));
    };
    let mut entries = vec![
        json!({"id": t.id * 100, "type": "DESCRIPTION", "body": t.body, "publicEntry": false, "createTime": t.created_at.timestamp() as f64}),
    ];
    for n in &t.notes {
        entries.push(json!({"id": t.id * 100 + n.id, "type": "COMMENT", "body": n.body, "publicEntry": !n.internal, "createTime": n.created_at.timestamp() as f64}));
    }
    if let Some(ty) = q.get("type") {
        entries.retain(|e| e["type"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(ty)));
    }
    Json(entries).into_response()
}

async fn statuses(State(st): State<Arc<St>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    Json(STATUSES.iter().map(|s| status_json(s.2)).collect::<Vec<_>>()).into_response()
}

async fn boards(State(st): State<Arc<St>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    Json(BOARDS.iter().map(|(id, name)| json!({"id": id, "name": name})).collect::<Vec<_>>()).into_response()
}

fn filter_matches(t: &SimTicket, f: &Value) -> Result<bool, String> {
    let field = f.get("field").and_then(Value::as_str).unwrap_or_default();
    let op = f.get("operator").and_then(Value::as_str).unwrap_or_default();
    // The API types `value` as a string; list operators take comma-separated values. Anything
    // else (the integer array we once sent) is refused.
    let list: Vec<String> = match f.get("value") {
        Some(Value::String(s)) => s.split(',').map(|x| x.trim().to_string()).collect(),
        other => {
            let got = other.map(Value::to_string).unwrap_or_else(|| "nothing".into());
            return Err(format!("filter value must be a string (comma-separated for list operators), got {got}"));
        }
    };
    let actual = match field {
        "id" => t.id.to_string(),
        "status" => t.status.clone(),
        "clientId" | "organization" => t.customer_id.clone().unwrap_or_default(),
        other => return Err(format!("unsupported filter field '{other}'")),
    };
    let hit = list.iter().any(|v| v.eq_ignore_ascii_case(&actual));
    match op {
        "in" | "is" => Ok(hit),
        "not_in" | "is_not" => Ok(!hit),
        other => Err(format!("unsupported operator '{other}'")),
    }
}

async fn run_board(State(st): State<Arc<St>>, headers: HeaderMap, Path(board): Path<String>, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let board_id: i64 = board.parse().unwrap_or(-1);
    if !BOARDS.iter().any(|b| b.0 == board_id) {
        return api_error(StatusCode::NOT_FOUND, "BOARD_NOT_FOUND", format!("board {board} not found"));
    }
    if !content_type_is(&headers, &["application/json"]) {
        return api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type must be application/json",
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(&bytes) else {
        return api_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "invalid JSON");
    };
    let size = req.get("pageSize").and_then(Value::as_u64).unwrap_or(50) as usize;
    if size == 0 || size > st.config.max_page_size {
        return api_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!("pageSize must be 1..={}", st.config.max_page_size),
        );
    }
    let cursor = req.get("lastCursorId").and_then(Value::as_u64).unwrap_or(0);
    let search = req.get("searchCriteria").and_then(Value::as_str).map(str::to_string);
    let filters: Vec<Value> = req.get("filters").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut rows = Vec::new();
    for t in st.sim.tickets() {
        if t.id <= cursor || (board_id == 1 && t.closed_at.is_some()) {
            continue;
        }
        if search.as_deref().is_some_and(|s| !contains_ci(&t.title, s) && !contains_ci(&t.body, s)) {
            continue;
        }
        let mut keep = true;
        for f in &filters {
            match filter_matches(&t, f) {
                Ok(m) => keep &= m,
                Err(e) => return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", e),
            }
        }
        if keep {
            rows.push(t);
        }
        if rows.len() == size {
            break;
        }
    }
    let last = rows.last().map(|t| t.id);
    let data: Vec<Value> = rows
        .iter()
        .map(|t| {
            let s = status_json(&t.status);
            json!({
                "id": t.id,
                "summary": t.title,
                "status": {"statusId": s["statusId"], "displayName": s["displayName"], "parentId": s["parentId"]},
                "organization": t.customer_id,
                "priority": t.priority,
                "createTime": t.created_at.timestamp() as f64,
            })
        })
        .collect();
    Json(no_nulls(json!({"data": data, "metadata": {"lastCursorId": last, "columns": ["id", "summary", "status"]}})))
        .into_response()
}

async fn organizations(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let size = q.get("pageSize").and_then(|p| p.parse::<usize>().ok()).unwrap_or(100).clamp(1, st.config.max_page_size);
    let after = q.get("after").and_then(|a| a.parse::<i64>().ok()).unwrap_or(i64::MIN);
    let mut orgs: Vec<(i64, String)> = st
        .sim
        .customers()
        .into_iter()
        .filter_map(|c| c.id.parse::<i64>().ok().map(|id| (id, c.name)))
        .filter(|(id, _)| *id > after)
        .collect();
    orgs.sort();
    let rows: Vec<Value> = orgs.into_iter().take(size).map(|(id, name)| json!({"id": id, "name": name})).collect();
    Json(rows).into_response()
}
