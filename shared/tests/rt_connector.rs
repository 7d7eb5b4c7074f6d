//! Request Tracker 5 connector against the RT simulator: what the shared suite does not cover.

mod support;

use std::sync::Arc;

use bridge::connectors::{self, Connector, ConnectorError, TicketRequest};
use bridge::domain::MappedStatus;
use sandbox::rt::{RtConfig, RtSim};
use support::{MemSecrets, Opts, conn_config};

const SECRET: &str = "tb/rt";

fn build(rt: &RtSim, secrets: Arc<MemSecrets>, options: &str) -> Arc<dyn Connector> {
    connectors::build("rt", &conn_config("rt", rt.base_url(), SECRET, &Opts::default(), options), secrets).unwrap()
}

fn req(key: &str) -> TicketRequest {
    TicketRequest {
        correlation_key: key.into(),
        title: "Remove access for bob".into(),
        body: "body".into(),
        customer_id: Some("ACME-1".into()),
        contact_email: Some("bob@example.com".into()),
        priority: Some("50".into()),
        ..TicketRequest::default()
    }
}

#[tokio::test]
async fn subject_marker_mode_and_custom_fields() {
    let rt = RtSim::spawn(RtConfig { correlation_cf: None, ..RtConfig::default() }).await.unwrap();
    let token = rt.config().tokens[0].clone();
    let c = build(&rt, MemSecrets::with(SECRET, &[("token", &token)]), "customer_field = \"Customer\"");
    let t = c.create_ticket(&req("01JKEY")).await.unwrap();
    let stored = rt.ticket(t.id.parse().unwrap()).unwrap();
    assert_eq!(stored.title, "Remove access for bob [tb:01JKEY]");
    assert_eq!(stored.correlation_key.as_deref(), Some("01JKEY"));
    assert_eq!(stored.fields["CF.Customer"], "ACME-1");
    assert_eq!(stored.requester.as_deref(), Some("bob@example.com"));
    assert_eq!(stored.queue.as_deref(), Some("General"));
    assert_eq!(stored.priority.as_deref(), Some("50"));
    assert_eq!(c.find_by_correlation("01JKEY").await.unwrap().unwrap().id, t.id);
    assert_eq!(c.find_by_correlation("01JKE").await.unwrap(), None, "marker match is exact, not a prefix");
    assert_eq!(t.url.as_deref(), Some(format!("{}/Ticket/Display.html?id={}", rt.base_url(), t.id).as_str()));
    // Stalled is pending in the default lifecycle.
    rt.set_status(&t.id, "stalled").unwrap();
    let s = c.statuses(std::slice::from_ref(&t.id)).await.unwrap();
    assert_eq!((s[0].name.as_str(), s[0].category), ("stalled", Some(MappedStatus::Pending)));
}

#[tokio::test]
async fn basic_auth_and_secret_rotation() {
    let rt = RtSim::spawn(RtConfig::default()).await.unwrap();
    let secrets = MemSecrets::with(SECRET, &[("username", "root"), ("password", "password")]);
    let c = build(&rt, secrets.clone(), "correlation_field = \"TicketBridgeKey\"");
    c.check().await.unwrap();
    // Token auth; the operator rotates the token in the secrets store after a revocation:
    // the connector re-reads the secret once on 401 and carries on.
    let secrets = MemSecrets::with(SECRET, &[("token", "1-14-rt-test-token")]);
    let c = build(&rt, secrets.clone(), "correlation_field = \"TicketBridgeKey\"");
    let t = c.create_ticket(&req("k1")).await.unwrap();
    rt.revoke_all_credentials();
    rt.tokens().insert(
        "2-new-token",
        sandbox::TokenInfo {
            kind: sandbox::TokenKind::Static,
            subject: "root".into(),
            scopes: vec!["ShowTicket".into()],
            expires_at: None,
            revoked: false,
        },
    );
    secrets.set(SECRET, &[("token", "2-new-token")]);
    assert_eq!(c.statuses(std::slice::from_ref(&t.id)).await.unwrap().len(), 1);
    // Secret without usable fields: a configuration error naming them, nothing sent.
    let c = build(&rt, MemSecrets::with(SECRET, &[("user", "x")]), "");
    rt.reset_requests();
    let err = c.check().await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Config(m) if m.contains("'token'")), "{err:?}");
    assert_eq!(rt.request_count(), 0);
}

