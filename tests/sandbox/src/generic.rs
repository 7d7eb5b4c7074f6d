//! A generic JSON "issues" desk for the templated REST connector: nested response shapes unlike
//! any other simulator, with a configurable auth scheme (OAuth client credentials, API-key
//! header, basic, none).
//!
//! | method | path | notes |
//! |---|---|---|
//! | POST | /oauth/token | form `grant_type=client_credentials`, `client_id`, `client_secret` (or basic), `scope` → `{"access_token","token_type","expires_in"}`; 401 `{"error":"invalid_client"}`, 400 `invalid_scope` |
//! | GET | /api/v2/myself | `{"account": {"name"}}` |
//! | POST | /api/v2/issues | `{"fields": {"summary", "description", "reporter", "ext_ref", "labels", "extra"}}` → 201 `{"issue": {"id","key","self"}}` |
//! | GET | /api/v2/issues/{id} | `{"issue": {"id","key","fields": {"summary","description","status": {"name"}}}}` |
//! | GET | /api/v2/issues?ids=1,2 / ?ext_ref=K | `{"data": {"issues": [...]}, "total"}` |
//! | POST | /api/v2/issues/{id}/comments | `{"body","internal"}` → 201 `{"comment": {"id"}}` |
//!
//! Errors: `{"errors": [{"message"}]}`; the "200 with error body" fault uses the same shape.
//! Statuses: Open, In Progress, Done, Won't Do.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::server::SimServer;
use crate::sim::{NewTicket, Sim, SimProfile, SimTicket};
use crate::tokens::{TokenCheck, TokenKind};
use crate::util;

pub const STATUSES: [&str; 4] = ["Open", "In Progress", "Done", "Won't Do"];

/// How clients authenticate.
#[derive(Debug, Clone)]
pub enum GenericAuth {
    None,
    /// `POST /oauth/token` client-credentials grant, then `Authorization: Bearer`.
    OAuth {
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    },
    /// A static key in a header (e.g. `X-Api-Key`).
    ApiKey {
        header: String,
        key: String,
    },
    Basic {
        user: String,
        password: String,
    },
}

#[derive(Debug, Clone)]
pub struct GenericConfig {
    pub auth: GenericAuth,
    pub token_ttl: Duration,
}

impl Default for GenericConfig {
    fn default() -> Self {
        Self {
            auth: GenericAuth::OAuth {
                client_id: "tb-client".into(),
                client_secret: "tb-client-secret".into(),
                scope: Some("issues".into()),
            },
            token_ttl: Duration::from_secs(3600),
        }
    }
}

pub fn profile() -> SimProfile {
    SimProfile {
        name: "generic",
        initial_status: "Open".into(),
        closed_status: "Done".into(),
        statuses: STATUSES.iter().map(|s| s.to_string()).collect(),
        closed_statuses: vec!["Done".into(), "Won't Do".into()],
        error_body: (200, json!({"errors": [{"message": "Service temporarily degraded"}]})),
        server_error_body: json!({"errors": [{"message": "internal error"}]}),
        first_id: 1,
        number_prefix: "GEN-".into(),
    }
}

struct GState {
    sim: Sim,
    config: GenericConfig,
}

/// A running generic desk.
pub struct GenericSim {
    server: SimServer,
    config: GenericConfig,
}

impl GenericSim {
    pub async fn spawn(config: GenericConfig) -> std::io::Result<Self> {
        let sim = Sim::new(profile());
        let server = SimServer::spawn(sim.clone(), router(sim, config.clone())).await?;
        Ok(Self { server, config })
    }

    pub fn config(&self) -> &GenericConfig {
        &self.config
    }
}

impl Deref for GenericSim {
    type Target = SimServer;
    fn deref(&self) -> &SimServer {
        &self.server
    }
}

pub fn router(sim: Sim, config: GenericConfig) -> Router {
    let st = Arc::new(GState { sim, config });
    Router::new()
        .route("/oauth/token", post(token))
        .route("/api/v2/myself", get(myself))
        .route("/api/v2/issues", post(create).get(search))
        .route("/api/v2/issues/{id}", get(issue))
        .route("/api/v2/issues/{id}/comments", post(comment))
        .route("/api/v2/issues/{id}/transitions", post(transition))
        .with_state(st)
}

