//! Every simulated target, spawned with matching credentials and connection settings, as plain
//! data (no dependency on the bridge crate): end-to-end tests and benchmarks turn a
//! [`SpawnedTarget`] into a connection configuration and a secret.

use std::any::Any;

use crate::Sim;
use crate::bms::{Bms, BmsConfig};
use crate::desk::{Desk, DeskConfig};
use crate::generic::{GenericConfig, GenericSim};
use crate::ninjaone::{NinjaConfig, NinjaOne};
use crate::otrs::{Otrs, OtrsConfig};
use crate::rt::{RtConfig, RtSim};
use crate::vsa::{Vsa, VsaConfig};

/// The targets Ticket Bridge speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Sandbox,
    Rt,
    Generic,
    Bms,
    Vsa,
    Ninjaone,
    Otrs,
}

impl Target {
    pub const ALL: [Target; 7] =
        [Self::Sandbox, Self::Rt, Self::Generic, Self::Bms, Self::Vsa, Self::Ninjaone, Self::Otrs];

    /// The simulator route (as faults match it) that creates a ticket.
    pub const fn create_route(self) -> &'static str {
        match self {
            Self::Sandbox => "POST /api/v1/tickets",
            Self::Rt => "POST /REST/2.0/ticket",
            Self::Generic => "POST /api/v2/issues",
            Self::Bms => "POST /v2/servicedesk/tickets",
            Self::Vsa => "POST /api/v1.0/automation/servicedesktickets/{deskId}/ticket",
            Self::Ninjaone => "POST /v2/ticketing/ticket",
            Self::Otrs => "POST /otrs/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST/Ticket",
        }
    }

    /// The simulator routes a connector logs in or renews its access token on (empty: a static
    /// token, no login).
    pub const fn auth_routes(self) -> &'static [&'static str] {
        match self {
            Self::Sandbox => &["POST /api/v1/auth/token"],
            Self::Rt => &[],
            Self::Generic => &["POST /oauth/token"],
            Self::Bms => &["POST /v2/security/authenticate", "POST /v2/security/refreshtoken"],
            Self::Vsa => &["GET /api/v1.0/auth"],
            Self::Ninjaone => &["POST /ws/oauth/token"],
            Self::Otrs => &["POST /otrs/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST/Session"],
        }
    }

    /// The simulator route the poller reads ticket statuses from.
    pub const fn status_route(self) -> &'static str {
        match self {
            Self::Sandbox => "GET /api/v1/tickets",
            Self::Rt => "GET /REST/2.0/tickets",
            Self::Generic => "GET /api/v2/issues",
            Self::Bms => "POST /v2/servicedesk/tickets/search",
            Self::Vsa => "GET /api/v1.0/automation/servicedesks/{deskId}/tickets",
            Self::Ninjaone => "POST /v2/ticketing/trigger/board/{boardId}/run",
            Self::Otrs => "GET /otrs/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST/Ticket/{TicketID}",
        }
    }
}

/// A running simulator plus what a connection to it needs.
pub struct SpawnedTarget {
    /// Connector kind as written in the config (`kind = "..."`).
    pub kind: &'static str,
    pub base_url: String,
    /// Fields of the connection's secret.
    pub secret: Vec<(String, String)>,
    /// TOML placed under `[options]`.
    pub options: String,
    /// TOML of the connection's `[defaults]` table.
    pub defaults: String,
    /// Catch-all customer id, for targets that need a customer on every ticket.
    pub catch_all: Option<String>,
    /// Status a technician sets when the work is done, and one meaning rejected.
    pub done_status: &'static str,
    pub rejected_status: &'static str,
    /// Whether `rejected_status` maps to the rejected outcome by the target's own category.
    pub has_rejected_category: bool,
    pub sim: Sim,
    /// Keeps the simulator running.
    pub guard: Box<dyn Any + Send + Sync>,
}

fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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
[create]
url = "/api/v2/issues"
body = '''{"fields": {"summary": {{ title }}, "description": {{ body }}, "reporter": {{ contact_email }},
  "ext_ref": {{ correlation_key }}, "extra": {{ fields }}}}'''
headers = { "X-Request-Source" = "ticket-bridge/{{ connection }}" }
[status]
url = "/api/v2/issues?ids={{ ids | join(',') }}"
[note]
url = "/api/v2/issues/{{ ticket.id }}/comments"
body = '{"body": {{ body }}, "internal": true}'
[find]
url = "/api/v2/issues?ext_ref={{ correlation_key }}"
[close]
url = "/api/v2/issues/{{ ticket.id }}/transitions"
body = """{"status": "Won't Do", "comment": {{ body }}}"""
[reopen]
url = "/api/v2/issues/{{ ticket.id }}/transitions"
body = '{"status": "Open", "comment": {{ body }}}'
[check]
url = "/api/v2/myself"
[auth]
type = "oauth2_client_credentials"
token_url = "/oauth/token"
scope = "issues"
"#;

