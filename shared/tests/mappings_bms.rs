//! Organization / contact / contract mapping against the BMS simulator with a few hundred
//! accounts, on SQLite and on DynamoDB (moto at `TB_AWS_ENDPOINT`): exact and normalized
//! matching, collisions, exclude / include, apply twice (nothing created the second time), user
//! sync, contract service quantities, and tickets created afterwards through the engine.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge::config::{Config, ConnectionConfig};
use bridge::connectors::ConnectorError;
use bridge::engine::{Engine, LogEvents};
use bridge::mapping::plan::CollisionKind;
use bridge::mapping::{ContractChange, Format, Included, MappingError, Mappings, MatchMode, parse_orgs, parse_users};
use bridge::secrets::{Secret, Secrets};
use bridge::store::Store;
use chrono::Utc;
use sandbox::bms::{Bms, BmsConfig};
use serde_json::json;

const CONN: &str = "bms";
const CREATE_ACCOUNT: &str = "POST /v2/crm/accounts";
const CREATE_CONTACT: &str = "POST /v2/crm/contacts/summary";
const ADD_LINE: &str = "POST /v2/finance/contracts/recurringservices/{contractId}/services";
const UPDATE_LINE: &str = "PUT /v2/finance/contracts/recurringservices/{contractId}/services/{serviceLineId}";

/// Catch-all account and contact.
const CATCH_ALL: &str = "1";
const CATCH_ALL_CONTACT: &str = "10";

/// 300 accounts "Company 000".."Company 299" (ids 1000..), two accounts named "Twin Holdings",
/// names differing from upstream ones only by case / punctuation, a catch-all account, contacts,
/// a contract and a catalog service.
async fn seeded_bms() -> Bms {
    let sim = Bms::spawn(BmsConfig::default()).await.unwrap();
    sim.add_customer(CATCH_ALL, "Default Customer");
    sim.add_contact(CATCH_ALL_CONTACT, Some(CATCH_ALL), "default@msp.example", "Default Contact");
    for i in 0..300 {
        sim.add_customer(&(1000 + i).to_string(), &format!("Company {i:03}"));
    }
    sim.add_customer("2001", "Twin Holdings");
    sim.add_customer("2002", "Twin Holdings");
    sim.add_customer("2010", "Acme Widgets, Inc.");
    sim.add_customer("2011", "globex corporation");
    sim.add_customer("2012", "Initech-LLC");
    sim.add_contact("3001", Some("1005"), "help@company005.example", "Help Desk");
    sim.add_contact("3002", Some("1005"), "ada@company005.example", "Ada Lovelace");
    sim.add_contract(7001, 1005, "Managed Security", true);
    sim.add_contract(7002, 1006, "Other account's contract", true);
    sim.add_service(300, "User Licenses");
    sim
}

/// The upstream organization list (CSV): 200 exact matches, case/punctuation variants, a name two
/// accounts share, two new organizations with one name, and 20 new organizations.
fn orgs_csv() -> String {
    let mut csv = String::from("id,name,contact_name,contact_email,user_count\n");
    for i in 0..200 {
        match i {
            5 => csv.push_str("org-005,Company 005,,help@company005.example,42\n"),
            _ => csv.push_str(&format!("org-{i:03},Company {i:03},,,\n")),
        }
    }
    csv.push_str("org-twin,Twin Holdings,,,\n");
    csv.push_str("org-acme,ACME Widgets Inc,,,\n");
    csv.push_str("org-globex,Globex Corporation,,,\n");
    csv.push_str("org-initech,Initech LLC,,,\n");
    csv.push_str("org-dup-a,Dup Startup,,,\n");
    csv.push_str("org-dup-b,Dup Startup,,,\n");
    for i in 0..20 {
        csv.push_str(&format!("new-{i:02},Newco {i:02},Alerts Desk,alerts@newco{i:02}.example,\n"));
    }
    csv
}

