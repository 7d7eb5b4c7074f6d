//! Lambda entry point; the handler lives in the library so tests can invoke it in-process.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    bridge::aws::init_lambda_logging();
    let engine = Arc::new(bridge::aws::engine_from_env().await?);
    // Once per cold start: a credentials check that makes no vendor call (see engine::cold_start).
    engine.cold_start_check(chrono::Utc::now()).await;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
        let engine = engine.clone();
        async move { create_ticket::handle(&engine, ev).await }
    }))
    .await
}
