//! Console sessions: a random id in an HttpOnly, SameSite=Strict cookie, the admin API key kept
//! server-side (never in the cookie, a URL or a log line), and a CSRF token per session.

use axum::http::HeaderMap;
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

/// All sessions of this process.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, Session>>>);

impl Sessions {
    /// The live session named by the request's cookie, if any (refreshing its idle timer).
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let mut map = self.0.lock().ok()?;
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
        let s = Session { id: random_token(), key, csrf: random_token(), last_used: Instant::now() };
        if let Ok(mut map) = self.0.lock() {
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

    /// Ends a session.
    pub fn end(&self, id: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(id);
        }
    }
}

/// 256 random bits, hex.
fn random_token() -> String {
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
    headers.get_all(axum::http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
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
