//! The task state machine: states, events and the only transitions allowed between them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{HistoryEntry, Task, TicketRef};

/// The bridge's own view of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Accepted, waiting for a ticket (first attempt or retry).
    Received,
    /// A ticket exists and is polled until it closes.
    TicketOpen,
    /// A grouped alert added as a note to its group's open ticket; completes with that ticket.
    Noted,
    /// The ticket closed; final.
    Completed,
    /// Cancelled by the caller; final.
    Cancelled,
    /// Ticket creation failed too often: dead-lettered, visible and replayable.
    Failed,
}

impl TaskState {
    pub const ALL: [TaskState; 6] =
        [Self::Received, Self::TicketOpen, Self::Noted, Self::Completed, Self::Cancelled, Self::Failed];

    /// Final states are never left.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::TicketOpen => "ticket_open",
            Self::Noted => "noted",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// The upstream-facing summary (Saviynt-style).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    Open,
    Pending,
    Closed,
}

/// How a closed ticket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Fulfilled,
    Rejected,
    /// No final status within the connection's `give_up_after_days`: polling stopped.
    Abandoned,
}

/// The one flat value a caller reads to tell how a task stands: a single path and value list
/// separates completion (`fulfilled`) from each kind of discontinuation (`rejected`, `cancelled`,
/// `failed`). Derived from [`TaskState`], [`Status`] and [`Outcome`] (see [`Task::result`]), so
/// stores persist nothing new and tasks stored before it existed read back with the right value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskResult {
    /// Waiting for a ticket, or the ticket is open.
    Open,
    /// The ticket is open and waiting on someone (the connection maps its status to pending).
    Pending,
    /// The ticket closed as done.
    Fulfilled,
    /// The ticket closed as rejected (or cancelled by the technician).
    Rejected,
    /// The caller cancelled the task.
    Cancelled,
    /// The bridge gave up: creating the ticket (dead letter; an operator may replay it), or
    /// waiting for it to close (`outcome` `abandoned`, past `give_up_after_days`; final).
    Failed,
}

impl TaskResult {
    pub const ALL: [TaskResult; 6] =
        [Self::Open, Self::Pending, Self::Fulfilled, Self::Rejected, Self::Cancelled, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Pending => "pending",
            Self::Fulfilled => "fulfilled",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the caller should stop waiting: everything but `open` and `pending`.
    pub fn is_settled(self) -> bool {
        !matches!(self, Self::Open | Self::Pending)
    }
}

/// A remote status after mapping through a connection's status table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappedStatus {
    Open,
    Pending,
    Closed(Outcome),
}

/// Everything that can happen to a task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    /// A worker claims the task for ticket creation until `until` (hides it from other workers).
    Claimed { until: DateTime<Utc> },
    /// A worker gives a claim back unused: the task is due again at `at` (no attempt counted).
    Released { at: DateTime<Utc> },
    /// The ticket was opened; first poll at `next_poll_at`.
    TicketCreated { ticket: TicketRef, next_poll_at: DateTime<Utc> },
    /// The alert was added as a note to its group's open ticket.
    Noted { ticket: TicketRef, next_poll_at: DateTime<Utc> },
    /// An attempt failed; retry at `retry_at`.
    CreateFailed { error: String, retry_at: DateTime<Utc> },
    /// Attempts exhausted (or a permanent error): dead letter.
    GaveUp { error: String },
    /// A poll saw the ticket still open or pending.
    Polled { status: MappedStatus, remote_status: String, next_poll_at: DateTime<Utc> },
    /// The ticket closed remotely.
    Closed { outcome: Outcome, remote_status: String, retain_until: DateTime<Utc> },
    /// Cancelled by the caller.
    Cancel { retain_until: DateTime<Utc> },
    /// An operator replays a dead-lettered task.
    Replay,
    /// Cancelled by the caller, for `reason` if given. A task with a ticket keeps it in the poll
    /// queue from `close_at` until its note/close is done (see [`super::TicketClose`]).
    CancelBecause { retain_until: DateTime<Utc>, reason: Option<String>, close_at: DateTime<Utc> },
    /// A creation that was under way when the task was cancelled opened `ticket` after all: it is
    /// recorded and closed like the ticket of a task cancelled while open.
    LateTicket { ticket: TicketRef, close_at: DateTime<Utc> },
    /// Closing a cancelled task's ticket failed; try again at `retry_at`.
    TicketCloseFailed { error: String, retry_at: DateTime<Utc> },
    /// The cancelled task's ticket got its note/close (or cannot): `detail` says what happened.
    TicketCloseDone { result: super::CloseResult, detail: String },
    /// The ticket stayed open past the connection's give-up horizon: polling stops (final,
    /// outcome `abandoned`).
    PollAbandoned { reason: String, retain_until: DateTime<Utc> },
    /// The group's ticket, closed within the connection's reopen window, was reopened with a note
    /// for this alert, which now owns it; first poll at `next_poll_at`.
    TicketReopened { ticket: TicketRef, next_poll_at: DateTime<Utc> },
}

