//! The built-in sandbox desk: a small but real ITSM with its own REST API, used by
//! `ticket-bridge serve` when no connection is configured, and by tests.
//!
//! API (JSON; errors are `{"error": code, "message": text}`):
//!
//! | method | path | notes |
//! |---|---|---|
//! | POST | /api/v1/auth/token | `{"api_key"}` → `{"access_token","token_type":"Bearer","expires_in","scope"}`; 401 `invalid_api_key` / `expired_api_key` |
//! | GET | /api/v1/me | key id, scopes, token expiry |
//! | POST | /api/v1/tickets | `{"title","body","correlation_key","customer_id","contact_id","contact_email","priority","queue","type","status"}` → 201 ticket |
//! | GET | /api/v1/tickets/{id} | ticket or 404 |
//! | GET | /api/v1/tickets?ids=1,2&correlation_key=&status=&page=&per_page= | `{"items","page","per_page","pages","total","next_page"}` |
//! | PATCH | /api/v1/tickets/{id} | `{"status"}` → 200 ticket; 422 `invalid_status` |
//! | POST | /api/v1/tickets/{id}/notes | `{"title","body","internal"}` → 201 note |
//! | GET | /api/v1/customers?page=&per_page= | paged customers |
//! | POST | /api/v1/customers | `{"name"}` → 201 customer (numeric id) |
//! | GET | /api/v1/contacts?email=&customer_id= | matching contacts |
//! | POST | /api/v1/contacts | `{"customer_id","name","email"?}` → 201 contact; 422 `unknown_customer` |
//!
//! Every call but the token call needs `Authorization: Bearer <access_token>`: 401
//! `invalid_token` (unknown or revoked) / `token_expired`; writes need scope `tickets:write`
//! (403 `insufficient_scope`). Statuses: New, In Progress, Waiting, Resolved, Closed, Rejected;
//! each ticket also carries its stable `category`: open, pending, done, rejected.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::server::SimServer;
use crate::sim::{NewTicket, Sim, SimProfile, SimTicket};
use crate::tokens::{TokenCheck, TokenInfo, TokenKind, random_token};
use crate::util;

/// The desk's statuses, in workflow order.
pub const STATUSES: [&str; 6] = ["New", "In Progress", "Waiting", "Resolved", "Closed", "Rejected"];

/// Scope needed to read tickets.
pub const SCOPE_READ: &str = "tickets:read";
/// Scope needed to create tickets and notes.
pub const SCOPE_WRITE: &str = "tickets:write";

/// The stable category of a desk status: `open`, `pending`, `done` or `rejected`.
pub fn category(status: &str) -> &'static str {
    match status.to_ascii_lowercase().as_str() {
        "waiting" => "pending",
        "resolved" | "closed" => "done",
        "rejected" => "rejected",
        _ => "open",
    }
}

/// An API key clients exchange for access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub key: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// A key with read and write scopes that never expires.
    pub fn new(id: &str, key: &str) -> Self {
        Self { id: id.into(), key: key.into(), scopes: vec![SCOPE_READ.into(), SCOPE_WRITE.into()], expires_at: None }
    }
}

/// Desk settings.
#[derive(Debug, Clone)]
pub struct DeskConfig {
    pub api_keys: Vec<ApiKey>,
    /// Lifetime of access tokens.
    pub token_ttl: Duration,
    /// Largest page size (`per_page` is clamped to it).
    pub max_per_page: usize,
    /// Keep tickets in this JSON file across restarts.
    pub state_file: Option<PathBuf>,
}

impl Default for DeskConfig {
    /// One random read/write key, 1 h tokens, pages of up to 25, in memory.
    fn default() -> Self {
        Self {
            api_keys: vec![ApiKey::new("default", &random_token("sbx_"))],
            token_ttl: Duration::from_secs(3600),
            max_per_page: 25,
            state_file: None,
        }
    }
}

/// Profile of the desk for the shared simulator core.
pub fn profile() -> SimProfile {
    SimProfile {
        name: "sandbox-desk",
        initial_status: "New".into(),
        closed_status: "Resolved".into(),
        statuses: STATUSES.iter().map(|s| s.to_string()).collect(),
        closed_statuses: vec!["Resolved".into(), "Closed".into(), "Rejected".into()],
        error_body: (200, json!({"error": "internal_error", "message": "database is locked"})),
        server_error_body: json!({"error": "internal_error", "message": "unexpected error"}),
        first_id: 1001,
        number_prefix: "SBX-".into(),
    }
}

