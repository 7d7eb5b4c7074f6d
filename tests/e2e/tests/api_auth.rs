//! Caller authentication and request hygiene of the public API: API keys (hash only, constant-time
//! compare), HMAC signatures with a replay window, loopback-only default, scopes, body limits.

mod support;

use bridge::config::{ApiKey, KeyScope};
use bridge::domain::Grouping;
use bridge::engine::api::{ApiRequest, handle, hash_key};
use bridge::secrets::Secret;
use chrono::{Duration, Utc};
use support::{Backend, Harness, access_task};

const TASK_KEY: &str = "tb_live_task_key_0123456789";
const ADMIN_KEY: &str = "tb_live_admin_key_9876543210";
const HMAC_KEY: &str = "hmac-shared-secret";

async fn harness() -> Harness {
    let h = Harness::with(Backend::Sqlite, Grouping::None, |c| {
        c.auth.api_keys = vec![
            ApiKey { name: "iga".into(), sha256: hash_key(TASK_KEY), scope: KeyScope::Tasks },
            ApiKey { name: "ops".into(), sha256: hash_key(ADMIN_KEY), scope: KeyScope::Admin },
        ];
        c.auth.hmac_secret = Some("tb/hmac".into());
    })
    .await;
    let mut s = Secret::new();
    s.set("hmac_key", HMAC_KEY);
    h.secrets.put("tb/hmac", &s).await.unwrap();
    h
}

async fn send(
    h: &Harness,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    loopback: bool,
) -> (u16, serde_json::Value) {
    let mut map = http::HeaderMap::new();
    map.insert("content-type", "application/json".parse().unwrap());
    for (k, v) in headers {
        map.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let (p, q) = path.split_once('?').map(|(p, q)| (p, Some(q))).unwrap_or((path, None));
    let req = ApiRequest { method, path: p, query: q, headers: &map, body, peer_loopback: loopback };
    let r = handle(&h.engine, req, Utc::now()).await;
    (r.status, r.body)
}

#[tokio::test]
async fn bearer_keys_are_checked_and_scoped() {
    let h = harness().await;
    let body = access_task("K-1").to_string();
    let (s, e) = send(&h, "POST", "/v1/tasks", &[], body.as_bytes(), true).await;
    assert_eq!(s, 401, "keys configured: loopback alone is not enough ({e})");
    let (s, _) =
        send(&h, "POST", "/v1/tasks", &[("authorization", "Bearer wrong".into())], body.as_bytes(), false).await;
    assert_eq!(s, 401);
    let (s, _) =
        send(&h, "POST", "/v1/tasks", &[("authorization", format!("Basic {TASK_KEY}"))], body.as_bytes(), false).await;
    assert_eq!(s, 401);
    let (s, t) =
        send(&h, "POST", "/v1/tasks", &[("authorization", format!("Bearer {TASK_KEY}"))], body.as_bytes(), false).await;
    assert_eq!(s, 201, "{t}");
    // Listing dead letters needs an admin key.
    let (s, _) =
        send(&h, "GET", "/v1/tasks?state=failed", &[("authorization", format!("Bearer {TASK_KEY}"))], b"", false).await;
    assert_eq!(s, 403);
    let (s, _) =
        send(&h, "GET", "/v1/tasks?state=failed", &[("authorization", format!("Bearer {ADMIN_KEY}"))], b"", false)
            .await;
    assert_eq!(s, 200);
    let (s, e) =
        send(&h, "GET", "/v1/tasks?state=lost", &[("authorization", format!("Bearer {ADMIN_KEY}"))], b"", false).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("state")));
    // The key never appears in what is stored or answered.
    assert!(!t.to_string().contains(TASK_KEY));
}

