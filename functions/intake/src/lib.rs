//! intake: API Gateway HTTP API → `POST /v1/tasks`, `GET /v1/tasks/{id}`, `DELETE /v1/tasks/{id}`.

use bridge::engine::Engine;
use bridge::engine::api::{self, ApiRequest};
use lambda_http::{Body, Error, Request, Response};

pub async fn handle(engine: &Engine, req: Request) -> Result<Response<Body>, Error> {
    let body: &[u8] = req.body().as_ref();
    let api_req = ApiRequest {
        method: req.method().as_str(),
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
        body,
        peer_loopback: false,
    };
    let res = api::handle(engine, api_req, chrono::Utc::now()).await;
    if let Some(doc) = engine.metrics.to_emf("TicketBridge", "intake", chrono::Utc::now().timestamp_millis()) {
        println!("{doc}");
    }
    Ok(Response::builder()
        .status(res.status)
        .header("content-type", "application/json")
        .body(Body::from(res.body.to_string()))?)
}
