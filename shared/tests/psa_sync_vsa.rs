//! Continuous PSA sync against the Kaseya VSA simulator, on SQLite and on DynamoDB (moto at
//! `TB_AWS_ENDPOINT`): organizations and agents read with `$top` / `$skip`, contacts and locations
//! skipped (VSA has none in these APIs), and a scheduled run picking up an organization and an
//! agent created after the first sync without recording anything twice.

#![cfg(all(feature = "sqlite", feature = "dynamo"))]

mod sync_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge::config::{Config, ConnectionConfig};
use bridge::domain::{PsaRecord, RecordKind, RecordState};
use bridge::engine::{Engine, LogEvents};
use bridge::mapping::sync::LogProgress;
use bridge::secrets::{Secret, Secrets};
use bridge::store::Store;
use chrono::Utc;
use sandbox::vsa::{Vsa, VsaConfig};
use sync_support::{dynamo, finished, org, sqlite};

const CONN: &str = "vsa";
const SECRET: &str = "tb/vsa";
const ORGS: &str = "GET /api/v1.0/system/orgs";
const AGENTS: &str = "GET /api/v1.0/assetmgmt/agents";

fn connection(base_url: &str) -> ConnectionConfig {
    let text = format!(
        r#"kind = "vsa"
base_url = "{base_url}"
secret = "{SECRET}"
rate_limit_per_hour = 10000000
[sync]
enabled = true
auto_create = ["assets"]
[options]
service_desk_id = "1001"
page_size = 5
[options.http]
max_retries = 0
backoff_base_ms = 5
backoff_max_ms = 20
rate_burst = 10000
"#
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("bad config: {e}\n{text}"))
}

async fn picks_up_new_entries(store: Arc<dyn Store>, dir: tempfile::TempDir) {
    let sim = Vsa::spawn(VsaConfig::default()).await.unwrap();
    sim.add_customer("71001", "Acme Corp");
    for i in 0..6 {
        sim.add_customer(&format!("7110{i}"), &format!("Company {i:02}"));
    }
    let ws = sim.add_agent("71001", "WS-ACME-01");
    for i in 0..9 {
        sim.add_agent(&format!("7110{}", i % 6), &format!("PC-{i:02}"));
    }
    let secrets: Arc<dyn Secrets> =
        Arc::new(bridge::secrets::file::FileSecrets::open(dir.path().join("secrets.json")).unwrap());
    let c = sim.config().clone();
    let mut s = Secret::new();
    s.set("username", c.username.clone());
    s.set("pat", c.pat.clone());
    s.set("pat_expires_at", (Utc::now() + chrono::Duration::days(90)).format("%Y-%m-%d").to_string());
    secrets.put(SECRET, &s).await.unwrap();
    let mut config = Config::default();
    config.connections.insert(CONN.into(), connection(sim.base_url()));
    config.validate().unwrap();
    let mut connectors = BTreeMap::new();
    connectors
        .insert(CONN.to_string(), bridge::connectors::build(CONN, &config.connections[CONN], secrets.clone()).unwrap());
    let engine = Engine::new(Arc::new(config), store, secrets, connectors, Arc::new(LogEvents));
    let store = engine.store.clone();
    store.put_mapping(&org(CONN, "org-acme", "Acme Corp", None)).await.unwrap();
    store.put_mapping(&org(CONN, "org-new", "Newco Ltd", None)).await.unwrap();
    let record = |kind, id: &str, customer: Option<&str>, name: &str| {
        let (store, key) = (store.clone(), PsaRecord::key(kind, id, customer, name));
        async move { store.get_psa_record(CONN, &key).await.unwrap() }
    };

    // 5 per page: 7 organizations = 2 pages, 10 agents = 2 pages (TotalRecords ends the second).
    let first = finished(&engine.sync_connection(CONN, Utc::now(), &LogProgress).await);
    assert_eq!((first[&RecordKind::Customers].read, first[&RecordKind::Customers].matched), (7, 1));
    assert_eq!(first[&RecordKind::Customers].pending, 6);
    assert_eq!((first[&RecordKind::Contacts].read, first[&RecordKind::Locations].read), (0, 0), "skipped");
    assert_eq!((first[&RecordKind::Assets].read, first[&RecordKind::Assets].created), (10, 10));
    assert_eq!((sim.requests(ORGS), sim.requests(AGENTS)), (2, 2));
    assert_eq!(store.get_mapping(CONN, "org-acme").await.unwrap().unwrap().customer_id.as_deref(), Some("71001"));
    let asset = record(RecordKind::Assets, "", Some("71001"), "ws-acme-01").await.unwrap();
    assert_eq!((asset.id, asset.state), (ws.to_string(), RecordState::Created));

    // Created in VSA after the first sync.
    sim.add_customer("71200", "Newco Ltd");
    let laptop = sim.add_agent("71200", "LAPTOP-42");
    let second = finished(&engine.sync_connection(CONN, Utc::now(), &LogProgress).await);
    assert_eq!((second[&RecordKind::Customers].read, second[&RecordKind::Customers].matched), (8, 1));
    assert_eq!((second[&RecordKind::Assets].read, second[&RecordKind::Assets].created), (11, 1));
    assert_eq!(store.get_mapping(CONN, "org-new").await.unwrap().unwrap().customer_id.as_deref(), Some("71200"));
    let asset = record(RecordKind::Assets, "", Some("71200"), "laptop-42").await.unwrap();
    assert_eq!((asset.id, asset.state), (laptop.to_string(), RecordState::Created));
    let customer = record(RecordKind::Customers, "71200", Some("71200"), "").await.unwrap();
    assert_eq!((customer.state, customer.upstream.as_deref()), (RecordState::Matched, Some("org-new")));

    // Nothing twice.
    let third = finished(&engine.sync_connection(CONN, Utc::now(), &LogProgress).await);
    let t = bridge::mapping::sync::total(&third.iter().map(|(k, c)| (*k, *c)).collect::<Vec<_>>());
    assert_eq!((t.read, t.matched + t.created + t.pending + t.excluded), (8 + 11, 0), "{third:?}");
    assert_eq!(store.list_psa_records(CONN, RecordKind::Assets).await.unwrap().len(), 11);
    assert_eq!(store.list_psa_records(CONN, RecordKind::Customers).await.unwrap().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_vsa_run_picks_up_new_entries() {
    let (store, dir) = sqlite().await;
    picks_up_new_entries(store, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamo_vsa_run_picks_up_new_entries() {
    let (store, dir) = dynamo("vsasync", "pickup").await;
    picks_up_new_entries(store, dir).await;
}
