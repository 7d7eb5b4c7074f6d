//! Console sessions, HttpOnly and SameSite=Strict cookies with a CSRF token per session, in one of
//! two kinds:
//!
//! - in memory (`ticket-bridge serve`): the cookie holds a random id; the admin API key stays in
//!   the process, never in the cookie, a URL or a log line;
//! - sealed (the console Lambda function, where requests land on any of several short-lived
//!   instances): the cookie holds the session itself (key, CSRF token, expiry) encrypted and
//!   authenticated with AES-256-GCM under a key from the secrets backend, so the browser holds
//!   ciphertext only. Every request still authenticates the key against `[[auth.api_keys]]`, so
//!   removing a key from the configuration ends its sessions at once.

use http::HeaderMap;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const COOKIE: &str = "tb_console";
/// How long a session lasts without use.
const IDLE: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most (oldest dropped first), so anonymous visits cannot grow memory forever.
const MAX_SESSIONS: usize = 1000;

/// One browser's session.
#[derive(Clone)]
pub struct Session {
    pub id: String,
    /// The admin API key the user signed in with; `None` before sign-in and in open mode.
    pub key: Option<String>,
    pub csrf: String,
    last_used: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("signed_in", &self.key.is_some()).finish_non_exhaustive()
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant-time compare).
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(self.csrf.as_bytes())))
    }
}

/// The sessions of the console: in this process's memory (the default), or sealed in the cookies.
#[derive(Clone, Default)]
pub struct Sessions {
    memory: Arc<Mutex<HashMap<String, Session>>>,
    sealer: Option<Arc<Sealer>>,
}

impl Sessions {
    /// Sessions sealed in their cookies with a key derived from `secret` (see the module docs).
    pub fn sealed(secret: &[u8]) -> Self {
        Self { memory: Default::default(), sealer: Some(Arc::new(Sealer::new(secret))) }
    }

    /// The live session named by the request's cookie, if any (refreshing its idle timer).
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        if let Some(sealer) = &self.sealer {
            return sealer.open(&id);
        }
        let mut map = self.memory.lock().ok()?;
        let s = map.get_mut(&id)?;
        if s.last_used.elapsed() > IDLE {
            map.remove(&id);
            return None;
        }
        s.last_used = Instant::now();
        Some(s.clone())
    }

    /// Starts a new session holding `key` (a fresh id on sign-in, so an id set before cannot be reused).
    pub fn start(&self, key: Option<String>) -> Session {
        if let Some(sealer) = &self.sealer {
            return sealer.seal(key, random_token());
        }
        let s = Session { id: random_token(), key, csrf: random_token(), last_used: Instant::now() };
        if let Ok(mut map) = self.memory.lock() {
            map.retain(|_, v| v.last_used.elapsed() <= IDLE);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map.iter().min_by_key(|(_, v)| v.last_used).map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
            map.insert(s.id.clone(), s.clone());
        }
        s
    }

    /// Ends a session (a sealed one ends when its cookie is cleared or expires).
    pub fn end(&self, id: &str) {
        if let Ok(mut map) = self.memory.lock() {
            map.remove(id);
        }
    }
}

/// Seals sessions into cookie values: hex of nonce ‖ AES-256-GCM(expiry, CSRF token, key).
struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    fn new(secret: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, secret);
        let unbound = UnboundKey::new(&AES_256_GCM, digest.as_ref()).unwrap_or_else(|_| unreachable!("32-byte key"));
        Self { key: LessSafeKey::new(unbound) }
    }

    fn seal(&self, key: Option<String>, csrf: String) -> Session {
        let expires = chrono::Utc::now().timestamp().saturating_add(IDLE.as_secs().cast_signed());
        let mut data = format!("{expires}\n{csrf}\n{}", key.as_deref().unwrap_or("")).into_bytes();
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(COOKIE), &mut data)
            .is_ok();
        // Sealing fails only for inputs beyond GCM's size limit; such a session is never found again.
        let id = if sealed { format!("{}{}", hex::encode(nonce_bytes), hex::encode(&data)) } else { String::new() };
        Session { id, key, csrf, last_used: Instant::now() }
    }

    fn open(&self, value: &str) -> Option<Session> {
        let bytes = hex::decode(value).ok()?;
        if bytes.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = rest.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(COOKIE), &mut data).ok()?;
        let text = std::str::from_utf8(plain).ok()?;
        let mut parts = text.splitn(3, '\n');
        let expires: i64 = parts.next()?.parse().ok()?;
        let csrf = parts.next()?.to_string();
        let key = parts.next()?;
        if chrono::Utc::now().timestamp() >= expires {
            return None;
        }
        let key = (!key.is_empty()).then(|| key.to_string());
        Some(Session { id: value.to_string(), key, csrf, last_used: Instant::now() })
    }
}

/// 256 random bits, hex.
pub(crate) fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// The `Set-Cookie` value for `session`; `Secure` when the browser reached us over https.
pub fn set_cookie(session: &Session, https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", session.id, IDLE.as_secs())
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// Whether the request came over https (directly or through a proxy that says so).
pub fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        line.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_and_checks_its_csrf_token() {
        let sessions = Sessions::default();
        let s = sessions.start(Some("secret-key".into()));
        let mut h = HeaderMap::new();
        h.insert("cookie", format!("other=1; {COOKIE}={}", s.id).parse().unwrap());
        let found = sessions.find(&h).unwrap();
        assert_eq!(found.key.as_deref(), Some("secret-key"));
        assert!(found.csrf_ok(Some(&s.csrf)));
        assert!(!found.csrf_ok(Some("nope")));
        assert!(!found.csrf_ok(None));
        assert!(!format!("{found:?}").contains("secret-key"), "the key never reaches a log line");
        sessions.end(&s.id);
        assert!(sessions.find(&h).is_none());
    }

    #[test]
    fn a_sealed_session_travels_in_its_cookie_and_cannot_be_forged_or_read() {
        let sessions = Sessions::sealed(b"console secret");
        let s = sessions.start(Some("admin-key-123".into()));
        assert!(!s.id.contains("admin-key-123") && !s.id.contains(&hex::encode("admin-key-123")));
        let mut h = HeaderMap::new();
        h.insert("cookie", format!("{COOKIE}={}", s.id).parse().unwrap());
        // Another instance with the same secret opens it.
        let found = Sessions::sealed(b"console secret").find(&h).unwrap();
        assert_eq!(found.key.as_deref(), Some("admin-key-123"));
        assert!(found.csrf_ok(Some(&s.csrf)));
        // A different secret, or one flipped byte, opens nothing.
        assert!(Sessions::sealed(b"other secret").find(&h).is_none());
        let mut forged = s.id.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        let mut h2 = HeaderMap::new();
        h2.insert("cookie", format!("{COOKIE}={}", String::from_utf8(forged).unwrap()).parse().unwrap());
        assert!(sessions.find(&h2).is_none());
        let anon = sessions.start(None);
        h.insert("cookie", format!("{COOKIE}={}", anon.id).parse().unwrap());
        assert_eq!(sessions.find(&h).unwrap().key, None);
    }

    #[test]
    fn cookies_are_httponly_strict_and_secure_only_over_https() {
        let s = Sessions::default().start(None);
        let plain = set_cookie(&s, false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict") && !plain.contains("Secure"));
        assert!(set_cookie(&s, true).ends_with("; Secure"));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(is_https(&h));
        assert!(!is_https(&HeaderMap::new()));
    }
}
