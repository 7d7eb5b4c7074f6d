//! Outgoing webhooks: what a desk sends when a ticket's status changes, in the shape and with the
//! authentication each product's documented set-up produces (docs/webhooks.md, "Set-up per
//! target"):
//!
//! | simulator | product mechanism | body | auth |
//! |---|---|---|---|
//! | `rt` | scrip, condition "On Status Change", the documented Perl action | `{"ticket_id": "<id>"}` | signed |
//! | `otrs` | web-service invoker on `TicketStateUpdate` with an outgoing mapping | `{"ticket_id": "<TicketID>"}` | bearer |
//! | `sandbox-desk` | the built-in desk's own outgoing webhook | `{"ticket_id": "<id>"}` | signed |
//!
//! *Signed*: `X-Bridge-Timestamp: <unix seconds of the desk's clock>` and `X-Bridge-Signature:
//! v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`, as the RT scrip in docs/webhooks.md computes it;
//! *bearer*: `Authorization: Bearer <key>`. Other simulators send no webhook the bridge takes
//! directly (NinjaOne's activity payload needs a relay and its ticket field is unverified), so
//! configuring one there is refused.
//!
//! A delivery is sent once (the scrip and the invoker do not retry; a lost one waits for the next
//! poll). [`Sim::drop_next_webhooks`] arms a fault: the next N deliveries are lost on the way.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sim::{Sim, SimTicket};

/// How a product authenticates its webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookAuth {
    /// HMAC-SHA256 over `<timestamp>.<body>` (the RT scrip).
    Signed,
    /// The key as `Authorization: Bearer` (an invoker's custom header).
    Bearer,
}

/// The auth the product simulated by profile `name` uses, if it sends webhooks at all.
pub fn auth_of_profile(name: &str) -> Option<HookAuth> {
    match name {
        "rt" | "sandbox-desk" => Some(HookAuth::Signed),
        "otrs" => Some(HookAuth::Bearer),
        _ => None,
    }
}

/// Where and with which key a simulator sends its webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// The bridge's `POST /v1/hooks/{connection}` URL.
    pub url: String,
    /// The connection's `webhook_key`.
    pub key: String,
}

/// What the webhooks of one simulator did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookStats {
    /// Status changes that triggered a delivery.
    pub triggered: u64,
    /// Deliveries the receiver answered with 2xx.
    pub delivered: u64,
    /// Deliveries answered with another status or not answered.
    pub failed: u64,
    /// Deliveries lost to the drop fault (never sent).
    pub dropped: u64,
    /// Deliveries being sent right now.
    pub in_flight: u64,
}

/// The webhook state of one simulator.
#[derive(Default)]
pub(crate) struct Webhooks {
    config: Mutex<Option<WebhookConfig>>,
    drop_next: AtomicU32,
    triggered: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    in_flight: AtomicU64,
}

impl Webhooks {
    fn config(&self) -> Option<WebhookConfig> {
        self.config.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`, as the RT scrip computes it.
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; the error branch cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return String::new() };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("v1={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

impl Sim {
    /// Sends a webhook to `config.url` whenever a ticket's status changes (`None`: stop). Refused
    /// for simulators whose product sends no webhook the bridge takes directly.
    pub fn set_webhook(&self, config: Option<WebhookConfig>) -> Result<(), String> {
        let name = self.profile().name;
        if config.is_some() && auth_of_profile(name).is_none() {
            return Err(format!("the {name} simulator sends no webhook the bridge takes directly (docs/webhooks.md)"));
        }
        *self.webhooks().config.lock().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// Fault: the next `n` webhook deliveries are lost (never reach the receiver).
    pub fn drop_next_webhooks(&self, n: u32) {
        self.webhooks().drop_next.store(n, Ordering::SeqCst);
    }

    /// What the webhooks did so far.
    pub fn webhook_stats(&self) -> WebhookStats {
        let w = self.webhooks();
        WebhookStats {
            triggered: w.triggered.load(Ordering::SeqCst),
            delivered: w.delivered.load(Ordering::SeqCst),
            failed: w.failed.load(Ordering::SeqCst),
            dropped: w.dropped.load(Ordering::SeqCst),
            in_flight: w.in_flight.load(Ordering::SeqCst),
        }
    }

    /// Waits (up to `limit`) until no delivery is in flight; `false` on timeout.
    pub async fn webhooks_settled(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while self.webhooks().in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Called after ticket `t`'s status changed: sends the product's webhook when one is set.
    pub(crate) fn status_changed(&self, t: &SimTicket) {
        let w = self.webhooks();
        let (Some(config), Some(auth)) = (w.config(), auth_of_profile(self.profile().name)) else { return };
        w.triggered.fetch_add(1, Ordering::SeqCst);
        if w.drop_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            w.dropped.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(simulator = self.profile().name, "no async runtime: webhook not sent");
            w.failed.fetch_add(1, Ordering::SeqCst);
            return;
        };
        let body = serde_json::json!({"ticket_id": t.id.to_string()}).to_string();
        let timestamp = self.now().timestamp();
        w.in_flight.fetch_add(1, Ordering::SeqCst);
        let sim = self.clone();
        runtime.spawn(async move {
            let client = reqwest::Client::new();
            let mut req = client
                .post(&config.url)
                .timeout(Duration::from_secs(5))
                .header("content-type", "application/json")
                .body(body.clone());
            req = match auth {
                HookAuth::Signed => req
                    .header("x-bridge-timestamp", timestamp.to_string())
                    .header("x-bridge-signature", sign(config.key.as_bytes(), timestamp, body.as_bytes())),
                HookAuth::Bearer => req.bearer_auth(&config.key),
            };
            let ok = match req.send().await {
                Ok(resp) if resp.status().is_success() => true,
                Ok(resp) => {
                    tracing::warn!(simulator = sim.profile().name, status = %resp.status(), "webhook refused");
                    false
                }
                Err(e) => {
                    tracing::warn!(simulator = sim.profile().name, error = %e, "webhook not delivered");
                    false
                }
            };
            let w = sim.webhooks();
            if ok { &w.delivered } else { &w.failed }.fetch_add(1, Ordering::SeqCst);
            w.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}
