//! The technician / test-control API every simulator serves under `/_sim`:
//!
//! | method | path | body | effect |
//! |---|---|---|---|
//! | GET | /_sim/tickets | | all tickets (with notes) |
//! | GET | /_sim/tickets/{id} | | one ticket (id or number) |
//! | POST | /_sim/tickets/{id}/close | `{"status": "…"}` (optional) | close (default closed status) |
//! | POST | /_sim/tickets/{id}/status | `{"status": "…"}` | set any status |
//! | POST | /_sim/tickets/{id}/notes | `{"body": "…"}` | technician note |
//! | GET | /_sim/requests | | request counts per route |
//! | POST | /_sim/faults | `{"kind": "status", "status": 503, "times": 3, "route": null}` | arm a fault |
//! | DELETE | /_sim/faults | | disarm all |
//! | POST | /_sim/tokens/revoke | `{"all": false}` | revoke access tokens (all: every credential) |
//! | POST | /_sim/tokens/expire | | expire access tokens now |
//! | PUT | /_sim/latency | `{"ms": 50}` | per-request latency |
//! | PUT / DELETE | /_sim/rate_limit | `{"limit": 10, "window_secs": 60, "per_route": false}` | per-client limit |
//! | GET | /_sim/webhook | | webhook counts ([`crate::webhooks::WebhookStats`]) |
//! | PUT / DELETE | /_sim/webhook | `{"url": "…/v1/hooks/<conn>", "key": "…"}` | send webhooks on status changes / stop |
//! | POST | /_sim/webhook/drop | `{"times": 1}` | lose the next N webhook deliveries |

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

use crate::faults::FaultRule;
use crate::sim::{RateRule, Sim, SimError};

pub(crate) fn router(sim: Sim) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/tickets", get(list))
        .route("/tickets/{id}", get(one))
        .route("/tickets/{id}/close", post(close))
        .route("/tickets/{id}/status", post(set_status))
        .route("/tickets/{id}/notes", post(note))
        .route("/requests", get(requests))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/tokens/revoke", post(revoke))
        .route("/tokens/expire", post(expire))
        .route("/latency", put(latency))
        .route("/rate_limit", put(rate_limit).delete(clear_rate_limit))
        .route("/webhook", get(webhook_stats).put(set_webhook).delete(clear_webhook))
        .route("/webhook/drop", post(drop_webhooks))
        .with_state(sim)
}

fn err(code: StatusCode, msg: impl ToString) -> Response {
    (code, Json(json!({"error": msg.to_string()}))).into_response()
}

fn sim_err(e: SimError) -> Response {
    match e {
        SimError::NotFound(_) => err(StatusCode::NOT_FOUND, e),
        SimError::InvalidStatus(_) => err(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

/// Parses an optional JSON body (empty = default).
fn body<T: for<'de> Deserialize<'de> + Default>(bytes: &Bytes) -> Result<T, Response> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| err(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}

async fn list(State(sim): State<Sim>) -> Response {
    Json(sim.tickets()).into_response()
}

async fn one(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    match sim.find_ticket(&id) {
        Some(t) => Json(t).into_response(),
        None => sim_err(SimError::NotFound(id)),
    }
}

#[derive(Default, Deserialize)]
struct StatusReq {
    status: Option<String>,
}

async fn close(State(sim): State<Sim>, Path(id): Path<String>, bytes: Bytes) -> Response {
    let req: StatusReq = match body(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match sim.close(&id, req.status.as_deref()) {
        Ok(t) => Json(t).into_response(),
        Err(e) => sim_err(e),
    }
}

async fn set_status(State(sim): State<Sim>, Path(id): Path<String>, bytes: Bytes) -> Response {
    let req: StatusReq = match body(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(status) = req.status else { return err(StatusCode::BAD_REQUEST, "missing 'status'") };
    match sim.set_status(&id, &status) {
        Ok(t) => Json(t).into_response(),
        Err(e) => sim_err(e),
    }
}

#[derive(Default, Deserialize)]
struct NoteReq {
    body: String,
    #[serde(default)]
    internal: bool,
}

async fn note(State(sim): State<Sim>, Path(id): Path<String>, bytes: Bytes) -> Response {
    let req: NoteReq = match body(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(t) = sim.find_ticket(&id) else { return sim_err(SimError::NotFound(id)) };
    match sim.add_note(t.id, None, req.body, req.internal, "technician") {
        Some(n) => (StatusCode::CREATED, Json(n)).into_response(),
        None => sim_err(SimError::NotFound(id)),
    }
}

async fn requests(State(sim): State<Sim>) -> Response {
    Json(json!({"total": sim.request_count(), "routes": sim.request_counts()})).into_response()
}

async fn add_fault(State(sim): State<Sim>, Json(rule): Json<FaultRule>) -> Response {
    sim.faults().add(rule);
    Json(json!({"pending": sim.faults().pending()})).into_response()
}

async fn clear_faults(State(sim): State<Sim>) -> Response {
    sim.faults().clear();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Default, Deserialize)]
struct RevokeReq {
    #[serde(default)]
    all: bool,
}

async fn revoke(State(sim): State<Sim>, bytes: Bytes) -> Response {
    let req: RevokeReq = match body(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.all {
        sim.revoke_all_credentials()
    } else {
        sim.revoke_tokens()
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn expire(State(sim): State<Sim>) -> Response {
    sim.tokens().expire_access();
    StatusCode::NO_CONTENT.into_response()
}

async fn latency(State(sim): State<Sim>, Json(v): Json<Value>) -> Response {
    let Some(ms) = v.get("ms").and_then(Value::as_u64) else { return err(StatusCode::BAD_REQUEST, "missing 'ms'") };
    sim.set_latency(Duration::from_millis(ms));
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct RateReq {
    limit: u32,
    window_secs: u64,
    #[serde(default)]
    per_route: bool,
}

async fn rate_limit(State(sim): State<Sim>, Json(r): Json<RateReq>) -> Response {
    sim.set_rate_limit(Some(RateRule {
        limit: r.limit,
        window: Duration::from_secs(r.window_secs),
        per_route: r.per_route,
    }));
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_rate_limit(State(sim): State<Sim>) -> Response {
    sim.set_rate_limit(None);
    StatusCode::NO_CONTENT.into_response()
}

async fn webhook_stats(State(sim): State<Sim>) -> Response {
    Json(sim.webhook_stats()).into_response()
}

async fn set_webhook(State(sim): State<Sim>, Json(config): Json<crate::webhooks::WebhookConfig>) -> Response {
    match sim.set_webhook(Some(config)) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => err(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

async fn clear_webhook(State(sim): State<Sim>) -> Response {
    match sim.set_webhook(None) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => err(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

#[derive(Deserialize)]
struct DropReq {
    times: u32,
}

async fn drop_webhooks(State(sim): State<Sim>, Json(r): Json<DropReq>) -> Response {
    sim.drop_next_webhooks(r.times);
    StatusCode::NO_CONTENT.into_response()
}
