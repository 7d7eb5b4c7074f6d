//! Kaseya BMS connector against the BMS simulator.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::connectors::bms::BmsConnector;
use bridge::connectors::{Connector, ConnectorError, NoteRequest, TokenKind};
use bridge::domain::{MappedStatus, Outcome};
use sandbox::Fault;
use sandbox::bms::{Bms, BmsConfig};
use support::psa::{BMS_DEFAULTS, BMS_SECRET as SECRET, assert_check_fails, bms_sim, config, dead_url, request};
use support::{MemSecrets, Opts};

struct Env {
    sim: Bms,
    secrets: Arc<MemSecrets>,
    conn: BmsConnector,
}

fn opts() -> Opts {
    Opts { timeout_ms: 400, ..Opts::default() }
}

async fn env_with(sim_config: BmsConfig, options: &str) -> Env {
    let (sim, secrets) = bms_sim(sim_config).await;
    let cfg = config("bms", sim.base_url(), SECRET, &opts(), options, BMS_DEFAULTS, None);
    let conn = BmsConnector::new("bms-test", &cfg, secrets.clone()).unwrap();
    Env { sim, secrets, conn }
}

async fn env() -> Env {
    env_with(BmsConfig::default(), "").await
}

const CREATE: &str = "POST /v2/servicedesk/tickets";
const SEARCH: &str = "POST /v2/servicedesk/tickets/search";
const GET: &str = "GET /v2/servicedesk/tickets/{ticketId}";
const AUTH: &str = "POST /v2/security/authenticate";
const REFRESH: &str = "POST /v2/security/refreshtoken";

#[tokio::test]
async fn create_resolves_names_and_writes_the_marker_then_notes_and_lookups_work() {
    let e = env().await;
    let mut req = request("01JTESTCREATE", Some("100"));
    req.contact_id = Some("501".into());
    let t = e.conn.create_ticket(&req).await.unwrap();
    let sim = e.sim.find_ticket(&t.id).expect("ticket exists in BMS");
    assert_eq!(t.number.as_deref(), Some(sim.number.as_str()));
    assert_eq!(sim.correlation_key.as_deref(), Some("01JTESTCREATE"));
    assert_eq!(sim.status, "New");
    for (field, want) in [
        ("TypeId", 1),
        ("PriorityId", 3),
        ("QueueId", 2),
        ("IssueTypeId", 10),
        ("SubIssueTypeId", 100),
        ("LocationId", 1001),
        ("SourceId", 8),
        ("ContactId", 501),
    ] {
        assert_eq!(sim.fields.get(field).and_then(|v| v.as_i64()), Some(want), "{field}");
    }
    // Crash recovery finds it by marker; another key finds nothing.
    assert_eq!(e.conn.find_by_correlation("01JTESTCREATE").await.unwrap().map(|r| r.id), Some(t.id.clone()));
    assert_eq!(e.conn.find_by_correlation("01JTESTCREAT").await.unwrap(), None);
    // Internal note.
    let note = NoteRequest { correlation_key: "01JNOTE".into(), title: "Another alert".into(), body: "details".into() };
    e.conn.add_note(&t, &note).await.unwrap();
    let sim = e.sim.find_ticket(&t.id).unwrap();
    assert_eq!(sim.notes.len(), 1);
    assert!(sim.notes[0].internal);
    assert!(sim.notes[0].body.contains("Another alert") && sim.notes[0].body.contains("details"));
    // Contacts and accounts.
    assert_eq!(e.conn.find_contact(Some("100"), "ALICE@acme.io").await.unwrap().as_deref(), Some("501"));
    assert_eq!(e.conn.find_contact(Some("200"), "alice@acme.io").await.unwrap(), None);
    let customers = e.conn.list_customers().await.unwrap();
    assert_eq!(customers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["Acme Corp", "Globex"]);
    // One login served everything.
    assert_eq!(e.sim.requests(AUTH), 1);
}

#[tokio::test]
async fn unknown_default_names_are_config_errors_naming_the_setting() {
    let e = env_with(BmsConfig::default(), "").await;
    let mut req = request("k", Some("100"));
    req.priority = Some("Whenever".into());
    let err = e.conn.create_ticket(&req).await.unwrap_err();
    assert!(
        matches!(&err, ConnectorError::Config(m) if m.contains("defaults.priority") && m.contains("Whenever")),
        "{err:?}"
    );
    let err = e.conn.create_ticket(&request("k2", None)).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Config(_)), "{err:?}");
    assert!(e.sim.tickets().is_empty());
}

