//! The OAuth authorization-code flow for NinjaOne connections, shared by `ticket-bridge connect`
//! (loopback redirect) and the console (redirect to its own callback page): the authorize URL,
//! the code exchange, storing the refresh token in the configured secrets backend, and the check.

use anyhow::{Context, Result, bail};
use bridge::config::{ConnectionConfig, SecretsKind};
use bridge::connectors::CheckReport;
use bridge::domain::ConnectorKind;
use bridge::engine::Engine;
use bridge::secrets::{Secret, Secrets, SecretsError};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Scopes asked for: the API scopes the connector uses plus `offline_access` (the refresh token).
pub const DEFAULT_SCOPE: &str = "monitoring management control offline_access";

/// The connection `name`, if it is one the flow can authorize.
pub fn oauth_connection<'a>(engine: &'a Engine, name: &str) -> Result<&'a ConnectionConfig> {
    let Some(cfg) = engine.config.connections.get(name) else {
        bail!("unknown connection '{name}'; configured: {:?}", engine.config.connections.keys().collect::<Vec<_>>());
    };
    if cfg.kind != ConnectorKind::Ninjaone {
        bail!("connection '{name}' is kind {:?}; only OAuth targets (ninjaone) can be connected this way", cfg.kind);
    }
    Ok(cfg)
}

/// The configured secrets backend: the local secrets file, or Secrets Manager (settings.secrets =
/// "aws", endpoint and credentials from the usual AWS environment, TB_AWS_ENDPOINT for a local
/// one), read without a cache so the flow sees what is stored now.
pub async fn secrets_backend(engine: &Engine) -> Arc<dyn Secrets> {
    match engine.config.settings.secrets {
        SecretsKind::File => engine.secrets.clone(),
        SecretsKind::Aws => {
            let sdk = bridge::aws::sdk_config_from_env().await;
            Arc::new(bridge::secrets::aws::AwsSecrets::new(aws_sdk_secretsmanager::Client::new(&sdk), Duration::ZERO))
        }
    }
}

/// Words for the configured backend.
pub fn backend_name(engine: &Engine) -> &'static str {
    match engine.config.settings.secrets {
        SecretsKind::File => "the local secrets file",
        SecretsKind::Aws => "Secrets Manager",
    }
}

/// The connection's current secret (empty when there is none yet).
pub async fn current_secret(secrets: &dyn Secrets, cfg: &ConnectionConfig) -> Result<Secret> {
    match secrets.get(&cfg.secret).await {
        Ok(s) => Ok(s),
        Err(SecretsError::NotFound(_)) => Ok(Secret::new()),
        Err(e) => Err(e).with_context(|| format!("reading secret '{}'", cfg.secret)),
    }
}

/// A fresh random `state` (256 bits, hex).
pub fn new_state() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Whether `got` is `expected`, in constant time.
pub fn state_matches(got: Option<&str>, expected: &str) -> bool {
    got.is_some_and(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())))
}

/// Fails unless `scope` includes `offline_access`.
pub fn require_offline_access(scope: &str) -> Result<()> {
    if !scope.split(' ').any(|s| s == "offline_access") {
        bail!("the scope must include offline_access, or NinjaOne gives no refresh token");
    }
    Ok(())
}

/// One authorization request.
pub struct Authorization<'a> {
    pub cfg: &'a ConnectionConfig,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub state: &'a str,
}

impl Authorization<'_> {
    fn base(&self) -> &str {
        self.cfg.base_url.trim_end_matches('/')
    }

    /// The NinjaOne authorize URL the user's browser is sent to (no secret in it).
    pub fn url(&self) -> Result<url::Url> {
        let mut u = url::Url::parse(&format!("{}/ws/oauth/authorize", self.base())).context("base_url is not a URL")?;
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", self.client_id)
            .append_pair("redirect_uri", self.redirect_uri)
            .append_pair("scope", self.scope)
            .append_pair("state", self.state);
        Ok(u)
    }

    /// Exchanges `code` for tokens and returns the refresh token.
    pub async fn exchange(&self, client_secret: &str, code: &str) -> Result<String> {
        let http = bridge::http::client_builder().build().context("cannot build the HTTP client")?;
        let res = http
            .post(format!("{}/ws/oauth/token", self.base()))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", self.client_id),
                ("client_secret", client_secret),
                ("code", code),
                ("redirect_uri", self.redirect_uri),
                ("scope", self.scope),
            ])
            .send()
            .await
            .context("cannot reach the NinjaOne token endpoint")?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let why = body["error_description"].as_str().or(body["error"].as_str()).unwrap_or("no reason given");
            bail!("NinjaOne refused the code exchange ({status}): {why}");
        }
        match body["refresh_token"].as_str().filter(|r| !r.is_empty()) {
            Some(r) => Ok(r.to_string()),
            None => {
                bail!(
                    "NinjaOne sent no refresh token: is offline_access allowed for the app (grant type Refresh Token)?"
                )
            }
        }
    }
}

/// Stores the app credentials and the new refresh token in the connection's secret, dropping
/// tokens that belonged to the old grant.
pub async fn store_grant(
    secrets: &dyn Secrets,
    cfg: &ConnectionConfig,
    mut secret: Secret,
    client_id: &str,
    client_secret: &str,
    refresh_token: &str,
) -> Result<()> {
    secret.set("client_id", client_id);
    secret.set("client_secret", client_secret);
    secret.set("refresh_token", refresh_token);
    for stale in ["access_token", "access_token_expires_at", "refresh_token_expires_at"] {
        secret.remove(stale);
    }
    secrets.put(&cfg.secret, &secret).await.with_context(|| format!("storing secret '{}'", cfg.secret))
}

/// Runs `check` with a connector built on `secrets` (so it reads what was just stored).
pub async fn check(name: &str, cfg: &ConnectionConfig, secrets: Arc<dyn Secrets>) -> Result<CheckReport> {
    let connector =
        bridge::connectors::build(name, cfg, secrets).map_err(|e| anyhow::anyhow!("connection '{name}': {e}"))?;
    connector.check().await.map_err(|e| anyhow::anyhow!("{name}: {e}"))
}
