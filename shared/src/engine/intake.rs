//! Strict parsing of `POST /v1/tasks` bodies into [`NewTask`], with errors that name the field.
//!
//! Callers that fill templates without guards (Saviynt's `${user.email}` placeholders) send `""`
//! for values they do not have: a blank string, and an object whose every field is blank, count as
//! absent. A required field that is absent or blank is a 422 naming it.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use super::ApiError;
use crate::config::valid_name;
use crate::domain::{AccessAction, AccessTask, Alert, NewTask, Organization, Person, Severity, TaskPayload};

const MAX_ID: usize = 256;
const MAX_TEXT: usize = 4_000;
const MAX_ENTITLEMENTS: usize = 200;
const MAX_DEPTH: usize = 16;

/// Parses and validates a task submission (raw bytes, already within the size limit).
pub fn parse_task(body: &[u8]) -> Result<NewTask, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let msg = if e.is_eof() {
            "body is not complete JSON".to_string()
        } else {
            format!("body is not valid JSON (line {}, column {})", e.line(), e.column())
        };
        ApiError::bad_request("invalid_json", None, msg)
    })?;
    if depth(&value) > MAX_DEPTH {
        return Err(ApiError::invalid(None, format!("body nests deeper than {MAX_DEPTH} levels")));
    }
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid(None, "body must be a JSON object"));
    };
    let mut f = Fields::new(obj, "");
    let source = f.req_str("source", 64)?;
    if !valid_name(&source) {
        return Err(ApiError::invalid(Some("source"), "must match [a-z0-9._-]{1,64}"));
    }
    let external_id = f.req_str("external_id", MAX_ID)?;
    let kind = f.req_str("kind", 16)?;
    let organization = f.opt_obj("organization")?.map(parse_org).transpose()?;
    let connection = f.opt_str("connection", 64)?;
    if let Some(c) = &connection
        && !valid_name(c)
    {
        return Err(ApiError::invalid(Some("connection"), "must match [a-z0-9._-]{1,64}"));
    }
    let callback_url = f.opt_str("callback_url", 2048)?;
    if let Some(u) = &callback_url {
        let parsed =
            url::Url::parse(u).map_err(|e| ApiError::invalid(Some("callback_url"), format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
            return Err(ApiError::invalid(Some("callback_url"), "must be an https:// URL with a host"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ApiError::invalid(Some("callback_url"), "must not carry credentials"));
        }
    }
    let payload = match kind.as_str() {
        "access" => {
            let action_s = f.req_str("action", 32)?;
            let action = AccessAction::parse(&action_s).ok_or_else(|| {
                ApiError::invalid(
                    Some("action"),
                    format!(
                        "unknown action '{}'; expected one of {}",
                        clip(&action_s),
                        AccessAction::ALL.map(|a| a.as_str()).join(", ")
                    ),
                )
            })?;
            let user = parse_person(f.req_obj("user")?, "user")?;
            if user.id.is_none() && user.email.is_none() {
                return Err(ApiError::invalid(Some("user"), "needs at least one of id or email"));
            }
            let application = f.req_str("application", MAX_ID)?;
            let entitlements = f.opt_str_list("entitlements", MAX_ENTITLEMENTS)?;
            if matches!(action, AccessAction::AddAccess | AccessAction::RemoveAccess) && entitlements.is_empty() {
                return Err(ApiError::invalid(
                    Some("entitlements"),
                    format!("must name at least one entitlement for {}", action.as_str()),
                ));
            }
            let requester = f.opt_obj("requester")?.map(|o| parse_person(o, "requester")).transpose()?;
            let justification = f.opt_str("justification", MAX_TEXT)?;
            let due_at = f.opt_time("due_at")?;
            TaskPayload::Access(AccessTask {
                action,
                user,
                application,
                entitlements,
                requester,
                justification,
                due_at,
            })
        }
        "alert" => {
            let user_email = f.req_str("user_email", 320)?;
            if !looks_like_email(&user_email) {
                return Err(ApiError::invalid(Some("user_email"), "is not an e-mail address"));
            }
            let alert_type = f.req_str("alert_type", 128)?;
            let sev = f.req_str("severity", 16)?;
            let severity = Severity::parse(&sev).ok_or_else(|| {
                ApiError::invalid(
                    Some("severity"),
                    format!(
                        "unknown severity '{}'; expected one of {}",
                        clip(&sev),
                        Severity::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            })?;
            let occurred_at = f.opt_time("occurred_at")?;
            let details = f.opt_obj("details")?.unwrap_or_default();
            TaskPayload::Alert(Alert { user_email, alert_type, severity, occurred_at, details })
        }
        other => {
            return Err(ApiError::invalid(
                Some("kind"),
                format!("unknown kind '{}'; expected one of access, alert", clip(other)),
            ));
        }
    };
    f.finish()?;
    Ok(NewTask { source, external_id, payload, organization, connection, callback_url })
}

fn parse_org(obj: Map<String, Value>) -> Result<Organization, ApiError> {
    let mut f = Fields::new(obj, "organization.");
    let id = f.req_str("id", MAX_ID)?;
    let name = f.opt_str("name", MAX_ID)?;
    f.finish()?;
    Ok(Organization { id, name })
}

fn parse_person(obj: Map<String, Value>, prefix: &str) -> Result<Person, ApiError> {
    let mut f = Fields::new(obj, &format!("{prefix}."));
    let id = f.opt_str("id", MAX_ID)?;
    let name = f.opt_str("name", MAX_ID)?;
    let email = f.opt_str("email", 320)?;
    if let Some(e) = &email
        && !looks_like_email(e)
    {
        return Err(ApiError::invalid(Some(&format!("{prefix}.email")), "is not an e-mail address"));
    }
    f.finish()?;
    Ok(Person { id, name, email })
}

/// Null, a blank string, or an object (not an array) whose every value is blank.
fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Object(o) => {
            o.values().all(|x| matches!(x, Value::Null) || x.as_str().is_some_and(|s| s.trim().is_empty()))
        }
        _ => false,
    }
}

/// RFC 3339, or exactly `yyyy-MM-dd HH:mm:ss` / `yyyy-MM-dd` read as UTC; nothing else.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // chrono's %Y/%m/%d also take signs and short fields; insist on the fixed shape first.
    let shape = |pattern: &str| {
        s.len() == pattern.len()
            && s.bytes().zip(pattern.bytes()).all(|(c, p)| if p == b'9' { c.is_ascii_digit() } else { c == p })
    };
    if shape("9999-99-99 99:99:99") {
        return NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok().map(|t| t.and_utc());
    }
    if shape("9999-99-99") {
        return NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc());
    }
    None
}

