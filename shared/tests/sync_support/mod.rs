//! What the continuous-sync tests (`psa_sync*.rs`) share: the two stores, an organization
//! mapping, a finished run's counts and a progress observer that crashes the run.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bridge::domain::{OrgMapping, RecordKind, SyncCounts};
use bridge::engine::sync::SyncOutcomeKind;
use bridge::mapping::sync::SyncProgress;
use bridge::store::Store;
use bridge::store::dynamo::{DynamoStore, create_table};
use bridge::store::sqlite::SqliteStore;
use chrono::Utc;

/// A SQLite store in a fresh directory (kept alive by the returned guard).
pub async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bridge.db")).unwrap();
    (Arc::new(store), dir)
}

/// A DynamoDB store on a fresh table `<prefix>-<test>-<ulid>` in moto at `TB_AWS_ENDPOINT`.
pub async fn dynamo(prefix: &str, test: &str) -> (Arc<dyn Store>, tempfile::TempDir) {
    let endpoint = std::env::var(bridge::aws::ENDPOINT_ENV).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        panic!("{} is not set: run `cargo xtask moto` and export what it prints", bridge::aws::ENDPOINT_ENV)
    });
    let config = bridge::aws::sdk_config(Some(&endpoint)).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let name = format!("{prefix}-{test}-{}", ulid::Ulid::new().to_string().to_lowercase());
    create_table(&client, &name).await.unwrap();
    (Arc::new(DynamoStore::new(client, name)), tempfile::tempdir().unwrap())
}

/// An organization mapping of `connection`.
pub fn org(connection: &str, id: &str, name: &str, customer: Option<&str>) -> OrgMapping {
    OrgMapping {
        connection: connection.into(),
        org_id: id.into(),
        org_name: Some(name.into()),
        customer_id: customer.map(str::to_string),
        customer_name: None,
        contact_id: None,
        contract_id: None,
        contract_service_id: None,
        excluded: false,
        updated_at: Utc::now(),
    }
}

/// The counts of a finished run (panics on any other outcome).
pub fn finished(o: &SyncOutcomeKind) -> BTreeMap<RecordKind, SyncCounts> {
    match o {
        SyncOutcomeKind::Finished { counts, .. } => counts.clone(),
        other => panic!("expected a finished run, got {other:?}"),
    }
}

/// Panics on the `at`-th page it is told about: a crash after the page's records were written,
/// before the cursor moved on.
pub struct CrashAt {
    pub at: u32,
    pub seen: AtomicU32,
}

impl CrashAt {
    pub fn new(at: u32) -> Self {
        Self { at, seen: AtomicU32::new(0) }
    }
}

impl SyncProgress for CrashAt {
    fn page(&self, _connection: &str, _kind: RecordKind, _page: u32, _counts: &SyncCounts) {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            panic!("simulated crash");
        }
    }
}

/// Takes an alert or task in through intake, creates its ticket now and returns the ticket as the
/// simulator `sim` holds it.
pub async fn ticket_for(
    engine: &bridge::engine::Engine,
    sim: &sandbox::Sim,
    body: serde_json::Value,
) -> sandbox::SimTicket {
    let new = bridge::engine::intake::parse_task(body.to_string().as_bytes()).unwrap();
    let now = Utc::now();
    let accepted = engine.accept(new, now).await.unwrap();
    let report = engine.create_one(&accepted.task.id, now).await.unwrap();
    assert_eq!(report.created, 1, "{report:?} {:?}", engine.get(accepted.task.id.as_str()).await.unwrap().last_error);
    sim.tickets().into_iter().find(|t| t.correlation_key.as_deref() == Some(accepted.task.id.as_str())).unwrap()
}
