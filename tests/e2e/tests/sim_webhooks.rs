//! Webhooks sent by the simulators themselves (the RT scrip, the Znuny invoker, the sandbox desk's
//! own hook; tests/sandbox/src/webhooks.rs) to the bridge's `POST /v1/hooks/{connection}` over
//! HTTP, on both stores. A technician's close completes the task through the hook alone, with no
//! poll cycle run; a delivery lost on the way (the simulator's drop fault) is caught by the
//! periodic full sweep. The target's clock runs 60 s behind the bridge's and the change margin is
//! 2 s, so an incremental read cannot see the close: only the sweep (every 3rd cycle) can.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::domain::{Grouping, TaskState};
use bridge::engine::api::{ApiRequest, handle};
use bridge::secrets::Secret;
use chrono::Utc;
use sandbox::targets::Target;
use sandbox::webhooks::WebhookConfig;
use serde_json::json;
use support::{Backend, CONN, Harness, unique};

const HOOK_KEY: &str = "sim-hook-key-for-tests";
const SWEEP_EVERY: u32 = 3;
/// How long a test waits for a hook's effect: a bound on a hung run, not a speed target (the
/// close → completed latency is measured by `cargo xtask bench`, section close_latency).
const HOOK_WAIT: Duration = Duration::from_secs(30);

