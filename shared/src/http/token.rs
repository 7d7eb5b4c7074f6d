//! Credentials held in memory: static secrets (re-read once on 401) and expiring access tokens
//! (single-flight login/refresh, new values stored back to the secrets backend).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use super::Redactor;
use super::{ConnectorError, TokenKind, TokenState};
use crate::secrets::{Secret, Secrets};

/// Secret field names shared by token-based connectors.
pub mod fields {
    pub const ACCESS_TOKEN: &str = "access_token";
    /// RFC 3339.
    pub const ACCESS_TOKEN_EXPIRES_AT: &str = "access_token_expires_at";
    pub const REFRESH_TOKEN: &str = "refresh_token";
    /// RFC 3339.
    pub const REFRESH_TOKEN_EXPIRES_AT: &str = "refresh_token_expires_at";
}

fn is_auth_error(e: &ConnectorError) -> bool {
    matches!(e, ConnectorError::Unauthorized(_) | ConnectorError::TokenExpired(_))
}

async fn load(secrets: &dyn Secrets, name: &str, redactor: &Redactor) -> Result<Secret, ConnectorError> {
    let s = secrets.get(name).await.map_err(|e| ConnectorError::Secrets(e.to_string()))?;
    redactor.add_secret(&s);
    Ok(s)
}

/// A connection's static credentials (API token, user + password), loaded once and re-read
/// when the target rejects them (an operator may have rotated the secret).
pub struct SecretCache {
    secrets: Arc<dyn Secrets>,
    name: String,
    redactor: Redactor,
    cached: Mutex<Option<Secret>>,
}

impl SecretCache {
    pub fn new(secrets: Arc<dyn Secrets>, name: &str, redactor: Redactor) -> Self {
        Self { secrets, name: name.to_string(), redactor, cached: Mutex::new(None) }
    }

    /// The secret's name in the backend.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cached secret, loading it on first use.
    pub async fn get(&self) -> Result<Secret, ConnectorError> {
        let mut c = self.cached.lock().await;
        if let Some(s) = c.as_ref() {
            return Ok(s.clone());
        }
        let s = load(self.secrets.as_ref(), &self.name, &self.redactor).await?;
        *c = Some(s.clone());
        Ok(s)
    }

    /// Reads the secret again from the backend.
    pub async fn reload(&self) -> Result<Secret, ConnectorError> {
        let mut c = self.cached.lock().await;
        let s = load(self.secrets.as_ref(), &self.name, &self.redactor).await?;
        *c = Some(s.clone());
        Ok(s)
    }

    /// A required field's value; the error names the field and secret, never a value.
    pub fn field<'a>(&self, secret: &'a Secret, field: &str) -> Result<&'a str, ConnectorError> {
        secret.require(&self.name, field).map_err(|e| ConnectorError::Config(e.to_string()))
    }

    /// Runs `op` with the secret. If the target rejects the credentials, the secret is re-read
    /// once and `op` retried only if it changed; otherwise the rejection is returned.
    pub async fn with_secret<T, F, Fut>(&self, op: F) -> Result<T, ConnectorError>
    where
        F: Fn(Secret) -> Fut,
        Fut: Future<Output = Result<T, ConnectorError>>,
    {
        let first = self.get().await?;
        match op(first.clone()).await {
            Err(e) if is_auth_error(&e) => {
                let fresh = self.reload().await?;
                if fresh == first {
                    return Err(e);
                }
                tracing::info!(secret = %self.name, "credentials changed in the secrets backend; retrying once");
                op(fresh).await
            }
            other => other,
        }
    }
}

/// A new access token from a login or refresh.
#[derive(Clone, Default)]
pub struct TokenGrant {
    pub access_token: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// A new refresh token (rotation); `None` keeps the stored one.
    pub refresh_token: Option<String>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// Further secret fields to store with the token.
    pub extra: Vec<(String, String)>,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// How a connector obtains an access token (its login or refresh call).
#[async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// Logs in or refreshes with the credentials and tokens in `secret` (the latest stored
    /// version). A rotating refresh token in `secret` must be treated as spent once sent.
    async fn fetch(&self, secret: &Secret) -> Result<TokenGrant, ConnectorError>;
}

struct Cached {
    token: String,
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    /// Newest secret version this process knows.
    secret: Option<Secret>,
    /// `secret` could not be written to the backend; use it rather than the stored one.
    dirty: bool,
}

/// An access token held in memory, loaded from and stored to the connection's secret
/// ([`fields`]), renewed through a [`TokenSource`] when missing or about to expire. One refresh
/// at a time (single-flight); a 401 forces one re-authentication.
pub struct TokenCache {
    secrets: Arc<dyn Secrets>,
    name: String,
    source: Arc<dyn TokenSource>,
    redactor: Redactor,
    kind: TokenKind,
    skew: chrono::Duration,
    state: Mutex<State>,
    fetches: AtomicU64,
}

impl TokenCache {
    /// `name` is the secret; `kind` is reported by [`TokenCache::state`].
    pub fn new(
        secrets: Arc<dyn Secrets>,
        name: &str,
        source: Arc<dyn TokenSource>,
        redactor: Redactor,
        kind: TokenKind,
    ) -> Self {
        Self {
            secrets,
            name: name.to_string(),
            source,
            redactor,
            kind,
            skew: chrono::Duration::seconds(60),
            state: Mutex::new(State::default()),
            fetches: AtomicU64::new(0),
        }
    }

    /// Renew tokens this long before they expire (default 60 s).
    pub fn with_skew(mut self, skew: chrono::Duration) -> Self {
        self.skew = skew;
        self
    }

