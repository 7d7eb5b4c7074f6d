//! Secrets never reach the logs: a whole flow with re-authentication, faults, callbacks and bad
//! credentials runs with every log line (TRACE, all crates) captured, then the capture is searched
//! for every secret value involved.

mod support;

use bridge::config::{ApiKey, KeyScope};
use bridge::domain::Grouping;
use bridge::engine::api::hash_key;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use support::{Backend, Harness, access_task};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const API_KEY: &str = "tb_secret_api_key_do_not_log_4242";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_appears_in_any_log_line() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .init();

    let h = Harness::with(Backend::Sqlite, Grouping::User, |c| {
        c.auth.api_keys =
            vec![ApiKey { name: "iga".into(), sha256: hash_key(API_KEY), scope: KeyScope::Admin, sources: vec![] }];
    })
    .await;
    let (url, _) = support::callback_receiver().await;
    let mut body = access_task("S-1");
    body["callback_url"] = json!(url);
    let (s, t) = h.call_as(Some(API_KEY), "POST", "/v1/tasks", Some(body)).await;
    assert_eq!(s, 201);
    let id = t["id"].as_str().unwrap().to_string();
    // Faults on the way: a 5xx burst, then a revoked token (forces one re-login).
    h.sim().fail_next(1, 503);
    h.create(&id).await;
    h.engine.create_due(chrono::Utc::now() + chrono::Duration::seconds(5), 10).await;
    h.sim().revoke_tokens();
    h.poll().await;
    let ticket = h.task(&id).await.ticket.expect("ticket");
    h.sim().close(&ticket.id, Some("Resolved")).unwrap();
    h.poll().await;
    assert_eq!(h.task(&id).await.state, bridge::domain::TaskState::Completed);
    // A caller with a wrong key, and one with the right key.
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {API_KEY}x").parse().unwrap());
    let req = bridge::engine::api::ApiRequest {
        method: "GET",
        path: &format!("/v1/tasks/{id}"),
        query: None,
        headers: &headers,
        body: b"",
        peer_loopback: false,
    };
    assert_eq!(bridge::engine::api::handle(&h.engine, req, chrono::Utc::now()).await.status, 401);
    // Token upkeep with the (fresh) token.
    h.engine.refresh_tokens(chrono::Utc::now()).await;

    // Every value in the connection's secret (API key, cached access token, callback key) and the
    // caller's API key must be absent from the logs.
    let secret_name = h.engine.config.connections[support::CONN].secret.clone();
    let secret = h.secrets.get(&secret_name).await.unwrap();
    let mut needles: Vec<String> = secret
        .fields()
        .filter(|f| !f.ends_with("expires_at"))
        .filter_map(|f| secret.get(f).map(str::to_string))
        .collect();
    needles.push(API_KEY.to_string());
    assert!(needles.len() >= 3, "expected api_key, callback_key and a cached token: {:?}", secret);
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).to_string();
    assert!(logs.len() > 1000, "the capture saw the run ({} bytes)", logs.len());
    for n in &needles {
        assert!(n.len() >= 8, "secret too short to search reliably");
        assert!(!logs.contains(n.as_str()), "a secret value leaked into the logs");
    }
}