#[tokio::test]
async fn status_batch_reads_many_tickets_per_request_across_pages() {
    let e = env_with(BmsConfig::default(), "page_size = 10").await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(e.conn.create_ticket(&request(&format!("01JBATCH{i:02}"), Some("100"))).await.unwrap().id);
    }
    for i in [3, 7, 20] {
        e.sim.close(&ids[i], None).unwrap();
    }
    e.sim.set_status(&ids[5], "Waiting Customer").unwrap();
    e.sim.reset_requests();
    let mut asked = ids.clone();
    asked.push("999999".into());
    let got = e.conn.statuses(&asked).await.unwrap();
    assert_eq!(got.len(), 25, "the unknown ticket is omitted");
    for s in &got {
        let i = ids.iter().position(|id| *id == s.ticket_id).unwrap();
        match i {
            3 | 7 | 20 => {
                assert_eq!(s.name, "Completed");
                assert_eq!(s.category, Some(MappedStatus::Closed(Outcome::Fulfilled)));
            }
            5 => assert_eq!((s.name.as_str(), s.category), ("Waiting Customer", None)),
            _ => assert_eq!((s.name.as_str(), s.category), ("New", None)),
        }
    }
    // 22 open tickets in pages of 10 = 3 searches; the 3 completed ones and the unknown one are read singly.
    assert_eq!(e.sim.requests(SEARCH), 3);
    assert_eq!(e.sim.requests(GET), 4);
}

#[tokio::test]
async fn expired_access_token_is_renewed_with_the_refresh_token() {
    let e = env().await;
    e.conn.create_ticket(&request("01JEXP1", Some("100"))).await.unwrap();
    let first_refresh = e.secrets.snapshot(SECRET).get("refresh_token").unwrap().to_string();
    e.sim.tokens().expire_access();
    let t = e.conn.create_ticket(&request("01JEXP2", Some("100"))).await.unwrap();
    assert!(e.sim.find_ticket(&t.id).is_some());
    assert_eq!((e.sim.requests(AUTH), e.sim.requests(REFRESH)), (1, 1), "one login, one refresh");
    let second_refresh = e.secrets.snapshot(SECRET).get("refresh_token").unwrap().to_string();
    assert_ne!(first_refresh, second_refresh, "the new refresh token is stored");
    // The scheduled refresher renews explicitly and reports the new expiry.
    let before = e.conn.token_state().await.unwrap();
    assert_eq!(before.kind, TokenKind::Renewable);
    let after = e.conn.refresh_token().await.unwrap();
    assert!(after.expires_at.is_some());
    assert_eq!(e.sim.requests(REFRESH), 2);
    assert_eq!(e.sim.refresh_replays(), 0);
}

#[tokio::test]
async fn revoked_tokens_cost_one_reauthentication() {
    let e = env().await;
    let t = e.conn.create_ticket(&request("01JREV", Some("100"))).await.unwrap();
    // Access tokens revoked: the refresh token still works.
    e.sim.revoke_tokens();
    assert_eq!(e.conn.statuses(std::slice::from_ref(&t.id)).await.unwrap().len(), 1);
    assert_eq!((e.sim.requests(AUTH), e.sim.requests(REFRESH)), (1, 1));
    // Every credential revoked: the refresh is refused, a password login follows.
    e.sim.revoke_all_credentials();
    assert_eq!(e.conn.statuses(std::slice::from_ref(&t.id)).await.unwrap().len(), 1);
    assert_eq!((e.sim.requests(AUTH), e.sim.requests(REFRESH)), (2, 2));
}

#[tokio::test]
async fn server_errors_on_create_end_with_exactly_one_ticket() {
    let e = env().await;
    e.sim.faults().inject_on(CREATE, Fault::Status { status: 503 }, 2);
    let t = e.conn.create_ticket(&request("01JFLAKY", Some("100"))).await.unwrap();
    assert_eq!(e.sim.tickets().len(), 1);
    assert_eq!(e.sim.requests(CREATE), 3);
    assert_eq!(e.sim.tickets()[0].id.to_string(), t.id);
    // A lost response: the ticket exists, the connector finds it instead of creating another.
    e.sim.faults().inject_on(CREATE, Fault::LoseResponse, 1);
    let t2 = e.conn.create_ticket(&request("01JLOST", Some("100"))).await.unwrap();
    assert_eq!(e.sim.tickets().len(), 2);
    assert_eq!(e.sim.find_ticket(&t2.id).unwrap().correlation_key.as_deref(), Some("01JLOST"));
    assert_eq!(e.sim.requests(CREATE), 4);
}

