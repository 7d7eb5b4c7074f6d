//! Harness factories and helpers for the PSA connectors (BMS, VSA, NinjaOne, OTRS).

use bridge::config::{CatchAll, ConnectionConfig};
use bridge::connectors::{CheckReport, TicketRequest, TokenKind};
use bridge::domain::{MappedStatus, Outcome, TicketDefaults};
use sandbox::bms::{Bms, BmsConfig};
use sandbox::ninjaone::{NinjaConfig, NinjaOne};
use sandbox::otrs::{Otrs, OtrsConfig};
use sandbox::vsa::{Vsa, VsaConfig};

use super::{Harness, MemSecrets, Opts, conn_config};

const FULFILLED: Option<MappedStatus> = Some(MappedStatus::Closed(Outcome::Fulfilled));
const REJECTED: Option<MappedStatus> = Some(MappedStatus::Closed(Outcome::Rejected));

pub const BMS_SECRET: &str = "tb/bms";
pub const VSA_SECRET: &str = "tb/vsa";
pub const NINJA_SECRET: &str = "tb/ninjaone";
pub const OTRS_SECRET: &str = "tb/otrs";

/// A connection config with ticket defaults (TOML of a `TicketDefaults` table) and an optional
/// catch-all customer.
pub fn config(
    kind: &str,
    base_url: &str,
    secret: &str,
    opts: &Opts,
    options: &str,
    defaults: &str,
    catch_all: Option<&str>,
) -> ConnectionConfig {
    let mut cfg = conn_config(kind, base_url, secret, opts, options);
    cfg.defaults =
        toml::from_str::<TicketDefaults>(defaults).unwrap_or_else(|e| panic!("bad defaults: {e}\n{defaults}"));
    cfg.catch_all = catch_all.map(|c| CatchAll { customer_id: c.to_string(), contact_id: None });
    cfg
}

/// Ticket defaults the BMS simulator accepts.
pub const BMS_DEFAULTS: &str = "ticket_type = \"1\"\nstatus = \"New\"\npriority = \"High\"\nqueue = \"Security\"\n[issue]\nissue_type = \"SaaS Alerts\"\nsub_issue_type = \"Data Leakage\"\n";

/// A BMS simulator with accounts 100 (Acme Corp) and 200 (Globex) and contact 501 (alice@acme.io).
pub async fn bms_sim(config: BmsConfig) -> (Bms, std::sync::Arc<MemSecrets>) {
    let sim = Bms::spawn(config).await.unwrap();
    sim.add_customer("100", "Acme Corp");
    sim.add_customer("200", "Globex");
    sim.add_contact("501", Some("100"), "alice@acme.io", "Alice");
    let c = sim.config().clone();
    let secrets =
        MemSecrets::with(BMS_SECRET, &[("username", &c.username), ("password", &c.password), ("tenant", &c.tenant)]);
    (sim, secrets)
}

pub async fn bms_harness(opts: Opts) -> Harness {
    let (sim, secrets) = bms_sim(BmsConfig::default()).await;
    let cfg = config("bms", sim.base_url(), BMS_SECRET, &opts, "", BMS_DEFAULTS, Some("100"));
    Harness {
        connector: bridge::connectors::build("bms-test", &cfg, secrets.clone()).unwrap(),
        sim: sim.sim().clone(),
        secrets,
        secret_name: BMS_SECRET.into(),
        create_route: "POST /v2/servicedesk/tickets",
        status_route: "POST /v2/servicedesk/tickets/search",
        status_page_size: Some(100),
        reauth: true,
        token_kind: TokenKind::Renewable,
        done_status: "Completed",
        done_category: FULFILLED,
        rejected_status: "Cancelled",
        rejected_category: REJECTED,
        guard: Box::new(sim),
    }
}

/// A VSA simulator with organizations and the secret for its PAT (`pat_expires_at` in 90 days).
pub async fn vsa_sim(config: VsaConfig) -> (Vsa, std::sync::Arc<MemSecrets>) {
    let sim = Vsa::spawn(config).await.unwrap();
    sim.add_customer("org-1", "Acme Corp");
    let c = sim.config().clone();
    let expires = (chrono::Utc::now() + chrono::Duration::days(90)).format("%Y-%m-%d").to_string();
    let secrets =
        MemSecrets::with(VSA_SECRET, &[("username", &c.username), ("pat", &c.pat), ("pat_expires_at", &expires)]);
    (sim, secrets)
}