fn connection(base_url: &str) -> ConnectionConfig {
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
customer_id = "{CATCH_ALL}"
contact_id = "{CATCH_ALL_CONTACT}"
[mapping]
match = "exact"
auto_create = true
default_contract_service = "User Licenses"
[options]
account_type_id = 1
business_type_id = 2
account_manager_id = 3
[options.http]
max_retries = 1
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
    async fn new(store: Arc<dyn Store>, dir: tempfile::TempDir) -> Self {
        let sim = seeded_bms().await;
        let secrets: Arc<dyn Secrets> =
            Arc::new(bridge::secrets::file::FileSecrets::open(dir.path().join("secrets.json")).unwrap());
        let c = sim.config().clone();
        let mut s = Secret::new();
        s.set("username", c.username);
        s.set("password", c.password);
        s.set("tenant", c.tenant);
        secrets.put("tb/bms", &s).await.unwrap();
        let mut config = Config::default();
        config.connections.insert(CONN.into(), connection(sim.base_url()));
        config.validate().unwrap();
        let mut connectors = BTreeMap::new();
        connectors.insert(
            CONN.to_string(),
            bridge::connectors::build(CONN, &config.connections[CONN], secrets.clone()).unwrap(),
        );
        let engine = Engine::new(Arc::new(config), store, secrets, connectors, Arc::new(LogEvents));
        Self { sim, engine, _dir: dir }
    }

    fn mappings(&self, mode: MatchMode) -> Mappings<'_> {
        let mut settings = self.engine.config.connections[CONN].mapping.clone();
        settings.match_mode = mode;
        Mappings::new(CONN, self.engine.store.as_ref(), self.engine.connectors[CONN].as_ref(), settings)
    }

    /// Submits an alert for `org` and runs ticket creation; returns the BMS ticket's
    /// (AccountId, ContactId, ContractId).
    async fn ticket_for(&self, ext: &str, org: &str, user: &str) -> (String, Option<String>, Option<i64>) {
        let body = json!({"source":"saas-alerts","external_id":ext,"kind":"alert","organization":{"id":org,"name":org},
            "user_email":user,"alert_type":"Data Leakage","severity":"high","details":{"files":3}});
        let new = bridge::engine::intake::parse_task(body.to_string().as_bytes()).unwrap();
        let now = Utc::now();
        let accepted = self.engine.accept(new, now).await.unwrap();
        let report = self.engine.create_one(&accepted.task.id, now).await.unwrap();
        assert_eq!(
            report.created,
            1,
            "ticket for {org}: {report:?} {:?}",
            self.engine.get(accepted.task.id.as_str()).await.unwrap().last_error
        );
        let t = self
            .sim
            .tickets()
            .into_iter()
            .find(|t| t.correlation_key.as_deref() == Some(accepted.task.id.as_str()))
            .unwrap();
        (t.customer_id.clone().unwrap(), t.contact_id.clone(), t.fields.get("ContractId").and_then(|v| v.as_i64()))
    }
}

fn ids<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = it.collect();
    v.sort_unstable();
    v
}

