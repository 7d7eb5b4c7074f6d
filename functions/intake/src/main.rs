//! Lambda entry point; the handler lives in the library so tests can invoke it in-process.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    bridge::aws::init_lambda_logging();
    let mut engine = bridge::aws::engine_from_env().await?;
    // Intake may not store renewed tokens: cancelled tasks' tickets are closed by create-ticket
    // (the stream delivers the cancelled task) and poll-status.
    engine.close_inline = false;
    let engine = Arc::new(engine);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<ApiGatewayV2httpRequest>| {
        let engine = engine.clone();
        async move { Ok::<_, Error>(intake::handle(&engine, ev.payload).await) }
    }))
    .await
}
