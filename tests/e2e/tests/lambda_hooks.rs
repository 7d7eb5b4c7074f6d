//! Desk webhooks on AWS: `POST /v1/hooks/{connection}` through the stack's API Gateway routes
//! (read from infra/template.yaml by the stand-in in `apigw/`) to the intake Lambda handler, over
//! DynamoDB and Secrets Manager on moto. The simulators send their own webhooks (the RT scrip's
//! signed form, the Znuny invoker's bearer form, the sandbox desk's signed form) when the
//! technician closes a ticket: the task completes with no poll run. A bad signature gets 401 and
//! an unknown ticket 404, and neither reads the target nor changes the task. Without the route in
//! the template, API Gateway answers 404 itself and the hook never reaches the function.

mod apigw;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::domain::{Grouping, TaskState};
use bridge::secrets::Secret;
use chrono::Utc;
use sandbox::targets::Target;
use sandbox::webhooks::WebhookConfig;
use serde_json::{Value, json};
use support::{Backend, CONN, Harness, unique};

const HOOK_KEY: &str = "lambda-hook-key-for-tests";
/// A bound on a hung run, not a speed target (close → completed is a benchmark figure).
const HOOK_WAIT: Duration = Duration::from_secs(30);

/// A harness on `target` (DynamoDB, Secrets Manager) whose connection takes hooks keyed
/// [`HOOK_KEY`], with `n` open tickets, and the API Gateway stand-in in front of intake. Returns
/// the harness, (task id, ticket id) pairs and the hook URL of [`CONN`].
async fn setup(target: Target, n: usize) -> (Arc<Harness>, Vec<(String, String)>, String) {
    let secret = unique("tb/lambda-hooks");
    let name = secret.clone();
    let h = Harness::for_target(target, Backend::Dynamo, Grouping::None, move |c| {
        c.connections.get_mut(CONN).unwrap().polling.webhook_secret = Some(name);
    })
    .await;
    let mut s = Secret::new();
    s.set("webhook_key", HOOK_KEY);
    h.secrets.put(&secret, &s).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (s, task) = h.submit(support::access_task(&format!("LHOOK-{i}"))).await;
        assert_eq!(s, 201, "{task}");
        let id = task["id"].as_str().unwrap().to_string();
        h.create(&id).await;
        let t = h.task(&id).await;
        assert_eq!(t.state, TaskState::TicketOpen, "{:?}", t.last_error);
        tasks.push((id, t.ticket.unwrap().id));
    }
    let h = Arc::new(h);
    let base = apigw::serve(h.clone()).await;
    (h, tasks, format!("{base}/v1/hooks/{CONN}"))
}

/// Posts `body` to `url` as a desk would, signed with `key` (HMAC form).
async fn post_signed(url: &str, key: &str, body: &Value) -> (u16, Value) {
    let raw = body.to_string();
    let ts = Utc::now().timestamp();
    let res = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-bridge-timestamp", ts.to_string())
        .header("x-bridge-signature", bridge::engine::notify::sign(key.as_bytes(), ts, raw.as_bytes()))
        .body(raw)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Waits up to `limit` for the task to complete; `false` on timeout.
async fn completes_within(h: &Harness, task: &str, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if h.task(task).await.state == TaskState::Completed {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// The technician closes a ticket; the simulator's own webhook, through API Gateway's route to
/// the intake handler, completes the task. No poll runs in this test.
async fn sim_hook_completes_through_intake(target: Target) {
    let (h, tasks, url) = setup(target, 2).await;
    h.sim().set_webhook(Some(WebhookConfig { url, key: HOOK_KEY.into() })).unwrap();
    h.sim().close(&tasks[0].1, Some(h.target.done_status)).unwrap();
    let done = completes_within(&h, &tasks[0].0, HOOK_WAIT).await;
    assert!(h.sim().webhooks_settled(Duration::from_secs(10)).await);
    let stats = h.sim().webhook_stats();
    assert!(done, "{target:?}: the hook through intake did not complete the task; webhooks {stats:?}");
    assert_eq!((stats.triggered, stats.delivered, stats.failed, stats.dropped), (1, 1, 0, 0), "{stats:?}");
    let task = h.task(&tasks[0].0).await;
    assert_eq!(task.outcome, Some(bridge::domain::Outcome::Fulfilled), "{task:?}");
    assert!(h.event_types().iter().any(|t| t == "TaskCompleted"), "{:?}", h.event_types());
    assert_eq!(h.task(&tasks[1].0).await.state, TaskState::TicketOpen, "the other task is untouched");
}

/// A wrong signature gets 401, an unknown ticket 404, a method the stack does not route API
/// Gateway's own 404: none reads the target or changes the (closed) ticket's task.
async fn refusals_through_intake_change_nothing(target: Target) {
    let (h, tasks, url) = setup(target, 1).await;
    h.sim().close(&tasks[0].1, Some(h.target.done_status)).unwrap();
    let before = h.sim().request_count();
    let body = json!({"ticket_id": tasks[0].1});

    let (s, e) = post_signed(&url, "not-the-key", &body).await;
    assert_eq!(s, 401, "{e}");
    assert_eq!(e["error"]["code"], "unauthorized", "{e}");

    let (s, e) = post_signed(&url, HOOK_KEY, &json!({"ticket_ids": [tasks[0].1, "999999"]})).await;
    assert_eq!(s, 404, "{e}");
    assert!(e.to_string().contains("no open ticket 999999"), "{e}");

    let (s, e) = post_signed(&url, HOOK_KEY, &json!({"ticket_id": "999999"})).await;
    assert_eq!(s, 404, "{e}");

    // Not a route of the stack: API Gateway answers, the function is never invoked.
    let res = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"message": "Not Found"}));

    assert_eq!(h.task(&tasks[0].0).await.state, TaskState::TicketOpen, "a refused hook changed the task");
    assert_eq!(h.sim().request_count(), before, "a refused hook read the target");
    assert!(h.event_types().is_empty(), "{:?}", h.event_types());

    // The same ticket, correctly signed: completed at once (the refusals left it due).
    let (s, ok) = post_signed(&url, HOOK_KEY, &body).await;
    assert_eq!((s, ok["completed"].as_u64()), (200, Some(1)), "{ok}");
    assert_eq!(h.task(&tasks[0].0).await.state, TaskState::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_scrip_hook_completes_through_intake() {
    sim_hook_completes_through_intake(Target::Rt).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otrs_invoker_hook_completes_through_intake() {
    sim_hook_completes_through_intake(Target::Otrs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_desk_hook_completes_through_intake() {
    sim_hook_completes_through_intake(Target::Sandbox).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_refusals_through_intake_change_nothing() {
    refusals_through_intake_change_nothing(Target::Rt).await
}