impl TaskEvent {
    fn name(&self) -> &'static str {
        match self {
            Self::Claimed { .. } => "claimed",
            Self::Released { .. } => "released",
            Self::TicketCreated { .. } => "ticket_created",
            Self::Noted { .. } => "noted",
            Self::CreateFailed { .. } => "create_failed",
            Self::GaveUp { .. } => "dead_lettered",
            Self::Polled { .. } => "polled",
            Self::Closed { .. } => "completed",
            Self::Cancel { .. } => "cancelled",
            Self::Replay => "replayed",
            Self::CancelBecause { .. } => "cancelled",
            Self::LateTicket { .. } => "ticket_created_after_cancel",
            Self::TicketCloseFailed { .. } => "ticket_close_retry",
            Self::TicketCloseDone { result, .. } => result.event(),
            Self::PollAbandoned { .. } => "abandoned",
            Self::TicketReopened { .. } => "ticket_reopened",
        }
    }
}

/// An event that the task's current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("event '{event}' is not allowed in state '{}'", state.as_str())]
pub struct TransitionError {
    pub state: TaskState,
    pub event: &'static str,
}

/// At most this many history lines are kept (oldest dropped first, the first line kept).
pub const MAX_HISTORY: usize = 50;

impl Task {
    /// The caller-facing [`TaskResult`] of this task.
    pub fn result(&self) -> TaskResult {
        match self.state {
            TaskState::Received | TaskState::TicketOpen | TaskState::Noted => match self.status {
                Status::Pending => TaskResult::Pending,
                _ => TaskResult::Open,
            },
            TaskState::Completed => match self.outcome {
                Some(Outcome::Rejected) => TaskResult::Rejected,
                Some(Outcome::Abandoned) => TaskResult::Failed,
                _ => TaskResult::Fulfilled,
            },
            TaskState::Cancelled => TaskResult::Cancelled,
            TaskState::Failed => TaskResult::Failed,
        }
    }

