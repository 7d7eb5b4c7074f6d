//! A real Request Tracker in place of the RT simulator (`cargo xtask peer rt` starts one and sets
//! [`URL_VAR`] and [`TOKEN_VAR`]).
//!
//! [`RtPeer`] gives each test its own fresh queue in the real RT and puts the simulators' traffic
//! layer in front of it: a proxy on a loopback port with the simulator's RT routes, so request
//! counts and armed [`crate::Fault`]s work as against the simulator (a `LoseResponse` fault
//! lets the real RT create the ticket and drops its answer). Revoking the simulator's
//! credentials makes the proxy send RT a token it does not know, so the 401 comes from RT. What
//! the tests read or change as a technician ([`TargetState`]) goes straight to the real RT.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::server::SimServer;
use crate::sim::{Sim, SimError, SimNote, SimTicket};
use crate::tokens::{TokenCheck, TokenInfo, TokenKind};
use crate::util;

/// Environment variable with the real RT's web base URL (`http://127.0.0.1:PORT`).
pub const URL_VAR: &str = "TB_RT_URL";
/// Environment variable with an auth token of a user who may create queues (root).
pub const TOKEN_VAR: &str = "TB_RT_TOKEN";
/// The ticket custom field `cargo xtask peer rt` creates for the correlation key.
pub const CORRELATION_CF: &str = "TicketBridgeKey";

/// The proxy's routes: the RT simulator's, so fault and count routes are the same strings.
const ROUTES: [&str; 8] = [
    "/REST/2.0/rt",
    "/REST/2.0/queues/all",
    "/REST/2.0/queue/{id}",
    "/REST/2.0/ticket",
    "/REST/2.0/ticket/{id}",
    "/REST/2.0/ticket/{id}/comment",
    "/REST/2.0/ticket/{id}/correspond",
    "/REST/2.0/tickets",
];

/// The real RT named by [`URL_VAR`] and [`TOKEN_VAR`], if both are set.
pub fn from_env() -> Option<(String, String)> {
    let url = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty())?;
    let token = std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty())?;
    Some((url.trim_end_matches('/').to_string(), token))
}

/// A fresh queue in a real RT, reached through a counting, fault-injecting proxy.
pub struct RtPeer {
    server: SimServer,
    rt: Arc<Upstream>,
    queue: String,
}

struct Upstream {
    /// `{url}/REST/2.0`.
    api: String,
    token: String,
    http: reqwest::Client,
}

impl Upstream {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api))
            .header(header::AUTHORIZATION, format!("token {}", self.token))
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let resp = self.request(reqwest::Method::GET, path).query(query).send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("GET {path}: {status} {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}: {body}"))
    }

    /// Every item of a collection (all pages).
    async fn all(&self, path: &str, query: &[(&str, &str)]) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        for page in 1..=100 {
            let page_text = page.to_string();
            let mut q = query.to_vec();
            q.extend([("page", page_text.as_str()), ("per_page", "100")]);
            let body = self.get(path, &q).await?;
            let got = body.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            let done = got.is_empty() || body.get("next_page").is_none();
            items.extend(got);
            if done {
                break;
            }
        }
        Ok(items)
    }
}

impl RtPeer {
    /// Creates a queue `tb-<random>` in the RT at `url` (web base URL) with `token` and starts
    /// the proxy. The token's user needs AdminQueue and the ticket rights (root has them).
    pub async fn spawn(url: &str, token: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
        let rt = Arc::new(Upstream {
            api: format!("{}/REST/2.0", url.trim_end_matches('/')),
            token: token.to_string(),
            http,
        });
        let queue =
            format!("tb-{}", crate::tokens::random_token("q").replace(|c: char| !c.is_ascii_alphanumeric(), ""));
        let resp = rt
            .request(reqwest::Method::POST, "/queue")
            .json(&json!({"Name": queue, "Description": "ticket-bridge peer test"}))
            .send()
            .await
            .map_err(|e| format!("cannot reach RT at {url}: {e}"))?;
        if resp.status() != reqwest::StatusCode::CREATED {
            let status = resp.status();
            return Err(format!(
                "RT refused to create queue {queue}: {status} {}",
                resp.text().await.unwrap_or_default()
            ));
        }
        let sim = Sim::new(crate::rt::profile());
        sim.tokens().insert(
            token,
            TokenInfo {
                kind: TokenKind::Static,
                subject: "root".into(),
                scopes: Vec::new(),
                expires_at: None,
                revoked: false,
            },
        );
        let mut router = Router::new();
        for route in ROUTES {
            router = router.route(route, any(forward));
        }
        let proxy = Proxy { sim: sim.clone(), rt: rt.clone() };
        let server = SimServer::spawn(sim, router.with_state(Arc::new(proxy))).await.map_err(|e| e.to_string())?;
        Ok(Self { server, rt, queue })
    }

