//! refresh-token: on a schedule, renews tokens that expire within the window (under a lease per
//! connection) and warns about personal access tokens nearing expiry.

use bridge::engine::Engine;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;

pub async fn handle(engine: &Engine, _event: LambdaEvent<Value>) -> Result<Value, Error> {
    let now = chrono::Utc::now();
    let report = engine.refresh_tokens(now).await;
    if let Some(doc) = engine.metrics.to_emf("TicketBridge", "refresh-token", now.timestamp_millis()) {
        println!("{doc}");
    }
    Ok(serde_json::to_value(&report)?)
}