async fn scenario(store: Arc<dyn Store>, dir: tempfile::TempDir) {
    let env = Env::new(store, dir).await;
    let orgs = parse_orgs(&orgs_csv(), Format::Csv).unwrap();
    assert_eq!(orgs.len(), 226);

    // --- Exact matching: the case/punctuation variants would be created (with a hint).
    let exact = env.mappings(MatchMode::Exact).preview(&orgs).await.unwrap();
    assert_eq!(exact.counts.matched, 200);
    assert_eq!(exact.counts.to_create, 23);
    assert_eq!(exact.counts.colliding, 3);
    let hinted: Vec<&str> =
        exact.to_create.iter().filter(|c| !c.similar.is_empty()).map(|c| c.org.id.as_str()).collect();
    assert_eq!(ids(hinted.into_iter()), ["org-acme", "org-globex", "org-initech"]);

    // --- Normalized matching: they match their accounts instead.
    let loose = env.mappings(MatchMode::Normalized).preview(&orgs).await.unwrap();
    assert_eq!(loose.counts.matched, 203);
    assert_eq!(loose.counts.to_create, 20);
    let variants: BTreeMap<&str, &str> = loose
        .matched
        .iter()
        .filter(|m| !m.org.id.starts_with("org-0") && !m.org.id.starts_with("org-1"))
        .map(|m| (m.org.id.as_str(), m.customer.id.as_str()))
        .collect();
    assert_eq!(variants, BTreeMap::from([("org-acme", "2010"), ("org-globex", "2011"), ("org-initech", "2012")]));

    // --- Collisions are reported, never guessed: two accounts named "Twin Holdings", and two
    // new organizations that would create one name.
    for plan in [&exact, &loose] {
        assert_eq!(plan.collisions.len(), 2);
        let twin = plan.collisions.iter().find(|c| c.kind == CollisionKind::Customers).unwrap();
        assert_eq!(ids(twin.customers.iter().map(|c| c.id.as_str())), ["2001", "2002"]);
        assert_eq!(twin.orgs[0].id, "org-twin");
        let dup = plan.collisions.iter().find(|c| c.kind == CollisionKind::Organizations).unwrap();
        assert_eq!(ids(dup.orgs.iter().map(|o| o.id.as_str())), ["org-dup-a", "org-dup-b"]);
        assert!(!plan.matched.iter().any(|m| m.org.id == "org-twin"));
    }
    assert_eq!(env.sim.requests(CREATE_ACCOUNT), 0, "previews write nothing");
    assert!(env.engine.store.list_mappings(CONN).await.unwrap().is_empty());

    // --- Exclude / include round trip (an unmapped organization).
    let m = env.mappings(MatchMode::Normalized);
    m.exclude("org-150", Some("Company 150")).await.unwrap();
    let p = m.preview(&orgs).await.unwrap();
    assert_eq!((p.counts.excluded, p.counts.matched), (1, 202));
    assert_eq!(p.excluded[0].id, "org-150");
    assert!(matches!(m.include("org-150").await.unwrap(), Included::Unmapped { .. }));
    assert_eq!(m.preview(&orgs).await.unwrap().counts.matched, 203, "included again");
    assert!(matches!(m.include("org-150").await, Err(MappingError::NotFound(_))), "not on the list any more");
    m.exclude("org-150", None).await.unwrap();

    // --- Apply: 202 mapped, 20 accounts created with their default contacts.
    let first = m.apply(&orgs).await.unwrap();
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    assert_eq!(first.mapped, 202);
    assert_eq!(first.created.len(), 20);
    assert_eq!(first.contacts_created, 20);
    assert_eq!(first.contacts_linked, 1, "org-005's contact found by address");
    assert_eq!(env.sim.requests(CREATE_ACCOUNT), 20);
    assert_eq!(env.sim.requests(CREATE_CONTACT), 20);
    let newco = env.sim.customers().into_iter().filter(|c| c.name.starts_with("Newco")).count();
    assert_eq!(newco, 20);
    let mapped = env.engine.store.get_mapping(CONN, "new-03").await.unwrap().unwrap();
    let new_account = mapped.customer_id.clone().unwrap();
    let new_contact = env.sim.contacts().into_iter().find(|c| Some(&c.id) == mapped.contact_id.as_ref()).unwrap();
    assert_eq!(
        (new_contact.customer_id.as_deref(), new_contact.email.as_str(), new_contact.name.as_str()),
        (Some(new_account.as_str()), "alerts@newco03.example", "Alerts Desk")
    );
    let m005 = env.engine.store.get_mapping(CONN, "org-005").await.unwrap().unwrap();
    assert_eq!((m005.customer_id.as_deref(), m005.contact_id.as_deref()), (Some("1005"), Some("3001")));

    // --- Apply again: nothing is created or rewritten.
    let second = m.apply(&orgs).await.unwrap();
    assert!(second.failures.is_empty(), "{:?}", second.failures);
    assert_eq!((second.mapped, second.created.len(), second.contacts_created), (0, 0, 0));
    assert_eq!(second.plan.counts.already_mapped, 222);
    assert_eq!(second.plan.counts.excluded, 1);
    assert_eq!(env.sim.requests(CREATE_ACCOUNT), 20, "second apply created no account");
    assert_eq!(env.sim.requests(CREATE_CONTACT), 20, "second apply created no contact");

    // --- Exclude / include round trip of a mapped organization keeps its customer.
    m.exclude("org-007", None).await.unwrap();
    assert!(env.engine.store.get_mapping(CONN, "org-007").await.unwrap().unwrap().excluded);
    match m.include("org-007").await.unwrap() {
        Included::Restored { mapping } => assert_eq!(mapping.customer_id.as_deref(), Some("1007")),
        other => panic!("{other:?}"),
    }

    // --- Manual match, including of the ambiguous name.
    let twin = m.match_org("org-twin", "2002", Some("Twin Holdings"), None).await.unwrap();
    assert_eq!(twin.customer_name.as_deref(), Some("Twin Holdings"));
    assert!(matches!(m.match_org("org-dup-a", "99999", None, None).await, Err(MappingError::NotFound(_))));

    // --- Contract: checked against the account's contracts; the service line follows the
    // organization's user count on later applies.
    let wrong = ContractChange { contract_id: Some("7002".into()), ..Default::default() };
    assert!(
        matches!(m.set_contract("org-005", &wrong).await, Err(MappingError::NotFound(msg)) if msg.contains("7001"))
    );
    let change = ContractChange { contract_id: Some("7001".into()), service: Some(true), ..Default::default() };
    let with_contract = m.set_contract("org-005", &change).await.unwrap();
    assert_eq!(with_contract.contract_id.as_deref(), Some("7001"));
    let lines = env.sim.service_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0].contract_id, lines[0].service_id, lines[0].units), (7001, 300, 0));
    assert_eq!(with_contract.contract_service_id, Some(lines[0].id.to_string()));
    let third = m.apply(&orgs).await.unwrap();
    assert_eq!((third.service_lines.updated, third.service_lines.added), (1, 0));
    assert_eq!(env.sim.service_lines()[0].units, 42);
    let fourth = m.apply(&orgs).await.unwrap();
    assert_eq!(fourth.service_lines.unchanged, 1);
    assert_eq!(env.sim.requests(UPDATE_LINE), 1, "an unchanged count is not written");
    assert_eq!(env.sim.requests(ADD_LINE), 1);
    let contracts = m.contracts("org-005").await.unwrap();
    assert_eq!(contracts.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["7001"]);

    // --- Users by e-mail address: ada matches her contact, bob is created, eve is excluded.
    let users = parse_users(
        "email,name,org_id\nADA@company005.example,Ada Lovelace,org-005\nbob@company005.example,Bob Builder,org-005\n\
         eve@company005.example,Eve,org-005\nzed@nowhere.example,Zed,org-unknown\n",
        Format::Csv,
    )
    .unwrap();
    m.exclude_user("eve@company005.example").await.unwrap();
    let up = m.preview_users(&users).await.unwrap();
    assert_eq!((up.counts.matched, up.counts.to_create, up.counts.excluded, up.counts.no_customer), (1, 1, 1, 1));
    let applied = m.apply_users(&users).await.unwrap();
    assert_eq!((applied.mapped, applied.contacts_created), (1, 1));
    let again = m.apply_users(&users).await.unwrap();
    assert_eq!((again.mapped, again.contacts_created, again.plan.counts.already_mapped), (0, 0, 2));
    assert_eq!(env.sim.requests(CREATE_CONTACT), 21, "one contact for bob, once");
    let bob = env.engine.store.get_user_mapping(CONN, "bob@company005.example").await.unwrap().unwrap();
    let bob_contact = bob.contact_id.clone().unwrap();
    assert!(env.sim.contacts().iter().any(|c| c.id == bob_contact && c.customer_id.as_deref() == Some("1005")));

    // --- Tickets created afterwards carry the mapped customer, contact and contract.
    assert_eq!(
        env.ticket_for("t-mapped", "org-005", "nobody@company005.example").await,
        ("1005".into(), Some("3001".into()), Some(7001))
    );
    assert_eq!(
        env.ticket_for("t-ada", "org-005", "ada@company005.example").await,
        ("1005".into(), Some("3002".into()), Some(7001))
    );
    assert_eq!(
        env.ticket_for("t-bob", "org-005", "bob@company005.example").await,
        ("1005".into(), Some(bob_contact), Some(7001))
    );
    assert_eq!(
        env.ticket_for("t-eve", "org-005", "eve@company005.example").await,
        ("1005".into(), Some("3001".into()), Some(7001)),
        "an excluded user gets the default contact"
    );
    let created = env.ticket_for("t-new", "new-03", "x@newco03.example").await;
    assert_eq!(created, (new_account, Some(new_contact.id.clone()), None));
    // Unmapped, excluded and colliding organizations land on the catch-all.
    let catch_all = (CATCH_ALL.to_string(), Some(CATCH_ALL_CONTACT.to_string()), None);
    assert_eq!(env.ticket_for("t-unmapped", "org-nobody", "x@nobody.example").await, catch_all);
    assert_eq!(env.ticket_for("t-excluded", "org-150", "x@company150.example").await, catch_all);
    assert_eq!(env.ticket_for("t-collision", "org-dup-a", "x@dup.example").await, catch_all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_few_hundred_bms_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(bridge::store::sqlite::SqliteStore::open(dir.path().join("tb.db")).unwrap());
    scenario(store, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_a_few_hundred_bms_accounts() {
    let endpoint = std::env::var(bridge::aws::ENDPOINT_ENV).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        panic!("{} is not set: start moto_server and export it (e.g. http://127.0.0.1:5123)", bridge::aws::ENDPOINT_ENV)
    });
    let sdk = bridge::aws::sdk_config(Some(&endpoint)).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("mappings-{}", ulid::Ulid::new().to_string().to_lowercase());
    bridge::store::dynamo::create_table(&client, &table).await.unwrap();
    let store = Arc::new(bridge::store::dynamo::DynamoStore::new(client.clone(), table.clone()));
    scenario(store, tempfile::tempdir().unwrap()).await;
    client.delete_table().table_name(&table).send().await.unwrap();
}

