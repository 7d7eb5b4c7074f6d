//! intake: API Gateway HTTP API (payload 2.0) → `POST /v1/tasks`, `GET /v1/tasks/{id}`,
//! `DELETE /v1/tasks/{id}`, the admin routes and desk webhooks (`POST /v1/hooks/{connection}`),
//! answered by [`bridge::engine::api`].

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine as _;
use bridge::engine::Engine;
use bridge::engine::api::{self, ApiRequest};

/// Handles one HTTP API request. Never fails: every problem is an HTTP answer.
pub async fn handle(engine: &Engine, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let res = match request_body(&req) {
        Ok(body) => {
            let path = req.raw_path.as_deref().or(req.request_context.http.path.as_deref()).unwrap_or("/");
            let api_req = ApiRequest {
                method: req.request_context.http.method.as_str(),
                path,
                query: req.raw_query_string.as_deref().filter(|q| !q.is_empty()),
                headers: &req.headers,
                body: &body,
                peer_loopback: false,
            };
            api::handle(engine, api_req, chrono::Utc::now()).await
        }
        Err(e) => bridge::engine::ApiError::bad_request("invalid_body", Some("body"), e).into(),
    };
    if let Some(doc) = engine.metrics.to_emf("TicketBridge", "intake", chrono::Utc::now().timestamp_millis()) {
        println!("{doc}");
    }
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(res.status);
    if let Ok(v) = "application/json".parse() {
        out.headers.insert(http::header::CONTENT_TYPE, v);
    }
    out.body = Some(Body::Text(res.body.to_string()));
    out
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
