//! What cancelling a task does to its ticket: the pending close (or note) and how it ended.

use serde::{Deserialize, Serialize};

/// Work left on a cancelled task's ticket. While a cancelled task carries one and its
/// `next_poll_at` is set, it sits in its connection's poll queue, so a close interrupted by a
/// crash or a failing target is picked up by the next poll run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TicketClose {
    /// Why the caller cancelled (written into the note), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The ticket belongs to the task's group (this task only added a note to it): it gets a
    /// note and stays open for the group's other alerts.
    #[serde(default)]
    pub note_only: bool,
    /// Failed close attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// How it ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<CloseResult>,
}

/// How the ticket of a cancelled task ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseResult {
    /// A note was added and the ticket closed (or moved to the target's cancelled state).
    Closed,
    /// The ticket is shared by the task's group: a note was added, the ticket left open.
    Noted,
    /// The target cannot close tickets through its API: a note was added, the ticket left open.
    Unsupported,
    /// The close failed for good (permanent error or attempts exhausted).
    Failed,
}

impl CloseResult {
    /// The history event name.
    pub fn event(self) -> &'static str {
        match self {
            Self::Closed => "ticket_closed",
            Self::Noted => "ticket_noted",
            Self::Unsupported => "ticket_close_unsupported",
            Self::Failed => "ticket_close_failed",
        }
    }
}
