//! OTRS / Znuny connector against the GenericTicketConnectorREST simulator.

mod support;

use std::sync::Arc;

use bridge::connectors::otrs::OtrsConnector;
use bridge::connectors::{Connector, ConnectorError, NoteRequest};
use bridge::domain::{MappedStatus, Outcome};
use sandbox::otrs::{Otrs, OtrsConfig};
use sandbox::{Fault, TokenKind as SimToken};
use support::psa::{OTRS_SECRET as SECRET, assert_check_fails, config, dead_url, otrs_sim, request};
use support::{MemSecrets, Opts};

struct Env {
    sim: Otrs,
    secrets: Arc<MemSecrets>,
    conn: OtrsConnector,
}

fn opts() -> Opts {
    Opts { timeout_ms: 400, ..Opts::default() }
}

async fn env_with(sim_config: OtrsConfig, options: &str) -> Env {
    let (sim, secrets) = otrs_sim(sim_config).await;
    let cfg = config(
        "otrs",
        sim.base_url(),
        SECRET,
        &opts(),
        options,
        "queue = \"Service Desk\"\npriority = \"4 high\"",
        None,
    );
    let conn = OtrsConnector::new("otrs-test", &cfg, secrets.clone()).unwrap();
    Env { sim, secrets, conn }
}

async fn env() -> Env {
    env_with(OtrsConfig::default(), "").await
}

fn session(e: &Env) -> String {
    e.secrets.snapshot(SECRET).get("access_token").unwrap().to_string()
}

#[tokio::test]
async fn create_writes_an_internal_article_and_notes_are_article_only_updates() {
    let e = env().await;
    let mut req = request("01JOT1", Some("ACME"));
    req.contact_email = Some("alice@acme.io".into());
    let t = e.conn.create_ticket(&req).await.unwrap();
    let sim = e.sim.find_ticket(&t.id).unwrap();
    assert_eq!(t.number.as_deref(), Some(sim.number.as_str()));
    assert_eq!(
        (sim.queue.as_deref(), sim.priority.as_deref(), sim.status.as_str()),
        (Some("Service Desk"), Some("4 high"), "new")
    );
    assert_eq!(sim.requester.as_deref(), Some("alice@acme.io"));
    assert_eq!(sim.customer_id.as_deref(), Some("ACME"));
    assert_eq!(sim.request["Article"]["CommunicationChannel"], "Internal");
    assert_eq!(sim.request["Article"]["IsVisibleForCustomer"], 0);
    // The session travels in the body of POST/PATCH.
    assert_eq!(sim.request["SessionID"], session(&e));
    let note = NoteRequest { correlation_key: "01JOTN".into(), title: "Another alert".into(), body: "again".into() };
    e.conn.add_note(&t, &note).await.unwrap();
    let sim = e.sim.find_ticket(&t.id).unwrap();
    assert_eq!(sim.notes.len(), 1);
    assert_eq!(sim.notes[0].subject.as_deref(), Some("Another alert"));
    assert!(sim.notes[0].internal);
    assert_eq!(sim.status, "new", "an article-only update does not touch the state");
    // Correlation: exact key in the first article only.
    assert_eq!(e.conn.find_by_correlation("01JOT1").await.unwrap().map(|r| r.id), Some(t.id.clone()));
    assert_eq!(e.conn.find_by_correlation("01JOT").await.unwrap(), None);
    assert_eq!(e.conn.find_by_correlation("01JOTN").await.unwrap(), None, "a note's key is not the ticket's");
    // Without any customer user OTRS cannot take the ticket: a configuration error, nothing sent.
    let mut anon = request("01JOT2", None);
    anon.contact_email = None;
    let before = e.sim.request_count();
    let err = e.conn.create_ticket(&anon).await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Config(m) if m.contains("customer_user")), "{err:?}");
    assert_eq!(e.sim.request_count(), before);
}

