//! The public HTTP API (docs/api.md), independent of the server framework: the intake Lambda
//! (lambda_runtime with API Gateway v2 events) and the local runner (axum) both translate their requests into [`ApiRequest`].

use chrono::{DateTime, Utc};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

use super::deliveries_api::delivery_json;
use super::{ApiError, Engine, intake, notify, task_json};
use crate::config::KeyScope;
use crate::domain::{DeliveryState, Task, TaskState};

/// Allowed clock skew / replay window for signed requests.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;

/// A request as the API needs it.
#[derive(Debug)]
pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// The caller connected from a loopback address (local runner only; false in Lambda).
    pub peer_loopback: bool,
}

/// Status and JSON body to send.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

impl From<ApiError> for ApiResponse {
    fn from(e: ApiError) -> Self {
        Self { status: e.status, body: e.body() }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub scope: KeyScope,
    /// The sources this caller is bound to; `None`: every source.
    pub sources: Option<Vec<String>>,
}

impl Caller {
    fn unbound(name: &str, scope: KeyScope) -> Self {
        Self { name: name.into(), scope, sources: None }
    }

    /// Whether the caller may submit for, read and cancel tasks of `source`.
    pub fn may_use(&self, source: &str) -> bool {
        self.sources.as_ref().is_none_or(|s| s.iter().any(|x| x == source))
    }

