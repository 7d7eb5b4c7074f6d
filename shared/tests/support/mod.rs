//! Test support for connector tests: an in-memory secrets store (tests only) and one factory per
//! connector that starts its simulator and builds the connector against it.
#![allow(dead_code)]

pub mod psa;

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bridge::config::ConnectionConfig;
use bridge::connectors::{Connector, TokenKind};
use bridge::domain::{MappedStatus, Outcome};
use bridge::secrets::{Secret, Secrets, SecretsError};
use sandbox::Sim;
use sandbox::rt_peer::{self, RtPeer, TargetState};

/// In-memory [`Secrets`] for connector tests only (the real backends are the file and AWS ones).
#[derive(Default)]
pub struct MemSecrets {
    map: Mutex<HashMap<String, Secret>>,
    puts: AtomicUsize,
}

impl MemSecrets {
    pub fn with(name: &str, fields: &[(&str, &str)]) -> Arc<Self> {
        let m = Self::default();
        m.set(name, fields);
        Arc::new(m)
    }

    pub fn set(&self, name: &str, fields: &[(&str, &str)]) {
        let s: Secret = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.map.lock().unwrap().insert(name.to_string(), s);
    }

    pub fn snapshot(&self, name: &str) -> Secret {
        self.map.lock().unwrap().get(name).cloned().unwrap_or_default()
    }

    pub fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Secrets for MemSecrets {
    async fn get(&self, name: &str) -> Result<Secret, SecretsError> {
        self.map.lock().unwrap().get(name).cloned().ok_or_else(|| SecretsError::NotFound(name.to_string()))
    }
    async fn put(&self, name: &str, value: &Secret) -> Result<(), SecretsError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.map.lock().unwrap().insert(name.to_string(), value.clone());
        Ok(())
    }
}

/// HTTP and rate settings a test wants; the default is fast (tiny backoff, short timeouts).
#[derive(Debug, Clone)]
pub struct Opts {
    pub rate_limit_per_hour: u32,
    pub rate_burst: u32,
    pub max_rate_wait_ms: u64,
    pub timeout_ms: u64,
    pub max_retries: u32,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            rate_limit_per_hour: 10_000_000,
            rate_burst: 10_000,
            max_rate_wait_ms: 10_000,
            timeout_ms: 1_000,
            max_retries: 3,
        }
    }
}

/// A connection config for `kind` at `base_url`; `options` is TOML placed under `[options]`.
pub fn conn_config(kind: &str, base_url: &str, secret: &str, opts: &Opts, options: &str) -> ConnectionConfig {
    let text = format!(
        "kind = \"{kind}\"\nbase_url = \"{base_url}\"\nsecret = \"{secret}\"\nrate_limit_per_hour = {}\n\
         [options]\n{options}\n\
         [options.http]\nconnect_timeout_ms = 1000\ntimeout_ms = {}\nmax_retries = {}\nbackoff_base_ms = 5\n\
         backoff_max_ms = 40\nmax_retry_after_secs = 5\nrate_burst = {}\nmax_rate_wait_ms = {}\n",
        opts.rate_limit_per_hour, opts.timeout_ms, opts.max_retries, opts.rate_burst, opts.max_rate_wait_ms
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("bad test config: {e}\n{text}"))
}

/// A connector wired to its simulator, plus what the shared suite needs to know about both.
pub struct Harness {
    pub connector: Arc<dyn Connector>,
    pub sim: Sim,
    pub secrets: Arc<MemSecrets>,
    pub secret_name: String,
    /// Route (`"METHOD /template"`) of ticket creation.
    pub create_route: &'static str,
    /// Route of status reads (batch or single).
    pub status_route: &'static str,
    /// Tickets per status page the connector asks for (`None`: one request per batch).
    pub status_page_size: Option<usize>,
    /// Whether a revoked access token is recovered by logging in again.
    pub reauth: bool,
    pub token_kind: TokenKind,
    /// A status a technician sets for "done", and the category the connector should report.
    pub done_status: &'static str,
    pub done_category: Option<MappedStatus>,
    /// A status meaning "rejected / cancelled", and its category.
    pub rejected_status: &'static str,
    pub rejected_category: Option<MappedStatus>,
    /// Keeps the simulator running.
    pub guard: Box<dyn Any + Send + Sync>,
}

impl Harness {
    /// Where the test reads and changes tickets as a technician: the simulator, or the real RT
    /// behind the proxy when the harness runs against one (`cargo xtask peer rt`).
    pub fn state(&self) -> TargetState<'_> {
        match self.guard.downcast_ref::<RtPeer>() {
            Some(peer) => peer.state(),
            None => TargetState::Sim(&self.sim),
        }
    }
}

const FULFILLED: Option<MappedStatus> = Some(MappedStatus::Closed(Outcome::Fulfilled));
const REJECTED: Option<MappedStatus> = Some(MappedStatus::Closed(Outcome::Rejected));

