//! Closing a cancelled task's ticket: the note (and close, or note only), recorded on the task.
//! Run by the creation lane (`create_one`, which the stream or the local runner's worker calls with
//! the cancelled task) and retried by the poll lane while the task stays in its poll queue.

use chrono::{DateTime, Duration, Utc};

use super::Engine;
use crate::connectors::{ConnectorError, NoteRequest};
use crate::domain::{CloseResult, Task, TaskEvent, TaskPayload, TicketRef};
use crate::store::StoreError;

/// What one close attempt did (counted in poll reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAttempt {
    Done(CloseResult),
    Retry,
    /// Nothing to do (not closing, or another worker recorded first).
    Skipped,
}

impl Engine {
    /// Notes/closes the ticket of a cancelled task and records the result (version-checked).
    pub(crate) async fn close_cancelled(&self, mut task: Task, now: DateTime<Utc>) -> Result<CloseAttempt, StoreError> {
        let Some(work) = task.ticket_close.clone().filter(|_| task.closing_ticket()) else {
            return Ok(CloseAttempt::Skipped);
        };
        let Some(ticket) = task.ticket.clone() else { return Ok(CloseAttempt::Skipped) };
        let result = self.note_and_close(&task, &ticket, work.reason.as_deref(), work.note_only).await;
        let (event, attempt) = match result {
            Ok((r, detail)) => (TaskEvent::TicketCloseDone { result: r, detail }, CloseAttempt::Done(r)),
            Err(e) => {
                let default = crate::config::RetryPolicy::default();
                let policy = self.config.connections.get(&task.connection).map_or(&default, |c| &c.retry);
                let limit = policy.attempts(self.config.settings.max_attempts);
                if super::retry::retries(policy, &e) && work.attempts + 1 < limit {
                    let retry_at = now + self.close_backoff(work.attempts, &e);
                    tracing::info!(task = %task.id, error = %e, %retry_at, "closing the ticket failed; will retry");
                    (TaskEvent::TicketCloseFailed { error: e.to_string(), retry_at }, CloseAttempt::Retry)
                } else {
                    tracing::warn!(task = %task.id, error = %e, "closing the ticket failed for good");
                    let detail = format!("ticket {} left open: {e}", ticket.display());
                    (
                        TaskEvent::TicketCloseDone { result: CloseResult::Failed, detail },
                        CloseAttempt::Done(CloseResult::Failed),
                    )
                }
            }
        };
        if task.apply(event, now).is_err() {
            return Ok(CloseAttempt::Skipped);
        }
        match self.store.update_task(&task).await {
            Ok(_) => {
                if let CloseAttempt::Done(r) = attempt {
                    self.metrics.incr(
                        match r {
                            CloseResult::Closed => "TicketsClosed",
                            CloseResult::Failed => "TicketCloseFailures",
                            CloseResult::Noted | CloseResult::Unsupported => "CancelNotes",
                        },
                        1,
                    );
                }
                Ok(attempt)
            }
            Err(StoreError::Conflict(_)) => Ok(CloseAttempt::Skipped),
            Err(e) => Err(e),
        }
    }

    /// Talks to the target. Never writes the task.
    async fn note_and_close(
        &self,
        task: &Task,
        ticket: &TicketRef,
        reason: Option<&str>,
        note_only: bool,
    ) -> Result<(CloseResult, String), ConnectorError> {
        let connector = self
            .connector(&task.connection)
            .ok_or_else(|| ConnectorError::Config(format!("connection '{}' is not configured", task.connection)))?;
        let note = cancel_note(task, reason, note_only);
        let shown = ticket.display();
        if note_only {
            connector.add_note(ticket, &note).await?;
            return Ok((CloseResult::Noted, format!("note added to group ticket {shown}; the ticket stays open")));
        }
        match connector.close_ticket(ticket, &note).await {
            Ok(()) => Ok((CloseResult::Closed, format!("note added and ticket {shown} closed"))),
            Err(ConnectorError::Unsupported(why)) => {
                connector.add_note(ticket, &note).await?;
                Ok((CloseResult::Unsupported, format!("note added; ticket {shown} left open ({why})")))
            }
            Err(e) => Err(e),
        }
    }

    fn close_backoff(&self, attempts: u32, err: &ConnectorError) -> Duration {
        let s = &self.config.settings;
        let secs = s.retry_base_secs.saturating_mul(1u64 << attempts.min(20)).min(s.retry_max_secs);
        let floor = match err {
            ConnectorError::RateLimited { retry_after_secs: Some(r) } => *r,
            _ => 0,
        };
        Duration::seconds(i64::try_from(secs.max(floor)).unwrap_or(3600))
    }
}

/// The note a cancelled task leaves on its ticket.
fn cancel_note(task: &Task, reason: Option<&str>, note_only: bool) -> NoteRequest {
    let what = match &task.payload {
        TaskPayload::Access(a) => format!("{} request for {}", a.action.as_str(), a.application),
        TaskPayload::Alert(a) => format!("alert '{}'", a.alert_type),
    };
    let why = reason.map(|r| format!("\nReason: {r}")).unwrap_or_default();
    let next = if note_only {
        "This alert needs no further work; the ticket stays open for the group's other alerts."
    } else {
        "No further work is needed; Ticket Bridge closes this ticket."
    };
    NoteRequest {
        correlation_key: task.id.to_string(),
        title: "Cancelled by the requester".into(),
        body: format!(
            "The {what} ({} {}) was cancelled by its source.{why}\n{next}\n(Ticket Bridge task {})",
            task.source, task.external_id, task.id
        ),
    }
}
