//! Sandbox desk connector: connection check diagnosis, contacts, customers, tokens.

mod support;

use std::sync::Arc;

use bridge::connectors::{self, Connector, ConnectorError, TokenKind};
use sandbox::desk::{ApiKey, Desk, DeskConfig};
use support::{MemSecrets, Opts, conn_config};

const SECRET: &str = "tb/sbx";

async fn desk_with(keys: Vec<ApiKey>) -> Desk {
    Desk::spawn(DeskConfig { api_keys: keys, ..DeskConfig::default() }).await.unwrap()
}

fn connector(base_url: &str, secrets: Arc<MemSecrets>) -> Arc<dyn Connector> {
    connectors::build(
        "sbx",
        &conn_config("sandbox", base_url, SECRET, &Opts { max_retries: 0, ..Opts::default() }, ""),
        secrets,
    )
    .unwrap()
}

#[tokio::test]
async fn check_diagnoses_credentials_and_scope() {
    let expired = ApiKey {
        expires_at: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
        ..ApiKey::new("old", "key-expired")
    };
    let ro = ApiKey { scopes: vec!["tickets:read".into()], ..ApiKey::new("ro", "key-readonly") };
    let d = desk_with(vec![ApiKey::new("main", "key-good"), expired, ro]).await;
    type Want = fn(&ConnectorError) -> bool;
    let cases: [(&str, Want); 3] = [
        ("key-wrong", |e| matches!(e, ConnectorError::Unauthorized(m) if m.contains("'api_key'"))),
        ("key-expired", |e| matches!(e, ConnectorError::TokenExpired(m) if m.contains("expired_api_key"))),
        ("key-readonly", |e| matches!(e, ConnectorError::Forbidden(m) if m.contains("tickets:write"))),
    ];
    for (key, want) in cases {
        let c = connector(d.base_url(), MemSecrets::with(SECRET, &[("api_key", key)]));
        let err = c.check().await.unwrap_err();
        assert!(want(&err), "{key}: {err:?}");
        assert!(!err.to_string().contains(key), "secret in error: {err}");
    }
    let c = connector(d.base_url(), MemSecrets::with(SECRET, &[("api_key", "key-good")]));
    let report = c.check().await.unwrap();
    assert!(report.ok && report.steps.iter().any(|s| s.contains("'main'")), "{report:?}");
    // Missing field is a configuration problem naming the field.
    let c = connector(d.base_url(), MemSecrets::with(SECRET, &[("apikey", "x")]));
    let err = c.check().await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Config(m) if m.contains("api_key")), "{err:?}");
    // Missing secret altogether.
    let c = connector(d.base_url(), Arc::new(MemSecrets::default()));
    assert!(matches!(c.check().await.unwrap_err(), ConnectorError::Secrets(_)));
}

#[tokio::test]
async fn check_diagnoses_unreachable_and_tls() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let secrets = MemSecrets::with(SECRET, &[("api_key", "k-123456")]);
    let err = connector(&format!("http://127.0.0.1:{port}"), secrets.clone()).check().await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unreachable(_)), "{err:?}");
    // https:// to a plain-HTTP server fails the TLS handshake.
    let d = desk_with(vec![ApiKey::new("main", "k-123456")]).await;
    let err = connector(&d.base_url().replace("http://", "https://"), secrets).check().await.unwrap_err();
    assert!(matches!(err, ConnectorError::Tls(_)), "{err:?}");
}

