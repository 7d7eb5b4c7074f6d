//! Group race: alerts of one group (by user, by user + alert type) processed at the same instant,
//! by separate workers (engines with their own caches, as separate Lambda invocations or `serve`
//! processes would be), open exactly one ticket; every other alert becomes a note on it. On both
//! stores, through the engine and through the create-ticket Lambda handler. The simulator adds
//! latency to every request so the workers overlap while the first ticket is being opened.

mod support;

use bridge::domain::{Grouping, TaskId, TaskState};
use chrono::Utc;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use std::sync::Arc;
use support::{Backend, Harness, alert};

/// Alerts per group.
const N: usize = 6;
const LATENCY_MS: u64 = 60;

/// What the storm left behind, checked and written to the report.
fn check(h: &Harness, name: &str, ids: &[String], tasks: &[bridge::domain::Task]) {
    let tickets = h.sim().tickets();
    let notes: usize = tickets.iter().map(|t| t.notes.len()).sum();
    let opened = tasks.iter().filter(|t| t.state == TaskState::TicketOpen).count();
    let noted = tasks.iter().filter(|t| t.state == TaskState::Noted).count();
    let lost = ids.len() - opened - noted;
    let v = json!({"suite": "group_race", "class": name, "route": "-", "runs": 1, "tasks": ids.len(),
        "tickets": tickets.len(), "notes": notes, "completed": opened + noted, "lost": lost,
        "duplicates": tickets.len().saturating_sub(1),
        "errors": tasks.iter().filter(|t| t.last_error.is_some()).count()});
    sandbox::report::write(&format!("group-race-{name}"), &v);
    let states: Vec<_> = tasks.iter().map(|t| (t.state, t.last_error.clone())).collect();
    assert_eq!(tickets.len(), 1, "{name}: one group, {} tickets; tasks {states:?}", tickets.len());
    assert_eq!((opened, noted), (1, N - 1), "{name}: {states:?}");
    assert_eq!(notes, N - 1, "{name}: every other alert is a note on the one ticket");
    let ticket = tickets[0].id.to_string();
    assert!(tasks.iter().all(|t| t.ticket.as_ref().is_some_and(|r| r.id == ticket)), "{name}: {tasks:?}");
}

async fn submit_group(h: &Harness, grouping: Grouping) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..N {
        // By user + alert type: same type for all; by user: a different type each.
        let kind =
            if grouping == Grouping::UserAlert { "Too Many Downloads".to_string() } else { format!("Alert {i}") };
        let (s, t) = h.submit(alert(&format!("GR-{i}"), "race@domain.com", &kind)).await;
        assert_eq!(s, 201, "{t}");
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    ids
}

/// N workers, one alert each, started together.
async fn engines_race(backend: Backend, grouping: Grouping) {
    let h = Harness::new(backend, grouping).await;
    h.sim().set_latency(std::time::Duration::from_millis(LATENCY_MS));
    let ids = submit_group(&h, grouping).await;
    let start = Arc::new(tokio::sync::Barrier::new(N));
    let mut set = tokio::task::JoinSet::new();
    for id in &ids {
        let (worker, start, id) = (h.twin(), start.clone(), TaskId::parse(id).unwrap());
        set.spawn(async move {
            start.wait().await;
            worker.create_one(&id, Utc::now()).await.unwrap()
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let mut tasks = Vec::new();
    for id in &ids {
        tasks.push(h.task(id).await);
    }
    check(&h, &format!("engines-{backend:?}-{grouping:?}"), &ids, &tasks);
}

fn stream_event(id: &str) -> serde_json::Value {
    json!({"Records": [{"eventID": "ev", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1", "dynamodb": {"Keys": {"PK": {"S": format!("TASK#{id}")}, "SK": {"S": "TASK"}},
        "NewImage": {"PK": {"S": format!("TASK#{id}")}, "SK": {"S": "TASK"}, "state_pk": {"S": "STATE#received"}},
        "SequenceNumber": "1000", "SizeBytes": 120, "StreamViewType": "NEW_IMAGE"},
        "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/tb/stream/2026-11-23T00:00:00.000"}]})
}

/// N concurrent create-ticket Lambda invocations on DynamoDB, one alert each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_invocations_race_on_dynamodb() {
    let h = Harness::new(Backend::Dynamo, Grouping::User).await;
    h.sim().set_latency(std::time::Duration::from_millis(LATENCY_MS));
    let ids = submit_group(&h, Grouping::User).await;
    let start = Arc::new(tokio::sync::Barrier::new(N));
    let mut set = tokio::task::JoinSet::new();
    for id in &ids {
        let (worker, start, event) = (h.twin(), start.clone(), stream_event(id));
        set.spawn(async move {
            start.wait().await;
            create_ticket::handle(&worker, LambdaEvent::new(event, Context::default())).await.unwrap()
        });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap()["batchItemFailures"], json!([]));
    }
    let mut tasks = Vec::new();
    for id in &ids {
        tasks.push(h.task(id).await);
    }
    check(&h, "lambda-Dynamo-User", &ids, &tasks);
}

async fn by_user(backend: Backend) {
    engines_race(backend, Grouping::User).await;
}

async fn by_user_and_alert(backend: Backend) {
    engines_race(backend, Grouping::UserAlert).await;
}

both_stores!(by_user, by_user_and_alert);
