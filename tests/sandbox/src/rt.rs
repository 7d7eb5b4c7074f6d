//! Request Tracker 5 REST2 simulator (`/REST/2.0`): token or basic auth, tickets with custom
//! fields, comments / correspondence, TicketSQL search with paging, queues.
//!
//! Shapes follow RT's REST2 docs and code and what a real RT 5.0.3 answered (see
//! `docs/psa-connectors.md`, `contracts/rt.json`): create answers 201 `{"id","type","_url"}` with
//! a relative `Location`; collections are `{"count","page","pages","per_page","total","next_page",
//! "prev_page","items"}`, where `total`/`pages` are `null` for a user without the global
//! ShowTicket right (RT >= 5.0.5; 5.0.6+ still links `next_page`) and an empty result has
//! `pages: 0.0`; JSON writes without `Content-Type: application/json` get 415; unknown custom
//! fields are ignored on create and match nothing in a search; errors are `{"message": …}` with a
//! proper status (401 `{"message":"Unauthorized"}`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use crate::server::SimServer;
use crate::sim::{NewTicket, Sim, SimProfile, SimTicket};
use crate::ticketsql;
use crate::tokens::{TokenCheck, TokenInfo, TokenKind};
use crate::util;

/// The default lifecycle.
pub const STATUSES: [&str; 6] = ["new", "open", "stalled", "resolved", "rejected", "deleted"];

/// RT simulator settings.
#[derive(Debug, Clone)]
pub struct RtConfig {
    /// Auth tokens (`Authorization: token …`) with full rights.
    pub tokens: Vec<String>,
    /// Tokens that may read but not create or comment (403).
    pub read_only_tokens: Vec<String>,
    /// Users for basic auth: (name, password).
    pub users: Vec<(String, String)>,
    pub queues: Vec<String>,
    /// Ticket custom fields that exist.
    pub custom_fields: Vec<String>,
    /// If set, the custom field holding the bridge's correlation key (for [`SimTicket::correlation_key`]).
    pub correlation_cf: Option<String>,
    /// Largest `per_page` (RT: 100).
    pub max_per_page: usize,
    /// Whether the tokens' user holds ShowTicket globally (or is SuperUser). Without it RT 5.0.5
    /// and later answer searches with `total` and `pages` set to `null` (`CurrentUserCanSeeAll`
    /// in `RT::Tickets`), the usual case for an integration user granted rights per queue.
    pub global_show_ticket: bool,
}

impl Default for RtConfig {
    fn default() -> Self {
        Self {
            tokens: vec!["1-14-rt-test-token".into()],
            read_only_tokens: Vec::new(),
            users: vec![("root".into(), "password".into())],
            queues: vec!["General".into()],
            custom_fields: vec!["TicketBridgeKey".into(), "Customer".into()],
            correlation_cf: Some("TicketBridgeKey".into()),
            max_per_page: 100,
            global_show_ticket: false,
        }
    }
}

/// Profile for the shared core.
pub fn profile() -> SimProfile {
    SimProfile {
        name: "rt",
        initial_status: "new".into(),
        closed_status: "resolved".into(),
        statuses: STATUSES.iter().map(|s| s.to_string()).collect(),
        closed_statuses: vec!["resolved".into(), "rejected".into(), "deleted".into()],
        error_body: (200, json!({"message": "Error: database is unavailable"})),
        server_error_body: json!({"message": "Internal Server Error"}),
        first_id: 1,
        number_prefix: String::new(),
    }
}

struct RtState {
    sim: Sim,
    config: RtConfig,
}

/// A running RT simulator.
pub struct RtSim {
    server: SimServer,
    config: RtConfig,
}

impl RtSim {
    pub async fn spawn(config: RtConfig) -> std::io::Result<Self> {
        let sim = Sim::new(profile());
        for t in &config.tokens {
            sim.tokens().insert(t, static_token("root", &["CreateTicket", "CommentOnTicket", "ShowTicket"]));
        }
        for t in &config.read_only_tokens {
            sim.tokens().insert(t, static_token("viewer", &["ShowTicket"]));
        }
        let server = SimServer::spawn(sim.clone(), router(sim, config.clone())).await?;
        Ok(Self { server, config })
    }

    pub fn config(&self) -> &RtConfig {
        &self.config
    }
}

impl Deref for RtSim {
    type Target = SimServer;
    fn deref(&self) -> &SimServer {
        &self.server
    }
}

fn static_token(user: &str, rights: &[&str]) -> TokenInfo {
    TokenInfo {
        kind: TokenKind::Static,
        subject: user.into(),
        scopes: rights.iter().map(|s| s.to_string()).collect(),
        expires_at: None,
        revoked: false,
    }
}

