//! Persistence of tasks, ticket groups, leases, mappings and the contact cache.
//!
//! [`Store`] is implemented by [`sqlite::SqliteStore`] (local runner) and [`dynamo::DynamoStore`]
//! (Lambda functions); one conformance suite (`shared/tests/store_conformance.rs`) runs against both.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use thiserror::Error;

use crate::domain::{
    ContactEntry, Delivery, DeliveryState, Lease, OrgMapping, PsaRecord, RecordKind, SyncCheckpoint, Task, TaskEvent,
    TaskId, TaskState, TicketGroup, UserMapping,
};

#[cfg(feature = "dynamo")]
pub mod dynamo;
mod mapping_record;
mod poll_mark;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use mapping_record::{MappingKind, MappingRecord};
pub use poll_mark::{POLL_MARK_KEY, PollMark};

/// Errors a store reports.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The item changed since it was read (optimistic lock) or a condition failed.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// A cursor from outside that this store did not issue.
    #[error("invalid cursor")]
    InvalidCursor,
    /// A stored item could not be decoded.
    #[error("corrupt item {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The backend failed (network, throttling, I/O).
    #[error("store backend error: {0}")]
    Backend(String),
}

/// Result of an idempotent task create.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The task was new and is now stored.
    New(Task),
    /// A task with the same `(source, external_id)` already existed; this is it.
    Existing(Task),
}

impl Created {
    pub fn task(&self) -> &Task {
        match self {
            Self::New(t) | Self::Existing(t) => t,
        }
    }
}

/// One page of a listing, with an opaque cursor for the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub cursor: Option<String>,
}