#[tokio::test]
async fn retry_after_is_respected_and_the_hourly_endpoint_limit_surfaces() {
    let e = env_with(BmsConfig { rate_limit_per_hour: Some(4), ..BmsConfig::default() }, "").await;
    let t = e.conn.create_ticket(&request("01JRATE", Some("100"))).await.unwrap();
    e.sim.faults().inject_on(SEARCH, Fault::RateLimited { retry_after_secs: 1 }, 1);
    let started = Instant::now();
    assert_eq!(e.conn.statuses(std::slice::from_ref(&t.id)).await.unwrap().len(), 1);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited for Retry-After");
    // The per-endpoint hourly budget (4 here, 1,500 in BMS): the 5th search is refused for ~1 h.
    // Two searches used so far (the refused one counts), two left.
    for _ in 0..2 {
        e.conn.find_by_correlation("x").await.unwrap();
    }
    let err = e.conn.find_by_correlation("x").await.unwrap_err();
    assert!(matches!(err, ConnectorError::RateLimited { retry_after_secs: Some(s) } if s > 60), "{err:?}");
    // Other endpoints have their own budget.
    assert_eq!(e.conn.find_contact(Some("100"), "alice@acme.io").await.unwrap().as_deref(), Some("501"));
}

#[tokio::test]
async fn hang_malformed_and_error_bodies_map_to_errors() {
    let e = env().await;
    let t = e.conn.create_ticket(&request("01JFAULT", Some("100"))).await.unwrap();
    e.sim.faults().inject_on(SEARCH, Fault::hang(Duration::from_millis(1500)), 10);
    let err = e.conn.find_by_correlation("01JFAULT").await.unwrap_err();
    assert!(matches!(err, ConnectorError::Timeout(_)), "{err:?}");
    e.sim.faults().clear();
    e.sim.faults().inject_on(SEARCH, Fault::MalformedJson, 1);
    let err = e.conn.find_by_correlation("01JFAULT").await.unwrap_err();
    assert!(matches!(err, ConnectorError::Malformed(_)), "{err:?}");
    e.sim.faults().inject_on(SEARCH, Fault::ErrorBody, 1);
    let err = e.conn.find_by_correlation("01JFAULT").await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Server(m) if m.contains("unexpected error")), "{err:?}");
    // And afterwards all is well again.
    assert_eq!(e.conn.find_by_correlation("01JFAULT").await.unwrap().map(|r| r.id), Some(t.id));
}

#[tokio::test]
async fn check_tells_bad_credentials_wrong_tenant_and_unreachable_apart() {
    let e = env().await;
    let ok = e.conn.check().await.unwrap();
    assert!(ok.ok, "{ok:?}");
    let c = e.sim.config().clone();
    e.secrets.set(SECRET, &[("username", &c.username), ("password", "wrong"), ("tenant", &c.tenant)]);
    assert_check_fails(&e.conn.check().await.unwrap(), "bad credentials");
    e.secrets.set(SECRET, &[("username", &c.username), ("password", &c.password), ("tenant", "Nobody Inc")]);
    assert_check_fails(&e.conn.check().await.unwrap(), "wrong tenant");
    e.secrets.set(SECRET, &[("username", &c.username), ("tenant", &c.tenant)]);
    assert_check_fails(&e.conn.check().await.unwrap(), "password");
    e.secrets.set(SECRET, &[("username", &c.username), ("password", &c.password), ("tenant", &c.tenant)]);
    let cfg = config("bms", &dead_url().await, SECRET, &opts(), "", BMS_DEFAULTS, None);
    let dead = BmsConnector::new("bms-dead", &cfg, e.secrets.clone()).unwrap();
    assert_check_fails(&dead.check().await.unwrap(), "unreachable");
    // Secrets never show up in diagnoses.
    let report = format!("{:?}", e.conn.check().await.unwrap());
    assert!(!report.contains(&c.password));
}