#[tokio::test]
async fn admin_api_needs_an_admin_key_and_previews_posted_lists() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(bridge::store::sqlite::SqliteStore::open(dir.path().join("tb.db")).unwrap());
    let mut env = Env::new(store, dir).await;
    let mut config = (*env.engine.config).clone();
    config.auth.api_keys = vec![
        bridge::config::ApiKey {
            name: "ops".into(),
            sha256: bridge::engine::api::hash_key("admin-key"),
            scope: bridge::config::KeyScope::Admin,
            sources: vec![],
        },
        bridge::config::ApiKey {
            name: "idp".into(),
            sha256: bridge::engine::api::hash_key("tasks-key"),
            scope: bridge::config::KeyScope::Tasks,
            sources: vec![],
        },
    ];
    env.engine.config = Arc::new(config);
    let call = |method: &'static str, path: &'static str, key: &'static str, ct: &'static str, body: String| {
        let engine = &env.engine;
        async move {
            let mut headers = http::HeaderMap::new();
            headers.insert("content-type", ct.parse().unwrap());
            headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
            let (p, q) = path.split_once('?').map(|(p, q)| (p, Some(q))).unwrap_or((path, None));
            let req = bridge::engine::api::ApiRequest {
                method,
                path: p,
                query: q,
                headers: &headers,
                body: body.as_bytes(),
                peer_loopback: false,
            };
            let r = bridge::engine::api::handle(engine, req, Utc::now()).await;
            (r.status, r.body)
        }
    };
    let json_list = json!({"organizations": [{"id": "a", "name": "ACME Widgets Inc"}, {"id": "b", "name": "Company 001"}], "match": "normalized"}).to_string();
    let (s, _) =
        call("POST", "/v1/admin/connections/bms/mappings/preview", "tasks-key", "application/json", json_list.clone())
            .await;
    assert_eq!(s, 403, "a tasks-scoped key may not map");
    let (s, plan) =
        call("POST", "/v1/admin/connections/bms/mappings/preview", "admin-key", "application/json", json_list).await;
    assert_eq!(s, 200, "{plan}");
    assert_eq!(plan["counts"]["matched"], 2);
    assert_eq!(plan["match"], "normalized");
    let (s, plan) = call(
        "POST",
        "/v1/admin/connections/bms/mappings/preview?auto_create=false",
        "admin-key",
        "text/csv",
        "id,name\na,ACME Widgets Inc\nb,Company 001\n".into(),
    )
    .await;
    assert_eq!(s, 200, "{plan}");
    assert_eq!((plan["counts"]["matched"].as_u64(), plan["counts"]["unmatched"].as_u64()), (Some(1), Some(1)));
    let (s, err) =
        call("POST", "/v1/admin/connections/bms/mappings/preview", "admin-key", "text/csv", "id,name\na,\n".into())
            .await;
    assert_eq!(s, 422);
    assert_eq!(err["error"]["field"], "line 2, column 'name'");
    let (s, _) =
        call("POST", "/v1/admin/connections/nope/mappings/preview", "admin-key", "text/csv", "id,name\n".into()).await;
    assert_eq!(s, 404);

    let (s, m) = call(
        "POST",
        "/v1/admin/connections/bms/mappings/match",
        "admin-key",
        "application/json",
        json!({"org_id": "a", "customer_id": "2010"}).to_string(),
    )
    .await;
    assert_eq!((s, m["customer_name"].as_str()), (200, Some("Acme Widgets, Inc.")));
    let (s, _) = call(
        "POST",
        "/v1/admin/connections/bms/mappings/exclude",
        "admin-key",
        "application/json",
        json!({"org_id": "a"}).to_string(),
    )
    .await;
    assert_eq!(s, 200);
    let (_, list) =
        call("GET", "/v1/admin/connections/bms/mappings", "admin-key", "application/json", String::new()).await;
    assert_eq!(list["items"][0]["excluded"], true);
    let (s, inc) = call(
        "POST",
        "/v1/admin/connections/bms/mappings/include",
        "admin-key",
        "application/json",
        json!({"org_id": "a"}).to_string(),
    )
    .await;
    assert_eq!((s, inc["outcome"].as_str()), (200, Some("restored")));
    let (s, contracts) =
        call("GET", "/v1/admin/connections/bms/mappings/a/contracts", "admin-key", "application/json", String::new())
            .await;
    assert_eq!((s, contracts["items"].as_array().map(Vec::len)), (200, Some(0)));

    // Apply over the API creates, and a second apply creates nothing.
    let body = json!({"organizations": [{"id": "n", "name": "Brand New Co"}], "auto_create": true}).to_string();
    let (s, r) =
        call("POST", "/v1/admin/connections/bms/mappings/apply", "admin-key", "application/json", body.clone()).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["created"].as_array().map(Vec::len), Some(1));
    let (_, r) = call("POST", "/v1/admin/connections/bms/mappings/apply", "admin-key", "application/json", body).await;
    assert_eq!(r["created"].as_array().map(Vec::len), Some(0));
    assert_eq!(env.sim.requests(CREATE_ACCOUNT), 1);

    let (s, u) = call(
        "POST",
        "/v1/admin/connections/bms/users/exclude",
        "admin-key",
        "application/json",
        json!({"email": "Eve@X.io"}).to_string(),
    )
    .await;
    assert_eq!((s, u["email"].as_str()), (200, Some("eve@x.io")));
    let (s, u) = call(
        "POST",
        "/v1/admin/connections/bms/users/include",
        "admin-key",
        "application/json",
        json!({"email": "eve@x.io"}).to_string(),
    )
    .await;
    assert_eq!((s, u["outcome"].as_str()), (200, Some("unmapped")));
}