#[tokio::test]
async fn check_diagnoses_rt_problems() {
    let rt =
        RtSim::spawn(RtConfig { read_only_tokens: vec!["ro-token-1".into()], ..RtConfig::default() }).await.unwrap();
    let good = MemSecrets::with(SECRET, &[("token", "1-14-rt-test-token")]);
    let report = build(&rt, good.clone(), "correlation_field = \"TicketBridgeKey\"").check().await.unwrap();
    assert_eq!(report.steps.len(), 3, "{report:?}");
    let err = build(&rt, MemSecrets::with(SECRET, &[("token", "wrong-token")]), "").check().await.unwrap_err();
    assert!(
        matches!(&err, ConnectorError::Unauthorized(m) if m.contains(SECRET) && !m.contains("wrong-token")),
        "{err:?}"
    );
    let err = build(&rt, good.clone(), "queue = \"Nope\"").check().await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Forbidden(m) if m.contains("options.queue")), "{err:?}");
    let err = build(&rt, good.clone(), "correlation_field = \"Missing CF\"").check().await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Config(m) if m.contains("correlation_field")), "{err:?}");
    let err = build(&rt, good, "rest_path = \"/REST/1.0\"").check().await.unwrap_err();
    assert!(matches!(&err, ConnectorError::NotFound(m) if m.contains("rest_path")), "{err:?}");
    // A token without CreateTicket: creation is refused (403), not retried.
    let ro =
        build(&rt, MemSecrets::with(SECRET, &[("token", "ro-token-1")]), "correlation_field = \"TicketBridgeKey\"");
    ro.check().await.unwrap();
    let err = ro.create_ticket(&req("k")).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Forbidden(_)), "{err:?}");
    assert_eq!(rt.requests("POST /REST/2.0/ticket"), 1);
}

#[test]
fn options_are_validated_by_key() {
    let opts = Opts::default();
    let bad = [
        ("per_page = 500", "options.per_page"),
        ("correlation_field = \"a}b\"", "options.correlation_field"),
        ("queu = \"x\"", "options.queu"),
        ("per_page = \"ten\"", "options"),
    ];
    for (options, key) in bad {
        let cfg = conn_config("rt", "http://127.0.0.1:9", SECRET, &opts, options);
        let err = connectors::build("rt", &cfg, Arc::new(MemSecrets::default())).err().unwrap();
        assert!(err.to_string().contains(key), "{options}: {err}");
    }
}

/// Paging as RT writes it: numeric `pages` (0.0 when empty) for a user with global ShowTicket,
/// `null` counts with `next_page` links for one without (RT >= 5.0.6, the simulator's default).
#[tokio::test]
async fn paging_with_and_without_counts() {
    for global_show_ticket in [true, false] {
        let rt = RtSim::spawn(RtConfig { global_show_ticket, ..RtConfig::default() }).await.unwrap();
        let secrets = MemSecrets::with(SECRET, &[("token", "1-14-rt-test-token")]);
        let c = build(&rt, secrets, "correlation_field = \"TicketBridgeKey\"\nper_page = 2");
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(c.create_ticket(&req(&format!("page-{i}"))).await.unwrap().id);
        }
        rt.reset_requests();
        let got = c.statuses(&ids).await.unwrap();
        assert_eq!(got.len(), 5, "global_show_ticket={global_show_ticket}: {got:?}");
        assert_eq!(rt.requests("GET /REST/2.0/tickets"), 3, "global_show_ticket={global_show_ticket}");
        assert_eq!(c.find_by_correlation("no-such-key").await.unwrap(), None);
    }
}
