//! Small helpers for simulator handlers.

use axum::http::HeaderMap;
use base64::Engine;

/// The credentials after `Authorization: <scheme> ` (scheme compared case-insensitively).
pub fn auth_scheme<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (s, rest) = v.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    auth_scheme(headers, "Bearer")
}

/// `Authorization: Basic base64(user:password)`.
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let raw = auth_scheme(headers, "Basic")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// One page (1-based) of `items` and the number of pages.
pub fn page<T: Clone>(items: &[T], page: usize, per_page: usize) -> (Vec<T>, usize) {
    let per_page = per_page.max(1);
    let pages = items.len().div_ceil(per_page);
    let start = page.saturating_sub(1).saturating_mul(per_page);
    (items.iter().skip(start).take(per_page).cloned().collect(), pages)
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