fn errors(code: StatusCode, m: impl ToString) -> Response {
    (code, Json(json!({"errors": [{"message": m.to_string()}]}))).into_response()
}

fn oauth_error(code: StatusCode, err: &str) -> Response {
    (code, Json(json!({"error": err}))).into_response()
}

async fn token(State(st): State<Arc<GState>>, headers: HeaderMap, bytes: Bytes) -> Response {
    let GenericAuth::OAuth { client_id, client_secret, scope } = &st.config.auth else {
        return errors(StatusCode::NOT_FOUND, "not found");
    };
    let form: HashMap<String, String> = url_form(&bytes);
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let (id, secret) = match util::basic(&headers) {
        Some(pair) => pair,
        None => {
            (form.get("client_id").cloned().unwrap_or_default(), form.get("client_secret").cloned().unwrap_or_default())
        }
    };
    if id != *client_id || secret != *client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let granted: Vec<String> = match (form.get("scope"), scope) {
        (Some(asked), Some(allowed)) => {
            if asked.split_whitespace().any(|s| !allowed.split_whitespace().any(|a| a == s)) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
            }
            asked.split_whitespace().map(str::to_string).collect()
        }
        (_, Some(allowed)) => allowed.split_whitespace().map(str::to_string).collect(),
        (_, None) => Vec::new(),
    };
    let (tok, _) = st.sim.tokens().issue(TokenKind::Access, client_id, &granted, Some(st.config.token_ttl));
    Json(json!({"access_token": tok, "token_type": "bearer", "expires_in": st.config.token_ttl.as_secs(), "scope": granted.join(" ")}))
        .into_response()
}

fn url_form(bytes: &Bytes) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(bytes);
    text.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((decode(k), decode(v)))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn authorize(st: &GState, headers: &HeaderMap) -> Result<(), Response> {
    let ok = match &st.config.auth {
        GenericAuth::None => true,
        GenericAuth::OAuth { .. } => match util::bearer(headers) {
            Some(t) => matches!(st.sim.tokens().check(t, TokenKind::Access), TokenCheck::Valid(_)),
            None => false,
        },
        GenericAuth::ApiKey { header, key } => {
            headers.get(header.as_str()).and_then(|v| v.to_str().ok()) == Some(key.as_str())
        }
        GenericAuth::Basic { user, password } => {
            util::basic(headers).is_some_and(|(u, p)| u == *user && p == *password)
        }
    };
    if ok { Ok(()) } else { Err(errors(StatusCode::UNAUTHORIZED, "Unauthorized")) }
}

fn issue_json(t: &SimTicket, headers: &HeaderMap) -> Value {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    json!({
        "id": t.id,
        "key": t.number,
        "self": format!("http://{host}/api/v2/issues/{}", t.id),
        "fields": {
            "summary": t.title,
            "description": t.body,
            "reporter": t.requester,
            "ext_ref": t.correlation_key,
            "status": {"name": t.status},
            "labels": t.fields.get("labels"),
            "extra": t.fields.get("extra"),
            "comment_count": t.notes.len(),
        }
    })
}

async fn myself(State(st): State<Arc<GState>>, headers: HeaderMap) -> Response {
    match authorize(&st, &headers) {
        Ok(()) => Json(json!({"account": {"name": "ticket-bridge"}})).into_response(),
        Err(r) => r,
    }
}

