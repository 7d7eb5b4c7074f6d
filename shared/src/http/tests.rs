use super::TokenKind;
use super::*;
use crate::secrets::{Secret, SecretsError};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One scripted answer of the test server.
#[derive(Clone)]
enum Reply {
    Status(u16, &'static str, Vec<(&'static str, String)>),
    Hang(Duration),
}

fn ok(body: &'static str) -> Reply {
    Reply::Status(200, body, vec![])
}

/// A raw HTTP/1.1 server answering connections from a script (then 200 `{}`), recording
/// request heads.
struct Scripted {
    replies: StdMutex<VecDeque<Reply>>,
    hits: AtomicUsize,
    heads: StdMutex<Vec<String>>,
}

async fn scripted(replies: Vec<Reply>) -> (String, Arc<Scripted>) {
    let s = Arc::new(Scripted {
        replies: StdMutex::new(replies.into()),
        hits: AtomicUsize::new(0),
        heads: StdMutex::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = s.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let srv = srv.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if buf.first() == Some(&0x16) {
                        // A TLS ClientHello: answer like a plain HTTP server does.
                        let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
                        return;
                    }
                }
                srv.hits.fetch_add(1, Ordering::SeqCst);
                srv.heads.lock().unwrap().push(String::from_utf8_lossy(&buf).into_owned());
                let reply = srv.replies.lock().unwrap().pop_front().unwrap_or(ok("{}"));
                let (code, body, headers) = match reply {
                    Reply::Hang(d) => {
                        tokio::time::sleep(d).await;
                        (504, "{}", vec![])
                    }
                    Reply::Status(c, b, h) => (c, b, h),
                };
                let mut resp = format!(
                    "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    resp.push_str(&format!("{k}: {v}\r\n"));
                }
                resp.push_str("\r\n");
                resp.push_str(body);
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), s)
}

fn fast() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_millis(500),
        timeout: Duration::from_millis(300),
        max_retries: 3,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(5),
        rate_limit_per_hour: 1_000_000,
        rate_burst: 1000,
        max_rate_wait: Duration::from_secs(1),
    }
}

fn client(cfg: HttpConfig) -> HttpClient {
    HttpClient::new("test", cfg, Redactor::new()).unwrap()
}

