//! Use cases over the [`Store`], [`Secrets`] and [`Connector`] traits: accept tasks, create
//! tickets, poll statuses, refresh tokens, publish completions. No AWS or HTTP-framework types here;
//! the Lambda functions and the local runner only adapt events to these calls.

pub mod api;
mod cancel;
pub mod cold_start;
mod create;
mod deliver;
pub mod deliveries_api;
pub mod failpoint;
mod hooks;
pub mod intake;
mod mappings_api;
mod mappings_push_api;
pub mod metrics;
pub mod notify;
pub mod outbox;
mod poll;
mod poll_changes;
mod reopen;
pub mod retry;
mod status_apply;
pub mod sync;
mod ticket_close;
pub mod ticket_request;
mod tokens;

use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
use crate::connectors::Connector;
use crate::domain::{NewTask, Task, TaskEvent, TaskId, TaskState};
use crate::secrets::Secrets;
use crate::store::{Created, Page, Store, StoreError};

pub use cold_start::ColdStartCheck;
pub use create::CreateReport;
pub use metrics::Metrics;
pub use notify::{BridgeEvent, EventSink, LogEvents};
pub use outbox::DeliveryReport;
pub use poll::PollReport;
pub use sync::{SyncOutcomeKind, SyncReport};
pub use tokens::{TokenOutcome, TokenReport};

/// An error answered to an API caller: HTTP status, stable code, the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub field: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, field: Option<&str>, message: impl Into<String>) -> Self {
        Self { status, code, field: field.map(str::to_string), message: message.into() }
    }
    /// 422 invalid_field.
    pub fn invalid(field: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(422, "invalid_field", field, message)
    }
    /// 400 with a code.
    pub fn bad_request(code: &'static str, field: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(400, code, field, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", None, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "conflict", None, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", None, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", None, message)
    }

    /// The JSON error body of the API contract.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "field": self.field, "message": self.message}})
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidCursor => ApiError::bad_request("invalid_cursor", Some("cursor"), "cursor is not valid"),
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Conflict(_) => ApiError::new(409, "conflict", None, "the task changed concurrently; retry"),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::unavailable("storage is temporarily unavailable; retry")
            }
        }
    }
}

/// How often [`Engine::wait_for_ticket`] re-reads the task (one strongly consistent read each).
const WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(200);

/// The engine: configuration plus the adapters it works through.
pub struct Engine {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn Secrets>,
    pub connectors: BTreeMap<String, Arc<dyn Connector>>,
    pub events: Arc<dyn EventSink>,
    pub notifier: notify::Notifier,
    pub metrics: Arc<Metrics>,
}

/// Outcome of a submission: the task and whether it was new.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub task: Task,
    pub new: bool,
}

