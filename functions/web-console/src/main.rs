//! Lambda entry point; the handler lives in the library so tests can invoke it in-process.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    bridge::aws::init_lambda_logging();
    let engine = Arc::new(bridge::aws::engine_from_env().await?);
    let console = Arc::new(web_console::for_lambda(engine).await?);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<ApiGatewayV2httpRequest>| {
        let console = console.clone();
        async move { Ok::<_, Error>(web_console::handle(&console, ev.payload).await) }
    }))
    .await
}