struct DeskState {
    sim: Sim,
    config: DeskConfig,
}

/// A running sandbox desk.
pub struct Desk {
    server: SimServer,
    config: DeskConfig,
}

impl Desk {
    /// Starts the desk on 127.0.0.1 with an ephemeral port.
    pub async fn spawn(config: DeskConfig) -> std::io::Result<Self> {
        Self::spawn_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts the desk on `addr`.
    pub async fn spawn_on(addr: SocketAddr, config: DeskConfig) -> std::io::Result<Self> {
        let sim = Sim::new(profile());
        if let Some(path) = &config.state_file {
            sim.persist_to(path.clone())?;
        }
        let server = SimServer::spawn_on(addr, sim.clone(), router(sim, config.clone())).await?;
        Ok(Self { server, config })
    }

    /// The first API key (what a connection's secret needs as `api_key`).
    pub fn api_key(&self) -> &str {
        self.config.api_keys.first().map(|k| k.key.as_str()).unwrap_or_default()
    }

    pub fn config(&self) -> &DeskConfig {
        &self.config
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

impl Deref for Desk {
    type Target = SimServer;
    fn deref(&self) -> &SimServer {
        &self.server
    }
}

/// The desk's API routes over `sim`.
pub fn router(sim: Sim, config: DeskConfig) -> Router {
    let st = Arc::new(DeskState { sim, config });
    Router::new()
        .route("/api/v1/auth/token", post(token))
        .route("/api/v1/me", get(me))
        .route("/api/v1/tickets", post(create).get(list))
        .route("/api/v1/tickets/{id}", get(get_ticket).patch(update_ticket))
        .route("/api/v1/tickets/{id}/notes", post(add_note))
        .route("/api/v1/customers", get(customers).post(create_customer))
        .route("/api/v1/contacts", get(contacts).post(create_contact))
        .with_state(st)
}

fn error(code: StatusCode, err: &str, message: impl ToString) -> Response {
    (code, Json(json!({"error": err, "message": message.to_string()}))).into_response()
}

fn parse<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(bytes).map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_request", e))
}

fn authorize(st: &DeskState, headers: &HeaderMap, scope: &str) -> Result<TokenInfo, Response> {
    let Some(token) = util::bearer(headers) else {
        return Err(error(StatusCode::UNAUTHORIZED, "invalid_token", "missing bearer token"));
    };
    let info = match st.sim.tokens().check(token, TokenKind::Access) {
        TokenCheck::Valid(i) => i,
        TokenCheck::Expired => return Err(error(StatusCode::UNAUTHORIZED, "token_expired", "access token expired")),
        TokenCheck::Revoked | TokenCheck::Unknown => {
            return Err(error(StatusCode::UNAUTHORIZED, "invalid_token", "unknown or revoked access token"));
        }
    };
    if !info.scopes.iter().any(|s| s == scope) {
        return Err((
            StatusCode::FORBIDDEN,
            Json(
                json!({"error": "insufficient_scope", "message": format!("requires scope {scope}"), "required": scope}),
            ),
        )
            .into_response());
    }
    Ok(info)
}

fn ticket_json(t: &SimTicket) -> Value {
    json!({
        "id": t.id,
        "number": t.number,
        "title": t.title,
        "body": t.body,
        "status": t.status,
        "category": category(&t.status),
        "customer_id": t.customer_id,
        "contact_id": t.contact_id,
        "contact_email": t.requester,
        "priority": t.priority,
        "queue": t.queue,
        "type": t.fields.get("type"),
        "correlation_key": t.correlation_key,
        "notes_count": t.notes.len(),
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "closed_at": t.closed_at,
    })
}

#[derive(Deserialize)]
struct TokenReq {
    api_key: String,
}

async fn token(State(st): State<Arc<DeskState>>, bytes: Bytes) -> Response {
    let req: TokenReq = match parse(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(key) = st.config.api_keys.iter().find(|k| k.key == req.api_key) else {
        return error(StatusCode::UNAUTHORIZED, "invalid_api_key", "unknown API key");
    };
    if key.expires_at.is_some_and(|e| e <= Utc::now()) {
        return error(StatusCode::UNAUTHORIZED, "expired_api_key", format!("API key '{}' has expired", key.id));
    }
    let (token, _) = st.sim.tokens().issue(TokenKind::Access, &key.id, &key.scopes, Some(st.config.token_ttl));
    Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": st.config.token_ttl.as_secs(),
        "scope": key.scopes.join(" "),
    }))
    .into_response()
}

