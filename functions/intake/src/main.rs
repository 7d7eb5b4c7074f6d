//! Lambda entry point; the handler lives in the library so tests can invoke it in-process.

use lambda_http::{Error, Request, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let engine = Arc::new(bridge::aws::engine_from_env().await?);
    lambda_http::run(service_fn(move |req: Request| {
        let engine = engine.clone();
        async move { intake::handle(&engine, req).await }
    }))
    .await
}
