//! Options of the generic REST connector: parsing, validation (errors name the option key) and
//! the request templates.
//!
//! Templates are minijinja. Placeholders are escaped by where they appear:
//! - `url`: every value is percent-encoded (cannot add path segments or query parameters);
//! - `body`: every value is inserted as a JSON value (`{{ title }}` → `"the \"title\""`), so
//!   write placeholders *without* quotes: `{"subject": {{ title }}}`;
//! - `headers`: inserted as text; a value containing a line break is refused.
//!
//! Template data can never become template code: task data is only ever a value.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value as JValue};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::connectors::{ConnectorError, encode_segment};
use crate::http::valid_pointer;

/// One templated request as written in the options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

/// How the connector authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum AuthSpec {
    None,
    /// A header whose value is `prefix` + the secret's `field`.
    Header {
        name: String,
        #[serde(default = "default_api_key_field")]
        field: String,
        #[serde(default)]
        prefix: String,
    },
    /// `Authorization: Bearer <secret field>`.
    Bearer {
        #[serde(default = "default_token_field")]
        field: String,
    },
    Basic {
        #[serde(default = "default_username_field")]
        username_field: String,
        #[serde(default = "default_password_field")]
        password_field: String,
    },
    /// OAuth 2 client-credentials grant at `token_url` (relative to base_url or absolute).
    Oauth2ClientCredentials {
        token_url: String,
        #[serde(default)]
        scope: Option<String>,
        #[serde(default = "default_client_id_field")]
        client_id_field: String,
        #[serde(default = "default_client_secret_field")]
        client_secret_field: String,
        /// Send the client credentials as HTTP basic auth instead of form fields.
        #[serde(default)]
        basic_auth: bool,
    },
}

fn default_api_key_field() -> String {
    "api_key".into()
}
fn default_token_field() -> String {
    "token".into()
}
fn default_username_field() -> String {
    "username".into()
}
fn default_password_field() -> String {
    "password".into()
}
fn default_client_id_field() -> String {
    "client_id".into()
}
fn default_client_secret_field() -> String {
    "client_secret".into()
}

/// Scalar options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTop {
    ticket_id_pointer: String,
    ticket_number_pointer: Option<String>,
    status_pointer: String,
    items_pointer: Option<String>,
    item_id_pointer: Option<String>,
    item_number_pointer: Option<String>,
    error_pointer: Option<String>,
    batch_size: Option<usize>,
    ticket_url: Option<String>,
}

/// A validated request: its method and which templates it has.
#[derive(Debug, Clone)]
pub(super) struct RequestSpec {
    pub section: &'static str,
    pub method: Method,
    pub headers: Vec<String>,
    pub has_body: bool,
}

/// The validated options.
#[derive(Debug)]
pub(super) struct Spec {
    pub create: RequestSpec,
    pub status: RequestSpec,
    pub note: Option<RequestSpec>,
    pub find: Option<RequestSpec>,
    pub check: Option<RequestSpec>,
    /// Optional: closes a cancelled task's ticket (`ticket`, `title`, `body` = the note, `reason`).
    pub close: Option<RequestSpec>,
    /// Optional: reopens a group's recently closed ticket (`ticket`, `title`, `body` = the note).
    pub reopen: Option<RequestSpec>,
    pub ticket_id_pointer: String,
    pub ticket_number_pointer: Option<String>,
    pub status_pointer: String,
    pub items_pointer: Option<String>,
    pub item_id_pointer: String,
    pub item_number_pointer: Option<String>,
    pub error_pointer: Option<String>,
    pub batch_size: usize,
    pub has_ticket_url: bool,
    pub auth: AuthSpec,
}

/// Compiled templates, named `url:<section>`, `json:<section>`, `text:<section>:<header>`,
/// `url:ticket_url`.
pub(super) struct Templates {
    env: Environment<'static>,
}