    /// `task`, or the same 404 an unknown id gets when it belongs to a source this caller is not
    /// bound to (so a caller cannot learn that other sources' tasks exist).
    fn visible(&self, task: crate::domain::Task) -> Result<crate::domain::Task, ApiError> {
        if self.may_use(&task.source) { Ok(task) } else { Err(ApiError::not_found(format!("no task {}", task.id))) }
    }
}

/// SHA-256 hex of an API key, as stored in `[[auth.api_keys]]`.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Longest `wait` a submission may ask for: below API Gateway's 30 s integration timeout and the
/// intake function's 29 s, with room for the request itself.
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// Called with each newly stored task, before a `wait` begins, and with each cancelled task whose
/// ticket is to be closed. The local runner queues the task for its creation worker here (whose
/// `create_one` opens the ticket, or closes a cancelled task's); on AWS the table's stream does
/// that, so Lambda passes nothing.
pub type OnAccepted<'a> = &'a (dyn Fn(&Task) + Send + Sync);

/// Routes and answers one request.
pub async fn handle(engine: &Engine, req: ApiRequest<'_>, now: DateTime<Utc>) -> ApiResponse {
    handle_with(engine, req, now, &|_| {}).await
}

/// [`handle`], calling `on_accepted` for each task a submission stores.
pub async fn handle_with(
    engine: &Engine,
    req: ApiRequest<'_>,
    now: DateTime<Utc>,
    on_accepted: OnAccepted<'_>,
) -> ApiResponse {
    match route(engine, &req, now, on_accepted).await {
        Ok(r) => r,
        Err(e) => e.into(),
    }
}

async fn route(
    engine: &Engine,
    req: &ApiRequest<'_>,
    now: DateTime<Utc>,
    on_accepted: OnAccepted<'_>,
) -> Result<ApiResponse, ApiError> {
    let path = req.path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (req.method, segments.as_slice()) {
        ("GET", ["healthz"]) => Ok(ok(200, serde_json::json!({"status": "ok"}))),
        ("POST", ["v1", "tasks"]) => {
            check_body(engine, req)?;
            let caller = authenticate(engine, req, now).await?;
            let wait = parse_wait(Query::parse(req.query).get("wait"))?;
            let new = intake::parse_task(req.body)?;
            if !caller.may_use(&new.source) {
                let allowed = caller.sources.as_deref().unwrap_or_default().join(", ");
                return Err(ApiError::new(
                    403,
                    "forbidden",
                    Some("source"),
                    format!("this API key may submit tasks only for the sources: {allowed}"),
                ));
            }
            let accepted = engine.accept(new, now).await?;
            tracing::debug!(caller = %caller.name, task = %accepted.task.id, new = accepted.new, "submission");
            if accepted.new {
                on_accepted(&accepted.task);
            }
            let task = match wait {
                Some(w) => engine.wait_for_ticket(accepted.task, w).await,
                None => accepted.task,
            };
            Ok(ok(if accepted.new { 201 } else { 200 }, task_json(&task)))
        }
        ("GET", ["v1", "tasks"]) => {
            require_admin(&authenticate(engine, req, now).await?)?;
            let q = Query::parse(req.query);
            let state_s = q.get("state").unwrap_or("failed");
            let state = TaskState::parse(state_s).ok_or_else(|| {
                ApiError::invalid(
                    Some("state"),
                    format!(
                        "unknown state '{state_s}'; expected one of {}",
                        TaskState::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            })?;
            let limit = page_limit(&q)?;
            let page = engine.list(state, limit, q.get("cursor")).await?;
            let items: Vec<_> = page.items.iter().map(task_json).collect();
            Ok(ok(200, serde_json::json!({"items": items, "cursor": page.cursor})))
        }
        ("GET", ["v1", "tasks", id]) => {
            let caller = authenticate(engine, req, now).await?;
            Ok(ok(200, task_json(&caller.visible(engine.get(id).await?)?)))
        }
        ("DELETE", ["v1", "tasks", id]) => {
            let caller = authenticate(engine, req, now).await?;
            if caller.sources.is_some() {
                caller.visible(engine.get(id).await?)?;
            }
            let reason = Query::parse(req.query).get("reason").map(str::to_string);
            let task = engine.cancel_because(id, reason, now).await?;
            if task.closing_ticket() {
                on_accepted(&task);
            }
            Ok(ok(200, task_json(&task)))
        }
        ("POST", ["v1", "tasks", id, "replay"]) => {
            require_admin(&authenticate(engine, req, now).await?)?;
            Ok(ok(200, task_json(&engine.replay(id, now).await?)))
        }
        ("GET", ["v1", "deliveries"]) => {
            require_admin(&authenticate(engine, req, now).await?)?;
            let q = Query::parse(req.query);
            let state_s = q.get("state").unwrap_or("dead");
            let state = DeliveryState::parse(state_s).ok_or_else(|| {
                ApiError::invalid(
                    Some("state"),
                    format!(
                        "unknown state '{state_s}'; expected one of {}",
                        DeliveryState::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            })?;
            let limit = page_limit(&q)?;
            let page = engine.list_deliveries(state, limit, q.get("cursor")).await?;
            let items: Vec<_> = page.items.iter().map(delivery_json).collect();
            Ok(ok(200, serde_json::json!({"items": items, "cursor": page.cursor})))
        }
        ("POST", ["v1", "deliveries", id, "replay"]) => {
            require_admin(&authenticate(engine, req, now).await?)?;
            Ok(ok(200, delivery_json(&engine.replay_delivery(id, now).await?)))
        }
        ("POST", ["v1", "hooks", conn]) => super::hooks::handle(engine, req, conn, now).await,
        (_, ["v1", "hooks", _]) => {
            Err(ApiError::new(405, "method_not_allowed", None, format!("{} is not allowed on {path}", req.method)))
        }
        (_, ["v1", "mappings", conn, rest @ ..]) => {
            require_admin(&authenticate(engine, req, now).await?)?;
            super::mappings_push_api::route(engine, req, conn, rest).await
        }
        (_, ["v1", "admin", "connections", conn, rest @ ..]) => {
            require_admin(&authenticate(engine, req, now).await?)?;
            super::mappings_api::route(engine, req, conn, rest).await
        }
        (_, ["healthz"] | ["v1", "tasks", ..] | ["v1", "deliveries", ..]) => {
            Err(ApiError::new(405, "method_not_allowed", None, format!("{} is not allowed on {path}", req.method)))
        }
        _ => Err(ApiError::not_found(format!("no route {path}"))),
    }
}

/// `wait=5s`, `wait=1500ms` or `wait=5` (seconds), at most [`MAX_WAIT`]; `None` for no wait.
fn parse_wait(raw: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else { return Ok(None) };
    let invalid = || {
        ApiError::invalid(
            Some("wait"),
            format!("must be a duration such as 5s or 1500ms, at most {}s", MAX_WAIT.as_secs()),
        )
    };
    let (digits, unit_ms) = match raw.strip_suffix("ms") {
        Some(d) => (d, 1),
        None => (raw.strip_suffix('s').unwrap_or(raw), 1000),
    };
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let ms = digits.parse::<u64>().map_err(|_| invalid())? * unit_ms;
    let wait = Duration::from_millis(ms);
    if wait > MAX_WAIT {
        return Err(invalid());
    }
    Ok((!wait.is_zero()).then_some(wait))
}

fn ok(status: u16, body: serde_json::Value) -> ApiResponse {
    ApiResponse { status, body }
}

fn check_body(engine: &Engine, req: &ApiRequest<'_>) -> Result<(), ApiError> {
    let max = engine.config.settings.max_body_bytes;
    if req.body.len() > max {
        return Err(ApiError::new(413, "body_too_large", None, format!("body is larger than {max} bytes")));
    }
    let ct = req.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            Some("content-type"),
            "content-type must be application/json",
        ));
    }
    Ok(())
}

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.scope == KeyScope::Admin {
        Ok(())
    } else {
        Err(ApiError::new(403, "forbidden", None, "this operation needs an admin-scoped key"))
    }
}

/// Bearer API key (hash compared in constant time) or HMAC-signed request; with neither
/// configured, loopback callers only (the local runner's default).
pub async fn authenticate(engine: &Engine, req: &ApiRequest<'_>, now: DateTime<Utc>) -> Result<Caller, ApiError> {
    let auth = &engine.config.auth;
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let unauthorized = |m: &str| ApiError::new(401, "unauthorized", None, m.to_string());
    if let Some(value) = header("authorization") {
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| unauthorized("Authorization must be 'Bearer <api-key>'"))?
            .trim();
        let hash = hash_key(key);
        let mut found: Option<&crate::config::ApiKey> = None;
        for k in &auth.api_keys {
            // Compare against every key so timing does not reveal which one matched.
            if bool::from(hash.as_bytes().ct_eq(k.sha256.to_ascii_lowercase().as_bytes())) {
                found = Some(k);
            }
        }
        return found
            .map(|k| Caller {
                name: k.name.clone(),
                scope: k.scope,
                sources: (!k.sources.is_empty()).then(|| k.sources.clone()),
            })
            .ok_or_else(|| unauthorized("unknown API key"));
    }
    if let (Some(ts), Some(sig)) = (header("x-bridge-timestamp"), header("x-bridge-signature")) {
        let Some(secret_name) = &auth.hmac_secret else {
            return Err(unauthorized("signed requests are not enabled"));
        };
        let secret = engine.secrets.get(secret_name).await.map_err(|e| {
            tracing::error!(error = %e, "hmac key unavailable");
            ApiError::unavailable("authentication is temporarily unavailable")
        })?;
        let key = secret.get("hmac_key").ok_or_else(|| ApiError::unavailable("authentication is misconfigured"))?;
        notify::verify(key.as_bytes(), ts, req.body, sig, now, SIGNATURE_WINDOW_SECS).map_err(unauthorized)?;
        return Ok(Caller::unbound("hmac", KeyScope::Tasks));
    }
    if auth.api_keys.is_empty() && auth.hmac_secret.is_none() && req.peer_loopback {
        return Ok(Caller::unbound("loopback", KeyScope::Admin));
    }
    Err(unauthorized("missing credentials: send 'Authorization: Bearer <api-key>' or a signed request"))
}