#[tokio::test]
async fn sandbox_desk_creates_customers_and_contacts() {
    let desk = sandbox::desk::Desk::spawn(sandbox::desk::DeskConfig::default()).await.unwrap();
    desk.add_customer("cust-1", "Existing Co");
    let secrets = support::MemSecrets::with("tb/sandbox", &[("api_key", desk.api_key())]);
    let cfg = support::conn_config("sandbox", desk.base_url(), "tb/sandbox", &support::Opts::default(), "");
    let connector = bridge::connectors::build("sbx", &cfg, secrets).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = bridge::store::sqlite::SqliteStore::open(dir.path().join("tb.db")).unwrap();
    let settings = bridge::mapping::MappingSettings { auto_create: true, ..Default::default() };
    let m = Mappings::new("sbx", &store, connector.as_ref(), settings);
    let orgs = parse_orgs("id,name\no1,Existing Co\no2,Fresh Co\n", Format::Csv).unwrap();
    let r = m.apply(&orgs).await.unwrap();
    assert_eq!((r.mapped, r.created.len(), r.contacts_created), (1, 1, 1), "{:?}", r.failures);
    let fresh = desk.customers().into_iter().find(|c| c.name == "Fresh Co").unwrap();
    let contacts = connector.list_contacts(&fresh.id).await.unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].name, "Ticket Contact");
    assert_eq!(store_contact(&store, "o2").await, Some(contacts[0].id.clone()));
    let again = m.apply(&orgs).await.unwrap();
    assert_eq!((again.created.len(), again.contacts_created), (0, 0));
    assert_eq!(desk.customers().len(), 2);
    assert!(
        matches!(connector.list_contracts(&fresh.id).await, Err(ConnectorError::Unsupported(m)) if m.contains("sandbox"))
    );
}

