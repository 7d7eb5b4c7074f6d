//! Continuous PSA sync against the NinjaOne simulator, on SQLite and on DynamoDB (moto at
//! `TB_AWS_ENDPOINT`): organizations, locations and devices read with the `after` cursor, a
//! scheduled run picking up an organization, a location and a device created after the first
//! sync, alerts naming a mapped device carrying its `nodeId` and `locationId`, and a run cut by a
//! page budget and by a crash that resumes from the stored cursor without duplicates.

#![cfg(all(feature = "sqlite", feature = "dynamo"))]

mod sync_support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bridge::config::{Config, ConnectionConfig};
use bridge::domain::{PsaRecord, RecordKind, RecordState};
use bridge::engine::sync::SyncOutcomeKind;
use bridge::engine::{Engine, LogEvents};
use bridge::mapping::sync::LogProgress;
use bridge::secrets::{Secret, Secrets};
use bridge::store::Store;
use chrono::{Duration, Utc};
use sandbox::ninjaone::{NinjaConfig, NinjaOne};
use serde_json::json;
use sync_support::{CrashAt, dynamo, finished, org, sqlite, ticket_for};

const CONN: &str = "ninja";
const SECRET: &str = "tb/ninjaone";
const ORGS: &str = "GET /v2/organizations";
const LOCATIONS: &str = "GET /v2/locations";
const DEVICES: &str = "GET /v2/devices";

fn connection(base_url: &str, page_size: u32, auto_create: &str, max_pages: u32) -> ConnectionConfig {
    let text = format!(
        r#"kind = "ninjaone"
base_url = "{base_url}"
secret = "{SECRET}"
rate_limit_per_hour = 10000000
[catch_all]
customer_id = "7"
[sync]
enabled = true
auto_create = {auto_create}
max_pages_per_run = {max_pages}
[options]
page_size = {page_size}
[options.http]
max_retries = 0
backoff_base_ms = 5
backoff_max_ms = 20
rate_burst = 10000
"#
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("bad config: {e}\n{text}"))
}

struct Env {
    sim: NinjaOne,
    engine: Engine,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new(sim: NinjaOne, store: Arc<dyn Store>, dir: tempfile::TempDir, conn: ConnectionConfig) -> Self {
        let secrets: Arc<dyn Secrets> =
            Arc::new(bridge::secrets::file::FileSecrets::open(dir.path().join("secrets.json")).unwrap());
        let c = sim.config().clone();
        let mut s = Secret::new();
        s.set("client_id", c.client_id.clone());
        s.set("client_secret", c.client_secret.clone());
        s.set("refresh_token", sim.grant_refresh_token());
        secrets.put(SECRET, &s).await.unwrap();
        let mut config = Config::default();
        config.connections.insert(CONN.into(), conn);
        config.validate().unwrap();
        let mut connectors = BTreeMap::new();
        connectors.insert(
            CONN.to_string(),
            bridge::connectors::build(CONN, &config.connections[CONN], secrets.clone()).unwrap(),
        );
        let engine = Engine::new(Arc::new(config), store, secrets, connectors, Arc::new(LogEvents));
        Self { sim, engine, _dir: dir }
    }

    fn store(&self) -> &dyn Store {
        self.engine.store.as_ref()
    }

    async fn record(&self, kind: RecordKind, id: &str, customer: Option<&str>, name: &str) -> Option<PsaRecord> {
        self.store().get_psa_record(CONN, &PsaRecord::key(kind, id, customer, name)).await.unwrap()
    }

    async fn count(&self, kind: RecordKind) -> usize {
        self.store().list_psa_records(CONN, kind).await.unwrap().len()
    }
}

// ---------------------------------------------------------------------------------------------
// A scheduled run picks up what was created after the first sync; tickets use it.

