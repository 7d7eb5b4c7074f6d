//! Store conformance suite: every case is written once against `&dyn Store` and instantiated for
//! SQLite (temp file) and DynamoDB (a fresh table on moto_server at `TB_AWS_ENDPOINT`).

#![cfg(all(feature = "sqlite", feature = "dynamo"))]

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use bridge::domain::{
    Alert, CloseResult, ContactEntry, Lease, MappedStatus, NewTask, OrgMapping, Outcome, Severity, Task, TaskEvent,
    TaskId, TaskPayload, TaskResult, TaskState, TicketGroup, TicketRef, UserMapping,
};
use bridge::store::dynamo::{DynamoStore, OpCounter, client_with_op_counter, create_table, table};
use bridge::store::sqlite::SqliteStore;
use bridge::store::{Created, Page, Store, StoreError};
use chrono::{DateTime, Duration, Utc};

// ---------------------------------------------------------------------------------------------
// Harness: one store per test plus raw access to its backend.

enum Raw {
    Sqlite { path: PathBuf, _dir: tempfile::TempDir },
    Dynamo { client: Client, table: String, counter: Arc<OpCounter> },
}

struct Harness {
    store: Arc<dyn Store>,
    raw: Raw,
}

impl Harness {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.db");
        let store = SqliteStore::open(&path).unwrap();
        Self { store: Arc::new(store), raw: Raw::Sqlite { path, _dir: dir } }
    }

    async fn dynamo(test: &str) -> Self {
        let endpoint = std::env::var(bridge::aws::ENDPOINT_ENV).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
            panic!(
                "{} is not set: start moto_server (e.g. `moto_server -H 127.0.0.1 -p 5123`) and export \
                 {}=http://127.0.0.1:5123 to run the DynamoDB conformance tests",
                bridge::aws::ENDPOINT_ENV,
                bridge::aws::ENDPOINT_ENV
            )
        });
        let config = bridge::aws::sdk_config(Some(&endpoint)).await;
        let counter = OpCounter::new();
        let client = client_with_op_counter(&config, counter.clone());
        let name = format!("conf-{}-{}", test.replace('_', "-"), ulid::Ulid::new().to_string().to_lowercase());
        create_table(&client, &name).await.unwrap();
        let store = DynamoStore::new(client.clone(), name.clone());
        Self { store: Arc::new(store), raw: Raw::Dynamo { client, table: name, counter } }
    }

    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The TTL value stored for a task: the raw `expires_at` attribute / column.
    async fn raw_expires_at(&self, id: &TaskId) -> Option<i64> {
        match &self.raw {
            Raw::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.query_row("SELECT expires_at FROM tasks WHERE id = ?1", [id.as_str()], |r| r.get(0)).unwrap()
            }
            Raw::Dynamo { client, table: name, .. } => {
                let item = client
                    .get_item()
                    .table_name(name)
                    .key(table::PK, AttributeValue::S(format!("TASK#{id}")))
                    .key(table::SK, AttributeValue::S("TASK".into()))
                    .consistent_read(true)
                    .send()
                    .await
                    .unwrap()
                    .item
                    .expect("task item exists");
                item.get(table::TTL_ATTRIBUTE).map(|v| v.as_n().expect("TTL is a Number").parse().unwrap())
            }
        }
    }

    /// Deletes a task item behind the store's back, as DynamoDB TTL (or `purge_expired`) does.
    async fn delete_task_raw(&self, id: &TaskId) {
        match &self.raw {
            Raw::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                assert_eq!(conn.execute("DELETE FROM tasks WHERE id = ?1", [id.as_str()]).unwrap(), 1);
            }
            Raw::Dynamo { client, table: name, .. } => {
                client
                    .delete_item()
                    .table_name(name)
                    .key(table::PK, AttributeValue::S(format!("TASK#{id}")))
                    .key(table::SK, AttributeValue::S("TASK".into()))
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// Checks invariants of the whole flow (DynamoDB: operations were counted, none was a Scan)
    /// and drops the table.
    async fn finish(self) {
        if let Raw::Dynamo { client, table, counter } = &self.raw {
            assert!(counter.total() > 0, "the op counter saw no operations");
            assert_eq!(counter.count("Scan"), 0, "a Scan was issued: {:?}", counter.snapshot());
            client.delete_table().table_name(table).send().await.unwrap();
        }
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let h = super::Harness::sqlite().await;
                    super::$case(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod dynamo {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let h = super::Harness::dynamo(stringify!($case)).await;
                    super::$case(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

conformance!(
    create_get_roundtrip,
    idempotent_create_returns_first_task,
    expired_task_frees_its_idempotency_key,
    concurrent_creates_one_winner,
    update_checks_version,
    due_for_creation_only_due_in_order,
    due_for_polling_only_due_for_connection_in_order,
    due_for_creation_pages,
    due_for_polling_pages,
    due_pages_cut_by_size_stay_in_order,
    concurrent_claims_are_disjoint_and_complete,
    tasks_leave_due_index_when_done,
    list_tasks_by_state_pages,
    results_read_back_from_the_store,
    concurrent_create_group_one_winner,
    release_group_needs_ticket_id,
    lease_lifecycle,
    take_lease_names_the_expired_holder,
    ttl_set_on_final_states,
    mappings_crud,
    user_mappings_crud,
    org_and_user_mappings_share_a_partition_without_mixing,
    contact_cache_expiry,
    foreign_cursor_rejected,
    cancelled_ticket_close_rides_the_poll_queue,
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn new_task(source: &str, external_id: &str, connection: &str, at: DateTime<Utc>) -> Task {
    let new = NewTask {
        source: source.into(),
        external_id: external_id.into(),
        payload: TaskPayload::Alert(Alert {
            user_email: format!("{external_id}@acme.example"),
            alert_type: "Too Many Downloads".into(),
            severity: Severity::High,
            occurred_at: Some(at),
            details: serde_json::json!({"count": 42, "ip": "203.0.113.9"}).as_object().unwrap().clone(),
        }),
        organization: None,
        connection: Some(connection.into()),
        callback_url: Some("https://upstream.example/cb".into()),
    };
    Task::new(new, connection.into(), at)
}

fn ticket(id: &str) -> TicketRef {
    TicketRef { id: id.into(), number: Some(format!("T-{id}")), url: None, remote_status: Some("New".into()) }
}

async fn create(store: &dyn Store, task: &Task) -> Task {
    match store.create_task(task).await.unwrap() {
        Created::New(t) => t,
        Created::Existing(t) => panic!("expected a new task, got existing {}", t.id),
    }
}

/// Applies `event` at `now` and stores the result.
async fn advance(store: &dyn Store, mut task: Task, event: TaskEvent, now: DateTime<Utc>) -> Task {
    task.apply(event, now).unwrap();
    store.update_task(&task).await.unwrap()
}

/// A stored task with an open ticket, next polled at `poll_at`.
async fn open_task(store: &dyn Store, ext: &str, conn: &str, t0: DateTime<Utc>, poll_at: DateTime<Utc>) -> Task {
    let t = create(store, &new_task("idp", ext, conn, t0)).await;
    advance(store, t, TaskEvent::TicketCreated { ticket: ticket(ext), next_poll_at: poll_at }, t0).await
}

/// Follows cursors to the end; returns every page.
async fn all_pages<F, Fut>(mut page: F) -> Vec<Vec<Task>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<Task>, StoreError>>,
{
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let p = page(cursor.take()).await.unwrap();
        pages.push(p.items);
        match p.cursor {
            Some(c) => cursor = Some(c),
            None => return pages,
        }
        assert!(pages.len() < 100, "paging does not terminate");
    }
}

fn ids(tasks: &[Task]) -> Vec<TaskId> {
    tasks.iter().map(|t| t.id.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Cases

async fn create_get_roundtrip(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let task = new_task("idp", "ext-1", "conn", t0);
    assert_eq!(s.create_task(&task).await.unwrap(), Created::New(task.clone()));
    assert_eq!(s.get_task(&task.id).await.unwrap(), Some(task.clone()));
    assert_eq!(s.get_task(&TaskId::generate()).await.unwrap(), None);
}

async fn idempotent_create_returns_first_task(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let first = create(s, &new_task("idp", "ext-1", "conn", t0)).await;
    let mut again = new_task("idp", "ext-1", "other-conn", t0 + Duration::seconds(5));
    again.callback_url = None;
    assert_eq!(s.create_task(&again).await.unwrap(), Created::Existing(first.clone()));
    assert_eq!(s.get_task(&again.id).await.unwrap(), None, "the repeat must not be stored");
    // Same external id from another source, and another external id, are different tasks.
    create(s, &new_task("crm", "ext-1", "conn", t0)).await;
    create(s, &new_task("idp", "ext-2", "conn", t0)).await;
    // Key parts containing the separator do not collide.
    create(s, &new_task("a#b", "c", "conn", t0)).await;
    create(s, &new_task("a", "b#c", "conn", t0)).await;
    assert_eq!(s.get_task(&first.id).await.unwrap(), Some(first));
}

/// Once the first task is gone (TTL), its `(source, external_id)` may be used again.
async fn expired_task_frees_its_idempotency_key(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let first = create(s, &new_task("idp", "reused", "c", t0)).await;
    h.delete_task_raw(&first.id).await;
    let second = new_task("idp", "reused", "c", t0 + Duration::days(40));
    assert_eq!(s.create_task(&second).await.unwrap(), Created::New(second.clone()));
    let third = new_task("idp", "reused", "c", t0 + Duration::days(41));
    assert_eq!(s.create_task(&third).await.unwrap(), Created::Existing(second.clone()));
    assert_eq!(s.get_task(&first.id).await.unwrap(), None);
}

async fn concurrent_creates_one_winner(h: &Harness) {
    let t0 = Utc::now();
    let mut handles = Vec::new();
    for i in 0..50 {
        let store = Arc::clone(&h.store);
        let task = new_task("idp", "same-ext", &format!("conn-{i}"), t0);
        handles.push(tokio::spawn(async move { (task.id.clone(), store.create_task(&task).await.unwrap()) }));
    }
    let mut winners = Vec::new();
    let mut seen = HashSet::new();
    for h in handles {
        let (submitted, created) = h.await.unwrap();
        if let Created::New(t) = &created {
            assert_eq!(t.id, submitted);
            winners.push(t.id.clone());
        }
        seen.insert(created.task().id.clone());
    }
    assert_eq!(winners.len(), 1, "exactly one create wins");
    assert_eq!(seen, HashSet::from([winners[0].clone()]), "every caller sees the winner");
    let stored = h.store.get_task(&winners[0]).await.unwrap().unwrap();
    assert_eq!(stored.external_id, "same-ext");
}

async fn update_checks_version(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let v0 = create(s, &new_task("idp", "ext-1", "conn", t0)).await;
    assert_eq!(v0.version, 0);

    let mut edit = v0.clone();
    edit.apply(TaskEvent::CreateFailed { error: "timeout".into(), retry_at: t0 + Duration::minutes(1) }, t0).unwrap();
    let v1 = s.update_task(&edit).await.unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.attempts, 1);
    assert_eq!(s.get_task(&v0.id).await.unwrap(), Some(v1.clone()));

    // A writer still holding version 0 loses, and nothing changes.
    let mut stale = v0.clone();
    stale.apply(TaskEvent::GaveUp { error: "late writer".into() }, t0).unwrap();
    match s.update_task(&stale).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("stale update must conflict, got {other:?}"),
    }
    assert_eq!(s.get_task(&v0.id).await.unwrap(), Some(v1.clone()));

    // The current holder continues.
    let v2 = advance(s, v1, TaskEvent::GaveUp { error: "gave up".into() }, t0).await;
    assert_eq!(v2.version, 2);
    assert_eq!(s.get_task(&v0.id).await.unwrap().unwrap().state, TaskState::Failed);

    // Updating a task that was never created is NotFound, and does not create it.
    let ghost = new_task("idp", "ghost", "conn", t0);
    match s.update_task(&ghost).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("update of a missing task must be NotFound, got {other:?}"),
    }
    assert_eq!(s.get_task(&ghost.id).await.unwrap(), None);
}

async fn due_for_creation_only_due_in_order(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    // Created out of due order.
    let mut due = Vec::new();
    for i in [3i64, 0, 4, 1, 2] {
        due.push(
            create(s, &new_task("idp", &format!("due-{i}"), &format!("c{}", i % 2), t0 + Duration::seconds(i * 10)))
                .await,
        );
    }
    due.sort_by_key(|t| t.next_attempt_at);
    // Not due yet.
    create(s, &new_task("idp", "future", "c0", t0 + Duration::hours(2))).await;
    let retry_later = create(s, &new_task("idp", "retry", "c0", t0)).await;
    advance(s, retry_later, TaskEvent::CreateFailed { error: "503".into(), retry_at: t0 + Duration::hours(1) }, t0)
        .await;
    // Waiting for a poll, not for creation.
    open_task(s, "open", "c0", t0, t0).await;

    let now = t0 + Duration::minutes(1);
    let page = s.due_for_creation(now, 100, None).await.unwrap();
    assert_eq!(ids(&page.items), ids(&due));
    assert_eq!(page.cursor, None);
    // A due time exactly at `now` counts as due.
    let at_edge = s.due_for_creation(t0 + Duration::seconds(40), 100, None).await.unwrap();
    assert_eq!(ids(&at_edge.items), ids(&due));
    let before_last = s.due_for_creation(t0 + Duration::seconds(39), 100, None).await.unwrap();
    assert_eq!(ids(&before_last.items), ids(&due[..4]));
}

async fn due_for_polling_only_due_for_connection_in_order(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let mut due = Vec::new();
    for i in [2i64, 0, 1] {
        due.push(open_task(s, &format!("a-{i}"), "conn-a", t0, t0 + Duration::seconds(i)).await);
    }
    due.sort_by_key(|t| t.next_poll_at);
    open_task(s, "a-future", "conn-a", t0, t0 + Duration::hours(1)).await;
    open_task(s, "b-due", "conn-b", t0, t0).await;
    // Prefix of another connection's name must not match.
    open_task(s, "a2-due", "conn-a2", t0, t0).await;
    create(s, &new_task("idp", "a-received", "conn-a", t0)).await;

    let now = t0 + Duration::seconds(10);
    let page = s.due_for_polling("conn-a", now, 100, None).await.unwrap();
    assert_eq!(ids(&page.items), ids(&due));
    assert_eq!(page.cursor, None);
    let b = s.due_for_polling("conn-b", now, 100, None).await.unwrap();
    assert_eq!(b.items.len(), 1);
    assert_eq!(b.items[0].external_id, "b-due");
    assert!(s.due_for_polling("conn-none", now, 100, None).await.unwrap().items.is_empty());
}

/// Checks that `pages` is exactly `expected` (in order) split into pages of `limit`.
fn assert_paged(pages: &[Vec<Task>], expected: &[Task], limit: usize) {
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    let mut want = vec![limit; expected.len() / limit];
    if !expected.len().is_multiple_of(limit) {
        want.push(expected.len() % limit);
    }
    assert_eq!(sizes, want, "page sizes");
    let got: Vec<TaskId> = pages.iter().flatten().map(|t| t.id.clone()).collect();
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len(), "duplicates across pages");
    assert_eq!(got, ids(expected), "all items, in order");
}

async fn due_for_creation_pages(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let mut due = Vec::new();
    for i in 0..25i64 {
        // Groups of three share a due time: ties must page without loss or repeats.
        due.push(create(s, &new_task("idp", &format!("e{i}"), "c", t0 + Duration::seconds((i * 7 % 25) / 3))).await);
    }
    for i in 0..3 {
        create(s, &new_task("idp", &format!("later{i}"), "c", t0 + Duration::hours(1))).await;
    }
    due.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
    let now = t0 + Duration::minutes(1);
    let store = Arc::clone(&h.store);
    // 10 per page; then pages smaller than a shard's share, where shards must be merged carefully.
    for limit in [10, 3, 1] {
        let pages = all_pages(|c| {
            let store = Arc::clone(&store);
            async move { store.due_for_creation(now, limit, c.as_deref()).await }
        })
        .await;
        assert_paged(&pages, &due, limit);
    }
}

async fn due_for_polling_pages(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let mut due = Vec::new();
    for i in 0..25i64 {
        due.push(open_task(s, &format!("p{i}"), "conn-a", t0, t0 + Duration::seconds(i % 9)).await);
    }
    open_task(s, "other", "conn-b", t0, t0).await;
    open_task(s, "future", "conn-a", t0, t0 + Duration::hours(1)).await;
    due.sort_by(|a, b| (a.next_poll_at, &a.id).cmp(&(b.next_poll_at, &b.id)));
    let now = t0 + Duration::minutes(1);
    let store = Arc::clone(&h.store);
    let pages = all_pages(|c| {
        let store = Arc::clone(&store);
        async move { store.due_for_polling("conn-a", now, 10, c.as_deref()).await }
    })
    .await;
    assert_paged(&pages, &due, 10);
    // Other page sizes cover the same set.
    let pages = all_pages(|c| {
        let store = Arc::clone(&store);
        async move { store.due_for_polling("conn-a", now, 7, c.as_deref()).await }
    })
    .await;
    assert_paged(&pages, &due, 7);
}

/// Large tasks make DynamoDB cut query pages at 1 MB (moto does too), so shards return fewer items
/// than asked while having more: pages may be short but must stay in due order, complete, unique.
async fn due_pages_cut_by_size_stay_in_order(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let blob = "x".repeat(250_000);
    let mut due = Vec::new();
    for i in 0..20i64 {
        let mut t = new_task("idp", &format!("big{i}"), "c", t0 + Duration::seconds((i * 7) % 20));
        if let TaskPayload::Alert(a) = &mut t.payload {
            a.details.insert("blob".into(), serde_json::Value::String(blob.clone()));
        }
        due.push(create(s, &t).await);
    }
    due.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
    let now = t0 + Duration::minutes(1);
    let store = Arc::clone(&h.store);
    let pages = all_pages(|c| {
        let store = Arc::clone(&store);
        async move { store.due_for_creation(now, 10, c.as_deref()).await }
    })
    .await;
    assert!(
        pages.iter().all(|p| !p.is_empty() && p.len() <= 10),
        "page sizes {:?}",
        pages.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let got: Vec<TaskId> = pages.iter().flatten().map(|t| t.id.clone()).collect();
    assert_eq!(got, ids(&due), "all items, once, in due order");
}

async fn concurrent_claims_are_disjoint_and_complete(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let mut all = BTreeSet::new();
    for i in 0..30i64 {
        all.insert(create(s, &new_task("idp", &format!("c{i}"), "c", t0 - Duration::seconds(i))).await.id);
    }
    let now = t0 + Duration::seconds(1);
    let lease = Duration::minutes(5);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let store = Arc::clone(&h.store);
            tokio::spawn(async move { store.claim_for_creation(now, lease, 100).await.unwrap() })
        })
        .collect();
    let mut claimed = Vec::new();
    for w in workers {
        claimed.push(w.await.unwrap().into_iter().map(|t| t.id).collect::<BTreeSet<_>>());
    }
    assert!(claimed[0].is_disjoint(&claimed[1]), "a task was claimed twice");
    assert_eq!(&claimed[0] | &claimed[1], all, "every due task is claimed");
    // Claimed tasks are hidden until the claim runs out, then due again.
    assert!(s.due_for_creation(now, 100, None).await.unwrap().items.is_empty());
    assert!(s.claim_for_creation(now, lease, 100).await.unwrap().is_empty());
    let later = now + lease + Duration::seconds(1);
    let again = s.due_for_creation(later, 100, None).await.unwrap();
    assert_eq!(again.items.iter().map(|t| t.id.clone()).collect::<BTreeSet<_>>(), all);
}

async fn tasks_leave_due_index_when_done(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let now = t0 + Duration::minutes(1);
    let in_create = |p: Page<Task>, id: &TaskId| p.items.iter().any(|t| &t.id == id);
    let t = create(s, &new_task("idp", "life", "c", t0)).await;
    assert!(in_create(s.due_for_creation(now, 100, None).await.unwrap(), &t.id));

    let t = advance(s, t, TaskEvent::TicketCreated { ticket: ticket("9"), next_poll_at: t0 }, t0).await;
    assert!(!in_create(s.due_for_creation(now, 100, None).await.unwrap(), &t.id), "left the creation queue");
    assert!(in_create(s.due_for_polling("c", now, 100, None).await.unwrap(), &t.id), "entered the poll queue");

    let retain = t0 + Duration::days(30);
    let t = advance(
        s,
        t,
        TaskEvent::Closed { outcome: Outcome::Fulfilled, remote_status: "Closed".into(), retain_until: retain },
        t0,
    )
    .await;
    assert_eq!(t.state, TaskState::Completed);
    assert!(!in_create(s.due_for_polling("c", now, 100, None).await.unwrap(), &t.id), "left the poll queue");
    assert!(!in_create(s.due_for_creation(now, 100, None).await.unwrap(), &t.id));

    // Dead letter leaves the creation queue; replay puts it back.
    let d = create(s, &new_task("idp", "dead", "c", t0)).await;
    let d = advance(s, d, TaskEvent::GaveUp { error: "400 bad request".into() }, t0).await;
    assert!(!in_create(s.due_for_creation(now, 100, None).await.unwrap(), &d.id));
    let d = advance(s, d, TaskEvent::Replay, t0).await;
    assert!(in_create(s.due_for_creation(now, 100, None).await.unwrap(), &d.id), "replayed task is due again");

    // Cancelling an open ticket's task leaves the poll queue.
    let o = open_task(s, "cancel-me", "c", t0, t0).await;
    let o = advance(s, o, TaskEvent::Cancel { retain_until: retain }, t0).await;
    assert!(!in_create(s.due_for_polling("c", now, 100, None).await.unwrap(), &o.id));
    let polls = s.due_for_polling("c", now, 100, None).await.unwrap();
    assert!(polls.items.is_empty(), "nothing left to poll: {:?}", ids(&polls.items));
}

async fn list_tasks_by_state_pages(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let mut failed = Vec::new();
    for i in 0..12i64 {
        let t = create(s, &new_task("idp", &format!("f{i}"), "c", t0)).await;
        // Updated in a scrambled order so list order must come from updated_at.
        let at = t0 + Duration::seconds((i * 5) % 12);
        failed.push(advance(s, t, TaskEvent::GaveUp { error: format!("error {i}") }, at).await);
    }
    for i in 0..3 {
        create(s, &new_task("idp", &format!("r{i}"), "c", t0)).await;
    }
    let done = open_task(s, "done", "c", t0, t0).await;
    advance(
        s,
        done,
        TaskEvent::Closed { outcome: Outcome::Rejected, remote_status: "Rejected".into(), retain_until: t0 },
        t0,
    )
    .await;

    failed.sort_by(|a, b| (b.updated_at, &b.id).cmp(&(a.updated_at, &a.id)));
    let store = Arc::clone(&h.store);
    let pages = all_pages(|c| {
        let store = Arc::clone(&store);
        async move { store.list_tasks(TaskState::Failed, 5, c.as_deref()).await }
    })
    .await;
    assert_paged(&pages, &failed, 5);
    assert!(pages.iter().flatten().all(|t| t.state == TaskState::Failed && t.last_error.is_some()));
    assert_eq!(s.list_tasks(TaskState::Received, 10, None).await.unwrap().items.len(), 3);
    assert_eq!(s.list_tasks(TaskState::Completed, 10, None).await.unwrap().items.len(), 1);
    assert!(s.list_tasks(TaskState::Cancelled, 10, None).await.unwrap().items.is_empty());
}

/// Every caller-facing result survives the store: read back by id and listed by state, each task
/// shows the result it was stored with, and the API view carries it.
async fn results_read_back_from_the_store(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let retain = t0 + Duration::days(30);
    let closed =
        |outcome, remote: &str| TaskEvent::Closed { outcome, remote_status: remote.into(), retain_until: retain };
    let open = open_task(s, "open", "c", t0, t0).await;
    let pending = open_task(s, "pending", "c", t0, t0).await;
    let pending = advance(
        s,
        pending,
        TaskEvent::Polled { status: MappedStatus::Pending, remote_status: "Waiting".into(), next_poll_at: t0 },
        t0,
    )
    .await;
    let fulfilled = open_task(s, "fulfilled", "c", t0, t0).await;
    let fulfilled = advance(s, fulfilled, closed(Outcome::Fulfilled, "Resolved"), t0).await;
    let rejected = open_task(s, "rejected", "c", t0, t0).await;
    let rejected = advance(s, rejected, closed(Outcome::Rejected, "Rejected"), t0).await;
    let cancelled = open_task(s, "cancelled", "c", t0, t0).await;
    let cancelled = advance(s, cancelled, TaskEvent::Cancel { retain_until: retain }, t0).await;
    let failed = create(s, &new_task("idp", "failed", "c", t0)).await;
    let failed = advance(s, failed, TaskEvent::GaveUp { error: "refused".into() }, t0).await;
    let expected = [
        (&open, TaskResult::Open, TaskState::TicketOpen),
        (&pending, TaskResult::Pending, TaskState::TicketOpen),
        (&fulfilled, TaskResult::Fulfilled, TaskState::Completed),
        (&rejected, TaskResult::Rejected, TaskState::Completed),
        (&cancelled, TaskResult::Cancelled, TaskState::Cancelled),
        (&failed, TaskResult::Failed, TaskState::Failed),
    ];
    for (task, result, state) in expected {
        let back = s.get_task(&task.id).await.unwrap().unwrap();
        assert_eq!((back.state, back.result()), (state, result), "{}", task.external_id);
        assert_eq!(bridge::engine::task_json(&back)["result"], result.as_str());
        let listed = s.list_tasks(state, 10, None).await.unwrap().items;
        let found =
            listed.iter().find(|t| t.id == task.id).unwrap_or_else(|| panic!("{} not listed", task.external_id));
        assert_eq!(found.result(), result);
    }
    // A rejected ticket and a fulfilled one share the state callers already read; only the result
    // (and the outcome) tell them apart.
    let completed = s.list_tasks(TaskState::Completed, 10, None).await.unwrap().items;
    let mut results: Vec<_> = completed.iter().map(|t| t.result()).collect();
    results.sort_by_key(|r| r.as_str());
    assert_eq!(results, vec![TaskResult::Fulfilled, TaskResult::Rejected]);
}

fn group(key: &str, ticket_id: &str, t0: DateTime<Utc>) -> TicketGroup {
    TicketGroup {
        connection: "conn".into(),
        key: key.into(),
        ticket: ticket(ticket_id),
        owner: TaskId::generate(),
        created_at: t0,
    }
}

async fn concurrent_create_group_one_winner(h: &Harness) {
    let t0 = Utc::now();
    let key = "user:bob@acme.example|alert:too many downloads";
    let racers: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&h.store);
            let g = group(key, &format!("ticket-{i}"), t0);
            tokio::spawn(async move { (g.clone(), store.create_group(&g).await.unwrap()) })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for r in racers {
        match r.await.unwrap() {
            (mine, None) => winners.push(mine),
            (_, Some(theirs)) => losers.push(theirs),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one group is created");
    assert_eq!(losers.len(), 19);
    assert!(losers.iter().all(|g| g == &winners[0]), "losers see the winner's group");
    assert_eq!(h.store.get_group("conn", key).await.unwrap().as_ref(), Some(&winners[0]));
    assert_eq!(h.store.get_group("other-conn", key).await.unwrap(), None);
}

async fn release_group_needs_ticket_id(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let g = group("user:ann@acme.example", "T1", t0);
    assert_eq!(s.create_group(&g).await.unwrap(), None);
    assert!(!s.release_group("conn", &g.key, "T2").await.unwrap(), "wrong ticket must not release");
    assert_eq!(s.get_group("conn", &g.key).await.unwrap(), Some(g.clone()));
    assert!(s.release_group("conn", &g.key, "T1").await.unwrap());
    assert_eq!(s.get_group("conn", &g.key).await.unwrap(), None);
    assert!(!s.release_group("conn", &g.key, "T1").await.unwrap(), "already released");
    let next = group("user:ann@acme.example", "T3", t0);
    assert_eq!(s.create_group(&next).await.unwrap(), None, "key is free again");
    assert_eq!(s.get_group("conn", &g.key).await.unwrap(), Some(next));
}

async fn lease_lifecycle(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let ttl = Duration::seconds(30);
    let at = |secs: i64| t0 + Duration::seconds(secs);
    let name = "conn-a#refresh";

    let a = s.acquire_lease(name, "worker-a", t0, ttl).await.unwrap().expect("free lease is taken");
    assert_eq!(a, Lease { name: name.into(), owner: "worker-a".into(), expires_at: at(30) });
    assert_eq!(s.acquire_lease(name, "worker-b", at(10), ttl).await.unwrap(), None, "held by a");
    // Other names are independent.
    assert!(s.acquire_lease("conn-b#refresh", "worker-b", at(10), ttl).await.unwrap().is_some());
    // Re-acquiring our own lease extends it.
    let a = s.acquire_lease(name, "worker-a", at(5), ttl).await.unwrap().expect("owner re-acquires");
    assert_eq!(a.expires_at, at(35));

    // Only the owner renews.
    let fake = Lease { owner: "worker-b".into(), ..a.clone() };
    assert_eq!(s.renew_lease(&fake, at(20), ttl).await.unwrap(), None);
    let a = s.renew_lease(&a, at(20), ttl).await.unwrap().expect("owner renews");
    assert_eq!(a.expires_at, at(50));
    assert_eq!(s.acquire_lease(name, "worker-b", at(45), ttl).await.unwrap(), None, "renewal holds");

    // After expiry another worker takes over, and the old owner has lost it.
    let b = s.acquire_lease(name, "worker-b", at(51), ttl).await.unwrap().expect("expired lease is taken over");
    assert_eq!(b.owner, "worker-b");
    assert_eq!(s.renew_lease(&a, at(52), ttl).await.unwrap(), None, "lost lease cannot be renewed");
    s.release_lease(&a).await.unwrap();
    assert_eq!(s.acquire_lease(name, "worker-a", at(53), ttl).await.unwrap(), None, "stale release is a no-op");

    // An expired lease is not renewed either.
    assert_eq!(s.renew_lease(&b, at(90), ttl).await.unwrap(), None);

    s.release_lease(&b).await.unwrap();
    assert!(s.acquire_lease(name, "worker-a", at(54), ttl).await.unwrap().is_some(), "free after release");
}

async fn take_lease_names_the_expired_holder(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let ttl = Duration::seconds(30);
    let at = |secs: i64| t0 + Duration::seconds(secs);
    let name = "group/conn/user:ann";
    let a = s.take_lease(name, "task-a", t0, ttl).await.unwrap().expect("free: taken");
    assert_eq!((a.lease.owner.as_str(), a.previous), ("task-a", None), "nothing replaced");
    assert_eq!(s.take_lease(name, "task-b", at(10), ttl).await.unwrap(), None, "held by a");
    let again = s.take_lease(name, "task-a", at(5), ttl).await.unwrap().expect("ours: re-taken");
    assert_eq!(again.previous, None, "our own lease is not a previous holder");
    let b = s.take_lease(name, "task-b", at(40), ttl).await.unwrap().expect("expired: taken over");
    let prev = b.previous.expect("the expired holder is named");
    assert_eq!((prev.owner.as_str(), prev.expires_at), ("task-a", at(35)));
    s.release_lease(&b.lease).await.unwrap();
    assert_eq!(s.take_lease(name, "task-c", at(41), ttl).await.unwrap().unwrap().previous, None, "released: free");
}

async fn ttl_set_on_final_states(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let retain = t0 + Duration::days(30);
    let expected = retain.timestamp() + i64::from(retain.timestamp_subsec_nanos() > 0);

    let received = create(s, &new_task("idp", "r", "c", t0)).await;
    assert_eq!(h.raw_expires_at(&received.id).await, None);
    let open = open_task(s, "o", "c", t0, t0).await;
    assert_eq!(h.raw_expires_at(&open.id).await, None);

    let done = advance(
        s,
        open,
        TaskEvent::Closed { outcome: Outcome::Fulfilled, remote_status: "Resolved".into(), retain_until: retain },
        t0,
    )
    .await;
    assert_eq!(done.expires_at, Some(retain));
    assert_eq!(h.raw_expires_at(&done.id).await, Some(expected));

    let cancelled = advance(s, received, TaskEvent::Cancel { retain_until: retain }, t0).await;
    assert_eq!(h.raw_expires_at(&cancelled.id).await, Some(expected));

    // Dead letters stay until an operator acts.
    let dead = create(s, &new_task("idp", "d", "c", t0)).await;
    let dead = advance(s, dead, TaskEvent::GaveUp { error: "x".into() }, t0).await;
    assert_eq!(h.raw_expires_at(&dead.id).await, None);
}

fn mapping(conn: &str, org: &str, customer: Option<&str>, t0: DateTime<Utc>) -> OrgMapping {
    OrgMapping {
        connection: conn.into(),
        org_id: org.into(),
        org_name: Some(format!("Org {org}")),
        customer_id: customer.map(str::to_string),
        customer_name: customer.map(|c| format!("Customer {c}")),
        contact_id: Some("contact-1".into()),
        contract_id: None,
        contract_service_id: None,
        excluded: customer.is_none(),
        updated_at: t0,
    }
}

async fn mappings_crud(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let m1 = mapping("c", "org-1", Some("100"), t0);
    let m2 = mapping("c", "org#2", Some("200"), t0);
    let m3 = mapping("c", "org-3", None, t0);
    let other = mapping("d", "org-1", Some("999"), t0);
    for m in [&m1, &m2, &m3, &other] {
        s.put_mapping(m).await.unwrap();
    }
    assert_eq!(s.get_mapping("c", "org-1").await.unwrap(), Some(m1.clone()));
    assert_eq!(s.get_mapping("d", "org-1").await.unwrap(), Some(other.clone()));
    assert_eq!(s.get_mapping("c", "org-9").await.unwrap(), None);

    let sorted = |mut v: Vec<OrgMapping>| {
        v.sort_by(|a, b| a.org_id.cmp(&b.org_id));
        v
    };
    assert_eq!(sorted(s.list_mappings("c").await.unwrap()), sorted(vec![m1.clone(), m2.clone(), m3.clone()]));

    // Overwrite.
    let m1b = mapping("c", "org-1", Some("101"), t0 + Duration::seconds(1));
    s.put_mapping(&m1b).await.unwrap();
    assert_eq!(s.get_mapping("c", "org-1").await.unwrap(), Some(m1b.clone()));

    assert!(s.delete_mapping("c", "org#2").await.unwrap());
    assert!(!s.delete_mapping("c", "org#2").await.unwrap(), "second delete finds nothing");
    assert_eq!(s.get_mapping("c", "org#2").await.unwrap(), None);
    assert_eq!(sorted(s.list_mappings("c").await.unwrap()), sorted(vec![m1b, m3]));
    assert_eq!(s.list_mappings("d").await.unwrap(), vec![other]);
    assert!(s.list_mappings("none").await.unwrap().is_empty());
}

fn user(conn: &str, email: &str, contact: Option<&str>, excluded: bool, t0: DateTime<Utc>) -> UserMapping {
    UserMapping {
        connection: conn.into(),
        email: UserMapping::key(email),
        name: Some(format!("User {email}")),
        org_id: Some("org-1".into()),
        contact_id: contact.map(str::to_string),
        customer_id: contact.map(|_| "100".to_string()),
        excluded,
        updated_at: t0,
    }
}

async fn user_mappings_crud(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let ada = user("c", "Ada@Example.com", Some("501"), false, t0);
    let hash = user("c", "o#hash%@example.com", Some("502"), false, t0);
    let gone = user("c", "gone@example.com", None, true, t0);
    let other = user("d", "ada@example.com", Some("999"), false, t0);
    assert_eq!(ada.email, "ada@example.com", "keys are normalized");
    for m in [&ada, &hash, &gone, &other] {
        s.put_user_mapping(m).await.unwrap();
    }
    assert_eq!(s.get_user_mapping("c", "ada@example.com").await.unwrap(), Some(ada.clone()));
    assert_eq!(s.get_user_mapping("c", &hash.email).await.unwrap(), Some(hash.clone()));
    assert_eq!(s.get_user_mapping("d", "ada@example.com").await.unwrap(), Some(other.clone()));
    assert_eq!(s.get_user_mapping("c", "nobody@example.com").await.unwrap(), None);
    let sorted = |mut v: Vec<UserMapping>| {
        v.sort_by(|a, b| a.email.cmp(&b.email));
        v
    };
    assert_eq!(sorted(s.list_user_mappings("c").await.unwrap()), sorted(vec![ada.clone(), hash.clone(), gone.clone()]));

    // Include after exclude: overwrite in place.
    let back = UserMapping {
        excluded: false,
        contact_id: Some("503".into()),
        updated_at: t0 + Duration::seconds(1),
        ..gone.clone()
    };
    s.put_user_mapping(&back).await.unwrap();
    assert_eq!(s.get_user_mapping("c", &gone.email).await.unwrap(), Some(back.clone()));

    assert!(s.delete_user_mapping("c", &hash.email).await.unwrap());
    assert!(!s.delete_user_mapping("c", &hash.email).await.unwrap(), "second delete finds nothing");
    assert_eq!(sorted(s.list_user_mappings("c").await.unwrap()), sorted(vec![ada, back]));
    assert_eq!(s.list_user_mappings("d").await.unwrap(), vec![other]);
    assert!(s.list_user_mappings("none").await.unwrap().is_empty());
}

/// DynamoDB keeps both under `MAP#<conn>`; neither listing may return the other kind.
async fn org_and_user_mappings_share_a_partition_without_mixing(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let org = mapping("c", "USER#x@example.com", Some("100"), t0);
    let person = user("c", "x@example.com", Some("501"), false, t0);
    s.put_mapping(&org).await.unwrap();
    s.put_user_mapping(&person).await.unwrap();
    assert_eq!(s.list_mappings("c").await.unwrap(), vec![org.clone()]);
    assert_eq!(s.list_user_mappings("c").await.unwrap(), vec![person.clone()]);
    assert!(s.delete_mapping("c", &org.org_id).await.unwrap());
    assert_eq!(s.get_user_mapping("c", &person.email).await.unwrap(), Some(person));
}

async fn contact_cache_expiry(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now();
    let hit = ContactEntry {
        connection: "c".into(),
        email: "bob@acme.example".into(),
        contact_id: Some("42".into()),
        expires_at: t0 + Duration::minutes(10),
    };
    let miss = ContactEntry { email: "nobody@acme.example".into(), contact_id: None, ..hit.clone() };
    s.put_contact(&hit).await.unwrap();
    s.put_contact(&miss).await.unwrap();

    assert_eq!(s.get_contact("c", &hit.email, t0).await.unwrap(), Some(hit.clone()));
    assert_eq!(s.get_contact("c", &miss.email, t0).await.unwrap(), Some(miss.clone()), "cached miss");
    assert_eq!(s.get_contact("other", &hit.email, t0).await.unwrap(), None);
    assert_eq!(s.get_contact("c", "unknown@acme.example", t0).await.unwrap(), None);
    // Expired entries are not returned even while still stored.
    assert_eq!(s.get_contact("c", &hit.email, t0 + Duration::minutes(10)).await.unwrap(), None);
    assert_eq!(s.get_contact("c", &hit.email, t0 + Duration::minutes(11)).await.unwrap(), None);

    // A refreshed entry replaces the old one.
    let fresh = ContactEntry { contact_id: Some("43".into()), expires_at: t0 + Duration::hours(1), ..hit.clone() };
    s.put_contact(&fresh).await.unwrap();
    assert_eq!(s.get_contact("c", &hit.email, t0 + Duration::minutes(11)).await.unwrap(), Some(fresh));
}

async fn foreign_cursor_rejected(h: &Harness) {
    let s = h.store();
    let now = Utc::now();
    for bad in ["not base64!", "bm9wZQ", ""] {
        assert!(
            matches!(s.due_for_creation(now, 10, Some(bad)).await, Err(StoreError::InvalidCursor)),
            "due_for_creation accepted {bad:?}"
        );
        assert!(
            matches!(s.due_for_polling("c", now, 10, Some(bad)).await, Err(StoreError::InvalidCursor)),
            "due_for_polling accepted {bad:?}"
        );
        assert!(
            matches!(s.list_tasks(TaskState::Failed, 10, Some(bad)).await, Err(StoreError::InvalidCursor)),
            "list_tasks accepted {bad:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// DynamoDB-only: the operation counter itself.

#[tokio::test]
async fn dynamo_op_counter_counts_operations_by_name() {
    let h = Harness::dynamo("op_counter").await;
    let Raw::Dynamo { client, table, counter } = &h.raw else { unreachable!() };
    counter.reset();
    let t0 = Utc::now();
    create(h.store(), &new_task("idp", "counted", "c", t0)).await;
    assert_eq!(counter.count("TransactWriteItems"), 1, "{:?}", counter.snapshot());
    assert_eq!(counter.writes(), 1);
    h.store().due_for_creation(t0, 10, None).await.unwrap();
    assert_eq!(counter.count("Query"), u64::from(table::DUE_SHARDS), "one query per shard");
    // A Scan issued through the same client would be seen.
    client.scan().table_name(table).send().await.unwrap();
    assert_eq!(counter.count("Scan"), 1);
    client.delete_table().table_name(table).send().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// SQLite-only: TTL stand-in.

#[tokio::test]
async fn sqlite_purge_expired_removes_finished_tasks_and_stale_contacts() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bridge.db")).unwrap();
    let s: &dyn Store = &store;
    let t0 = Utc::now();
    let gone = open_task(s, "gone", "c", t0, t0).await;
    let gone = advance(
        s,
        gone,
        TaskEvent::Closed {
            outcome: Outcome::Fulfilled,
            remote_status: "Closed".into(),
            retain_until: t0 + Duration::days(1),
        },
        t0,
    )
    .await;
    let kept = open_task(s, "kept", "c", t0, t0).await;
    let kept = advance(
        s,
        kept,
        TaskEvent::Closed {
            outcome: Outcome::Fulfilled,
            remote_status: "Closed".into(),
            retain_until: t0 + Duration::days(30),
        },
        t0,
    )
    .await;
    let open = open_task(s, "open", "c", t0, t0).await;
    let contact = ContactEntry {
        connection: "c".into(),
        email: "a@acme.example".into(),
        contact_id: Some("1".into()),
        expires_at: t0 + Duration::hours(1),
    };
    s.put_contact(&contact).await.unwrap();

    assert_eq!(store.purge_expired(t0 + Duration::hours(2)).await.unwrap(), 0, "nothing has expired yet");
    assert_eq!(store.purge_expired(t0 + Duration::days(2)).await.unwrap(), 1);
    assert_eq!(s.get_task(&gone.id).await.unwrap(), None);
    assert_eq!(s.get_task(&kept.id).await.unwrap(), Some(kept));
    assert_eq!(s.get_task(&open.id).await.unwrap(), Some(open));
    assert_eq!(s.get_contact("c", &contact.email, t0).await.unwrap(), None, "expired contact purged");
    // The purged task's key is free again.
    let again = new_task("idp", "gone", "c", t0 + Duration::days(2));
    assert!(matches!(s.create_task(&again).await.unwrap(), Created::New(_)));
}

/// A task cancelled with an open ticket stays in its connection's poll queue (at `close_at`, then
/// at each retry time) until its ticket's close is recorded, and reads back with `ticket_close`.
async fn cancelled_ticket_close_rides_the_poll_queue(h: &Harness) {
    let s = h.store();
    let t0 = Utc::now() - Duration::minutes(10);
    let now = Utc::now();
    let retain = now + Duration::days(30);
    let open = open_task(s, "close-me", "c", t0, t0).await;
    let cancelled = advance(
        s,
        open,
        TaskEvent::CancelBecause { retain_until: retain, reason: Some("withdrawn".into()), close_at: t0 },
        t0,
    )
    .await;
    let back = s.get_task(&cancelled.id).await.unwrap().unwrap();
    assert_eq!(back.state, TaskState::Cancelled);
    assert_eq!(back.ticket_close.as_ref().and_then(|c| c.reason.as_deref()), Some("withdrawn"));
    assert!(ids(&s.due_for_polling("c", now, 100, None).await.unwrap().items).contains(&back.id), "due to close");
    assert!(!ids(&s.due_for_creation(now, 100, None).await.unwrap().items).contains(&back.id));

    // A failed attempt moves it to the retry time: not due before, due after.
    let retry_at = now + Duration::minutes(5);
    let retried = advance(s, back, TaskEvent::TicketCloseFailed { error: "503".into(), retry_at }, now).await;
    assert!(!ids(&s.due_for_polling("c", now, 100, None).await.unwrap().items).contains(&retried.id));
    let later = retry_at + Duration::seconds(1);
    assert!(ids(&s.due_for_polling("c", later, 100, None).await.unwrap().items).contains(&retried.id));

    let done =
        advance(s, retried, TaskEvent::TicketCloseDone { result: CloseResult::Closed, detail: "closed".into() }, now)
            .await;
    assert!(!ids(&s.due_for_polling("c", later, 100, None).await.unwrap().items).contains(&done.id), "done");
    let back = s.get_task(&done.id).await.unwrap().unwrap();
    assert_eq!(back.ticket_close.as_ref().map(|c| (c.result, c.attempts)), Some((Some(CloseResult::Closed), 1)));
    assert_eq!(back.result(), TaskResult::Cancelled);
}
