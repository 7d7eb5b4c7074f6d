//! Store conformance for the status-poll high-water mark (`get_poll_mark` / `put_poll_mark`), on
//! SQLite (temp file) and DynamoDB (a fresh table on moto_server at `TB_AWS_ENDPOINT`).

#![cfg(all(feature = "sqlite", feature = "dynamo"))]

use std::sync::Arc;

use bridge::domain::OrgMapping;
use bridge::store::dynamo::{DynamoStore, create_table};
use bridge::store::sqlite::SqliteStore;
use bridge::store::{PollMark, Store};
use chrono::{DateTime, Duration, Utc};

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bridge.db")).unwrap();
    (Arc::new(store), dir)
}

async fn dynamo() -> Arc<dyn Store> {
    let endpoint = std::env::var(bridge::aws::ENDPOINT_ENV)
        .unwrap_or_else(|_| panic!("{} is not set: run `cargo xtask moto`", bridge::aws::ENDPOINT_ENV));
    let config = bridge::aws::sdk_config(Some(&endpoint)).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let name = format!("marks-{}", ulid::Ulid::new().to_string().to_lowercase());
    create_table(&client, &name).await.unwrap();
    Arc::new(DynamoStore::new(client, name))
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Absent until written; replaced on write; one per connection; independent of mappings kept
/// under the same connection (same table / partition in both stores).
async fn marks_round_trip(store: &dyn Store) {
    assert_eq!(store.get_poll_mark("a").await.unwrap(), None);
    let first = PollMark {
        connection: "a".into(),
        high_water: at("2026-11-30T14:00:05Z"),
        from_target: false,
        cycles_since_sweep: 0,
        updated_at: at("2026-11-30T14:00:06.123456789Z"),
    };
    store.put_poll_mark(&first).await.unwrap();
    assert_eq!(store.get_poll_mark("a").await.unwrap().as_ref(), Some(&first));
    let next = PollMark {
        high_water: first.high_water + Duration::seconds(30),
        from_target: true,
        cycles_since_sweep: 7,
        ..first.clone()
    };
    store.put_poll_mark(&next).await.unwrap();
    assert_eq!(store.get_poll_mark("a").await.unwrap().as_ref(), Some(&next), "the write replaces the mark");
    assert_eq!(store.get_poll_mark("b").await.unwrap(), None, "marks are per connection");
    // A mapping of the same connection neither hides nor shows up as the mark.
    store
        .put_mapping(&OrgMapping {
            connection: "a".into(),
            org_id: "status".into(),
            org_name: None,
            customer_id: Some("c-1".into()),
            customer_name: None,
            contact_id: None,
            contract_id: None,
            contract_service_id: None,
            excluded: false,
            updated_at: Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(store.list_mappings("a").await.unwrap().len(), 1);
    assert_eq!(store.get_poll_mark("a").await.unwrap().as_ref(), Some(&next));
}

#[tokio::test]
async fn sqlite_marks_round_trip() {
    let (store, _dir) = sqlite().await;
    marks_round_trip(store.as_ref()).await;
}

#[tokio::test]
async fn dynamo_marks_round_trip() {
    marks_round_trip(dynamo().await.as_ref()).await;
}
