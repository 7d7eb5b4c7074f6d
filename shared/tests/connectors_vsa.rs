//! Kaseya VSA connector against the VSA simulator (shared faults are covered by the
//! conformance suite; these tests cover what is VSA-specific).

mod support;

use std::sync::Arc;

use bridge::connectors::vsa::VsaConnector;
use bridge::connectors::{Connector, ConnectorError, NoteRequest, TokenKind};
use bridge::domain::{MappedStatus, Outcome};
use bridge::secrets::Secrets;
use chrono::{DateTime, Utc};
use sandbox::Fault;
use sandbox::vsa::{Vsa, VsaConfig};
use support::psa::{VSA_SECRET as SECRET, assert_check_fails, config, dead_url, request, vsa_sim};
use support::{MemSecrets, Opts};

const LIST: &str = "GET /api/v1.0/automation/servicedesks/{deskId}/tickets";
const CREATE: &str = "POST /api/v1.0/automation/servicedesktickets/{deskId}/ticket";
const AUTH: &str = "GET /api/v1.0/auth";

struct Env {
    sim: Vsa,
    secrets: Arc<MemSecrets>,
    conn: VsaConnector,
}

fn opts() -> Opts {
    Opts { timeout_ms: 400, ..Opts::default() }
}

async fn env_with(sim_config: VsaConfig, options: &str, defaults: &str) -> Env {
    let (sim, secrets) = vsa_sim(sim_config).await;
    let cfg = config(
        "vsa",
        sim.base_url(),
        SECRET,
        &opts(),
        &format!("service_desk_id = \"1001\"\n{options}"),
        defaults,
        None,
    );
    let conn = VsaConnector::new("vsa-test", &cfg, secrets.clone()).unwrap();
    Env { sim, secrets, conn }
}

async fn env() -> Env {
    env_with(
        VsaConfig::default(),
        "",
        "priority = \"High\"\nstatus = \"In Progress\"\n[issue]\nissue_type = \"Security\"",
    )
    .await
}

#[tokio::test]
async fn create_sends_numeric_ids_for_named_defaults_and_notes_are_hidden() {
    let e = env().await;
    let t = e.conn.create_ticket(&request("01JVSA1", None)).await.unwrap();
    assert_eq!(t.number.as_deref(), Some("STD000001"));
    let sim = e.sim.find_ticket(&t.id).unwrap();
    assert_eq!(sim.request["Priority"], 13, "name resolved to the desk's PriorityId");
    assert_eq!(sim.request["Status"], 2);
    assert_eq!(sim.request["Category"], 21);
    assert_eq!(sim.request["SubmitterEmail"], "alice@acme.io");
    assert_eq!((sim.status.as_str(), sim.priority.as_deref()), ("In Progress", Some("High")));
    assert_eq!(sim.correlation_key.as_deref(), Some("01JVSA1"));
    assert_eq!(e.conn.find_by_correlation("01JVSA1").await.unwrap().map(|r| r.id), Some(t.id.clone()));
    assert_eq!(e.conn.find_by_correlation("01JVSA").await.unwrap(), None);
    let note = NoteRequest { correlation_key: "01JN".into(), title: "Another alert".into(), body: "more".into() };
    e.conn.add_note(&t, &note).await.unwrap();
    let notes = e.sim.find_ticket(&t.id).unwrap().notes;
    assert_eq!(notes.len(), 1);
    assert!(notes[0].internal, "Hidden = true");
    assert_eq!(e.conn.list_customers().await.unwrap().len(), 1);
}

#[tokio::test]
async fn without_a_configured_priority_the_desks_first_priority_is_used() {
    let e = env_with(VsaConfig::default(), "", "").await;
    let t = e.conn.create_ticket(&request("01JVSAP", None)).await.unwrap();
    assert_eq!(e.sim.find_ticket(&t.id).unwrap().request["Priority"], 11);
    let mut req = request("01JVSAQ", None);
    req.priority = Some("Someday".into());
    let err = e.conn.create_ticket(&req).await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Config(m) if m.contains("defaults.priority")), "{err:?}");
}

