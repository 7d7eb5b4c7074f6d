//! Counters the engine bumps, flushed as CloudWatch embedded-metric-format (EMF) documents.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Metric counters (names like "TasksAccepted", "TicketsCreated", "Polls", "Completions",
/// "Retries", "DeadLetters", "TokenRefreshes", "TokenRefreshFailures", "PatExpiring").
#[derive(Debug, Default)]
pub struct Metrics {
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn incr(&self, name: &'static str, by: u64) {
        if let Ok(mut m) = self.counts.lock() {
            *m.entry(name).or_default() += by;
        }
    }

    pub fn get(&self, name: &str) -> u64 {
        self.counts.lock().ok().and_then(|m| m.get(name).copied()).unwrap_or(0)
    }

    /// Takes the counters accumulated so far, resetting them.
    pub fn take(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default()
    }

    /// Drains the counters into one EMF JSON document (None when nothing was counted).
    pub fn to_emf(&self, namespace: &str, function: &str, now_ms: i64) -> Option<String> {
        let counts = self.take();
        if counts.is_empty() {
            return None;
        }
        let metrics: Vec<_> = counts.keys().map(|k| serde_json::json!({"Name": k, "Unit": "Count"})).collect();
        let mut doc = serde_json::json!({
            "_aws": {
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [["Function"]], "Metrics": metrics}]
            },
            "Function": function,
        });
        if let Some(o) = doc.as_object_mut() {
            for (k, v) in counts {
                o.insert(k.to_string(), v.into());
            }
        }
        Some(doc.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_lists_every_counted_metric_and_resets() {
        let m = Metrics::default();
        m.incr("TasksAccepted", 2);
        m.incr("Polls", 1);
        let doc: serde_json::Value = serde_json::from_str(&m.to_emf("TicketBridge", "intake", 1).unwrap()).unwrap();
        assert_eq!(doc["TasksAccepted"], 2);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len(), 2);
        assert!(m.to_emf("TicketBridge", "intake", 1).is_none());
    }
}