async fn create(State(st): State<Arc<GState>>, headers: HeaderMap, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return errors(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let Some(obj) = body.as_object() else { return errors(StatusCode::BAD_REQUEST, "expected an object") };
    if let Some(k) = obj.keys().find(|k| *k != "fields") {
        return errors(StatusCode::BAD_REQUEST, format!("unknown property '{k}'"));
    }
    let Some(fields) = obj.get("fields").and_then(Value::as_object) else {
        return errors(StatusCode::BAD_REQUEST, "'fields' object required");
    };
    let allowed = ["summary", "description", "reporter", "ext_ref", "labels", "extra"];
    if let Some(k) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return errors(StatusCode::BAD_REQUEST, format!("unknown field '{k}'"));
    }
    let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(summary) = text("summary").filter(|s| !s.trim().is_empty()) else {
        return errors(StatusCode::BAD_REQUEST, "'fields.summary' must be a non-empty string");
    };
    let mut extra = BTreeMap::new();
    for k in ["labels", "extra"] {
        if let Some(v) = fields.get(k) {
            extra.insert(k.to_string(), v.clone());
        }
    }
    let t = st.sim.create_ticket(NewTicket {
        title: summary,
        body: text("description").unwrap_or_default(),
        requester: text("reporter"),
        correlation_key: text("ext_ref"),
        fields: extra,
        request: body.clone(),
        ..NewTicket::default()
    });
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    (
        StatusCode::CREATED,
        Json(json!({"issue": {"id": t.id, "key": t.number, "self": format!("http://{host}/api/v2/issues/{}", t.id)}})),
    )
        .into_response()
}

async fn issue(State(st): State<Arc<GState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    match st.sim.find_ticket(&id) {
        Some(t) => Json(json!({"issue": issue_json(&t, &headers)})).into_response(),
        None => errors(StatusCode::NOT_FOUND, format!("issue {id} does not exist")),
    }
}

async fn search(
    State(st): State<Arc<GState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let ids: Option<Vec<u64>> = match q.get("ids") {
        None => None,
        Some(raw) => match raw.split(',').map(|s| s.trim().parse::<u64>()).collect() {
            Ok(v) => Some(v),
            Err(_) => return errors(StatusCode::BAD_REQUEST, "'ids' must be comma-separated numbers"),
        },
    };
    if ids.is_none() && !q.contains_key("ext_ref") {
        return errors(StatusCode::BAD_REQUEST, "give 'ids' or 'ext_ref'");
    }
    let issues: Vec<Value> = st
        .sim
        .tickets_matching(|t| {
            ids.as_ref().is_none_or(|ids| ids.contains(&t.id))
                && q.get("ext_ref").is_none_or(|r| t.correlation_key.as_ref() == Some(r))
        })
        .iter()
        .map(|t| issue_json(t, &headers))
        .collect();
    let total = issues.len();
    Json(json!({"data": {"issues": issues}, "total": total})).into_response()
}

/// `{"status", "comment"?}`: moves the issue to `status` (a known status), adding the comment.
async fn transition(
    State(st): State<Arc<GState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return errors(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let Some(status) = body.get("status").and_then(Value::as_str) else {
        return errors(StatusCode::BAD_REQUEST, "'status' must be a string");
    };
    let Some(t) = st.sim.find_ticket(&id) else {
        return errors(StatusCode::NOT_FOUND, format!("issue {id} does not exist"));
    };
    if st.sim.canonical_status(status).is_none() {
        return errors(StatusCode::BAD_REQUEST, format!("unknown status '{status}'"));
    }
    if let Some(c) = body.get("comment").and_then(Value::as_str).filter(|c| !c.is_empty()) {
        st.sim.add_note(t.id, None, c.to_string(), true, "api");
    }
    match st.sim.set_status(&t.id.to_string(), status) {
        Ok(t) => Json(json!({"issue": {"id": t.id, "status": t.status}})).into_response(),
        Err(e) => errors(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn comment(State(st): State<Arc<GState>>, headers: HeaderMap, Path(id): Path<String>, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return errors(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let Some(text) = body.get("body").and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return errors(StatusCode::BAD_REQUEST, "'body' must be a non-empty string");
    };
    let internal = body.get("internal").and_then(Value::as_bool).unwrap_or(false);
    let Some(t) = st.sim.find_ticket(&id) else {
        return errors(StatusCode::NOT_FOUND, format!("issue {id} does not exist"));
    };
    match st.sim.add_note(t.id, None, text.to_string(), internal, "api") {
        Some(n) => (StatusCode::CREATED, Json(json!({"comment": {"id": n.id}}))).into_response(),
        None => errors(StatusCode::NOT_FOUND, "gone"),
    }
}
