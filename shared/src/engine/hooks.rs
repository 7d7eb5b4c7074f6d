//! `POST /v1/hooks/{connection}`: a target tells the bridge that tickets changed. The hook is
//! authenticated with the connection's webhook key (an HMAC-SHA256 signature over
//! `<timestamp>.<body>` in `X-Bridge-Signature` / `X-Bridge-Timestamp`, as the bridge's own
//! callbacks, or the key itself as `Authorization: Bearer <key>`), names tickets, and makes the
//! bridge read those tickets' statuses from the target right away. The payload is never trusted
//! for the status.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::api::{ApiRequest, ApiResponse};
use super::status_apply::Applied;
use super::{ApiError, Engine};
use crate::domain::Task;

/// Most tickets one hook may name.
pub const MAX_HOOK_TICKETS: usize = 100;

/// Handles one hook call.
pub(super) async fn handle(
    engine: &Engine,
    req: &ApiRequest<'_>,
    conn: &str,
    now: DateTime<Utc>,
) -> Result<ApiResponse, ApiError> {
    let no_hooks = || ApiError::not_found(format!("no webhook for connection '{conn}'"));
    let cfg = engine.config.connections.get(conn).ok_or_else(no_hooks)?;
    let secret_name = cfg.polling.webhook_secret.as_deref().ok_or_else(no_hooks)?;
    let connector = engine.connector(conn).cloned().ok_or_else(no_hooks)?;
    let secret = engine.secrets.get(secret_name).await.map_err(|e| {
        tracing::error!(connection = conn, error = %e, "webhook secret unavailable");
        ApiError::unavailable("the webhook key cannot be read right now")
    })?;
    let key = secret.get("webhook_key").filter(|k| !k.is_empty()).ok_or_else(|| {
        tracing::error!(connection = conn, secret = secret_name, "webhook secret has no field 'webhook_key'");
        ApiError::unavailable("the webhook key is not configured")
    })?;
    authenticate(req, key.as_bytes(), now, i64::try_from(cfg.polling.webhook_window_secs).unwrap_or(300))?;
    let ids = ticket_ids(req.body)?;
    let tasks = open_tasks(engine, conn, &ids, now).await?;
    let unknown: Vec<&String> = ids.iter().filter(|id| !tasks.iter().any(|t| ticket_of(t) == Some(id))).collect();
    if !unknown.is_empty() {
        return Err(ApiError::not_found(format!(
            "no open ticket {} on connection '{conn}'; nothing was read or changed",
            unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let statuses = connector.statuses(&ids).await.map_err(|e| {
        tracing::warn!(connection = conn, error = %e, "webhook status read failed");
        ApiError::unavailable(format!("reading the tickets from '{conn}' failed; the next poll will"))
    })?;
    let mut out = Vec::new();
    let mut completed = 0u32;
    for task in tasks {
        let Some(id) = ticket_of(&task).cloned() else { continue };
        let Some(remote) = statuses.iter().find(|s| s.ticket_id == id) else {
            out.push(json!({"ticket": id, "task": task.id.to_string(), "read": false}));
            continue;
        };
        let mapped = cfg.status_map.map(&remote.name, remote.category);
        let task_id = task.id.to_string();
        match engine.apply_status(task, mapped, &remote.name, now).await {
            Ok(applied) => {
                completed += u32::from(matches!(applied, Applied::Completed));
                out.push(json!({"ticket": id, "task": task_id, "read": true, "status": remote.name,
                    "completed": matches!(applied, Applied::Completed)}));
            }
            Err(e) => {
                tracing::warn!(connection = conn, error = %e, "recording webhook status failed");
                return Err(ApiError::unavailable("recording the status failed; the next poll will"));
            }
        }
    }
    engine.metrics.incr("Hooks", 1);
    Ok(ApiResponse { status: 200, body: json!({"connection": conn, "tickets": out, "completed": completed}) })
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(401, "unauthorized", None, message.to_string())
}

/// Checks the signature (or bearer key) in constant time.
fn authenticate(req: &ApiRequest<'_>, key: &[u8], now: DateTime<Utc>, window: i64) -> Result<(), ApiError> {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(signature) = header("x-bridge-signature") {
        let ts = header("x-bridge-timestamp").ok_or_else(|| unauthorized("X-Bridge-Timestamp is missing"))?;
        return super::notify::verify(key, ts, req.body, signature, now, window).map_err(unauthorized);
    }
    if let Some(token) = header("authorization").and_then(|a| a.strip_prefix("Bearer ")) {
        return if token.trim().as_bytes().ct_eq(key).into() {
            Ok(())
        } else {
            Err(unauthorized("the bearer key does not match"))
        };
    }
    Err(unauthorized("sign the hook (X-Bridge-Timestamp, X-Bridge-Signature) or send Authorization: Bearer <key>"))
}

/// The ticket ids a hook names: `ticket_id` (one) or `ticket_ids` (a list); strings or numbers.
pub fn ticket_ids(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::invalid(None, format!("the body is not JSON: {e}")))?;
    let text = |v: &Value| match v {
        Value::String(s) if !s.trim().is_empty() && s.len() <= 64 => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let mut ids: Vec<String> = match (v.get("ticket_id"), v.get("ticket_ids")) {
        (Some(one), None) => {
            vec![
                text(one)
                    .ok_or_else(|| ApiError::invalid(Some("ticket_id"), "must be a ticket id (string or number)"))?,
            ]
        }
        (None, Some(Value::Array(list))) if !list.is_empty() && list.len() <= MAX_HOOK_TICKETS => list
            .iter()
            .map(|x| text(x).ok_or_else(|| ApiError::invalid(Some("ticket_ids"), "must hold ticket ids")))
            .collect::<Result<_, _>>()?,
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                Some("ticket_ids"),
                format!("must be a list of 1 to {MAX_HOOK_TICKETS} ticket ids"),
            ));
        }
        _ => return Err(ApiError::invalid(Some("ticket_id"), "give ticket_id or ticket_ids (not both)")),
    };
    ids.sort();
    ids.dedup();
    Ok(ids)
}

fn ticket_of(task: &Task) -> Option<&String> {
    task.ticket.as_ref().map(|t| &t.id)
}

/// The open tasks of `conn` whose tickets are `ids` (pages of the poll index).
async fn open_tasks(engine: &Engine, conn: &str, ids: &[String], now: DateTime<Utc>) -> Result<Vec<Task>, ApiError> {
    let horizon = now + chrono::Duration::days(3650);
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = 0usize;
    loop {
        let page = engine.store.due_for_polling(conn, horizon, 500, cursor.as_deref()).await.map_err(|e| {
            tracing::error!(connection = conn, error = %e, "webhook task lookup failed");
            ApiError::unavailable("looking up the tickets failed")
        })?;
        seen += page.items.len();
        found.extend(page.items.into_iter().filter(|t| ticket_of(t).is_some_and(|id| ids.contains(id))));
        cursor = page.cursor;
        if cursor.is_none() || seen >= super::poll::MAX_PER_RUN || found.len() >= ids.len() {
            return Ok(found);
        }
    }
}