    /// The queue this peer's tickets go to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The token the connector under test should use.
    pub fn token(&self) -> &str {
        &self.rt.token
    }

    /// What the tests read and change as a technician.
    pub fn state(&self) -> TargetState<'_> {
        TargetState::Peer(self)
    }

    /// Every ticket in this peer's queue, oldest first.
    pub async fn tickets(&self) -> Result<Vec<SimTicket>, String> {
        let query = format!("Queue = '{}'", self.queue);
        let items = self.rt.all("/tickets", &[("query", &query), ("orderby", "id"), ("order", "ASC")]).await?;
        let mut out = Vec::new();
        for item in items {
            let id = item.get("id").and_then(id_number).ok_or_else(|| format!("search item without id: {item}"))?;
            out.push(self.ticket(id).await?.ok_or_else(|| format!("ticket {id} vanished"))?);
        }
        Ok(out)
    }

    /// Ticket `id` as the simulators model it: subject, status, custom fields, the create
    /// content as body, comments (internal) and correspondence as notes.
    pub async fn ticket(&self, id: u64) -> Result<Option<SimTicket>, String> {
        let path = format!("/ticket/{id}");
        let resp = self.rt.request(reqwest::Method::GET, &path).send().await.map_err(|e| e.to_string())?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let t: Value = resp.json().await.map_err(|e| format!("GET {path}: {e}"))?;
        let text = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_string);
        let mut fields = BTreeMap::new();
        for cf in t.get("CustomFields").and_then(Value::as_array).into_iter().flatten() {
            let (Some(name), Some(value)) = (
                cf.get("name").and_then(Value::as_str),
                cf.get("values").and_then(Value::as_array).and_then(|v| v.first()).and_then(Value::as_str),
            ) else {
                continue;
            };
            fields.insert(format!("CF.{name}"), Value::String(value.to_string()));
        }
        if let Some(owner) = t.pointer("/Owner/id").and_then(Value::as_str).filter(|o| *o != "Nobody") {
            fields.insert("Owner".to_string(), Value::String(owner.to_string()));
        }
        let title = text("Subject").unwrap_or_default();
        let correlation_key = fields
            .get(&format!("CF.{CORRELATION_CF}"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| crate::rt::subject_marker(&title));
        let (body, notes) = self.articles(id).await?;
        let time = |k: &str| text(k).and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|d| d.with_timezone(&Utc));
        let status = text("Status").unwrap_or_default();
        let closed = ["resolved", "rejected", "deleted"].contains(&status.as_str());
        Ok(Some(SimTicket {
            id,
            number: id.to_string(),
            title,
            body,
            customer_id: None,
            contact_id: None,
            requester: t.pointer("/Requestor/0/id").and_then(Value::as_str).map(str::to_string),
            queue: Some(self.queue.clone()),
            priority: text("Priority"),
            correlation_key,
            fields,
            request: Value::Null,
            notes,
            created_at: time("Created").unwrap_or_else(Utc::now),
            updated_at: time("LastUpdated").unwrap_or_else(Utc::now),
            closed_at: if closed { time("Resolved") } else { None },
            status,
        }))
    }

    /// The create content and the comments / correspondence of ticket `id`.
    async fn articles(&self, id: u64) -> Result<(String, Vec<SimNote>), String> {
        let history = self.rt.all(&format!("/ticket/{id}/history"), &[("fields", "Type,Created,Creator")]).await?;
        let mut body = String::new();
        let mut notes = Vec::new();
        for txn in history {
            let kind = txn.get("Type").and_then(Value::as_str).unwrap_or("");
            if !matches!(kind, "Create" | "Comment" | "Correspond") {
                continue;
            }
            let txn_id = txn.get("id").and_then(id_number).ok_or_else(|| format!("transaction without id: {txn}"))?;
            let parts = self
                .rt
                .all(&format!("/transaction/{txn_id}/attachments"), &[("fields", "Content,ContentType")])
                .await?;
            let content = parts
                .iter()
                .filter(|p| p.get("ContentType").and_then(Value::as_str).is_some_and(|c| c.starts_with("text/plain")))
                .filter_map(|p| p.get("Content").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n");
            if kind == "Create" {
                body = content;
            } else {
                notes.push(SimNote {
                    id: txn_id,
                    subject: None,
                    body: content,
                    internal: kind == "Comment",
                    author: txn.pointer("/Creator/id").and_then(Value::as_str).unwrap_or("").to_string(),
                    created_at: txn
                        .get("Created")
                        .and_then(Value::as_str)
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .map(|d| d.with_timezone(&Utc))
                        .unwrap_or_else(Utc::now),
                });
            }
        }
        Ok((body, notes))
    }

    /// Sets ticket `id`'s status as a technician would (`PUT /ticket/{id}`); RT answers 200
    /// with messages, so a refused status is read from them.
    pub async fn set_status(&self, id: &str, status: &str) -> Result<(), String> {
        let resp = self
            .rt
            .request(reqwest::Method::PUT, &format!("/ticket/{id}"))
            .json(&json!({ "Status": status }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let code = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !code.is_success() || !text.contains("Status changed") {
            return Err(format!("RT did not set ticket {id} to '{status}': {code} {text}"));
        }
        Ok(())
    }
}

impl Deref for RtPeer {
    type Target = SimServer;
    fn deref(&self) -> &SimServer {
        &self.server
    }
}

fn id_number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

struct Proxy {
    sim: Sim,
    rt: Arc<Upstream>,
}

/// Sends the request on to the real RT and its answer back. A token the simulator's registry
/// has revoked is replaced by one RT does not know.
async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
    };
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let rest = path_and_query.strip_prefix("/REST/2.0").unwrap_or(path_and_query);
    let Ok(method) = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()) else {
        return (StatusCode::METHOD_NOT_ALLOWED, "method").into_response();
    };
    let mut out = p.rt.http.request(method, format!("{}{rest}", p.rt.api));
    if let Some(auth) = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let token = util::auth_scheme(&parts.headers, "token");
        let revoked =
            token.is_some_and(|t| !matches!(p.sim.tokens().check(t, TokenKind::Static), TokenCheck::Valid(_)));
        out = out.header(header::AUTHORIZATION, if revoked { "token 1-1-revoked-by-proxy" } else { auth });
    }
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        out = out.header(header::CONTENT_TYPE, ct);
    }
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("proxy: real RT unreachable: {e}")).into_response(),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = Vec::new();
    for name in [header::CONTENT_TYPE, header::LOCATION, header::RETRY_AFTER] {
        if let Some(v) = resp.headers().get(name.as_str()).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
            headers.push((name, v));
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (k, v) in headers {
        response.headers_mut().insert(k, v);
    }
    response
}

/// Where a test reads and changes tickets as a technician: a simulator's store, or a real RT.
#[derive(Clone, Copy)]
pub enum TargetState<'a> {
    Sim(&'a Sim),
    Peer(&'a RtPeer),
}

impl TargetState<'_> {
    /// Every ticket the target holds (for a peer: in its queue), oldest first.
    pub async fn tickets(&self) -> Vec<SimTicket> {
        match self {
            Self::Sim(s) => s.tickets(),
            Self::Peer(p) => p.tickets().await.unwrap_or_else(|e| panic!("real RT: {e}")),
        }
    }

    /// Ticket `id`, if it exists.
    pub async fn ticket(&self, id: u64) -> Option<SimTicket> {
        match self {
            Self::Sim(s) => s.ticket(id),
            Self::Peer(p) => p.ticket(id).await.unwrap_or_else(|e| panic!("real RT: {e}")),
        }
    }

    /// Closes ticket `id` with `status` as a technician would.
    pub async fn close(&self, id: &str, status: &str) -> Result<(), SimError> {
        match self {
            Self::Sim(s) => s.close(id, Some(status)).map(|_| ()),
            Self::Peer(p) => p.set_status(id, status).await.map_err(SimError::InvalidStatus),
        }
    }
}