#[tokio::test]
async fn status_batch_filters_by_ids_and_follows_skip_paging() {
    let e = env_with(VsaConfig::default(), "page_size = 10", "").await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(e.conn.create_ticket(&request(&format!("01JVB{i:02}"), None)).await.unwrap().id);
    }
    e.sim.close(&ids[1], None).unwrap();
    e.sim.close(&ids[2], Some("Cancelled")).unwrap();
    e.sim.set_status(&ids[3], "Hold").unwrap();
    // A ticket we did not ask for is never returned.
    let other = e.conn.create_ticket(&request("01JVBX", None)).await.unwrap().id;
    e.sim.reset_requests();
    let got = e.conn.statuses(&ids).await.unwrap();
    assert_eq!(got.len(), 25);
    assert!(got.iter().all(|s| s.ticket_id != other));
    let by = |i: usize| got.iter().find(|s| s.ticket_id == ids[i]).unwrap();
    assert_eq!(by(1).category, Some(MappedStatus::Closed(Outcome::Fulfilled)));
    assert_eq!(by(2).category, Some(MappedStatus::Closed(Outcome::Rejected)));
    assert_eq!((by(3).name.as_str(), by(3).category), ("Hold", Some(MappedStatus::Pending)));
    assert_eq!(by(0).category, Some(MappedStatus::Open));
    // 25 tickets, $top = 10: three pages ($skip 0, 10, 20), one filter.
    assert_eq!(e.sim.requests(LIST), 3);
    let log = e.sim.request_log();
    let queries: Vec<String> = log.iter().filter(|r| r.route == LIST).filter_map(|r| r.query.clone()).collect();
    assert!(queries.iter().any(|q| q.contains("%24skip=20") || q.contains("$skip=20")), "{queries:?}");
    // VSA refuses $top above 100; the connector refuses such a configuration up front.
    let cfg = config("vsa", e.sim.base_url(), SECRET, &opts(), "service_desk_id = \"1001\"\npage_size = 500", "", None);
    assert!(matches!(VsaConnector::new("x", &cfg, e.secrets.clone()), Err(ConnectorError::Config(_))));
}

#[tokio::test]
async fn session_expiration_is_read_in_server_time_and_renewed() {
    // Server 2 h east of UTC, 30 min sessions: the stored expiry is ~30 min ahead in UTC.
    let e = env_with(VsaConfig { offset_minutes: 120, ..VsaConfig::default() }, "", "").await;
    let t = e.conn.create_ticket(&request("01JVSE", None)).await.unwrap();
    let stored = e.secrets.snapshot(SECRET);
    let exp: DateTime<Utc> = stored.get("access_token_expires_at").unwrap().parse().unwrap();
    let ahead = exp - Utc::now();
    assert!(ahead > chrono::Duration::minutes(28) && ahead <= chrono::Duration::minutes(30), "{ahead}");
    // The server ends the session early: one re-authentication, then success.
    e.sim.tokens().expire_access();
    assert_eq!(e.conn.statuses(std::slice::from_ref(&t.id)).await.unwrap().len(), 1);
    assert_eq!(e.sim.requests(AUTH), 2);
    // A session about to lapse (within the renewal margin) is renewed before use.
    let mut s = e.secrets.snapshot(SECRET);
    s.set("access_token_expires_at", (Utc::now() + chrono::Duration::seconds(30)).to_rfc3339());
    e.secrets.put(SECRET, &s).await.unwrap();
    let cfg = config("vsa", e.sim.base_url(), SECRET, &opts(), "service_desk_id = \"1001\"", "", None);
    let other = VsaConnector::new("vsa-2", &cfg, e.secrets.clone()).unwrap();
    other.statuses(std::slice::from_ref(&t.id)).await.unwrap();
    assert_eq!(e.sim.requests(AUTH), 3);
}

#[tokio::test]
async fn token_state_reports_the_personal_access_token_expiry() {
    let e = env().await;
    let st = e.conn.token_state().await.unwrap();
    assert_eq!(st.kind, TokenKind::Personal);
    let recorded = e.secrets.snapshot(SECRET).get("pat_expires_at").unwrap().to_string();
    assert_eq!(st.expires_at.unwrap().format("%Y-%m-%d").to_string(), recorded);
    // Refreshing opens a session (proves the PAT works) and still reports the PAT.
    let after = e.conn.refresh_token().await.unwrap();
    assert_eq!(after, st);
    assert_eq!(e.sim.requests(AUTH), 1);
}

#[tokio::test]
async fn persistent_server_errors_on_create_fail_without_creating_anything() {
    // Every create answers 500 (as VSA does for a name where an id belongs): after the retry
    // budget, each preceded by a correlation search, the create fails and nothing exists.
    let e = env().await;
    e.sim.faults().inject_on(CREATE, Fault::Status { status: 500 }, 4);
    let err = e.conn.create_ticket(&request("01JVS500", None)).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Server(_)), "{err:?}");
    assert!(e.sim.tickets().is_empty());
    assert_eq!(e.sim.requests(CREATE), 4, "first try + 3 retries");
    assert_eq!(e.sim.requests(LIST), 3, "a correlation search before each retry");
}