#[tokio::test]
async fn statuses_come_from_one_ticket_get_with_state_type_categories() {
    let e = env().await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(e.conn.create_ticket(&request(&format!("01JOS{i}"), None)).await.unwrap().id);
    }
    for (i, state) in [
        (1, "closed successful"),
        (2, "closed unsuccessful"),
        (3, "pending reminder"),
        (4, "merged"),
        (5, "removed"),
        (6, "open"),
    ] {
        e.sim.set_status(&ids[i], state).unwrap();
    }
    let get = e.sim.route("GET", "/Ticket/{TicketID}");
    e.sim.reset_requests();
    let got = e.conn.statuses(&ids).await.unwrap();
    assert_eq!(e.sim.requests(&get), 1, "one TicketGet with a comma list");
    let cat = |i: usize| got.iter().find(|s| s.ticket_id == ids[i]).unwrap().category;
    use MappedStatus::*;
    assert_eq!(
        (0..8).map(cat).collect::<Vec<_>>(),
        vec![
            Some(Open),
            Some(Closed(Outcome::Fulfilled)),
            Some(Closed(Outcome::Rejected)),
            Some(Pending),
            Some(Closed(Outcome::Rejected)),
            Some(Closed(Outcome::Rejected)),
            Some(Open),
            Some(Open)
        ]
    );
    // One unknown id fails a whole TicketGet (AccessDenied): one TicketSearch restricted to the
    // batch's ids tells which are readable, and one more TicketGet reads them.
    let mut asked = ids.clone();
    asked.insert(3, "424242".into());
    e.sim.reset_requests();
    let got = e.conn.statuses(&asked).await.unwrap();
    assert_eq!(got.len(), 8);
    assert_eq!(e.sim.requests(&get), 2, "{:?}", e.sim.request_counts());
    assert_eq!(e.sim.requests(&e.sim.route("POST", "/TicketSearch")), 1);
}

#[tokio::test]
async fn auth_fail_opens_one_new_session_and_the_session_id_is_redacted() {
    let e = env().await;
    let t = e.conn.create_ticket(&request("01JOA", None)).await.unwrap();
    let first = session(&e);
    e.sim.revoke_tokens();
    assert_eq!(e.conn.statuses(std::slice::from_ref(&t.id)).await.unwrap().len(), 1);
    assert_eq!(e.sim.tokens().issued(SimToken::Access), 2, "exactly one new session");
    let second = session(&e);
    assert_ne!(first, second, "the new session is stored for other workers");
    // Bad credentials: AuthFail again after the new session attempt fails; no loop.
    e.sim.revoke_tokens();
    e.secrets.set(SECRET, &[("username", "bridge-agent"), ("password", "wrong")]);
    e.sim.reset_requests();
    let err = e.conn.statuses(std::slice::from_ref(&t.id)).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unauthorized(_)), "{err:?}");
    assert_eq!(e.sim.request_count(), 2, "one TicketGet, one SessionCreate");
    // GET requests carry the SessionID in the query; errors never show it.
    e.secrets.set(SECRET, &[("username", "bridge-agent"), ("password", "agent-password-1")]);
    e.conn.statuses(std::slice::from_ref(&t.id)).await.unwrap();
    let sid = session(&e);
    e.sim.faults().inject_on(&e.sim.route("GET", "/Ticket/{TicketID}"), Fault::Status { status: 500 }, 10);
    let err = e.conn.statuses(std::slice::from_ref(&t.id)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("SessionID=[REDACTED]"), "{text}");
    assert!(!text.contains(&sid), "{text}");
}

#[tokio::test]
async fn operation_errors_on_http_200_are_errors() {
    let e = env().await;
    let t = e.conn.create_ticket(&request("01JOE", None)).await.unwrap();
    e.sim.faults().inject_on(&e.sim.route("GET", "/Ticket/{TicketID}"), Fault::ErrorBody, 1);
    let err = e.conn.statuses(std::slice::from_ref(&t.id)).await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Server(m) if m.contains("TicketGet.DatabaseError")), "{err:?}");
    // Invalid ticket data is the target refusing it: not retried, not created.
    let mut req = request("01JOE2", None);
    req.queue = Some("No Such Queue".into());
    let err = e.conn.create_ticket(&req).await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Rejected(m) if m.contains("InvalidParameter")), "{err:?}");
    assert_eq!(e.sim.tickets().len(), 1);
}

