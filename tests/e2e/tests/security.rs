//! Security invariants end to end: callback SSRF (literal and DNS-resolved private targets), and
//! API keys that exist only as hashes (never in the config, the store or the logs).

mod support;

use bridge::config::{ApiKey, KeyScope};
use bridge::domain::Grouping;
use bridge::engine::notify::Notifier;
use chrono::Utc;
use support::{Backend, Harness, access_task};

/// Literal private, loopback, link-local and metadata addresses, and non-https schemes.
const BLOCKED_LITERALS: &[&str] = &[
    "https://localhost/hook",
    "https://LOCALHOST:8443/hook",
    "https://api.localhost/hook",
    "https://127.0.0.1/hook",
    "https://127.1/hook",
    "https://2130706433/hook",
    "https://0x7f000001/hook",
    "https://0.0.0.0/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/hook",
    "https://10.255.255.254/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.1/hook",
    "https://100.64.0.1/hook",
    "https://[::1]/hook",
    "https://[::]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:169.254.169.254]/hook",
    "https://[fe80::1]/hook",
    "https://[fd00::1]/hook",
    "http://iga.example.com/hook",
    "ftp://iga.example.com/hook",
    "file:///etc/passwd",
];

#[tokio::test]
async fn callback_urls_to_private_literals_are_refused_at_intake_syntax() {
    let n = Notifier::new(false);
    for url in BLOCKED_LITERALS {
        assert!(n.check_url_syntax(url).is_err(), "{url} must be refused");
    }
    assert!(n.check_url_syntax("https://iga.example.com/hook").is_ok());
    assert!(n.check_url_syntax("https://8.8.8.8/hook").is_ok());
}

/// Names that resolve to loopback on this machine without touching /etc/hosts: `localhost.`
/// (the trailing dot slips past a textual `localhost` check) and every name /etc/hosts maps to a
/// loopback address.
fn loopback_names() -> Vec<String> {
    let mut names = vec!["localhost.".to_string()];
    if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
        for line in hosts.lines() {
            let mut parts = line.split('#').next().unwrap_or("").split_whitespace();
            let Some(ip) = parts.next().and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) else { continue };
            if ip.is_loopback() {
                names.extend(parts.filter(|n| !n.eq_ignore_ascii_case("localhost")).map(str::to_string));
            }
        }
    }
    names
}

#[tokio::test]
async fn callback_hosts_resolving_to_loopback_are_refused_before_connecting() {
    let n = Notifier::new(false);
    let mut checked = 0;
    for name in loopback_names() {
        // Only names that really resolve to loopback here prove anything.
        let Ok(addrs) = tokio::net::lookup_host((name.as_str(), 443)).await else { continue };
        if !addrs.into_iter().any(|a| a.ip().is_loopback()) {
            continue;
        }
        checked += 1;
        let raw = format!("https://{name}/hook");
        // Syntax alone cannot know where a name points; resolution must catch it.
        let Ok(url) = n.check_url_syntax(&raw) else { continue };
        let err = n.resolve_target(&url).await.expect_err(&format!("{raw} resolves to loopback and must be refused"));
        assert!(err.contains("private"), "{raw}: {err}");
        // And the delivery path refuses it too, without a request being made.
        let err = n.deliver(&raw, b"k", b"{}", Utc::now()).await.expect_err(&raw);
        assert!(err.contains("private"), "{raw}: {err}");
    }
    assert!(checked >= 1, "no host name resolving to loopback found (localhost. or /etc/hosts)");
}

#[tokio::test]
async fn private_callback_is_never_contacted_even_when_it_listens() {
    // A real receiver on loopback, addressed by a name that resolves to it.
    let (url, received) = support::callback_receiver().await;
    let port = url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().to_string();
    let n = Notifier::new(false);
    for host in ["127.0.0.1", "localhost.", "[::ffff:127.0.0.1]"] {
        for scheme in ["http", "https"] {
            let target = format!("{scheme}://{host}:{port}/hook");
            assert!(n.deliver(&target, b"k", b"{}", Utc::now()).await.is_err(), "{target}");
        }
    }
    assert!(received.lock().unwrap().is_empty(), "a private callback target was contacted");
    // Control: with private callbacks allowed, the same receiver is reached.
    Notifier::new(true).deliver(&url, b"k", b"{}", Utc::now()).await.unwrap();
    assert_eq!(received.lock().unwrap().len(), 1);
}

async fn intake_refuses_private_callbacks(backend: Backend) {
    let h = Harness::for_target(sandbox::targets::Target::Sandbox, backend, Grouping::None, |c| {
        c.settings.allow_private_callbacks = false;
    })
    .await;
    for url in BLOCKED_LITERALS {
        let mut body = access_task("SSRF-1");
        body["callback_url"] = serde_json::json!(url);
        let (s, e) = h.submit(body).await;
        assert!((400..500).contains(&s), "{url}: {s} {e}");
        assert_eq!(e["error"]["field"], "callback_url", "{url}: {e}");
    }
    let (_, list) = h.call("GET", "/v1/tasks", None).await;
    assert!(list["items"].as_array().unwrap().is_empty(), "a refused submission was stored");
}

/// The raw API key appears nowhere: not in the config the engine runs with, not in anything the
/// store holds after authenticated calls, not in the captured logs.
async fn api_keys_exist_only_as_hashes(backend: Backend) {
    let raw_key = format!("tbk_{}", ulid::Ulid::new());
    let hash = bridge::engine::api::hash_key(&raw_key);
    let h = Harness::for_target(sandbox::targets::Target::Sandbox, backend, Grouping::None, |c| {
        c.auth.api_keys.push(ApiKey {
            name: "iga".into(),
            sha256: hash.clone(),
            scope: KeyScope::Admin,
            sources: vec![],
        });
    })
    .await;
    let config_text = toml::to_string(h.engine.config.as_ref()).unwrap();
    assert!(!config_text.contains(&raw_key));
    assert!(config_text.contains(&hash));
    let (s, created) = h.call_as(Some(&raw_key), "POST", "/v1/tasks", Some(access_task("KEY-1"))).await;
    assert_eq!(s, 201, "{created}");
    let (s, _) = h.call_as(Some("tbk_wrong"), "POST", "/v1/tasks", Some(access_task("KEY-2"))).await;
    assert_eq!(s, 401);
    // A key differing only in the last character is refused (full comparison, not a prefix).
    let mut near = raw_key.clone();
    near.pop();
    near.push('!');
    assert_eq!(h.call_as(Some(&near), "GET", "/v1/tasks", None).await.0, 401);
    let id = created["id"].as_str().unwrap();
    let (s, view) = h.call_as(Some(&raw_key), "GET", &format!("/v1/tasks/{id}"), None).await;
    assert_eq!(s, 200);
    assert!(!view.to_string().contains(&raw_key));
    h.create(id).await;
    let stored = serde_json::to_string(&h.task(id).await).unwrap();
    assert!(!stored.contains(&raw_key), "stored task carries the raw API key");
    for t in h.sim().tickets() {
        assert!(!serde_json::to_string(&t.request).unwrap().contains(&raw_key), "the API key reached the ticket");
    }
}

both_stores!(intake_refuses_private_callbacks, api_keys_exist_only_as_hashes);
