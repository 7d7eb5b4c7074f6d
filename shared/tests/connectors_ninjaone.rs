//! NinjaOne connector against the NinjaOne simulator: rotating refresh tokens above all.

mod support;

use std::sync::Arc;
use std::time::Instant;

use bridge::connectors::ninjaone::NinjaOneConnector;
use bridge::connectors::{Connector, ConnectorError, NoteRequest, TokenKind};
use bridge::domain::{MappedStatus, Outcome};
use bridge::secrets::{Secret, Secrets, SecretsError};
use sandbox::Fault;
use sandbox::ninjaone::{NinjaConfig, NinjaOne};
use support::psa::{NINJA_SECRET as SECRET, assert_check_fails, config, dead_url, ninja_sim, request};
use support::{MemSecrets, Opts};

const TOKEN: &str = "POST /ws/oauth/token";
const RUN: &str = "POST /v2/ticketing/trigger/board/{boardId}/run";

struct Env {
    sim: NinjaOne,
    secrets: Arc<MemSecrets>,
    conn: Arc<NinjaOneConnector>,
}

fn opts() -> Opts {
    Opts { timeout_ms: 400, ..Opts::default() }
}

fn connector(sim: &NinjaOne, secrets: &Arc<MemSecrets>, options: &str) -> Arc<NinjaOneConnector> {
    let cfg = config("ninjaone", sim.base_url(), SECRET, &opts(), options, "", Some("7"));
    Arc::new(NinjaOneConnector::new("ninja-test", &cfg, secrets.clone()).unwrap())
}

async fn env_with(options: &str) -> Env {
    let (sim, secrets) = ninja_sim(NinjaConfig::default()).await;
    let conn = connector(&sim, &secrets, options);
    Env { sim, secrets, conn }
}

fn refresh_token(e: &Env) -> String {
    e.secrets.snapshot(SECRET).get("refresh_token").unwrap().to_string()
}

#[tokio::test]
async fn create_comment_and_lookups() {
    let e = env_with("").await;
    let mut req = request("01JNJ1", Some("8"));
    req.ticket_type = Some("task".into());
    let t = e.conn.create_ticket(&req).await.unwrap();
    let sim = e.sim.find_ticket(&t.id).unwrap();
    assert_eq!(sim.customer_id.as_deref(), Some("8"));
    assert_eq!(sim.status, "New");
    assert_eq!(sim.request["description"]["public"], false);
    assert_eq!(sim.request["ticketFormId"], 1);
    assert_eq!(sim.request["type"], "TASK");
    assert_eq!(t.remote_status.as_deref(), Some("New"));
    // Without a customer the catch-all organization is used.
    let t2 = e.conn.create_ticket(&request("01JNJ2", None)).await.unwrap();
    assert_eq!(e.sim.find_ticket(&t2.id).unwrap().customer_id.as_deref(), Some("7"));
    assert_eq!(e.conn.find_by_correlation("01JNJ1").await.unwrap().map(|r| r.id), Some(t.id.clone()));
    // The board search matches substrings; only the exact key counts.
    assert_eq!(e.conn.find_by_correlation("01JNJ").await.unwrap(), None);
    let note = NoteRequest { correlation_key: "01JNN".into(), title: "Another alert".into(), body: "second".into() };
    e.conn.add_note(&t, &note).await.unwrap();
    // A note's marker does not make its ticket "the ticket created for" the note's key.
    assert_eq!(e.conn.find_by_correlation("01JNN").await.unwrap(), None);
    let notes = e.sim.find_ticket(&t.id).unwrap().notes;
    assert_eq!(notes.len(), 1);
    assert!(notes[0].internal && notes[0].body.contains("second"));
    let customers = e.conn.list_customers().await.unwrap();
    assert_eq!(customers.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["7", "8"]);
}

