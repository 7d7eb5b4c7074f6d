//! The EventBridge publisher over the wire. Against moto: a bus, a rule with an SQS target, one
//! published event read back from the queue and its envelope checked. Against a local stub that
//! speaks the `PutEvents` JSON protocol (moto never reports failed entries): an entry reported as
//! failed (`FailedEntryCount` > 0 with a per-entry `ErrorCode`) is sent again, not dropped; a
//! permanent per-entry error is given up at once with a reason naming the code.

use bridge::aws::EventBridgeSink;
use bridge::engine::{BridgeEvent, EventSink};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn endpoint() -> String {
    std::env::var(bridge::aws::ENDPOINT_ENV)
        .expect("TB_AWS_ENDPOINT is not set: run the tests with `cargo xtask test` (it starts moto_server)")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// One SQS call in the JSON protocol (moto routes on the credential scope's service name).
async fn sqs(http: &reqwest::Client, action: &str, body: Value) -> Value {
    let res = http
        .post(endpoint())
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .header("content-type", "application/x-amz-json-1.0")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "SQS {action}: HTTP {status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn published_event_reaches_an_sqs_target_through_a_rule() {
    let sdk = bridge::aws::sdk_config(Some(&endpoint())).await;
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    let http = bridge::http::client_builder().build().unwrap();
    let bus = unique("tb-bus");
    eb.create_event_bus().name(&bus).send().await.unwrap();
    let queue = sqs(&http, "CreateQueue", json!({"QueueName": unique("tb-events")})).await;
    let queue_url = queue["QueueUrl"].as_str().unwrap().to_string();
    let attrs = sqs(&http, "GetQueueAttributes", json!({"QueueUrl": queue_url, "AttributeNames": ["QueueArn"]})).await;
    let arn = attrs["Attributes"]["QueueArn"].as_str().unwrap().to_string();
    eb.put_rule()
        .name("bridge-events")
        .event_bus_name(&bus)
        .event_pattern(json!({"source": ["ticket-bridge"]}).to_string())
        .send()
        .await
        .unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder().id("queue").arn(&arn).build().unwrap();
    eb.put_targets().rule("bridge-events").event_bus_name(&bus).targets(target).send().await.unwrap();

    let detail = json!({"task_id": "01JTESTTASK", "state": "completed", "ticket": {"id": "42", "number": "T-42"}});
    let sink = EventBridgeSink::new(eb, &bus);
    sink.publish(&BridgeEvent { detail_type: "TaskCompleted".into(), detail: detail.clone() }).await.unwrap();

    // Long-poll the queue until the event is there (bounded).
    let mut got = Vec::new();
    for _ in 0..5 {
        let r = sqs(
            &http,
            "ReceiveMessage",
            json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1}),
        )
        .await;
        got.extend(r["Messages"].as_array().cloned().unwrap_or_default());
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1, "one event delivered to the queue: {got:?}");
    let event: Value = serde_json::from_str(got[0]["Body"].as_str().unwrap()).unwrap();
    assert_eq!(event["source"], "ticket-bridge", "{event}");
    assert_eq!(event["detail-type"], "TaskCompleted", "{event}");
    assert_eq!(event["detail"], detail, "the detail arrives as the JSON object published");
    // (moto leaves out `account`, which EventBridge sets.)
    for field in ["id", "time", "region", "version"] {
        assert!(event.get(field).is_some_and(|v| !v.is_null()), "envelope without {field}: {event}");
    }
}

/// A `PutEvents` endpoint that answers each call with the next scripted per-entry error code
/// (`None`: accepted), recording the entries it was sent.
async fn put_events_stub(script: Vec<Option<&'static str>>) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let script = Arc::new(Mutex::new(script.into_iter()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let (record, script) = (record.clone(), script.clone());
            async move {
                assert_eq!(headers.get("x-amz-target").and_then(|v| v.to_str().ok()), Some("AWSEvents.PutEvents"));
                let req: Value = serde_json::from_str(&body).unwrap();
                let n = req["Entries"].as_array().map_or(0, Vec::len);
                record.lock().unwrap().push(req);
                let code = script.lock().unwrap().next().flatten();
                let entries: Vec<Value> = (0..n)
                    .map(|i| match code {
                        Some(c) => json!({"ErrorCode": c, "ErrorMessage": format!("entry {i} failed")}),
                        None => json!({"EventId": format!("ev-{i}")}),
                    })
                    .collect();
                let body = json!({"FailedEntryCount": if code.is_some() { n } else { 0 }, "Entries": entries});
                ([(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")], body.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn stub_sink(url: &str) -> EventBridgeSink {
    let sdk = bridge::aws::sdk_config(Some(url)).await;
    let mut sink = EventBridgeSink::new(aws_sdk_eventbridge::Client::new(&sdk), "tb-bus");
    sink.retry_delays = vec![Duration::from_millis(10); 3];
    sink
}

fn event() -> BridgeEvent {
    BridgeEvent { detail_type: "TaskCompleted".into(), detail: json!({"task_id": "01JPARTIAL"}) }
}

#[tokio::test]
async fn failed_entries_are_sent_again_not_dropped() {
    let (url, seen) = put_events_stub(vec![Some("InternalFailure"), Some("ThrottlingException"), None]).await;
    stub_sink(&url).await.publish(&event()).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "two failed answers, then accepted: {seen:?}");
    for req in seen.iter() {
        assert_eq!(req["Entries"][0]["Detail"], seen[0]["Entries"][0]["Detail"], "the same entry each time");
        assert_eq!(req["Entries"][0]["DetailType"], "TaskCompleted");
    }
}

#[tokio::test]
async fn an_entry_that_keeps_failing_is_reported_not_silently_dropped() {
    let (url, seen) = put_events_stub(vec![Some("InternalFailure"); 10]).await;
    let err = stub_sink(&url).await.publish(&event()).await.unwrap_err();
    assert!(err.contains("InternalFailure"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 4, "one send and three re-sends");
}

#[tokio::test]
async fn a_permanent_entry_error_is_not_retried() {
    let (url, seen) = put_events_stub(vec![Some("MalformedDetail"), None]).await;
    let err = stub_sink(&url).await.publish(&event()).await.unwrap_err();
    assert!(err.contains("MalformedDetail"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}