fn looks_like_email(s: &str) -> bool {
    let mut parts = s.splitn(2, '@');
    let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

fn depth(v: &Value) -> usize {
    // Iterative, so hostile nesting cannot overflow the stack.
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

/// Shortens user-supplied text echoed in an error.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

/// Takes fields out of an object one by one; `finish` rejects whatever is left (unknown fields).
struct Fields {
    obj: Map<String, Value>,
    prefix: String,
}

impl Fields {
    fn new(obj: Map<String, Value>, prefix: &str) -> Self {
        Self { obj, prefix: prefix.to_string() }
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The value under `key`; null, a blank string and an object of only such values are absent.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.obj.remove(key).filter(|v| !is_blank(v))
    }

    fn opt_str(&mut self, key: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let t = s.trim();
                if t.chars().count() > max {
                    return Err(ApiError::invalid(Some(&self.name(key)), format!("is longer than {max} characters")));
                }
                if max <= MAX_ID && t.chars().any(char::is_control) {
                    return Err(ApiError::invalid(Some(&self.name(key)), "must not contain control characters"));
                }
                Ok(Some(t.to_string()))
            }
            Some(_) => Err(ApiError::invalid(Some(&self.name(key)), "must be a string")),
        }
    }

    fn req_str(&mut self, key: &str, max: usize) -> Result<String, ApiError> {
        self.opt_str(key, max)?.ok_or_else(|| ApiError::invalid(Some(&self.name(key)), "is required (absent or empty)"))
    }

    fn opt_obj(&mut self, key: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(ApiError::invalid(Some(&self.name(key)), "must be an object")),
        }
    }

    fn req_obj(&mut self, key: &str) -> Result<Map<String, Value>, ApiError> {
        self.opt_obj(key)?.ok_or_else(|| {
            ApiError::invalid(Some(&self.name(key)), "is required (absent, or every field in it is empty)")
        })
    }

    fn opt_str_list(&mut self, key: &str, max: usize) -> Result<Vec<String>, ApiError> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                if items.len() > max {
                    return Err(ApiError::invalid(Some(&self.name(key)), format!("has more than {max} items")));
                }
                // Blank items (an empty placeholder) are dropped like blank fields.
                items
                    .into_iter()
                    .enumerate()
                    .filter(|(_, v)| !is_blank(v))
                    .map(|(i, v)| match v {
                        Value::String(s) if s.trim().chars().count() <= MAX_ID => Ok(s.trim().to_string()),
                        _ => Err(ApiError::invalid(
                            Some(&format!("{}[{i}]", self.name(key))),
                            format!("must be a string of at most {MAX_ID} characters"),
                        )),
                    })
                    .collect()
            }
            Some(_) => Err(ApiError::invalid(Some(&self.name(key)), "must be an array of strings")),
        }
    }

    fn opt_time(&mut self, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        match self.opt_str(key, 64)? {
            None => Ok(None),
            Some(s) => parse_time(&s).map(Some).ok_or_else(|| {
                ApiError::invalid(
                    Some(&self.name(key)),
                    "must be an RFC 3339 time (2026-12-01T09:30:00Z), or 2026-12-01 09:30:00 or 2026-12-01 (UTC)",
                )
            }),
        }
    }

    fn finish(self) -> Result<(), ApiError> {
        match self.obj.keys().next() {
            None => Ok(()),
            Some(k) => Err(ApiError::invalid(Some(&self.name(k)), "unknown field")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn access() -> Value {
        json!({"source":"saviynt","external_id":"TASK-88121","kind":"access","action":"add_access",
          "user":{"id":"u-17","name":"Ada Lovelace","email":"ada@example.com"},"application":"Payroll",
          "entitlements":["payroll-admin"],"requester":{"name":"Grace Hopper","email":"grace@example.com"},
          "justification":"new role","due_at":"2026-12-01T00:00:00Z",
          "organization":{"id":"org-1","name":"Acme Corp"},"connection":"bms-main",
          "callback_url":"https://iga.example.com/hooks/bridge"})
    }

    fn alert() -> Value {
        json!({"source":"saas-alerts","external_id":"ALRT-5521","kind":"alert",
          "organization":{"id":"org-1","name":"Acme Corp"},"user_email":"bob@acme.com",
          "alert_type":"Too Many Downloads","severity":"high","occurred_at":"2026-11-23T10:00:00Z",
          "details":{"any":"json object, rendered into the ticket"}})
    }

    fn err_of(v: Value) -> ApiError {
        parse_task(v.to_string().as_bytes()).unwrap_err()
    }

    #[test]
    fn api_doc_examples_parse() {
        let t = parse_task(access().to_string().as_bytes()).unwrap();
        assert!(matches!(t.payload, TaskPayload::Access(ref a) if a.action == AccessAction::AddAccess));
        assert_eq!(t.connection.as_deref(), Some("bms-main"));
        let t = parse_task(alert().to_string().as_bytes()).unwrap();
        assert!(matches!(t.payload, TaskPayload::Alert(ref a) if a.severity == Severity::High));
    }

    #[test]
    fn unknown_action_names_field_and_choices() {
        let mut v = access();
        v["action"] = json!("grant");
        let e = err_of(v);
        assert_eq!(e.field.as_deref(), Some("action"));
        assert!(e.message.contains("create_account, add_access"), "{}", e.message);
        assert_eq!(e.status, 422);
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let mut v = alert();
        v["organization"]["tier"] = json!("gold");
        assert_eq!(err_of(v).field.as_deref(), Some("organization.tier"));
        let mut v = access();
        v["colour"] = json!("red");
        assert_eq!(err_of(v).field.as_deref(), Some("colour"));
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("source", json!("Sav iynt"), "source"),
            ("severity", json!("urgent"), "severity"),
            ("user_email", json!("not-an-email"), "user_email"),
            ("occurred_at", json!("yesterday"), "occurred_at"),
            ("kind", json!("incident"), "kind"),
            ("external_id", json!(""), "external_id"),
            ("external_id", json!(12), "external_id"),
            ("details", json!([1]), "details"),
            ("callback_url", json!("ftp://x.example"), "callback_url"),
        ];
        for (key, val, field) in cases {
            let mut v = alert();
            v[key] = val;
            assert_eq!(err_of(v).field.as_deref(), Some(field), "{key}");
        }
        let mut v = access();
        v["entitlements"] = json!(["ok", 7]);
        assert_eq!(err_of(v).field.as_deref(), Some("entitlements[1]"));
        let mut v = access();
        v["user"] = json!({"name": "no id"});
        assert_eq!(err_of(v).field.as_deref(), Some("user"));
    }

    #[test]
    fn blank_optional_fields_count_as_absent() {
        let mut v = access();
        for key in ["justification", "due_at", "connection", "callback_url"] {
            v[key] = json!("  ");
        }
        v["requester"] = json!({"name": "", "email": ""});
        v["organization"] = json!({"id": "", "name": null});
        v["user"]["name"] = json!("");
        v["entitlements"] = json!(["payroll-admin", ""]);
        let blank = parse_task(v.to_string().as_bytes()).unwrap();
        let mut w = access();
        for key in ["justification", "due_at", "connection", "callback_url", "requester", "organization"] {
            w.as_object_mut().unwrap().remove(key);
        }
        w["user"].as_object_mut().unwrap().remove("name");
        let absent = parse_task(w.to_string().as_bytes()).unwrap();
        assert_eq!(blank, absent);
        assert_eq!(blank.fingerprint(), absent.fingerprint());
    }

    #[test]
    fn blank_required_fields_are_named() {
        for (key, val, field) in [
            ("external_id", json!(""), "external_id"),
            ("application", json!(" "), "application"),
            ("user", json!({"id": "", "email": ""}), "user"),
            ("entitlements", json!([""]), "entitlements"),
        ] {
            let mut v = access();
            v[key] = val;
            let e = err_of(v);
            assert_eq!((e.status, e.field.as_deref()), (422, Some(field)), "{key}: {}", e.message);
        }
        // Half-filled nested objects still name the missing field.
        let mut v = access();
        v["organization"] = json!({"id": "", "name": "Acme"});
        assert_eq!(err_of(v).field.as_deref(), Some("organization.id"));
    }

    #[test]
    fn dates_take_rfc3339_and_the_two_plain_utc_forms_only() {
        let at = |s: &str| {
            let mut v = access();
            v["due_at"] = json!(s);
            parse_task(v.to_string().as_bytes()).map(|t| match t.payload {
                TaskPayload::Access(a) => a.due_at.map(|d| d.to_rfc3339()),
                TaskPayload::Alert(_) => None,
            })
        };
        assert_eq!(at("2026-12-01T09:30:00+02:00").unwrap().as_deref(), Some("2026-12-01T07:30:00+00:00"));
        assert_eq!(at("2026-12-01 09:30:00").unwrap().as_deref(), Some("2026-12-01T09:30:00+00:00"));
        assert_eq!(at("2026-12-01").unwrap().as_deref(), Some("2026-12-01T00:00:00+00:00"));
        for bad in [
            "12/01/2026",
            "2026-12-01T09:30:00",
            "2026-12-1",
            "2026-13-01",
            "2026-12-01 9:30:00",
            "+2026-12-01",
            "2026-02-30",
            "01-12-2026",
            "2026-12-01 09:30",
        ] {
            let e = at(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("due_at"), "{bad}");
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        for key in ["source", "external_id", "kind", "user_email", "alert_type", "severity"] {
            let mut v = alert();
            v.as_object_mut().unwrap().remove(key);
            let e = err_of(v);
            assert_eq!(e.field.as_deref(), Some(key));
            assert!(e.message.contains("required"));
        }
    }

    #[test]
    fn invalid_json_and_deep_nesting_are_rejected() {
        assert_eq!(parse_task(b"{\"source\":").unwrap_err().code, "invalid_json");
        assert_eq!(parse_task(&[0xff, 0xfe]).unwrap_err().code, "invalid_json");
        assert_eq!(parse_task(b"[1,2]").unwrap_err().status, 422);
        let mut deep = String::new();
        for _ in 0..100 {
            deep.push_str("{\"a\":");
        }
        deep.push('1');
        for _ in 0..100 {
            deep.push('}');
        }
        let mut v = alert();
        v["details"] = serde_json::from_str(&deep).unwrap_or(json!({}));
        let body = v.to_string();
        assert!(parse_task(body.as_bytes()).unwrap_err().message.contains("deeper"));
    }
}