impl Engine {
    /// Builds an engine; `connectors` holds one connector per configured connection.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        secrets: Arc<dyn Secrets>,
        connectors: BTreeMap<String, Arc<dyn Connector>>,
        events: Arc<dyn EventSink>,
    ) -> Self {
        let notifier = notify::Notifier::new(config.settings.allow_private_callbacks);
        Self { config, store, secrets, connectors, events, notifier, metrics: Arc::new(Metrics::default()) }
    }

    fn retention(&self) -> Duration {
        Duration::days(i64::from(self.config.settings.retention_days))
    }

    /// Stores a validated submission (idempotent on `(source, external_id)`).
    ///
    /// A repeat with an identical body returns the first task; a different body under the same key
    /// is a 409 and stores nothing.
    pub async fn accept(&self, new: NewTask, now: DateTime<Utc>) -> Result<Accepted, ApiError> {
        let (conn, _) = self
            .config
            .route_task((&new).into(), new.connection.as_deref())
            .map_err(|m| ApiError::invalid(Some("connection"), m))?;
        let conn = conn.to_string();
        if let Some(url) = &new.callback_url {
            self.notifier.check_url_syntax(url).map_err(|m| ApiError::invalid(Some("callback_url"), m))?;
        }
        let task = Task::new(new, conn, now);
        match self.store.create_task(&task).await? {
            Created::New(t) => {
                self.metrics.incr("TasksAccepted", 1);
                failpoint::hit("accepted");
                tracing::info!(task = %t.id, source = %t.source, external_id = %t.external_id, connection = %t.connection, "task accepted");
                Ok(Accepted { task: t, new: true })
            }
            Created::Existing(t) => {
                if t.fingerprint != task.fingerprint {
                    return Err(ApiError::conflict(format!(
                        "({}, {}) was already submitted with a different body as task {}",
                        t.source, t.external_id, t.id
                    )));
                }
                Ok(Accepted { task: t, new: false })
            }
        }
    }

    pub async fn get(&self, id: &str) -> Result<Task, ApiError> {
        let tid = TaskId::parse(id)
            .ok_or_else(|| ApiError::not_found(format!("no task '{}'", id.chars().take(40).collect::<String>())))?;
        self.store.get_task(&tid).await?.ok_or_else(|| ApiError::not_found(format!("no task {tid}")))
    }

    /// Cancels a task that is not final yet; 409 if it is. Its ticket, if any, gets a note and is
    /// closed (see [`Engine::cancel_because`]).
    pub async fn cancel(&self, id: &str, now: DateTime<Utc>) -> Result<Task, ApiError> {
        self.cancel_because(id, None, now).await
    }

    /// Re-reads a task until it leaves `received` (ticket open, note added, dead-lettered or
    /// cancelled) or `wait` has passed, and returns the latest copy. A read that fails ends the
    /// wait with the copy already held: the submission is stored either way.
    pub async fn wait_for_ticket(&self, task: Task, wait: std::time::Duration) -> Task {
        let deadline = tokio::time::Instant::now() + wait;
        let mut latest = task;
        while latest.state == TaskState::Received {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep(WAIT_STEP.min(deadline - now)).await;
            match self.store.get_task(&latest.id).await {
                Ok(Some(t)) => latest = t,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(task = %latest.id, error = %e, "re-reading a task during wait failed");
                    break;
                }
            }
        }
        latest
    }

    /// Puts a dead-lettered task back in the creation queue.
    pub async fn replay(&self, id: &str, now: DateTime<Utc>) -> Result<Task, ApiError> {
        Ok(self.transition(id, now, false, |_| TaskEvent::Replay).await?.0)
    }

    /// Applies an event with optimistic locking, retrying on concurrent writes. With `owes`, the
    /// completion deliveries of the new state are stored in the same write (and returned).
    async fn transition(
        &self,
        id: &str,
        now: DateTime<Utc>,
        owes: bool,
        event: impl Fn(&Task) -> TaskEvent,
    ) -> Result<(Task, Vec<crate::domain::Delivery>), ApiError> {
        for _ in 0..5 {
            let mut task = self.get(id).await?;
            if let Err(e) = task.apply(event(&task), now) {
                return Err(ApiError::conflict(format!("task {} is {}: {e}", task.id, task.state.as_str())));
            }
            let owed = if owes { self.completion_deliveries(&task, now) } else { Vec::new() };
            let written = if owed.is_empty() {
                self.store.update_task(&task).await
            } else {
                self.store.update_task_with_deliveries(&task, &owed).await
            };
            match written {
                Ok(t) => return Ok((t, owed)),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict("the task kept changing concurrently; retry"))
    }

    pub async fn list(&self, state: TaskState, limit: usize, cursor: Option<&str>) -> Result<Page<Task>, ApiError> {
        Ok(self.store.list_tasks(state, limit.clamp(1, 500), cursor).await?)
    }

    fn connector(&self, name: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors.get(name)
    }
}

/// Serializes a task as the API shows it (internal bookkeeping fields removed).
pub fn task_json(task: &Task) -> serde_json::Value {
    let mut v = serde_json::to_value(task).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        for k in ["fingerprint", "version", "next_attempt_at", "next_poll_at", "expires_at", "claims", "group_key"] {
            o.remove(k);
        }
        o.insert("result".into(), task.result().as_str().into());
    }
    v
}
