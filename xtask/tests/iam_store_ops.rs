//! Checks the IAM table the template drift test relies on ([`common::STORE_METHOD_ACTIONS`])
//! against the DynamoDB operations `DynamoStore` really issues: every store method runs on
//! moto_server (`TB_AWS_ENDPOINT`) through its success and lost-race paths with an
//! operation-counting client, and the operations seen per method must equal the table's actions.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bridge::domain::{
    Alert, ContactEntry, NewTask, OrgMapping, Severity, Task, TaskEvent, TaskId, TaskPayload, TaskState, TicketGroup,
    TicketRef,
};
use bridge::store::dynamo::{DynamoStore, OpCounter, client_with_op_counter, create_table};
use bridge::store::{Created, Store, StoreError};
use chrono::{Duration, Utc};
use common::STORE_METHOD_ACTIONS;

async fn store() -> (DynamoStore, Arc<OpCounter>) {
    let endpoint = std::env::var(bridge::aws::ENDPOINT_ENV).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        panic!(
            "{0} is not set: start moto_server (e.g. `cargo xtask moto`) and export \
                 {0}=http://127.0.0.1:<port>, or run `cargo xtask test`",
            bridge::aws::ENDPOINT_ENV
        )
    });
    let config = bridge::aws::sdk_config(Some(&endpoint)).await;
    let counter = OpCounter::new();
    let client = client_with_op_counter(&config, counter.clone());
    let name = format!("iam-ops-{}", ulid::Ulid::new().to_string().to_lowercase());
    create_table(&client, &name).await.unwrap();
    counter.reset(); // table setup is not a store operation
    (DynamoStore::new(client, name), counter)
}

fn task(external_id: &str) -> Task {
    let now = Utc::now();
    let new = NewTask {
        source: "iam-test".into(),
        external_id: external_id.into(),
        payload: TaskPayload::Alert(Alert {
            user_email: "bob@acme.example".into(),
            alert_type: "Too Many Downloads".into(),
            severity: Severity::High,
            occurred_at: Some(now),
            details: serde_json::Map::new(),
        }),
        organization: None,
        connection: Some("conn".into()),
        callback_url: None,
    };
    Task::new(new, "conn".into(), now)
}

fn ticket(id: &str) -> TicketRef {
    TicketRef { id: id.into(), number: None, url: None, remote_status: None }
}

/// IAM action of an operation the counter saw. The store's transactions hold only Puts (the
/// drift test checks the source for other transaction item kinds).
fn action(op: &str) -> String {
    match op {
        "TransactWriteItems" => "dynamodb:PutItem".into(),
        other => format!("dynamodb:{other}"),
    }
}

