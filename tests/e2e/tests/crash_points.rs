//! Crash points: the engine stops (a future dropped, a worker gone) at each step boundary, then
//! work resumes; no task is lost and no ticket duplicated.
//! - after the ticket is created, before it is recorded (every target, both stores);
//! - after the note is added to a group's ticket, before the task is recorded (grouped alert);
//! - in the middle of a NinjaOne refresh (rotating refresh token), by dropping the future.

mod support;

use bridge::connectors::{NoteRequest, TicketRequest};
use bridge::domain::{Grouping, TaskState};
use chrono::{Duration, Utc};
use sandbox::targets::Target;
use support::{Backend, CONN, Harness, access_task, alert};

/// Writes the case's counts to the reliability report before its assertions run, so a broken run
/// shows its broken numbers there too.
fn write_counts(class: &str, target: &str, tasks: usize, completed: usize, duplicates: usize) {
    let v = serde_json::json!({"suite": "crash_points", "class": class, "target": target, "route": "-", "runs": 1,
        "tasks": tasks, "completed": completed, "lost": tasks.saturating_sub(completed), "duplicates": duplicates});
    sandbox::report::write(&format!("crash-{class}-{target}"), &v);
}

/// A worker claims the task, opens the ticket and dies before recording it; the next worker (after
/// the claim lapses) finds the ticket by correlation instead of opening another.
async fn crash_after_create_before_record(target: Target, backend: Backend) {
    let h = Harness::for_target(target, backend, Grouping::None, |_| {}).await;
    let (_, t) = h.submit(access_task("CRASH-1")).await;
    let id = t["id"].as_str().unwrap();
    let task = h.task(id).await;
    let claimed =
        bridge::store::claim(h.store.as_ref(), task, Utc::now(), Duration::seconds(300)).await.unwrap().unwrap();
    let connector = h.engine.connectors[CONN].clone();
    let req = TicketRequest {
        correlation_key: claimed.id.to_string(),
        title: "Crash test".into(),
        body: "created by a worker that then died".into(),
        customer_id: h.target.catch_all.clone(),
        contact_email: Some("alice@acme.io".into()),
        queue: (target == Target::Otrs).then(|| "Service Desk".to_string()),
        ..Default::default()
    };
    // The dying worker's call; the future completes on the target, the worker never records it.
    connector.create_ticket(&req).await.unwrap_or_else(|e| panic!("{target:?}: {e}"));
    assert_eq!(h.engine.create_due(Utc::now(), 10).await.created, 0, "{target:?}: the claim must hold");
    let r = h.engine.create_due(Utc::now() + Duration::seconds(301), 10).await;
    let tickets = h.sim().tickets();
    let t = h.task(id).await;
    let recorded = usize::from(t.state == TaskState::TicketOpen);
    let class = "after ticket created, before recorded";
    write_counts(class, &format!("{target:?} {backend:?}"), 1, recorded, tickets.len().saturating_sub(1));
    assert_eq!(r.created, 1, "{target:?}: {r:?} {:?}", t.last_error);
    assert_eq!(tickets.len(), 1, "{target:?}: a second ticket was opened for one task");
    assert_eq!(t.state, TaskState::TicketOpen);
    assert_eq!(t.ticket.unwrap().id, tickets[0].id.to_string());
}

/// An attempt that would outlive its claim (here a target that hangs for longer than the claim)
/// is cut off before the claim lapses and recorded as a retry naming `settings.claim_secs`; it
/// never runs on while a second worker, having claimed the task anew, opens a second ticket.
async fn attempt_ends_within_its_claim(backend: Backend) {
    let h = Harness::for_target(Target::Sandbox, backend, Grouping::None, |c| c.settings.claim_secs = 2).await;
    let (_, t) = h.submit(access_task("CLAIM-BOUND")).await;
    let id = t["id"].as_str().unwrap();
    h.sim().faults().inject_on(Target::Sandbox.create_route(), sandbox::Fault::Hang { ms: 4_000 }, 3);
    let r = h.engine.create_due(Utc::now(), 10).await;
    assert_eq!(r.retried, 1, "{r:?}");
    let t = h.task(id).await;
    assert!(t.last_error.as_deref().unwrap_or("").contains("settings.claim_secs"), "{:?}", t.last_error);
    assert!(h.sim().tickets().is_empty());
    h.sim().faults().clear();
    let r = h.engine.create_due(Utc::now() + Duration::hours(1), 10).await;
    assert_eq!(r.created, 1, "{r:?} {:?}", h.task(id).await.last_error);
    assert_eq!(h.sim().tickets().len(), 1);
}