    /// Applies `event` at `now`, or refuses it leaving the task untouched.
    pub fn apply(&mut self, event: TaskEvent, now: DateTime<Utc>) -> Result<(), TransitionError> {
        use TaskEvent as E;
        use TaskState as S;
        let refuse = |state, ev: &TaskEvent| Err(TransitionError { state, event: ev.name() });
        let name = event.name();
        let mut detail = None;
        let mut record = true;
        match (self.state, event) {
            (S::Received, E::Claimed { until }) => {
                self.next_attempt_at = Some(until);
                self.claims += 1;
                record = false;
            }
            (S::Received, E::Released { at }) => {
                self.next_attempt_at = Some(at);
                record = false;
            }
            (S::Received, E::TicketCreated { ticket, next_poll_at }) => {
                detail = Some(format!("ticket {}", ticket.display()));
                self.attempts += 1;
                self.state = S::TicketOpen;
                self.status = Status::Open;
                self.ticket = Some(ticket);
                self.last_error = None;
                self.next_attempt_at = None;
                self.next_poll_at = Some(next_poll_at);
            }
            (S::Received, E::TicketReopened { ticket, next_poll_at }) => {
                detail = Some(format!("ticket {} reopened", ticket.display()));
                self.attempts += 1;
                self.state = S::TicketOpen;
                self.status = Status::Open;
                self.ticket = Some(ticket);
                self.last_error = None;
                self.next_attempt_at = None;
                self.next_poll_at = Some(next_poll_at);
            }
            (S::Received, E::Noted { ticket, next_poll_at }) => {
                detail = Some(format!("note added to ticket {}", ticket.display()));
                self.attempts += 1;
                self.state = S::Noted;
                self.status = Status::Open;
                self.ticket = Some(ticket);
                self.last_error = None;
                self.next_attempt_at = None;
                self.next_poll_at = Some(next_poll_at);
            }
            (S::Received, E::CreateFailed { error, retry_at }) => {
                self.attempts += 1;
                detail = Some(error.clone());
                self.last_error = Some(error);
                self.next_attempt_at = Some(retry_at);
            }
            (S::Received, E::GaveUp { error }) => {
                self.attempts += 1;
                detail = Some(error.clone());
                self.last_error = Some(error);
                self.state = S::Failed;
                self.next_attempt_at = None;
            }
            (S::TicketOpen | S::Noted, E::Polled { status, remote_status, next_poll_at }) => {
                let summary = match status {
                    MappedStatus::Pending => Status::Pending,
                    _ => Status::Open,
                };
                record = self.status != summary
                    || self.ticket.as_ref().and_then(|t| t.remote_status.as_deref()) != Some(remote_status.as_str());
                detail = Some(remote_status.clone());
                self.status = summary;
                if let Some(t) = self.ticket.as_mut() {
                    t.remote_status = Some(remote_status);
                }
                self.next_poll_at = Some(next_poll_at);
            }
            (S::TicketOpen | S::Noted, E::Closed { outcome, remote_status, retain_until }) => {
                detail = Some(remote_status.clone());
                if let Some(t) = self.ticket.as_mut() {
                    t.remote_status = Some(remote_status);
                }
                self.finish(S::Completed, Some(outcome), now, retain_until);
            }
            (S::Received | S::TicketOpen | S::Noted | S::Failed, E::Cancel { retain_until }) => {
                self.finish(S::Cancelled, None, now, retain_until);
            }
            (
                S::Received | S::TicketOpen | S::Noted | S::Failed,
                E::CancelBecause { retain_until, reason, close_at },
            ) => {
                let had_ticket = self.ticket.is_some() && matches!(self.state, S::TicketOpen | S::Noted);
                let note_only = self.state == S::Noted;
                detail = reason.clone();
                self.finish(S::Cancelled, None, now, retain_until);
                if had_ticket {
                    self.ticket_close = Some(super::TicketClose { reason, note_only, attempts: 0, result: None });
                    self.next_poll_at = Some(close_at);
                }
            }
            (S::Cancelled, E::LateTicket { ticket, close_at }) if self.ticket.is_none() => {
                detail = Some(format!("ticket {}", ticket.display()));
                let reason = self.history.iter().rev().find(|h| h.event == "cancelled").and_then(|h| h.detail.clone());
                self.ticket = Some(ticket);
                self.ticket_close = Some(super::TicketClose { reason, note_only: false, attempts: 0, result: None });
                self.next_poll_at = Some(close_at);
            }
            (S::Cancelled, E::TicketCloseFailed { error, retry_at }) if self.closing_ticket() => {
                detail = Some(error);
                if let Some(c) = self.ticket_close.as_mut() {
                    c.attempts += 1;
                }
                self.next_poll_at = Some(retry_at);
            }
            (S::Cancelled, E::TicketCloseDone { result, detail: d }) if self.closing_ticket() => {
                detail = Some(d);
                if let Some(c) = self.ticket_close.as_mut() {
                    c.result = Some(result);
                }
                self.next_poll_at = None;
            }
            (S::TicketOpen | S::Noted, E::PollAbandoned { reason, retain_until }) => {
                self.last_error = Some(reason.clone());
                detail = Some(reason);
                self.finish(S::Completed, Some(Outcome::Abandoned), now, retain_until);
            }
            (S::Failed, E::Replay) => {
                self.state = S::Received;
                self.attempts = 0;
                self.last_error = None;
                self.next_attempt_at = Some(now);
            }
            (state, ev) => return refuse(state, &ev),
        }
        self.updated_at = now;
        if record {
            self.push_history(now, name, detail);
        }
        Ok(())
    }

    fn finish(&mut self, state: TaskState, outcome: Option<Outcome>, now: DateTime<Utc>, retain_until: DateTime<Utc>) {
        self.state = state;
        self.status = Status::Closed;
        self.outcome = outcome;
        self.completed_at = Some(now);
        self.next_attempt_at = None;
        self.next_poll_at = None;
        self.expires_at = Some(retain_until);
    }

    fn push_history(&mut self, at: DateTime<Utc>, event: &str, detail: Option<String>) {
        if self.history.len() >= MAX_HISTORY {
            self.history.remove(1);
        }
        self.history.push(HistoryEntry { at, event: event.to_string(), detail });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Alert, Due, NewTask, Severity, TaskPayload};
    use chrono::Duration;
    use proptest::prelude::*;

    fn task(now: DateTime<Utc>) -> Task {
        let new = NewTask {
            source: "s".into(),
            external_id: "e".into(),
            payload: TaskPayload::Alert(Alert {
                user_email: "bob@acme.com".into(),
                alert_type: "Too Many Downloads".into(),
                severity: Severity::High,
                occurred_at: None,
                details: Default::default(),
            }),
            organization: None,
            connection: None,
            callback_url: None,
        };
        Task::new(new, "c".into(), now)
    }