/// Ticket defaults the BMS simulator accepts.
pub const BMS_DEFAULTS: &str = "ticket_type = \"1\"\nstatus = \"New\"\npriority = \"High\"\nqueue = \"Security\"\n[issue]\nissue_type = \"SaaS Alerts\"\nsub_issue_type = \"Data Leakage\"\n";

/// Spawns `target` on an ephemeral loopback port with a customer "Acme Corp" where the target
/// has customers, and a contact `alice@acme.io` where it has contacts.
pub async fn spawn(target: Target) -> std::io::Result<SpawnedTarget> {
    Ok(match target {
        Target::Sandbox => {
            let desk = Desk::spawn(DeskConfig::default()).await?;
            desk.sim().add_customer("c-1", "Acme Corp");
            desk.sim().add_contact("p-1", Some("c-1"), "alice@acme.io", "Alice");
            SpawnedTarget {
                kind: "sandbox",
                base_url: desk.base_url().to_string(),
                secret: s(&[("api_key", desk.api_key())]),
                options: String::new(),
                defaults: String::new(),
                catch_all: None,
                done_status: "Resolved",
                rejected_status: "Rejected",
                has_rejected_category: true,
                sim: desk.sim().clone(),
                guard: Box::new(desk),
            }
        }
        Target::Rt => {
            let rt = RtSim::spawn(RtConfig::default()).await?;
            let token = rt.config().tokens.first().cloned().unwrap_or_default();
            SpawnedTarget {
                kind: "rt",
                base_url: rt.base_url().to_string(),
                secret: s(&[("token", &token)]),
                options: "queue = \"General\"\ncorrelation_field = \"TicketBridgeKey\"\nper_page = 20\n".into(),
                defaults: String::new(),
                catch_all: None,
                done_status: "resolved",
                rejected_status: "rejected",
                has_rejected_category: true,
                sim: rt.sim().clone(),
                guard: Box::new(rt),
            }
        }
        Target::Generic => {
            let g = GenericSim::spawn(GenericConfig::default()).await?;
            SpawnedTarget {
                kind: "generic",
                base_url: g.base_url().to_string(),
                secret: s(&[("client_id", "tb-client"), ("client_secret", "tb-client-secret")]),
                options: GENERIC_OPTIONS.into(),
                defaults: String::new(),
                catch_all: None,
                done_status: "Done",
                rejected_status: "Won't Do",
                has_rejected_category: false,
                sim: g.sim().clone(),
                guard: Box::new(g),
            }
        }
        Target::Bms => {
            let bms = Bms::spawn(BmsConfig::default()).await?;
            bms.add_customer("100", "Acme Corp");
            bms.add_customer("200", "Globex");
            bms.add_contact("501", Some("100"), "alice@acme.io", "Alice");
            let c = bms.config().clone();
            SpawnedTarget {
                kind: "bms",
                base_url: bms.base_url().to_string(),
                secret: s(&[("username", &c.username), ("password", &c.password), ("tenant", &c.tenant)]),
                options: String::new(),
                defaults: BMS_DEFAULTS.into(),
                catch_all: Some("100".into()),
                done_status: "Completed",
                rejected_status: "Cancelled",
                has_rejected_category: true,
                sim: bms.sim().clone(),
                guard: Box::new(bms),
            }
        }
        Target::Vsa => {
            let vsa = Vsa::spawn(VsaConfig::default()).await?;
            vsa.add_customer("org-1", "Acme Corp");
            let c = vsa.config().clone();
            let expires = (chrono::Utc::now() + chrono::Duration::days(90)).format("%Y-%m-%d").to_string();
            SpawnedTarget {
                kind: "vsa",
                base_url: vsa.base_url().to_string(),
                secret: s(&[("username", &c.username), ("pat", &c.pat), ("pat_expires_at", &expires)]),
                options: "service_desk_id = \"1001\"\n".into(),
                defaults: "priority = \"Medium\"\n".into(),
                catch_all: None,
                done_status: "Closed",
                rejected_status: "Cancelled",
                has_rejected_category: true,
                sim: vsa.sim().clone(),
                guard: Box::new(vsa),
            }
        }
        Target::Ninjaone => {
            let ninja = NinjaOne::spawn(NinjaConfig::default()).await?;
            ninja.add_customer("7", "Acme Corp");
            let c = ninja.config().clone();
            let refresh = ninja.grant_refresh_token();
            SpawnedTarget {
                kind: "ninjaone",
                base_url: ninja.base_url().to_string(),
                secret: s(&[
                    ("client_id", &c.client_id),
                    ("client_secret", &c.client_secret),
                    ("refresh_token", &refresh),
                ]),
                options: String::new(),
                defaults: String::new(),
                catch_all: Some("7".into()),
                done_status: "Resolved",
                // NinjaOne has no rejected system status.
                rejected_status: "Closed",
                has_rejected_category: false,
                sim: ninja.sim().clone(),
                guard: Box::new(ninja),
            }
        }
        Target::Otrs => {
            let otrs = Otrs::spawn(OtrsConfig::default()).await?;
            let c = otrs.config().clone();
            SpawnedTarget {
                kind: "otrs",
                base_url: otrs.base_url().to_string(),
                secret: s(&[("username", &c.user), ("password", &c.password)]),
                options: String::new(),
                defaults: "queue = \"Service Desk\"\n".into(),
                catch_all: None,
                done_status: "closed successful",
                rejected_status: "closed unsuccessful",
                has_rejected_category: true,
                sim: otrs.sim().clone(),
                guard: Box::new(otrs),
            }
        }
    })
}

