//! Every target end to end, on both stores: a task submitted through the API becomes a ticket in
//! the target's simulator with the mapped customer, the contact found by e-mail, the connection's
//! defaults and the correlation key; the technician closes it; the poll completes the task; the
//! signed callback arrives.

mod support;

use bridge::domain::{Grouping, OrgMapping, Outcome, TaskState};
use chrono::Utc;
use sandbox::targets::Target;
use serde_json::json;
use support::{Backend, CALLBACK_KEY, Harness};

/// Customer each target's simulator knows as "Acme Corp", and its contact for alice@acme.io.
fn acme(target: Target) -> (Option<&'static str>, Option<&'static str>) {
    match target {
        Target::Sandbox => (Some("c-1"), Some("p-1")),
        Target::Bms => (Some("100"), Some("501")),

        Target::Ninjaone => (Some("7"), None),
        // VSA service-desk tickets carry no organization; RT, generic and OTRS have no customers here.
        Target::Vsa | Target::Rt | Target::Generic | Target::Otrs => (None, None),
    }
}

async fn full_flow(target: Target, backend: Backend) {
    let h = Harness::for_target(target, backend, Grouping::None, |_| {}).await;
    let (customer, contact) = acme(target);
    if let Some(c) = customer {
        h.store
            .put_mapping(&OrgMapping {
                connection: support::CONN.into(),
                org_id: "org-acme".into(),
                org_name: Some("Acme Corp".into()),
                customer_id: Some(c.into()),
                customer_name: Some("Acme Corp".into()),
                contact_id: None,
                contract_id: None,
                contract_service_id: None,
                excluded: false,
                updated_at: Utc::now(),
            })
            .await
            .unwrap();
    }
    let (url, received) = support::callback_receiver().await;
    let body = json!({"source":"saviynt","external_id":format!("E2E-{target:?}"),"kind":"access","action":"add_access",
        "user":{"id":"u-1","name":"Alice","email":"alice@acme.io"},"application":"Payroll","entitlements":["payroll-admin"],
        "organization":{"id":"org-acme","name":"Acme Corp"},"callback_url":url});
    let (s, task) = h.submit(body).await;
    assert_eq!(s, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    h.create(&id).await;
    let t = h.task(&id).await;
    assert_eq!(t.state, TaskState::TicketOpen, "{target:?}: {:?}", t.last_error);
    let tickets = h.sim().tickets();
    assert_eq!(tickets.len(), 1, "{target:?}");
    let ticket = &tickets[0];
    assert_eq!(ticket.correlation_key.as_deref(), Some(id.as_str()), "{target:?}: correlation key");
    assert_eq!(t.ticket.as_ref().unwrap().id, ticket.id.to_string());
    if let Some(c) = customer {
        assert_eq!(ticket.customer_id.as_deref(), Some(c), "{target:?}: mapped customer");
    }
    if let Some(p) = contact {
        assert_eq!(ticket.contact_id.as_deref(), Some(p), "{target:?}: contact looked up by e-mail");
    }
    if target == Target::Bms {
        // The connection's defaults reached the ticket (ids resolved from names by the connector).
        assert!(ticket.queue.is_some() && ticket.priority.is_some(), "{ticket:?}");
        assert!(ticket.fields.contains_key("IssueTypeId"), "{:?}", ticket.fields);
    }
    if target == Target::Otrs {
        assert_eq!(ticket.queue.as_deref(), Some("Service Desk"));
    }

    // Open → still open; then the technician closes it.
    assert_eq!(h.poll().await.completed, 0);
    h.sim().close(&ticket.id.to_string(), Some(h.target.done_status)).unwrap();
    let r = h.poll().await;
    assert_eq!(r.completed, 1, "{target:?}: {r:?}");
    let t = h.task(&id).await;
    assert_eq!((t.state, t.outcome), (TaskState::Completed, Some(Outcome::Fulfilled)), "{target:?}");
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{target:?}: one callback");
    let (headers, raw) = &got[0];
    bridge::engine::notify::verify(
        CALLBACK_KEY.as_bytes(),
        headers["x-bridge-timestamp"].to_str().unwrap(),
        raw,
        headers["x-bridge-signature"].to_str().unwrap(),
        Utc::now(),
        300,
    )
    .unwrap();
}

macro_rules! targets {
    ($($name:ident => $target:expr),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::full_flow($target, super::Backend::Sqlite).await })*
        }
        mod dynamo {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::full_flow($target, super::Backend::Dynamo).await })*
        }
    };
}

targets!(
    sandbox => sandbox::targets::Target::Sandbox,
    rt => sandbox::targets::Target::Rt,
    generic => sandbox::targets::Target::Generic,
    bms => sandbox::targets::Target::Bms,
    vsa => sandbox::targets::Target::Vsa,
    ninjaone => sandbox::targets::Target::Ninjaone,
    otrs => sandbox::targets::Target::Otrs,
);
