//! Lambda entry point; the handler lives in the library so tests can invoke it in-process.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    bridge::aws::init_lambda_logging();
    let engine = Arc::new(bridge::aws::engine_from_env().await?);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
        let engine = engine.clone();
        async move { sync_mappings::handle(&engine, ev).await }
    }))
    .await
}
