//! Connection credentials: AWS Secrets Manager in the cloud, a private JSON file locally.
//!
//! A secret is a JSON object of string fields (e.g. `username`, `password`, `access_token`,
//! `refresh_token`, `access_token_expires_at`). Values never reach logs: [`Secret`]'s `Debug`
//! prints field names only.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

#[cfg(feature = "aws-secrets")]
pub mod aws;
pub mod file;

/// Errors from a secrets backend. Messages name the secret, never its value.
#[derive(Debug, Error)]
pub enum SecretsError {
    #[error("secret '{0}' not found")]
    NotFound(String),
    #[error("secret '{name}' is not a JSON object of strings: {reason}")]
    Malformed { name: String, reason: String },
    /// The local secrets file grants some permission to group or others.
    #[error("{path} is accessible to group or other users (mode {mode:o}); run: chmod 600 {path}")]
    InsecurePermissions { path: String, mode: u32 },
    #[error("secrets backend error for '{name}': {reason}")]
    Backend { name: String, reason: String },
}

/// A secret's fields. `Debug` and `Display` never show values.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(BTreeMap<String, String>);

impl Secret {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// The field's value or an error naming the missing field (not its value).
    pub fn require(&self, secret: &str, field: &str) -> Result<&str, SecretsError> {
        self.get(field).filter(|v| !v.is_empty()).ok_or_else(|| SecretsError::Malformed {
            name: secret.to_string(),
            reason: format!("missing field '{field}'"),
        })
    }

    pub fn set(&mut self, field: impl Into<String>, value: impl Into<String>) {
        self.0.insert(field.into(), value.into());
    }

    pub fn remove(&mut self, field: &str) -> Option<String> {
        self.0.remove(field)
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// All values, for redaction of logs and errors.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.values().map(String::as_str)
    }

    /// Parses a secret string (JSON object of strings; numbers and booleans are kept as text).
    pub fn from_json(name: &str, text: &str) -> Result<Self, SecretsError> {
        let malformed = |reason: String| SecretsError::Malformed { name: name.to_string(), reason };
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| malformed(format!("invalid JSON at line {} column {}", e.line(), e.column())))?;
        let obj = value.as_object().ok_or_else(|| malformed("not a JSON object".into()))?;
        let mut out = BTreeMap::new();
        for (k, v) in obj {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => continue,
                _ => return Err(malformed(format!("field '{k}' is not a string"))),
            };
            out.insert(k.clone(), s);
        }
        Ok(Self(out))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".into())
    }
}

impl FromIterator<(String, String)> for Secret {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "<redacted>"))).finish()
    }
}

/// A place connection credentials are read from and new token values written to.
#[async_trait]
pub trait Secrets: Send + Sync + 'static {
    /// The current value of secret `name`.
    async fn get(&self, name: &str) -> Result<Secret, SecretsError>;
    /// Stores a new version of secret `name` (creating it if needed); later `get`s see it.
    async fn put(&self, name: &str, value: &Secret) -> Result<(), SecretsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_values() {
        let mut s = Secret::new();
        s.set("password", "hunter2-very-secret");
        let shown = format!("{s:?}");
        assert!(shown.contains("password"));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn from_json_rejects_nested_and_names_field() {
        let err = Secret::from_json("conn", r#"{"a":"x","b":{"c":1}}"#).unwrap_err();
        assert!(err.to_string().contains("'b'"), "{err}");
        let err = Secret::from_json("conn", r#"{"password":"hunter2""#).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let s = Secret::from_json("conn", r#"{"a":"x","n":5,"z":null}"#).unwrap();
        assert_eq!(s.get("n"), Some("5"));
        assert_eq!(s.get("z"), None);
    }
}
