//! Reopen window (#15 item 3), on every target and both stores: with `reopen_within_minutes`, an
//! alert of a group whose ticket closed within the window reopens that ticket with a note (targets
//! that can reopen) instead of opening a new one; after the window, or where the target cannot
//! reopen (BMS), a new ticket opens; 0 (the default) never reopens.

mod support;

use bridge::domain::{Grouping, OrgMapping, TaskState};
use chrono::{Duration, Utc};
use sandbox::targets::Target;
use support::{Backend, Harness};

/// Whether the target's connector reopens tickets.
fn reopens(target: Target) -> bool {
    !matches!(target, Target::Bms)
}

fn customer(target: Target) -> Option<&'static str> {
    match target {
        Target::Sandbox => Some("c-1"),
        Target::Bms => Some("100"),
        Target::Ninjaone => Some("7"),
        Target::Vsa | Target::Rt | Target::Generic | Target::Otrs => None,
    }
}

async fn harness(target: Target, backend: Backend, minutes: u32) -> Harness {
    let h = Harness::for_target(target, backend, Grouping::User, |c| {
        c.connections.get_mut(support::CONN).unwrap().reopen_within_minutes = minutes;
    })
    .await;
    if let Some(c) = customer(target) {
        h.store
            .put_mapping(&OrgMapping {
                connection: support::CONN.into(),
                org_id: "org-1".into(),
                org_name: Some("Acme Corp".into()),
                customer_id: Some(c.into()),
                customer_name: Some("Acme Corp".into()),
                contact_id: (target == Target::Ninjaone).then(|| "1fa74a18-a329-40d8-b5b7-0a22624f7800".to_string()),
                contract_id: None,
                contract_service_id: None,
                excluded: false,
                updated_at: Utc::now(),
            })
            .await
            .unwrap();
    }
    h
}

/// Submits an alert for bob and runs its creation `later` than now; returns the task id.
async fn alert_at(h: &Harness, external_id: &str, later: Duration) -> String {
    let (s, body) = h.submit(support::alert(external_id, "bob@acme.io", "Too Many Downloads")).await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    h.engine.create_one(&bridge::domain::TaskId::parse(&id).unwrap(), Utc::now() + later).await.unwrap();
    id
}

/// Opens the group's ticket, has the technician close it, and polls so the task completes.
async fn open_and_close(h: &Harness, target: Target) -> String {
    let first = alert_at(h, "R-1", Duration::zero()).await;
    let t = h.task(&first).await;
    assert_eq!(t.state, TaskState::TicketOpen, "{target:?}: {:?}", t.last_error);
    let ticket = t.ticket.unwrap().id;
    h.sim().close(&ticket, Some(h.target.done_status)).unwrap();
    assert_eq!(h.poll().await.completed, 1, "{target:?}");
    ticket
}

async fn alert_within_window_reopens(target: Target, backend: Backend) {
    let h = harness(target, backend, 60).await;
    let ticket = open_and_close(&h, target).await;
    let second = alert_at(&h, "R-2", Duration::minutes(5)).await;
    let t = h.task(&second).await;
    assert_eq!(t.state, TaskState::TicketOpen, "{target:?}: {:?}", t.last_error);
    let tickets = h.sim().tickets();
    if reopens(target) {
        assert_eq!(tickets.len(), 1, "{target:?}: no second ticket");
        assert_eq!(t.ticket.as_ref().unwrap().id, ticket, "{target:?}");
        assert!(t.history.iter().any(|e| e.event == "ticket_reopened"), "{target:?}: {:?}", t.history);
        assert!(!h.sim().is_closed_status(&tickets[0].status), "{target:?}: {}", tickets[0].status);
        assert!(tickets[0].notes.iter().any(|n| n.body.contains("Reopened by Ticket Bridge")), "{target:?}");
        // The reopened ticket is polled for its new owner and completes it when closed again.
        h.sim().close(&ticket, Some(h.target.done_status)).unwrap();
        // (its first poll is due at its creation run's time, 5 minutes ahead)
        assert_eq!(h.poll_at(Utc::now() + Duration::minutes(10)).await.completed, 1, "{target:?}");
        assert_eq!(h.task(&second).await.state, TaskState::Completed);
    } else {
        assert_eq!(tickets.len(), 2, "{target:?}: cannot reopen, so a new ticket");
        assert_ne!(t.ticket.as_ref().unwrap().id, ticket);
    }
}

macro_rules! targets {
    ($($name:ident => $target:expr),* $(,)?) => {
        mod per_target_sqlite {
            use sandbox::targets::Target;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::alert_within_window_reopens($target, super::Backend::Sqlite).await })*
        }
        mod per_target_dynamo {
            use sandbox::targets::Target;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::alert_within_window_reopens($target, super::Backend::Dynamo).await })*
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

async fn after_the_window_a_new_ticket_opens(backend: Backend) {
    let h = harness(Target::Sandbox, backend, 30).await;
    let ticket = open_and_close(&h, Target::Sandbox).await;
    let late = alert_at(&h, "R-LATE", Duration::minutes(31)).await;
    let t = h.task(&late).await;
    assert_eq!(t.state, TaskState::TicketOpen);
    assert_ne!(t.ticket.as_ref().unwrap().id, ticket);
    assert_eq!(h.sim().tickets().len(), 2);
    assert!(h.sim().is_closed_status(&h.sim().ticket(ticket.parse().unwrap()).unwrap().status), "old stays closed");
}

async fn zero_never_reopens(backend: Backend) {
    let h = harness(Target::Sandbox, backend, 0).await;
    let ticket = open_and_close(&h, Target::Sandbox).await;
    let next = alert_at(&h, "R-NEXT", Duration::zero()).await;
    assert_ne!(h.task(&next).await.ticket.unwrap().id, ticket);
    assert_eq!(h.sim().tickets().len(), 2);
}

both_stores!(after_the_window_a_new_ticket_opens, zero_never_reopens);
