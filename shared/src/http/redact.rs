//! Scrubbing secrets from log lines and error messages.

use std::sync::{Arc, RwLock};

use crate::secrets::Secret;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Values shorter than this are not scrubbed by value (they would mangle ordinary text); they are
/// still caught by the key rules (`password=…`, `Authorization: …`).
const MIN_SECRET_LEN: usize = 4;

/// Holds a connection's secret values (passwords, tokens, session ids) and removes them, plus
/// anything that looks like a credential (`Authorization` headers, `token=` / `SessionID=` /
/// `password=` query or form values, `"access_token": "…"` JSON fields), from text.
///
/// Cheap to clone; clones share the set, so tokens learned later (a new session) are scrubbed
/// everywhere.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Arc<RwLock<Vec<String>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor")
    }
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers a secret value (and its URL-encoded form) for scrubbing.
    pub fn add(&self, value: &str) {
        if value.len() < MIN_SECRET_LEN {
            return;
        }
        let mut forms = vec![value.to_string()];
        let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        if encoded != value {
            forms.push(encoded);
        }
        let escaped = serde_json::to_string(value).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        if escaped != value && escaped.len() >= MIN_SECRET_LEN {
            forms.push(escaped.to_string());
        }
        if let Ok(mut v) = self.values.write() {
            for f in forms {
                if !v.contains(&f) {
                    v.push(f);
                }
            }
            // Longest first so a secret containing another is replaced whole.
            v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Remembers every value of a secret.
    pub fn add_secret(&self, secret: &Secret) {
        for v in secret.values() {
            self.add(v);
        }
    }

    /// `text` with known secret values and credential-looking fields replaced by `[REDACTED]`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        if let Ok(values) = self.values.read() {
            for v in values.iter() {
                if out.contains(v.as_str()) {
                    out = out.replace(v.as_str(), REDACTED);
                }
            }
        }
        redact_fields(&out)
    }
}

/// Whether a field / header / parameter name carries a credential.
fn sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let k = k.trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
    k.ends_with("token")
        || k.ends_with("password")
        || k.ends_with("secret")
        || k.ends_with("sessionid")
        || k.ends_with("session_id")
        || k.ends_with("apikey")
        || k.ends_with("api_key")
        || k.ends_with("api-key")
        || matches!(k, "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "pass1" | "pass2" | "code")
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Replaces the values of sensitive `key=value`, `key: value` and `"key": "value"` pairs.
fn redact_fields(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        out.push(c);
        i += 1;
        if c != '=' && c != ':' {
            continue;
        }
        // Find the key before the separator (optionally quoted, optionally followed by spaces).
        let mut end = i - 1;
        while end > 0 && chars[end - 1] == ' ' {
            end -= 1;
        }
        let quoted_key = end > 0 && chars[end - 1] == '"';
        let key_end = if quoted_key { end - 1 } else { end };
        let mut start = key_end;
        while start > 0 && is_key_char(chars[start - 1]) {
            start -= 1;
        }
        if start == key_end {
            continue;
        }
        let key: String = chars[start..key_end].iter().collect();
        if !sensitive_key(&key) {
            continue;
        }
        // Skip spaces, then take the value: quoted up to the closing quote, else up to a delimiter.
        let mut j = i;
        while j < chars.len() && chars[j] == ' ' {
            out.push(' ');
            j += 1;
        }
        if j >= chars.len() {
            break;
        }
        let header_style = c == ':' && !quoted_key;
        if chars[j] == '"' || chars[j] == '\'' {
            let q = chars[j];
            out.push(q);
            j += 1;
            while j < chars.len() && chars[j] != q {
                if chars[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            out.push_str(REDACTED);
            if j < chars.len() {
                out.push(q);
                j += 1;
            }
        } else {
            let stop = |ch: char| {
                if header_style {
                    matches!(ch, '\r' | '\n' | '"' | ',' | '}')
                } else {
                    ch.is_whitespace() || matches!(ch, '&' | '"' | '\'' | ',' | ';' | ')' | '}' | ']' | '<' | '>')
                }
            };
            let begin = j;
            while j < chars.len() && !stop(chars[j]) {
                j += 1;
            }
            if j > begin {
                out.push_str(REDACTED);
            }
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_are_replaced_everywhere() {
        let r = Redactor::new();
        r.add("s3cr3t-pass word");
        r.add("abc"); // too short to scrub by value
        let text = "login failed for s3cr3t-pass word (s3cr3t-pass+word) abc";
        let out = r.redact(text);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(out.contains("abc"), "{out}");
        // Clones share what they learn.
        let clone = r.clone();
        clone.add("late-token-value");
        assert_eq!(r.redact("x late-token-value y"), format!("x {REDACTED} y"));
    }

    #[test]
    fn credential_fields_are_scrubbed_without_knowing_values() {
        let r = Redactor::new();
        let cases = [
            ("GET /Ticket/1?SessionID=abcdef123&AllArticles=1", "abcdef123"),
            ("https://rt/REST/2.0/tickets?token=zzzyyy", "zzzyyy"),
            ("Authorization: Bearer eyJhbGciOi.x.y\nAccept: */*", "eyJhbGciOi"),
            (r#"{"authorization": "token 1-22-333"}"#, "1-22-333"),
            (r#"{"access_token":"at-987","expires_in":3600}"#, "at-987"),
            (r#"{"Password" : "p\"w'd", "UserLogin":"agent"}"#, "p\\\"w"),
            ("grant_type=refresh_token&refresh_token=rt-555&client_secret=cs-1", "rt-555"),
            ("grant_type=refresh_token&refresh_token=rt-555&client_secret=cs-1", "cs-1"),
        ];
        for (text, secret) in cases {
            let out = r.redact(text);
            assert!(!out.contains(secret), "{text} -> {out}");
            assert!(out.contains(REDACTED), "{text} -> {out}");
        }
        // Non-credential fields and values survive.
        let out = r.redact(r#"{"UserLogin":"agent","token_type":"Bearer"} grant_type=refresh_token"#);
        assert!(out.contains("agent") && out.contains("grant_type=refresh_token"), "{out}");
        assert_eq!(r.redact("status=open&id=5"), "status=open&id=5");
    }
}
