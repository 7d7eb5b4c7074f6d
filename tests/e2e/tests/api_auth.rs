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
            ApiKey { name: "iga".into(), sha256: hash_key(TASK_KEY), scope: KeyScope::Tasks, sources: vec![] },
            ApiKey { name: "ops".into(), sha256: hash_key(ADMIN_KEY), scope: KeyScope::Admin, sources: vec![] },
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

const SAVIYNT_KEY: &str = "tb_live_saviynt_key_111111";
const SAASALERTS_KEY: &str = "tb_live_saasalerts_key_2222";

/// Keys bound to sources: each submits only for its own source and sees and cancels only that
/// source's tasks (another source's task is a 404, like an unknown id); admin keys see all.
async fn keys_bound_to_sources_see_only_their_tasks(backend: Backend) {
    let h = Harness::with(backend, Grouping::None, |c| {
        c.auth.api_keys = vec![
            ApiKey {
                name: "saviynt".into(),
                sha256: hash_key(SAVIYNT_KEY),
                scope: KeyScope::Tasks,
                sources: vec!["saviynt".into()],
            },
            ApiKey {
                name: "saas-alerts".into(),
                sha256: hash_key(SAASALERTS_KEY),
                scope: KeyScope::Tasks,
                sources: vec!["saas_alerts".into()],
            },
            ApiKey { name: "ops".into(), sha256: hash_key(ADMIN_KEY), scope: KeyScope::Admin, sources: vec![] },
        ];
    })
    .await;
    let as_key = |k: &str| [("authorization", format!("Bearer {k}"))];
    let ext = support::unique("ISO");
    let mut task = access_task(&ext);
    task["source"] = serde_json::json!("saviynt");

    // Submitting for a source the key is not bound to: 403 naming the field, nothing stored.
    let (s, e) = send(&h, "POST", "/v1/tasks", &as_key(SAASALERTS_KEY), task.to_string().as_bytes(), false).await;
    assert_eq!((s, e["error"]["field"].as_str()), (403, Some("source")), "{e}");
    let (s, t) = send(&h, "POST", "/v1/tasks", &as_key(SAVIYNT_KEY), task.to_string().as_bytes(), false).await;
    assert_eq!(s, 201, "the rejected submission stored nothing, so this one is new: {t}");
    let id = t["id"].as_str().unwrap().to_string();
    let path = format!("/v1/tasks/{id}");

    // The other source's key: 404 on read and cancel, the same answer as an unknown id.
    let (s, e) = send(&h, "GET", &path, &as_key(SAASALERTS_KEY), b"", false).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")), "{e}");
    assert!(!e.to_string().contains("saviynt"), "the 404 must not reveal the owner: {e}");
    let (s, _) = send(&h, "DELETE", &path, &as_key(SAASALERTS_KEY), b"", false).await;
    assert_eq!(s, 404);
    assert_ne!(h.task(&id).await.state, bridge::domain::TaskState::Cancelled, "a foreign key cancelled the task");

    // Its own key and the admin key see it; its own key may cancel it.
    let (s, _) = send(&h, "GET", &path, &as_key(ADMIN_KEY), b"", false).await;
    assert_eq!(s, 200);
    let (s, v) = send(&h, "GET", &path, &as_key(SAVIYNT_KEY), b"", false).await;
    assert_eq!((s, v["id"].as_str()), (200, Some(id.as_str())));
    let (s, v) = send(&h, "DELETE", &path, &as_key(SAVIYNT_KEY), b"", false).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("cancelled")), "{v}");
}

both_stores!(keys_bound_to_sources_see_only_their_tasks);