/// Every storage operation the four flows need.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores `task` together with its `(source, external_id)` idempotency key, atomically.
    /// If the key exists, nothing is written and the first task is returned.
    async fn create_task(&self, task: &Task) -> Result<Created, StoreError>;

    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError>;

    /// Writes `task` if the stored version still equals `task.version`; the stored copy (returned)
    /// has `version + 1`. Keeps the due index in step with [`Task::due`] and sets the TTL from
    /// `expires_at`. [`StoreError::Conflict`] when someone else wrote first.
    async fn update_task(&self, task: &Task) -> Result<Task, StoreError>;

    /// Tasks waiting for ticket creation with `next_attempt_at <= now`, oldest first.
    async fn due_for_creation(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Task>, StoreError>;

    /// Open tickets of `connection` with `next_poll_at <= now`, oldest first.
    async fn due_for_polling(
        &self,
        connection: &str,
        now: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Task>, StoreError>;

    /// Tasks in `state`, newest update first (operators; `failed` is the dead-letter list).
    async fn list_tasks(&self, state: TaskState, limit: usize, cursor: Option<&str>) -> Result<Page<Task>, StoreError>;

    async fn get_group(&self, connection: &str, key: &str) -> Result<Option<TicketGroup>, StoreError>;

    /// Creates the group if none exists; returns the existing group when another worker won.
    async fn create_group(&self, group: &TicketGroup) -> Result<Option<TicketGroup>, StoreError>;

    /// Removes the group if it still points at `ticket_id`; `false` if it did not.
    async fn release_group(&self, connection: &str, key: &str, ticket_id: &str) -> Result<bool, StoreError>;

    /// Takes `name` for `owner` until `now + ttl` if it is free or expired (or already ours).
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError>;

    /// Like [`Store::acquire_lease`], and also says whose expired lease it replaced (in the same
    /// conditional write), so the new holder can finish what a dead holder may have started.
    async fn take_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<LeaseTaken>, StoreError>;

    /// Extends a lease we still hold; `None` if it was lost.
    async fn renew_lease(&self, lease: &Lease, now: DateTime<Utc>, ttl: Duration) -> Result<Option<Lease>, StoreError>;

    /// Releases a lease if we still hold it.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError>;

    async fn put_mapping(&self, mapping: &OrgMapping) -> Result<(), StoreError>;
    async fn get_mapping(&self, connection: &str, org_id: &str) -> Result<Option<OrgMapping>, StoreError>;
    async fn list_mappings(&self, connection: &str) -> Result<Vec<OrgMapping>, StoreError>;
    async fn delete_mapping(&self, connection: &str, org_id: &str) -> Result<bool, StoreError>;

    /// Writes (inserts or replaces) the mapping of one upstream user; `mapping.email` must already
    /// be normalized with [`UserMapping::key`].
    async fn put_user_mapping(&self, mapping: &UserMapping) -> Result<(), StoreError>;
    /// The mapping of a normalized e-mail address.
    async fn get_user_mapping(&self, connection: &str, email: &str) -> Result<Option<UserMapping>, StoreError>;
    /// Every user mapping of a connection (matched, unmatched and excluded).
    async fn list_user_mappings(&self, connection: &str) -> Result<Vec<UserMapping>, StoreError>;
    /// Removes a user mapping; `false` if there was none.
    async fn delete_user_mapping(&self, connection: &str, email: &str) -> Result<bool, StoreError>;

    async fn put_contact(&self, entry: &ContactEntry) -> Result<(), StoreError>;
    /// A cached lookup that has not expired at `now`.
    async fn get_contact(
        &self,
        connection: &str,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ContactEntry>, StoreError>;

    /// Claims up to `limit` tasks due for creation: each is hidden from other workers until
    /// `now + lease` by a version-checked update, so two workers never process one task.
    async fn claim_for_creation(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let page = self.due_for_creation(now, limit, None).await?;
        let mut claimed = Vec::with_capacity(page.items.len());
        for task in page.items {
            if let Some(t) = claim(self, task, now, lease).await? {
                claimed.push(t);
            }
        }
        Ok(claimed)
    }

    // ── Outbox (callbacks and events owed to receivers; see `domain::Delivery`) ──

    /// Writes `task` exactly like [`Store::update_task`] and stores `deliveries` (new outbox
    /// entries) in the same atomic write: both are stored or neither is.
    async fn update_task_with_deliveries(&self, task: &Task, deliveries: &[Delivery]) -> Result<Task, StoreError> {
        let _ = (task, deliveries);
        Err(no_outbox())
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let _ = id;
        Err(no_outbox())
    }

    /// Writes `delivery` if the stored version still equals `delivery.version` (returns the stored
    /// copy, `version + 1`); [`StoreError::Conflict`] when someone else wrote first.
    async fn update_delivery(&self, delivery: &Delivery) -> Result<Delivery, StoreError> {
        let _ = delivery;
        Err(no_outbox())
    }

    /// Pending deliveries with `next_attempt_at <= now`, oldest first.
    async fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let _ = (now, limit);
        Err(no_outbox())
    }

    /// Deliveries in `state`, newest update first.
    async fn list_deliveries(
        &self,
        state: DeliveryState,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Delivery>, StoreError> {
        let _ = (state, limit, cursor);
        Err(no_outbox())
    }

    /// The status-poll high-water mark of `connection`, if a cycle ever stored one.
    async fn get_poll_mark(&self, connection: &str) -> Result<Option<PollMark>, StoreError> {
        Err(StoreError::Backend(format!("poll marks are not supported by this store (connection {connection})")))
    }

    /// Writes (inserts or replaces) a connection's poll mark.
    async fn put_poll_mark(&self, mark: &PollMark) -> Result<(), StoreError> {
        Err(StoreError::Backend(format!("poll marks are not supported by this store (connection {})", mark.connection)))
    }

    /// Writes (inserts or replaces) a record read from the PSA by the sync (key [`PsaRecord::key`]).
    async fn put_psa_record(&self, _record: &PsaRecord) -> Result<(), StoreError> {
        Err(StoreError::Backend("PSA records are not supported by this store".into()))
    }

    /// The record stored under `key` ([`PsaRecord::key`]).
    async fn get_psa_record(&self, _connection: &str, _key: &str) -> Result<Option<PsaRecord>, StoreError> {
        Err(StoreError::Backend("PSA records are not supported by this store".into()))
    }

    /// Every record of one kind of a connection, by key.
    async fn list_psa_records(&self, _connection: &str, _kind: RecordKind) -> Result<Vec<PsaRecord>, StoreError> {
        Err(StoreError::Backend("PSA records are not supported by this store".into()))
    }

    /// Writes the sync checkpoint of a connection.
    async fn put_sync_checkpoint(&self, _checkpoint: &SyncCheckpoint) -> Result<(), StoreError> {
        Err(StoreError::Backend("sync checkpoints are not supported by this store".into()))
    }

    /// The sync checkpoint of a connection (none before its first run).
    async fn get_sync_checkpoint(&self, _connection: &str) -> Result<Option<SyncCheckpoint>, StoreError> {
        Err(StoreError::Backend("sync checkpoints are not supported by this store".into()))
    }
}

/// A lease taken by [`Store::take_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTaken {
    pub lease: Lease,
    /// The lease of another owner it replaced (it had expired); `None` when the name was free or
    /// already ours.
    pub previous: Option<Lease>,
}

fn no_outbox() -> StoreError {
    StoreError::Backend("this store keeps no outbox".into())
}

/// Claims one task read elsewhere (e.g. from the stream): `None` if it is not due or another
/// worker got it first.
pub async fn claim<S: Store + ?Sized>(
    store: &S,
    mut task: Task,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Task>, StoreError> {
    if task.state != TaskState::Received || task.next_attempt_at.is_some_and(|at| at > now) {
        return Ok(None);
    }
    if task.apply(TaskEvent::Claimed { until: now + lease }, now).is_err() {
        return Ok(None);
    }
    match store.update_task(&task).await {
        Ok(t) => Ok(Some(t)),
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Encodes a store-internal position as an opaque cursor.
pub(crate) fn encode_cursor(raw: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes a cursor made by [`encode_cursor`].
pub(crate) fn decode_cursor(cursor: &str) -> Result<String, StoreError> {
    use base64::Engine;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
    String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)
}

/// Fixed-width UTC timestamp (nanoseconds) whose string order equals time order; both stores
/// index due times and update times in this form.
#[cfg(any(feature = "sqlite", feature = "dynamo"))]
pub(crate) fn sortable_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// Reads back a time written by [`sortable_time`].
#[cfg(any(feature = "sqlite", feature = "dynamo"))]
pub(crate) fn parse_sortable(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt { key: s.to_string(), reason: format!("not a stored time: {e}") })
}

/// Epoch seconds for a TTL attribute, rounded up so an item never expires early.
#[cfg(any(feature = "sqlite", feature = "dynamo"))]
pub(crate) fn ttl_seconds(t: DateTime<Utc>) -> i64 {
    t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0)
}
