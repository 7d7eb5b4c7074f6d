//! The durable outbox on both stores: a completion's callback and event are stored with the state
//! change, survive a failing receiver and a sender dropped mid-delivery, reach the receiver at least
//! once with one stable delivery id, and dead-letter with a reason (listable, replayable).

mod support;

use bridge::domain::{DeliveryKind, DeliveryState, Grouping, TaskState};
use chrono::{Duration, Utc};
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use support::{Backend, CALLBACK_KEY, Harness, access_task};

/// One request a receiver saw: delivery id header and body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// How the receiver answers request number n (0-based).
#[derive(Clone, Copy)]
enum Plan {
    /// 503 for the first `n` requests, then 200.
    FailFirst(u32),
    /// The first request is never answered (the sender gives up or is dropped); then 200.
    HangFirst,
    /// 500 until `ok_from` is set.
    Down,
}

struct Receiver {
    url: String,
    seen: Seen,
    seen_changed: Arc<tokio::sync::Notify>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
}

async fn receiver(plan: Plan) -> Receiver {
    let seen: Seen = Arc::default();
    let changed = Arc::new(tokio::sync::Notify::new());
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let count = Arc::new(AtomicU32::new(0));
    let (s, c, ok) = (seen.clone(), changed.clone(), healthy.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let (s, c, ok, count) = (s.clone(), c.clone(), ok.clone(), count.clone());
            async move {
                let id = headers.get("x-bridge-delivery").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let ts = headers["x-bridge-timestamp"].to_str().unwrap().to_string();
                let sig = headers["x-bridge-signature"].to_str().unwrap().to_string();
                bridge::engine::notify::verify(CALLBACK_KEY.as_bytes(), &ts, &body, &sig, Utc::now(), 300)
                    .expect("every attempt is signed");
                let n = count.fetch_add(1, Ordering::SeqCst);
                s.lock().unwrap().push((id, body.to_vec()));
                c.notify_waiters();
                match plan {
                    Plan::FailFirst(k) if n < k => http::StatusCode::SERVICE_UNAVAILABLE,
                    Plan::HangFirst if n == 0 => {
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                    Plan::Down if !ok.load(Ordering::SeqCst) => http::StatusCode::INTERNAL_SERVER_ERROR,
                    _ => http::StatusCode::OK,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Receiver { url: format!("http://{addr}/hook"), seen, seen_changed: changed, healthy }
}

impl Receiver {
    fn ids(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().map(|(id, _)| id.clone()).collect()
    }
}

/// Submits a task with `callback_url`, opens its ticket, has the technician close it; returns the id.
async fn closed_task(h: &Harness, ext: &str, url: &str) -> String {
    let mut body = access_task(ext);
    body["callback_url"] = json!(url);
    let (status, task) = h.submit(body).await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    h.create(&id).await;
    let t = h.task(&id).await;
    h.sim().close(&t.ticket.unwrap().id, None).unwrap();
    id
}

/// The task's callback entry as the API lists it in `state`.
async fn listed(h: &Harness, state: &str, task: &str) -> Option<serde_json::Value> {
    let (status, page) = h.call("GET", &format!("/v1/deliveries?state={state}&limit=500"), None).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().iter().find(|d| d["task_id"] == task && d["kind"] == "callback").cloned()
}

async fn failing_receiver_gets_the_callback_after_restart_with_one_delivery_id(backend: Backend) {
    let h = Harness::new(backend, Grouping::None).await;
    // The immediate attempt walks the notifier's ladder (3 requests): all fail; the 4th fails too.
    let r = receiver(Plan::FailFirst(4)).await;
    let id = closed_task(&h, "OB-1", &r.url).await;
    let t0 = Utc::now();
    assert_eq!(h.poll_at(t0).await.completed, 1);
    assert_eq!(h.task(&id).await.state, TaskState::Completed);
    assert_eq!(r.ids().len(), 3, "one attempt along the retry ladder");
    let pending = listed(&h, "pending", &id).await.expect("the failed callback is pending in the outbox");
    assert_eq!(pending["attempts"], 1);
    assert!(pending["last_error"].as_str().unwrap().contains("503"), "{pending}");
    let delivery_id = pending["id"].as_str().unwrap().to_string();

    // "Restart": a fresh engine over the same store (as after a crash, or the next Lambda run).
    let engine = h.twin();
    drop(h.engine);
    let report = engine.deliver_due(t0).await;
    assert_eq!(report.attempted, 0, "backoff: the callback is not due yet (and the event went out at once)");
    assert_eq!(r.ids().len(), 3);
    let later = t0 + Duration::hours(2);
    let first = engine.deliver_due(later).await;
    assert_eq!((first.attempted, first.retrying), (1, 1), "4th request fails: {first:?}");
    let second = engine.deliver_due(later + Duration::hours(2)).await;
    assert_eq!((second.attempted, second.delivered), (1, 1), "{second:?}");
    assert_eq!(engine.deliver_due(later + Duration::days(1)).await.attempted, 0, "acknowledged: never sent again");

    let ids = r.ids();
    assert_eq!(ids.len(), 5);
    assert!(ids.iter().all(|i| *i == delivery_id), "one stable delivery id across attempts and restarts: {ids:?}");
    let stored = engine.store.get_delivery(&delivery_id).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.attempts), (DeliveryState::Delivered, 3));
    let body: serde_json::Value = serde_json::from_slice(&r.seen.lock().unwrap()[4].1).unwrap();
    assert_eq!((body["id"].as_str(), body["state"].as_str()), (Some(id.as_str()), Some("completed")));
}

async fn a_sender_dropped_mid_delivery_is_replaced_and_the_receiver_sees_the_same_id(backend: Backend) {
    let h = Harness::with(backend, Grouping::None, |c| c.settings.delivery_claim_secs = 30).await;
    let r = receiver(Plan::HangFirst).await;
    let id = closed_task(&h, "OB-2", &r.url).await;
    let t0 = Utc::now();
    // The poll's immediate attempt hangs on the receiver; the process "dies" there.
    let engine = Arc::new(h.twin());
    let e = engine.clone();
    let poll = tokio::spawn(async move { e.poll_connection(support::CONN, t0, false).await });
    let arrived = r.seen_changed.notified();
    if r.ids().is_empty() {
        tokio::time::timeout(std::time::Duration::from_secs(20), arrived)
            .await
            .expect("the callback reached the receiver");
    }
    poll.abort();
    assert!(poll.await.unwrap_err().is_cancelled());
    assert_eq!(h.task(&id).await.state, TaskState::Completed, "the state change was stored before sending");
    let claimed = listed(&h, "pending", &id).await.expect("the entry is still pending");
    assert_eq!(claimed["attempts"], 0, "the dropped sender recorded nothing");

    // Within the claim nobody else sends; after it, the next sender does, with the same id.
    let other = h.twin();
    assert_eq!(other.deliver_due(t0 + Duration::seconds(29)).await.attempted, 0, "claimed entries are not due");
    let report = other.deliver_due(t0 + Duration::seconds(31)).await;
    assert_eq!(report.delivered, 1, "{report:?}");
    let ids = r.ids();
    assert_eq!(ids.len(), 2, "at least once: the request the dead sender made, and the resend");
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0], claimed["id"].as_str().unwrap());
}

