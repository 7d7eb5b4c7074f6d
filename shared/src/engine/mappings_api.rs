//! Admin API for organization / user mapping (`/v1/admin/connections/{conn}/…`, admin scope).
//!
//! | method | path | body |
//! |---|---|---|
//! | GET | mappings | — |
//! | POST | mappings/preview, mappings/apply | `{"organizations": [...], "match"?, "auto_create"?}` or `text/csv` (`?match=&auto_create=`) |
//! | POST | mappings/match | `{"org_id", "customer_id", "org_name"?, "contact_id"?}` |
//! | POST | mappings/exclude | `{"org_id", "org_name"?}` |
//! | POST | mappings/include | `{"org_id"}` |
//! | POST | mappings/contract | `{"org_id", "contract_id", "service"?, "service_name"?, "users"?}` |
//! | GET | mappings/{org_id}/contracts | — |
//! | GET | users | — |
//! | POST | users/preview, users/apply | `{"users": [...], "auto_create"?}` or `text/csv` |
//! | POST | users/match | `{"email", "contact_id", "customer_id"?}` |
//! | POST | users/exclude, users/include | `{"email"}` |

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::api::{ApiRequest, ApiResponse};
use super::{ApiError, Engine};
use crate::connectors::ConnectorError;
use crate::mapping::{
    ContractChange, Format, MappingError, MappingSettings, Mappings, MatchMode, parse_orgs, parse_users,
};

impl From<MappingError> for ApiError {
    fn from(e: MappingError) -> Self {
        match e {
            MappingError::Source(s) => ApiError::invalid(Some(&s.location), s.message),
            MappingError::Store(s) => s.into(),
            MappingError::NotFound(m) => ApiError::not_found(m),
            MappingError::Invalid(m) => ApiError::invalid(None, m),
            MappingError::Connector(c) => match c {
                ConnectorError::Unsupported(m) => ApiError::new(422, "unsupported", None, m),
                ConnectorError::Config(m) => ApiError::new(422, "connection_config", None, m),
                ConnectorError::NotFound(m) | ConnectorError::Rejected(m) => {
                    ApiError::new(422, "rejected_by_target", None, m)
                }
                other => ApiError::new(502, "target_error", None, other.to_string()),
            },
        }
    }
}

/// Routes `rest` (the path after `/v1/admin/connections/{conn}/`). The caller checked the scope.
pub(super) async fn route(
    engine: &Engine,
    req: &ApiRequest<'_>,
    conn: &str,
    rest: &[&str],
) -> Result<ApiResponse, ApiError> {
    let cfg =
        engine.config.connections.get(conn).ok_or_else(|| ApiError::not_found(format!("no connection '{conn}'")))?;
    let connector =
        engine.connector(conn).ok_or_else(|| ApiError::not_found(format!("connection '{conn}' has no connector")))?;
    let q: Vec<(String, String)> =
        url::form_urlencoded::parse(req.query.unwrap_or("").as_bytes()).into_owned().collect();
    let mut settings = cfg.mapping.clone();
    // The console's background apply follows the run through a task-scoped progress.
    let progress = crate::mapping::scoped_progress::current();
    let m = |settings: MappingSettings| {
        let m = Mappings::new(conn, engine.store.as_ref(), connector.as_ref(), settings);
        match &progress {
            Some(p) => m.with_progress(p.as_ref()),
            None => m,
        }
    };
    let body = match (req.method, rest) {
        ("GET", ["mappings"]) => json!({"items": m(settings).list().await?}),
        ("POST", ["mappings", op @ ("preview" | "apply")]) => {
            let text = list_body(engine, req, &q, "organizations", &mut settings)?;
            let orgs = parse_orgs(&text.0, text.1).map_err(MappingError::from)?;
            if *op == "preview" {
                to_json(&m(settings).preview(&orgs).await?)
            } else {
                to_json(&m(settings).apply(&orgs).await?)
            }
        }
        ("POST", ["mappings", "match"]) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct B {
                org_id: String,
                customer_id: String,
                org_name: Option<String>,
                contact_id: Option<String>,
            }
            let b: B = json_body(engine, req)?;
            to_json(
                &m(settings)
                    .match_org(&b.org_id, &b.customer_id, b.org_name.as_deref(), b.contact_id.as_deref())
                    .await?,
            )
        }
        ("POST", ["mappings", "exclude"]) => {
            let b: OrgBody = json_body(engine, req)?;
            to_json(&m(settings).exclude(&b.org_id, b.org_name.as_deref()).await?)
        }
        ("POST", ["mappings", "include"]) => {
            let b: OrgBody = json_body(engine, req)?;
            to_json(&m(settings).include(&b.org_id).await?)
        }
        ("POST", ["mappings", "contract"]) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct B {
                org_id: String,
                #[serde(flatten)]
                change: ContractChange,
            }
            let b: B = json_body(engine, req)?;
            to_json(&m(settings).set_contract(&b.org_id, &b.change).await?)
        }
        ("GET", ["mappings", org, "contracts"]) => {
            json!({"items": m(settings).contracts(org).await?})
        }
        ("GET", ["users"]) => json!({"items": m(settings).list_users().await?}),
        ("POST", ["users", op @ ("preview" | "apply")]) => {
            let text = list_body(engine, req, &q, "users", &mut settings)?;
            let users = parse_users(&text.0, text.1).map_err(MappingError::from)?;
            if *op == "preview" {
                to_json(&m(settings).preview_users(&users).await?)
            } else {
                to_json(&m(settings).apply_users(&users).await?)
            }
        }
        ("POST", ["users", "match"]) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct B {
                email: String,
                contact_id: String,
                customer_id: Option<String>,
            }
            let b: B = json_body(engine, req)?;
            to_json(&m(settings).match_user(&b.email, &b.contact_id, b.customer_id.as_deref()).await?)
        }
        ("POST", ["users", "exclude"]) => {
            let b: UserBody = json_body(engine, req)?;
            to_json(&m(settings).exclude_user(&b.email).await?)
        }
        ("POST", ["users", "include"]) => {
            let b: UserBody = json_body(engine, req)?;
            match m(settings).include_user(&b.email).await? {
                Some(mapping) => json!({"outcome": "restored", "mapping": mapping}),
                None => {
                    json!({"outcome": "unmapped", "email": crate::domain::UserMapping::key(&b.email)})
                }
            }
        }
        (_, ["mappings" | "users", ..]) => {
            return Err(ApiError::new(405, "method_not_allowed", None, format!("{} is not allowed here", req.method)));
        }
        _ => return Err(ApiError::not_found(format!("no route {}", req.path))),
    };
    Ok(ApiResponse { status: 200, body })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgBody {
    org_id: String,
    #[serde(default)]
    org_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    email: String,
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn content_type<'r>(req: &'r ApiRequest<'_>) -> &'r str {
    let ct = req.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    ct.split(';').next().unwrap_or("").trim()
}

fn check_size(engine: &Engine, req: &ApiRequest<'_>) -> Result<(), ApiError> {
    let max = engine.config.settings.max_body_bytes;
    if req.body.len() > max {
        return Err(ApiError::new(413, "body_too_large", None, format!("body is larger than {max} bytes")));
    }
    Ok(())
}

fn json_body<T: DeserializeOwned>(engine: &Engine, req: &ApiRequest<'_>) -> Result<T, ApiError> {
    check_size(engine, req)?;
    if !content_type(req).eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            Some("content-type"),
            "content-type must be application/json",
        ));
    }
    serde_json::from_slice(req.body)
        .map_err(|e| ApiError::bad_request("invalid_json", None, format!("invalid request body: {e}")))
}

