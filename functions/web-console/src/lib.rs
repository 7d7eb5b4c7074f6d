//! web-console: the web console ([`bridge_console`]) on the same HTTP API as intake (payload 2.0), with
//! the same API keys (admin scope to sign in), over DynamoDB and Secrets Manager. Sessions are
//! sealed in their cookies (requests land on any instance); cookies are `Secure` (API Gateway
//! serves https only). The pages that need one long-lived process (sandbox desk, OAuth Connect)
//! are hidden.

use anyhow::{Context, bail};
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine as _;
use bridge::engine::Engine;
use bridge_console::session::Sessions;
use bridge_console::{Console, ConsoleRequest};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;

/// Field of the `auth.console_secret` secret that seals the session cookies.
pub const SESSION_KEY_FIELD: &str = "session_key";
/// Shortest session key accepted (bytes).
const MIN_SESSION_KEY: usize = 32;

/// The console over `engine`, its session key read from the secret named by `auth.console_secret`.
pub async fn for_lambda(engine: Arc<Engine>) -> anyhow::Result<Console> {
    let Some(name) = engine.config.auth.console_secret.clone() else {
        bail!("auth.console_secret: not set; the console function needs a secret with field `{SESSION_KEY_FIELD}`");
    };
    let secret =
        engine.secrets.get(&name).await.with_context(|| format!("auth.console_secret: reading secret '{name}'"))?;
    let key = secret.get(SESSION_KEY_FIELD).unwrap_or("");
    if key.len() < MIN_SESSION_KEY {
        bail!(
            "auth.console_secret: secret '{name}' needs field `{SESSION_KEY_FIELD}` of at least {MIN_SESSION_KEY} characters"
        );
    }
    let http = bridge::http::client_builder().build().context("cannot build the HTTP client")?;
    Ok(Console {
        engine,
        desk_url: None,
        http,
        sessions: Sessions::sealed(key.as_bytes()),
        status: Default::default(),
        oauth: Default::default(),
        local: false,
        jobs: Default::default(),
    })
}

/// Handles one HTTP API request. Never fails: every problem is an HTTP answer.
pub async fn handle(console: &Console, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let limit = console.engine.config.settings.max_body_bytes;
    let res = match request_body(&req) {
        Ok(body) if body.len() > limit => plain(StatusCode::PAYLOAD_TOO_LARGE, "form is too large"),
        Ok(body) => {
            let path = req.raw_path.as_deref().or(req.request_context.http.path.as_deref()).unwrap_or("/");
            let headers = browser_headers(&req);
            let console_req = ConsoleRequest {
                method: req.request_context.http.method.as_str(),
                path,
                query: req.raw_query_string.as_deref().filter(|q| !q.is_empty()),
                headers: &headers,
                body: &body,
                peer_loopback: false,
            };
            bridge_console::handle(console, console_req).await
        }
        Err(e) => plain(StatusCode::BAD_REQUEST, &e),
    };
    to_apigw(res)
}

/// The request's headers as the console reads them: the cookies API Gateway (payload 2.0) moves
/// into `cookies` put back in one `Cookie` header, and `X-Forwarded-Proto: https` (HTTP APIs
/// serve https only, so session cookies are always `Secure`).
fn browser_headers(req: &ApiGatewayV2httpRequest) -> HeaderMap {
    let mut headers = req.headers.clone();
    if let Some(cookies) = req.cookies.as_ref().filter(|c| !c.is_empty())
        && let Ok(v) = HeaderValue::from_str(&cookies.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    headers
}

/// The raw body bytes (API Gateway base64-encodes bodies it does not consider text).
fn request_body(req: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, String> {
    match &req.body {
        None => Ok(Vec::new()),
        Some(b) if req.is_base64_encoded => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|_| "body: isBase64Encoded is set but the body is not valid base64".to_string()),
        Some(b) => Ok(b.as_bytes().to_vec()),
    }
}

fn plain(status: StatusCode, text: &str) -> bridge_console::Response {
    let mut r = bridge_console::Response::new(text.to_string());
    *r.status_mut() = status;
    r
}

/// The console's answer as a payload 2.0 response: `Set-Cookie` headers go to `cookies`.
fn to_apigw(res: bridge_console::Response) -> ApiGatewayV2httpResponse {
    let (parts, body) = res.into_parts();
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    for (name, value) in &parts.headers {
        if name == header::SET_COOKIE {
            if let Ok(v) = value.to_str() {
                out.cookies.push(v.to_string());
            }
        } else {
            out.headers.append(name.clone(), value.clone());
        }
    }
    out.body = Some(Body::Text(body));
    out
}
