//! `ticket-bridge serve`: the intake API on localhost plus the schedules as intervals and an
//! in-process channel in place of the DynamoDB stream.

use anyhow::{Context, Result};
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bridge::domain::{Task, TaskId, TaskPayload};
use bridge::engine::Engine;
use bridge::engine::api::{self, ApiRequest};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::local;

/// How often the retry sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How often pollers wake up (each connection's lease paces real polls to its interval).
const POLL_TICK: Duration = Duration::from_secs(2);
/// How often the outbox sender looks for due callbacks and events.
const DELIVER_EVERY: Duration = Duration::from_secs(1);
/// How often token upkeep runs.
const TOKENS_EVERY: Duration = Duration::from_secs(60);
/// Tickets created at once from intake. Tasks about one user share a lane, so the alerts of one
/// group are handled in arrival order (the first opens the ticket, the rest add notes).
const CREATE_LANES: usize = 8;

/// Senders of the creation lanes.
#[derive(Clone)]
struct Lanes(Arc<[mpsc::UnboundedSender<TaskId>]>);

impl Lanes {
    /// Queues `id` on the lane of `user` (any stable key; the task id when the user is unknown).
    fn send(&self, id: TaskId, user: &str) {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(user.trim().to_lowercase());
        let lane = usize::try_from(hash % self.0.len() as u64).unwrap_or(0);
        if let Some(tx) = self.0.get(lane) {
            tx.send(id).ok();
        }
    }
}

#[derive(Clone)]
struct App {
    engine: Arc<Engine>,
    created: Lanes,
    desk_url: Option<String>,
    http: reqwest::Client,
    console: bridge_console::Console,
}

pub async fn run(config: Option<&Path>, data_dir: &Path, listen: SocketAddr) -> Result<()> {
    if let Ok(step) = std::env::var("TB_FAILPOINT") {
        bridge::engine::failpoint::arm(&step).map_err(anyhow::Error::msg)?;
        tracing::warn!(step = %step, "test crash point armed: the process aborts at this step");
    }
    let local = local::build(config, data_dir).await?;
    let engine = local.engine.clone();
    let status = bridge_console::ConnectionStatus::default();
    let desk_url = local.desk.as_ref().map(|d| d.base_url().to_string());
    let http = bridge::http::client_builder().build().context("cannot build the HTTP client")?;
    let console = bridge_console::Console {
        engine: engine.clone(),
        desk_url: desk_url.clone(),
        http: http.clone(),
        sessions: Default::default(),
        status: status.clone(),
        oauth: Default::default(),
        local: true,
        jobs: Default::default(),
    };
    let app =
        App { engine: engine.clone(), created: spawn_workers(engine.clone(), status.clone()), desk_url, http, console };
    // One log line per connection with its check result; the console shows the same.
    let (e, s) = (engine.clone(), status);
    tokio::spawn(async move { s.check_all_and_log(&e).await });
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    write_addr_file(data_dir, addr)?;
    if engine.config.auth.api_keys.is_empty() && engine.config.auth.hmac_secret.is_none() {
        tracing::warn!("no API keys configured: accepting requests from loopback callers only");
    }
    match &app.desk_url {
        Some(url) => {
            tracing::info!(desk = %url, "no config given: using the built-in sandbox ITSM (close tickets with `ticket-bridge sandbox close <id>`)")
        }
        None => {
            tracing::info!(connections = ?engine.config.connections.keys().collect::<Vec<_>>(), "connections configured")
        }
    }
    tracing::info!(%addr, db = %engine.config.settings.sqlite_path.display(), "ticket-bridge serving");
    // The getting-started hint is for a person at a terminal; log files and JSON logs stay pure.
    if std::io::stderr().is_terminal() {
        eprintln!(
            "\nTicket Bridge listens on http://{addr}. Try:\n  curl -s -X POST http://{addr}/v1/tasks -H 'content-type: application/json' \\\n    -d '{{\"source\":\"saviynt\",\"external_id\":\"TASK-1\",\"kind\":\"access\",\"action\":\"create_account\",\"user\":{{\"id\":\"u-1\",\"email\":\"ada@example.com\"}},\"application\":\"Payroll\"}}'\n  ticket-bridge sandbox list    # then: ticket-bridge sandbox close <ticket-id>\n"
        );
    }
    let router = axum::Router::new().fallback(handle).with_state(app);
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.ok();
            tracing::info!("shutting down");
        })
        .await?;
    drop(local);
    Ok(())
}

/// Name of the file in the data dir that holds the address serve listens on (`127.0.0.1:41234`),
/// so scripts and tests can start it with `--listen 127.0.0.1:0` and find the port it got.
pub const ADDR_FILE: &str = "serve.addr";

