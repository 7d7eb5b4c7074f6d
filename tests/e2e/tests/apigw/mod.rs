//! A local stand-in for the stack's API Gateway HTTP API in front of the intake function: it
//! routes exactly the `HttpApi` events `infra/template.yaml` gives `IntakeFunction` (any other
//! request gets API Gateway's own `404 {"message":"Not Found"}` and never reaches the function),
//! turns each request into the payload 2.0 event such a route delivers, and answers with what
//! `intake::handle` returns. A route missing from the template is missing here too.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::Harness;

/// One `HttpApi` route of the intake function: method and path template (`/v1/tasks/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    pub path: String,
}

impl Route {
    /// The path parameters when `path` matches this route's template, else `None`.
    fn matches(&self, method: &str, path: &str) -> Option<serde_json::Map<String, Value>> {
        if self.method != "ANY" && !self.method.eq_ignore_ascii_case(method) {
            return None;
        }
        let want: Vec<&str> = self.path.trim_start_matches('/').split('/').collect();
        let got: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if want.len() != got.len() {
            return None;
        }
        let mut params = serde_json::Map::new();
        for (w, g) in want.iter().zip(&got) {
            match w.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                Some(name) if !g.is_empty() => {
                    params.insert(name.to_string(), json!(g));
                }
                Some(_) => return None,
                None if w == g => {}
                None => return None,
            }
        }
        Some(params)
    }
}

/// The routes `infra/template.yaml` sends to the intake function.
pub fn intake_routes() -> Vec<Route> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    // The short-form tags (`!Ref`, `!GetAtt`, `!Sub`) parse as tagged values; only plain
    // strings are read here.
    let t: serde_norway::Value = serde_norway::from_str(&text).expect("infra/template.yaml is YAML");
    let events = &t["Resources"]["IntakeFunction"]["Properties"]["Events"];
    let events = events.as_mapping().expect("IntakeFunction has Events");
    let mut out = Vec::new();
    for ev in events.values() {
        if ev["Type"].as_str() != Some("HttpApi") {
            continue;
        }
        let p = &ev["Properties"];
        out.push(Route {
            method: p["Method"].as_str().expect("HttpApi Method").to_string(),
            path: p["Path"].as_str().expect("HttpApi Path").to_string(),
        });
    }
    assert!(!out.is_empty(), "no HttpApi routes on IntakeFunction");
    out
}

/// Starts the stand-in on loopback in front of the harness's engine (the function's engine);
/// returns its base URL (`http://127.0.0.1:<port>`).
pub async fn serve(h: Arc<Harness>) -> String {
    let routes = Arc::new(intake_routes());
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (h, routes) = (h.clone(), routes.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 6 * 1024 * 1024).await.unwrap_or_default();
            let path = parts.uri.path().to_string();
            let Some((route, params)) =
                routes.iter().find_map(|r| r.matches(parts.method.as_str(), &path).map(|p| (r, p)))
            else {
                // What an HTTP API answers for a request no route matches.
                return reply(404, &json!({"message": "Not Found"}).to_string());
            };
            let event = payload_v2(route, params, &parts, &body);
            let res = intake::handle(&h.engine, event).await;
            response(res)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://{addr}")
}

/// The payload 2.0 event API Gateway delivers for `route` (header names lower-cased, repeated
/// headers joined with commas, non-text bodies base64-encoded), parsed as the runtime parses it.
fn payload_v2(
    route: &Route,
    params: serde_json::Map<String, Value>,
    parts: &http::request::Parts,
    body: &[u8],
) -> ApiGatewayV2httpRequest {
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let joined: Vec<&str> = parts.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        headers.insert(name.as_str().to_ascii_lowercase(), json!(joined.join(",")));
    }
    let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let text = content_type.starts_with("application/json") || content_type.starts_with("text/");
    let (body, encoded) = match (body.is_empty(), text, std::str::from_utf8(body)) {
        (true, _, _) => (Value::Null, false),
        (false, true, Ok(s)) => (json!(s), false),
        _ => (json!(base64::engine::general_purpose::STANDARD.encode(body)), true),
    };
    let route_key = format!("{} {}", route.method, route.path);
    let path = parts.uri.path();
    let event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": parts.uri.query().unwrap_or(""),
        "headers": headers,
        "pathParameters": params,
        "requestContext": {
            "accountId": "123456789012", "apiId": "local", "domainName": "local.execute-api.localhost",
            "domainPrefix": "local",
            "http": {"method": parts.method.as_str(), "path": path, "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7", "userAgent": headers_ua(&parts.headers)},
            "requestId": ulid::Ulid::new().to_string(), "routeKey": route_key, "stage": "$default",
            "time": "30/Nov/2026:20:00:00 +0000", "timeEpoch": chrono::Utc::now().timestamp_millis()
        },
        "body": body,
        "isBase64Encoded": encoded
    });
    serde_json::from_value(event).expect("a payload 2.0 event")
}

fn headers_ua(h: &http::HeaderMap) -> String {
    h.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

fn reply(status: u16, body: &str) -> axum::response::Response {
    axum::response::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

/// The function's answer as API Gateway passes it on.
fn response(res: ApiGatewayV2httpResponse) -> axum::response::Response {
    let mut out = axum::response::Response::builder().status(u16::try_from(res.status_code).unwrap());
    for (name, value) in res.headers.iter() {
        out = out.header(name, value);
    }
    let body = match res.body {
        Some(Body::Text(t)) => t.into_bytes(),
        Some(Body::Binary(b)) => b,
        _ => Vec::new(),
    };
    out.body(axum::body::Body::from(body)).unwrap()
}
