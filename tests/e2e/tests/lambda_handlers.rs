//! The Lambda handlers invoked in-process with real event payloads (API Gateway HTTP API v2,
//! DynamoDB stream, EventBridge schedule) over DynamoDB and Secrets Manager on moto.

mod support;

use bridge::config::{ApiKey, KeyScope};
use bridge::domain::{Grouping, TaskState};
use bridge::engine::api::hash_key;
use lambda_runtime::{Context, LambdaEvent};
use sandbox::targets::Target;
use serde_json::{Value, json};
use support::{Backend, Harness, access_task};

const KEY: &str = "tb_lambda_test_key";

fn apigw_event(
    method: &str,
    path: &str,
    body: Option<&Value>,
    key: &str,
) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
    let event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"authorization": format!("Bearer {key}"), "content-type": "application/json", "host": "abc123.execute-api.eu-west-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123", "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "iga/1.0"},
            "requestId": "req-1", "routeKey": format!("{method} {path}"), "stage": "$default", "time": "23/Nov/2026:10:00:00 +0000", "timeEpoch": 1795428000000i64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    });
    // A real HTTP API payload, deserialized as the function's runtime does.
    serde_json::from_value(event).unwrap()
}

fn stream_event(task_ids: &[&str]) -> Value {
    let records: Vec<Value> = task_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({
                "eventID": format!("ev{i}"), "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
                "awsRegion": "eu-west-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1795428000.0,
                    "Keys": {"PK": {"S": format!("TASK#{id}")}, "SK": {"S": "TASK"}},
                    "NewImage": {"PK": {"S": format!("TASK#{id}")}, "SK": {"S": "TASK"}, "state_pk": {"S": "STATE#received"}},
                    "SequenceNumber": format!("{}", 1000 + i), "SizeBytes": 120, "StreamViewType": "NEW_IMAGE"
                },
                "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/tb/stream/2026-11-23T00:00:00.000"
            })
        })
        .collect();
    let event = json!({"Records": records});
    let _: aws_lambda_events::dynamodb::Event = serde_json::from_value(event.clone()).unwrap();
    event
}

fn schedule_event() -> Value {
    let event = json!({"version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-23T10:00:00Z", "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/tb-poll"], "detail": {}});
    let _: aws_lambda_events::eventbridge::EventBridgeEvent = serde_json::from_value(event.clone()).unwrap();
    event
}

fn lambda(payload: Value) -> LambdaEvent<Value> {
    LambdaEvent::new(payload, Context::default())
}

async fn body_json(res: aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> (u16, Value) {
    let status = u16::try_from(res.status_code).unwrap();
    assert_eq!(res.headers["content-type"], "application/json");
    let body = match res.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t,
        other => panic!("expected a text body, got {other:?}"),
    };
    (status, serde_json::from_str(&body).unwrap())
}

async fn handlers_take_a_task_from_api_gateway_to_completion(target: Target) {
    let h = Harness::for_target(target, Backend::Dynamo, Grouping::None, |c| {
        c.auth.api_keys =
            vec![ApiKey { name: "iga".into(), sha256: hash_key(KEY), scope: KeyScope::Admin, sources: vec![] }];
    })
    .await;
    let (url, received) = support::callback_receiver().await;
    let mut body = access_task("L-1");
    body["callback_url"] = json!(url);

    // intake: unauthenticated callers are refused (no loopback exemption in Lambda).
    let (s, _) =
        body_json(intake::handle(&h.engine, apigw_event("POST", "/v1/tasks", Some(&body), "nope")).await).await;
    assert_eq!(s, 401);
    let (s, task) =
        body_json(intake::handle(&h.engine, apigw_event("POST", "/v1/tasks", Some(&body), KEY)).await).await;
    assert_eq!(s, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_string();

    // create-ticket: the stream record for the new task; an unknown task id is skipped, not failed.
    let unknown = bridge::domain::TaskId::generate().to_string();
    let out = create_ticket::handle(&h.engine, lambda(stream_event(&[&id, &unknown]))).await.unwrap();
    assert_eq!(out["batchItemFailures"], json!([]));
    let tickets = h.sim().tickets();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].correlation_key.as_deref(), Some(id.as_str()));
    // A redelivered record does not open a second ticket.
    create_ticket::handle(&h.engine, lambda(stream_event(&[&id]))).await.unwrap();
    assert_eq!(h.sim().tickets().len(), 1);

    // poll-status on schedule: still open, then closed by the technician.
    poll_status::handle(&h.engine, lambda(schedule_event())).await.unwrap();
    assert_eq!(h.task(&id).await.state, TaskState::TicketOpen);
    h.sim().close(&tickets[0].id.to_string(), Some(h.target.done_status)).unwrap();
    // The poll lease paces runs to the connection's interval; a run inside it is skipped.
    let out = poll_status::handle(&h.engine, lambda(schedule_event())).await.unwrap();
    assert_eq!(out[support::CONN]["skipped"], true);
    h.engine.poll_connection(support::CONN, chrono::Utc::now(), false).await;
    let (s, done) =
        body_json(intake::handle(&h.engine, apigw_event("GET", &format!("/v1/tasks/{id}"), None, KEY)).await).await;
    assert_eq!((s, done["state"].as_str(), done["outcome"].as_str()), (200, Some("completed"), Some("fulfilled")));
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, raw) = &got[0];
    bridge::engine::notify::verify(
        support::CALLBACK_KEY.as_bytes(),
        headers["x-bridge-timestamp"].to_str().unwrap(),
        raw,
        headers["x-bridge-signature"].to_str().unwrap(),
        chrono::Utc::now(),
        300,
    )
    .unwrap();

    // create-ticket's scheduled sweep and refresh-token run cleanly on the same schedule payload.
    let sweep = create_ticket::handle(&h.engine, lambda(schedule_event())).await.unwrap();
    assert_eq!(sweep["created"], 0);
    let tokens = refresh_token::handle(&h.engine, lambda(schedule_event())).await.unwrap();
    assert!(tokens[support::CONN]["outcome"].is_string(), "{tokens}");
}

macro_rules! every_target {
    ($($name:ident => $target:ident),* $(,)?) => {
        $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() { handlers_take_a_task_from_api_gateway_to_completion(Target::$target).await })*
    };
}

every_target!(
    sandbox => Sandbox,
    rt => Rt,
    generic => Generic,
    bms => Bms,
    vsa => Vsa,
    ninjaone => Ninjaone,
    otrs => Otrs,
);
