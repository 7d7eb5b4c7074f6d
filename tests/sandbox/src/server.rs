//! Serving a simulator: its target routes wrapped in the shared traffic layer (counting, latency,
//! rate limit, faults) plus the technician API under `/_sim`.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::contract::{self, Contract, RequestView};
use crate::faults::Fault;
use crate::sim::Sim;
use crate::technician;

/// A running simulator. Dropping it stops the server.
pub struct SimServer {
    base_url: String,
    addr: SocketAddr,
    sim: Sim,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Serves `api` (the target's routes, state already applied) on 127.0.0.1, ephemeral port.
    pub async fn spawn(sim: Sim, api: Router) -> std::io::Result<Self> {
        Self::spawn_on(SocketAddr::from(([127, 0, 0, 1], 0)), sim, api).await
    }

    /// Serves on a given address (port 0 = ephemeral).
    pub async fn spawn_on(addr: SocketAddr, sim: Sim, api: Router) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let contract = contract::target_of_profile(sim.profile().name).and_then(contract::for_target);
        let app = Router::new()
            .nest("/_sim", technician::router(sim.clone()))
            .merge(api.route_layer(middleware::from_fn_with_state((sim.clone(), contract), traffic)));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "simulator server stopped");
            }
        });
        Ok(Self { base_url: format!("http://{addr}"), addr, sim, shutdown: Some(tx), task: Some(task) })
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Deref for SimServer {
    type Target = Sim;
    fn deref(&self) -> &Sim {
        &self.sim
    }
}

impl Drop for SimServer {
    /// Stops the server; fails the test (panics) when contract violations were recorded and
    /// not taken, so no retry or error handling in a connector can hide one.
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let violations = self.sim.contract_violations();
        if !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "{} vendor contract violation(s) at the {} simulator:\n  {}",
                violations.len(),
                self.sim.profile().name,
                violations.join("\n  ")
            );
        }
    }
}

/// Largest request or response body the contract check reads.
const MAX_CHECKED_BODY: usize = 32 * 1024 * 1024;

/// The answer to a request or response that breaks the contract: [`contract::VIOLATION_STATUS`],
/// a marker header and the violations (a 4xx, so connectors do not retry it).
fn violation(sim: &Sim, found: Vec<String>) -> Response {
    sim.record_contract_violations(&found);
    let body = json!({"error": "vendor contract violation (tests/sandbox/contracts)", "violations": found});
    let mut resp = (
        StatusCode::from_u16(contract::VIOLATION_STATUS).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
        axum::Json(body),
    )
        .into_response();
    resp.headers_mut().insert(contract::VIOLATION_HEADER, HeaderValue::from_static("1"));
    resp
}

/// Checks a request against the contract; `Err` is the violation response.
async fn check_request(sim: &Sim, contract: &Contract, req: Request) -> Result<(Request, usize), Response> {
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_CHECKED_BODY).await {
        Ok(b) => b,
        Err(e) => return Err(violation(sim, vec![format!("request body unreadable: {e}")])),
    };
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let view = RequestView {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        content_type,
        body: &bytes,
    };
    match contract.check_request(&view) {
        Ok(op) => {
            contract::log_checked(contract, op);
            Ok((Request::from_parts(parts, Body::from(bytes)), op))
        }
        Err(found) => Err(violation(sim, found)),
    }
}

/// Checks a response of operation `op`; a violating one is replaced by the violation response.
async fn check_response(sim: &Sim, contract: &Contract, op: usize, resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let bytes = match to_bytes(body, MAX_CHECKED_BODY).await {
        Ok(b) => b,
        Err(e) => return violation(sim, vec![format!("response body unreadable: {e}")]),
    };
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let found = contract.check_response(op, parts.status.as_u16(), content_type, &bytes);
    if found.is_empty() { Response::from_parts(parts, Body::from(bytes)) } else { violation(sim, found) }
}

/// Runs the handler, checking its response when the request was checked.
async fn run(sim: &Sim, checked: Option<(&Contract, usize)>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    match checked {
        Some((contract, op)) => check_response(sim, contract, op, resp).await,
        None => resp,
    }
}

/// Counts the request, checks it against the vendor contract, adds latency, enforces the rate
/// limit and fires armed faults.
async fn traffic(State((sim, contract)): State<(Sim, Option<Arc<Contract>>)>, req: Request, next: Next) -> Response {
    let template = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let route = format!("{} {}", req.method(), template.as_deref().unwrap_or(req.uri().path()));
    sim.record(&route, req.uri().path(), req.uri().query());
    let _in_flight = sim.in_flight();
    let contract = contract.filter(|_| sim.contract_checks());
    let (req, op) = match &contract {
        Some(c) => match check_request(&sim, c, req).await {
            Ok((req, op)) => (req, Some(op)),
            Err(resp) => return resp,
        },
        None => (req, None),
    };
    let checked = contract.as_deref().zip(op);
    let latency = sim.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let client = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
    if let Some(secs) = sim.rate_check(&client, &route) {
        return too_many(secs);
    }
    let profile = sim.profile();
    match sim.faults().take(&route) {
        None => {
            let resp = run(&sim, checked, req, next).await;
            sim.fire_after_response(&route);
            resp
        }
        Some(Fault::Status { status }) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, axum::Json(profile.server_error_body.clone())).into_response()
        }
        Some(Fault::RateLimited { retry_after_secs }) => too_many(retry_after_secs),
        Some(Fault::Hang { ms }) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            (StatusCode::GATEWAY_TIMEOUT, axum::Json(json!({"error": "gateway timeout"}))).into_response()
        }
        Some(Fault::MalformedJson) => {
            ([(header::CONTENT_TYPE, "application/json")], "{\"items\": [{\"id\": 1, \"status\": \"Ope").into_response()
        }
        Some(Fault::ErrorBody) => {
            let (code, body) = profile.error_body.clone();
            (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), axum::Json(body)).into_response()
        }
        Some(Fault::LoseResponse) => {
            let _ = next.run(req).await;
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(profile.server_error_body.clone())).into_response()
        }
        Some(Fault::SlowResponse { ms }) => {
            let resp = run(&sim, checked, req, next).await;
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            resp
        }
    }
}

fn too_many(secs: u64) -> Response {
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({"error": "too many requests"}))).into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}