#[derive(Default)]
struct Seen(BTreeMap<&'static str, BTreeSet<String>>);

impl Seen {
    /// Moves what the counter saw since the last call to `method`.
    fn take(&mut self, method: &'static str, counter: &OpCounter) {
        let ops = counter.snapshot();
        assert!(!ops.is_empty(), "{method} issued no operation");
        self.0.entry(method).or_default().extend(ops.keys().map(|op| action(op)));
        counter.reset();
    }
}

#[tokio::test]
async fn every_store_method_issues_exactly_the_actions_iam_grants() {
    let (s, counter) = store().await;
    let mut seen = Seen::default();
    let now = Utc::now();

    // Tasks: new, repeated submission, read, update, lost update.
    let first = task("ext-1");
    assert!(matches!(s.create_task(&first).await.unwrap(), Created::New(_)));
    let mut again = task("ext-1");
    again.id = TaskId::generate();
    assert!(matches!(s.create_task(&again).await.unwrap(), Created::Existing(_)));
    seen.take("create_task", &counter);

    let stored = s.get_task(&first.id).await.unwrap().unwrap();
    seen.take("get_task", &counter);

    let mut opened = stored.clone();
    opened.apply(TaskEvent::TicketCreated { ticket: ticket("t-1"), next_poll_at: now }, now).unwrap();
    s.update_task(&opened).await.unwrap();
    let stale = s.update_task(&opened).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    seen.take("update_task", &counter);

    s.due_for_creation(now + Duration::hours(1), 10, None).await.unwrap();
    seen.take("due_for_creation", &counter);
    let due = s.due_for_polling("conn", now + Duration::hours(1), 10, None).await.unwrap();
    assert_eq!(due.items.len(), 1);
    seen.take("due_for_polling", &counter);
    s.list_tasks(TaskState::TicketOpen, 10, None).await.unwrap();
    seen.take("list_tasks", &counter);

    // Groups: create, lose the race, read, release (held and no longer held).
    let group = TicketGroup {
        connection: "conn".into(),
        key: "user:bob@acme.example".into(),
        ticket: ticket("t-1"),
        owner: first.id.clone(),
        created_at: now,
    };
    assert!(s.create_group(&group).await.unwrap().is_none());
    let other = TicketGroup { ticket: ticket("t-2"), owner: TaskId::generate(), ..group.clone() };
    assert!(s.create_group(&other).await.unwrap().is_some());
    seen.take("create_group", &counter);
    assert!(s.get_group("conn", &group.key).await.unwrap().is_some());
    seen.take("get_group", &counter);
    assert!(s.release_group("conn", &group.key, "t-1").await.unwrap());
    assert!(!s.release_group("conn", &group.key, "t-1").await.unwrap());
    seen.take("release_group", &counter);

    // Leases: take, contend, renew, release.
    let lease = s.acquire_lease("refresh#conn", "a", now, Duration::minutes(2)).await.unwrap().unwrap();
    assert!(s.acquire_lease("refresh#conn", "b", now, Duration::minutes(2)).await.unwrap().is_none());
    seen.take("acquire_lease", &counter);
    let lease = s.renew_lease(&lease, now, Duration::minutes(2)).await.unwrap().unwrap();
    seen.take("renew_lease", &counter);
    s.release_lease(&lease).await.unwrap();
    seen.take("release_lease", &counter);
    let taken = s.take_lease("group/conn/k", "a", now, Duration::minutes(2)).await.unwrap().unwrap();
    assert!(s.take_lease("group/conn/k", "b", now, Duration::minutes(1)).await.unwrap().is_none());
    assert_eq!(taken.previous, None);
    seen.take("take_lease", &counter);

    // Mappings and the contact cache.
    let mapping = OrgMapping {
        connection: "conn".into(),
        org_id: "org-1".into(),
        org_name: None,
        customer_id: Some("c-1".into()),
        customer_name: None,
        contact_id: None,
        contract_id: None,
        contract_service_id: None,
        excluded: false,
        updated_at: now,
    };
    s.put_mapping(&mapping).await.unwrap();
    seen.take("put_mapping", &counter);
    assert!(s.get_mapping("conn", "org-1").await.unwrap().is_some());
    seen.take("get_mapping", &counter);
    assert_eq!(s.list_mappings("conn").await.unwrap().len(), 1);
    seen.take("list_mappings", &counter);
    assert!(s.delete_mapping("conn", "org-1").await.unwrap());
    seen.take("delete_mapping", &counter);
    let user: bridge::domain::UserMapping = serde_json::from_value(serde_json::json!({
        "connection": "conn", "email": "bob@acme.example", "contact_id": "42", "customer_id": "c-1",
        "excluded": false, "updated_at": now
    }))
    .unwrap();
    s.put_user_mapping(&user).await.unwrap();
    seen.take("put_user_mapping", &counter);
    assert!(s.get_user_mapping("conn", "bob@acme.example").await.unwrap().is_some());
    seen.take("get_user_mapping", &counter);
    assert_eq!(s.list_user_mappings("conn").await.unwrap().len(), 1);
    seen.take("list_user_mappings", &counter);
    assert!(s.delete_user_mapping("conn", "bob@acme.example").await.unwrap());
    seen.take("delete_user_mapping", &counter);
    let contact = ContactEntry {
        connection: "conn".into(),
        email: "bob@acme.example".into(),
        contact_id: Some("42".into()),
        expires_at: now + Duration::hours(1),
    };
    s.put_contact(&contact).await.unwrap();
    seen.take("put_contact", &counter);
    assert!(s.get_contact("conn", "bob@acme.example", now).await.unwrap().is_some());
    seen.take("get_contact", &counter);
    let mark = bridge::store::PollMark {
        connection: "conn".into(),
        high_water: now,
        from_target: true,
        cycles_since_sweep: 1,
        updated_at: now,
    };
    s.put_poll_mark(&mark).await.unwrap();
    seen.take("put_poll_mark", &counter);
    assert_eq!(s.get_poll_mark("conn").await.unwrap(), Some(mark));
    seen.take("get_poll_mark", &counter);

    // Outbox: entries written with a task update (and a lost one), read, claimed (and a lost
    // claim), due, listed.
    let current = s.get_task(&first.id).await.unwrap().unwrap();
    counter.reset();
    let mut closed = current.clone();
    closed
        .apply(
            TaskEvent::Closed {
                outcome: bridge::domain::Outcome::Fulfilled,
                remote_status: "Closed".into(),
                retain_until: now,
            },
            now,
        )
        .unwrap();
    let entry = bridge::domain::Delivery::new(
        bridge::domain::DeliveryKind::Event,
        closed.id.clone(),
        "conn",
        "TaskCompleted",
        None,
        serde_json::json!({}),
        now,
    );
    s.update_task_with_deliveries(&closed, std::slice::from_ref(&entry)).await.unwrap();
    let stale = s.update_task_with_deliveries(&closed, &[]).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    seen.take("update_task_with_deliveries", &counter);
    assert!(s.get_delivery(&entry.id).await.unwrap().is_some());
    seen.take("get_delivery", &counter);
    s.update_delivery(&entry).await.unwrap();
    assert!(matches!(s.update_delivery(&entry).await, Err(StoreError::Conflict(_))));
    seen.take("update_delivery", &counter);
    assert_eq!(s.due_deliveries(now + Duration::hours(1), 10).await.unwrap().len(), 1);
    seen.take("due_deliveries", &counter);
    assert_eq!(s.list_deliveries(bridge::domain::DeliveryState::Pending, 10, None).await.unwrap().items.len(), 1);
    seen.take("list_deliveries", &counter);

    // The continuous sync's records and checkpoint.
    let record: bridge::domain::PsaRecord = serde_json::from_value(serde_json::json!({
        "connection": "conn", "key": "assets#c-1#laptop 42", "kind": "assets", "id": "9", "name": "Laptop 42",
        "customer_id": "c-1", "state": "created", "updated_at": now
    }))
    .unwrap();
    s.put_psa_record(&record).await.unwrap();
    seen.take("put_psa_record", &counter);
    assert!(s.get_psa_record("conn", &record.key).await.unwrap().is_some());
    seen.take("get_psa_record", &counter);
    assert_eq!(s.list_psa_records("conn", bridge::domain::RecordKind::Assets).await.unwrap().len(), 1);
    seen.take("list_psa_records", &counter);
    s.put_sync_checkpoint(&bridge::domain::SyncCheckpoint::new("conn", now)).await.unwrap();
    seen.take("put_sync_checkpoint", &counter);
    assert!(s.get_sync_checkpoint("conn").await.unwrap().is_some());
    seen.take("get_sync_checkpoint", &counter);

    let table: BTreeMap<&str, BTreeSet<String>> = STORE_METHOD_ACTIONS
        .iter()
        .map(|(m, actions)| (*m, actions.iter().map(|(a, _)| a.to_string()).collect()))
        .collect();
    assert_eq!(
        seen.0.keys().collect::<Vec<_>>(),
        table.keys().collect::<Vec<_>>(),
        "every method in the table is exercised"
    );
    for (method, want) in &table {
        assert_eq!(&seen.0[method], want, "Store::{method}: operations seen vs STORE_METHOD_ACTIONS");
    }
}