/// A retry that comes due while the same sweep is still working (here: task A fails at once with
/// a 1 s backoff, task B's create takes 1.5 s) is met again by the sweep's next claim. The sweep
/// gives that claim back, so the task is due at once for the next sweep; kept, it would wait out
/// the whole claim (`claim_secs`, 300 s here) before anyone retried it.
async fn retry_due_within_a_sweep_is_given_back(backend: Backend) {
    let h = Harness::for_target(Target::Sandbox, backend, Grouping::None, |c| c.settings.retry_max_secs = 1).await;
    let (_, a) = h.submit(access_task("GIVEBACK-A")).await;
    let (_, b) = h.submit(access_task("GIVEBACK-B")).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let route = Target::Sandbox.create_route();
    h.sim().faults().inject_on(route, sandbox::Fault::Status { status: 503 }, support::REQUESTS_PER_ATTEMPT);
    h.sim().faults().inject_on(route, sandbox::Fault::SlowResponse { ms: 1_500 }, 1);
    let now = Utc::now();
    let r = h.engine.create_due(now, 10).await;
    assert_eq!((r.retried, r.created, r.skipped), (1, 1, 1), "{r:?}");
    assert_eq!(h.task(b).await.state, TaskState::TicketOpen);
    let t = h.task(a).await;
    assert_eq!(t.state, TaskState::Received);
    let due = t.next_attempt_at.unwrap();
    assert!(
        due < now + Duration::seconds(30),
        "A is due at {due}: its claim was kept, not given back (sweep at {now})"
    );
    let r = h.engine.create_due(due.max(Utc::now()), 10).await;
    assert_eq!(r.created, 1, "{r:?} {:?}", h.task(a).await.last_error);
    assert_eq!(h.sim().tickets().len(), 2);
}

/// Grouped alert: a worker adds the note to the group's open ticket, then dies before recording
/// the task. After the claim lapses the task is recorded as noted on the same ticket: still one
/// ticket. (Notes are at-least-once: the retry adds the note again.)
async fn crash_after_note_before_record(backend: Backend) {
    let h = Harness::new(backend, Grouping::User).await;
    let user = "user@domain.com";
    let (_, a) = h.submit(alert("G-1", user, "Too Many Downloads")).await;
    h.create(a["id"].as_str().unwrap()).await;
    let group_ticket = h.task(a["id"].as_str().unwrap()).await.ticket.unwrap();
    let (_, b) = h.submit(alert("G-2", user, "Too Many Uploads")).await;
    let bid = b["id"].as_str().unwrap();
    let claimed = bridge::store::claim(h.store.as_ref(), h.task(bid).await, Utc::now(), Duration::seconds(300))
        .await
        .unwrap()
        .unwrap();
    let note =
        NoteRequest { correlation_key: claimed.id.to_string(), title: "Alert".into(), body: "second alert".into() };
    h.engine.connectors[CONN].add_note(&group_ticket, &note).await.unwrap();
    // Dead worker; the claim holds, then lapses.
    assert_eq!(h.engine.create_due(Utc::now(), 10).await.noted, 0);
    let r = h.engine.create_due(Utc::now() + Duration::seconds(301), 10).await;
    let tickets = h.sim().tickets();
    let ids = [a["id"].as_str().unwrap(), bid];
    let mut done = 0;
    for id in ids {
        done += usize::from(matches!(h.task(id).await.state, TaskState::TicketOpen | TaskState::Noted));
    }
    let class = "after note added, before recorded (notes at-least-once)";
    write_counts(class, &format!("{backend:?}"), ids.len(), done, tickets.len().saturating_sub(1));
    assert_eq!(r.noted, 1, "{r:?}");
    assert_eq!(tickets.len(), 1, "the grouped alert opened its own ticket after the crash");
    let t = h.task(bid).await;
    assert_eq!(t.state, TaskState::Noted);
    assert_eq!(t.ticket.unwrap().id, group_ticket.id);
    let notes = tickets[0].notes.len();
    assert!((1..=2).contains(&notes), "{notes} notes");
    // The technician closes the group ticket: both tasks complete.
    h.sim().close(&group_ticket.id, Some("Resolved")).unwrap();
    h.poll_at(Utc::now() + Duration::seconds(302)).await;
    assert_eq!(h.task(a["id"].as_str().unwrap()).await.state, TaskState::Completed);
    assert_eq!(h.task(bid).await.state, TaskState::Completed);
}

