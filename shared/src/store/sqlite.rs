//! Embedded SQLite store for the local runner (`ticket-bridge serve`).
//!
//! One connection behind a mutex; every call runs on tokio's blocking pool. Tasks are kept as a JSON
//! body plus indexed columns mirroring the DynamoDB item (due queue, state, version, TTL).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Created, LeaseTaken, MappingRecord, POLL_MARK_KEY, Page, PollMark, Store, StoreError, decode_cursor, encode_cursor,
    parse_sortable, sortable_time, ttl_seconds,
};
use crate::domain::{
    ContactEntry, Delivery, DeliveryState, Due, Lease, OrgMapping, PsaRecord, RecordKind, SyncCheckpoint, Task, TaskId,
    TaskState, TicketGroup, UserMapping,
};

mod outbox;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    id          TEXT PRIMARY KEY NOT NULL,
    source      TEXT NOT NULL,
    external_id TEXT NOT NULL,
    connection  TEXT NOT NULL,
    state       TEXT NOT NULL,
    due_kind    TEXT,
    due_conn    TEXT,
    due_at      TEXT,
    updated_at  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    expires_at  INTEGER,
    body        TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (due_kind, due_conn, due_at, id) WHERE due_kind IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state, updated_at, id);
CREATE INDEX IF NOT EXISTS tasks_expires ON tasks (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS idempotency (
    source      TEXT NOT NULL,
    external_id TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    PRIMARY KEY (source, external_id)
) STRICT;
CREATE TABLE IF NOT EXISTS groups (
    connection TEXT NOT NULL,
    key        TEXT NOT NULL,
    ticket_id  TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (connection, key)
) STRICT;
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY NOT NULL,
    owner      TEXT NOT NULL,
    expires_at TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS mappings (
    connection TEXT NOT NULL,
    org_id     TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (connection, org_id)
) STRICT;
CREATE TABLE IF NOT EXISTS user_mappings (
    connection TEXT NOT NULL,
    email      TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (connection, email)
) STRICT;
CREATE TABLE IF NOT EXISTS psa_records (
    connection TEXT NOT NULL,
    record_key TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (connection, record_key)
) STRICT;
CREATE TABLE IF NOT EXISTS sync_state (
    connection TEXT NOT NULL,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (connection, name)
) STRICT;
CREATE TABLE IF NOT EXISTS contacts (
    connection TEXT NOT NULL,
    email      TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (connection, email)
) STRICT;
CREATE TABLE IF NOT EXISTS poll_marks (
    connection TEXT NOT NULL,
    mark       TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (connection, mark)
) STRICT;
";

/// `due_kind` values.
const DUE_CREATE: &str = "create";
const DUE_POLL: &str = "poll";

/// SQLite implementation of [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

fn to_json<T: serde::Serialize>(key: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt { key: key.to_string(), reason: e.to_string() })
}

fn from_json<T: serde::de::DeserializeOwned>(key: &str, body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt { key: key.to_string(), reason: e.to_string() })
}

/// The indexed columns derived from a task: (due_kind, due_conn, due_at, expires_at).
fn index_columns(task: &Task) -> (Option<&'static str>, Option<String>, Option<String>, Option<i64>) {
    let (kind, conn, at) = match task.due() {
        Some(Due::Create(at)) => (Some(DUE_CREATE), Some(String::new()), Some(sortable_time(at))),
        Some(Due::Poll(at)) => (Some(DUE_POLL), Some(task.connection.clone()), Some(sortable_time(at))),
        None => (None, None, None),
    };
    (kind, conn, at, task.expires_at.map(ttl_seconds))
}

fn load_task(conn: &Connection, id: &str) -> Result<Option<Task>, StoreError> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM tasks WHERE id = ?1")
        .and_then(|mut st| st.query_row([id], |r| r.get(0)))
        .optional()
        .map_err(db)?;
    body.map(|b| from_json(id, &b)).transpose()
}

/// Splits a `"<sort>|<id>"` cursor.
fn split_cursor(cursor: Option<&str>) -> Result<Option<(String, String)>, StoreError> {
    let Some(c) = cursor else { return Ok(None) };
    let raw = decode_cursor(c)?;
    let (at, id) = raw.split_once('|').ok_or(StoreError::InvalidCursor)?;
    if TaskId::parse(id).is_none() {
        return Err(StoreError::InvalidCursor);
    }
    Ok(Some((at.to_string(), id.to_string())))
}