#[tokio::test]
async fn check_tells_bad_credentials_expired_pat_wrong_desk_and_unreachable_apart() {
    let e = env().await;
    let ok = e.conn.check().await.unwrap();
    assert!(ok.ok, "{ok:?}");
    let c = e.sim.config().clone();
    e.secrets.set(SECRET, &[("username", &c.username), ("pat", "not-the-pat")]);
    assert_check_fails(&e.conn.check().await.unwrap(), "bad credentials");
    // Expired PAT on the server side, with the expiry recorded in the secret.
    let past = Utc::now() - chrono::Duration::days(2);
    let expired = env_with(VsaConfig { pat_expires_at: Some(past), ..VsaConfig::default() }, "", "").await;
    let pat = expired.sim.config().pat.clone();
    let day = past.format("%Y-%m-%d").to_string();
    expired.secrets.set(SECRET, &[("username", &c.username), ("pat", &pat), ("pat_expires_at", &day)]);
    let report = expired.conn.check().await.unwrap();
    assert_check_fails(&report, "expired personal access token");
    assert!(report.steps.iter().any(|s| s.contains(&day)), "{report:?}");
    // Even without a recorded date the server's answer is recognised.
    expired.secrets.set(SECRET, &[("username", &c.username), ("pat", &pat)]);
    assert_check_fails(&expired.conn.check().await.unwrap(), "expired personal access token");
    // Wrong service desk.
    let (sim, secrets) = vsa_sim(VsaConfig::default()).await;
    let cfg = config("vsa", sim.base_url(), SECRET, &opts(), "service_desk_id = \"4242\"", "", None);
    let wrong = VsaConnector::new("vsa-desk", &cfg, secrets.clone()).unwrap();
    assert_check_fails(&wrong.check().await.unwrap(), "service desk 4242 not found");
    // Unreachable.
    let cfg = config("vsa", &dead_url().await, SECRET, &opts(), "service_desk_id = \"1001\"", "", None);
    let dead = VsaConnector::new("vsa-dead", &cfg, secrets).unwrap();
    assert_check_fails(&dead.check().await.unwrap(), "unreachable");
    // The PAT never appears in a report.
    assert!(!format!("{report:?}").contains(&pat));
}

#[tokio::test]
async fn the_marker_lives_in_summary_and_a_lost_create_is_recovered_through_it() {
    // The list model has no Description: the correlation search must use Summary, and a lost
    // create response is recovered by that search instead of creating a second ticket.
    let e = env().await;
    e.sim.faults().inject_on(CREATE, Fault::LoseResponse, 1);
    let t = e.conn.create_ticket(&request("01JVLOST", None)).await.unwrap();
    assert_eq!(e.sim.tickets().len(), 1, "recovered, not created twice");
    let sim = e.sim.find_ticket(&t.id).unwrap();
    assert!(sim.title.ends_with(" [tb-01JVLOST]"), "{}", sim.title);
    let log = e.sim.request_log();
    let searches: Vec<String> = log.iter().filter(|r| r.route == LIST).filter_map(|r| r.query.clone()).collect();
    assert!(!searches.is_empty() && searches.iter().all(|q| q.contains("Summary")), "{searches:?}");
    // A summary with a longer key is not this key's ticket.
    e.conn.create_ticket(&request("01JVLOSTX", None)).await.unwrap();
    assert_eq!(e.conn.find_by_correlation("01JVLOST").await.unwrap().map(|r| r.id), Some(t.id));
}

#[tokio::test]
async fn status_ids_are_decimal_literals_and_a_refused_filter_falls_back_to_reads_by_path() {
    const GET_ONE: &str = "GET /api/v1.0/automation/servicedesktickets/{ticketId}";
    let e = env().await;
    let a = e.conn.create_ticket(&request("01JVF1", None)).await.unwrap().id;
    let b = e.conn.create_ticket(&request("01JVF2", None)).await.unwrap().id;
    e.sim.close(&b, None).unwrap();
    e.sim.reset_requests();
    let ids = vec![a.clone(), b.clone()];
    assert_eq!(e.conn.statuses(&ids).await.unwrap().len(), 2);
    let log = e.sim.request_log();
    let q = log.iter().find(|r| r.route == LIST).and_then(|r| r.query.clone()).unwrap();
    assert!(q.contains(&format!("{a}M")), "ids beyond Int32 carry the decimal suffix: {q}");
    // Should a server still refuse the filter (HTTP 400), tickets are read one by one by path,
    // and the filter is not tried again.
    e.sim.reset_requests();
    e.sim.faults().inject_on(LIST, Fault::Status { status: 400 }, 1);
    let got = e.conn.statuses(&ids).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got.iter().find(|s| s.ticket_id == b).unwrap().category, Some(MappedStatus::Closed(Outcome::Fulfilled)));
    assert_eq!((e.sim.requests(LIST), e.sim.requests(GET_ONE)), (1, 2));
    e.conn.statuses(&ids).await.unwrap();
    assert_eq!((e.sim.requests(LIST), e.sim.requests(GET_ONE)), (1, 4));
}