/// Writes [`ADDR_FILE`] whole (a temporary file renamed into place), so a reader never sees half.
fn write_addr_file(data_dir: &Path, addr: SocketAddr) -> Result<()> {
    let path = data_dir.join(ADDR_FILE);
    let tmp = data_dir.join(format!("{ADDR_FILE}.tmp"));
    std::fs::write(&tmp, format!("{addr}\n")).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The background loops: creation lanes fed by intake, the retry sweep, pollers, token upkeep.
fn spawn_workers(engine: Arc<Engine>, status: bridge_console::ConnectionStatus) -> Lanes {
    let lanes: Vec<_> = (0..CREATE_LANES)
        .map(|_| {
            let (tx, mut rx) = mpsc::unbounded_channel::<TaskId>();
            let e = engine.clone();
            tokio::spawn(async move {
                while let Some(id) = rx.recv().await {
                    if let Err(err) = e.create_one(&id, chrono::Utc::now()).await {
                        tracing::error!(task = %id, error = %err, "ticket creation failed; the sweep will retry");
                    }
                }
            });
            tx
        })
        .collect();
    let e = engine.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            let r = e.create_due(chrono::Utc::now(), 100).await;
            if r != Default::default() {
                tracing::info!(?r, "retry sweep");
            }
        }
    });
    let e = engine.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL_TICK);
        loop {
            tick.tick().await;
            let started = std::time::Instant::now();
            for (conn, r) in e.poll_all(chrono::Utc::now()).await {
                status.record_poll(&conn, r.clone(), started.elapsed());
                if r.tickets > 0 {
                    tracing::info!(connection = %conn, tickets = r.tickets, requests = r.requests, completed = r.completed, "poll run");
                }
            }
        }
    });
    let e = engine.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(DELIVER_EVERY);
        loop {
            tick.tick().await;
            let r = e.deliver_due(chrono::Utc::now()).await;
            if r.attempted > 0 {
                tracing::info!(?r, "outbox run");
            }
        }
    });
    crate::serve_sync::spawn(engine.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TOKENS_EVERY);
        loop {
            tick.tick().await;
            for (conn, outcome) in engine.refresh_tokens(chrono::Utc::now()).await {
                tracing::debug!(connection = %conn, ?outcome, "token upkeep");
            }
        }
    });
    Lanes(lanes.into())
}

async fn handle(State(app): State<App>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if let Some(rest) = path.strip_prefix("/sandbox/") {
        return sandbox_proxy(&app, parts.method.as_str(), rest, body).await;
    }
    let limit = app.engine.config.settings.max_body_bytes;
    if bridge_console::owns(&path) {
        let Ok(bytes) = to_bytes(body, limit).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "form is too large").into_response();
        };
        let req = bridge_console::ConsoleRequest {
            method: parts.method.as_str(),
            path: &path,
            query: parts.uri.query(),
            headers: &parts.headers,
            body: &bytes,
            peer_loopback: peer.ip().is_loopback(),
        };
        return bridge_console::handle(&app.console, req).await.map(axum::body::Body::from);
    }
    let bytes = match to_bytes(body, limit + 1).await {
        Ok(b) => b,
        Err(_) => {
            let e = bridge::engine::ApiError::new(
                413,
                "body_too_large",
                None,
                format!("body is larger than {limit} bytes"),
            );
            return json(e.status, e.body());
        }
    };
    let api_req = ApiRequest {
        method: parts.method.as_str(),
        path: &path,
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &bytes,
        peer_loopback: peer.ip().is_loopback(),
    };
    // New tasks go to a creation lane as soon as they are stored, so a `wait` sees their ticket.
    let queue = |task: &Task| {
        let user = match &task.payload {
            TaskPayload::Access(a) => a.user.email.as_deref().or(a.user.id.as_deref()),
            TaskPayload::Alert(a) => Some(a.user_email.as_str()),
        };
        app.created.send(task.id.clone(), user.unwrap_or(task.id.as_str()));
    };
    let res = api::handle_with(&app.engine, api_req, chrono::Utc::now(), &queue).await;
    json(res.status, res.body)
}

/// Forwards `/sandbox/...` to the built-in desk's technician API (`/_sim/...`).
async fn sandbox_proxy(app: &App, method: &str, rest: &str, body: Body) -> Response {
    let Some(desk) = &app.desk_url else {
        return json(
            404,
            serde_json::json!({"error": {"code": "not_found", "message": "serve is not running the built-in sandbox ITSM"}}),
        );
    };
    let bytes = to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let url = format!("{desk}/_sim/{rest}");
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
    match app.http.request(m, url).header("content-type", "application/json").body(bytes.to_vec()).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.json::<serde_json::Value>().await.unwrap_or(serde_json::Value::Null);
            json(status, body)
        }
        Err(e) => json(502, serde_json::json!({"error": {"code": "bad_gateway", "message": e.to_string()}})),
    }
}

fn json(status: u16, body: serde_json::Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
