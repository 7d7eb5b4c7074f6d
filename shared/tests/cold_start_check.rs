//! The Lambda functions' cold-start check: one result (and log line) per connection, from the
//! stored credentials alone — the vendor is unreachable here, so any vendor call would fail it.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge::config::Config;
use bridge::engine::{Engine, LogEvents};
use bridge::secrets::Secrets;
use chrono::{Duration, Utc};
use support::psa::{config, dead_url};
use support::{MemSecrets, Opts};

#[tokio::test]
async fn reports_each_connection_from_its_stored_credentials_without_calling_the_vendor() {
    let now = Utc::now();
    let later = (now + Duration::hours(1)).to_rfc3339();
    let earlier = (now - Duration::hours(1)).to_rfc3339();
    let secrets = MemSecrets::with(
        "tb/fresh",
        &[("client_id", "id"), ("client_secret", "s3cr3t-value"), ("refresh_token", "rt"), ("access_token", "at")],
    );
    let mut s = secrets.snapshot("tb/fresh");
    s.set("access_token_expires_at", later.clone());
    secrets.put("tb/fresh", &s).await.unwrap();
    s.set("access_token_expires_at", earlier);
    secrets.put("tb/stale", &s).await.unwrap();

    let dead = dead_url().await;
    let mut cfg = Config::default();
    for (name, secret) in [("fresh", "tb/fresh"), ("stale", "tb/stale"), ("unset", "tb/unset")] {
        cfg.connections.insert(name.into(), config("ninjaone", &dead, secret, &Opts::default(), "", "", Some("7")));
    }
    let secrets: Arc<dyn Secrets> = secrets;
    let mut connectors = BTreeMap::new();
    for (name, c) in &cfg.connections {
        connectors.insert(name.clone(), bridge::connectors::build(name, c, secrets.clone()).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(bridge::store::sqlite::SqliteStore::open(dir.path().join("tb.db")).unwrap());
    let engine = Engine::new(Arc::new(cfg), store, secrets, connectors, Arc::new(LogEvents));

    let checks = engine.cold_start_check(now).await;
    let names: Vec<_> = checks.iter().map(|c| c.connection.as_str()).collect();
    assert_eq!(names, ["fresh", "stale", "unset"], "one line per connection");
    let by = |n: &str| checks.iter().find(|c| c.connection == n).unwrap();
    assert!(by("fresh").ok, "{:?}", by("fresh"));
    assert!(by("fresh").summary.contains("valid until"), "{:?}", by("fresh"));
    assert!(by("stale").ok, "a renewable token is renewed on first use: {:?}", by("stale"));
    assert!(by("stale").summary.contains("expired"), "{:?}", by("stale"));
    assert!(!by("unset").ok, "{:?}", by("unset"));
    assert!(by("unset").summary.contains("tb/unset"), "names the missing secret: {:?}", by("unset"));
    assert!(checks.iter().all(|c| !c.summary.contains("s3cr3t-value")), "no secret value in a summary");
}