pub async fn vsa_harness(opts: Opts) -> Harness {
    let (sim, secrets) = vsa_sim(VsaConfig::default()).await;
    let cfg =
        config("vsa", sim.base_url(), VSA_SECRET, &opts, "service_desk_id = \"1001\"", "priority = \"Medium\"", None);
    Harness {
        connector: bridge::connectors::build("vsa-test", &cfg, secrets.clone()).unwrap(),
        sim: sim.sim().clone(),
        secrets,
        secret_name: VSA_SECRET.into(),
        create_route: "POST /api/v1.0/automation/servicedesktickets/{deskId}/ticket",
        status_route: "GET /api/v1.0/automation/servicedesks/{deskId}/tickets",
        status_page_size: Some(100),
        reauth: true,
        token_kind: TokenKind::Personal,
        done_status: "Closed",
        done_category: FULFILLED,
        rejected_status: "Cancelled",
        rejected_category: REJECTED,
        guard: Box::new(sim),
    }
}

/// A NinjaOne simulator with organization 7 and a secret holding a freshly granted refresh token.
pub async fn ninja_sim(config: NinjaConfig) -> (NinjaOne, std::sync::Arc<MemSecrets>) {
    let sim = NinjaOne::spawn(config).await.unwrap();
    sim.add_customer("7", "Acme Corp");
    sim.add_customer("8", "Globex");
    let c = sim.config().clone();
    let refresh = sim.grant_refresh_token();
    let secrets = MemSecrets::with(
        NINJA_SECRET,
        &[("client_id", &c.client_id), ("client_secret", &c.client_secret), ("refresh_token", &refresh)],
    );
    (sim, secrets)
}

pub async fn ninjaone_harness(opts: Opts) -> Harness {
    let (sim, secrets) = ninja_sim(NinjaConfig::default()).await;
    let cfg = config("ninjaone", sim.base_url(), NINJA_SECRET, &opts, "", "", Some("7"));
    Harness {
        connector: bridge::connectors::build("ninja-test", &cfg, secrets.clone()).unwrap(),
        sim: sim.sim().clone(),
        secrets,
        secret_name: NINJA_SECRET.into(),
        create_route: "POST /v2/ticketing/ticket",
        status_route: "POST /v2/ticketing/trigger/board/{boardId}/run",
        status_page_size: Some(100),
        reauth: true,
        token_kind: TokenKind::Renewable,
        done_status: "Resolved",
        done_category: FULFILLED,
        // NinjaOne has no "rejected" system status: CLOSED rolls up as done.
        rejected_status: "Closed",
        rejected_category: FULFILLED,
        guard: Box::new(sim),
    }
}

/// An OTRS simulator and a secret with the agent's login.
pub async fn otrs_sim(config: OtrsConfig) -> (Otrs, std::sync::Arc<MemSecrets>) {
    let sim = Otrs::spawn(config).await.unwrap();
    let c = sim.config().clone();
    let secrets = MemSecrets::with(OTRS_SECRET, &[("username", &c.user), ("password", &c.password)]);
    (sim, secrets)
}

pub async fn otrs_harness(opts: Opts) -> Harness {
    let (sim, secrets) = otrs_sim(OtrsConfig::default()).await;
    let cfg = config("otrs", sim.base_url(), OTRS_SECRET, &opts, "", "queue = \"Service Desk\"", None);
    let create: &'static str = "POST /otrs/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST/Ticket";
    let status: &'static str =
        "GET /otrs/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST/Ticket/{TicketID}";
    Harness {
        connector: bridge::connectors::build("otrs-test", &cfg, secrets.clone()).unwrap(),
        sim: sim.sim().clone(),
        secrets,
        secret_name: OTRS_SECRET.into(),
        create_route: create,
        status_route: status,
        // One TicketGet per batch normally (the lifecycle test checks that). But one unknown id
        // fails a whole TicketGet, so a batch with one costs a second TicketGet (after a
        // TicketSearch for the readable ids): the per-ticket bound is the honest worst case.
        status_page_size: Some(1),
        reauth: true,
        token_kind: TokenKind::Renewable,
        done_status: "closed successful",
        done_category: FULFILLED,
        rejected_status: "closed unsuccessful",
        rejected_category: REJECTED,
        guard: Box::new(sim),
    }
}

/// A base URL nothing listens on.
pub async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A ticket request with the given correlation key.
pub fn request(key: &str, customer: Option<&str>) -> TicketRequest {
    TicketRequest {
        correlation_key: key.to_string(),
        title: format!("Create account: alice in App ({key})"),
        body: format!("Action: create_account\nUser: alice@acme.io\nTicket Bridge task: {key}"),
        customer_id: customer.map(str::to_string),
        contact_email: Some("alice@acme.io".into()),
        ..Default::default()
    }
}

/// Asserts the check failed and its last step mentions `needle` (case-insensitive).
pub fn assert_check_fails(report: &CheckReport, needle: &str) {
    assert!(!report.ok, "check should fail: {report:?}");
    let last = report.steps.last().cloned().unwrap_or_default().to_lowercase();
    assert!(last.contains(&needle.to_lowercase()), "expected '{needle}' in the diagnosis: {report:?}");
}
