//! poll-status: on a schedule, polls open tickets of every connection whose interval has passed,
//! then sends the callbacks and events of the outbox that are due.

use bridge::engine::Engine;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;

pub async fn handle(engine: &Engine, _event: LambdaEvent<Value>) -> Result<Value, Error> {
    let now = chrono::Utc::now();
    let reports = engine.poll_all(now).await;
    for (conn, r) in &reports {
        tracing::info!(connection = %conn, tickets = r.tickets, requests = r.requests, changed = r.changed,
            completed = r.completed, failed_batches = r.failed_batches, skipped = r.skipped, "poll run");
    }
    // Callbacks and events not acknowledged yet (the outbox): one attempt each that is due.
    let outbox = engine.deliver_due(now).await;
    tracing::info!(
        attempted = outbox.attempted,
        delivered = outbox.delivered,
        retrying = outbox.retrying,
        dead = outbox.dead,
        "outbox run"
    );
    if let Some(doc) = engine.metrics.to_emf("TicketBridge", "poll-status", now.timestamp_millis()) {
        println!("{doc}");
    }
    let summary: serde_json::Map<String, Value> = reports
        .into_iter()
        .map(|(k, r)| (k, serde_json::json!({"tickets": r.tickets, "completed": r.completed, "skipped": r.skipped})))
        .collect();
    Ok(Value::Object(summary))
}
