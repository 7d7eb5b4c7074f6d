//! Cancelling a task reaches its ticket (#15 item 1), on every target and both stores: the ticket
//! gets a note with the reason and is closed (or moved to the target's cancelled state) in the
//! target's simulator, the task reads `cancelled` with the ticket's fate in `ticket_close` and its
//! history; a close that fails is retried by the poll lane; a target that cannot close leaves the
//! note only; a grouped alert's shared ticket gets a note and stays open.

mod support;

use bridge::domain::{CloseResult, Grouping, OrgMapping, TaskResult, TaskState};
use chrono::{Duration, Utc};
use sandbox::faults::Fault;
use sandbox::targets::Target;
use serde_json::json;
use support::{Backend, Harness};

/// The customer each simulator knows as "Acme Corp" (as in `targets.rs`).
fn acme(target: Target) -> Option<&'static str> {
    match target {
        Target::Sandbox => Some("c-1"),
        Target::Bms => Some("100"),
        Target::Ninjaone => Some("7"),
        Target::Vsa | Target::Rt | Target::Generic | Target::Otrs => None,
    }
}

/// The status each target's ticket ends in when its task is cancelled (connector defaults).
fn closed_status(target: Target) -> &'static str {
    match target {
        Target::Sandbox => "Rejected",
        Target::Rt => "rejected",
        Target::Generic => "Won't Do",
        Target::Bms => "Completed",
        Target::Vsa => "Closed",
        Target::Ninjaone => "Closed",
        Target::Otrs => "closed unsuccessful",
    }
}

/// A NinjaOne requester (the update API requires one).
const REQUESTER: &str = "1fa74a18-a329-40d8-b5b7-0a22624f7800";

async fn open_ticket(h: &Harness, target: Target, external_id: &str) -> String {
    if let Some(c) = acme(target) {
        h.store
            .put_mapping(&OrgMapping {
                connection: support::CONN.into(),
                org_id: "org-acme".into(),
                org_name: Some("Acme Corp".into()),
                customer_id: Some(c.into()),
                customer_name: Some("Acme Corp".into()),
                contact_id: (target == Target::Ninjaone).then(|| REQUESTER.to_string()),
                contract_id: None,
                contract_service_id: None,
                excluded: false,
                updated_at: Utc::now(),
            })
            .await
            .unwrap();
    }
    let body = json!({"source":"saviynt","external_id":external_id,"kind":"access","action":"add_access",
        "user":{"id":"u-1","name":"Alice","email":"alice@acme.io"},"application":"Payroll","entitlements":["payroll-admin"],
        "organization":{"id":"org-acme","name":"Acme Corp"}});
    let (s, task) = h.submit(body).await;
    assert_eq!(s, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    h.create(&id).await;
    let t = h.task(&id).await;
    assert_eq!(t.state, TaskState::TicketOpen, "{target:?}: {:?}", t.last_error);
    id
}

/// `DELETE /v1/tasks/{id}{query}` (200, result `cancelled`, close pending), then the creation
/// lane's run for the task as the stream (or the local runner's worker) delivers it; returns the
/// task as the API then shows it.
async fn cancel(h: &Harness, id: &str, query: &str) -> serde_json::Value {
    let (s, body) = h.call("DELETE", &format!("/v1/tasks/{id}{query}"), None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["result"], "cancelled", "{body}");
    h.create(id).await;
    let (s, body) = h.call("GET", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!(s, 200, "{body}");
    body
}

async fn cancel_closes_the_ticket(target: Target, backend: Backend) {
    let h = Harness::for_target(target, backend, Grouping::None, |_| {}).await;
    let id = open_ticket(&h, target, &format!("CANCEL-{target:?}")).await;
    let body = cancel(&h, &id, "?reason=role%20withdrawn%20by%20HR").await;
    assert_eq!(body["result"], "cancelled", "{target:?}: {body}");
    assert_eq!(body["ticket_close"]["result"], "closed", "{target:?}: {body}");
    assert_eq!(body["ticket_close"]["reason"], "role withdrawn by HR");

    let t = h.task(&id).await;
    assert_eq!((t.state, t.result()), (TaskState::Cancelled, TaskResult::Cancelled));
    assert!(t.history.iter().any(|e| e.event == "ticket_closed"), "{target:?}: {:?}", t.history);
    assert!(t.due().is_none(), "{target:?}: nothing left to do");
    let tickets = h.sim().tickets();
    assert_eq!(tickets.len(), 1, "{target:?}");
    let ticket = &tickets[0];
    assert_eq!(ticket.status, closed_status(target), "{target:?}: {ticket:?}");
    assert!(h.sim().is_closed_status(&ticket.status), "{target:?}: the simulator counts it closed");
    let notes: Vec<&str> = ticket.notes.iter().map(|n| n.body.as_str()).collect();
    assert_eq!(notes.iter().filter(|n| n.contains("role withdrawn by HR")).count(), 1, "{target:?}: {notes:?}");

    // Idempotent: a second cancel is refused (409) and the poll lane has nothing left to close.
    let (s, _) = h.call("DELETE", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!(s, 409, "{target:?}");
    let r = h.poll_at(Utc::now() + Duration::hours(1)).await;
    assert_eq!(r.tickets_closed, 0, "{target:?}: {r:?}");
    assert_eq!(h.sim().tickets()[0].notes.len(), ticket.notes.len(), "{target:?}: no second note");
}

macro_rules! targets {
    ($($name:ident => $target:expr),* $(,)?) => {
        mod per_target_sqlite {
            use sandbox::targets::Target;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::cancel_closes_the_ticket($target, super::Backend::Sqlite).await })*
        }
        mod per_target_dynamo {
            use sandbox::targets::Target;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::cancel_closes_the_ticket($target, super::Backend::Dynamo).await })*
        }
    };
}

