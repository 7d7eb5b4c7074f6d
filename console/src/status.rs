//! What `serve` learned about its connections while running: the check at start-up (and any
//! re-check from the console) and the last poll run, for the console's Connections page.

use bridge::engine::{Engine, PollReport};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The result of one `check` of a connection.
#[derive(Debug, Clone)]
pub struct Health {
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// The connector's steps, in words.
    pub steps: Vec<String>,
    /// Why the check could not run at all.
    pub error: Option<String>,
}

impl Health {
    /// One line for the log and the page.
    pub fn summary(&self) -> String {
        match (&self.error, self.ok) {
            (Some(e), _) => format!("check failed: {e}"),
            (None, true) => "OK".to_string(),
            (None, false) => match self.steps.last() {
                Some(step) => format!("check failed: {step}"),
                None => "check failed".to_string(),
            },
        }
    }
}

/// The last poll run of a connection that did work.
#[derive(Debug, Clone)]
pub struct PollRun {
    pub at: DateTime<Utc>,
    pub report: PollReport,
    pub duration: Duration,
}

#[derive(Default)]
struct Inner {
    checks: BTreeMap<String, Health>,
    polls: BTreeMap<String, PollRun>,
}

/// Shared between the workers of `serve` and the console.
#[derive(Clone, Default)]
pub struct ConnectionStatus(Arc<Mutex<Inner>>);

impl ConnectionStatus {
    pub fn check_of(&self, conn: &str) -> Option<Health> {
        self.0.lock().ok()?.checks.get(conn).cloned()
    }

    pub fn poll_of(&self, conn: &str) -> Option<PollRun> {
        self.0.lock().ok()?.polls.get(conn).cloned()
    }

    /// Records a poll run that was not skipped.
    pub fn record_poll(&self, conn: &str, report: PollReport, duration: Duration) {
        if report.skipped {
            return;
        }
        if let Ok(mut inner) = self.0.lock() {
            inner.polls.insert(conn.to_string(), PollRun { at: Utc::now(), report, duration });
        }
    }

    /// Runs `check` on connection `conn`, records and returns the result.
    pub async fn check(&self, engine: &Engine, conn: &str) -> Health {
        let at = Utc::now();
        let health = match engine.connectors.get(conn) {
            None => Health { at, ok: false, steps: vec![], error: Some(format!("no connection '{conn}'")) },
            Some(c) => match c.check().await {
                Ok(r) => Health { at, ok: r.ok, steps: r.steps, error: None },
                Err(e) => Health { at, ok: false, steps: vec![], error: Some(e.to_string()) },
            },
        };
        if let Ok(mut inner) = self.0.lock() {
            inner.checks.insert(conn.to_string(), health.clone());
        }
        health
    }

    /// Checks every connection and logs one line each (start-up).
    pub async fn check_all_and_log(&self, engine: &Engine) {
        for conn in engine.connectors.keys() {
            let h = self.check(engine, conn).await;
            if h.ok {
                tracing::info!(connection = %conn, result = %h.summary(), "connection check at start-up");
            } else {
                tracing::warn!(connection = %conn, result = %h.summary(), "connection check at start-up");
            }
        }
    }

    /// Records a check run elsewhere (the console's Connect flow).
    pub fn record_check(&self, conn: &str, health: Health) {
        if let Ok(mut inner) = self.0.lock() {
            inner.checks.insert(conn.to_string(), health);
        }
    }
}
