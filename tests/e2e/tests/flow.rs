//! The product end to end on both stores: intake → ticket in the sandbox desk → technician closes
//! it → poll → completed → signed callback and event. Plus grouping, retries, dead letters, replay,
//! cancel and crash recovery.

mod support;

use bridge::domain::{Grouping, Outcome, TaskState};
use chrono::{Duration, Utc};
use sandbox::faults::Fault;
use serde_json::json;
use support::{Backend, CALLBACK_KEY, Harness, REQUESTS_PER_ATTEMPT, access_task, alert};

const CREATE_ROUTE: &str = sandbox::targets::Target::Sandbox.create_route();

async fn access_task_completes_with_signed_callback(backend: Backend) {
    let h = Harness::new(backend, Grouping::None).await;
    let (url, received) = support::callback_receiver().await;
    let mut body = access_task("TASK-1");
    body["callback_url"] = json!(url);
    let (status, task) = h.submit(body).await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(task["state"], "received");
    assert_eq!(task["status"], "Open");
    assert_eq!(task["result"], "open");

    h.create(&id).await;
    let t = h.task(&id).await;
    assert_eq!(t.state, TaskState::TicketOpen);
    let tickets = h.sim().tickets();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].correlation_key.as_deref(), Some(id.as_str()));
    assert_eq!(tickets[0].title, "Add Access: Ada Lovelace in Payroll");
    assert_eq!(t.ticket.as_ref().unwrap().id, tickets[0].id.to_string());

    // Still open: the poll changes nothing.
    let r = h.poll().await;
    assert_eq!((r.tickets, r.completed), (1, 0));
    assert_eq!(h.task(&id).await.version, t.version, "an unchanged poll must not write");

    // Waiting → Pending.
    h.sim().set_status(&tickets[0].id.to_string(), "Waiting").unwrap();
    h.poll().await;
    let (_, view) = h.call("GET", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!(view["status"], "Pending");
    assert_eq!(view["result"], "pending");
    assert_eq!(view["ticket"]["remote_status"], "Waiting");

    // The technician resolves it.
    h.sim().close(&tickets[0].id.to_string(), Some("Resolved")).unwrap();
    let r = h.poll().await;
    assert_eq!(r.completed, 1);
    let (_, view) = h.call("GET", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!(view["state"], "completed");
    assert_eq!(view["status"], "Closed");
    assert_eq!(view["outcome"], "fulfilled");
    assert_eq!(view["result"], "fulfilled");
    assert!(view["completed_at"].is_string());
    let events: Vec<_> =
        view["history"].as_array().unwrap().iter().map(|h| h["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(events, ["received", "ticket_created", "polled", "completed"]);

    // Signed callback delivered once, verifiable by the receiver.
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    let ts = headers["x-bridge-timestamp"].to_str().unwrap();
    let sig = headers["x-bridge-signature"].to_str().unwrap();
    bridge::engine::notify::verify(CALLBACK_KEY.as_bytes(), ts, body, sig, Utc::now(), 300).unwrap();
    assert!(bridge::engine::notify::verify(b"wrong", ts, body, sig, Utc::now(), 300).is_err());
    assert!(headers.contains_key("x-bridge-delivery"));
    let payload: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["id"], id.as_str());
    assert_eq!(payload["state"], "completed");
    assert_eq!(payload["result"], "fulfilled");
    assert_eq!(h.event_results(), [("TaskCompleted".to_string(), "fulfilled".to_string())]);

    // Completed tasks leave the poll queue and carry a TTL.
    assert_eq!(h.poll().await.tickets, 0);
    assert!(h.task(&id).await.expires_at.is_some());
}

async fn rejected_ticket_completes_as_rejected(backend: Backend) {
    let h = Harness::new(backend, Grouping::None).await;
    let (url, received) = support::callback_receiver().await;
    let mut body = access_task("TASK-2");
    body["callback_url"] = json!(url);
    let (_, task) = h.submit(body).await;
    let id = task["id"].as_str().unwrap();
    h.create(id).await;
    let t = h.task(id).await;
    h.sim().close(&t.ticket.unwrap().id, Some("Rejected")).unwrap();
    h.poll().await;
    let t = h.task(id).await;
    // The state callers already read is unchanged; `result` tells rejected from fulfilled, the same
    // in the API, the callback and the event.
    assert_eq!((t.state, t.outcome), (TaskState::Completed, Some(Outcome::Rejected)));
    let (_, view) = h.call("GET", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!((view["state"].as_str(), view["status"].as_str()), (Some("completed"), Some("Closed")));
    assert_eq!(view["result"], "rejected");
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let payload: serde_json::Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!((payload["state"].as_str(), payload["result"].as_str()), (Some("completed"), Some("rejected")));
    assert_eq!(h.event_results(), [("TaskCompleted".to_string(), "rejected".to_string())]);
}

/// What unguarded caller templates send: blanks for values the caller does not have, and dates in
/// plain `yyyy-MM-dd[ HH:mm:ss]` form. Accepted, stored as if absent, and the same submission.
async fn blank_fields_and_plain_dates_are_accepted(backend: Backend) {
    let h = Harness::new(backend, Grouping::None).await;
    let mut blank = access_task("TASK-B");
    blank["requester"] = json!({"name": "", "email": ""});
    blank["organization"] = json!({"id": "", "name": ""});
    blank["justification"] = json!("");
    blank["callback_url"] = json!("");
    blank["due_at"] = json!("2026-12-01 17:30:00");
    let (s, t) = h.submit(blank).await;
    assert_eq!(s, 201, "{t}");
    assert!(t.get("requester").is_none() && t.get("organization").is_none(), "{t}");
    assert_eq!(t["due_at"], "2026-12-01T17:30:00Z");
    let mut same = access_task("TASK-B");
    same.as_object_mut().unwrap().remove("requester");
    same.as_object_mut().unwrap().remove("justification");
    same["due_at"] = json!("2026-12-01T18:30:00+01:00");
    let (s, again) = h.submit(same).await;
    assert_eq!((s, &again["id"]), (200, &t["id"]), "blanks and absent fields are one submission");
    let mut bad = access_task("TASK-C");
    bad["due_at"] = json!("01/12/2026");
    let (s, e) = h.submit(bad).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("due_at")));
}

async fn repeat_submission_is_idempotent_and_conflicting_reuse_is_409(backend: Backend) {
    let h = Harness::new(backend, Grouping::None).await;
    let (s1, t1) = h.submit(access_task("TASK-3")).await;
    let (s2, t2) = h.submit(access_task("TASK-3")).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(t1["id"], t2["id"]);
    let mut other = access_task("TASK-3");
    other["application"] = json!("Billing");
    let (s3, e) = h.submit(other).await;
    assert_eq!(s3, 409, "{e}");
    assert_eq!(e["error"]["code"], "conflict");
    // Bad input stores nothing.
    let mut bad = access_task("TASK-4");
    bad["action"] = json!("grant");
    let (s4, e) = h.submit(bad).await;
    assert_eq!((s4, e["error"]["field"].as_str()), (422, Some("action")));
    let (s5, _) = h.submit(access_task("TASK-4")).await;
    assert_eq!(s5, 201, "the rejected body must not have stored TASK-4");
}

/// Seed 002, grouping by User: later alerts of any type become notes until the ticket closes.
async fn grouping_by_user_follows_the_seed_example(backend: Backend) {
    let h = Harness::new(backend, Grouping::User).await;
    let user = "user@domain.com";
    let (_, a) = h.submit(alert("A-1", user, "Too Many Downloads")).await;
    h.create(a["id"].as_str().unwrap()).await;
    assert_eq!(h.sim().tickets().len(), 1, "first alert opens a ticket");
    let (_, b) = h.submit(alert("A-2", user, "Too Many Uploads")).await;
    h.create(b["id"].as_str().unwrap()).await;
    let tickets = h.sim().tickets();
    assert_eq!(tickets.len(), 1, "a different alert type for the same user becomes a note");
    assert_eq!(tickets[0].notes.len(), 1);
    assert!(tickets[0].notes[0].internal);
    let tb = h.task(b["id"].as_str().unwrap()).await;
    assert_eq!(tb.state, TaskState::Noted);
    // Another user's alert is not grouped with this one.
    let (_, other) = h.submit(alert("A-X", "someone@domain.com", "Too Many Uploads")).await;
    h.create(other["id"].as_str().unwrap()).await;
    assert_eq!(h.sim().tickets().len(), 2);
    // The technician closes the ticket: both tasks complete, the group is released.
    h.sim().close(&tickets[0].id.to_string(), Some("Resolved")).unwrap();
    h.poll().await;
    assert_eq!(h.task(a["id"].as_str().unwrap()).await.state, TaskState::Completed);
    assert_eq!(h.task(b["id"].as_str().unwrap()).await.state, TaskState::Completed);
    let (_, c) = h.submit(alert("A-3", user, "Multiple MFA Failures")).await;
    h.create(c["id"].as_str().unwrap()).await;
    assert_eq!(h.sim().tickets().len(), 3, "after the close a new ticket is opened");
    assert_eq!(h.task(c["id"].as_str().unwrap()).await.state, TaskState::TicketOpen);
}

/// Seed 002, grouping by User+Alert: one ticket per user and alert type.
async fn grouping_by_user_and_alert_follows_the_seed_example(backend: Backend) {
    let h = Harness::new(backend, Grouping::UserAlert).await;
    let user = "user@domain.com";
    let (_, a) = h.submit(alert("B-1", user, "Too Many Downloads")).await;
    h.create(a["id"].as_str().unwrap()).await;
    let (_, b) = h.submit(alert("B-2", user, "Too Many Uploads")).await;
    h.create(b["id"].as_str().unwrap()).await;
    let tickets = h.sim().tickets();
    assert_eq!(tickets.len(), 2, "a different alert type opens its own ticket");
    let downloads = h.task(a["id"].as_str().unwrap()).await.ticket.unwrap().id;
    let uploads = h.task(b["id"].as_str().unwrap()).await.ticket.unwrap().id;
    h.sim().close(&downloads, Some("Resolved")).unwrap();
    h.poll().await;
    let (_, c) = h.submit(alert("B-3", user, "Too Many Uploads")).await;
    h.create(c["id"].as_str().unwrap()).await;
    let tickets = h.sim().tickets();
    assert_eq!(tickets.len(), 2, "the same alert type is added to its open ticket");
    let up = tickets.iter().find(|t| t.id.to_string() == uploads).unwrap();
    assert_eq!(up.notes.len(), 1);
    assert_eq!(h.task(c["id"].as_str().unwrap()).await.state, TaskState::Noted);
}

async fn failed_create_is_retried_with_exactly_one_ticket(backend: Backend) {
    let h = Harness::new(backend, Grouping::None).await;
    h.sim().faults().inject_on(CREATE_ROUTE, Fault::Status { status: 503 }, REQUESTS_PER_ATTEMPT);
    let (_, t) = h.submit(access_task("TASK-5")).await;
    let id = t["id"].as_str().unwrap();
    h.create(id).await;
    let t = h.task(id).await;
    assert_eq!((t.state, t.attempts), (TaskState::Received, 1));
    assert!(t.last_error.as_deref().unwrap_or("").contains("503"), "{:?}", t.last_error);
    assert!(h.sim().tickets().is_empty());
    // Not due before its retry time; due after it.
    assert_eq!(h.engine.create_due(Utc::now(), 10).await.created, 0);
    let r = h.engine.create_due(Utc::now() + Duration::seconds(3), 10).await;
    assert_eq!(r.created, 1);
    assert_eq!(h.sim().tickets().len(), 1);
    assert_eq!(h.task(id).await.state, TaskState::TicketOpen);
}

async fn lost_create_response_is_recovered_by_correlation(backend: Backend) {
    let h = Harness::new(backend, Grouping::None).await;
    h.sim().faults().inject_on(CREATE_ROUTE, Fault::LoseResponse, 1);
    let (_, t) = h.submit(access_task("TASK-6")).await;
    let id = t["id"].as_str().unwrap();
    // The connector searches by correlation key before it retries a create.
    h.create(id).await;
    let t = h.task(id).await;
    assert_eq!(t.state, TaskState::TicketOpen);
    assert_eq!(h.sim().tickets().len(), 1, "no second ticket for one task");
    assert_eq!(t.ticket.unwrap().id, h.sim().tickets()[0].id.to_string());
}

async fn crash_after_create_before_record_is_recovered(backend: Backend) {
    let h = Harness::new(backend, Grouping::None).await;
    let (_, t) = h.submit(access_task("TASK-7")).await;
    let id = t["id"].as_str().unwrap();
    // A worker claims the task, opens the ticket, and dies before recording it.
    let task = h.task(id).await;
    let claimed =
        bridge::store::claim(h.store.as_ref(), task, Utc::now(), Duration::seconds(300)).await.unwrap().unwrap();
    let connector = h.engine.connectors[support::CONN].clone();
    let req = bridge::connectors::TicketRequest {
        correlation_key: claimed.id.to_string(),
        title: "x".into(),
        ..Default::default()
    };
    connector.create_ticket(&req).await.unwrap();
    // While the claim holds, nobody else touches it.
    assert_eq!(h.engine.create_due(Utc::now(), 10).await.created, 0);
    // After the claim lapses the next worker finds the ticket instead of opening another.
    let r = h.engine.create_due(Utc::now() + Duration::seconds(301), 10).await;
    assert_eq!(r.created, 1);
    assert_eq!(h.sim().tickets().len(), 1);
    assert_eq!(h.task(id).await.state, TaskState::TicketOpen);
}

async fn dead_letter_after_max_attempts_then_replay(backend: Backend) {
    let h = Harness::new(backend, Grouping::None).await;
    h.sim().faults().inject_on(CREATE_ROUTE, Fault::Status { status: 500 }, 3 * REQUESTS_PER_ATTEMPT);
    let (_, t) = h.submit(access_task("TASK-8")).await;
    let id = t["id"].as_str().unwrap();
    h.create(id).await;
    for i in 1..=2 {
        h.engine.create_due(Utc::now() + Duration::seconds(10 * i), 10).await;
    }
    let t = h.task(id).await;
    assert_eq!((t.state, t.attempts), (TaskState::Failed, 3));
    assert_eq!(h.event_results(), [("TaskFailed".to_string(), "failed".to_string())]);
    let (s, list) = h.call("GET", "/v1/tasks?state=failed", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id);
    assert_eq!(list["items"][0]["result"], "failed");
    // Dead letters are not retried by themselves.
    assert_eq!(h.engine.create_due(Utc::now() + Duration::days(1), 10).await.created, 0);
    let (s, replayed) = h.call("POST", &format!("/v1/tasks/{id}/replay"), None).await;
    assert_eq!((s, replayed["state"].as_str(), replayed["result"].as_str()), (200, Some("received"), Some("open")));
    assert_eq!(h.engine.create_due(Utc::now(), 10).await.created, 1);
    assert_eq!(h.sim().tickets().len(), 1);
    let (_, list) = h.call("GET", "/v1/tasks?state=failed", None).await;
    assert!(list["items"].as_array().unwrap().is_empty());
}

async fn cancel_is_final(backend: Backend) {
    let h = Harness::new(backend, Grouping::None).await;
    let (_, t) = h.submit(access_task("TASK-9")).await;
    let id = t["id"].as_str().unwrap();
    let (s, c) = h.call("DELETE", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!((s, c["state"].as_str(), c["status"].as_str()), (200, Some("cancelled"), Some("Closed")));
    assert_eq!(c["result"], "cancelled");
    assert_eq!(h.event_results(), [("TaskCancelled".to_string(), "cancelled".to_string())]);
    let (s, e) = h.call("DELETE", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("conflict")));
    h.create(id).await;
    assert!(h.sim().tickets().is_empty(), "a cancelled task never gets a ticket");
    let (s, _) = h.call("GET", "/v1/tasks/01ARZ3NDEKTSV4RRFFQ69G5FAV", None).await;
    assert_eq!(s, 404);
}

/// 100 concurrent POSTs of one submission: one task, one ticket, even when every response is
/// handed to the creation step concurrently (as a redelivering stream would).
async fn concurrent_duplicate_posts_make_one_task_and_one_ticket(backend: Backend) {
    let h = std::sync::Arc::new(Harness::new(backend, Grouping::None).await);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let h = h.clone();
        set.spawn(async move { h.submit(access_task("DUP-1")).await });
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    while let Some(r) = set.join_next().await {
        let (status, body) = r.unwrap();
        assert!(status == 201 || status == 200, "{status} {body}");
        created += usize::from(status == 201);
        ids.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!((created, ids.len()), (1, 1));
    let id = ids.into_iter().next().unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let h = h.clone();
        let id = id.clone();
        set.spawn(async move { h.create(&id).await });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    assert_eq!(h.sim().tickets().len(), 1);
    assert_eq!(h.task(&id).await.state, TaskState::TicketOpen);
}

both_stores!(
    concurrent_duplicate_posts_make_one_task_and_one_ticket,
    access_task_completes_with_signed_callback,
    rejected_ticket_completes_as_rejected,
    blank_fields_and_plain_dates_are_accepted,
    repeat_submission_is_idempotent_and_conflicting_reuse_is_409,
    grouping_by_user_follows_the_seed_example,
    grouping_by_user_and_alert_follows_the_seed_example,
    failed_create_is_retried_with_exactly_one_ticket,
    lost_create_response_is_recovered_by_correlation,
    crash_after_create_before_record_is_recovered,
    dead_letter_after_max_attempts_then_replay,
    cancel_is_final,
);
