//! Cancelling a task reaches its ticket: the ticket gets a note saying why and is closed (or moved
//! to the target's cancelled state), or only the note where the target cannot close or the ticket
//! is shared by the task's group. The work is recorded on the task (`ticket_close`) and kept in the
//! poll queue until done, so a crash or a failing target between cancel and close is retried by
//! the next poll run, with backoff, up to `max_attempts`.

use chrono::{DateTime, Utc};

use super::{ApiError, Engine};
use crate::domain::{Task, TaskEvent};

/// Longest cancel reason kept (characters).
pub const MAX_REASON_CHARS: usize = 500;

impl Engine {
    /// Cancels a task for `reason`; 409 if it is final. A task with a ticket is left due for its
    /// ticket's note/close, which the creation lane does (`create_one`: the stream on AWS, the
    /// local runner's worker) and the poll lane retries. The task shows `cancelled` whatever
    /// happens to the ticket; the ticket's fate is in `ticket_close` and its history.
    pub async fn cancel_because(&self, id: &str, reason: Option<String>, now: DateTime<Utc>) -> Result<Task, ApiError> {
        let reason = reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
        if let Some(r) = &reason
            && r.chars().count() > MAX_REASON_CHARS
        {
            return Err(ApiError::invalid(Some("reason"), format!("must be at most {MAX_REASON_CHARS} characters")));
        }
        let retain = now + self.retention();
        let (task, owed) = self
            .transition(id, now, true, |_| TaskEvent::CancelBecause {
                retain_until: retain,
                reason: reason.clone(),
                close_at: now,
            })
            .await?;
        if let Some(key) = &task.group_key
            && let Some(t) = &task.ticket
            && task.history.iter().all(|h| h.event != "noted")
        {
            self.store.release_group(&task.connection, key, &t.id).await.ok();
        }
        // The caller is waiting on this request (API Gateway gives up after 30 s): one quick
        // callback attempt, no long retry ladder.
        self.deliver_stored(owed, &self.notifier.quick(), now).await;
        Ok(task)
    }
}