#[tokio::test]
async fn status_batch_uses_the_board_cursor_and_parent_categories() {
    let e = env_with("page_size = 10").await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(e.conn.create_ticket(&request(&format!("01JNB{i:02}"), None)).await.unwrap().id);
    }
    e.sim.close(&ids[0], None).unwrap();
    e.sim.close(&ids[1], Some("Fixed by vendor")).unwrap();
    e.sim.set_status(&ids[2], "Waiting for parts").unwrap();
    e.sim.set_status(&ids[3], "Paused").unwrap();
    e.sim.reset_requests();
    let got = e.conn.statuses(&ids).await.unwrap();
    assert_eq!(got.len(), 25);
    let by = |i: usize| got.iter().find(|s| s.ticket_id == ids[i]).unwrap();
    assert_eq!((by(0).name.as_str(), by(0).category), ("Resolved", Some(MappedStatus::Closed(Outcome::Fulfilled))));
    assert_eq!(
        (by(1).name.as_str(), by(1).category),
        ("Fixed by vendor", Some(MappedStatus::Closed(Outcome::Fulfilled)))
    );
    assert_eq!((by(2).name.as_str(), by(2).category), ("Waiting for parts", Some(MappedStatus::Pending)));
    assert_eq!(by(3).category, Some(MappedStatus::Pending));
    assert_eq!(by(4).category, Some(MappedStatus::Open));
    // 25 tickets in pages of 10: three board runs, following lastCursorId.
    assert_eq!(e.sim.requests(RUN), 3);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_spent_one_is_never_replayed() {
    let e = env_with("").await;
    let original = refresh_token(&e);
    e.conn.create_ticket(&request("01JROT", None)).await.unwrap();
    let after_first = refresh_token(&e);
    assert_ne!(after_first, original, "the rotated refresh token is stored");
    // Scheduled refreshes: each rotates once and stores the new token.
    let mut seen = vec![original, after_first];
    for _ in 0..3 {
        let st = e.conn.refresh_token().await.unwrap();
        assert_eq!(st.kind, TokenKind::Renewable);
        assert!(st.expires_at.is_some());
        let now = refresh_token(&e);
        assert!(!seen.contains(&now));
        seen.push(now);
    }
    // Many concurrent callers after the server expired the access token: one exchange.
    e.sim.tokens().expire_access();
    let before = e.sim.requests(TOKEN);
    let ids = vec![e.sim.tickets()[0].id.to_string()];
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, ids) = (e.conn.clone(), ids.clone());
        tasks.push(tokio::spawn(async move { c.statuses(&ids).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 1);
    }
    assert_eq!(e.sim.requests(TOKEN), before + 1, "single-flight exchange");
    // A second process (another Lambda) with its own cache but the same secret. It started with
    // the tokens stored then; the first process rotates afterwards.
    let other = connector(&e.sim, &e.secrets, "");
    other.statuses(&ids).await.unwrap();
    e.conn.refresh_token().await.unwrap();
    e.sim.revoke_tokens();
    // On the 401 it first tries the access token the other process stored (revoked as well),
    // and fails this once rather than looping.
    let err = other.statuses(&ids).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unauthorized(_)), "{err:?}");
    // Next time it exchanges the LATEST stored refresh token, not the one it started with.
    let exchanges = e.sim.requests(TOKEN);
    other.statuses(&ids).await.unwrap();
    assert_eq!(e.sim.requests(TOKEN), exchanges + 1);
    // And the first process adopts the token the other one stored, without an exchange.
    e.conn.statuses(&ids).await.unwrap();
    assert_eq!(e.sim.requests(TOKEN), exchanges + 1);
    assert_eq!(e.sim.refresh_replays(), 0, "a spent refresh token was sent again");
}

/// Secrets that remember when each version was written.
struct Recording {
    inner: Arc<MemSecrets>,
    puts: std::sync::Mutex<Vec<(Instant, String)>>,
}

#[async_trait::async_trait]
impl Secrets for Recording {
    async fn get(&self, name: &str) -> Result<Secret, SecretsError> {
        self.inner.get(name).await
    }
    async fn put(&self, name: &str, value: &Secret) -> Result<(), SecretsError> {
        let rt = value.get("refresh_token").unwrap_or_default().to_string();
        self.inner.put(name, value).await?;
        self.puts.lock().unwrap().push((Instant::now(), rt));
        Ok(())
    }
}

