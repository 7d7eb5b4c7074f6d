//! Incremental status polling against the RT, Znuny/OTRS and Kaseya BMS simulators, on both stores: cycles read
//! only what the target changed since the stored high-water mark (minus the margin), a full sweep
//! runs every `full_sweep_every` cycles, and no change is lost to clock skew or to a change that
//! lands while a cycle's read is in flight.

mod support;

use bridge::domain::{Grouping, Outcome, TaskState};
use chrono::Duration;
use sandbox::targets::Target;
use serde_json::json;
use support::{Backend, CONN, Harness};

/// A harness whose connection uses `sweep_every` and `margin_secs`, whose target's clock runs
/// `skew` ahead of the bridge's (negative: behind) from the start, with `n` tasks whose tickets are
/// open; returns their (task id, ticket id).
async fn setup(
    target: Target,
    backend: Backend,
    sweep_every: u32,
    margin_secs: u64,
    skew: Duration,
    n: usize,
) -> (Harness, Vec<(String, String)>) {
    let h = Harness::for_target(target, backend, Grouping::None, |c| {
        let conn = c.connections.get_mut(CONN).unwrap();
        conn.polling.full_sweep_every = sweep_every;
        conn.polling.change_margin_secs = margin_secs;
    })
    .await;
    h.sim().set_clock_skew(skew);
    let mut out = Vec::new();
    for i in 0..n {
        let body = json!({"source":"saviynt","external_id":format!("INC-{i}"),"kind":"access","action":"add_access",
            "user":{"id":format!("u-{i}"),"name":"Alice","email":"alice@acme.io"},"application":"Payroll","entitlements":["x"]});
        let (s, task) = h.submit(body).await;
        assert_eq!(s, 201, "{task}");
        let id = task["id"].as_str().unwrap().to_string();
        h.create(&id).await;
        let t = h.task(&id).await;
        assert_eq!(t.state, TaskState::TicketOpen, "{target:?}: {:?}", t.last_error);
        out.push((id, t.ticket.unwrap().id));
    }
    (h, out)
}

/// Requests the simulator saw while `f` ran.
async fn counted<T>(h: &Harness, f: impl std::future::Future<Output = T>) -> (T, usize) {
    let before = h.sim().request_count();
    let out = f.await;
    (out, h.sim().request_count() - before)
}

/// A closed ticket is completed by the next incremental cycle, which reads only what changed.
async fn reads_only_changes(target: Target, backend: Backend) {
    let (h, tasks) = setup(target, backend, 12, 120, Duration::zero(), 4).await;
    // First cycle: no mark yet, full read; it stores the mark.
    let r = h.poll().await;
    assert!(!r.incremental, "{r:?}");
    let mark = h.store.get_poll_mark(CONN).await.unwrap().expect("the first full cycle stores a mark");
    assert_eq!(mark.cycles_since_sweep, 0);
    h.sim().close(&tasks[1].1, Some(h.target.done_status)).unwrap();
    let (r, requests) = counted(&h, h.poll()).await;
    assert!(r.incremental, "{target:?}: {r:?}");
    assert_eq!(r.completed, 1, "{target:?}: {r:?}");
    let t = h.task(&tasks[1].0).await;
    assert_eq!((t.state, t.outcome), (TaskState::Completed, Some(Outcome::Fulfilled)));
    // RT: one search page; OTRS: one TicketSearch and one TicketGet (sessions are cached).
    assert!(requests <= 2, "{target:?}: {requests} requests for one changed ticket");
    let mark = h.store.get_poll_mark(CONN).await.unwrap().unwrap();
    assert_eq!(mark.cycles_since_sweep, 1);
    assert!(mark.from_target, "{mark:?}: the mark comes from the target's stamps");
}