    /// How many logins/refreshes this cache has made.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn fresh(&self, expires_at: Option<DateTime<Utc>>) -> bool {
        expires_at.is_none_or(|e| e - self.skew > Utc::now())
    }

    async fn current_secret(&self, st: &State) -> Result<Secret, ConnectorError> {
        match (&st.secret, st.dirty) {
            (Some(s), true) => Ok(s.clone()),
            _ => load(self.secrets.as_ref(), &self.name, &self.redactor).await,
        }
    }

    /// The stored token in `secret`, if present and not about to expire.
    fn stored(&self, secret: &Secret) -> Option<Cached> {
        let token = secret.get(fields::ACCESS_TOKEN).filter(|t| !t.is_empty())?;
        let expires_at = secret.get(fields::ACCESS_TOKEN_EXPIRES_AT).and_then(parse_time);
        self.fresh(expires_at).then(|| Cached { token: token.to_string(), expires_at })
    }

    /// A valid access token: cached, else the stored one, else a new one from the source.
    pub async fn token(&self) -> Result<String, ConnectorError> {
        let mut st = self.state.lock().await;
        if let Some(c) = st.token.as_ref().filter(|c| self.fresh(c.expires_at)) {
            return Ok(c.token.clone());
        }
        let secret = self.current_secret(&st).await?;
        if let Some(c) = self.stored(&secret) {
            let t = c.token.clone();
            st.token = Some(c);
            st.secret = Some(secret);
            return Ok(t);
        }
        self.fetch_locked(&mut st, secret).await
    }

    /// A token other than `stale` (which the target rejected): one another caller already got,
    /// one another process stored, or a new one.
    pub async fn reauth(&self, stale: &str) -> Result<String, ConnectorError> {
        let mut st = self.state.lock().await;
        if let Some(c) = st.token.as_ref().filter(|c| c.token != stale && self.fresh(c.expires_at)) {
            return Ok(c.token.clone());
        }
        let secret = self.current_secret(&st).await?;
        if let Some(c) = self.stored(&secret).filter(|c| c.token != stale) {
            let t = c.token.clone();
            st.token = Some(c);
            st.secret = Some(secret);
            return Ok(t);
        }
        tracing::info!(secret = %self.name, "access token rejected; re-authenticating");
        self.fetch_locked(&mut st, secret).await
    }

    /// Runs `op` with a token; if the target rejects it, re-authenticates once and runs `op`
    /// again. A second rejection is returned.
    pub async fn with_token<T, F, Fut>(&self, op: F) -> Result<T, ConnectorError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, ConnectorError>>,
    {
        let token = self.token().await?;
        match op(token.clone()).await {
            Err(e) if is_auth_error(&e) => {
                let fresh = self.reauth(&token).await?;
                op(fresh).await
            }
            other => other,
        }
    }

    /// Obtains a new token now and stores it (the token refresher).
    pub async fn refresh(&self) -> Result<TokenState, ConnectorError> {
        let mut st = self.state.lock().await;
        let secret = self.current_secret(&st).await?;
        self.fetch_locked(&mut st, secret).await?;
        if st.dirty {
            return Err(ConnectorError::Secrets(format!(
                "a new token was obtained but could not be stored in secret '{}'",
                self.name
            )));
        }
        Ok(TokenState { kind: self.kind.clone(), expires_at: st.token.as_ref().and_then(|c| c.expires_at) })
    }

    /// Expiry of the stored token (`None` when none is stored or its expiry is unknown).
    pub async fn state(&self) -> Result<TokenState, ConnectorError> {
        let st = self.state.lock().await;
        let secret = self.current_secret(&st).await?;
        let expires_at = secret
            .get(fields::ACCESS_TOKEN)
            .filter(|t| !t.is_empty())
            .and_then(|_| secret.get(fields::ACCESS_TOKEN_EXPIRES_AT))
            .and_then(parse_time);
        Ok(TokenState { kind: self.kind.clone(), expires_at })
    }

    async fn fetch_locked(&self, st: &mut State, secret: Secret) -> Result<String, ConnectorError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let grant = self.source.fetch(&secret).await?;
        if grant.access_token.is_empty() {
            return Err(ConnectorError::Malformed("token response has an empty access token".into()));
        }
        self.redactor.add(&grant.access_token);
        let mut next = secret;
        next.set(fields::ACCESS_TOKEN, grant.access_token.clone());
        match grant.expires_at {
            Some(e) => next.set(fields::ACCESS_TOKEN_EXPIRES_AT, e.to_rfc3339()),
            None => {
                next.remove(fields::ACCESS_TOKEN_EXPIRES_AT);
            }
        }
        if let Some(r) = &grant.refresh_token {
            self.redactor.add(r);
            next.set(fields::REFRESH_TOKEN, r.clone());
        }
        if let Some(e) = grant.refresh_expires_at {
            next.set(fields::REFRESH_TOKEN_EXPIRES_AT, e.to_rfc3339());
        }
        for (k, v) in &grant.extra {
            next.set(k.clone(), v.clone());
        }
        st.token = Some(Cached { token: grant.access_token.clone(), expires_at: grant.expires_at });
        st.dirty = match self.secrets.put(&self.name, &next).await {
            Ok(()) => false,
            Err(e) => {
                tracing::error!(secret = %self.name, error = %e, "could not store the new token; keeping it in memory");
                true
            }
        };
        st.secret = Some(next);
        Ok(grant.access_token)
    }
}

/// Parses an RFC 3339 timestamp.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc))
}