targets!(
    sandbox => Target::Sandbox,
    rt => Target::Rt,
    generic => Target::Generic,
    bms => Target::Bms,
    vsa => Target::Vsa,
    ninjaone => Target::Ninjaone,
    otrs => Target::Otrs,
);

/// The close fails (target down): the task is cancelled at once, the close stays pending in the
/// poll queue and the next poll run after the backoff closes the ticket.
async fn failed_close_is_retried_by_the_poll_lane(backend: Backend) {
    let h = Harness::for_target(Target::Sandbox, backend, Grouping::None, |_| {}).await;
    let id = open_ticket(&h, Target::Sandbox, "CANCEL-RETRY").await;
    h.sim().faults().inject_on("PATCH /api/v1/tickets/{id}", Fault::Status { status: 503 }, 10_000);
    let body = cancel(&h, &id, "").await;
    assert!(body["ticket_close"]["result"].is_null(), "still pending: {body}");
    let t = h.task(&id).await;
    assert!(t.closing_ticket());
    assert!(t.history.iter().any(|e| e.event == "ticket_close_retry"), "{:?}", t.history);
    assert!(!h.sim().is_closed_status(&h.sim().tickets()[0].status));

    // The target is back; the next poll run after the backoff closes the ticket.
    h.sim().faults().clear();
    let r = h.poll_at(Utc::now() + Duration::hours(1)).await;
    assert_eq!(r.tickets_closed, 1, "{r:?}");
    let t = h.task(&id).await;
    assert_eq!(t.ticket_close.as_ref().and_then(|c| c.result), Some(CloseResult::Closed));
    assert_eq!(t.result(), TaskResult::Cancelled);
    assert_eq!(h.sim().tickets()[0].status, "Rejected");
}

/// A target that refuses for good (here: attempts exhausted) leaves the task cancelled with the
/// failure and its reason in the history.
async fn close_gives_up_after_max_attempts(backend: Backend) {
    let h = Harness::for_target(Target::Sandbox, backend, Grouping::None, |c| c.settings.max_attempts = 2).await;
    let id = open_ticket(&h, Target::Sandbox, "CANCEL-GIVEUP").await;
    h.sim().faults().inject_on("PATCH /api/v1/tickets/{id}", Fault::Status { status: 503 }, 10_000);
    cancel(&h, &id, "").await;
    let r = h.poll_at(Utc::now() + Duration::hours(1)).await;
    assert_eq!(r.tickets_closed, 1, "{r:?}");
    let t = h.task(&id).await;
    assert_eq!(t.ticket_close.as_ref().and_then(|c| c.result), Some(CloseResult::Failed));
    let failed = t.history.iter().find(|e| e.event == "ticket_close_failed").expect("failure recorded");
    assert!(failed.detail.as_deref().unwrap_or("").contains("503"), "{failed:?}");
    assert_eq!(t.result(), TaskResult::Cancelled);
    assert!(t.due().is_none());
}

/// NinjaOne cannot update a ticket without a requester: the note alone, recorded as unsupported.
async fn unsupported_close_leaves_the_note(backend: Backend) {
    let h = Harness::for_target(Target::Ninjaone, backend, Grouping::None, |_| {}).await;
    let body = json!({"source":"saviynt","external_id":"CANCEL-NOREQ","kind":"access","action":"add_access",
        "user":{"id":"u-1","name":"Alice","email":"alice@acme.io"},"application":"Payroll","entitlements":["payroll-admin"],
        "organization":{"id":"org-acme","name":"Acme Corp"}});
    h.store
        .put_mapping(&OrgMapping {
            connection: support::CONN.into(),
            org_id: "org-acme".into(),
            org_name: None,
            customer_id: Some("7".into()),
            customer_name: None,
            contact_id: None,
            contract_id: None,
            contract_service_id: None,
            excluded: false,
            updated_at: Utc::now(),
        })
        .await
        .unwrap();
    let (_, task) = h.submit(body).await;
    let id = task["id"].as_str().unwrap().to_string();
    h.create(&id).await;
    let body = cancel(&h, &id, "?reason=duplicate").await;
    assert_eq!(body["ticket_close"]["result"], "unsupported", "{body}");
    let ticket = &h.sim().tickets()[0];
    assert!(!h.sim().is_closed_status(&ticket.status), "left open: {ticket:?}");
    assert_eq!(ticket.notes.iter().filter(|n| n.body.contains("duplicate")).count(), 1, "{:?}", ticket.notes);
}

