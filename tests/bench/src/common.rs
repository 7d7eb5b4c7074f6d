//! Shared set-up: a connection configuration for a spawned simulator, and an engine over SQLite.

use anyhow::{Context, Result};
use bridge::config::{Config, ConnectionConfig};
use bridge::engine::{BridgeEvent, Engine, EventSink};
use bridge::secrets::{Secret, Secrets};
use bridge::store::Store;
use sandbox::targets::SpawnedTarget;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const CONN: &str = "desk";

/// Drops every event (the benchmarks count target and store requests, not events).
pub struct NoEvents;

#[async_trait::async_trait]
impl EventSink for NoEvents {
    async fn publish(&self, _event: &BridgeEvent) -> Result<(), String> {
        Ok(())
    }
}

/// The connection to `t` as a user would configure it, with the rate limiter opened wide (the
/// benchmarks measure requests and latency, not the deliberate pacing).
pub fn connection_for(t: &SpawnedTarget, secret: &str) -> Result<ConnectionConfig> {
    let catch_all =
        t.catch_all.as_ref().map(|c| format!("catch_all = {{ customer_id = \"{c}\" }}\n")).unwrap_or_default();
    let status_map = if t.has_rejected_category {
        format!("fulfilled = [\"{}\"]\npending = [\"Waiting\"]", t.done_status)
    } else {
        format!("fulfilled = [\"{}\"]\nrejected = [\"{}\"]\npending = [\"Waiting\"]", t.done_status, t.rejected_status)
    };
    let toml = format!(
        "kind = \"{}\"\nbase_url = \"{}\"\nsecret = \"{secret}\"\ngrouping = \"none\"\npoll_interval_secs = 10\n\
         rate_limit_per_hour = 100000000\n{catch_all}[status_map]\n{status_map}\n",
        t.kind, t.base_url
    );
    let mut cfg: ConnectionConfig = toml::from_str(&toml).with_context(|| format!("bad connection config:\n{toml}"))?;
    cfg.defaults = toml::from_str(&t.defaults).context("bad defaults")?;
    cfg.options = toml::from_str(&t.options).context("bad options")?;
    let http: toml::Table = toml::from_str(
        "max_retries = 1\nbackoff_base_ms = 5\nbackoff_max_ms = 20\ntimeout_ms = 30000\nrate_burst = 1000",
    )?;
    cfg.options.insert("http".into(), toml::Value::Table(http));
    Ok(cfg)
}

/// Stores the target's credentials under `name`.
pub async fn put_secret(secrets: &dyn Secrets, name: &str, t: &SpawnedTarget) -> Result<()> {
    let mut s = Secret::new();
    for (k, v) in &t.secret {
        s.set(k.clone(), v.clone());
    }
    s.set("callback_key", "bench-callback-key");
    secrets.put(name, &s).await.map_err(|e| anyhow::anyhow!("cannot store secret: {e}"))
}

/// An engine with one connection, [`CONN`], to `t`.
pub fn engine(t: &SpawnedTarget, secret: &str, store: Arc<dyn Store>, secrets: Arc<dyn Secrets>) -> Result<Engine> {
    engine_with(t, secret, store, secrets, |_| {})
}

/// [`engine`] with the connection settings changed by `tweak` (e.g. incremental reads off).
pub fn engine_with(
    t: &SpawnedTarget,
    secret: &str,
    store: Arc<dyn Store>,
    secrets: Arc<dyn Secrets>,
    tweak: impl FnOnce(&mut ConnectionConfig),
) -> Result<Engine> {
    let mut config = Config::default();
    config.settings.allow_private_callbacks = true;
    let mut conn = connection_for(t, secret)?;
    tweak(&mut conn);
    config.connections.insert(CONN.into(), conn);
    config.validate().map_err(|e| anyhow::anyhow!("config: {e}"))?;
    let mut connectors = BTreeMap::new();
    for (name, cfg) in &config.connections {
        connectors.insert(
            name.clone(),
            bridge::connectors::build(name, cfg, secrets.clone()).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    Ok(Engine::new(Arc::new(config), store, secrets, connectors, Arc::new(NoEvents)))
}

/// A submission body (access task) with this external id.
pub fn access_task(external_id: &str) -> serde_json::Value {
    serde_json::json!({"source":"saviynt","external_id":external_id,"kind":"access","action":"add_access",
        "user":{"id":"u-17","name":"Ada Lovelace","email":"alice@acme.io"},"application":"Payroll",
        "entitlements":["payroll-admin"],"requester":{"name":"Grace Hopper","email":"grace@example.com"},
        "justification":"new role"})
}

pub fn secs(d: std::time::Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