#[tokio::test]
async fn hmac_signatures_are_verified_and_replays_rejected() {
    let h = harness().await;
    let body = access_task("H-1").to_string();
    let now = Utc::now().timestamp();
    let sig = bridge::engine::notify::sign(HMAC_KEY.as_bytes(), now, body.as_bytes());
    let headers = [("x-bridge-timestamp", now.to_string()), ("x-bridge-signature", sig.clone())];
    let (s, t) = send(&h, "POST", "/v1/tasks", &headers, body.as_bytes(), false).await;
    assert_eq!(s, 201, "{t}");
    // Tampered body.
    let tampered = body.replace("Payroll", "Payrol1");
    let (s, _) = send(&h, "POST", "/v1/tasks", &headers, tampered.as_bytes(), false).await;
    assert_eq!(s, 401);
    // Old timestamp (replay outside the window), even with a valid signature for it.
    let old = (Utc::now() - Duration::minutes(6)).timestamp();
    let old_sig = bridge::engine::notify::sign(HMAC_KEY.as_bytes(), old, body.as_bytes());
    let (s, e) = send(
        &h,
        "POST",
        "/v1/tasks",
        &[("x-bridge-timestamp", old.to_string()), ("x-bridge-signature", old_sig)],
        body.as_bytes(),
        false,
    )
    .await;
    assert_eq!(s, 401);
    assert!(e["error"]["message"].as_str().unwrap().contains("window"));
    // Wrong key.
    let bad = bridge::engine::notify::sign(b"other", now, body.as_bytes());
    let (s, _) = send(
        &h,
        "POST",
        "/v1/tasks",
        &[("x-bridge-timestamp", now.to_string()), ("x-bridge-signature", bad)],
        body.as_bytes(),
        false,
    )
    .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn without_keys_only_loopback_callers_are_served() {
    let h = Harness::new(Backend::Sqlite, Grouping::None).await;
    let body = access_task("L-1").to_string();
    let (s, _) = send(&h, "POST", "/v1/tasks", &[], body.as_bytes(), false).await;
    assert_eq!(s, 401);
    let (s, _) = send(&h, "POST", "/v1/tasks", &[], body.as_bytes(), true).await;
    assert_eq!(s, 201);
}

#[tokio::test]
async fn body_limits_and_media_type_are_enforced_and_nothing_is_stored() {
    let h = Harness::new(Backend::Sqlite, Grouping::None).await;
    let mut big = access_task("B-1");
    big["justification"] = serde_json::json!("x".repeat(70 * 1024));
    let (s, e) = send(&h, "POST", "/v1/tasks", &[], big.to_string().as_bytes(), true).await;
    assert_eq!((s, e["error"]["code"].as_str()), (413, Some("body_too_large")));
    let mut map = http::HeaderMap::new();
    map.insert("content-type", "text/plain".parse().unwrap());
    let body = access_task("B-1").to_string();
    let req = ApiRequest {
        method: "POST",
        path: "/v1/tasks",
        query: None,
        headers: &map,
        body: body.as_bytes(),
        peer_loopback: true,
    };
    let r = handle(&h.engine, req, Utc::now()).await;
    assert_eq!(r.status, 415);
    let (s, _) = send(&h, "POST", "/v1/tasks", &[], &[0xff, 0xfe, 0x00], true).await;
    assert_eq!(s, 400);
    // None of the rejected bodies stored anything: the same key is still new.
    let (s, _) = send(&h, "POST", "/v1/tasks", &[], body.as_bytes(), true).await;
    assert_eq!(s, 201);
    let (s, _) = send(&h, "PUT", "/v1/tasks", &[], b"", true).await;
    assert_eq!(s, 405);
    let (s, _) = send(&h, "GET", "/v2/other", &[], b"", true).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn unknown_connection_and_private_callbacks_are_rejected() {
    let h = Harness::with(Backend::Sqlite, Grouping::None, |c| c.settings.allow_private_callbacks = false).await;
    let mut body = access_task("C-1");
    body["connection"] = serde_json::json!("nope");
    let (s, e) = send(&h, "POST", "/v1/tasks", &[], body.to_string().as_bytes(), true).await;
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("connection")));
    for url in [
        "https://169.254.169.254/latest/meta-data",
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://10.1.2.3/x",
        "http://iga.example.com/x",
    ] {
        let mut body = access_task("C-2");
        body["callback_url"] = serde_json::json!(url);
        let (s, e) = send(&h, "POST", "/v1/tasks", &[], body.to_string().as_bytes(), true).await;
        assert_eq!((s, e["error"]["field"].as_str()), (422, Some("callback_url")), "{url}");
    }
}
