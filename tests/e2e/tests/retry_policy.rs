//! Retry policy per connection (#15 item 4), on both stores: `[connections.<name>.retry]` chooses
//! which failure classes and 4xx statuses are retried and how many attempts a task gets; without
//! it the bridge behaves as before (every class retried, 4xx refusals final, settings.max_attempts).

mod support;

use bridge::config::{RetryClass, RetryPolicy};
use bridge::domain::{Grouping, TaskState};
use chrono::{Duration, Utc};
use sandbox::faults::Fault;
use sandbox::targets::Target;
use support::{Backend, Harness};

const CREATE: &str = "POST /api/v1/tickets";

async fn harness(backend: Backend, policy: Option<RetryPolicy>) -> Harness {
    Harness::for_target(Target::Sandbox, backend, Grouping::None, |c| {
        c.settings.max_attempts = 5;
        let conn = c.connections.get_mut(support::CONN).unwrap();
        // One HTTP request per engine attempt: the policy under test is the engine's.
        let http: toml::Table = toml::from_str("max_retries = 0\nbackoff_base_ms = 1\nbackoff_max_ms = 1").unwrap();
        conn.options.insert("http".into(), toml::Value::Table(http));
        conn.rate_limit_per_hour = 1_000_000;
        if let Some(p) = policy {
            conn.retry = p;
        }
    })
    .await
}

/// Submits and runs creation attempts (each after its backoff) until the task leaves `received`
/// or `runs` attempts were made; returns the task.
async fn attempt(h: &Harness, external_id: &str, runs: u32) -> bridge::domain::Task {
    let (_, body) = h.submit(support::access_task(external_id)).await;
    let id = body["id"].as_str().unwrap().to_string();
    h.create(&id).await;
    for i in 1..runs {
        if h.task(&id).await.state != TaskState::Received {
            break;
        }
        h.engine.create_due(Utc::now() + Duration::hours(i64::from(i)), 10).await;
    }
    h.task(&id).await
}

async fn default_policy_is_unchanged(backend: Backend) {
    let h = harness(backend, None).await;
    // 401 (auth) is retried by default, up to settings.max_attempts = 5.
    h.sim().faults().inject_on(CREATE, Fault::Status { status: 401 }, 10_000);
    let t = attempt(&h, "RETRY-DEFAULT-401", 10).await;
    assert_eq!((t.state, t.attempts), (TaskState::Failed, 5), "{:?}", t.history);
    h.sim().faults().clear();
    // A 409 refusal is final at once.
    h.sim().faults().inject_on(CREATE, Fault::Status { status: 409 }, 10_000);
    let t = attempt(&h, "RETRY-DEFAULT-409", 10).await;
    assert_eq!((t.state, t.attempts), (TaskState::Failed, 1), "{:?}", t.history);
}

async fn policy_chooses_classes_codes_and_attempts(backend: Backend) {
    let policy = RetryPolicy {
        max_attempts: Some(3),
        retry_on: vec![RetryClass::ServerError, RetryClass::Timeout],
        retry_statuses: vec![409],
    };
    let h = harness(backend, Some(policy)).await;
    // 503: retried, dead-lettered after the connection's 3 attempts (not settings' 5).
    h.sim().faults().inject_on(CREATE, Fault::Status { status: 503 }, 10_000);
    let t = attempt(&h, "RETRY-503", 10).await;
    assert_eq!((t.state, t.attempts), (TaskState::Failed, 3), "{:?}", t.history);
    h.sim().faults().clear();
    // 401: auth is not in retry_on: final at the first attempt.
    h.sim().faults().inject_on(CREATE, Fault::Status { status: 401 }, 10_000);
    let t = attempt(&h, "RETRY-401", 10).await;
    assert_eq!((t.state, t.attempts), (TaskState::Failed, 1), "{:?}", t.history);
    h.sim().faults().clear();
    // 409 is listed: retried, and the ticket opens once the target accepts.
    h.sim().faults().inject_on(CREATE, Fault::Status { status: 409 }, 1);
    let t = attempt(&h, "RETRY-409", 10).await;
    assert_eq!((t.state, t.attempts), (TaskState::TicketOpen, 2), "{:?}", t.history);
}

both_stores!(default_policy_is_unchanged, policy_chooses_classes_codes_and_attempts);
