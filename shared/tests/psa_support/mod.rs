//! Test support for the PSA connector contract tests: an in-memory secrets backend, connection
//! configs with fast HTTP settings, and small assertions.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bridge::config::ConnectionConfig;
use bridge::connectors::{CheckReport, TicketRequest};
use bridge::secrets::{Secret, Secrets, SecretsError};

/// Secrets kept in memory (for connector tests only; counts writes).
#[derive(Default)]
pub struct MemSecrets {
    map: Mutex<HashMap<String, Secret>>,
    pub puts: AtomicUsize,
}

impl MemSecrets {
    pub fn with(name: &str, fields: &[(&str, &str)]) -> std::sync::Arc<Self> {
        let s = Self::default();
        s.set(name, fields);
        std::sync::Arc::new(s)
    }

    pub fn set(&self, name: &str, fields: &[(&str, &str)]) {
        let secret: Secret = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.map.lock().unwrap().insert(name.to_string(), secret);
    }

    pub fn field(&self, name: &str, field: &str) -> Option<String> {
        self.map.lock().unwrap().get(name).and_then(|s| s.get(field)).map(str::to_string)
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

/// A connection of `kind` to `base_url` using secret `secret`, with fast timeouts and retries.
/// `extra` is TOML merged into the connection table (e.g. `[options]` keys or `[defaults]`).
pub fn connection(kind: &str, base_url: &str, secret: &str, extra: &str) -> ConnectionConfig {
    let text = format!(
        r#"
kind = "{kind}"
base_url = "{base_url}"
secret = "{secret}"
rate_limit_per_hour = 1000000
{extra}
[options.http]
timeout_ms = 400
connect_timeout_ms = 400
max_retries = 3
backoff_base_ms = 5
backoff_max_ms = 20
max_retry_after_secs = 5
rate_burst = 100000
"#
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("test connection config: {e}\n{text}"))
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
        ..Default::default()
    }
}

/// Asserts the check failed and its last step mentions `needle` (case-insensitive).
pub fn assert_check_fails(report: &CheckReport, needle: &str) {
    assert!(!report.ok, "check should fail: {report:?}");
    let last = report.steps.last().cloned().unwrap_or_default().to_lowercase();
    assert!(last.contains(&needle.to_lowercase()), "expected '{needle}' in the diagnosis: {report:?}");
}