/// Minimal query-string reader.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Self(url::form_urlencoded::parse(q.unwrap_or("").as_bytes()).into_owned().collect())
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
}

/// The `limit` query parameter of a list route: 50 when absent, else an integer from 1 to 500.
fn page_limit(q: &Query) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(50),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::invalid(Some("limit"), "must be an integer from 1 to 500")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_takes_seconds_or_milliseconds_up_to_the_bound() {
        assert_eq!(parse_wait(None).unwrap(), None);
        assert_eq!(parse_wait(Some("")).unwrap(), None);
        assert_eq!(parse_wait(Some("0s")).unwrap(), None);
        assert_eq!(parse_wait(Some("5s")).unwrap(), Some(Duration::from_secs(5)));
        assert_eq!(parse_wait(Some("5")).unwrap(), Some(Duration::from_secs(5)));
        assert_eq!(parse_wait(Some("1500ms")).unwrap(), Some(Duration::from_millis(1500)));
        assert_eq!(parse_wait(Some("20s")).unwrap(), Some(MAX_WAIT));
        for bad in ["21s", "-1s", "5m", "1.5s", "s", "ms", "99999999999s", "5 s"] {
            let e = parse_wait(Some(bad)).unwrap_err();
            assert_eq!((e.status, e.field.as_deref()), (422, Some("wait")), "{bad}");
        }
    }
}
