//! Outbox entries: a completion callback or bridge event owed to a receiver. An entry is stored in
//! the same write as the task state change that causes it, then sent until the receiver
//! acknowledges it or it is dead-lettered with a reason. Its `id` is stable across every attempt
//! (and across restarts), so receivers de-duplicate on it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TaskId;

/// What an entry delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// Signed webhook POST to the task's `callback_url`.
    Callback,
    /// Bridge event (EventBridge in AWS, the log locally).
    Event,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Callback => "callback",
            Self::Event => "event",
        }
    }
}

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt (`next_attempt_at`).
    Pending,
    /// Acknowledged by the receiver (callback: a 2xx answer; event: accepted by the bus).
    Delivered,
    /// Given up after the last allowed attempt or a permanent error; `last_error` says why.
    Dead,
    /// Not sent because it was no longer true when its turn came (a `TaskFailed` notice for a task
    /// replayed since); `last_error` says why.
    Superseded,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 4] = [Self::Pending, Self::Delivered, Self::Dead, Self::Superseded];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One outbox entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// ULID; the de-duplication key receivers see (`X-TicketBridge-Delivery`, `delivery_id`).
    pub id: String,
    pub task_id: TaskId,
    pub connection: String,
    pub kind: DeliveryKind,
    /// Event `detail-type` (TaskCompleted, TaskCancelled, TaskFailed); also names callbacks.
    pub detail_type: String,
    /// Callback URL (callbacks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The body sent: the task as the API shows it at the state change.
    pub payload: serde_json::Value,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When the next attempt is due (pending only). A sender claims an entry by moving this
    /// forward, so an entry whose sender died becomes due again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the store may forget a finished entry (TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Optimistic-lock version; the store increments it on every update.
    #[serde(default)]
    pub version: u64,
}

impl Delivery {
    /// A new pending entry, due at `now`.
    pub fn new(
        kind: DeliveryKind,
        task_id: TaskId,
        connection: &str,
        detail_type: &str,
        target: Option<String>,
        payload: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: ulid::Ulid::new().to_string(),
            task_id,
            connection: connection.to_string(),
            kind,
            detail_type: detail_type.to_string(),
            target,
            payload,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: Some(now),
            last_error: None,
            created_at: now,
            updated_at: now,
            expires_at: None,
            version: 0,
        }
    }

    /// When the entry is due, if it is pending.
    pub fn due(&self) -> Option<DateTime<Utc>> {
        (self.state == DeliveryState::Pending).then_some(self.next_attempt_at.unwrap_or(self.created_at))
    }

    /// Parses an id received from outside; `None` when it is not a ULID.
    pub fn parse_id(s: &str) -> Option<String> {
        ulid::Ulid::from_string(s).ok().map(|u| u.to_string())
    }

    /// The receiver acknowledged the entry.
    pub fn delivered(&mut self, now: DateTime<Utc>, retain_until: DateTime<Utc>) {
        self.state = DeliveryState::Delivered;
        self.attempts += 1;
        self.next_attempt_at = None;
        self.last_error = None;
        self.updated_at = now;
        self.expires_at = Some(retain_until);
    }

    /// The entry is no longer true (`reason`): finished without being sent, kept until `retain_until`.
    pub fn superseded(&mut self, reason: String, now: DateTime<Utc>, retain_until: DateTime<Utc>) {
        self.state = DeliveryState::Superseded;
        self.next_attempt_at = None;
        self.last_error = Some(reason);
        self.updated_at = now;
        self.expires_at = Some(retain_until);
    }

    /// An attempt failed: due again at `retry_at`, or dead (kept until `retain_until`) when `None`.
    pub fn failed(
        &mut self,
        error: String,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        retain_until: DateTime<Utc>,
    ) {
        self.attempts += 1;
        self.last_error = Some(error);
        self.updated_at = now;
        match retry_at {
            Some(at) => self.next_attempt_at = Some(at),
            None => {
                self.state = DeliveryState::Dead;
                self.next_attempt_at = None;
                self.expires_at = Some(retain_until);
            }
        }
    }

    /// Sends a delivered or dead entry again, with a fresh attempt budget and the same id.
    pub fn replay(&mut self, now: DateTime<Utc>) -> Result<(), &'static str> {
        if self.state == DeliveryState::Pending {
            return Err("the delivery is still pending");
        }
        self.state = DeliveryState::Pending;
        self.attempts = 0;
        self.next_attempt_at = Some(now);
        self.updated_at = now;
        self.expires_at = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_keeps_the_id_and_counts_attempts() {
        let now = Utc::now();
        let mut d = Delivery::new(
            DeliveryKind::Callback,
            TaskId::generate(),
            "c",
            "TaskCompleted",
            None,
            serde_json::json!({}),
            now,
        );
        let id = d.id.clone();
        assert_eq!(d.due(), Some(now));
        d.failed("HTTP 503".into(), Some(now + chrono::Duration::seconds(5)), now, now);
        assert_eq!(
            (d.state, d.attempts, d.due()),
            (DeliveryState::Pending, 1, Some(now + chrono::Duration::seconds(5)))
        );
        d.failed("HTTP 503".into(), None, now, now);
        assert_eq!((d.state, d.attempts, d.due()), (DeliveryState::Dead, 2, None));
        assert!(d.replay(now).is_ok());
        assert_eq!((d.state, d.attempts, d.id.as_str()), (DeliveryState::Pending, 0, id.as_str()));
        assert!(d.replay(now).is_err());
        d.delivered(now, now);
        assert_eq!((d.state, d.due()), (DeliveryState::Delivered, None));
        assert_eq!(DeliveryState::parse("dead"), Some(DeliveryState::Dead));
        assert_eq!(DeliveryState::parse("lost"), None);
    }
}