/// The target's clock runs 60 s behind the bridge's. The first mark comes from the bridge's clock
/// (no target stamp yet): a 120 s margin catches a change stamped by the slow clock; a 2 s margin
/// misses it in the incremental cycle and the full sweep catches it.
async fn clock_skew(target: Target, backend: Backend) {
    for (margin, caught_incrementally) in [(120, true), (2, false)] {
        let (h, tasks) = setup(target, backend, 3, margin, Duration::seconds(-60), 2).await;
        assert!(!h.poll().await.incremental);
        h.sim().close(&tasks[0].1, Some(h.target.done_status)).unwrap();
        let r = h.poll().await;
        assert!(r.incremental, "{r:?}");
        assert_eq!(r.completed == 1, caught_incrementally, "{target:?} margin {margin}: {r:?}");
        if !caught_incrementally {
            // Cycles run full, incremental, incremental, full: the fourth is the sweep.
            let r2 = h.poll().await;
            assert!(r2.incremental, "{r2:?}");
            let sweep = h.poll().await;
            assert!(!sweep.incremental, "{sweep:?}");
            assert_eq!(r2.completed + sweep.completed, 1, "{target:?}: the sweep catches what the margin missed");
        }
        assert_eq!(h.task(&tasks[0].0).await.state, TaskState::Completed, "{target:?} margin {margin}");
    }
}

/// The target's clock runs 30 s behind. A technician closes a ticket right after the target
/// answered an incremental read (the answer does not show it): the mark must stay at or before
/// that change (a mark from the bridge's clock would pass it), so the next cycle sees it.
async fn change_during_cycle(target: Target, backend: Backend) {
    let (h, tasks) = setup(target, backend, 12, 60, Duration::seconds(-30), 3).await;
    assert!(!h.poll().await.incremental);
    // A first change gives the mark a target stamp (the first mark came from the bridge's clock).
    h.sim().close(&tasks[0].1, Some(h.target.done_status)).unwrap();
    let r = h.poll().await;
    assert_eq!((r.incremental, r.completed), (true, 1), "{r:?}");
    let mark = h.store.get_poll_mark(CONN).await.unwrap().unwrap();
    assert!(mark.from_target, "{mark:?}");
    let ticket = tasks[1].1.clone();
    let done = h.target.done_status;
    // The read's last request: RT's search page; OTRS's TicketGet after its TicketSearch.
    let route = match target {
        Target::Rt => "GET /REST/2.0/tickets",
        Target::Bms => "/v2/servicedesk/tickets/search",
        _ => "/Ticket/{TicketID}",
    };
    h.sim().after_next_response(route, move |sim| {
        sim.close(&ticket, Some(done)).unwrap();
    });
    let r = h.poll().await;
    assert!(r.incremental, "{r:?}");
    assert_eq!(r.completed, 0, "{target:?}: the change landed after the read was answered: {r:?}");
    let closed = h.sim().find_ticket(&tasks[1].1).unwrap();
    let mark = h.store.get_poll_mark(CONN).await.unwrap().unwrap();
    assert!(
        mark.high_water <= closed.updated_at,
        "{target:?}: mark {mark:?} passed the change at {}",
        closed.updated_at
    );
    let r = h.poll().await;
    assert_eq!((r.incremental, r.completed), (true, 1), "{target:?}: {r:?}");
    assert_eq!(h.task(&tasks[1].0).await.state, TaskState::Completed);
    assert_eq!(h.task(&tasks[2].0).await.state, TaskState::TicketOpen);
}

/// Incremental reads off: every cycle is the full read and no mark is stored.
async fn off_means_full(target: Target, backend: Backend) {
    let h = Harness::for_target(target, backend, Grouping::None, |c| {
        c.connections.get_mut(CONN).unwrap().polling.incremental = false;
    })
    .await;
    let (s, task) = h
        .submit(json!({"source":"saviynt","external_id":"OFF-1","kind":"access","action":"add_access",
            "user":{"id":"u-1","name":"Alice","email":"alice@acme.io"},"application":"Payroll","entitlements":["x"]}))
        .await;
    assert_eq!(s, 201, "{task}");
    h.create(task["id"].as_str().unwrap()).await;
    for _ in 0..2 {
        assert!(!h.poll().await.incremental);
    }
    assert!(h.store.get_poll_mark(CONN).await.unwrap().is_none());
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        $(mod $case {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rt_sqlite() { super::$case(Target::Rt, Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn otrs_sqlite() { super::$case(Target::Otrs, Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bms_sqlite() { super::$case(Target::Bms, Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bms_dynamo() { super::$case(Target::Bms, Backend::Dynamo).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rt_dynamo() { super::$case(Target::Rt, Backend::Dynamo).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn otrs_dynamo() { super::$case(Target::Otrs, Backend::Dynamo).await }
        })*
    };
}

cases!(reads_only_changes, clock_skew, change_during_cycle, off_means_full);