async fn me(State(st): State<Arc<DeskState>>, headers: HeaderMap) -> Response {
    match authorize(&st, &headers, SCOPE_READ) {
        Ok(info) => Json(json!({"key_id": info.subject, "scopes": info.scopes, "token_expires_at": info.expires_at}))
            .into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReq {
    title: String,
    #[serde(default)]
    body: String,
    correlation_key: Option<String>,
    customer_id: Option<String>,
    contact_id: Option<String>,
    contact_email: Option<String>,
    priority: Option<String>,
    queue: Option<String>,
    #[serde(rename = "type")]
    ticket_type: Option<String>,
    status: Option<String>,
    /// Agent the ticket is assigned to.
    assignee: Option<String>,
    /// Custom fields by name (any JSON values).
    #[serde(default)]
    custom_fields: serde_json::Map<String, Value>,
}

async fn create(State(st): State<Arc<DeskState>>, headers: HeaderMap, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers, SCOPE_WRITE) {
        return r;
    }
    let req: CreateReq = match parse(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.title.trim().is_empty() || req.title.chars().count() > 255 {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_title", "title must be 1 to 255 characters");
    }
    let status = match req.status.as_deref().map(|s| st.sim.canonical_status(s)) {
        Some(None) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_status", "unknown status"),
        Some(Some(s)) => Some(s),
        None => None,
    };
    if let Some(c) = req.customer_id.as_ref().filter(|c| !st.sim.customers().iter().any(|x| &x.id == *c)) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_customer", format!("no customer '{c}'"));
    }
    let request: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut fields = std::collections::BTreeMap::new();
    if let Some(t) = req.ticket_type {
        fields.insert("type".to_string(), Value::String(t));
    }
    if let Some(a) = req.assignee {
        fields.insert("assignee".to_string(), Value::String(a));
    }
    if !req.custom_fields.is_empty() {
        fields.insert("custom_fields".to_string(), Value::Object(req.custom_fields));
    }
    let t = st.sim.create_ticket(NewTicket {
        number: None,
        title: req.title,
        body: req.body,
        status,
        customer_id: req.customer_id,
        contact_id: req.contact_id,
        requester: req.contact_email,
        queue: req.queue,
        priority: req.priority,
        correlation_key: req.correlation_key,
        fields,
        request,
    });
    (StatusCode::CREATED, Json(ticket_json(&t))).into_response()
}

async fn get_ticket(State(st): State<Arc<DeskState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&st, &headers, SCOPE_READ) {
        return r;
    }
    match id.parse::<u64>().ok().and_then(|id| st.sim.ticket(id)) {
        Some(t) => Json(ticket_json(&t)).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", format!("no ticket {id}")),
    }
}

fn paging(q: &HashMap<String, String>, max: usize) -> Result<(usize, usize), Response> {
    let num = |k: &str, d: usize| match q.get(k) {
        None => Ok(d),
        Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            error(StatusCode::BAD_REQUEST, "invalid_request", format!("'{k}' must be a positive integer"))
        }),
    };
    Ok((num("page", 1)?, num("per_page", max)?.min(max)))
}

fn paged(items: Vec<Value>, page: usize, per_page: usize) -> Response {
    let total = items.len();
    let (items, pages) = util::page(&items, page, per_page);
    let next = (page < pages).then_some(page + 1);
    Json(json!({"items": items, "page": page, "per_page": per_page, "pages": pages, "total": total, "next_page": next}))
        .into_response()
}