/// The REST2 routes.
pub fn router(sim: Sim, config: RtConfig) -> Router {
    let st = Arc::new(RtState { sim, config });
    Router::new()
        .route("/REST/2.0/rt", get(version))
        .route("/REST/2.0/queues/all", get(queues))
        .route("/REST/2.0/queue/{id}", get(queue))
        .route("/REST/2.0/ticket", post(create))
        .route("/REST/2.0/ticket/{id}", get(ticket).put(update))
        .route("/REST/2.0/ticket/{id}/comment", post(comment))
        .route("/REST/2.0/ticket/{id}/correspond", post(correspond))
        .route("/REST/2.0/tickets", get(search))
        .with_state(st)
}

fn msg(code: StatusCode, m: impl ToString) -> Response {
    (code, Json(json!({"message": m.to_string()}))).into_response()
}

/// Authenticates the request; returns the user's rights.
fn auth(st: &RtState, headers: &HeaderMap, query: &HashMap<String, String>) -> Result<Vec<String>, Response> {
    let token = util::auth_scheme(headers, "token").map(str::to_string).or_else(|| query.get("token").cloned());
    if let Some(t) = token {
        return match st.sim.tokens().check(&t, TokenKind::Static) {
            TokenCheck::Valid(info) => Ok(info.scopes),
            _ => Err(msg(StatusCode::UNAUTHORIZED, "Unauthorized")),
        };
    }
    if util::basic(headers).is_some_and(|(u, p)| st.config.users.iter().any(|(un, pw)| *un == u && *pw == p)) {
        return Ok(vec!["CreateTicket".into(), "CommentOnTicket".into(), "ShowTicket".into()]);
    }
    Err(msg(StatusCode::UNAUTHORIZED, "Unauthorized"))
}

fn need(rights: &[String], right: &str) -> Result<(), Response> {
    if rights.iter().any(|r| r == right) { Ok(()) } else { Err(msg(StatusCode::FORBIDDEN, "Permission Denied")) }
}

fn base(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}/REST/2.0")
}

fn ticket_json(t: &SimTicket, base: &str) -> Value {
    let cfs: Vec<Value> = t
        .fields
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("CF.").map(|name| json!({"name": name, "type": "customfield", "values": [v]}))
        })
        .collect();
    let owner = t.fields.get("Owner").and_then(Value::as_str).unwrap_or("Nobody");
    json!({
        "id": t.id,
        "type": "ticket",
        "_url": format!("{base}/ticket/{}", t.id),
        "Subject": t.title,
        "Status": t.status,
        "Queue": {"id": t.queue, "type": "queue", "_url": format!("{base}/queue/{}", t.queue.as_deref().unwrap_or(""))},
        "Owner": {"id": owner, "type": "user", "_url": format!("{base}/user/{owner}")},
        "Requestor": t.requester.iter().map(|r| json!({"id": r, "type": "user", "_url": format!("{base}/user/{r}")})).collect::<Vec<_>>(),
        "Priority": t.priority.clone().unwrap_or_else(|| "0".into()),
        "Created": t.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "LastUpdated": t.updated_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "Resolved": t.closed_at.map(|c| c.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
        "CustomFields": cfs,
        "_hyperlinks": [
            {"ref": "self", "type": "ticket", "id": t.id, "_url": format!("{base}/ticket/{}", t.id)},
            {"ref": "comment", "_url": format!("{base}/ticket/{}/comment", t.id)},
            {"ref": "correspond", "_url": format!("{base}/ticket/{}/correspond", t.id)},
        ],
    })
}

async fn version(
    State(st): State<Arc<RtState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match auth(&st, &headers, &q) {
        Ok(_) => Json(json!({"Version": "5.0.7", "Plugins": []})).into_response(),
        Err(r) => r,
    }
}

async fn queues(
    State(st): State<Arc<RtState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = auth(&st, &headers, &q) {
        return r;
    }
    let b = base(&headers);
    let items: Vec<Value> = st
        .config
        .queues
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"id": i + 1, "type": "queue", "_url": format!("{b}/queue/{}", i + 1), "Name": name}))
        .collect();
    let n = items.len();
    Json(json!({"count": n, "page": 1, "pages": 1, "per_page": 20, "total": n, "items": items})).into_response()
}