#[tokio::test]
async fn tokens_are_stored_and_refreshed() {
    let d = desk_with(vec![ApiKey::new("main", "key-good")]).await;
    let secrets = MemSecrets::with(SECRET, &[("api_key", "key-good")]);
    let c = connector(d.base_url(), secrets.clone());
    let before = c.token_state().await.unwrap();
    assert_eq!((before.kind, before.expires_at), (TokenKind::Renewable, None));
    c.check().await.unwrap();
    let stored = secrets.snapshot(SECRET);
    let first = stored.get("access_token").unwrap().to_string();
    let state = c.token_state().await.unwrap();
    assert!(state.expires_at.unwrap() > chrono::Utc::now() + chrono::Duration::minutes(55));
    // A second connector (another worker) reuses the stored token: no new login.
    let c2 = connector(d.base_url(), secrets.clone());
    c2.check().await.unwrap();
    assert_eq!(d.tokens().issued(sandbox::TokenKind::Access), 1);
    // Forced refresh stores a new token that works.
    c.refresh_token().await.unwrap();
    let second = secrets.snapshot(SECRET).get("access_token").unwrap().to_string();
    assert_ne!(first, second);
    c.check().await.unwrap();
    assert_eq!(d.tokens().issued(sandbox::TokenKind::Access), 2);
}

#[tokio::test]
async fn contacts_and_customers() {
    let d = desk_with(vec![ApiKey::new("main", "key-good")]).await;
    for i in 0..30 {
        d.add_customer(&format!("cust-{i}"), &format!("Customer {i}"));
    }
    d.add_contact("ct-1", Some("cust-1"), "Alice@Example.com", "Alice");
    d.add_contact("ct-2", Some("cust-2"), "alice@example.com", "Alice (other)");
    let c = connector(d.base_url(), MemSecrets::with(SECRET, &[("api_key", "key-good")]));
    let customers = c.list_customers().await.unwrap();
    assert_eq!(customers.len(), 30, "all pages read");
    assert_eq!(customers[29].name, "Customer 29");
    assert_eq!(d.requests("GET /api/v1/customers"), 2);
    assert_eq!(c.find_contact(Some("cust-2"), "alice@example.com").await.unwrap().as_deref(), Some("ct-2"));
    assert_eq!(c.find_contact(None, "ALICE@example.com").await.unwrap().as_deref(), Some("ct-1"));
    assert_eq!(c.find_contact(None, "bob@example.com").await.unwrap(), None);
    // Creating for an unknown customer is rejected by the desk, not retried.
    let req = bridge::connectors::TicketRequest {
        correlation_key: "k".into(),
        title: "t".into(),
        customer_id: Some("nope".into()),
        ..Default::default()
    };
    let err = c.create_ticket(&req).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Rejected(_)), "{err:?}");
    assert_eq!(d.requests("POST /api/v1/tickets"), 1);
}

#[test]
fn unknown_option_is_named() {
    let mut cfg = conn_config("sandbox", "http://127.0.0.1:9", SECRET, &Opts::default(), "queue = \"x\"");
    let err = connectors::build("sbx", &cfg, Arc::new(MemSecrets::default())).err().unwrap();
    assert!(err.to_string().contains("connections.sbx.options.queue"), "{err}");
    cfg.options.remove("queue");
    assert!(connectors::build("sbx", &cfg, Arc::new(MemSecrets::default())).is_ok());
}

#[test]
fn every_kind_builds_without_io_and_unknown_options_are_named() {
    for kind in ["bms", "vsa", "ninjaone", "otrs"] {
        let required = if kind == "vsa" { "service_desk_id = \"1001\"\n" } else { "" };
        let cfg = conn_config(kind, "http://127.0.0.1:9", SECRET, &Opts::default(), required);
        let built = connectors::build("x", &cfg, Arc::new(MemSecrets::default())).unwrap();
        assert_eq!(built.kind().as_str(), kind);
        let cfg =
            conn_config(kind, "http://127.0.0.1:9", SECRET, &Opts::default(), &format!("{required}bogus_option = 1"));
        let err = connectors::build("x", &cfg, Arc::new(MemSecrets::default())).err().unwrap();
        assert!(
            matches!(&err, ConnectorError::Config(m) if m.contains("connections.x.options") && m.contains("bogus_option")),
            "{err:?}"
        );
    }
    // VSA cannot work without its service desk.
    let cfg = conn_config("vsa", "http://127.0.0.1:9", SECRET, &Opts::default(), "");
    let err = connectors::build("x", &cfg, Arc::new(MemSecrets::default())).err().unwrap();
    assert!(matches!(&err, ConnectorError::Config(m) if m.contains("service_desk_id")), "{err:?}");
}
