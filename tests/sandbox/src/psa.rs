//! Helpers shared by the PSA simulators (BMS, VSA, NinjaOne, OTRS).

use axum::extract::Multipart;
use axum::http::{HeaderMap, header};
use std::collections::HashMap;

/// Text Ticket Bridge puts before the correlation key in ticket bodies.
pub const MARKER_PREFIX: &str = "Ticket Bridge reference: tb-";

/// The correlation key in a ticket body, if the marker is there.
pub fn marker_key(text: &str) -> Option<String> {
    let at = text.find(MARKER_PREFIX)? + MARKER_PREFIX.len();
    let key: String = text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    (!key.is_empty()).then_some(key)
}

/// Case-insensitive substring test (`*` / `%` wildcards at the ends are ignored).
pub fn contains_ci(haystack: &str, needle: &str) -> bool {
    let needle = needle.trim_matches(|c| c == '*' || c == '%');
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// Whether the request's `Content-Type` is one of `accepted` (parameters ignored; `type/*+json`
/// wildcards allowed). JSON endpoints of the real APIs answer 415 otherwise.
pub fn content_type_is(headers: &HeaderMap, accepted: &[&str]) -> bool {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    accepted.iter().any(|a| match a.split_once("/*") {
        Some((ty, suffix)) => {
            media.strip_prefix(ty).is_some_and(|rest| rest.starts_with('/') && rest.ends_with(suffix))
        }
        None => media == *a,
    })
}

/// All text fields of a multipart/form-data body (`None` if it is not valid multipart).
pub async fn multipart_fields(mut form: Multipart) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                let text = field.text().await.ok()?;
                out.insert(name, text);
            }
            Ok(None) => return Some(out),
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_key_is_extracted() {
        assert_eq!(marker_key("body\n\nTicket Bridge reference: tb-01ABC\n").as_deref(), Some("01ABC"));
        assert_eq!(marker_key("Ticket Bridge reference: tb-"), None);
        assert_eq!(marker_key("nothing"), None);
        assert!(contains_ci("Hello World", "*world*"));
        assert!(!contains_ci("Hello", "bye"));
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/vnd.x+json; charset=utf-8".parse().unwrap());
        assert!(content_type_is(&h, &["application/*+json"]));
        assert!(!content_type_is(&h, &["application/json"]));
        assert!(!content_type_is(&HeaderMap::new(), &["application/json"]));
    }
}
