//! sync-mappings: on a schedule, runs (or resumes) the continuous PSA sync of every connection with
//! `sync.enabled`, under a lease per connection; counts go to the log and to EMF metrics.

use bridge::engine::Engine;
use bridge::mapping::sync::LogProgress;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;

pub async fn handle(engine: &Engine, _event: LambdaEvent<Value>) -> Result<Value, Error> {
    let now = chrono::Utc::now();
    let report = engine.sync_mappings(now, &LogProgress).await;
    if let Some(doc) = engine.metrics.to_emf("TicketBridge", "sync-mappings", now.timestamp_millis()) {
        println!("{doc}");
    }
    Ok(serde_json::to_value(&report)?)
}