#[tokio::test]
async fn search_route_is_configurable_but_must_be_post() {
    let e = env().await;
    // Znuny's REST transport reads no body on GET, and the dynamic-field search is a JSON object.
    let cfg =
        config("otrs", e.sim.base_url(), SECRET, &opts(), "[options.routes]\nticket_search_method = \"GET\"", "", None);
    let err = OtrsConnector::new("otrs-get", &cfg, e.secrets.clone()).err().unwrap();
    assert!(
        matches!(&err, ConnectorError::Config(m) if m.contains("ticket_search_method") && m.contains("POST")),
        "{err}"
    );
    // A search route the web service does not have: check names the route to add.
    let cfg =
        config("otrs", e.sim.base_url(), SECRET, &opts(), "[options.routes]\nticket_search = \"/Search\"", "", None);
    let missing = OtrsConnector::new("otrs-route", &cfg, e.secrets.clone()).unwrap();
    assert_check_fails(&missing.check().await.unwrap(), "post route for ticketsearch");
    let t = e.conn.create_ticket(&request("01JOPOST", None)).await.unwrap();
    e.sim.reset_requests();
    assert_eq!(e.conn.find_by_correlation("01JOPOST").await.unwrap().map(|r| r.id), Some(t.id));
    assert_eq!(e.sim.requests(&e.sim.route("POST", "/TicketSearch")), 1);
    assert_eq!(e.sim.requests(&e.sim.route("GET", "/Ticket")), 0);
    assert!(e.conn.check().await.unwrap().ok);
}

#[tokio::test]
async fn correlation_is_a_dynamic_field_found_at_once_although_the_article_index_lags() {
    // The simulator's article index lags a minute (as Znuny's daemon task does): a body search
    // right after a lost create would find nothing; the dynamic field is exact and immediate.
    let e = env().await;
    e.sim.faults().inject_on(&e.sim.route("POST", "/Ticket"), Fault::LoseResponse, 1);
    let t = e.conn.create_ticket(&request("01JOLOST", None)).await.unwrap();
    assert_eq!(e.sim.tickets().len(), 1, "recovered through the dynamic field, not created twice");
    let sim = e.sim.find_ticket(&t.id).unwrap();
    assert_eq!(sim.request["DynamicField"], serde_json::json!([{"Name": "TicketBridgeRef", "Value": "01JOLOST"}]));
    assert_eq!(e.sim.requests(&e.sim.route("POST", "/TicketSearch")), 1, "one search, on the field");
    // A custom field name is used everywhere.
    let sim_config = OtrsConfig { dynamic_fields: vec!["BridgeKey".into()], ..OtrsConfig::default() };
    let custom = env_with(sim_config, "dynamic_field = \"BridgeKey\"").await;
    let t = custom.conn.create_ticket(&request("01JOCUST", None)).await.unwrap();
    assert_eq!(custom.conn.find_by_correlation("01JOCUST").await.unwrap().map(|r| r.id), Some(t.id));
    assert!(custom.conn.check().await.unwrap().ok);
    let cfg = config("otrs", e.sim.base_url(), SECRET, &opts(), "dynamic_field = \"Bridge_Key\"", "", None);
    let err = OtrsConnector::new("otrs-df", &cfg, e.secrets.clone()).err().unwrap();
    assert!(err.to_string().contains("options.dynamic_field"), "{err}");
}