    fn ticket() -> TicketRef {
        TicketRef { id: "1".into(), number: Some("T1".into()), url: None, remote_status: None }
    }

    #[test]
    fn happy_path_reaches_completed_with_ttl_and_no_queue() {
        let t0 = Utc::now();
        let mut t = task(t0);
        assert_eq!(t.due(), Some(Due::Create(t0)));
        t.apply(TaskEvent::TicketCreated { ticket: ticket(), next_poll_at: t0 }, t0).unwrap();
        assert_eq!(t.state, TaskState::TicketOpen);
        assert_eq!(t.due(), Some(Due::Poll(t0)));
        let keep = t0 + Duration::days(30);
        t.apply(
            TaskEvent::Closed { outcome: Outcome::Fulfilled, remote_status: "Closed".into(), retain_until: keep },
            t0,
        )
        .unwrap();
        assert_eq!(t.state, TaskState::Completed);
        assert_eq!(t.status, Status::Closed);
        assert_eq!(t.outcome, Some(Outcome::Fulfilled));
        assert_eq!(t.expires_at, Some(keep));
        assert_eq!(t.due(), None);
        assert_eq!(t.attempts, 1);
    }

    #[test]
    fn closing_a_received_task_is_refused_and_leaves_it_untouched() {
        let t0 = Utc::now();
        let mut t = task(t0);
        let before = t.clone();
        let err = t
            .apply(TaskEvent::Closed { outcome: Outcome::Fulfilled, remote_status: "x".into(), retain_until: t0 }, t0)
            .unwrap_err();
        assert_eq!(err.state, TaskState::Received);
        assert_eq!(t, before);
    }

    #[test]
    fn failed_task_can_be_replayed_and_cancelled_but_not_polled() {
        let t0 = Utc::now();
        let mut t = task(t0);
        t.apply(TaskEvent::GaveUp { error: "boom".into() }, t0).unwrap();
        assert_eq!(t.state, TaskState::Failed);
        assert_eq!(t.due(), None);
        assert!(
            t.apply(TaskEvent::Polled { status: MappedStatus::Open, remote_status: "x".into(), next_poll_at: t0 }, t0)
                .is_err()
        );
        t.apply(TaskEvent::Replay, t0).unwrap();
        assert_eq!((t.state, t.attempts), (TaskState::Received, 0));
        t.apply(TaskEvent::Cancel { retain_until: t0 }, t0).unwrap();
        assert_eq!(t.state, TaskState::Cancelled);
    }