#[tokio::test]
async fn the_rotated_refresh_token_is_stored_before_the_access_token_is_used() {
    let (sim, secrets) = ninja_sim(NinjaConfig::default()).await;
    let rec = Arc::new(Recording { inner: secrets.clone(), puts: Default::default() });
    let cfg = config("ninjaone", sim.base_url(), SECRET, &opts(), "", "", Some("7"));
    let conn = NinjaOneConnector::new("ninja-order", &cfg, rec.clone()).unwrap();
    conn.create_ticket(&request("01JORDER", None)).await.unwrap();
    let log = sim.request_log();
    let exchange = log.iter().position(|r| r.route == TOKEN).expect("a token exchange");
    let first_use = log[exchange + 1..].iter().find(|r| r.route != TOKEN).expect("an API call").at;
    let puts = rec.puts.lock().unwrap().clone();
    let stored = secrets.snapshot(SECRET).get("refresh_token").unwrap().to_string();
    let (written, _) = puts.iter().find(|(_, rt)| *rt == stored).expect("the new refresh token was written");
    assert!(*written > log[exchange].at && *written < first_use, "stored after the exchange, before the first use");
}

#[tokio::test]
async fn the_token_exchange_is_not_retried_after_the_server_may_have_rotated() {
    let e = env_with("").await;
    // A 503 on the exchange: not retried by the HTTP layer (the server may have spent the
    // token); the next call succeeds with the still-valid refresh token.
    e.sim.faults().inject_on(TOKEN, Fault::Status { status: 503 }, 1);
    let err = e.conn.refresh_token().await.unwrap_err();
    assert!(matches!(err, ConnectorError::Server(_)), "{err:?}");
    assert_eq!(e.sim.requests(TOKEN), 1);
    e.conn.refresh_token().await.unwrap();
    assert_eq!(e.sim.requests(TOKEN), 2);
    // A 429 means the server did not act: retried after Retry-After.
    e.sim.faults().inject_on(TOKEN, Fault::RateLimited { retry_after_secs: 1 }, 1);
    e.conn.refresh_token().await.unwrap();
    assert_eq!(e.sim.requests(TOKEN), 4);
    assert_eq!(e.sim.refresh_replays(), 0);
}

#[tokio::test]
async fn revoked_refresh_token_fails_loudly_after_one_attempt() {
    let e = env_with("").await;
    e.conn.create_ticket(&request("01JREVK", None)).await.unwrap();
    e.sim.revoke_all_credentials();
    e.sim.reset_requests();
    let err = e.conn.statuses(&[e.sim.tickets()[0].id.to_string()]).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unauthorized(_)), "{err:?}");
    assert_eq!(e.sim.requests(TOKEN), 1, "one forced re-authentication, then fail");
    assert_check_fails(&e.conn.check().await.unwrap(), "refresh token rejected");
}

#[tokio::test]
async fn check_tells_bad_client_credentials_missing_fields_and_unreachable_apart() {
    let e = env_with("").await;
    let ok = e.conn.check().await.unwrap();
    assert!(ok.ok, "{ok:?}");
    let tokens_used = e.sim.requests(TOKEN);
    assert!(e.conn.check().await.unwrap().ok);
    assert_eq!(e.sim.requests(TOKEN), tokens_used, "a check reuses a valid access token instead of rotating");
    let rt = refresh_token(&e);
    let c = e.sim.config().clone();
    let fresh =
        MemSecrets::with(SECRET, &[("client_id", &c.client_id), ("client_secret", "wrong"), ("refresh_token", &rt)]);
    let bad = connector(&e.sim, &fresh, "");
    assert_check_fails(&bad.check().await.unwrap(), "client id / client secret");
    let missing = MemSecrets::with(SECRET, &[("client_id", &c.client_id), ("client_secret", &c.client_secret)]);
    assert_check_fails(&connector(&e.sim, &missing, "").check().await.unwrap(), "refresh_token");
    let cfg = config("ninjaone", &dead_url().await, SECRET, &opts(), "", "", Some("7"));
    let dead = NinjaOneConnector::new("ninja-dead", &cfg, fresh).unwrap();
    assert_check_fails(&dead.check().await.unwrap(), "unreachable");
    assert_eq!(e.sim.refresh_replays(), 0);
}
