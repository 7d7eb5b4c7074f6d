//! `PUT /v1/mappings/{connection}/organizations|users` (admin scope): the upstream pushes its
//! organizations and users in bulk; idempotent (see [`crate::mapping::upstream_push`]).
//! Bodies as for the admin list endpoints: `{"organizations": [...], "match"?}` /
//! `{"users": [...]}` or `text/csv`.

use chrono::Utc;

use super::api::{ApiRequest, ApiResponse};
use super::mappings_api::list_body;
use super::{ApiError, Engine};
use crate::mapping::upstream_push::{push_orgs, push_users};
use crate::mapping::{MappingError, parse_orgs, parse_users};

/// Routes `rest` (the path after `/v1/mappings/{conn}/`). The caller checked the scope.
pub(super) async fn route(
    engine: &Engine,
    req: &ApiRequest<'_>,
    conn: &str,
    rest: &[&str],
) -> Result<ApiResponse, ApiError> {
    let cfg =
        engine.config.connections.get(conn).ok_or_else(|| ApiError::not_found(format!("no connection '{conn}'")))?;
    let q: Vec<(String, String)> =
        url::form_urlencoded::parse(req.query.unwrap_or("").as_bytes()).into_owned().collect();
    let mut settings = cfg.mapping.clone();
    let store = engine.store.as_ref();
    let report = match (req.method, rest) {
        ("PUT", ["organizations"]) => {
            let (text, format) = list_body(engine, req, &q, "organizations", &mut settings)?;
            let orgs = parse_orgs(&text, format).map_err(MappingError::from)?;
            push_orgs(store, conn, &orgs, settings.match_mode, Utc::now()).await?
        }
        ("PUT", ["users"]) => {
            let (text, format) = list_body(engine, req, &q, "users", &mut settings)?;
            let users = parse_users(&text, format).map_err(MappingError::from)?;
            push_users(store, conn, &users, Utc::now()).await?
        }
        (_, ["organizations" | "users"]) => {
            return Err(ApiError::new(405, "method_not_allowed", None, format!("{} is not allowed here", req.method)));
        }
        _ => return Err(ApiError::not_found(format!("no route {}", req.path))),
    };
    Ok(ApiResponse { status: 200, body: serde_json::to_value(report).unwrap_or_default() })
}
