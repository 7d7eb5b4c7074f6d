//! create-ticket: DynamoDB stream batches (partial batch failure response) and the scheduled
//! retry sweep.

use bridge::domain::TaskId;
use bridge::engine::Engine;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};

/// Tasks the sweep claims per invocation.
pub const SWEEP_LIMIT: usize = 200;

pub async fn handle(engine: &Engine, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let now = chrono::Utc::now();
    let response = match event.payload.get("Records").and_then(Value::as_array) {
        Some(records) => {
            let mut failures = Vec::new();
            for record in records {
                let Some((seq, id)) = stream_task(record) else { continue };
                match engine.create_one(&id, now).await {
                    Ok(report) => tracing::info!(task = %id, ?report, "stream record processed"),
                    Err(e) => {
                        tracing::error!(task = %id, error = %e, "stream record failed");
                        failures.push(json!({"itemIdentifier": seq}));
                    }
                }
            }
            json!({"batchItemFailures": failures})
        }
        None => {
            let report = engine.create_due(now, SWEEP_LIMIT).await;
            tracing::info!(?report, "retry sweep done");
            json!({"created": report.created, "noted": report.noted, "retried": report.retried,
                   "dead_lettered": report.dead_lettered, "errors": report.errors})
        }
    };
    if let Some(doc) = engine.metrics.to_emf("TicketBridge", "create-ticket", now.timestamp_millis()) {
        println!("{doc}");
    }
    Ok(response)
}

/// Sequence number and task id of a stream record that holds a task waiting for a ticket.
pub fn stream_task(record: &Value) -> Option<(String, TaskId)> {
    let ddb = record.get("dynamodb")?;
    let seq = ddb.get("SequenceNumber")?.as_str()?.to_string();
    let image = ddb.get("NewImage")?;
    let pk = image.get("PK")?.get("S")?.as_str()?;
    let id = TaskId::parse(pk.strip_prefix("TASK#")?)?;
    Some((seq, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_records_yield_task_ids_and_skip_other_items() {
        let id = TaskId::generate();
        let rec = json!({"eventName":"INSERT","dynamodb":{"SequenceNumber":"111","NewImage":{"PK":{"S":format!("TASK#{id}")},"SK":{"S":"TASK"}}}});
        assert_eq!(stream_task(&rec), Some(("111".into(), id)));
        let other = json!({"dynamodb":{"SequenceNumber":"112","NewImage":{"PK":{"S":"EXT#a#b"}}}});
        assert_eq!(stream_task(&other), None);
        let removed = json!({"eventName":"REMOVE","dynamodb":{"SequenceNumber":"113"}});
        assert_eq!(stream_task(&removed), None);
    }
}