#[tokio::test]
async fn idempotent_requests_retry_5xx_then_succeed() {
    let (url, srv) =
        scripted(vec![Reply::Status(503, "{}", vec![]), Reply::Status(502, "{}", vec![]), ok(r#"{"a":1}"#)]).await;
    let c = client(fast());
    let resp = c.send(|c| c.get(format!("{url}/x")), true).await.unwrap();
    assert_eq!(resp.json::<serde_json::Value>().unwrap()["a"], 1);
    assert_eq!(srv.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn non_idempotent_requests_are_not_retried_on_5xx() {
    let (url, srv) = scripted(vec![Reply::Status(500, r#"{"e":"boom"}"#, vec![])]).await;
    let err = client(fast()).send(|c| c.post(format!("{url}/create")), false).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Server(ref m) if m.contains("POST /create") && m.contains("500")), "{err}");
    assert_eq!(srv.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retries_give_up_after_max() {
    let (url, srv) = scripted(vec![Reply::Status(503, "{}", vec![]); 10]).await;
    let err = client(HttpConfig { max_retries: 2, ..fast() }).send(|c| c.get(&url), true).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Server(_)), "{err}");
    assert_eq!(srv.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retry_after_is_honoured_even_for_creates() {
    let ra = vec![("retry-after", "1".to_string())];
    let (url, srv) = scripted(vec![Reply::Status(429, "{}", ra), ok("{}")]).await;
    let started = Instant::now();
    client(fast()).send(|c| c.post(&url), false).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(srv.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_after_beyond_cap_fails_fast() {
    let ra = vec![("retry-after", "120".to_string())];
    let (url, srv) = scripted(vec![Reply::Status(429, "{}", ra)]).await;
    let started = Instant::now();
    let err = client(fast()).send(|c| c.get(&url), true).await.unwrap_err();
    assert_eq!(err, ConnectorError::RateLimited { retry_after_secs: Some(120) });
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(srv.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn hang_past_timeout_is_a_timeout_and_retried_when_idempotent() {
    let (url, srv) = scripted(vec![Reply::Hang(Duration::from_secs(2)); 2]).await;
    let err = client(HttpConfig { max_retries: 1, ..fast() }).send(|c| c.get(&url), true).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Timeout(_)), "{err}");
    assert_eq!(srv.hits.load(Ordering::SeqCst), 2);
    let (url, srv) = scripted(vec![Reply::Hang(Duration::from_secs(2))]).await;
    let err = client(fast()).send(|c| c.post(&url), false).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Timeout(_)), "{err}");
    assert_eq!(srv.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refused_connection_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = client(fast()).send(|c| c.post(format!("http://127.0.0.1:{port}/x")), false).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unreachable(_)), "{err}");
}

#[tokio::test]
async fn tls_to_a_plain_http_server_is_a_tls_error() {
    let (url, _srv) = scripted(vec![]).await;
    let https = url.replace("http://", "https://");
    let err = client(HttpConfig { max_retries: 0, ..fast() }).send(|c| c.get(&https), true).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Tls(_)), "{err}");
}

#[tokio::test]
async fn status_codes_map_to_errors() {
    let cases = [(401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (400, "Rejected"), (422, "Rejected")];
    for (code, want) in cases {
        let (url, _) = scripted(vec![Reply::Status(code, r#"{"message":"no"}"#, vec![])]).await;
        let err = client(fast()).send(|c| c.get(&url), true).await.unwrap_err();
        assert!(format!("{err:?}").starts_with(want), "{code}: {err:?}");
    }
    let (url, _) = scripted(vec![Reply::Status(409, "{}", vec![])]).await;
    let resp = client(fast()).send_any(|c| c.get(&url), true).await.unwrap();
    assert_eq!(resp.status.as_u16(), 409);
}

#[tokio::test]
async fn errors_and_urls_are_redacted() {
    let (url, _) =
        scripted(vec![Reply::Status(401, r#"{"error":"bad token tok-SECRET-1","password":"pw-2"}"#, vec![])]).await;
    let redactor = Redactor::new();
    redactor.add("tok-SECRET-1");
    let c = HttpClient::new("t", fast(), redactor).unwrap();
    let err = c
        .send(
            |c| c.get(format!("{url}/Ticket/1?SessionID=sess-77&x=1")).header("Authorization", "token tok-SECRET-1"),
            true,
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConnectorError::Unauthorized(_)));
    for s in ["tok-SECRET-1", "sess-77", "pw-2"] {
        assert!(!msg.contains(s), "{msg}");
    }
    assert!(msg.contains("/Ticket/1?SessionID=[REDACTED]&x=1"), "{msg}");
}

#[tokio::test]
async fn local_rate_limit_holds_requests_back() {
    let (url, srv) = scripted(vec![]).await;
    let cfg =
        HttpConfig { rate_limit_per_hour: 3600, rate_burst: 2, max_rate_wait: Duration::from_millis(50), ..fast() };
    let c = client(cfg);
    c.send(|c| c.get(&url), true).await.unwrap();
    c.send(|c| c.get(&url), true).await.unwrap();
    // The third would have to wait ~1 s, longer than allowed: it fails locally.
    let err = c.send(|c| c.get(&url), true).await.unwrap_err();
    assert_eq!(err, ConnectorError::RateLimited { retry_after_secs: Some(1) });
    assert_eq!(srv.hits.load(Ordering::SeqCst), 2);
    // With a longer allowed wait it waits for the bucket to refill.
    let c = client(HttpConfig { rate_limit_per_hour: 36_000, rate_burst: 1, ..fast() });
    let started = Instant::now();
    for _ in 0..3 {
        c.send(|c| c.get(&url), true).await.unwrap();
    }
    assert!(started.elapsed() >= Duration::from_millis(190), "{:?}", started.elapsed());
}

#[test]
fn retry_after_parsing() {
    let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().with_timezone(&Utc);
    assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
}

#[test]
fn backoff_is_capped_full_jitter() {
    let c = client(HttpConfig {
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(800),
        ..fast()
    });
    let mut max_seen = Duration::ZERO;
    for _ in 0..200 {
        assert!(c.backoff_delay(0) <= Duration::from_millis(100));
        let d = c.backoff_delay(10);
        assert!(d <= Duration::from_millis(800));
        max_seen = max_seen.max(d);
    }
    // Full jitter spreads over the range (not a constant).
    assert!(max_seen > Duration::from_millis(400), "{max_seen:?}");
}

#[test]
fn options_http_overrides_and_names_bad_keys() {
    let mut conn: ConnectionConfig = toml::from_str(
        "kind = \"rt\"\nbase_url = \"http://127.0.0.1:1\"\nsecret = \"s\"\nrate_limit_per_hour = 60\n[options.http]\ntimeout_ms = 250\nmax_retries = 1\n",
    )
    .unwrap();
    let cfg = HttpConfig::from_connection("c1", &conn).unwrap();
    assert_eq!(cfg.timeout, Duration::from_millis(250));
    assert_eq!(cfg.max_retries, 1);
    assert_eq!(cfg.rate_limit_per_hour, 60);
    conn.options = toml::from_str("[http]\ntimeout = 5\n").unwrap();
    let err = HttpConfig::from_connection("c1", &conn).unwrap_err();
    assert!(err.to_string().contains("connections.c1.options.http") && err.to_string().contains("timeout"), "{err}");
}

// ---- token cache ----

#[derive(Default)]
struct MemSecrets {
    map: StdMutex<HashMap<String, Secret>>,
    puts: AtomicUsize,
    fail_puts: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl crate::secrets::Secrets for MemSecrets {
    async fn get(&self, name: &str) -> Result<Secret, SecretsError> {
        self.map.lock().unwrap().get(name).cloned().ok_or_else(|| SecretsError::NotFound(name.into()))
    }
    async fn put(&self, name: &str, value: &Secret) -> Result<(), SecretsError> {
        if self.fail_puts.load(Ordering::SeqCst) {
            return Err(SecretsError::Backend { name: name.into(), reason: "down".into() });
        }
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.map.lock().unwrap().insert(name.into(), value.clone());
        Ok(())
    }
}

/// Issues `tok-N` tokens with a rotating refresh token `rt-N`; rejects a spent refresh token.
#[derive(Default)]
struct CountingSource {
    n: AtomicUsize,
    spent: StdMutex<Vec<String>>,
}

#[async_trait::async_trait]
impl TokenSource for CountingSource {
    async fn fetch(&self, secret: &Secret) -> Result<TokenGrant, ConnectorError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(rt) = secret.get(fields::REFRESH_TOKEN) {
            let mut spent = self.spent.lock().unwrap();
            if spent.iter().any(|s| s == rt) {
                return Err(ConnectorError::Unauthorized("refresh token reused".into()));
            }
            spent.push(rt.to_string());
        }
        let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(TokenGrant {
            access_token: format!("tok-{n}"),
            expires_at: Some(Utc::now() + chrono::Duration::hours(1)),
            refresh_token: Some(format!("rt-{n}")),
            ..Default::default()
        })
    }
}

fn cache(secrets: Arc<MemSecrets>, source: Arc<CountingSource>) -> TokenCache {
    TokenCache::new(secrets, "conn", source, Redactor::new(), TokenKind::Renewable)
}

fn mem_with(fields: &[(&str, &str)]) -> Arc<MemSecrets> {
    let m = MemSecrets::default();
    let s: Secret = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    m.map.lock().unwrap().insert("conn".into(), s);
    Arc::new(m)
}

#[tokio::test]
async fn concurrent_callers_share_one_login_and_it_is_stored() {
    let secrets = mem_with(&[("api_key", "k-1")]);
    let source = Arc::new(CountingSource::default());
    let tc = Arc::new(cache(secrets.clone(), source.clone()));
    let mut handles = Vec::new();
    for _ in 0..8 {
        let tc = tc.clone();
        handles.push(tokio::spawn(async move { tc.token().await.unwrap() }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), "tok-1");
    }
    assert_eq!(tc.fetch_count(), 1);
    let stored = secrets.map.lock().unwrap()["conn"].clone();
    assert_eq!(stored.get("access_token"), Some("tok-1"));
    assert_eq!(stored.get("refresh_token"), Some("rt-1"));
    assert_eq!(stored.get("api_key"), Some("k-1"));
    let state = tc.state().await.unwrap();
    assert_eq!(state.kind, TokenKind::Renewable);
    assert!(state.expires_at.unwrap() > Utc::now() + chrono::Duration::minutes(59));
    // A second process finds the stored token and does not log in again.
    let other = cache(secrets.clone(), source.clone());
    assert_eq!(other.token().await.unwrap(), "tok-1");
    assert_eq!(other.fetch_count(), 0);
}

#[tokio::test]
async fn expiring_stored_token_is_renewed_with_rotation() {
    let soon = (Utc::now() + chrono::Duration::seconds(10)).to_rfc3339();
    let secrets = mem_with(&[("access_token", "old"), ("access_token_expires_at", &soon), ("refresh_token", "rt-0")]);
    let source = Arc::new(CountingSource::default());
    let tc = cache(secrets.clone(), source.clone());
    assert_eq!(tc.token().await.unwrap(), "tok-1");
    assert_eq!(secrets.map.lock().unwrap()["conn"].get("refresh_token"), Some("rt-1"));
    // Forced refresh uses the rotated refresh token, never the spent one.
    tc.refresh().await.unwrap();
    assert_eq!(tc.token().await.unwrap(), "tok-2");
    assert_eq!(*source.spent.lock().unwrap(), vec!["rt-0".to_string(), "rt-1".to_string()]);
}

#[tokio::test]
async fn unauthorized_forces_exactly_one_reauth() {
    let secrets = mem_with(&[("api_key", "k")]);
    let source = Arc::new(CountingSource::default());
    let tc = cache(secrets, source);
    tc.token().await.unwrap();
    let calls = AtomicUsize::new(0);
    // Rejects tok-1, accepts anything else.
    let out = tc
        .with_token(|t| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { if t == "tok-1" { Err(ConnectorError::Unauthorized("401".into())) } else { Ok(t) } }
        })
        .await
        .unwrap();
    assert_eq!(out, "tok-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Always rejected: one re-auth, then the error.
    let calls = AtomicUsize::new(0);
    let err = tc
        .with_token(|_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(ConnectorError::Unauthorized("401".into())) }
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Unauthorized(_)));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(tc.fetch_count(), 3);
}

#[tokio::test]
async fn failed_store_keeps_the_new_token_in_memory() {
    let secrets = mem_with(&[("refresh_token", "rt-0")]);
    secrets.fail_puts.store(true, Ordering::SeqCst);
    let source = Arc::new(CountingSource::default());
    let tc = cache(secrets.clone(), source.clone());
    assert_eq!(tc.token().await.unwrap(), "tok-1");
    // The refresher reports the failure but the rotated refresh token is not lost.
    let err = tc.refresh().await.unwrap_err();
    assert!(matches!(err, ConnectorError::Secrets(_)), "{err}");
    secrets.fail_puts.store(false, Ordering::SeqCst);
    tc.refresh().await.unwrap();
    assert_eq!(secrets.map.lock().unwrap()["conn"].get("refresh_token"), Some("rt-3"));
}

#[tokio::test]
async fn secret_cache_retries_only_when_the_secret_changed() {
    let secrets = mem_with(&[("token", "a")]);
    let sc = SecretCache::new(secrets.clone(), "conn", Redactor::new());
    let calls = AtomicUsize::new(0);
    let op = |s: Secret| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { if s.get("token") == Some("b") { Ok(()) } else { Err(ConnectorError::Unauthorized("no".into())) } }
    };
    assert!(sc.with_secret(op).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    secrets.map.lock().unwrap().insert("conn".into(), [("token".to_string(), "b".to_string())].into_iter().collect());
    sc.with_secret(op).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
