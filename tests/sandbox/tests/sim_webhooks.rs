//! Outgoing webhooks of the simulators, driven over the technician API: what is sent on a status
//! change (body, signed or bearer auth), nothing on a non-change, the drop fault, and refusal for
//! simulators whose product sends no webhook the bridge takes directly.

use axum::body::Bytes;
use axum::http::HeaderMap;
use reqwest::{Client, StatusCode};
use sandbox::targets::{Target, spawn};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Got = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A receiver on loopback; its URL and what it got.
async fn receiver() -> (String, Got) {
    let got: Got = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/v1/hooks/desk",
        axum::routing::post(move |h: HeaderMap, b: Bytes| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push((h, b));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/v1/hooks/desk"), got)
}

async fn stats(c: &Client, base: &str) -> Value {
    c.get(format!("{base}/_sim/webhook")).send().await.unwrap().json().await.unwrap()
}

async fn close(c: &Client, base: &str, id: u64, status: &str) {
    let r = c.post(format!("{base}/_sim/tickets/{id}/status")).json(&json!({"status": status})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_signs_otrs_bearer_drop_fault_and_refusals() {
    let c = Client::new();
    for (target, auth) in [(Target::Rt, "signed"), (Target::Sandbox, "signed"), (Target::Otrs, "bearer")] {
        let t = spawn(target).await.unwrap();
        let (url, got) = receiver().await;
        let r = c.put(format!("{}/_sim/webhook", t.base_url)).json(&json!({"url": url, "key": "k-1"})).send().await;
        assert_eq!(r.unwrap().status(), StatusCode::NO_CONTENT);
        let ticket =
            t.sim.create_ticket(sandbox::NewTicket { title: "t".into(), body: "b".into(), ..Default::default() });
        // Same status again: no change, no webhook.
        close(&c, &t.base_url, ticket.id, &ticket.status).await;
        close(&c, &t.base_url, ticket.id, t.done_status).await;
        assert!(t.sim.webhooks_settled(Duration::from_secs(10)).await);
        let s = stats(&c, &t.base_url).await;
        assert_eq!((s["triggered"].as_u64(), s["delivered"].as_u64()), (Some(1), Some(1)), "{target:?}: {s}");
        let (headers, body) = got.lock().unwrap().pop().unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, json!({"ticket_id": ticket.id.to_string()}), "{target:?}");
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        match auth {
            "signed" => {
                let ts: i64 = header("x-bridge-timestamp").unwrap().parse().unwrap();
                assert!((ts - chrono::Utc::now().timestamp()).abs() <= 5, "{target:?}: {ts}");
                let raw = serde_json::to_vec(&body).unwrap();
                assert_eq!(header("x-bridge-signature"), Some(sandbox::webhooks::sign(b"k-1", ts, &raw)));
                assert!(header("x-bridge-signature").unwrap().starts_with("v1="));
                assert_eq!(header("authorization"), None);
            }
            _ => {
                assert_eq!(header("authorization").as_deref(), Some("Bearer k-1"), "{target:?}");
                assert_eq!(header("x-bridge-signature"), None);
            }
        }
        // The drop fault loses the next delivery only.
        let r = c.post(format!("{}/_sim/webhook/drop", t.base_url)).json(&json!({"times": 1})).send().await;
        assert_eq!(r.unwrap().status(), StatusCode::NO_CONTENT);
        close(&c, &t.base_url, ticket.id, t.rejected_status).await;
        close(&c, &t.base_url, ticket.id, t.done_status).await;
        assert!(t.sim.webhooks_settled(Duration::from_secs(10)).await);
        let s = stats(&c, &t.base_url).await;
        assert_eq!(
            (s["triggered"].as_u64(), s["dropped"].as_u64(), s["delivered"].as_u64()),
            (Some(3), Some(1), Some(2))
        );
        assert_eq!(got.lock().unwrap().len(), 1, "{target:?}: the dropped delivery arrived");
        // Off: nothing more is sent.
        let r = c.delete(format!("{}/_sim/webhook", t.base_url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        close(&c, &t.base_url, ticket.id, t.rejected_status).await;
        assert_eq!(stats(&c, &t.base_url).await["triggered"].as_u64(), Some(3));
    }
    for target in [Target::Ninjaone, Target::Bms, Target::Vsa, Target::Generic] {
        let t = spawn(target).await.unwrap();
        let r = c
            .put(format!("{}/_sim/webhook", t.base_url))
            .json(&json!({"url": "http://127.0.0.1:9/v1/hooks/x", "key": "k"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{target:?}");
    }
}