async fn picks_up_new_entries(store: Arc<dyn Store>, dir: tempfile::TempDir) {
    let sim = NinjaOne::spawn(NinjaConfig::default()).await.unwrap();
    sim.add_organization(7, "Acme Corp");
    for i in 0..11 {
        sim.add_organization(10 + i, &format!("Company {i:02}"));
    }
    let hq = sim.add_location(7, "Acme HQ");
    for i in 0..6 {
        sim.add_location(10 + i, &format!("Office {i}"));
    }
    let ws1 = sim.add_device(7, hq, "WS-ACME-01");
    for i in 0..8 {
        sim.add_device(10 + i % 3, hq, &format!("PC-{i:02}"));
    }
    sim.add_device_with(7, hq, "WS-UNAPPROVED", false);
    // 5 per page: 12 organizations = 3 pages, 7 locations = 2, 10 devices = 2 full + 1 empty.
    let conn = connection(sim.base_url(), 5, r#"["assets"]"#, 0);
    let env = Env::new(sim, store, dir, conn).await;
    env.store().put_mapping(&org(CONN, "org-acme", "Acme Corp", Some("7"))).await.unwrap();
    env.store().put_mapping(&org(CONN, "org-new", "Newco Ltd", None)).await.unwrap();

    let first = finished(&env.engine.sync_connection(CONN, Utc::now(), &LogProgress).await);
    assert_eq!(first[&RecordKind::Customers].read, 12);
    assert_eq!(first[&RecordKind::Customers].matched, 1, "Acme Corp is already mapped");
    assert_eq!(first[&RecordKind::Customers].pending, 11, "customers are not auto-created");
    assert_eq!(first[&RecordKind::Contacts].read, 0, "NinjaOne contacts are not read");
    assert_eq!(first[&RecordKind::Locations].read, 7);
    assert_eq!(first[&RecordKind::Locations].pending, 7);
    assert_eq!(first[&RecordKind::Assets].read, 9, "the unapproved device is not offered");
    assert_eq!(first[&RecordKind::Assets].created, 9);
    assert_eq!((env.sim.requests(ORGS), env.sim.requests(LOCATIONS), env.sim.requests(DEVICES)), (3, 2, 3));
    let ws = env.record(RecordKind::Assets, "", Some("7"), "ws-acme-01").await.unwrap();
    assert_eq!((ws.id.as_str(), ws.location_id.as_deref()), (ws1.to_string().as_str(), Some(hq.to_string().as_str())));
    let loc = env.record(RecordKind::Locations, &hq.to_string(), None, "").await.unwrap();
    assert_eq!((loc.name.as_str(), loc.customer_id.as_deref()), ("Acme HQ", Some("7")));
    let cp = env.store().get_sync_checkpoint(CONN).await.unwrap().unwrap();
    assert!(cp.cursor.is_none() && cp.last_run.is_some());

    // --- Created in NinjaOne after the first sync.
    env.sim.add_organization(300, "Newco Ltd");
    let branch = env.sim.add_location(300, "Newco Branch");
    let laptop = env.sim.add_device(300, branch, "LAPTOP-42");

    let second = finished(&env.engine.sync_connection(CONN, Utc::now(), &LogProgress).await);
    assert_eq!(second[&RecordKind::Customers].read, 13, "no change filter: every organization is read");
    assert_eq!(second[&RecordKind::Customers].matched, 1, "Newco Ltd matches the waiting organization");
    assert_eq!(second[&RecordKind::Customers].pending, 0);
    assert_eq!((second[&RecordKind::Locations].read, second[&RecordKind::Locations].pending), (8, 1));
    assert_eq!((second[&RecordKind::Assets].read, second[&RecordKind::Assets].created), (10, 1));
    assert_eq!(env.store().get_mapping(CONN, "org-new").await.unwrap().unwrap().customer_id.as_deref(), Some("300"));
    let customer = env.record(RecordKind::Customers, "300", Some("300"), "").await.unwrap();
    assert_eq!((customer.state, customer.upstream.as_deref()), (RecordState::Matched, Some("org-new")));
    let location = env.record(RecordKind::Locations, &branch.to_string(), None, "").await.unwrap();
    assert_eq!((location.state, location.customer_id.as_deref()), (RecordState::Pending, Some("300")));
    let asset = env.record(RecordKind::Assets, "", Some("300"), "laptop-42").await.unwrap();
    assert_eq!((asset.state, asset.id.as_str()), (RecordState::Created, laptop.to_string().as_str()));

    // Nothing twice: a third run reads everything again and finds nothing new.
    let third = finished(&env.engine.sync_connection(CONN, Utc::now(), &LogProgress).await);
    let t = bridge::mapping::sync::total(&third.iter().map(|(k, c)| (*k, *c)).collect::<Vec<_>>());
    assert_eq!((t.read, t.matched + t.created + t.pending + t.excluded), (13 + 8 + 10, 0), "{third:?}");
    assert_eq!((env.count(RecordKind::Customers).await, env.count(RecordKind::Locations).await), (13, 8));
    assert_eq!(env.count(RecordKind::Assets).await, 10);

    // --- An alert naming the mapped device: the ticket carries its nodeId and its location.
    let body = json!({"source":"rmm","external_id":"n-1","kind":"alert","organization":{"id":"org-new","name":"Newco Ltd"},"user_email":"ops@newco.example",
        "alert_type":"Disk failure","severity":"high","details":{"device":"laptop-42"}});
    let ticket = ticket_for(&env.engine, env.sim.sim(), body).await;
    assert_eq!(ticket.customer_id.as_deref(), Some("300"));
    assert_eq!(ticket.request["nodeId"], json!(laptop));
    assert_eq!(ticket.request["locationId"], json!(branch));
    // A device of another organization is never linked; an unknown device neither.
    for (id, device) in [("n-2", "WS-ACME-01"), ("n-3", "NOPE")] {
        let body = json!({"source":"rmm","external_id":id,"kind":"alert","organization":{"id":"org-new","name":"Newco Ltd"},"user_email":"ops@newco.example",
            "alert_type":"Disk failure","severity":"high","details":{"asset":device}});
        let ticket = ticket_for(&env.engine, env.sim.sim(), body).await;
        assert_eq!((ticket.request.get("nodeId"), ticket.request.get("locationId")), (None, None), "{device}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_ninjaone_run_picks_up_new_entries() {
    let (store, dir) = sqlite().await;
    picks_up_new_entries(store, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamo_ninjaone_run_picks_up_new_entries() {
    let (store, dir) = dynamo("ninjasync", "pickup").await;
    picks_up_new_entries(store, dir).await;
}

// ---------------------------------------------------------------------------------------------
// A page budget (Lambda timeout) and a crash between writing a page's records and storing the
// cursor: the next runs resume from the stored `after` cursor and nothing is recorded twice.

async fn resumes_without_duplicates(store: Arc<dyn Store>, dir: tempfile::TempDir) {
    const N: usize = 1_000;
    let sim = NinjaOne::spawn(NinjaConfig::default()).await.unwrap();
    sim.add_organization(7, "Acme Corp");
    sim.add_organization(8, "Globex");
    let (a, b) = (sim.add_location(7, "HQ"), sim.add_location(8, "HQ"));
    for i in 0..N {
        let (o, l) = if i % 2 == 0 { (7, a) } else { (8, b) };
        sim.add_device(o, l, &format!("WS-{i:05}"));
    }
    // 50 per page: 1 page of organizations, contacts skipped (counted as a page), 1 page of
    // locations, 20 full pages of devices and the empty 21st.
    let conn = connection(sim.base_url(), 50, r#"["assets"]"#, 8);
    let env = Env::new(sim, store, dir, conn).await;
    let t0 = Utc::now();

    let out = env.engine.sync_connection(CONN, t0, &LogProgress).await;
    assert!(matches!(out, SyncOutcomeKind::Partial { resumed: false, pages: 8, .. }), "{out:?}");
    assert_eq!(env.count(RecordKind::Assets).await, 5 * 50);
    let cursor = env.store().get_sync_checkpoint(CONN).await.unwrap().unwrap().cursor.unwrap();
    assert_eq!((cursor.kind, cursor.page), (RecordKind::Assets, 6));
    let ids: Vec<i64> = env.sim.devices().iter().map(|d| d.id).collect();
    assert_eq!(cursor.after, Some(ids[249].to_string()), "the cursor is the last device id read");

    // Invocation 2 crashes on its 5th page (asset page 10), after writing that page's records.
    let engine = Arc::new(env);
    let e2 = engine.clone();
    let crash = tokio::spawn(async move { e2.engine.sync_connection(CONN, t0, &CrashAt::new(5)).await }).await;
    assert!(crash.is_err_and(|e| e.is_panic()), "the run crashed");
    let env = Arc::into_inner(engine).unwrap();
    assert_eq!(env.count(RecordKind::Assets).await, 10 * 50);
    let cursor = env.store().get_sync_checkpoint(CONN).await.unwrap().unwrap().cursor.unwrap();
    assert_eq!((cursor.page, cursor.after), (10, Some(ids[449].to_string())), "the crashed page is read again");

    assert_eq!(env.engine.sync_connection(CONN, t0, &LogProgress).await, SyncOutcomeKind::Busy);
    let later = t0 + Duration::minutes(16);
    let out = env.engine.sync_connection(CONN, later, &LogProgress).await;
    assert!(matches!(out, SyncOutcomeKind::Partial { resumed: true, pages: 8, .. }), "{out:?}");
    let counts = finished(&env.engine.sync_connection(CONN, later, &LogProgress).await);
    let records = env.store().list_psa_records(CONN, RecordKind::Assets).await.unwrap();
    assert_eq!(records.len(), N);
    let got: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(got.len(), N, "one record per device");
    // 20 full pages, the crashed one twice, and the empty last page.
    assert_eq!(env.sim.requests(DEVICES), N / 50 + 1 + 1);
    assert_eq!(counts[&RecordKind::Assets].created + 50, N as u64, "{counts:?}");
    assert_eq!(counts[&RecordKind::Assets].failed, 0);
    let cp = env.store().get_sync_checkpoint(CONN).await.unwrap().unwrap();
    assert!(cp.cursor.is_none() && cp.last_run.is_some_and(|r| r.resumed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_ninjaone_crash_and_timeout_resume_from_the_after_cursor() {
    let (store, dir) = sqlite().await;
    resumes_without_duplicates(store, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamo_ninjaone_crash_and_timeout_resume_from_the_after_cursor() {
    let (store, dir) = dynamo("ninjasync", "resume").await;
    resumes_without_duplicates(store, dir).await;
}
