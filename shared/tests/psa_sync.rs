//! Continuous PSA sync against the BMS simulator, on SQLite and on DynamoDB (moto at
//! `TB_AWS_ENDPOINT`): record kinds in both stores, a scheduled run picking up a customer, a
//! contact, a location and an asset created after the first sync, tickets carrying the user's
//! location and the alert's asset, and a large tenant (5,000 assets) whose run is cut by a page
//! budget and by a crash and resumes without duplicates.

#![cfg(all(feature = "sqlite", feature = "dynamo"))]

mod sync_support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bridge::config::{Config, ConnectionConfig};
use bridge::domain::{PsaRecord, RecordKind, RecordState, SyncCheckpoint};
use bridge::engine::sync::SyncOutcomeKind;
use bridge::engine::{Engine, LogEvents};
use bridge::mapping::sync::LogProgress;
use bridge::secrets::{Secret, Secrets};
use bridge::store::Store;
use chrono::{Duration, Utc};
use sandbox::bms::{Bms, BmsConfig};
use serde_json::json;
use sync_support::{CrashAt, dynamo, finished, org, sqlite, ticket_for};

const CONN: &str = "bms";
const ASSETS: &str = "GET /v2/servicedesk/hardwareasset/searchselect";

fn connection(base_url: &str, page_size: u32, auto_create: &str, max_pages: u32) -> ConnectionConfig {
    let text = format!(
        r#"kind = "bms"
base_url = "{base_url}"
secret = "tb/bms"
rate_limit_per_hour = 10000000
[defaults]
ticket_type = "1"
status = "New"
priority = "High"
[catch_all]
customer_id = "1"
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
    sim: Bms,
    engine: Engine,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new(sim: Bms, store: Arc<dyn Store>, dir: tempfile::TempDir, conn: ConnectionConfig) -> Self {
        let secrets: Arc<dyn Secrets> =
            Arc::new(bridge::secrets::file::FileSecrets::open(dir.path().join("secrets.json")).unwrap());
        let c = sim.config().clone();
        let mut s = Secret::new();
        s.set("username", c.username);
        s.set("password", c.password);
        s.set("tenant", c.tenant);
        secrets.put("tb/bms", &s).await.unwrap();
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
// Store conformance of the new record kinds.

async fn records_roundtrip(store: Arc<dyn Store>) {
    let now = Utc::now();
    let rec = |kind, id: &str, customer: Option<&str>, name: &str| PsaRecord {
        connection: CONN.into(),
        key: PsaRecord::key(kind, id, customer, name),
        kind,
        id: id.into(),
        name: name.into(),
        customer_id: customer.map(str::to_string),
        location_id: None,
        email: None,
        upstream: None,
        state: RecordState::Pending,
        changed_at: None,
        updated_at: now,
    };
    let a = rec(RecordKind::Assets, "9", Some("7"), "Laptop 42");
    let l = rec(RecordKind::Locations, "71", Some("7"), "HQ");
    let c = rec(RecordKind::Contacts, "5", Some("7"), "Ada");
    for r in [&a, &l, &c] {
        store.put_psa_record(r).await.unwrap();
    }
    store.put_mapping(&org(CONN, "org-1", "Acme", Some("7"))).await.unwrap();
    // Another connection's record never shows.
    store.put_psa_record(&PsaRecord { connection: "other".into(), ..a.clone() }).await.unwrap();
    let got = store.get_psa_record(CONN, &PsaRecord::asset_key("7", " LAPTOP  42")).await.unwrap();
    assert_eq!(got.as_ref(), Some(&a));
    assert_eq!(store.list_psa_records(CONN, RecordKind::Assets).await.unwrap(), vec![a.clone()]);
    assert_eq!(store.list_psa_records(CONN, RecordKind::Locations).await.unwrap(), vec![l]);
    assert_eq!(store.list_psa_records(CONN, RecordKind::Customers).await.unwrap(), vec![]);
    let updated = PsaRecord { state: RecordState::Excluded, ..a.clone() };
    store.put_psa_record(&updated).await.unwrap();
    assert_eq!(store.list_psa_records(CONN, RecordKind::Assets).await.unwrap(), vec![updated]);
    assert_eq!(store.list_mappings(CONN).await.unwrap().len(), 1, "org mappings do not see PSA records");
    assert_eq!(store.get_sync_checkpoint(CONN).await.unwrap(), None);
    let mut cp = SyncCheckpoint::new(CONN, now);
    cp.since = Some(now);
    store.put_sync_checkpoint(&cp).await.unwrap();
    assert_eq!(store.get_sync_checkpoint(CONN).await.unwrap(), Some(cp));
    assert_eq!(store.get_sync_checkpoint("other").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_records_roundtrip() {
    records_roundtrip(sqlite().await.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamo_records_roundtrip() {
    records_roundtrip(dynamo("psasync", "records").await.0).await;
}

// ---------------------------------------------------------------------------------------------
// A scheduled run picks up what was created after the first sync; tickets use it.

async fn picks_up_new_entries(store: Arc<dyn Store>, dir: tempfile::TempDir) {
    let sim = Bms::spawn(BmsConfig::default()).await.unwrap();
    sim.add_account(1, "Default Customer");
    for i in 0..12 {
        sim.add_account(1000 + i, &format!("Company {i:02}"));
    }
    sim.add_contact("3001", Some("1000"), "help@company00.example", "Help Desk");
    sim.add_asset(1000, "SRV-01", None);
    let conn = connection(sim.base_url(), 5, r#"["contacts", "assets"]"#, 0);
    let env = Env::new(sim, store, dir, conn).await;
    env.store().put_mapping(&org(CONN, "org-00", "Company 00", Some("1000"))).await.unwrap();
    env.store().put_mapping(&org(CONN, "org-new", "Newco Ltd", None)).await.unwrap();

    // --- First run: everything is new. (`Filter.ModifiedOnFrom` has second precision: start the
    // run in a later second than the seeding.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let t0 = Utc::now();
    let first = finished(&env.engine.sync_connection(CONN, t0, &LogProgress).await);
    assert_eq!(first[&RecordKind::Customers].read, 13);
    assert_eq!(first[&RecordKind::Customers].matched, 1, "Company 00 is already mapped");
    assert_eq!(first[&RecordKind::Customers].pending, 12, "customers are not auto-created");
    assert_eq!(first[&RecordKind::Contacts].read, 1);
    assert_eq!(first[&RecordKind::Contacts].created, 1);
    assert_eq!(first[&RecordKind::Locations].read, 13, "one main location per account");
    assert_eq!(first[&RecordKind::Assets].created, 1);
    let cp = env.store().get_sync_checkpoint(CONN).await.unwrap().unwrap();
    assert_eq!(cp.since, Some(t0));
    assert!(cp.cursor.is_none());
    assert_eq!(env.engine.metrics.get("SyncRead"), 13 + 1 + 13 + 1);

    // --- Created in BMS after the first sync.
    env.sim.add_account(1100, "Newco Ltd");
    let branch = env.sim.add_location(1000, "Branch Office");
    env.sim.add_contact("3002", Some("1000"), "Ada@Company00.example", "Ada Lovelace");
    env.sim.set_contact_location(3002, branch);
    let laptop = env.sim.add_asset(1000, "LAPTOP-42", Some(3002));
    let before = env.sim.requests("GET /v2/crm/accounts/{accountId}/locations/lookup");

    let t1 = Utc::now();
    let second = finished(&env.engine.sync_connection(CONN, t1, &LogProgress).await);
    assert_eq!(second[&RecordKind::Customers].read, 2, "only the changed accounts: {second:?}");
    assert_eq!(second[&RecordKind::Customers].matched, 1, "Newco Ltd matches the waiting organization");
    assert_eq!(second[&RecordKind::Contacts].created, 1);
    assert_eq!(second[&RecordKind::Locations].pending, 2, "Newco's main location and the branch");
    assert_eq!(second[&RecordKind::Assets].created, 1);
    assert_eq!(second[&RecordKind::Assets].read, 2, "assets have no change filter: all are read");
    assert_eq!(
        env.sim.requests("GET /v2/crm/accounts/{accountId}/locations/lookup") - before,
        2,
        "locations are read only for changed accounts"
    );
    assert_eq!(env.store().get_mapping(CONN, "org-new").await.unwrap().unwrap().customer_id.as_deref(), Some("1100"));
    let customer = env.record(RecordKind::Customers, "1100", Some("1100"), "").await.unwrap();
    assert_eq!((customer.state, customer.upstream.as_deref()), (RecordState::Matched, Some("org-new")));
    let contact = env.record(RecordKind::Contacts, "3002", None, "").await.unwrap();
    assert_eq!(contact.state, RecordState::Created);
    assert_eq!(contact.location_id, Some(branch.to_string()));
    let location = env.record(RecordKind::Locations, &branch.to_string(), None, "").await.unwrap();
    assert_eq!((location.state, location.name.as_str()), (RecordState::Pending, "Branch Office"));
    let asset = env.record(RecordKind::Assets, "", Some("1000"), "laptop-42").await.unwrap();
    assert_eq!((asset.state, asset.id.as_str()), (RecordState::Created, laptop.to_string().as_str()));
    let user = env.store().get_user_mapping(CONN, "ada@company00.example").await.unwrap().unwrap();
    assert_eq!(user.contact_id.as_deref(), Some("3002"));
    // Nothing twice: a third run reads again but finds nothing new.
    let third = finished(&env.engine.sync_connection(CONN, Utc::now(), &LogProgress).await);
    let t = bridge::mapping::sync::total(&third.iter().map(|(k, c)| (*k, *c)).collect::<Vec<_>>());
    assert_eq!(t.matched + t.created + t.pending + t.excluded, 0, "{third:?}");
    assert_eq!(env.count(RecordKind::Assets).await, 2);
    assert_eq!(env.count(RecordKind::Contacts).await, 2);
    assert_eq!(env.count(RecordKind::Locations).await, 15);
    assert_eq!(env.count(RecordKind::Customers).await, 14);

    // --- A ticket for the mapped user carries her location; the alert's device is the asset.
    let body = json!({"source":"saas-alerts","external_id":"a-1","kind":"alert","organization":{"id":"org-00","name":"Company 00"},
        "user_email":"ada@company00.example","alert_type":"Data Leakage","severity":"high","details":{"device":"Laptop-42"}});
    let ticket = ticket_for(&env.engine, env.sim.sim(), body).await;
    assert_eq!(ticket.contact_id.as_deref(), Some("3002"));
    assert_eq!(ticket.fields.get("LocationId"), Some(&json!(branch)));
    assert_eq!(ticket.fields.get("HardwareAssetId"), Some(&json!(laptop)));
    // A user without a synced contact and an unknown device: the main location, no asset.
    let body = json!({"source":"saas-alerts","external_id":"a-2","kind":"alert","organization":{"id":"org-00","name":"Company 00"},
        "user_email":"nobody@company00.example","alert_type":"Data Leakage","severity":"high","details":{"asset":"NOPE"}});
    let ticket = ticket_for(&env.engine, env.sim.sim(), body).await;
    assert_eq!(ticket.fields.get("LocationId"), Some(&json!(10001)));
    assert_eq!(ticket.fields.get("HardwareAssetId"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_scheduled_run_picks_up_new_entries() {
    let (store, dir) = sqlite().await;
    picks_up_new_entries(store, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamo_scheduled_run_picks_up_new_entries() {
    let (store, dir) = dynamo("psasync", "pickup").await;
    picks_up_new_entries(store, dir).await;
}

// ---------------------------------------------------------------------------------------------
// Large tenant: a page budget (Lambda timeout) and a crash between writing a page's records and
// storing the cursor; the next runs resume and nothing is recorded twice.

async fn resumes_without_duplicates(store: Arc<dyn Store>, dir: tempfile::TempDir) {
    const N: usize = 5_000;
    let sim = Bms::spawn(BmsConfig::default()).await.unwrap();
    for a in 0..10 {
        sim.add_account(2000 + a, &format!("Tenant {a}"));
    }
    for i in 0..N {
        sim.add_asset(2000 + (i % 10) as i64, &format!("WS-{i:05}"), None);
    }
    // 100 per page: 1 page of customers, 1 of contacts, 1 of locations, 51 of assets (the last empty).
    let conn = connection(sim.base_url(), 100, r#"["assets"]"#, 20);
    let env = Env::new(sim, store, dir, conn).await;
    let t0 = Utc::now();

    // Invocation 1: the page budget ends it (cursor kept).
    let out = env.engine.sync_connection(CONN, t0, &LogProgress).await;
    assert!(matches!(out, SyncOutcomeKind::Partial { resumed: false, pages: 20, .. }), "{out:?}");
    assert_eq!(env.count(RecordKind::Assets).await, 17 * 100);

    // Invocation 2 crashes on its 5th page, after writing that page's records.
    let engine = Arc::new(env);
    let e2 = engine.clone();
    let crash = tokio::spawn(async move { e2.engine.sync_connection(CONN, t0, &CrashAt::new(5)).await }).await;
    assert!(crash.is_err_and(|e| e.is_panic()), "the run crashed");
    let env = Arc::into_inner(engine).unwrap();
    assert_eq!(env.count(RecordKind::Assets).await, 22 * 100);
    let cursor = env.store().get_sync_checkpoint(CONN).await.unwrap().unwrap().cursor.unwrap();
    assert_eq!((cursor.kind, cursor.page), (RecordKind::Assets, 22), "the crashed page is read again");

    // The crashed run's lease blocks until it expires; then the next invocations finish the run.
    assert_eq!(env.engine.sync_connection(CONN, t0, &LogProgress).await, SyncOutcomeKind::Busy);
    let later = t0 + Duration::minutes(16);
    let out = env.engine.sync_connection(CONN, later, &LogProgress).await;
    assert!(matches!(out, SyncOutcomeKind::Partial { resumed: true, pages: 20, .. }), "{out:?}");
    let counts = finished(&env.engine.sync_connection(CONN, later, &LogProgress).await);
    let records = env.store().list_psa_records(CONN, RecordKind::Assets).await.unwrap();
    assert_eq!(records.len(), N);
    let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), N, "one record per asset");
    assert!(records.iter().all(|r| r.state == RecordState::Created));
    // Every asset page was read once, except the one the crash interrupted (read twice), plus
    // the final empty page.
    assert_eq!(env.sim.requests(ASSETS), N / 100 + 1 + 1);
    // The run's counts: created counts each asset once (the re-read page found them recorded).
    assert_eq!(counts[&RecordKind::Assets].created + 100, N as u64, "{counts:?}");
    assert_eq!(counts[&RecordKind::Assets].failed, 0);
    let cp = env.store().get_sync_checkpoint(CONN).await.unwrap().unwrap();
    assert!(cp.cursor.is_none() && cp.last_run.is_some_and(|r| r.resumed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_crash_and_timeout_resume_without_duplicates() {
    let (store, dir) = sqlite().await;
    resumes_without_duplicates(store, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamo_crash_and_timeout_resume_without_duplicates() {
    let (store, dir) = dynamo("psasync", "resume").await;
    resumes_without_duplicates(store, dir).await;
}

// ---------------------------------------------------------------------------------------------
// The upstream pushes organizations and users (PUT /v1/mappings/{conn}/…): idempotent, linked at
// once to what the sync read.

async fn put(env: &Env, path: &str, content_type: &str, body: &str) -> (u16, serde_json::Value) {
    let mut headers = axum_headers();
    headers.insert("content-type", content_type.parse().unwrap());
    let req = bridge::engine::api::ApiRequest {
        method: "PUT",
        path,
        query: None,
        headers: &headers,
        body: body.as_bytes(),
        peer_loopback: true,
    };
    let r = bridge::engine::api::handle(&env.engine, req, Utc::now()).await;
    (r.status, r.body)
}

fn axum_headers() -> http::HeaderMap {
    http::HeaderMap::new()
}

async fn upstream_push(store: Arc<dyn Store>, dir: tempfile::TempDir) {
    let sim = Bms::spawn(BmsConfig::default()).await.unwrap();
    sim.add_account(1, "Default Customer");
    sim.add_account(1003, "Company 03");
    sim.add_contact("3001", Some("1003"), "help@company03.example", "Help Desk");
    let conn = connection(sim.base_url(), 50, "[]", 0);
    let env = Env::new(sim, store, dir, conn).await;
    let first = finished(&env.engine.sync_connection(CONN, Utc::now(), &LogProgress).await);
    assert_eq!((first[&RecordKind::Customers].pending, first[&RecordKind::Contacts].pending), (2, 1));

    let orgs = json!({"organizations": [{"id": "org-x", "name": "Company 03"}, {"id": "org-y", "name": "Nowhere"}]});
    let (s, r) = put(&env, "/v1/mappings/bms/organizations", "application/json", &orgs.to_string()).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r, json!({"received": 2, "new": 2, "updated": 0, "unchanged": 0, "matched": 1}));
    let (_, r) =
        put(&env, "/v1/mappings/bms/organizations", "text/csv", "id,name\norg-x,Company 03\norg-y,Nowhere\n").await;
    assert_eq!(r, json!({"received": 2, "new": 0, "updated": 0, "unchanged": 2, "matched": 0}), "idempotent");
    assert_eq!(env.store().get_mapping(CONN, "org-x").await.unwrap().unwrap().customer_id.as_deref(), Some("1003"));
    assert_eq!(env.store().get_mapping(CONN, "org-y").await.unwrap().unwrap().customer_id, None);
    let rec = env.record(RecordKind::Customers, "1003", None, "").await.unwrap();
    assert_eq!((rec.state, rec.upstream.as_deref()), (RecordState::Matched, Some("org-x")));

    let users = json!({"users": [{"email": "Help@Company03.example", "org_id": "org-x"}]});
    let (_, r) = put(&env, "/v1/mappings/bms/users", "application/json", &users.to_string()).await;
    assert_eq!(r["matched"], 1, "{r}");
    let u = env.store().get_user_mapping(CONN, "help@company03.example").await.unwrap().unwrap();
    assert_eq!((u.contact_id.as_deref(), u.customer_id.as_deref()), (Some("3001"), Some("1003")));
    let (_, r) = put(&env, "/v1/mappings/bms/users", "application/json", &users.to_string()).await;
    assert_eq!((r["unchanged"].as_u64(), r["matched"].as_u64()), (Some(1), Some(0)));

    let (s, r) = put(&env, "/v1/mappings/bms/users", "application/json", r#"{"users": [{"email": "nope"}]}"#).await;
    assert_eq!((s, r["error"]["field"].as_str()), (422, Some("users[0].email")), "{r}");
    let (s, _) = put(&env, "/v1/mappings/nope/users", "application/json", r#"{"users": []}"#).await;
    assert_eq!(s, 404);
    assert_eq!(env.store().list_user_mappings(CONN).await.unwrap().len(), 1, "nothing stored from bad input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_upstream_push_is_idempotent_and_links_synced_records() {
    let (store, dir) = sqlite().await;
    upstream_push(store, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamo_upstream_push_is_idempotent_and_links_synced_records() {
    let (store, dir) = dynamo("psasync", "push").await;
    upstream_push(store, dir).await;
}