async fn list(
    State(st): State<Arc<DeskState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers, SCOPE_READ) {
        return r;
    }
    let (page, per_page) = match paging(&q, st.config.max_per_page) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let ids: Option<Vec<u64>> = match q.get("ids") {
        None => None,
        Some(raw) => match raw.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse::<u64>()).collect() {
            Ok(v) => Some(v),
            Err(_) => {
                return error(StatusCode::BAD_REQUEST, "invalid_request", "'ids' must be comma-separated ticket ids");
            }
        },
    };
    let items: Vec<Value> = st
        .sim
        .tickets_matching(|t| {
            ids.as_ref().is_none_or(|ids| ids.contains(&t.id))
                && q.get("correlation_key").is_none_or(|k| t.correlation_key.as_ref() == Some(k))
                && q.get("status").is_none_or(|s| t.status.eq_ignore_ascii_case(s))
        })
        .iter()
        .map(ticket_json)
        .collect();
    paged(items, page, per_page)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateReq {
    status: String,
}

async fn update_ticket(
    State(st): State<Arc<DeskState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = authorize(&st, &headers, SCOPE_WRITE) {
        return r;
    }
    let req: UpdateReq = match parse(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(t) = id.parse::<u64>().ok().and_then(|i| st.sim.ticket(i)) else {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no ticket {id}"));
    };
    match st.sim.set_status(&t.id.to_string(), &req.status) {
        Ok(t) => Json(ticket_json(&t)).into_response(),
        Err(_) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_status", format!("unknown status '{}'", req.status)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteReq {
    title: Option<String>,
    body: String,
    #[serde(default = "yes")]
    internal: bool,
}

fn yes() -> bool {
    true
}

async fn add_note(
    State(st): State<Arc<DeskState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let info = match authorize(&st, &headers, SCOPE_WRITE) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let req: NoteReq = match parse(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.body.trim().is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "note body must not be empty");
    }
    let Some(tid) = id.parse::<u64>().ok() else {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no ticket {id}"));
    };
    match st.sim.add_note(tid, req.title, req.body, req.internal, &info.subject) {
        Some(n) => (
            StatusCode::CREATED,
            Json(json!({"id": n.id, "ticket_id": tid, "internal": n.internal, "created_at": n.created_at})),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", format!("no ticket {id}")),
    }
}

async fn customers(
    State(st): State<Arc<DeskState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers, SCOPE_READ) {
        return r;
    }
    let (page, per_page) = match paging(&q, st.config.max_per_page) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let items = st.sim.customers().into_iter().map(|c| json!({"id": c.id, "name": c.name})).collect();
    paged(items, page, per_page)
}

async fn contacts(
    State(st): State<Arc<DeskState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers, SCOPE_READ) {
        return r;
    }
    let items: Vec<Value> = st
        .sim
        .contacts()
        .into_iter()
        .filter(|c| q.get("email").is_none_or(|e| c.email.eq_ignore_ascii_case(e)))
        .filter(|c| q.get("customer_id").is_none_or(|id| c.customer_id.as_ref() == Some(id)))
        .map(|c| json!({"id": c.id, "customer_id": c.customer_id, "email": c.email, "name": c.name}))
        .collect();
    Json(json!({"items": items})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerReq {
    name: String,
}

async fn create_customer(State(st): State<Arc<DeskState>>, headers: HeaderMap, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers, SCOPE_WRITE) {
        return r;
    }
    let req: CustomerReq = match parse(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.name.trim().is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_name", "name must not be empty");
    }
    let c = st.sim.create_customer(req.name.trim());
    (StatusCode::CREATED, Json(json!({"id": c.id, "name": c.name}))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactReq {
    customer_id: String,
    name: String,
    #[serde(default)]
    email: Option<String>,
}

async fn create_contact(State(st): State<Arc<DeskState>>, headers: HeaderMap, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers, SCOPE_WRITE) {
        return r;
    }
    let req: ContactReq = match parse(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.name.trim().is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_name", "name must not be empty");
    }
    if !st.sim.customers().iter().any(|c| c.id == req.customer_id) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_customer",
            format!("no customer '{}'", req.customer_id),
        );
    }
    let email = req.email.as_deref().map(str::trim).unwrap_or_default();
    let c = st.sim.create_contact(Some(&req.customer_id), email, req.name.trim());
    (StatusCode::CREATED, Json(json!({"id": c.id, "customer_id": c.customer_id, "email": c.email, "name": c.name})))
        .into_response()
}