async fn queue(
    State(st): State<Arc<RtState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = auth(&st, &headers, &q) {
        return r;
    }
    let found =
        st.config.queues.iter().enumerate().find(|(i, n)| n.eq_ignore_ascii_case(&id) || (i + 1).to_string() == id);
    match found {
        Some((i, name)) => {
            let b = base(&headers);
            let cfs: Vec<Value> = st
                .config
                .custom_fields
                .iter()
                .enumerate()
                .map(|(n, cf)| {
                    json!({"id": (n + 2).to_string(), "name": cf, "ref": "customfield", "type": "customfield",
                        "_url": format!("{b}/customfield/{}", n + 2)})
                })
                .collect();
            Json(json!({"id": i + 1, "Name": name, "Lifecycle": "default", "Disabled": "0", "TicketCustomFields": cfs}))
                .into_response()
        }
        None => msg(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"))
}

/// RT's answer to a JSON-only write sent as something else (`RequestBodyIsJSON`).
fn unsupported_media_type() -> Response {
    msg(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type")
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(a) => a.first().and_then(|x| x.as_str()).map(str::to_string),
        _ => None,
    }
}

async fn create(
    State(st): State<Arc<RtState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> Response {
    let rights = match auth(&st, &headers, &q) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = need(&rights, "CreateTicket") {
        return r;
    }
    if !is_json(&headers) {
        return unsupported_media_type();
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&bytes) else {
        return msg(StatusCode::BAD_REQUEST, "JSON object required");
    };
    let Some(queue) = text_of(body.get("Queue")) else {
        return msg(StatusCode::BAD_REQUEST, "Could not create ticket. Queue not set");
    };
    let Some(queue) = st.config.queues.iter().find(|x| x.eq_ignore_ascii_case(&queue)).cloned() else {
        // RT answers an unknown queue as one the user may not create tickets in.
        return msg(StatusCode::FORBIDDEN, format!("No permission to create tickets in the queue '{queue}'"));
    };
    let status = match text_of(body.get("Status")) {
        None => None,
        Some(s) => match st.sim.canonical_status(&s) {
            Some(s) => Some(s),
            None => {
                return msg(
                    StatusCode::BAD_REQUEST,
                    format!("Status '{s}' isn't a valid status for tickets in this queue."),
                );
            }
        },
    };
    let mut fields = std::collections::BTreeMap::new();
    if let Some(cfs) = body.get("CustomFields") {
        let Some(cfs) = cfs.as_object() else { return msg(StatusCode::BAD_REQUEST, "CustomFields must be an object") };
        for (name, v) in cfs {
            // A real RT creates the ticket and drops values of custom fields that do not apply.
            if !st.config.custom_fields.iter().any(|c| c == name) {
                continue;
            }
            fields.insert(format!("CF.{name}"), Value::String(text_of(Some(v)).unwrap_or_default()));
        }
    }
    // RT loads the proposed owner by id, name, then e-mail; one it cannot load (or who may not own
    // tickets) is a non-fatal error and the ticket keeps Nobody (RT::Record::Role::Roles
    // _ResolveRoles, RT::Ticket::Create).
    if let Some(owner) = text_of(body.get("Owner"))
        && let Some((name, _)) = st.config.users.iter().find(|(n, _)| n.eq_ignore_ascii_case(&owner))
    {
        fields.insert("Owner".to_string(), Value::String(name.clone()));
    }
    let correlation_key = st
        .config
        .correlation_cf
        .as_ref()
        .and_then(|cf| fields.get(&format!("CF.{cf}")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| subject_marker(body.get("Subject").and_then(Value::as_str).unwrap_or("")));
    let t = st.sim.create_ticket(NewTicket {
        title: body.get("Subject").and_then(Value::as_str).unwrap_or("").to_string(),
        body: body.get("Content").and_then(Value::as_str).unwrap_or("").to_string(),
        status,
        requester: text_of(body.get("Requestor")),
        queue: Some(queue),
        priority: text_of(body.get("Priority")),
        correlation_key,
        fields,
        request: Value::Object(body),
        ..NewTicket::default()
    });
    let url = format!("{}/ticket/{}", base(&headers), t.id);
    let mut resp =
        (StatusCode::CREATED, Json(json!({"id": t.id.to_string(), "type": "ticket", "_url": url}))).into_response();
    if let Ok(v) = format!("/REST/2.0/ticket/{}", t.id).parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The key in a `[tb:KEY]` subject marker.
pub(crate) fn subject_marker(subject: &str) -> Option<String> {
    let start = subject.rfind("[tb:")? + 4;
    let end = subject[start..].find(']')? + start;
    Some(subject[start..end].to_string())
}

fn find(st: &RtState, id: &str) -> Result<SimTicket, Response> {
    id.parse::<u64>()
        .ok()
        .and_then(|id| st.sim.ticket(id))
        .ok_or_else(|| msg(StatusCode::NOT_FOUND, "Resource does not exist"))
}

async fn ticket(
    State(st): State<Arc<RtState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = auth(&st, &headers, &q) {
        return r;
    }
    match find(&st, &id) {
        Ok(t) => Json(ticket_json(&t, &base(&headers))).into_response(),
        Err(r) => r,
    }
}

async fn update(
    State(st): State<Arc<RtState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> Response {
    let rights = match auth(&st, &headers, &q) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = need(&rights, "CreateTicket") {
        return r;
    }
    let t = match find(&st, &id) {
        Ok(t) => t,
        Err(r) => return r,
    };
    if !is_json(&headers) {
        return unsupported_media_type();
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&bytes) else {
        return msg(StatusCode::BAD_REQUEST, "JSON object required");
    };
    let mut messages = Vec::new();
    if let Some(s) = text_of(body.get("Status")) {
        match st.sim.set_status(&t.id.to_string(), &s) {
            Ok(_) => messages.push(format!("Ticket {}: Status changed from '{}' to '{s}'", t.id, t.status)),
            Err(_) => messages.push(format!("Ticket {}: Status '{s}' isn't a valid status", t.id)),
        }
    }
    Json(messages).into_response()
}

async fn add_article(
    st: &RtState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    id: &str,
    bytes: &Bytes,
    internal: bool,
) -> Response {
    let rights = match auth(st, headers, q) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = need(&rights, "CommentOnTicket") {
        return r;
    }
    let t = match find(st, id) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !is_json(headers) && !content_type.starts_with("text/plain") && !content_type.starts_with("text/html") {
        return unsupported_media_type();
    }
    let (subject, content) = if is_json(headers) {
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
            return msg(StatusCode::BAD_REQUEST, "JSON object required");
        };
        (
            body.get("Subject").and_then(Value::as_str).map(str::to_string),
            text_of(body.get("Content")).unwrap_or_default(),
        )
    } else {
        (None, String::from_utf8_lossy(bytes).into_owned())
    };
    if content.is_empty() {
        return msg(StatusCode::BAD_REQUEST, "No content provided");
    }
    st.sim.add_note(t.id, subject, content, internal, "root");
    let what = if internal { "Comments added" } else { "Correspondence added" };
    (StatusCode::CREATED, Json(json!([what]))).into_response()
}

async fn comment(
    State(st): State<Arc<RtState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> Response {
    add_article(&st, &headers, &q, &id, &bytes, true).await
}

async fn correspond(
    State(st): State<Arc<RtState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> Response {
    add_article(&st, &headers, &q, &id, &bytes, false).await
}

async fn search(
    State(st): State<Arc<RtState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = auth(&st, &headers, &q) {
        return r;
    }
    let Some(src) = q.get("query") else { return msg(StatusCode::BAD_REQUEST, "Missing query") };
    // An unknown custom field is no error in RT: the search simply matches nothing.
    let query = match ticketsql::parse(src, &|_: &str| true) {
        Ok(q) => q,
        Err(e) => return msg(StatusCode::BAD_REQUEST, format!("Invalid query: {e}")),
    };
    let num = |k: &str, d: usize| q.get(k).and_then(|v| v.parse::<usize>().ok()).filter(|n| *n >= 1).unwrap_or(d);
    let page = num("page", 1);
    let per_page = num("per_page", 20).min(st.config.max_per_page);
    let fields: Vec<String> = q
        .get("fields")
        .map(|f| f.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let matched: Vec<SimTicket> = st.sim.tickets_matching(|t| ticketsql::matches(&query, t));
    let total = matched.len();
    let (items, pages) = util::page(&matched, page, per_page);
    let b = base(&headers);
    let items: Vec<Value> = items
        .iter()
        .map(|t| {
            let full = ticket_json(t, &b);
            let mut item = Map::new();
            item.insert("id".into(), json!(t.id.to_string()));
            item.insert("type".into(), json!("ticket"));
            item.insert("_url".into(), full["_url"].clone());
            for f in &fields {
                if let Some(v) = full.get(f) {
                    item.insert(f.clone(), v.clone());
                }
            }
            Value::Object(item)
        })
        .collect();
    let link = |p: usize| format!("{b}/tickets?query={}&page={p}&per_page={per_page}", util::urlencode(src));
    let (total, pages_json) = if !st.config.global_show_ticket {
        (Value::Null, Value::Null)
    } else if pages == 0 {
        // RT computes `pages` with POSIX::ceil; its JSON writes an empty result's as 0.0.
        (json!(total), json!(0.0))
    } else {
        (json!(total), json!(pages))
    };
    // RT >= 5.0.6 links the next page even with the counts hidden (it peeks ahead); every
    // ticket is visible here, so that is exactly when one follows.
    let mut body = json!({"count": items.len(), "page": page, "pages": pages_json, "per_page": per_page, "total": total, "items": items});
    if page < pages {
        body["next_page"] = json!(link(page + 1));
    }
    if page > 1 {
        body["prev_page"] = json!(link(page - 1));
    }
    Json(body).into_response()
}
