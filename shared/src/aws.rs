//! Shared AWS SDK configuration (real AWS, or a local endpoint such as `moto_server` in tests).

/// Environment variable naming a local AWS endpoint (tests, local runs); unset in Lambda.
pub const ENDPOINT_ENV: &str = "TB_AWS_ENDPOINT";

/// Loads the SDK config from the environment; with `endpoint` set, points every client at it and
/// uses dummy static credentials and `us-east-1` unless the environment provides others.
pub async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    // rustls on ring, like the connectors (the SDK's default would link aws-lc as a second stack).
    let https = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https);
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                "test",
                "test",
                None,
                None,
                "static-test",
            ));
        }
        if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            loader = loader.region(aws_config::Region::new("us-east-1"));
        }
    }
    loader.load().await
}

/// Logging for the Lambda functions, following Lambda's advanced logging controls: the level from
/// `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG` (a single level such as `debug`), else INFO; JSON lines
/// when `AWS_LAMBDA_LOG_FORMAT=JSON`; no timestamps (CloudWatch adds them). Unlike
/// `lambda_runtime::tracing::init_default_subscriber` it takes no per-module directives, which
/// keeps regex out of the function binaries.
#[cfg(feature = "lambda")]
pub fn init_lambda_logging() {
    use std::str::FromStr;
    use tracing_subscriber::filter::LevelFilter;
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| LevelFilter::from_str(l.trim()).ok())
        .unwrap_or(LevelFilter::INFO);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt().with_target(false).without_time().with_max_level(level).with_ansi(false);
    // try_init: Err only when a subscriber is already set (tests), which is fine.
    let _ = if json { fmt.json().try_init() } else { fmt.try_init() };
}

/// [`sdk_config`] with the endpoint from [`ENDPOINT_ENV`], if set.
pub async fn sdk_config_from_env() -> aws_config::SdkConfig {
    let endpoint = std::env::var(ENDPOINT_ENV).ok().filter(|s| !s.is_empty());
    sdk_config(endpoint.as_deref()).await
}

/// Publishes bridge events to an EventBridge bus (source `ticket-bridge`). An entry that
/// `PutEvents` reports as failed (`FailedEntryCount` > 0, per-entry `ErrorCode`) is sent again with
/// backoff, not dropped; only a malformed or oversized entry, which no retry can fix, is given up at once.
#[cfg(feature = "eventbridge")]
pub struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    /// Delays before each re-send of a failed entry.
    pub retry_delays: Vec<std::time::Duration>,
}

#[cfg(feature = "eventbridge")]
impl EventBridgeSink {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        let retry_delays = [100, 400, 1_600, 5_000].map(std::time::Duration::from_millis).to_vec();
        Self { client, bus: bus.into(), retry_delays }
    }
}

/// Per-entry `PutEvents` error codes that a re-send cannot fix.
#[cfg(feature = "eventbridge")]
const PERMANENT_ENTRY_ERRORS: [&str; 4] =
    ["MalformedDetail", "InvalidArgument", "InvalidEventPatternException", "AccessDeniedException"];

#[cfg(feature = "eventbridge")]
#[async_trait::async_trait]
impl crate::engine::EventSink for EventBridgeSink {
    async fn publish(&self, event: &crate::engine::BridgeEvent) -> Result<(), String> {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source("ticket-bridge")
            .detail_type(&event.detail_type)
            .detail(event.detail.to_string())
            .build();
        let mut last = String::new();
        for delay in std::iter::once(std::time::Duration::ZERO).chain(self.retry_delays.iter().copied()) {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let out = match self.client.put_events().entries(entry.clone()).send().await {
                Ok(out) => out,
                Err(e) => {
                    last = format!("PutEvents failed: {}", aws_sdk_eventbridge::error::DisplayErrorContext(&e));
                    continue;
                }
            };
            if out.failed_entry_count() == 0 {
                return Ok(());
            }
            let failed = out.entries().iter().find(|e| e.error_code().is_some());
            let code = failed.and_then(|e| e.error_code()).unwrap_or("unknown");
            last = format!(
                "PutEvents rejected the entry: {code}: {}",
                failed.and_then(|e| e.error_message()).unwrap_or_default()
            );
            if PERMANENT_ENTRY_ERRORS.contains(&code) {
                break;
            }
            tracing::info!(error = %last, "PutEvents entry failed; sending it again");
        }
        Err(last)
    }
}

/// Errors while building the engine for a Lambda function.
#[cfg(all(feature = "dynamo", feature = "aws-secrets", feature = "eventbridge"))]
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("connection '{name}': {error}")]
    Connector { name: String, error: crate::connectors::ConnectorError },
}

/// Builds the engine the Lambda functions share: config from the environment, DynamoDB store,
/// Secrets Manager, EventBridge (bus from `TICKET_BRIDGE_EVENT_BUS`, default "default").
#[cfg(all(feature = "dynamo", feature = "aws-secrets", feature = "eventbridge"))]
pub async fn engine_from_env() -> Result<crate::engine::Engine, BootError> {
    use std::sync::Arc;
    let config = crate::config::Config::from_process_env()?;
    if config.settings.store != crate::config::StoreKind::Dynamodb {
        return Err(crate::config::ConfigError::new(
            "settings.store",
            "must be \"dynamodb\" in Lambda (set TICKET_BRIDGE__SETTINGS__STORE=dynamodb)",
        )
        .into());
    }
    if config.settings.secrets != crate::config::SecretsKind::Aws {
        return Err(crate::config::ConfigError::new(
            "settings.secrets",
            "must be \"aws\" in Lambda (set TICKET_BRIDGE__SETTINGS__SECRETS=aws)",
        )
        .into());
    }
    let config = Arc::new(config);
    let sdk = sdk_config_from_env().await;
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::dynamo::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        config.settings.table_name.clone(),
    ));
    let secrets: Arc<dyn crate::secrets::Secrets> = Arc::new(crate::secrets::aws::AwsSecrets::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        std::time::Duration::from_secs(60),
    ));
    let bus = std::env::var("TICKET_BRIDGE_EVENT_BUS").unwrap_or_else(|_| "default".into());
    let events = Arc::new(EventBridgeSink::new(aws_sdk_eventbridge::Client::new(&sdk), bus));
    let mut connectors = std::collections::BTreeMap::new();
    for (name, cfg) in &config.connections {
        let c = crate::connectors::build(name, cfg, secrets.clone())
            .map_err(|error| BootError::Connector { name: name.clone(), error })?;
        connectors.insert(name.clone(), c);
    }
    Ok(crate::engine::Engine::new(config, store, secrets, connectors, events))
}
