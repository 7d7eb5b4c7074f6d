//! Issued credentials of a simulator: access/session tokens with expiry, rotating refresh tokens,
//! static API tokens; revocation and forced expiry for tests.

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Short-lived bearer / session token.
    Access,
    /// Exchanged for a new access token (rotated: usable once).
    Refresh,
    /// Long-lived token created by a person (RT auth token, API key, PAT).
    Static,
}

/// A token's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub kind: TokenKind,
    /// Who it was issued to (user, client id, API key id).
    pub subject: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

/// Result of presenting a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    Valid(TokenInfo),
    Expired,
    Revoked,
    Unknown,
}

/// The token registry.
#[derive(Debug, Default)]
pub struct Tokens {
    map: Mutex<HashMap<String, TokenInfo>>,
    issued: Mutex<HashMap<TokenKind, u64>>,
}

/// A random token with a readable prefix.
pub fn random_token(prefix: &str) -> String {
    let tail: String = rand::rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect();
    format!("{prefix}{tail}")
}

impl Tokens {
    /// Issues a new random token; returns it and its expiry.
    pub fn issue(
        &self,
        kind: TokenKind,
        subject: &str,
        scopes: &[String],
        ttl: Option<Duration>,
    ) -> (String, Option<DateTime<Utc>>) {
        let prefix = match kind {
            TokenKind::Access => "at_",
            TokenKind::Refresh => "rt_",
            TokenKind::Static => "st_",
        };
        let token = random_token(prefix);
        let expires_at = ttl.and_then(|t| chrono::Duration::from_std(t).ok()).map(|t| Utc::now() + t);
        self.insert(
            &token,
            TokenInfo { kind, subject: subject.to_string(), scopes: scopes.to_vec(), expires_at, revoked: false },
        );
        *self.issued.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_default() += 1;
        (token, expires_at)
    }

    /// Registers a known token (e.g. a static API token from the simulator's config).
    pub fn insert(&self, token: &str, info: TokenInfo) {
        self.lock().insert(token.to_string(), info);
    }

    /// Checks a presented token of `kind`.
    pub fn check(&self, token: &str, kind: TokenKind) -> TokenCheck {
        match self.lock().get(token) {
            Some(i) if i.kind != kind => TokenCheck::Unknown,
            Some(i) if i.revoked => TokenCheck::Revoked,
            Some(i) if i.expires_at.is_some_and(|e| e <= Utc::now()) => TokenCheck::Expired,
            Some(i) => TokenCheck::Valid(i.clone()),
            None => TokenCheck::Unknown,
        }
    }

    /// Checks a refresh token and spends it (rotation: a second use is `Revoked`).
    pub fn consume(&self, token: &str, kind: TokenKind) -> TokenCheck {
        let check = self.check(token, kind);
        if let (TokenCheck::Valid(_), Some(i)) = (&check, self.lock().get_mut(token)) {
            i.revoked = true;
        }
        check
    }

    /// Revokes every token of the given kinds.
    pub fn revoke(&self, kinds: &[TokenKind]) {
        for i in self.lock().values_mut() {
            if kinds.contains(&i.kind) {
                i.revoked = true;
            }
        }
    }

    /// Revokes one token.
    pub fn revoke_token(&self, token: &str) {
        if let Some(i) = self.lock().get_mut(token) {
            i.revoked = true;
        }
    }

    /// Makes every access token expired now (the server-side clock moved on).
    pub fn expire_access(&self) {
        let now = Utc::now();
        for i in self.lock().values_mut() {
            if i.kind == TokenKind::Access {
                i.expires_at = Some(now);
            }
        }
    }

    /// How many tokens of `kind` were issued (e.g. logins performed).
    pub fn issued(&self, kind: TokenKind) -> u64 {
        self.issued.lock().unwrap_or_else(|p| p.into_inner()).get(&kind).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TokenInfo>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}
