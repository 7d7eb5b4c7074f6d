//! Outbox conformance: the delivery methods of [`Store`] behave alike on SQLite (temp file) and
//! DynamoDB (a fresh table on moto_server at `TB_AWS_ENDPOINT`). The decisive property: an entry
//! is stored in the same write as the task update that causes it — both or neither.

#![cfg(all(feature = "sqlite", feature = "dynamo"))]

use std::sync::Arc;

use bridge::domain::{
    Alert, Delivery, DeliveryKind, DeliveryState, NewTask, Outcome, Severity, Task, TaskEvent, TaskPayload, TicketRef,
};
use bridge::store::dynamo::{DynamoStore, create_table};
use bridge::store::sqlite::SqliteStore;
use bridge::store::{Created, Store, StoreError};
use chrono::{DateTime, Duration, Utc};

struct Harness {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("bridge.db")).unwrap();
        Self { store: Arc::new(store), _dir: Some(dir) }
    }

    async fn dynamo(test: &str) -> Self {
        let endpoint = std::env::var(bridge::aws::ENDPOINT_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| panic!("{} is not set: run `cargo xtask moto` first", bridge::aws::ENDPOINT_ENV));
        let config = bridge::aws::sdk_config(Some(&endpoint)).await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        let name = format!("outbox-{}-{}", test.replace('_', "-"), ulid::Ulid::new().to_string().to_lowercase());
        create_table(&client, &name).await.unwrap();
        Self { store: Arc::new(DynamoStore::new(client, name)), _dir: None }
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Harness::sqlite().store.as_ref()).await;
                }
            )*
        }
        mod dynamo {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Harness::dynamo(stringify!($case)).await.store.as_ref()).await;
                }
            )*
        }
    };
}

conformance!(
    entries_are_stored_with_the_task_update,
    a_stale_task_version_stores_no_entry,
    a_failed_entry_write_leaves_the_task_unchanged,
    claims_and_results_are_version_checked_and_move_the_entry_between_lists,
    dead_entries_list_in_pages_newest_first,
);

fn open_task(ext: &str, at: DateTime<Utc>) -> Task {
    let new = NewTask {
        source: "idp".into(),
        external_id: ext.into(),
        payload: TaskPayload::Alert(Alert {
            user_email: format!("{ext}@acme.example"),
            alert_type: "Too Many Downloads".into(),
            severity: Severity::High,
            occurred_at: Some(at),
            details: serde_json::Map::new(),
        }),
        organization: None,
        connection: Some("conn".into()),
        callback_url: Some("https://upstream.example/cb".into()),
    };
    Task::new(new, "conn".into(), at)
}

/// A stored task with an open ticket.
async fn stored_open_task(s: &dyn Store, ext: &str, t0: DateTime<Utc>) -> Task {
    let t = match s.create_task(&open_task(ext, t0)).await.unwrap() {
        Created::New(t) => t,
        Created::Existing(t) => panic!("existing {}", t.id),
    };
    let mut t = t;
    let ticket = TicketRef { id: format!("T-{ext}"), number: None, url: None, remote_status: None };
    t.apply(TaskEvent::TicketCreated { ticket, next_poll_at: t0 }, t0).unwrap();
    s.update_task(&t).await.unwrap()
}

/// `task` closed at `now` (not stored) and the two entries it owes.
fn closed(task: &Task, now: DateTime<Utc>) -> (Task, Vec<Delivery>) {
    let mut t = task.clone();
    t.apply(TaskEvent::Closed { outcome: Outcome::Fulfilled, remote_status: "Closed".into(), retain_until: now }, now)
        .unwrap();
    let body = serde_json::json!({"id": t.id, "state": "completed"});
    let event = Delivery::new(DeliveryKind::Event, t.id.clone(), "conn", "TaskCompleted", None, body.clone(), now);
    let callback =
        Delivery::new(DeliveryKind::Callback, t.id.clone(), "conn", "TaskCompleted", t.callback_url.clone(), body, now);
    (t, vec![event, callback])
}

fn ids(list: &[Delivery]) -> Vec<&str> {
    list.iter().map(|d| d.id.as_str()).collect()
}

async fn entries_are_stored_with_the_task_update(s: &dyn Store) {
    let t0 = Utc::now();
    let task = stored_open_task(s, "a", t0).await;
    let (done, owed) = closed(&task, t0);
    let saved = s.update_task_with_deliveries(&done, &owed).await.unwrap();
    assert_eq!(saved.version, task.version + 1);
    assert_eq!(s.get_task(&task.id).await.unwrap(), Some(saved));
    for d in &owed {
        assert_eq!(s.get_delivery(&d.id).await.unwrap().as_ref(), Some(d), "entry reads back as written");
    }
    let due = s.due_deliveries(t0, 10).await.unwrap();
    let mut want = ids(&owed);
    want.sort();
    let mut got = ids(&due);
    got.sort();
    assert_eq!(got, want, "both entries are due at once");
    assert!(s.due_deliveries(t0 - Duration::seconds(1), 10).await.unwrap().is_empty(), "nothing due before");
    let pending = s.list_deliveries(DeliveryState::Pending, 10, None).await.unwrap();
    assert_eq!(pending.items.len(), 2);
    assert_eq!(s.get_delivery(&ulid::Ulid::new().to_string()).await.unwrap(), None);
}