/// The list text and its format from a JSON body (`{"<list>": [...], "match"?, "auto_create"?}`)
/// or a CSV body (options in the query string); options override the connection's settings.
pub(super) fn list_body(
    engine: &Engine,
    req: &ApiRequest<'_>,
    query: &[(String, String)],
    list: &str,
    settings: &mut MappingSettings,
) -> Result<(String, Format), ApiError> {
    check_size(engine, req)?;
    let text =
        std::str::from_utf8(req.body).map_err(|_| ApiError::bad_request("invalid_body", None, "body is not UTF-8"))?;
    let ct = content_type(req).to_ascii_lowercase();
    let (mut mode, mut auto) = (None, None);
    let out = match ct.as_str() {
        "text/csv" => {
            for (k, v) in query {
                match k.as_str() {
                    "match" => mode = Some(v.clone()),
                    "auto_create" => auto = Some(Value::String(v.clone())),
                    _ => {}
                }
            }
            (text.to_string(), Format::Csv)
        }
        "application/json" => {
            let mut v: Value = serde_json::from_str(text)
                .map_err(|e| ApiError::bad_request("invalid_json", None, format!("invalid JSON: {e}")))?;
            let obj = v
                .as_object_mut()
                .ok_or_else(|| ApiError::invalid(None, format!("expected an object with '{list}'")))?;
            if let Some(k) = obj.keys().find(|k| ![list, "match", "auto_create"].contains(&k.as_str())) {
                return Err(ApiError::invalid(
                    Some(k),
                    format!("unknown field (expected: {list}, match, auto_create)"),
                ));
            }
            mode = match obj.remove("match") {
                Some(Value::String(s)) => Some(s),
                None | Some(Value::Null) => None,
                Some(_) => {
                    return Err(ApiError::invalid(Some("match"), "must be \"exact\" or \"normalized\""));
                }
            };
            auto = obj.remove("auto_create");
            let items = obj.remove(list).ok_or_else(|| ApiError::invalid(Some(list), "missing"))?;
            (json!({ list: items }).to_string(), Format::Json)
        }
        _ => {
            return Err(ApiError::new(
                415,
                "unsupported_media_type",
                Some("content-type"),
                "content-type must be application/json or text/csv",
            ));
        }
    };
    if let Some(m) = mode {
        settings.match_mode = MatchMode::parse(&m)
            .ok_or_else(|| ApiError::invalid(Some("match"), "must be \"exact\" or \"normalized\""))?;
    }
    match auto {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => settings.auto_create = b,
        Some(Value::String(s)) if s == "true" || s == "false" => settings.auto_create = s == "true",
        Some(_) => {
            return Err(ApiError::invalid(Some("auto_create"), "must be true or false"));
        }
    }
    Ok(out)
}