/// Like [`spawn`], but [`Target::Rt`] is a fresh queue in the real RT named by
/// `TB_RT_URL` / `TB_RT_TOKEN` when they are set (`cargo xtask peer rt`), behind the proxy of
/// [`crate::rt_peer`].
pub async fn spawn_or_peer(target: Target) -> std::io::Result<SpawnedTarget> {
    let (Target::Rt, Some((url, token))) = (target, crate::rt_peer::from_env()) else {
        return spawn(target).await;
    };
    let peer = crate::rt_peer::RtPeer::spawn(&url, &token)
        .await
        .map_err(|e| std::io::Error::other(format!("real RT at {url}: {e}")))?;
    Ok(SpawnedTarget {
        kind: "rt",
        base_url: peer.base_url().to_string(),
        secret: s(&[("token", peer.token())]),
        options: format!(
            "queue = \"{}\"\ncorrelation_field = \"{}\"\nper_page = 20\n",
            peer.queue(),
            crate::rt_peer::CORRELATION_CF
        ),
        defaults: String::new(),
        catch_all: None,
        done_status: "resolved",
        rejected_status: "rejected",
        has_rejected_category: true,
        sim: peer.sim().clone(),
        guard: Box::new(peer),
    })
}

impl SpawnedTarget {
    /// Where a test reads and changes tickets as a technician: the simulator, or the real RT.
    pub fn state(&self) -> crate::rt_peer::TargetState<'_> {
        match self.guard.downcast_ref::<crate::rt_peer::RtPeer>() {
            Some(peer) => peer.state(),
            None => crate::rt_peer::TargetState::Sim(&self.sim),
        }
    }

    /// The `[connections.<name>]` table a user would write for this target: credentials in
    /// `secret`, the given grouping (`none`, `user`, `user_alert`), status names mapped where the
    /// target has no stable category, and fast HTTP retries for tests.
    pub fn connection_table(&self, secret: &str, grouping: &str) -> toml::Table {
        let parse = |text: &str| text.parse::<toml::Table>().unwrap_or_default();
        let mut status_map = toml::Table::new();
        status_map.insert("fulfilled".into(), toml::Value::Array(vec![self.done_status.into()]));
        status_map.insert("pending".into(), toml::Value::Array(vec!["Waiting".into()]));
        if !self.has_rejected_category {
            status_map.insert("rejected".into(), toml::Value::Array(vec![self.rejected_status.into()]));
        }
        let mut options = parse(&self.options);
        options.insert(
            "http".into(),
            toml::Value::Table(parse("max_retries = 1\nbackoff_base_ms = 5\nbackoff_max_ms = 20\ntimeout_ms = 5000")),
        );
        let mut t = toml::Table::new();
        t.insert("kind".into(), self.kind.into());
        t.insert("base_url".into(), self.base_url.clone().into());
        t.insert("secret".into(), secret.into());
        t.insert("grouping".into(), grouping.into());
        t.insert("poll_interval_secs".into(), 10.into());
        if let Some(c) = &self.catch_all {
            let mut ca = toml::Table::new();
            ca.insert("customer_id".into(), c.clone().into());
            t.insert("catch_all".into(), toml::Value::Table(ca));
        }
        t.insert("status_map".into(), toml::Value::Table(status_map));
        t.insert("defaults".into(), toml::Value::Table(parse(&self.defaults)));
        t.insert("options".into(), toml::Value::Table(options));
        t
    }
}