/// Runs a task query returning `(sort, id, body)` rows and builds an exact page from `limit + 1` rows.
fn task_page(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
    limit: usize,
) -> Result<Page<Task>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let rows = stmt
        .query_map(params, |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    let more = rows.len() > limit;
    let mut items = Vec::with_capacity(limit.min(rows.len()));
    let mut last = None;
    for (sort, id, body) in rows.into_iter().take(limit) {
        items.push(from_json(&id, &body)?);
        last = Some(format!("{sort}|{id}"));
    }
    let cursor = if more { last.map(|l| encode_cursor(&l)) } else { None };
    Ok(Page { items, cursor })
}

/// The conditional upsert behind `acquire_lease` and `take_lease`: writes `lease` if its name is
/// free, expired at `now`, or already held by the same owner. Returns the rows written (0 or 1).
fn upsert_lease(conn: &Connection, lease: &Lease, now: DateTime<Utc>) -> Result<usize, StoreError> {
    conn.execute(
        "INSERT INTO leases (name, owner, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
         WHERE leases.expires_at <= ?4 OR leases.owner = ?2",
        params![lease.name, lease.owner, sortable_time(lease.expires_at), sortable_time(now)],
    )
    .map_err(db)
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
}

/// The version-checked task update of [`Store::update_task`] on `conn` (a transaction or not).
fn write_task_update(conn: &Connection, task: &Task) -> Result<Task, StoreError> {
    let mut next = task.clone();
    next.version = task.version + 1;
    let expected = i64::try_from(task.version).map_err(|_| StoreError::Conflict("version overflow".into()))?;
    let (kind, due_conn, due_at, expires) = index_columns(&next);
    let body = to_json(next.id.as_str(), &next)?;
    let changed = conn
        .prepare_cached(
            "UPDATE tasks SET connection = ?1, state = ?2, due_kind = ?3, due_conn = ?4, due_at = ?5,
                              updated_at = ?6, version = ?7, expires_at = ?8, body = ?9
             WHERE id = ?10 AND version = ?11",
        )
        .and_then(|mut st| {
            st.execute(params![
                next.connection,
                next.state.as_str(),
                kind,
                due_conn,
                due_at,
                sortable_time(next.updated_at),
                expected + 1,
                expires,
                body,
                next.id.as_str(),
                expected,
            ])
        })
        .map_err(db)?;
    if changed == 1 {
        return Ok(next);
    }
    match load_task(conn, next.id.as_str())? {
        Some(cur) => {
            Err(StoreError::Conflict(format!("task {} is at version {}, not {}", next.id, cur.version, expected)))
        }
        None => Err(StoreError::NotFound(format!("task {}", next.id))),
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` in WAL mode and creates the schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)).map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
        Self::init(conn)
    }

    /// A private in-memory database (tests, throwaway runs).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        conn.execute_batch(outbox::SCHEMA).map_err(db)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-done transaction behind (rusqlite
            // rolls back on drop), so a poisoned lock is safe to reuse.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite worker failed: {e}")))?
    }

    /// Deletes finished tasks (and their idempotency keys) and contact entries whose TTL passed
    /// at `now` — SQLite's stand-in for DynamoDB TTL. Returns the number of tasks removed.
    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
            let secs = now.timestamp();
            tx.execute(
                "DELETE FROM idempotency WHERE task_id IN
                   (SELECT id FROM tasks WHERE expires_at IS NOT NULL AND expires_at <= ?1)",
                [secs],
            )
            .map_err(db)?;
            let n = tx
                .execute("DELETE FROM tasks WHERE expires_at IS NOT NULL AND expires_at <= ?1", [secs])
                .map_err(db)?;
            tx.execute("DELETE FROM contacts WHERE expires_at <= ?1", [sortable_time(now)]).map_err(db)?;
            outbox::purge(&tx, secs)?;
            tx.commit().map_err(db)?;
            Ok(n)
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_task(&self, task: &Task) -> Result<Created, StoreError> {
        let task = task.clone();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
            // Statements on the intake path are prepared once per connection (rusqlite's cache).
            let existing: Option<String> = tx
                .prepare_cached("SELECT task_id FROM idempotency WHERE source = ?1 AND external_id = ?2")
                .and_then(|mut st| st.query_row(params![task.source, task.external_id], |r| r.get(0)))
                .optional()
                .map_err(db)?;
            if let Some(id) = existing {
                if let Some(first) = load_task(&tx, &id)? {
                    return Ok(Created::Existing(first));
                }
                // The first task was purged after its retention period: the key is free again.
                tx.execute(
                    "DELETE FROM idempotency WHERE source = ?1 AND external_id = ?2",
                    params![task.source, task.external_id],
                )
                .map_err(db)?;
            }
            if load_task(&tx, task.id.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!("task {} already exists", task.id)));
            }
            tx.prepare_cached("INSERT INTO idempotency (source, external_id, task_id) VALUES (?1, ?2, ?3)")
                .and_then(|mut st| st.execute(params![task.source, task.external_id, task.id.as_str()]))
                .map_err(db)?;
            let (kind, due_conn, due_at, expires) = index_columns(&task);
            let body = to_json(task.id.as_str(), &task)?;
            tx.prepare_cached(
                "INSERT INTO tasks (id, source, external_id, connection, state, due_kind, due_conn, due_at,
                                    updated_at, version, expires_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    task.id.as_str(),
                    task.source,
                    task.external_id,
                    task.connection,
                    task.state.as_str(),
                    kind,
                    due_conn,
                    due_at,
                    sortable_time(task.updated_at),
                    i64::try_from(task.version).unwrap_or(i64::MAX),
                    expires,
                    body,
                ])
            })
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Created::New(task))
        })
        .await
    }

    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let id = id.clone();
        self.run(move |conn| load_task(conn, id.as_str())).await
    }

    async fn update_task(&self, task: &Task) -> Result<Task, StoreError> {
        let task = task.clone();
        self.run(move |conn| write_task_update(conn, &task)).await
    }

    async fn due_for_creation(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Task>, StoreError> {
        self.due_page(DUE_CREATE, String::new(), now, limit, cursor).await
    }

    async fn due_for_polling(
        &self,
        connection: &str,
        now: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Task>, StoreError> {
        self.due_page(DUE_POLL, connection.to_string(), now, limit, cursor).await
    }

    async fn list_tasks(&self, state: TaskState, limit: usize, cursor: Option<&str>) -> Result<Page<Task>, StoreError> {
        let limit = limit.max(1);
        // Newest first: start above every timestamp ('~' sorts after digits).
        let (after_at, after_id) = split_cursor(cursor)?.unwrap_or_else(|| ("~".into(), String::new()));
        self.run(move |conn| {
            task_page(
                conn,
                "SELECT updated_at, id, body FROM tasks
                 WHERE state = ?1 AND (updated_at, id) < (?2, ?3)
                 ORDER BY updated_at DESC, id DESC LIMIT ?4",
                &[&state.as_str(), &after_at, &after_id, &sql_limit(limit)],
                limit,
            )
        })
        .await
    }

    async fn get_group(&self, connection: &str, key: &str) -> Result<Option<TicketGroup>, StoreError> {
        let (connection, key) = (connection.to_string(), key.to_string());
        self.run(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM groups WHERE connection = ?1 AND key = ?2",
                    params![connection, key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            body.map(|b| from_json(&key, &b)).transpose()
        })
        .await
    }

    async fn create_group(&self, group: &TicketGroup) -> Result<Option<TicketGroup>, StoreError> {
        let group = group.clone();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
            let inserted = tx
                .execute(
                    "INSERT INTO groups (connection, key, ticket_id, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (connection, key) DO NOTHING",
                    params![group.connection, group.key, group.ticket.id, to_json(&group.key, &group)?],
                )
                .map_err(db)?;
            let winner = if inserted == 1 {
                None
            } else {
                let body: String = tx
                    .query_row(
                        "SELECT body FROM groups WHERE connection = ?1 AND key = ?2",
                        params![group.connection, group.key],
                        |r| r.get(0),
                    )
                    .map_err(db)?;
                Some(from_json(&group.key, &body)?)
            };
            tx.commit().map_err(db)?;
            Ok(winner)
        })
        .await
    }

    async fn release_group(&self, connection: &str, key: &str, ticket_id: &str) -> Result<bool, StoreError> {
        let (connection, key, ticket_id) = (connection.to_string(), key.to_string(), ticket_id.to_string());
        self.run(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM groups WHERE connection = ?1 AND key = ?2 AND ticket_id = ?3",
                    params![connection, key, ticket_id],
                )
                .map_err(db)?;
            Ok(n == 1)
        })
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let lease = Lease { name: name.to_string(), owner: owner.to_string(), expires_at: now + ttl };
        self.run(move |conn| {
            let n = upsert_lease(conn, &lease, now)?;
            Ok((n == 1).then_some(lease))
        })
        .await
    }

    async fn take_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<LeaseTaken>, StoreError> {
        let lease = Lease { name: name.to_string(), owner: owner.to_string(), expires_at: now + ttl };
        self.run(move |conn| {
            // One transaction: the lease read is the one the upsert replaces.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
            let old: Option<(String, String)> = tx
                .query_row("SELECT owner, expires_at FROM leases WHERE name = ?1", params![lease.name], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(db)?;
            let n = upsert_lease(&tx, &lease, now)?;
            tx.commit().map_err(db)?;
            if n != 1 {
                return Ok(None);
            }
            let previous = match old {
                Some((o, until)) if o != lease.owner => {
                    Some(Lease { name: lease.name.clone(), owner: o, expires_at: parse_sortable(&until)? })
                }
                _ => None,
            };
            Ok(Some(LeaseTaken { lease, previous }))
        })
        .await
    }

    async fn renew_lease(&self, lease: &Lease, now: DateTime<Utc>, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let renewed = Lease { expires_at: now + ttl, ..lease.clone() };
        self.run(move |conn| {
            let n = conn
                .execute(
                    "UPDATE leases SET expires_at = ?1 WHERE name = ?2 AND owner = ?3 AND expires_at > ?4",
                    params![sortable_time(renewed.expires_at), renewed.name, renewed.owner, sortable_time(now)],
                )
                .map_err(db)?;
            Ok((n == 1).then_some(renewed))
        })
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.run(move |conn| {
            conn.execute("DELETE FROM leases WHERE name = ?1 AND owner = ?2", params![lease.name, lease.owner])
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn put_mapping(&self, mapping: &OrgMapping) -> Result<(), StoreError> {
        self.put_record(mapping).await
    }

    async fn get_mapping(&self, connection: &str, org_id: &str) -> Result<Option<OrgMapping>, StoreError> {
        self.get_record(connection, org_id).await
    }

    async fn list_mappings(&self, connection: &str) -> Result<Vec<OrgMapping>, StoreError> {
        self.list_records(connection).await
    }

    async fn delete_mapping(&self, connection: &str, org_id: &str) -> Result<bool, StoreError> {
        self.delete_record::<OrgMapping>(connection, org_id).await
    }

    async fn put_user_mapping(&self, mapping: &UserMapping) -> Result<(), StoreError> {
        self.put_record(mapping).await
    }

    async fn get_user_mapping(&self, connection: &str, email: &str) -> Result<Option<UserMapping>, StoreError> {
        self.get_record(connection, email).await
    }

    async fn list_user_mappings(&self, connection: &str) -> Result<Vec<UserMapping>, StoreError> {
        self.list_records(connection).await
    }

    async fn delete_user_mapping(&self, connection: &str, email: &str) -> Result<bool, StoreError> {
        self.delete_record::<UserMapping>(connection, email).await
    }

    async fn put_contact(&self, entry: &ContactEntry) -> Result<(), StoreError> {
        let e = entry.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO contacts (connection, email, expires_at, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (connection, email) DO UPDATE SET expires_at = excluded.expires_at, body = excluded.body",
                params![e.connection, e.email, sortable_time(e.expires_at), to_json(&e.email, &e)?],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn get_contact(
        &self,
        connection: &str,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ContactEntry>, StoreError> {
        let (connection, email) = (connection.to_string(), email.to_string());
        self.run(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM contacts WHERE connection = ?1 AND email = ?2 AND expires_at > ?3",
                    params![connection, email, sortable_time(now)],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            body.map(|b| from_json(&email, &b)).transpose()
        })
        .await
    }

    async fn update_task_with_deliveries(&self, task: &Task, deliveries: &[Delivery]) -> Result<Task, StoreError> {
        let (task, deliveries) = (task.clone(), deliveries.to_vec());
        self.run(move |conn| outbox::update_task_with_deliveries(conn, &task, &deliveries)).await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let id = id.to_string();
        self.run(move |conn| outbox::get(conn, &id)).await
    }

    async fn update_delivery(&self, delivery: &Delivery) -> Result<Delivery, StoreError> {
        let d = delivery.clone();
        self.run(move |conn| outbox::update(conn, &d)).await
    }

    async fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.run(move |conn| outbox::due(conn, sortable_time(now), limit)).await
    }

    async fn list_deliveries(
        &self,
        state: DeliveryState,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Delivery>, StoreError> {
        let cursor = cursor.map(str::to_string);
        self.run(move |conn| outbox::list(conn, state, limit.max(1), cursor.as_deref())).await
    }

    async fn get_poll_mark(&self, connection: &str) -> Result<Option<PollMark>, StoreError> {
        self.get_record(connection, POLL_MARK_KEY).await
    }

    async fn put_poll_mark(&self, mark: &PollMark) -> Result<(), StoreError> {
        self.put_record(mark).await
    }

    async fn put_psa_record(&self, record: &PsaRecord) -> Result<(), StoreError> {
        self.put_record(record).await
    }

    async fn get_psa_record(&self, connection: &str, key: &str) -> Result<Option<PsaRecord>, StoreError> {
        self.get_record(connection, key).await
    }

    async fn list_psa_records(&self, connection: &str, kind: RecordKind) -> Result<Vec<PsaRecord>, StoreError> {
        let all: Vec<PsaRecord> = self.list_records(connection).await?;
        Ok(all.into_iter().filter(|r| r.kind == kind).collect())
    }

    async fn put_sync_checkpoint(&self, checkpoint: &SyncCheckpoint) -> Result<(), StoreError> {
        self.put_record(checkpoint).await
    }

    async fn get_sync_checkpoint(&self, connection: &str) -> Result<Option<SyncCheckpoint>, StoreError> {
        self.get_record(connection, SyncCheckpoint::NAME).await
    }
}

/// Mapping records, one implementation for every [`MappingRecord`] kind (its table and key column).
impl SqliteStore {
    async fn put_record<T: MappingRecord>(&self, record: &T) -> Result<(), StoreError> {
        let r = record.clone();
        let k = T::KIND;
        self.run(move |conn| {
            let sql = format!(
                "INSERT INTO {t} (connection, {c}, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (connection, {c}) DO UPDATE SET body = excluded.body",
                t = k.table,
                c = k.key_column
            );
            let body = to_json(r.record_key(), &r)?;
            conn.prepare_cached(&sql)
                .and_then(|mut st| st.execute(params![r.connection(), r.record_key(), body]))
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn get_record<T: MappingRecord>(&self, connection: &str, key: &str) -> Result<Option<T>, StoreError> {
        let (connection, key) = (connection.to_string(), key.to_string());
        let k = T::KIND;
        self.run(move |conn| {
            let sql = format!("SELECT body FROM {t} WHERE connection = ?1 AND {c} = ?2", t = k.table, c = k.key_column);
            let body: Option<String> = conn
                .prepare_cached(&sql)
                .and_then(|mut st| st.query_row(params![connection, key], |r| r.get(0)).optional())
                .map_err(db)?;
            body.map(|b| from_json(&key, &b)).transpose()
        })
        .await
    }

    async fn list_records<T: MappingRecord>(&self, connection: &str) -> Result<Vec<T>, StoreError> {
        let connection = connection.to_string();
        let k = T::KIND;
        self.run(move |conn| {
            let sql =
                format!("SELECT {c}, body FROM {t} WHERE connection = ?1 ORDER BY {c}", t = k.table, c = k.key_column);
            let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
            let rows = stmt
                .query_map([&connection], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            rows.iter().map(|(key, body)| from_json(key, body)).collect()
        })
        .await
    }

    async fn delete_record<T: MappingRecord>(&self, connection: &str, key: &str) -> Result<bool, StoreError> {
        let (connection, key) = (connection.to_string(), key.to_string());
        let k = T::KIND;
        self.run(move |conn| {
            let sql = format!("DELETE FROM {t} WHERE connection = ?1 AND {c} = ?2", t = k.table, c = k.key_column);
            let n = conn.prepare_cached(&sql).and_then(|mut st| st.execute(params![connection, key])).map_err(db)?;
            Ok(n == 1)
        })
        .await
    }
}

impl SqliteStore {
    /// One page of the due queue `kind` (and `due_conn`), oldest first, keyset-paged on (due_at, id).
    async fn due_page(
        &self,
        kind: &'static str,
        due_conn: String,
        now: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Task>, StoreError> {
        let limit = limit.max(1);
        let (after_at, after_id) = split_cursor(cursor)?.unwrap_or_default();
        self.run(move |conn| {
            task_page(
                conn,
                "SELECT due_at, id, body FROM tasks
                 WHERE due_kind = ?1 AND due_conn = ?2 AND due_at <= ?3 AND (due_at, id) > (?4, ?5)
                 ORDER BY due_at, id LIMIT ?6",
                &[&kind, &due_conn, &sortable_time(now), &after_at, &after_id, &sql_limit(limit)],
                limit,
            )
        })
        .await
    }
}