#[tokio::test]
async fn a_missing_dynamic_field_is_named_by_check_and_by_create_and_nothing_is_created() {
    // The OTRS instance only has a field called "Other".
    let sim_config = OtrsConfig { dynamic_fields: vec!["Other".into()], ..OtrsConfig::default() };
    let e = env_with(sim_config, "").await;
    // With no ticket visible the field cannot be proven missing: check passes with a note.
    let report = e.conn.check().await.unwrap();
    assert!(report.ok && report.steps.iter().any(|s| s.contains("cannot be verified")), "{report:?}");
    // TicketCreate refuses the unknown field before creating anything, and the error names it.
    let err = e.conn.create_ticket(&request("01JOMISS", None)).await.unwrap_err();
    assert!(
        matches!(&err, ConnectorError::Config(m) if m.contains("'TicketBridgeRef'") && m.contains("Dynamic Fields")),
        "{err:?}"
    );
    assert!(e.sim.tickets().is_empty());
    // Once a ticket exists, check proves the field missing (TicketSearch ignores unknown fields,
    // so a filter on a value nobody has still matches) and names it.
    let cfg = config("otrs", e.sim.base_url(), SECRET, &opts(), "dynamic_field = \"Other\"", "queue = \"Raw\"", None);
    let other = OtrsConnector::new("otrs-other", &cfg, e.secrets.clone()).unwrap();
    other.create_ticket(&request("01JOOTHER", None)).await.unwrap();
    let report = e.conn.check().await.unwrap();
    assert_check_fails(&report, "dynamic field 'ticketbridgeref'");
    // And a correlation search never takes an unrelated ticket for ours.
    let err = e.conn.find_by_correlation("01JOOTHER").await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Config(m) if m.contains("TicketBridgeRef")), "{err:?}");
}

#[tokio::test]
async fn session_is_reused_across_connectors_through_the_secret() {
    let e = env().await;
    e.conn.create_ticket(&request("01JOR", None)).await.unwrap();
    let cfg = config("otrs", e.sim.base_url(), SECRET, &opts(), "", "queue = \"Service Desk\"", None);
    let other = OtrsConnector::new("otrs-2", &cfg, e.secrets.clone()).unwrap();
    other.find_by_correlation("01JOR").await.unwrap().unwrap();
    assert_eq!(e.sim.tokens().issued(SimToken::Access), 1, "the second worker used the stored session");
}

#[tokio::test]
async fn check_tells_bad_credentials_wrong_webservice_and_unreachable_apart() {
    let e = env().await;
    let ok = e.conn.check().await.unwrap();
    assert!(ok.ok, "{ok:?}");
    e.secrets.set(SECRET, &[("username", "bridge-agent"), ("password", "nope")]);
    assert_check_fails(&e.conn.check().await.unwrap(), "bad credentials");
    e.secrets.set(SECRET, &[("username", "bridge-agent"), ("password", "agent-password-1")]);
    let cfg = config("otrs", e.sim.base_url(), SECRET, &opts(), "webservice = \"TicketBridge\"", "", None);
    let wrong = OtrsConnector::new("otrs-ws", &cfg, e.secrets.clone()).unwrap();
    assert_check_fails(&wrong.check().await.unwrap(), "web service not found");
    // A base URL already pointing at the web service is used as given.
    let full = format!("{}{}", e.sim.base_url(), e.sim.config().service_path());
    let cfg = config("otrs", &full, SECRET, &opts(), "webservice = \"Ignored\"", "", None);
    assert!(OtrsConnector::new("otrs-full", &cfg, e.secrets.clone()).unwrap().check().await.unwrap().ok);
    let cfg = config("otrs", &dead_url().await, SECRET, &opts(), "", "", None);
    let dead = OtrsConnector::new("otrs-dead", &cfg, e.secrets.clone()).unwrap();
    assert_check_fails(&dead.check().await.unwrap(), "unreachable");
    // Unknown options are refused, naming the key.
    let cfg = config("otrs", e.sim.base_url(), SECRET, &opts(), "webservise = \"x\"", "", None);
    let err = OtrsConnector::new("otrs-typo", &cfg, e.secrets.clone()).err().unwrap();
    assert!(err.to_string().contains("webservise"), "{err}");
}
