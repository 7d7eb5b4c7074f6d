//! Secrets never reach the logs, for every target: each target's flow runs with faults (5xx on
//! create, revoked tokens, malformed status response, a lost create response) and every log line
//! (TRACE, all crates) captured; then the capture is searched for every secret value each
//! connection held at any point (initial credentials, cached and rotated tokens).

mod support;

use bridge::domain::{Grouping, TaskState};
use chrono::{Duration, Utc};
use sandbox::faults::Fault;
use sandbox::targets::Target;
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use support::{Backend, Harness, access_task};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

async fn secret_values(h: &Harness, into: &mut BTreeSet<String>) {
    let name = h.engine.config.connections[support::CONN].secret.clone();
    let s = h.secrets.get(&name).await.unwrap();
    for f in s.fields().filter(|f| !f.ends_with("expires_at") && !f.ends_with("_at")) {
        if let Some(v) = s.get(f) {
            // Identifiers that are not secret (user names, client ids, tenants) are skipped.
            if !matches!(f, "username" | "client_id" | "tenant") && v.len() >= 8 {
                into.insert(v.to_string());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_of_any_target_appears_in_the_logs_under_faults() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .init();
    let mut needles = BTreeSet::new();
    for target in Target::ALL {
        let h = Harness::for_target(target, Backend::Sqlite, Grouping::None, |_| {}).await;
        secret_values(&h, &mut needles).await;
        let (_, t) = h.submit(access_task(&format!("SEC-{target:?}"))).await;
        let id = t["id"].as_str().unwrap().to_string();
        h.sim().fail_next(1, 503);
        h.create(&id).await;
        h.sim().revoke_tokens();
        h.sim().faults().inject(Fault::LoseResponse, 1);
        h.engine.create_due(Utc::now() + Duration::seconds(5), 10).await;
        h.sim().malformed_next(1);
        h.poll().await;
        h.sim().revoke_tokens();
        let task = h.task(&id).await;
        assert_eq!(task.state, TaskState::TicketOpen, "{target:?}: {:?}", task.last_error);
        h.sim().close(&task.ticket.unwrap().id, Some(h.target.done_status)).unwrap();
        h.poll_at(Utc::now() + Duration::seconds(60)).await;
        assert_eq!(h.task(&id).await.state, TaskState::Completed, "{target:?}");
        h.engine.refresh_tokens(Utc::now()).await;
        secret_values(&h, &mut needles).await;
    }
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).to_string();
    assert!(logs.len() > 10_000, "the capture saw the runs ({} bytes)", logs.len());
    assert!(needles.len() >= 14, "expected at least two secret values per target: {}", needles.len());
    for n in &needles {
        assert!(!logs.contains(n.as_str()), "a secret value leaked into the logs (value of length {})", n.len());
    }
}
