//! Builds the local engine: SQLite store, local secrets file, connectors — and, with no config,
//! the built-in sandbox ITSM.

use anyhow::{Context, Result};
use bridge::config::{Config, ConnectionConfig};
use bridge::domain::{ConnectorKind, StatusMap};
use bridge::engine::{Engine, LogEvents};
use bridge::secrets::{Secret, Secrets};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The running engine plus what must stay alive with it.
pub struct Local {
    pub engine: Arc<Engine>,
    /// The built-in sandbox desk, when running without a config.
    pub desk: Option<sandbox::desk::Desk>,
}

/// Name of the sandbox connection in the default configuration.
pub const SANDBOX_CONNECTION: &str = "sandbox";

pub async fn build(config_path: Option<&Path>, data_dir: &Path) -> Result<Local> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut config = match config_path {
        Some(p) => Config::load(Some(p), env)?,
        None => Config::from_toml_with_env("", env)?,
    };
    if config_path.is_none() || config.settings.sqlite_path.is_relative() {
        config.settings.sqlite_path = data_dir.join(&config.settings.sqlite_path);
    }
    if config_path.is_none() || config.settings.secrets_file.is_relative() {
        config.settings.secrets_file = data_dir.join(&config.settings.secrets_file);
    }
    let secrets: Arc<dyn Secrets> = Arc::new(
        bridge::secrets::file::FileSecrets::open(&config.settings.secrets_file)
            .with_context(|| format!("opening secrets file {}", config.settings.secrets_file.display()))?,
    );
    let desk = match config_path {
        Some(_) => None,
        None => {
            let desk = start_desk(secrets.as_ref(), data_dir).await?;
            config.connections.insert(SANDBOX_CONNECTION.into(), sandbox_connection(desk.base_url()));
            config.settings.default_connection = Some(SANDBOX_CONNECTION.into());
            config.settings.allow_private_callbacks = true;
            Some(desk)
        }
    };
    let store = Arc::new(
        bridge::store::sqlite::SqliteStore::open(&config.settings.sqlite_path)
            .with_context(|| format!("opening {}", config.settings.sqlite_path.display()))?,
    );
    let mut connectors = BTreeMap::new();
    for (name, cfg) in &config.connections {
        let c = bridge::connectors::build(name, cfg, secrets.clone())
            .map_err(|e| anyhow::anyhow!("connection '{name}': {e}"))?;
        connectors.insert(name.clone(), c);
    }
    let engine = Engine::new(Arc::new(config), store, secrets, connectors, Arc::new(LogEvents));
    Ok(Local { engine: Arc::new(engine), desk })
}

/// Starts the built-in desk with a key kept in the secrets file and tickets kept in the data
/// directory, so restarts of `serve` keep both.
async fn start_desk(secrets: &dyn Secrets, data_dir: &Path) -> Result<sandbox::desk::Desk> {
    let mut secret = match secrets.get(SANDBOX_CONNECTION).await {
        Ok(s) => s,
        Err(bridge::secrets::SecretsError::NotFound(_)) => Secret::new(),
        Err(e) => return Err(e.into()),
    };
    let key = match secret.get("api_key") {
        Some(k) => k.to_string(),
        None => {
            let k = format!("sbx_{}", ulid::Ulid::new());
            secret.set("api_key", k.clone());
            secret.set("callback_key", format!("cbk_{}", ulid::Ulid::new()));
            secrets.put(SANDBOX_CONNECTION, &secret).await?;
            k
        }
    };
    let cfg = sandbox::desk::DeskConfig {
        api_keys: vec![sandbox::desk::ApiKey::new("serve", &key)],
        state_file: Some(data_dir.join("sandbox-desk.json")),
        ..Default::default()
    };
    sandbox::desk::Desk::spawn_on("127.0.0.1:0".parse()?, cfg).await.context("starting the built-in sandbox ITSM")
}

fn sandbox_connection(base_url: &str) -> ConnectionConfig {
    ConnectionConfig {
        kind: ConnectorKind::Sandbox,
        base_url: base_url.to_string(),
        secret: SANDBOX_CONNECTION.into(),
        grouping: Default::default(),
        defaults: Default::default(),
        status_map: StatusMap {
            fulfilled: vec!["Resolved".into(), "Closed".into()],
            rejected: vec!["Rejected".into()],
            pending: vec!["Waiting".into()],
        },
        template: Default::default(),
        catch_all: None,
        poll_interval_secs: 10,
        give_up_after_days: 0,
        rate_limit_per_hour: 36_000,
        poll_concurrency: 4,
        callback_secret: None,
        options: Default::default(),
        mapping: Default::default(),
        polling: Default::default(),
        sync: Default::default(),
        retry: Default::default(),
        reopen_within_minutes: 0,
    }
}
