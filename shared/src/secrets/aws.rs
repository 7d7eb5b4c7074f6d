//! AWS Secrets Manager backend with a small in-process TTL cache.
//!
//! Each secret's `SecretString` is a JSON object of string fields. Reads are cached for a short
//! time (a Lambda environment handles one invocation at a time, so this mostly saves a network
//! round trip per invocation); writes go straight to Secrets Manager and refresh the cache.
//! Call [`AwsSecrets::invalidate`] after the remote system rejected a cached credential.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Secret, Secrets, SecretsError};

/// A sensible default for how long a read value is reused.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);

/// Secrets in AWS Secrets Manager, one secret per connection.
#[derive(Debug)]
pub struct AwsSecrets {
    client: Client,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Secret)>>,
}

impl AwsSecrets {
    /// Wraps `client`; values read are reused for `cache_ttl` (zero disables the cache).
    pub fn new(client: Client, cache_ttl: Duration) -> Self {
        Self { client, ttl: cache_ttl, cache: Mutex::new(HashMap::new()) }
    }

    /// Forgets the cached value of `name` so the next `get` reads Secrets Manager.
    pub fn invalidate(&self, name: &str) {
        self.cache().remove(name);
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, (Instant, Secret)>> {
        // A panic while holding this lock cannot leave the map inconsistent; keep using it.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, name: &str) -> Option<Secret> {
        let mut cache = self.cache();
        match cache.get(name) {
            Some((at, value)) if at.elapsed() < self.ttl => Some(value.clone()),
            Some(_) => {
                cache.remove(name);
                None
            }
            None => None,
        }
    }

    fn remember(&self, name: &str, value: &Secret) {
        if !self.ttl.is_zero() {
            self.cache().insert(name.to_string(), (Instant::now(), value.clone()));
        }
    }

    async fn put_value(&self, name: &str, text: &str) -> Result<(), SecretsError> {
        match self.client.put_secret_value().secret_id(name).secret_string(text).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                match self.client.create_secret().name(name).secret_string(text).send().await {
                    Ok(_) => Ok(()),
                    // Someone else created it in between: store our value as a new version.
                    Err(e) if e.code() == Some("ResourceExistsException") => self
                        .client
                        .put_secret_value()
                        .secret_id(name)
                        .secret_string(text)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| backend(name, "PutSecretValue", &e)),
                    Err(e) => Err(backend(name, "CreateSecret", &e)),
                }
            }
            Err(e) => Err(backend(name, "PutSecretValue", &e)),
        }
    }
}

#[async_trait]
impl Secrets for AwsSecrets {
    async fn get(&self, name: &str) -> Result<Secret, SecretsError> {
        if let Some(hit) = self.cached(name) {
            return Ok(hit);
        }
        let out = self.client.get_secret_value().secret_id(name).send().await.map_err(|e| {
            if e.code() == Some("ResourceNotFoundException") {
                SecretsError::NotFound(name.to_string())
            } else {
                backend(name, "GetSecretValue", &e)
            }
        })?;
        let text = out.secret_string().ok_or_else(|| SecretsError::Malformed {
            name: name.to_string(),
            reason: "secret has no SecretString (binary secrets are not supported)".into(),
        })?;
        let value = Secret::from_json(name, text)?;
        self.remember(name, &value);
        Ok(value)
    }

    async fn put(&self, name: &str, value: &Secret) -> Result<(), SecretsError> {
        let result = self.put_value(name, &value.to_json()).await;
        match &result {
            Ok(()) => self.remember(name, value),
            // The outcome is unknown (e.g. a timeout after the write landed): drop the cached value.
            Err(_) => self.invalidate(name),
        }
        result
    }
}

/// Maps an SDK error to `Backend`, keeping only the error code or failure kind (never a message
/// that might quote request data).
fn backend<E: ProvideErrorMetadata, R>(name: &str, op: &str, e: &SdkError<E, R>) -> SecretsError {
    let what = match e {
        SdkError::ServiceError(_) => e.code().unwrap_or("unknown service error").to_string(),
        SdkError::TimeoutError(_) => "timeout".into(),
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_timeout() {
                "timeout"
            } else if d.is_io() {
                "I/O error"
            } else {
                "other"
            };
            format!("dispatch failure ({kind})")
        }
        SdkError::ResponseError(_) => "unparseable response".into(),
        SdkError::ConstructionFailure(_) => "request construction failed".into(),
        _ => "unknown error".into(),
    };
    SecretsError::Backend { name: name.to_string(), reason: format!("{op}: {what}") }
}
