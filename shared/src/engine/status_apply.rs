//! Recording one status read from the target on its task: shared by the poll run (engine/poll.rs)
//! and desk webhooks (engine/hooks.rs). A close completes the task and stores the event and
//! callback it owes in the same write, then sends them.

use chrono::{DateTime, Duration, Utc};

use super::Engine;
use crate::domain::{MappedStatus, Task, TaskEvent};
use crate::store::StoreError;

impl Engine {
    /// Records one status read from the target on its task (no write when nothing changed).
    pub(super) async fn apply_status(
        &self,
        mut task: Task,
        mapped: MappedStatus,
        remote: &str,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        let event = match mapped {
            MappedStatus::Closed(outcome) => TaskEvent::Closed {
                outcome,
                remote_status: remote.to_string(),
                retain_until: now + Duration::days(i64::from(self.config.settings.retention_days)),
            },
            status => {
                let summary_same = matches!(
                    (status, task.status),
                    (MappedStatus::Open, crate::domain::Status::Open)
                        | (MappedStatus::Pending, crate::domain::Status::Pending)
                );
                let name_same = task.ticket.as_ref().and_then(|t| t.remote_status.as_deref()) == Some(remote);
                if summary_same && name_same {
                    // Nothing changed: no write. The task stays due; the poll lease paces runs.
                    return Ok(Applied::Unchanged);
                }
                TaskEvent::Polled {
                    status,
                    remote_status: remote.to_string(),
                    next_poll_at: task.next_poll_at.unwrap_or(now),
                }
            }
        };
        let closing = matches!(event, TaskEvent::Closed { .. });
        if task.apply(event, now).is_err() {
            return Ok(Applied::Unchanged);
        }
        // A closing task owes its event and callback: stored in the same write as the state.
        let owed = if closing { self.completion_deliveries(&task, now) } else { Vec::new() };
        let written = if closing {
            self.store.update_task_with_deliveries(&task, &owed).await
        } else {
            self.store.update_task(&task).await
        };
        let saved = match written {
            Ok(t) => t,
            Err(StoreError::Conflict(_)) => return Ok(Applied::Unchanged),
            Err(e) => return Err(e),
        };
        if closing {
            self.metrics.incr("Completions", 1);
            if let (Some(key), Some(t)) = (&saved.group_key, &saved.ticket) {
                self.remember_closed_group(&saved, now).await;
                self.store.release_group(&saved.connection, key, &t.id).await?;
            }
            tracing::info!(task = %saved.id, ticket = %saved.ticket.as_ref().map(|t| t.id.as_str()).unwrap_or(""), outcome = ?saved.outcome, "task completed");
            super::failpoint::hit("completed");
            self.deliver_stored(owed, &self.notifier, now).await;
            return Ok(Applied::Completed);
        }
        Ok(Applied::Changed)
    }
}

/// What [`Engine::apply_status`] did.
pub(super) enum Applied {
    Completed,
    Changed,
    Unchanged,
}
