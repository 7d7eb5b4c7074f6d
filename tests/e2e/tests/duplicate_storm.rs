//! Duplicate storm against the intake Lambda handler on DynamoDB (moto): many concurrent API
//! Gateway requests resend a smaller set of submissions, then every returned id is delivered to
//! the create-ticket handler (duplicates included, concurrently, as stream redelivery would).
//! Exactly one task and one ticket per key. Normal run: 100 requests / 10 keys / 20 clients;
//! `cargo xtask soak` (scale 10) gives 1,000 / 100 / 50.

mod support;

use bridge::config::{ApiKey, KeyScope};
use bridge::domain::{Grouping, TaskState};
use bridge::engine::api::hash_key;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use support::{Backend, Harness, access_task};

const KEY: &str = "tb_storm_key";

fn scale() -> usize {
    std::env::var("TB_SOAK_SCALE").ok().and_then(|s| s.parse().ok()).filter(|n: &usize| *n > 0).unwrap_or(1)
}

fn apigw(body: &Value, n: usize) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
    let event = json!({
        "version": "2.0", "routeKey": "POST /v1/tasks", "rawPath": "/v1/tasks", "rawQueryString": "",
        "headers": {"authorization": format!("Bearer {KEY}"), "content-type": "application/json"},
        "requestContext": {"accountId": "123456789012", "apiId": "abc", "domainName": "abc.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc", "http": {"method": "POST", "path": "/v1/tasks", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "iga"},
            "requestId": format!("req-{n}"), "routeKey": "POST /v1/tasks", "stage": "$default", "time": "23/Nov/2026:10:00:00 +0000", "timeEpoch": 1795428000000i64},
        "body": body.to_string(), "isBase64Encoded": false
    });
    serde_json::from_value(event).unwrap()
}

fn stream_event(ids: &[String]) -> Value {
    let records: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"eventID": format!("ev{i}"), "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1", "dynamodb": {"Keys": {"PK": {"S": format!("TASK#{id}")}, "SK": {"S": "TASK"}},
            "NewImage": {"PK": {"S": format!("TASK#{id}")}, "SK": {"S": "TASK"}, "state_pk": {"S": "STATE#received"}},
            "SequenceNumber": format!("{}", 1000 + i), "SizeBytes": 120, "StreamViewType": "NEW_IMAGE"},
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/tb/stream/2026-11-23T00:00:00.000"}))
        .collect();
    json!({"Records": records})
}

/// Concurrent duplicates through the intake and create-ticket handlers on DynamoDB. (moto applies a
/// condition and its write in two steps; `cargo xtask test` runs it serialized, see
/// xtask/moto_serial.py, so the condition holds as in DynamoDB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_lambda_duplicate_storm_on_dynamodb() {
    let (requests, keys, clients) = (100 * scale(), 10 * scale(), (5 * scale()).clamp(20, 50));
    let h = Arc::new(
        Harness::with(Backend::Dynamo, Grouping::None, |c| {
            c.auth.api_keys =
                vec![ApiKey { name: "iga".into(), sha256: hash_key(KEY), scope: KeyScope::Tasks, sources: vec![] }];
        })
        .await,
    );
    let mut set = tokio::task::JoinSet::new();
    for c in 0..clients {
        let h = h.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            for j in (c..requests).step_by(clients) {
                let key = j % keys;
                let res = intake::handle(&h.engine, apigw(&access_task(&format!("STORM-{key}")), j)).await;
                let status = u16::try_from(res.status_code).unwrap();
                let v: Value = match res.body {
                    Some(aws_lambda_events::encodings::Body::Text(t)) => serde_json::from_str(&t).unwrap(),
                    other => panic!("expected a text body, got {other:?}"),
                };
                out.push((key, status, v["id"].as_str().unwrap_or_default().to_string()));
            }
            out
        });
    }
    let (mut created, mut total) = (0, 0);
    let mut ids: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut delivered = Vec::new();
    while let Some(r) = set.join_next().await {
        for (key, status, id) in r.unwrap() {
            total += 1;
            assert!(status == 201 || status == 200, "key {key}: status {status}");
            created += usize::from(status == 201);
            ids.entry(key).or_default().insert(id.clone());
            delivered.push(id);
        }
    }
    assert_eq!(total, requests);
    assert_eq!((created, ids.len()), (keys, keys), "one 201 and one task per key");
    assert!(ids.values().all(|s| s.len() == 1), "a key got two task ids");
    // Every response's id goes to the create-ticket handler, duplicates and all, concurrently.
    let mut set = tokio::task::JoinSet::new();
    for chunk in delivered.chunks(10) {
        let h = h.clone();
        let event = stream_event(chunk);
        set.spawn(async move {
            create_ticket::handle(&h.engine, LambdaEvent::new(event, Context::default())).await.unwrap()
        });
    }
    let mut failed_items = 0;
    while let Some(r) = set.join_next().await {
        failed_items += r.unwrap()["batchItemFailures"].as_array().map_or(0, Vec::len);
    }
    // Under the storm (moto answers one request at a time) an attempt can outrun four fifths of its
    // claim and is given up as retryable, leaving no ticket yet. On AWS the create-ticket schedule's
    // sweep takes such tasks; here the same handler runs on the schedule's payload until every task
    // has its ticket or none is left to retry (at most 60 s).
    let (mut sweeps, mut swept) = (0, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut waiting = 0;
        for set in ids.values() {
            let id = set.iter().next().unwrap();
            waiting += usize::from(h.task(id).await.state == TaskState::Received);
        }
        if waiting == 0 || std::time::Instant::now() >= deadline {
            break;
        }
        let r =
            create_ticket::handle(&h.engine, LambdaEvent::new(json!({"source": "aws.scheduler"}), Context::default()))
                .await
                .unwrap();
        sweeps += 1;
        swept += r["created"].as_u64().unwrap_or(0);
        if r["created"] == 0 && r["retried"] == 0 {
            // Nothing was due yet (the retry waits `retry_base_secs`): look again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let tickets = h.sim().tickets();
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for t in &tickets {
        *per_key.entry(t.correlation_key.clone().unwrap_or_default()).or_default() += 1;
    }
    // Counted first and written whatever the outcome, so a broken run shows in the report.
    let mut open = 0;
    for set in ids.values() {
        let id = set.iter().next().unwrap();
        open += usize::from(h.task(id).await.state == TaskState::TicketOpen);
    }
    let duplicates = per_key.values().map(|n| n.saturating_sub(1)).sum::<usize>()
        + per_key.keys().filter(|k| !ids.values().any(|s| s.contains(*k))).count();
    let lost = ids.values().filter(|s| !s.iter().any(|id| per_key.contains_key(id))).count();
    let v = json!({"suite": "duplicate_storm", "class": format!("intake Lambda on DynamoDB ({clients} clients, {keys} keys)"),
        "route": "-", "scale": scale(), "runs": 1, "tasks": total, "completed": open, "lost": lost, "duplicates": duplicates,
        "errors": failed_items, "deliveries": delivered.len(), "sweeps": sweeps, "created_by_sweep": swept});
    sandbox::report::write("storm-lambda", &v);
    assert_eq!(tickets.len(), keys, "tickets: {per_key:?}");
    for set in ids.values() {
        let id = set.iter().next().unwrap();
        assert_eq!(per_key.get(id), Some(&1), "task {id}");
        assert_eq!(h.task(id).await.state, TaskState::TicketOpen);
    }
    assert_eq!((open, lost, duplicates, failed_items), (keys, 0, 0, 0), "open, lost, duplicates, failed deliveries");
}