async fn an_unacknowledged_callback_dead_letters_with_a_reason_and_replays(backend: Backend) {
    let h = Harness::with(backend, Grouping::None, |c| c.settings.delivery_max_attempts = 2).await;
    let r = receiver(Plan::Down).await;
    let id = closed_task(&h, "OB-3", &r.url).await;
    let t0 = Utc::now();
    h.poll_at(t0).await;
    let report = h.engine.deliver_due(t0 + Duration::hours(2)).await;
    assert_eq!(report.dead, 1, "{report:?}");
    let dead = listed(&h, "dead", &id).await.expect("listed as dead");
    assert_eq!(dead["attempts"], 2);
    assert_eq!(dead["last_error"], "callback answered HTTP 500");
    assert!(listed(&h, "pending", &id).await.is_none());
    assert_eq!(h.engine.deliver_due(t0 + Duration::days(3)).await.attempted, 0, "dead entries are not retried");

    let delivery_id = dead["id"].as_str().unwrap();
    let (status, replayed) = h.call("POST", &format!("/v1/deliveries/{delivery_id}/replay"), None).await;
    assert_eq!((status, replayed["state"].as_str(), replayed["attempts"].as_u64()), (200, Some("pending"), Some(0)));
    let (status, again) = h.call("POST", &format!("/v1/deliveries/{delivery_id}/replay"), None).await;
    assert_eq!(status, 409, "{again}");
    let (status, _) = h.call("POST", "/v1/deliveries/01ARZ3NDEKTSV4RRFFQ69G5FAV/replay", None).await;
    assert_eq!(status, 404);
    let (status, bad) = h.call("GET", "/v1/deliveries?state=lost", None).await;
    assert_eq!((status, bad["error"]["field"].as_str()), (422, Some("state")));

    r.healthy.store(true, Ordering::SeqCst);
    assert_eq!(h.engine.deliver_due(Utc::now()).await.delivered, 1);
    let ids = r.ids();
    assert!(ids.len() >= 3 && ids.iter().all(|i| i == delivery_id), "{ids:?}");
    assert!(listed(&h, "delivered", &id).await.is_some());
}