async fn a_stale_task_version_stores_no_entry(s: &dyn Store) {
    let t0 = Utc::now();
    let task = stored_open_task(s, "b", t0).await;
    // Someone else writes first.
    let mut other = task.clone();
    other.apply(TaskEvent::Cancel { retain_until: t0 }, t0).unwrap();
    s.update_task(&other).await.unwrap();
    let (done, owed) = closed(&task, t0);
    match s.update_task_with_deliveries(&done, &owed).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("a stale version must conflict, got {other:?}"),
    }
    for d in &owed {
        assert_eq!(s.get_delivery(&d.id).await.unwrap(), None, "no entry without its state change");
    }
    assert!(s.due_deliveries(t0 + Duration::hours(1), 10).await.unwrap().is_empty());
}

async fn a_failed_entry_write_leaves_the_task_unchanged(s: &dyn Store) {
    let t0 = Utc::now();
    let first = stored_open_task(s, "c1", t0).await;
    let (done, owed) = closed(&first, t0);
    s.update_task_with_deliveries(&done, &owed).await.unwrap();
    // A second task whose entry collides with a stored one: the entry write fails, so the task
    // update must not happen either.
    let second = stored_open_task(s, "c2", t0).await;
    let (done2, mut owed2) = closed(&second, t0);
    owed2[1].id = owed[0].id.clone();
    match s.update_task_with_deliveries(&done2, &owed2).await {
        Err(StoreError::Conflict(_) | StoreError::Backend(_)) => {}
        other => panic!("a colliding entry must fail the write, got {other:?}"),
    }
    assert_eq!(s.get_task(&second.id).await.unwrap(), Some(second.clone()), "task unchanged");
    assert_eq!(s.get_delivery(&owed2[0].id).await.unwrap(), None, "its other entry was not stored either");
    assert_eq!(s.get_delivery(&owed[0].id).await.unwrap().as_ref(), Some(&owed[0]), "the first entry is intact");
}

async fn claims_and_results_are_version_checked_and_move_the_entry_between_lists(s: &dyn Store) {
    let t0 = Utc::now();
    let task = stored_open_task(s, "d", t0).await;
    let (done, owed) = closed(&task, t0);
    s.update_task_with_deliveries(&done, &owed).await.unwrap();
    let entry = owed[1].clone();
    // Claim: moving the next attempt forward hides it until then.
    let mut claim = entry.clone();
    claim.next_attempt_at = Some(t0 + Duration::seconds(60));
    let claimed = s.update_delivery(&claim).await.unwrap();
    assert_eq!(claimed.version, 1);
    assert!(!ids(&s.due_deliveries(t0 + Duration::seconds(59), 10).await.unwrap()).contains(&entry.id.as_str()));
    assert!(ids(&s.due_deliveries(t0 + Duration::seconds(60), 10).await.unwrap()).contains(&entry.id.as_str()));
    // A second sender holding version 0 loses.
    match s.update_delivery(&claim).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("a stale claim must conflict, got {other:?}"),
    }
    // Delivered: out of the queue, listed as delivered.
    let mut ok = claimed.clone();
    ok.delivered(t0, t0 + Duration::days(1));
    let ok = s.update_delivery(&ok).await.unwrap();
    assert!(!ids(&s.due_deliveries(t0 + Duration::days(2), 10).await.unwrap()).contains(&entry.id.as_str()));
    assert_eq!(
        ids(&s.list_deliveries(DeliveryState::Delivered, 10, None).await.unwrap().items),
        vec![entry.id.as_str()]
    );
    assert!(
        !ids(&s.list_deliveries(DeliveryState::Pending, 10, None).await.unwrap().items).contains(&entry.id.as_str())
    );
    // Replayed: same id, due again.
    let mut again = ok;
    again.replay(t0).unwrap();
    let again = s.update_delivery(&again).await.unwrap();
    assert_eq!(again.id, entry.id);
    assert!(ids(&s.due_deliveries(t0, 10).await.unwrap()).contains(&entry.id.as_str()));
    // Missing entries are NotFound, not created.
    let ghost = Delivery { id: ulid::Ulid::new().to_string(), ..entry };
    assert!(matches!(s.update_delivery(&ghost).await, Err(StoreError::NotFound(_))));
    assert_eq!(s.get_delivery(&ghost.id).await.unwrap(), None);
}

async fn dead_entries_list_in_pages_newest_first(s: &dyn Store) {
    let t0 = Utc::now();
    let mut dead_ids = Vec::new();
    for i in 0..5 {
        let task = stored_open_task(s, &format!("e{i}"), t0).await;
        let (done, owed) = closed(&task, t0);
        s.update_task_with_deliveries(&done, &owed).await.unwrap();
        let mut d = owed[0].clone();
        let at = t0 + Duration::seconds(i);
        d.failed("HTTP 500".into(), None, at, at + Duration::days(1));
        s.update_delivery(&d).await.unwrap();
        dead_ids.push(d.id);
    }
    dead_ids.reverse();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = s.list_deliveries(DeliveryState::Dead, 2, cursor.as_deref()).await.unwrap();
        assert!(page.items.len() <= 2);
        assert!(
            page.items.iter().all(|d| d.state == DeliveryState::Dead && d.last_error.as_deref() == Some("HTTP 500"))
        );
        seen.extend(page.items.into_iter().map(|d| d.id));
        pages += 1;
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!((seen, pages), (dead_ids, 3));
    for bad in ["not base64!", "bm9wZQ"] {
        assert!(matches!(s.list_deliveries(DeliveryState::Dead, 2, Some(bad)).await, Err(StoreError::InvalidCursor)));
    }
}