    #[test]
    fn result_tells_fulfilled_rejected_cancelled_and_failed_apart() {
        let t0 = Utc::now();
        let closed = |outcome| {
            let mut t = task(t0);
            t.apply(TaskEvent::TicketCreated { ticket: ticket(), next_poll_at: t0 }, t0).unwrap();
            assert_eq!(t.result(), TaskResult::Open);
            t.apply(
                TaskEvent::Polled { status: MappedStatus::Pending, remote_status: "Waiting".into(), next_poll_at: t0 },
                t0,
            )
            .unwrap();
            assert_eq!(t.result(), TaskResult::Pending);
            t.apply(TaskEvent::Closed { outcome, remote_status: "x".into(), retain_until: t0 }, t0).unwrap();
            t
        };
        let done = closed(Outcome::Fulfilled);
        assert_eq!((done.state, done.result()), (TaskState::Completed, TaskResult::Fulfilled));
        let rejected = closed(Outcome::Rejected);
        // The state stays `completed` for callers that read it; the result tells the difference.
        assert_eq!((rejected.state, rejected.result()), (TaskState::Completed, TaskResult::Rejected));
        let mut cancelled = task(t0);
        assert_eq!(cancelled.result(), TaskResult::Open);
        cancelled.apply(TaskEvent::Cancel { retain_until: t0 }, t0).unwrap();
        assert_eq!(cancelled.result(), TaskResult::Cancelled);
        let mut failed = task(t0);
        failed.apply(TaskEvent::GaveUp { error: "boom".into() }, t0).unwrap();
        assert_eq!(failed.result(), TaskResult::Failed);
        failed.apply(TaskEvent::Replay, t0).unwrap();
        assert_eq!(failed.result(), TaskResult::Open);
        for r in TaskResult::ALL {
            assert_eq!(TaskResult::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }

    #[test]
    fn pending_poll_sets_pending_summary() {
        let t0 = Utc::now();
        let mut t = task(t0);
        t.apply(TaskEvent::TicketCreated { ticket: ticket(), next_poll_at: t0 }, t0).unwrap();
        t.apply(
            TaskEvent::Polled { status: MappedStatus::Pending, remote_status: "Waiting".into(), next_poll_at: t0 },
            t0,
        )
        .unwrap();
        assert_eq!(t.status, Status::Pending);
        assert_eq!(t.ticket.as_ref().unwrap().remote_status.as_deref(), Some("Waiting"));
    }

    fn any_event() -> impl Strategy<Value = TaskEvent> {
        let t = Utc::now();
        prop_oneof![
            Just(TaskEvent::Claimed { until: t }),
            Just(TaskEvent::Released { at: t }),
            Just(TaskEvent::TicketCreated { ticket: ticket(), next_poll_at: t }),
            Just(TaskEvent::Noted { ticket: ticket(), next_poll_at: t }),
            Just(TaskEvent::CreateFailed { error: "e".into(), retry_at: t }),
            Just(TaskEvent::GaveUp { error: "e".into() }),
            Just(TaskEvent::Polled { status: MappedStatus::Pending, remote_status: "p".into(), next_poll_at: t }),
            Just(TaskEvent::Polled { status: MappedStatus::Open, remote_status: "o".into(), next_poll_at: t }),
            Just(TaskEvent::Closed { outcome: Outcome::Fulfilled, remote_status: "c".into(), retain_until: t }),
            Just(TaskEvent::Closed { outcome: Outcome::Rejected, remote_status: "r".into(), retain_until: t }),
            Just(TaskEvent::Cancel { retain_until: t }),
            Just(TaskEvent::Replay),
            Just(TaskEvent::CancelBecause { retain_until: t, reason: Some("why".into()), close_at: t }),
            Just(TaskEvent::LateTicket { ticket: ticket(), close_at: t }),
            Just(TaskEvent::TicketCloseFailed { error: "e".into(), retry_at: t }),
            Just(TaskEvent::TicketCloseDone { result: crate::domain::CloseResult::Closed, detail: "d".into() }),
            Just(TaskEvent::PollAbandoned { reason: "r".into(), retain_until: t }),
            Just(TaskEvent::TicketReopened { ticket: ticket(), next_poll_at: t }),
        ]
    }

    proptest! {
        /// No sequence of events reaches an inconsistent state, and final states are never left.
        #[test]
        fn no_event_sequence_breaks_invariants(events in proptest::collection::vec(any_event(), 0..40)) {
            let now = Utc::now();
            let mut t = task(now);
            let mut was_final = false;
            for ev in events {
                let before = t.clone();
                let result = t.apply(ev, now);
                if was_final {
                    // Only a cancelled task's ticket work may still change it.
                    prop_assert_eq!(t.state, before.state, "final state left");
                    prop_assert!(result.is_err() || before.state == TaskState::Cancelled);
                }
                if result.is_err() {
                    prop_assert_eq!(&t, &before, "refused event changed the task");
                }
                was_final = t.state.is_final();
                // Invariants per state.
                match t.state {
                    TaskState::Received => {
                        prop_assert!(t.next_attempt_at.is_some());
                        prop_assert!(t.next_poll_at.is_none());
                        prop_assert!(t.ticket.is_none());
                    }
                    TaskState::TicketOpen | TaskState::Noted => {
                        prop_assert!(t.ticket.is_some());
                        prop_assert!(t.next_poll_at.is_some());
                        prop_assert!(t.next_attempt_at.is_none());
                        prop_assert!(t.status != Status::Closed);
                    }
                    TaskState::Completed => {
                        prop_assert!(t.ticket.is_some() && t.outcome.is_some());
                        prop_assert_eq!(t.status, Status::Closed);
                        prop_assert!(t.expires_at.is_some() && t.due().is_none());
                    }
                    TaskState::Cancelled => {
                        prop_assert_eq!(t.status, Status::Closed);
                        prop_assert!(t.expires_at.is_some());
                        // Due (in the poll queue) exactly while its ticket's close is pending.
                        prop_assert_eq!(t.due().is_some(), t.closing_ticket());
                        prop_assert!(!t.closing_ticket() || t.next_poll_at.is_some());
                    }
                    TaskState::Failed => {
                        prop_assert!(t.due().is_none() && t.last_error.is_some());
                    }
                }
                prop_assert_eq!(t.result().is_settled(), t.state.is_final() || t.state == TaskState::Failed);
                prop_assert!(t.history.len() <= MAX_HISTORY);
            }
        }
    }
}