impl Templates {
    fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_auto_escape_callback(|name| {
            if name.starts_with("url:") {
                AutoEscape::Custom("url")
            } else if name.starts_with("json:") {
                AutoEscape::Json
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(|out, state, value| {
            if state.auto_escape() == AutoEscape::Custom("url") && !value.is_safe() {
                let text = if value.is_undefined() || value.is_none() {
                    String::new()
                } else {
                    value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string())
                };
                out.write_str(&encode_segment(&text)).map_err(minijinja::Error::from)
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        Self { env }
    }

    fn add(&mut self, name: String, source: String) -> Result<(), String> {
        self.env.add_template_owned(name, source).map_err(|e| describe(&e))
    }

    /// Renders template `name` with `ctx`. `base_url` (from the config, trusted) is inserted
    /// unescaped.
    pub fn render(&self, name: &str, ctx: &Value) -> Result<String, String> {
        let t = self.env.get_template(name).map_err(|e| describe(&e))?;
        let base = ctx.get("base_url").and_then(Value::as_str).unwrap_or_default().to_string();
        let ctx = minijinja::context! { base_url => JValue::from_safe_string(base), ..JValue::from_serialize(ctx) };
        t.render(ctx).map_err(|e| describe(&e))
    }

    pub fn has(&self, name: &str) -> bool {
        self.env.get_template(name).is_ok()
    }
}

fn describe(e: &minijinja::Error) -> String {
    let detail = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
    match e.line() {
        Some(line) => format!("{detail} (line {line})"),
        None => detail,
    }
}

/// Context used to test-render templates at construction.
pub(super) fn sample_context() -> Value {
    json!({
        "title": "Sample \"title\"", "body": "line 1\nline 2", "correlation_key": "01SAMPLE",
        "customer_id": "c-1", "contact_id": "ct-1", "contact_email": "a@example.com", "contract_id": null,
        "ticket_type": "Service Request", "source": "Ticket Bridge", "status": "New", "queue": "Q", "priority": "3",
        "issue_type": null, "sub_issue_type": null, "fields": {"user": {"email": "a@example.com"}},
        "ids": ["1", "2"], "id": "1", "ticket": {"id": "1", "number": "T-1", "url": null},
        "number": "T-1", "connection": "sample", "base_url": "https://example.com",
    })
}

const SECTIONS: [&str; 7] = ["create", "status", "note", "find", "check", "close", "reopen"];

/// Parses and validates the options of connection `name`.
pub(super) fn parse(name: &str, options: &toml::Table) -> Result<(Spec, Templates), ConnectorError> {
    let key = |k: &str| {
        if k.is_empty() { format!("connections.{name}.options") } else { format!("connections.{name}.options.{k}") }
    };
    let err = |k: &str, m: String| ConnectorError::Config(format!("{}: {m}", key(k)));
    let mut templates = Templates::new();
    let mut top = options.clone();
    let mut requests: BTreeMap<&str, RequestSpec> = BTreeMap::new();
    for section in SECTIONS {
        let Some(v) = top.remove(section) else { continue };
        let raw = RawRequest::deserialize(v).map_err(|e| err(section, e.to_string()))?;
        requests.insert(section, compile_request(section, raw, &mut templates, &key)?);
    }
    let auth = match top.remove("auth") {
        None => AuthSpec::None,
        Some(v) => AuthSpec::deserialize(v).map_err(|e| err("auth", e.to_string()))?,
    };
    top.remove("http");
    let raw = RawTop::deserialize(toml::Value::Table(top)).map_err(|e| err("", e.to_string()))?;
    let pointers = [
        ("ticket_id_pointer", Some(&raw.ticket_id_pointer)),
        ("ticket_number_pointer", raw.ticket_number_pointer.as_ref()),
        ("status_pointer", Some(&raw.status_pointer)),
        ("items_pointer", raw.items_pointer.as_ref()),
        ("item_id_pointer", raw.item_id_pointer.as_ref()),
        ("item_number_pointer", raw.item_number_pointer.as_ref()),
        ("error_pointer", raw.error_pointer.as_ref()),
    ];
    for (k, p) in pointers {
        if let Some(p) = p.filter(|p| !valid_pointer(p)) {
            return Err(err(
                k,
                format!("'{p}' is not a JSON pointer (RFC 6901: \"\" or \"/a/0/b\", ~0 for ~, ~1 for /)"),
            ));
        }
    }
    let create =
        requests.remove("create").ok_or_else(|| err("create", "required: the request that opens a ticket".into()))?;
    let status =
        requests.remove("status").ok_or_else(|| err("status", "required: the request that reads statuses".into()))?;
    let batch_size = raw.batch_size.unwrap_or(1);
    if !(1..=1000).contains(&batch_size) {
        return Err(err("batch_size", "must be between 1 and 1000".into()));
    }
    let find = requests.remove("find");
    if (batch_size > 1 || find.is_some()) && raw.items_pointer.is_none() {
        return Err(err(
            "items_pointer",
            "required with batch_size > 1 or a find request: where the list of tickets is".into(),
        ));
    }
    if batch_size > 1 {
        let sources: Vec<&str> = ["url:status", "json:status"].into_iter().filter(|n| templates.has(n)).collect();
        let mentions = sources
            .iter()
            .any(|n| templates.env.get_template(n).is_ok_and(|t| t.undeclared_variables(false).contains("ids")));
        if !mentions {
            return Err(err(
                "status",
                "batch_size > 1 needs the ticket ids in the request: use {{ ids }} in url or body".into(),
            ));
        }
    }
    if let Some(t) = &raw.ticket_url {
        templates.add("url:ticket_url".into(), t.clone()).map_err(|e| err("ticket_url", e))?;
        let sample = templates.render("url:ticket_url", &sample_context()).map_err(|e| err("ticket_url", e))?;
        url::Url::parse(&sample).map_err(|e| err("ticket_url", format!("does not render an absolute URL: {e}")))?;
    }
    if find.is_none() {
        tracing::warn!(
            connection = name,
            "no options.find: a lost create response cannot be recovered and may duplicate a ticket"
        );
    }
    let spec = Spec {
        create,
        status,
        note: requests.remove("note"),
        find,
        check: requests.remove("check"),
        close: requests.remove("close"),
        reopen: requests.remove("reopen"),
        ticket_id_pointer: raw.ticket_id_pointer,
        ticket_number_pointer: raw.ticket_number_pointer,
        status_pointer: raw.status_pointer,
        items_pointer: raw.items_pointer,
        item_id_pointer: raw.item_id_pointer.unwrap_or_else(|| "/id".into()),
        item_number_pointer: raw.item_number_pointer,
        error_pointer: raw.error_pointer,
        batch_size,
        has_ticket_url: raw.ticket_url.is_some(),
        auth,
    };
    Ok((spec, templates))
}

fn compile_request(
    section: &'static str,
    raw: RawRequest,
    templates: &mut Templates,
    key: &dyn Fn(&str) -> String,
) -> Result<RequestSpec, ConnectorError> {
    let err = |k: &str, m: String| ConnectorError::Config(format!("{}: {m}", key(&format!("{section}.{k}"))));
    let default = if matches!(section, "create" | "note" | "close" | "reopen") { "POST" } else { "GET" };
    let method_name = raw.method.as_deref().unwrap_or(default).to_ascii_uppercase();
    let method = match method_name.as_str() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        other => return Err(err("method", format!("'{other}' is not one of GET, POST, PUT, PATCH, DELETE"))),
    };
    let sample = sample_context();
    templates.add(format!("url:{section}"), raw.url.clone()).map_err(|e| err("url", e))?;
    let url = templates.render(&format!("url:{section}"), &sample).map_err(|e| err("url", e))?;
    let absolute = url.starts_with("http://") || url.starts_with("https://");
    if !absolute && !url.starts_with('/') {
        return Err(err("url", "must start with '/' (relative to base_url) or be an absolute http(s) URL".into()));
    }
    let check = if absolute { url.clone() } else { format!("https://example.com{url}") };
    url::Url::parse(&check).map_err(|e| err("url", format!("does not render a valid URL: {e}")))?;
    let mut headers = Vec::new();
    for (h, v) in raw.headers {
        reqwest::header::HeaderName::from_bytes(h.as_bytes())
            .map_err(|_| err("headers", format!("'{h}' is not a valid header name")))?;
        templates.add(format!("text:{section}:{h}"), v).map_err(|e| err(&format!("headers.{h}"), e))?;
        headers.push(h);
    }
    let has_body = match raw.body {
        None => false,
        Some(_) if method == Method::GET => return Err(err("body", "GET requests have no body".into())),
        Some(b) => {
            templates.add(format!("json:{section}"), b).map_err(|e| err("body", e))?;
            let rendered = templates.render(&format!("json:{section}"), &sample).map_err(|e| err("body", e))?;
            serde_json::from_str::<Value>(&rendered).map_err(|e| {
                err(
                    "body",
                    format!(
                        "does not render valid JSON ({}); placeholders are inserted as JSON values, so write {{{{ title }}}} without quotes around it",
                        crate::http::describe_json_error(&e)
                    ),
                )
            })?;
            true
        }
    };
    Ok(RequestSpec { section, method, headers, has_body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(extra: &str) -> toml::Table {
        let base = r#"
ticket_id_pointer = "/issue/id"
status_pointer = "/fields/status/name"
items_pointer = "/data/issues"
batch_size = 10
[create]
url = "/api/v2/issues"
body = '{"fields": {"summary": {{ title }}, "description": {{ body }}, "ext_ref": {{ correlation_key }}}}'
headers = { "X-Request-Source" = "ticket-bridge {{ connection }}" }
[status]
url = "/api/v2/issues?ids={{ ids | join(',') }}"
"#;
        format!("{base}{extra}").parse().unwrap()
    }

    fn set(t: &mut toml::Table, section: &str, key: &str, v: toml::Value) {
        t.get_mut(section).and_then(toml::Value::as_table_mut).unwrap().insert(key.into(), v);
    }

    fn err(extra: &str, edit: impl Fn(&mut toml::Table)) -> String {
        let mut t = opts(extra);
        edit(&mut t);
        match parse("g", &t) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn valid_options_parse() {
        let (spec, tpl) =
            parse("g", &opts("[auth]\ntype = \"oauth2_client_credentials\"\ntoken_url = \"/oauth/token\"\n")).unwrap();
        assert_eq!(spec.batch_size, 10);
        assert_eq!(spec.create.method, Method::POST);
        assert!(
            matches!(spec.auth, AuthSpec::Oauth2ClientCredentials { ref client_id_field, .. } if client_id_field == "client_id")
        );
        let ctx = json!({"ids": ["1", "2&x=y"]});
        assert_eq!(tpl.render("url:status", &ctx).unwrap(), "/api/v2/issues?ids=1%2C2%26x%3Dy");
    }

    #[test]
    fn errors_name_the_option() {
        let cases: Vec<(String, &str)> = vec![
            (
                err("", |t| {
                    t.remove("create");
                }),
                "options.create: required",
            ),
            (
                err("", |t| {
                    set(t, "create", "body", "{\"s\": \"{{ title }}\"}".into());
                }),
                "options.create.body: does not render valid JSON",
            ),
            (
                err("", |t| {
                    set(t, "create", "body", "{{ title ".into());
                }),
                "options.create.body:",
            ),
            (
                err("", |t| {
                    set(t, "create", "method", "FETCH".into());
                }),
                "options.create.method",
            ),
            (
                err("", |t| {
                    set(t, "create", "url", "api/v2".into());
                }),
                "options.create.url: must start with '/'",
            ),
            (
                err("", |t| {
                    set(t, "create", "colour", "x".into());
                }),
                "options.create: unknown field `colour`",
            ),
            (
                err("", |t| {
                    set(t, "status", "url", "/api/v2/issues/{{ id }}".into());
                }),
                "options.status: batch_size > 1",
            ),
            (
                err("", |t| {
                    set(t, "status", "body", "{}".into());
                }),
                "options.status.body: GET requests have no body",
            ),
            (
                err("", |t| {
                    t.insert("status_pointer".into(), "fields/status".into());
                }),
                "options.status_pointer",
            ),
            (
                err("", |t| {
                    t.remove("items_pointer");
                }),
                "options.items_pointer",
            ),
            (
                err("", |t| {
                    t.insert("batch_size".into(), 0.into());
                }),
                "options.batch_size",
            ),
            (
                err("", |t| {
                    t.insert("ticket_id_pointr".into(), "/x".into());
                }),
                "unknown field `ticket_id_pointr`",
            ),
            (err("[auth]\ntype = \"kerberos\"\n", |_| {}), "options.auth"),
            (err("[auth]\ntype = \"header\"\n", |_| {}), "options.auth"),
            (
                err("", |t| {
                    set(
                        t,
                        "create",
                        "headers",
                        toml::Value::Table([("Bad Header".to_string(), "x".into())].into_iter().collect()),
                    );
                }),
                "options.create.headers",
            ),
        ];
        for (got, want) in cases {
            assert!(!got.contains("options.:"), "{got}");
            assert!(got.contains("connections.g.options") && got.contains(want), "{got}\n  wanted: {want}");
        }
    }

    #[test]
    fn body_values_are_json_and_cannot_inject() {
        let (_, tpl) = parse("g", &opts("")).unwrap();
        let evil = "\"}, \"admin\": true, \"x\": {\"y\": \"{{ 7*7 }}\n\\";
        let ctx = json!({"title": evil, "body": null, "correlation_key": "k"});
        let rendered = tpl.render("json:create", &ctx).unwrap();
        let v: Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(v["fields"]["summary"], evil);
        assert_eq!(v["fields"].as_object().unwrap().len(), 3);
        assert!(v.get("admin").is_none());
        assert_eq!(v["fields"]["description"], Value::Null);
    }
}