/// The built-in sandbox desk.
pub async fn sandbox_harness(opts: Opts) -> Harness {
    let desk = sandbox::desk::Desk::spawn(sandbox::desk::DeskConfig::default()).await.unwrap();
    let secret = "tb/sandbox";
    let secrets = MemSecrets::with(secret, &[("api_key", desk.api_key())]);
    let cfg = conn_config("sandbox", desk.base_url(), secret, &opts, "");
    let connector = bridge::connectors::build("sbx", &cfg, secrets.clone()).unwrap();
    Harness {
        connector,
        sim: desk.sim().clone(),
        secrets,
        secret_name: secret.into(),
        create_route: "POST /api/v1/tickets",
        status_route: "GET /api/v1/tickets",
        status_page_size: Some(25),
        reauth: true,
        token_kind: TokenKind::Renewable,
        done_status: "Resolved",
        done_category: FULFILLED,
        rejected_status: "Rejected",
        rejected_category: REJECTED,
        guard: Box::new(desk),
    }
}

/// Request Tracker 5 (token auth, correlation key in a custom field, pages of 20): the simulator,
/// or with `TB_RT_URL` and `TB_RT_TOKEN` set a fresh queue in that real RT (`cargo xtask peer rt`).
pub async fn rt_harness(opts: Opts) -> Harness {
    let secret = "tb/rt";
    let (base_url, token, queue, correlation_field, sim, guard): (_, _, _, _, _, Box<dyn Any + Send + Sync>) =
        match rt_peer::from_env() {
            Some((url, token)) => {
                let peer = RtPeer::spawn(&url, &token).await.unwrap_or_else(|e| panic!("real RT at {url}: {e}"));
                let (base, token, queue) =
                    (peer.base_url().to_string(), peer.token().to_string(), peer.queue().to_string());
                (base, token, queue, rt_peer::CORRELATION_CF, peer.sim().clone(), Box::new(peer))
            }
            None => {
                let rt = sandbox::rt::RtSim::spawn(sandbox::rt::RtConfig::default()).await.unwrap();
                let (base, token) = (rt.base_url().to_string(), rt.config().tokens[0].clone());
                (base, token, "General".to_string(), "TicketBridgeKey", rt.sim().clone(), Box::new(rt))
            }
        };
    let secrets = MemSecrets::with(secret, &[("token", &token)]);
    let options = format!("queue = \"{queue}\"\ncorrelation_field = \"{correlation_field}\"\nper_page = 20");
    let cfg = conn_config("rt", &base_url, secret, &opts, &options);
    let connector = bridge::connectors::build("rt", &cfg, secrets.clone()).unwrap();
    Harness {
        connector,
        sim,
        secrets,
        secret_name: secret.into(),
        create_route: "POST /REST/2.0/ticket",
        status_route: "GET /REST/2.0/tickets",
        status_page_size: Some(20),
        reauth: false,
        token_kind: TokenKind::None,
        done_status: "resolved",
        done_category: FULFILLED,
        rejected_status: "rejected",
        rejected_category: REJECTED,
        guard,
    }
}

/// Options of the generic connector for the generic simulator (OAuth client credentials).
pub const GENERIC_OPTIONS: &str = r#"
ticket_id_pointer = "/issue/id"
ticket_number_pointer = "/issue/key"
status_pointer = "/fields/status/name"
items_pointer = "/data/issues"
item_id_pointer = "/id"
item_number_pointer = "/key"
error_pointer = "/errors"
batch_size = 50
ticket_url = "{{ base_url }}/browse/{{ number }}"
[options.create]
url = "/api/v2/issues"
body = '''{"fields": {"summary": {{ title }}, "description": {{ body }}, "reporter": {{ contact_email }},
  "ext_ref": {{ correlation_key }}, "extra": {{ fields }}}}'''
headers = { "X-Request-Source" = "ticket-bridge/{{ connection }}" }
[options.status]
url = "/api/v2/issues?ids={{ ids | join(',') }}"
[options.note]
url = "/api/v2/issues/{{ ticket.id }}/comments"
body = '{"body": {{ body }}, "internal": true}'
[options.find]
url = "/api/v2/issues?ext_ref={{ correlation_key }}"
[options.check]
url = "/api/v2/myself"
[options.close]
url = "/api/v2/issues/{{ ticket.id }}/transitions"
body = """{"status": "Won't Do", "comment": {{ body }}}"""
[options.reopen]
url = "/api/v2/issues/{{ ticket.id }}/transitions"
body = '{"status": "Open", "comment": {{ body }}}'
[options.auth]
type = "oauth2_client_credentials"
token_url = "/oauth/token"
scope = "issues"
"#;

/// The generic REST connector against the generic JSON desk.
pub async fn generic_harness(opts: Opts) -> Harness {
    let g = sandbox::generic::GenericSim::spawn(sandbox::generic::GenericConfig::default()).await.unwrap();
    let secret = "tb/generic";
    let secrets = MemSecrets::with(secret, &[("client_id", "tb-client"), ("client_secret", "tb-client-secret")]);
    let cfg = conn_config("generic", g.base_url(), secret, &opts, GENERIC_OPTIONS);
    let connector = bridge::connectors::build("generic", &cfg, secrets.clone()).unwrap();
    Harness {
        connector,
        sim: g.sim().clone(),
        secrets,
        secret_name: secret.into(),
        create_route: "POST /api/v2/issues",
        status_route: "GET /api/v2/issues",
        status_page_size: None,
        reauth: true,
        token_kind: TokenKind::Renewable,
        done_status: "Done",
        done_category: None,
        rejected_status: "Won't Do",
        rejected_category: None,
        guard: Box::new(g),
    }
}
