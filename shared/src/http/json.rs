//! JSON helpers for response bodies: parse errors that never echo values, and RFC 6901 pointers.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ConnectorError;

/// Parses `body` as `T`. The error names the position and missing/unknown fields, never values
/// (a body may carry tokens).
pub fn parse_json<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ConnectorError> {
    serde_json::from_slice(body).map_err(|e| ConnectorError::Malformed(format!("{what}: {}", describe(&e))))
}

/// A serde_json error without the offending value.
pub fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("at line {} column {}", e.line(), e.column());
    match e.classify() {
        Category::Syntax | Category::Eof => format!("invalid JSON {at}"),
        Category::Io => format!("read error {at}"),
        Category::Data => {
            let msg = e.to_string();
            let safe = ["missing field", "unknown field", "duplicate field"];
            match safe.iter().find(|p| msg.starts_with(*p)) {
                Some(_) => msg.split(" at line ").next().map(|m| format!("{m} {at}")).unwrap_or(msg),
                None => format!("unexpected value {at}"),
            }
        }
    }
}

/// Whether `p` is a syntactically valid JSON pointer (RFC 6901): empty, or `/`-prefixed with
/// `~` only in `~0` / `~1` escapes.
pub fn valid_pointer(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    if !p.starts_with('/') {
        return false;
    }
    let b = p.as_bytes();
    b.iter().enumerate().all(|(i, &c)| c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

/// The value at `pointer` as text: strings as-is, numbers and booleans rendered; `None` when
/// absent, null, or an object/array.
pub fn pointer_str(value: &Value, pointer: &str) -> Option<String> {
    match value.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Like [`pointer_str`] but absence is a [`ConnectorError::Malformed`] naming the pointer.
pub fn require_str(value: &Value, pointer: &str, what: &str) -> Result<String, ConnectorError> {
    pointer_str(value, pointer)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ConnectorError::Malformed(format!("{what}: no value at JSON pointer '{pointer}'")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Tok {
        access_token: String,
        expires_in: u64,
    }

    #[test]
    fn parse_errors_do_not_echo_values() {
        let err =
            parse_json::<Tok>(br#"{"access_token":"sekrit-123","expires_in":"soon-sekrit"}"#, "token").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConnectorError::Malformed(_)));
        assert!(!msg.contains("sekrit"), "{msg}");
        let err = parse_json::<Tok>(br#"{"expires_in":5}"#, "token").unwrap_err();
        assert!(err.to_string().contains("missing field `access_token`"), "{err}");
        let err = parse_json::<Tok>(br#"{"access_token":"sekrit"#, "token").unwrap_err();
        assert!(err.to_string().contains("invalid JSON"), "{err}");
        assert!(!err.to_string().contains("sekrit"), "{err}");
    }

    #[test]
    fn pointers() {
        let v = serde_json::json!({"a": {"b/c": [1, "x"], "t": true, "n": null}});
        assert_eq!(pointer_str(&v, "/a/b~1c/0").as_deref(), Some("1"));
        assert_eq!(pointer_str(&v, "/a/b~1c/1").as_deref(), Some("x"));
        assert_eq!(pointer_str(&v, "/a/t").as_deref(), Some("true"));
        assert_eq!(pointer_str(&v, "/a/n"), None);
        assert_eq!(pointer_str(&v, "/a"), None);
        assert!(require_str(&v, "/zz", "create").unwrap_err().to_string().contains("'/zz'"));
        assert!(valid_pointer("") && valid_pointer("/a/~0b") && !valid_pointer("a/b") && !valid_pointer("/a~2"));
    }
}
