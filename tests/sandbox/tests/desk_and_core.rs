//! The shared simulator core and the sandbox desk, driven over HTTP.

use reqwest::{Client, StatusCode};
use sandbox::desk::{ApiKey, Desk, DeskConfig};
use sandbox::{Fault, RateRule, TokenKind};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn desk() -> Desk {
    let mut cfg = DeskConfig::default();
    cfg.api_keys.push(ApiKey { scopes: vec!["tickets:read".into()], ..ApiKey::new("ro", "read-only-key") });
    cfg.api_keys.push(ApiKey {
        expires_at: Some(chrono::Utc::now() - chrono::Duration::days(1)),
        ..ApiKey::new("old", "expired-key")
    });
    Desk::spawn(cfg).await.unwrap()
}

async fn token(c: &Client, d: &Desk, key: &str) -> (StatusCode, Value) {
    let r = c.post(format!("{}/api/v1/auth/token", d.base_url())).json(&json!({"api_key": key})).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn bearer(c: &Client, d: &Desk) -> String {
    let key = d.api_key().to_string();
    token(c, d, &key).await.1["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn tickets_notes_paging_and_technician_close() {
    let d = desk().await;
    let c = Client::new();
    let tok = bearer(&c, &d).await;
    let url = d.base_url().to_string();
    let mut ids = Vec::new();
    for i in 0..30 {
        let r = c
            .post(format!("{url}/api/v1/tickets"))
            .bearer_auth(&tok)
            .json(&json!({"title": format!("t{i}"), "body": "b", "correlation_key": format!("k{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let t: Value = r.json().await.unwrap();
        assert_eq!(t["status"], "New");
        assert_eq!(t["number"], format!("SBX-{}", t["id"]));
        ids.push(t["id"].as_u64().unwrap());
    }
    // Unknown fields are refused, like a strict real API.
    let r = c
        .post(format!("{url}/api/v1/tickets"))
        .bearer_auth(&tok)
        .json(&json!({"title": "x", "subjct": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Batch by ids spans two pages of 25.
    let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let p1: Value =
        c.get(format!("{url}/api/v1/tickets?ids={list}")).bearer_auth(&tok).send().await.unwrap().json().await.unwrap();
    assert_eq!(p1["items"].as_array().unwrap().len(), 25);
    assert_eq!(p1["total"], 30);
    assert_eq!(p1["next_page"], 2);
    let p2: Value = c
        .get(format!("{url}/api/v1/tickets?ids={list}&page=2"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p2["items"].as_array().unwrap().len(), 5);
    assert_eq!(p2["next_page"], Value::Null);
    // Correlation search.
    let found: Value = c
        .get(format!("{url}/api/v1/tickets?correlation_key=k7"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["items"][0]["id"], ids[7]);
    // Note.
    let r = c
        .post(format!("{url}/api/v1/tickets/{}/notes", ids[0]))
        .bearer_auth(&tok)
        .json(&json!({"title": "n", "body": "more"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(d.ticket(ids[0]).unwrap().notes[0].body, "more");
    // Technician closes over HTTP, by number, with a status; bad status refused.
    let r = c
        .post(format!("{url}/_sim/tickets/SBX-{}/close", ids[1]))
        .json(&json!({"status": "Rejected"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.post(format!("{url}/_sim/tickets/{}/close", ids[2])).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r =
        c.post(format!("{url}/_sim/tickets/{}/status", ids[3])).json(&json!({"status": "Bogus"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let t: Value =
        c.get(format!("{url}/api/v1/tickets/{}", ids[1])).bearer_auth(&tok).send().await.unwrap().json().await.unwrap();
    assert_eq!((t["status"].as_str(), t["category"].as_str()), (Some("Rejected"), Some("rejected")));
    assert_eq!(d.ticket(ids[2]).unwrap().status, "Resolved");
    assert!(d.ticket(ids[2]).unwrap().closed_at.is_some());
    let all: Vec<Value> = c.get(format!("{url}/_sim/tickets")).send().await.unwrap().json().await.unwrap();
    assert_eq!(all.len(), 30);
    // Request counts by route template; /_sim is not counted.
    assert_eq!(d.requests("POST /api/v1/tickets"), 31);
    assert_eq!(d.requests("GET /api/v1/tickets/{id}"), 1);
    let counts: Value = c.get(format!("{url}/_sim/requests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(counts["routes"]["POST /api/v1/auth/token"], 1);
}

#[tokio::test]
async fn auth_semantics() {
    let d = desk().await;
    let c = Client::new();
    let url = d.base_url().to_string();
    assert_eq!(token(&c, &d, "nope").await.1["error"], "invalid_api_key");
    let (code, body) = token(&c, &d, "expired-key").await;
    assert_eq!((code, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("expired_api_key")));
    let r = c.get(format!("{url}/api/v1/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Read-only key: reads fine, writes 403 naming the scope.
    let ro = token(&c, &d, "read-only-key").await.1["access_token"].as_str().unwrap().to_string();
    assert_eq!(c.get(format!("{url}/api/v1/me")).bearer_auth(&ro).send().await.unwrap().status(), StatusCode::OK);
    let r = c.post(format!("{url}/api/v1/tickets")).bearer_auth(&ro).json(&json!({"title": "x"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["required"], "tickets:write");
    // Expiry and revocation.
    let tok = bearer(&c, &d).await;
    d.tokens().expire_access();
    let r: Value = c.get(format!("{url}/api/v1/me")).bearer_auth(&tok).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["error"], "token_expired");
    let tok = bearer(&c, &d).await;
    c.post(format!("{url}/_sim/tokens/revoke")).send().await.unwrap();
    let r: Value = c.get(format!("{url}/api/v1/me")).bearer_auth(&tok).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["error"], "invalid_token");
    assert_eq!(d.tokens().issued(TokenKind::Access), 3);
}

#[tokio::test]
async fn faults_fire_in_order_and_per_route() {
    let d = desk().await;
    let c = Client::new();
    let tok = bearer(&c, &d).await;
    let me = format!("{}/api/v1/me", d.base_url());
    let get = || c.get(&me).bearer_auth(&tok).send();
    d.fail_next(1, 503);
    d.rate_limit_next(1, 7);
    assert_eq!(get().await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = get().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "7");
    d.malformed_next(1);
    let r = get().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).is_err());
    d.error_body_next(1);
    let r: Value = get().await.unwrap().json().await.unwrap();
    assert_eq!(r["error"], "internal_error");
    d.hang_next(1, Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(get().await.unwrap().status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Route-specific fault leaves other routes alone; armed over HTTP.
    let r = c
        .post(format!("{}/_sim/faults", d.base_url()))
        .json(&json!({"kind": "lose_response", "times": 1, "route": "POST /api/v1/tickets"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    let r = c
        .post(format!("{}/api/v1/tickets", d.base_url()))
        .bearer_auth(&tok)
        .json(&json!({"title": "lost"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // ...but the ticket exists.
    assert_eq!(d.tickets().len(), 1);
    assert_eq!(d.faults().pending(), 0);
    d.faults().inject(Fault::Status { status: 502 }, 5);
    d.faults().clear();
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn per_client_rate_limit_and_latency() {
    let d = desk().await;
    let c = Client::new();
    let tok = bearer(&c, &d).await;
    let me = format!("{}/api/v1/me", d.base_url());
    d.set_rate_limit(Some(RateRule { limit: 2, window: Duration::from_secs(60), per_route: false }));
    assert_eq!(c.get(&me).bearer_auth(&tok).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(c.get(&me).bearer_auth(&tok).send().await.unwrap().status(), StatusCode::OK);
    let r = c.get(&me).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let ra: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&ra), "{ra}");
    d.set_rate_limit(None);
    d.set_latency(Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(c.get(&me).bearer_auth(&tok).send().await.unwrap().status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn state_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = DeskConfig { state_file: Some(dir.path().join("desk.json")), ..DeskConfig::default() };
    let d = Desk::spawn(cfg.clone()).await.unwrap();
    let c = Client::new();
    let tok = bearer(&c, &d).await;
    c.post(format!("{}/api/v1/tickets", d.base_url()))
        .bearer_auth(&tok)
        .json(&json!({"title": "keep me"}))
        .send()
        .await
        .unwrap();
    d.close("SBX-1001", Some("Closed")).unwrap();
    d.shutdown().await;
    let d2 = Desk::spawn(cfg).await.unwrap();
    let t = d2.find_ticket("SBX-1001").unwrap();
    assert_eq!((t.title.as_str(), t.status.as_str()), ("keep me", "Closed"));
    assert_eq!(d2.next_id(), 1002);
}