/// Serves the engine's API (only what a hook needs) on loopback; returns the hook URL of [`CONN`].
async fn hook_endpoint(h: Arc<Harness>) -> String {
    let app = axum::Router::new().route(
        "/v1/hooks/{conn}",
        axum::routing::post(
            move |axum::extract::Path(conn): axum::extract::Path<String>,
                  headers: http::HeaderMap,
                  body: axum::body::Bytes| {
                let h = h.clone();
                async move {
                    let path = format!("/v1/hooks/{conn}");
                    let req = ApiRequest {
                        method: "POST",
                        path: &path,
                        query: None,
                        headers: &headers,
                        body: &body,
                        peer_loopback: false,
                    };
                    let res = handle(&h.engine, req, Utc::now()).await;
                    let status = http::StatusCode::from_u16(res.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
                    (status, axum::Json(res.body))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://{addr}/v1/hooks/{CONN}")
}

/// A harness on `target` whose connection takes hooks keyed [`HOOK_KEY`] (full sweep every
/// [`SWEEP_EVERY`] cycles, 2 s margin), whose simulator sends its webhooks there and runs 60 s
/// behind; `n` open tickets, one full poll cycle already run (it stores the first mark).
async fn setup(target: Target, backend: Backend, n: usize) -> (Arc<Harness>, Vec<(String, String)>) {
    let secret = unique("tb/sim-hooks");
    let name = secret.clone();
    let h = Harness::for_target(target, backend, Grouping::None, move |c| {
        let p = &mut c.connections.get_mut(CONN).unwrap().polling;
        p.webhook_secret = Some(name);
        p.full_sweep_every = SWEEP_EVERY;
        p.change_margin_secs = 2;
    })
    .await;
    let mut s = Secret::new();
    s.set("webhook_key", HOOK_KEY);
    h.secrets.put(&secret, &s).await.unwrap();
    h.sim().set_clock_skew(chrono::Duration::seconds(-60));
    let mut out = Vec::new();
    for i in 0..n {
        let body = json!({"source":"saviynt","external_id":format!("SIMHOOK-{i}"),"kind":"access","action":"add_access",
            "user":{"id":format!("u-{i}"),"name":"Alice","email":"alice@acme.io"},"application":"Payroll","entitlements":["x"]});
        let (s, task) = h.submit(body).await;
        assert_eq!(s, 201, "{task}");
        let id = task["id"].as_str().unwrap().to_string();
        h.create(&id).await;
        let t = h.task(&id).await;
        assert_eq!(t.state, TaskState::TicketOpen, "{:?}", t.last_error);
        out.push((id, t.ticket.unwrap().id));
    }
    let first = h.poll().await;
    assert!(!first.incremental && first.completed == 0, "{first:?}");
    let h = Arc::new(h);
    let url = hook_endpoint(h.clone()).await;
    h.sim().set_webhook(Some(WebhookConfig { url, key: HOOK_KEY.into() })).unwrap();
    (h, out)
}

/// Waits up to `limit` for the task to complete; the time it took, `None` on timeout.
async fn completed_within(h: &Harness, task: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if h.task(task).await.state == TaskState::Completed {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// The technician closes a ticket; the simulator's webhook alone completes its task (no poll
/// cycle runs); the other task stays open. (How fast is a benchmark figure, not asserted here.)
async fn hook_completes_without_polling(target: Target, backend: Backend) {
    let (h, tasks) = setup(target, backend, 2).await;
    h.sim().close(&tasks[0].1, Some(h.target.done_status)).unwrap();
    let took = completed_within(&h, &tasks[0].0, HOOK_WAIT).await;
    assert!(h.sim().webhooks_settled(Duration::from_secs(10)).await);
    let stats = h.sim().webhook_stats();
    assert!(took.is_some(), "{target:?}: not completed after the close without a poll; webhooks {stats:?}");
    assert_eq!((stats.triggered, stats.delivered, stats.failed, stats.dropped), (1, 1, 0, 0), "{stats:?}");
    assert_eq!(h.task(&tasks[1].0).await.state, TaskState::TicketOpen);
}

/// The close's webhook is lost; incremental cycles cannot see the close (the target's clock is
/// behind by more than the margin); the full sweep completes the task. A later close, whose
/// webhook arrives, completes at once again.
async fn dropped_hook_caught_by_sweep(target: Target, backend: Backend) {
    let (h, tasks) = setup(target, backend, 2).await;
    let filter = h.engine.connectors[CONN].change_filter().is_some();
    h.sim().drop_next_webhooks(1);
    h.sim().close(&tasks[0].1, Some(h.target.done_status)).unwrap();
    assert!(h.sim().webhooks_settled(Duration::from_secs(10)).await);
    let stats = h.sim().webhook_stats();
    assert_eq!((stats.triggered, stats.delivered, stats.dropped), (1, 0, 1), "{stats:?}");
    assert_eq!(h.task(&tasks[0].0).await.state, TaskState::TicketOpen, "a dropped hook completed the task");
    // Cycles after the first: incremental ones until the sweep (the desk has no change filter:
    // every cycle is the full read).
    let mut caught_by = None;
    for cycle in 2..=SWEEP_EVERY + 1 {
        let r = h.poll().await;
        assert_eq!(r.failed_batches, 0, "{r:?}");
        if r.completed > 0 {
            assert!(!r.incremental, "{target:?}: cycle {cycle} is incremental yet saw the skewed close: {r:?}");
            caught_by = Some(cycle);
            break;
        }
    }
    let sweep = if filter { SWEEP_EVERY + 1 } else { 2 };
    assert_eq!(caught_by, Some(sweep), "{target:?}: the sweep must catch what the hook missed");
    assert_eq!(h.task(&tasks[0].0).await.state, TaskState::Completed);
    // The fault was one delivery: the next close's hook arrives and completes without a poll.
    h.sim().close(&tasks[1].1, Some(h.target.done_status)).unwrap();
    assert!(completed_within(&h, &tasks[1].0, HOOK_WAIT).await.is_some(), "{:?}", h.sim().webhook_stats());
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        $(mod $case {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sandbox_sqlite() { super::$case(Target::Sandbox, Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sandbox_dynamo() { super::$case(Target::Sandbox, Backend::Dynamo).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rt_sqlite() { super::$case(Target::Rt, Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rt_dynamo() { super::$case(Target::Rt, Backend::Dynamo).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn otrs_sqlite() { super::$case(Target::Otrs, Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn otrs_dynamo() { super::$case(Target::Otrs, Backend::Dynamo).await }
        })*
    };
}

cases!(hook_completes_without_polling, dropped_hook_caught_by_sweep);