async fn events_carry_their_delivery_id(backend: Backend) {
    let h = Harness::new(backend, Grouping::None).await;
    let r = receiver(Plan::FailFirst(0)).await;
    let id = closed_task(&h, "OB-4", &r.url).await;
    h.poll().await;
    let events = h.events.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    let event_id = events[0].detail["delivery_id"].as_str().expect("delivery_id in the event detail").to_string();
    let stored = h.store.get_delivery(&event_id).await.unwrap().expect("the event is an outbox entry");
    assert_eq!(
        (stored.kind, stored.state, stored.task_id.as_str()),
        (DeliveryKind::Event, DeliveryState::Delivered, id.as_str())
    );
    assert_ne!(r.ids()[0], event_id, "callback and event are separate entries");
}

/// A task dead-letters while the receiver is down, so its `TaskFailed` callback waits in the
/// outbox; the operator replays the task, which completes and sends `TaskCompleted`. When the old
/// entry's turn comes it is no longer true: it ends `superseded` (reason stored, listed) and is never
/// sent, so the receiver's last word on the task stays "completed". Sending it would undo the
/// completion on the receiver's side.
async fn a_failed_notice_for_a_replayed_task_is_superseded_not_sent(backend: Backend) {
    let h = Harness::with(backend, Grouping::None, |c| c.settings.max_attempts = 1).await;
    let r = receiver(Plan::Down).await;
    let mut body = access_task("OB-5");
    body["callback_url"] = json!(r.url);
    let (status, task) = h.submit(body).await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    h.sim().faults().inject_on(
        sandbox::targets::Target::Sandbox.create_route(),
        sandbox::Fault::Status { status: 503 },
        support::REQUESTS_PER_ATTEMPT,
    );
    h.create(&id).await;
    assert_eq!(h.task(&id).await.state, TaskState::Failed);
    let failed = listed(&h, "pending", &id).await.expect("the TaskFailed callback waits in the outbox");
    assert_eq!(failed["detail_type"], "TaskFailed");

    let (status, replayed) = h.call("POST", &format!("/v1/tasks/{id}/replay"), None).await;
    assert_eq!(status, 200, "{replayed}");
    r.healthy.store(true, Ordering::SeqCst);
    let before = r.ids().len();
    let t = closed_task_again(&h, &id).await;
    assert_eq!(h.poll_at(t).await.completed, 1);
    assert_eq!(h.task(&id).await.state, TaskState::Completed);

    let report = h.engine.deliver_due(t + Duration::hours(2)).await;
    assert_eq!((report.superseded, report.delivered), (1, 0), "{report:?}");
    let superseded = listed(&h, "superseded", &id).await.expect("listed as superseded");
    assert_eq!(superseded["id"], failed["id"]);
    let reason = superseded["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains("replayed"), "{reason}");
    assert_eq!(h.engine.deliver_due(t + Duration::days(3)).await.attempted, 0, "finished: never sent again");
    let sent_after: Vec<String> = r.seen.lock().unwrap()[before..]
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<serde_json::Value>(b).unwrap()["state"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(sent_after, ["completed"], "after the replay the receiver hears only the completion");
}

/// Opens the (replayed) task's ticket and has the technician close it; returns the time to poll at.
async fn closed_task_again(h: &Harness, id: &str) -> chrono::DateTime<Utc> {
    h.create(id).await;
    let t = h.task(id).await;
    h.sim().close(&t.ticket.expect("the replay opened a ticket").id, None).unwrap();
    Utc::now()
}

both_stores!(
    a_failed_notice_for_a_replayed_task_is_superseded_not_sent,
    failing_receiver_gets_the_callback_after_restart_with_one_delivery_id,
    a_sender_dropped_mid_delivery_is_replaced_and_the_receiver_sees_the_same_id,
    an_unacknowledged_callback_dead_letters_with_a_reason_and_replays,
    events_carry_their_delivery_id,
);

/// Breakage detector: the outbox entry must be written in the SAME write as the completion. With
/// the entry insert failing (a trigger stands in for a crash between two writes), the completion
/// must not be stored either; a later poll completes the task and delivers the callback. Moving the
/// entry write out of the state change (task saved, entry written after) fails this test: the task
/// would be completed with no entry, and the callback lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_failed_outbox_write_does_not_complete_the_task() {
    let h = Harness::new(Backend::Sqlite, Grouping::None).await;
    let db = h.sqlite_file();
    let r = receiver(Plan::FailFirst(0)).await;
    let id = closed_task(&h, "OB-5", &r.url).await;
    let raw = rusqlite::Connection::open(&db).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER crash_between BEFORE INSERT ON deliveries BEGIN SELECT RAISE(ABORT, 'injected crash'); END;",
    )
    .unwrap();
    assert_eq!(h.poll().await.completed, 0);
    assert_eq!(h.task(&id).await.state, TaskState::TicketOpen, "no completion without its outbox entries");
    assert!(r.ids().is_empty());
    raw.execute_batch("DROP TRIGGER crash_between;").unwrap();
    assert_eq!(h.poll().await.completed, 1);
    assert_eq!(h.task(&id).await.state, TaskState::Completed);
    assert_eq!(r.ids().len(), 1, "the callback goes out once the completion is stored");
}