/// A grouped alert that only added a note to its group's ticket: the ticket gets a note and stays
/// open for the group's owner; the owner's cancel then closes it.
async fn grouped_alert_notes_the_shared_ticket(backend: Backend) {
    let h = Harness::for_target(Target::Sandbox, backend, Grouping::User, |_| {}).await;
    let (_, a) = h.submit(support::alert("G-1", "bob@acme.io", "Too Many Downloads")).await;
    let (_, b) = h.submit(support::alert("G-2", "bob@acme.io", "Login From New Country")).await;
    let (a, b) = (a["id"].as_str().unwrap().to_string(), b["id"].as_str().unwrap().to_string());
    h.create(&a).await;
    h.create(&b).await;
    assert_eq!(h.task(&b).await.state, TaskState::Noted);
    let body = cancel(&h, &b, "?reason=false%20positive").await;
    assert_eq!(body["ticket_close"]["result"], "noted", "{body}");
    assert_eq!(body["ticket_close"]["note_only"], true);
    let ticket = &h.sim().tickets()[0];
    assert!(!h.sim().is_closed_status(&ticket.status), "shared ticket stays open");
    assert!(ticket.notes.iter().any(|n| n.body.contains("false positive")));
    let body = cancel(&h, &a, "").await;
    assert_eq!(body["ticket_close"]["result"], "closed", "{body}");
    assert_eq!(h.sim().tickets()[0].status, "Rejected");
}

/// A creation under way when the task is cancelled still opens the ticket; it is recorded and
/// closed instead of being left to technicians.
async fn ticket_opened_after_cancel_is_closed(backend: Backend) {
    let h = Harness::for_target(Target::Sandbox, backend, Grouping::None, |_| {}).await;
    let (_, task) = h.submit(support::access_task("LATE-1")).await;
    let id = task["id"].as_str().unwrap().to_string();
    // The create response is slow; the cancel lands while it is in flight.
    h.sim().faults().inject_on("POST /api/v1/tickets", Fault::SlowResponse { ms: 1500 }, 1);
    let engine = h.twin();
    let tid = bridge::domain::TaskId::parse(&id).unwrap();
    let creating = tokio::spawn(async move { engine.create_one(&tid, Utc::now()).await.map(|_| ()) });
    // Cancel once the create request has reached the target.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.sim().tickets().is_empty() {
        assert!(std::time::Instant::now() < deadline, "create never reached the target");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (s, body) = h.call("DELETE", &format!("/v1/tasks/{id}?reason=withdrawn"), None).await;
    assert_eq!(s, 200, "{body}");
    creating.await.unwrap().unwrap();
    let t = h.task(&id).await;
    assert_eq!(t.state, TaskState::Cancelled);
    assert!(t.ticket.is_some(), "the late ticket is recorded: {:?}", t.history);
    assert!(t.closing_ticket(), "{:?}", t.history);
    let r = h.poll().await;
    assert_eq!(r.tickets_closed, 1, "{r:?}");
    let ticket = &h.sim().tickets()[0];
    assert_eq!(ticket.status, "Rejected");
    assert!(ticket.notes.iter().any(|n| n.body.contains("withdrawn")), "{:?}", ticket.notes);
}

/// The API does not close (on AWS intake may not store renewed tokens): the stream (locally: the
/// runner's worker) delivers the cancelled task to `create_one`, which closes the ticket.
async fn create_lane_closes_when_intake_does_not(backend: Backend) {
    let h = Harness::for_target(Target::Sandbox, backend, Grouping::None, |_| {}).await;
    let id = open_ticket(&h, Target::Sandbox, "CANCEL-STREAM").await;
    let (s, body) = h.call("DELETE", &format!("/v1/tasks/{id}?reason=stream"), None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["result"], "cancelled");
    assert!(body["ticket_close"]["result"].is_null(), "left to the create lane: {body}");
    assert!(!h.sim().is_closed_status(&h.sim().tickets()[0].status));
    let report = h.engine.create_one(&bridge::domain::TaskId::parse(&id).unwrap(), Utc::now()).await.unwrap();
    assert_eq!(report.tickets_closed, 1, "{report:?}");
    assert_eq!(h.sim().tickets()[0].status, "Rejected");
    // A redelivered record finds nothing left to do.
    let again = h.engine.create_one(&bridge::domain::TaskId::parse(&id).unwrap(), Utc::now()).await.unwrap();
    assert_eq!((again.tickets_closed, again.skipped), (0, 1));
}

both_stores!(
    create_lane_closes_when_intake_does_not,
    failed_close_is_retried_by_the_poll_lane,
    close_gives_up_after_max_attempts,
    unsupported_close_leaves_the_note,
    grouped_alert_notes_the_shared_ticket,
    ticket_opened_after_cancel_is_closed,
);
