//! Give-up horizon (#15 item 2), on both stores: a task whose ticket stays open longer than the
//! connection's `give_up_after_days` stops being polled with its own final outcome (`abandoned`,
//! result `failed`), a reason naming the setting, a `TaskAbandoned` event and the signed callback;
//! a ticket that closes on the last poll still completes normally; 0 never gives up.

mod support;

use bridge::domain::{Grouping, Outcome, TaskResult, TaskState};
use chrono::{Duration, Utc};
use serde_json::json;
use support::{Backend, CALLBACK_KEY, Harness};

async fn submit_open(h: &Harness, external_id: &str, callback: Option<&str>) -> String {
    let mut body = support::access_task(external_id);
    if let Some(url) = callback {
        body["callback_url"] = json!(url);
    }
    let (s, task) = h.submit(body).await;
    assert_eq!(s, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    h.create(&id).await;
    assert_eq!(h.task(&id).await.state, TaskState::TicketOpen);
    id
}

async fn open_past_horizon_is_abandoned(backend: Backend) {
    let h = Harness::with(backend, Grouping::None, |c| {
        c.connections.get_mut(support::CONN).unwrap().give_up_after_days = 3;
    })
    .await;
    let (url, received) = support::callback_receiver().await;
    let stale = submit_open(&h, "GIVEUP-1", Some(&url)).await;
    let closing = submit_open(&h, "GIVEUP-2", None).await;

    // Within the horizon: still polled, nothing abandoned.
    let r = h.poll_at(Utc::now() + Duration::days(2)).await;
    assert_eq!((r.abandoned, r.completed), (0, 0), "{r:?}");
    assert_eq!(h.task(&stale).await.state, TaskState::TicketOpen);

    // Past it: the ticket closed meanwhile completes as usual; the other is abandoned.
    let closing_ticket = h.task(&closing).await.ticket.unwrap().id;
    h.sim().close(&closing_ticket, Some(h.target.done_status)).unwrap();
    let at = Utc::now() + Duration::days(3) + Duration::minutes(1);
    let r = h.poll_at(at).await;
    assert_eq!((r.abandoned, r.completed), (1, 1), "{r:?}");
    let done = h.task(&closing).await;
    assert_eq!((done.state, done.outcome), (TaskState::Completed, Some(Outcome::Fulfilled)));

    let t = h.task(&stale).await;
    assert_eq!((t.state, t.outcome, t.result()), (TaskState::Completed, Some(Outcome::Abandoned), TaskResult::Failed));
    let reason = t.last_error.clone().unwrap_or_default();
    assert!(reason.contains("3 days") && reason.contains("give_up_after_days"), "{reason}");
    assert!(t.history.iter().any(|e| e.event == "abandoned"), "{:?}", t.history);
    assert!(t.due().is_none(), "no longer polled");
    let (s, body) = h.call("GET", &format!("/v1/tasks/{stale}"), None).await;
    assert_eq!(s, 200);
    assert_eq!((body["result"].as_str(), body["outcome"].as_str()), (Some("failed"), Some("abandoned")), "{body}");

    // One TaskAbandoned event, one signed callback with the same result.
    assert_eq!(h.event_types().iter().filter(|t| *t == "TaskAbandoned").count(), 1, "{:?}", h.event_types());
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, raw) = &got[0];
    bridge::engine::notify::verify(
        CALLBACK_KEY.as_bytes(),
        headers["x-bridge-timestamp"].to_str().unwrap(),
        raw,
        headers["x-bridge-signature"].to_str().unwrap(),
        at, // the poll run's clock signed it
        300,
    )
    .unwrap();
    let cb: serde_json::Value = serde_json::from_slice(raw).unwrap();
    assert_eq!((cb["result"].as_str(), cb["outcome"].as_str()), (Some("failed"), Some("abandoned")));

    // Later runs leave it alone.
    let r = h.poll_at(Utc::now() + Duration::days(10)).await;
    assert_eq!((r.abandoned, r.tickets), (0, 0), "{r:?}");
}

async fn zero_never_gives_up(backend: Backend) {
    let h = Harness::new(backend, Grouping::None).await;
    let id = submit_open(&h, "GIVEUP-NEVER", None).await;
    let r = h.poll_at(Utc::now() + Duration::days(3650)).await;
    assert_eq!(r.abandoned, 0, "{r:?}");
    assert_eq!(h.task(&id).await.state, TaskState::TicketOpen);
}

both_stores!(open_past_horizon_is_abandoned, zero_never_gives_up);