/// A cold instance's first work (token refresh with a rotating refresh token, then the create)
/// is dropped mid-flight at several points. Afterwards a fresh instance (cold cache, same secrets)
/// must still work, without replaying a rotated refresh token and without a second ticket.
async fn refresh_dropped_mid_flight(backend: Backend) {
    let h = Harness::for_target(Target::Ninjaone, backend, Grouping::None, |_| {}).await;
    let ninja = h.target.guard.downcast_ref::<sandbox::ninjaone::NinjaOne>().unwrap();
    let latency = std::time::Duration::from_millis(150);
    let mut dropped = 0;
    let (mut tasks, mut opened, mut duplicates) = (0, 0, 0);
    let mut now = Utc::now();
    for cut_ms in [10u64, 100, 140, 160, 200, 300, 400] {
        let (_, t) = h.submit(access_task(&format!("TOKCUT-{cut_ms}"))).await;
        let id = bridge::domain::TaskId::parse(t["id"].as_str().unwrap()).unwrap();
        h.sim().set_latency(latency);
        let engine = h.twin();
        let r = tokio::time::timeout(std::time::Duration::from_millis(cut_ms), engine.create_one(&id, now)).await;
        dropped += usize::from(r.is_err());
        drop(engine);
        // The target finishes whatever it received; then the next instance starts cold.
        assert!(h.sim().idle(latency * 10).await, "cut at {cut_ms} ms: the target never finished");
        h.sim().set_latency(std::time::Duration::ZERO);
        now += Duration::seconds(301);
        let after = h.twin();
        after.create_due(now, 10).await;
        let task = h.task(id.as_str()).await;
        let n = h.sim().tickets().iter().filter(|x| x.correlation_key.as_deref() == Some(id.as_str())).count();
        tasks += 1;
        opened += usize::from(task.state == TaskState::TicketOpen);
        duplicates += n.saturating_sub(1);
        let class = "cold instance dropped mid token refresh / create (NinjaOne)";
        write_counts(class, &format!("{backend:?}"), tasks, opened, duplicates);
        assert_eq!(
            task.state,
            TaskState::TicketOpen,
            "cut at {cut_ms} ms: the connection broke: {:?}",
            task.last_error
        );
        assert_eq!(ninja.refresh_replays(), 0, "cut at {cut_ms} ms: a rotated refresh token was replayed");
        assert_eq!(n, 1, "cut at {cut_ms} ms: {n} tickets for one task");
    }
    assert!(dropped >= 2, "the timeouts never cut the work short");
}

macro_rules! targets {
    ($($name:ident => $t:expr),* $(,)?) => {
        mod create_then_crash {
            mod sqlite {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::super::crash_after_create_before_record($t, super::super::Backend::Sqlite).await })*
            }
            mod dynamo {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::super::crash_after_create_before_record($t, super::super::Backend::Dynamo).await })*
            }
        }
    };
}

targets!(
    desk => ::sandbox::targets::Target::Sandbox,
    rt => ::sandbox::targets::Target::Rt,
    generic => ::sandbox::targets::Target::Generic,
    bms => ::sandbox::targets::Target::Bms,
    vsa => ::sandbox::targets::Target::Vsa,
    ninjaone => ::sandbox::targets::Target::Ninjaone,
    otrs => ::sandbox::targets::Target::Otrs,
);

both_stores!(
    crash_after_note_before_record,
    refresh_dropped_mid_flight,
    attempt_ends_within_its_claim,
    retry_due_within_a_sweep_is_given_back
);