async fn store_contact(store: &dyn Store, org: &str) -> Option<String> {
    store.get_mapping("sbx", org).await.unwrap().and_then(|m| m.contact_id)
}

#[tokio::test]
async fn targets_without_customers_report_unsupported_instead_of_creating() {
    let h = support::rt_harness(support::Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = bridge::store::sqlite::SqliteStore::open(dir.path().join("tb.db")).unwrap();
    let settings = bridge::mapping::MappingSettings { auto_create: true, ..Default::default() };
    let m = Mappings::new("rt", &store, h.connector.as_ref(), settings);
    let orgs = parse_orgs("id,name\no1,One\no2,Two\n", Format::Csv).unwrap();
    let r = m.apply(&orgs).await.unwrap();
    assert_eq!(r.created.len(), 0);
    assert_eq!(r.failures.len(), 2);
    assert!(
        r.failures
            .iter()
            .all(|f| f.step == "create_customer" && f.message.contains("creating customers is not supported by rt")),
        "{:?}",
        r.failures
    );
    assert!(store.list_mappings("rt").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_lost_create_response_adopts_the_account_instead_of_creating_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(bridge::store::sqlite::SqliteStore::open(dir.path().join("tb.db")).unwrap());
    let env = Env::new(store, dir).await;
    // The account and the contact are created, but both answers are lost (HTTP 500).
    env.sim.faults().inject_on(CREATE_ACCOUNT, sandbox::Fault::LoseResponse, 1);
    env.sim.faults().inject_on(CREATE_CONTACT, sandbox::Fault::LoseResponse, 1);
    let orgs = parse_orgs("id,name,contact_email\nnew-1,Lost Reply Co,desk@lost.example\n", Format::Csv).unwrap();
    let m = env.mappings(MatchMode::Exact);
    let r = m.apply(&orgs).await.unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.created.len(), 1);
    assert_eq!(env.sim.requests(CREATE_ACCOUNT), 1, "not created twice");
    assert_eq!(env.sim.requests(CREATE_CONTACT), 1, "not created twice");
    let accounts: Vec<_> = env.sim.customers().into_iter().filter(|c| c.name == "Lost Reply Co").collect();
    assert_eq!(accounts.len(), 1);
    let mapping = env.engine.store.get_mapping(CONN, "new-1").await.unwrap().unwrap();
    assert_eq!(mapping.customer_id.as_deref(), Some(accounts[0].id.as_str()));
    let contact = env.sim.contacts().into_iter().find(|c| c.email == "desk@lost.example").unwrap();
    assert_eq!(mapping.contact_id, Some(contact.id));
    assert_eq!(m.apply(&orgs).await.unwrap().created.len(), 0);
    assert_eq!(env.sim.requests(CREATE_ACCOUNT), 1);
}
