//! Tasks as submitted by upstream systems, and the stored task record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

use super::{Outcome, Status, TaskState, TicketRef};

/// Identifier of a task: a ULID, sortable by creation time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    /// A new, unique, time-ordered id.
    pub fn generate() -> Self {
        Self(ulid::Ulid::new().to_string())
    }

    /// Parses an id received from outside; `None` when it is not a ULID.
    pub fn parse(s: &str) -> Option<Self> {
        ulid::Ulid::from_string(s).ok().map(|u| Self(u.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person referenced by a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Person {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Upstream organization (tenant / customer) a task belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What an access task asks a technician to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessAction {
    CreateAccount,
    AddAccess,
    RemoveAccess,
    RemoveAccount,
    UpdateAccount,
}

impl AccessAction {
    pub const ALL: [AccessAction; 5] =
        [Self::CreateAccount, Self::AddAccess, Self::RemoveAccess, Self::RemoveAccount, Self::UpdateAccount];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateAccount => "create_account",
            Self::AddAccess => "add_access",
            Self::RemoveAccess => "remove_access",
            Self::RemoveAccount => "remove_account",
            Self::UpdateAccount => "update_account",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Severity of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A provisioning task a human must carry out in a target application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTask {
    pub action: AccessAction,
    pub user: Person,
    pub application: String,
    #[serde(default)]
    pub entitlements: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Person>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
}

/// A security alert about one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub user_email: String,
    pub alert_type: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// The two kinds of work item, tagged by `kind` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskPayload {
    Access(AccessTask),
    Alert(Alert),
}

impl TaskPayload {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Access(_) => "access",
            Self::Alert(_) => "alert",
        }
    }

    /// E-mail of the user the task is about, if known.
    pub fn user_email(&self) -> Option<&str> {
        match self {
            Self::Access(a) => a.user.email.as_deref(),
            Self::Alert(a) => Some(a.user_email.as_str()),
        }
    }
}

/// A validated submission, before it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    pub source: String,
    pub external_id: String,
    #[serde(flatten)]
    pub payload: TaskPayload,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

impl NewTask {
    /// Stable fingerprint of the submission, used to tell a true repeat from a conflicting reuse
    /// of the same `(source, external_id)`.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&canonical))
    }
}

/// One line of a task's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The stored task: the submission plus everything the bridge learned while working on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub source: String,
    pub external_id: String,
    #[serde(flatten)]
    pub payload: TaskPayload,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
    pub connection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    pub state: TaskState,
    pub status: Status,
    pub outcome: Option<Outcome>,
    pub ticket: Option<TicketRef>,
    pub attempts: u32,
    /// How many times a worker claimed the task for creation; above 1, an earlier worker may have
    /// created the ticket and crashed before recording it, so the next one searches first.
    #[serde(default)]
    pub claims: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// When the task is next due for ticket creation (state `received` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the ticket is next due for a status poll (states `ticket_open` / `noted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_poll_at: Option<DateTime<Utc>>,
    /// Grouping key (alerts under `user` / `user_alert` grouping), namespaced by connection in stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_key: Option<String>,
    /// When a finished task may be garbage-collected (TTL); set on final states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Fingerprint of the original submission (see [`NewTask::fingerprint`]).
    pub fingerprint: String,
    pub history: Vec<HistoryEntry>,
    /// Optimistic-lock version; stores bump it on every successful update.
    pub version: u64,
    /// Cancelled with a ticket: the close (or note) to carry out, and its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_close: Option<crate::domain::TicketClose>,
}

/// Where a task sits in the work queues; stores derive their due index from this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Waiting for ticket creation (first attempt or retry) at this time.
    Create(DateTime<Utc>),
    /// Waiting for the next status poll on its connection at this time.
    Poll(DateTime<Utc>),
}

impl Task {
    /// A freshly received task, due for ticket creation now.
    pub fn new(new: NewTask, connection: String, now: DateTime<Utc>) -> Self {
        let fingerprint = new.fingerprint();
        Self {
            id: TaskId::generate(),
            source: new.source,
            external_id: new.external_id,
            payload: new.payload,
            organization: new.organization,
            connection,
            callback_url: new.callback_url,
            state: TaskState::Received,
            status: Status::Open,
            outcome: None,
            ticket: None,
            attempts: 0,
            claims: 0,
            last_error: None,
            created_at: now,
            updated_at: now,
            completed_at: None,
            next_attempt_at: Some(now),
            next_poll_at: None,
            group_key: None,
            expires_at: None,
            fingerprint,
            history: vec![HistoryEntry { at: now, event: "received".into(), detail: None }],
            version: 0,
            ticket_close: None,
        }
    }

    /// Whether this cancelled task still has to note/close its ticket.
    pub fn closing_ticket(&self) -> bool {
        self.state == TaskState::Cancelled
            && self.ticket.is_some()
            && self.ticket_close.as_ref().is_some_and(|c| c.result.is_none())
    }

    /// The work queue this task is in, if any.
    pub fn due(&self) -> Option<Due> {
        match self.state {
            TaskState::Received => self.next_attempt_at.map(Due::Create),
            TaskState::TicketOpen | TaskState::Noted => self.next_poll_at.map(Due::Poll),
            // A cancelled task whose ticket still needs its note/close waits in the poll queue.
            TaskState::Cancelled if self.closing_ticket() => self.next_poll_at.map(Due::Poll),
            _ => None,
        }
    }
}
