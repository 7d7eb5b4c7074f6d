//! Completion publishing: signed webhook callbacks (SSRF-guarded) and bridge events.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// An event other systems can subscribe to (EventBridge in AWS, the log locally).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BridgeEvent {
    /// EventBridge `detail-type`, e.g. "TaskCompleted", "TokenExpiring".
    pub detail_type: String,
    pub detail: serde_json::Value,
}

/// Where bridge events go.
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn publish(&self, event: &BridgeEvent) -> Result<(), String>;
}

/// Writes events to the log (local runner, tests).
#[derive(Debug, Default)]
pub struct LogEvents;

#[async_trait]
impl EventSink for LogEvents {
    async fn publish(&self, event: &BridgeEvent) -> Result<(), String> {
        tracing::info!(detail_type = %event.detail_type, detail = %event.detail, "bridge event");
        Ok(())
    }
}

/// Computes `v1=<hex hmac-sha256 of "<timestamp>.<body>">`, the signature scheme of the API.
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature in constant time; `window_secs` bounds the timestamp's age (replays).
pub fn verify(
    key: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: DateTime<Utc>,
    window_secs: i64,
) -> Result<(), &'static str> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| "X-Bridge-Timestamp is not unix seconds")?;
    if (now.timestamp() - ts).abs() > window_secs {
        return Err("X-Bridge-Timestamp is outside the allowed window");
    }
    let expected = sign(key, ts, body);
    use subtle::ConstantTimeEq;
    if expected.as_bytes().ct_eq(signature.trim().as_bytes()).into() {
        Ok(())
    } else {
        Err("X-Bridge-Signature does not match")
    }
}

/// Whether an address is one callbacks must not reach unless private targets are allowed.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // CGNAT 100.64/10
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24
                || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 may reach private v4
                || s[0] == 0x2001 && s[1] == 0x0db8 // documentation
        }
    }
}

/// Sends completion callbacks and events.
#[derive(Debug, Clone)]
pub struct Notifier {
    allow_private: bool,
    /// Delays between callback attempts (the first attempt is immediate).
    pub retry_delays: Vec<Duration>,
    pub timeout: Duration,
}

impl Notifier {
    pub fn new(allow_private: bool) -> Self {
        Self {
            allow_private,
            retry_delays: vec![Duration::from_millis(500), Duration::from_secs(2), Duration::from_secs(5)],
            timeout: Duration::from_secs(10),
        }
    }

    /// A copy that makes one attempt with a short timeout (for requests a caller is waiting on).
    pub fn quick(&self) -> Self {
        Self { allow_private: self.allow_private, retry_delays: Vec::new(), timeout: Duration::from_secs(5) }
    }

    /// Syntax-level check at intake: https (http only when private targets are allowed) and no
    /// literal private address.
    pub fn check_url_syntax(&self, raw: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            _ => return Err("must be an https:// URL".into()),
        }
        let host = url.host().ok_or("must have a host")?;
        if !self.allow_private {
            let literal = match host {
                url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
                url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
                url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") => {
                    return Err("must not point at localhost".into());
                }
                url::Host::Domain(_) => None,
            };
            if literal.is_some_and(is_private) {
                return Err("must not point at a private, loopback or link-local address".into());
            }
        }
        Ok(url)
    }

    /// Resolves the callback host and refuses private targets; returns the address to pin.
    pub async fn resolve_target(&self, url: &url::Url) -> Result<Option<(String, SocketAddr)>, String> {
        let host = url.host_str().ok_or("callback URL has no host")?.trim_matches(|c| c == '[' || c == ']').to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve callback host: {e}"))?
            .collect();
        let first = *addrs.first().ok_or("callback host resolves to no address")?;
        if !self.allow_private && addrs.iter().any(|a| is_private(a.ip())) {
            return Err("callback host resolves to a private, loopback or link-local address".into());
        }
        Ok(Some((host, first)))
    }

    /// POSTs a signed body to `url` under a fresh delivery id, retrying non-2xx answers with backoff
    /// (callers outside the outbox; the outbox uses [`Notifier::deliver_as`] with the entry's id).
    pub async fn deliver(&self, url: &str, key: &[u8], body: &[u8], _now: DateTime<Utc>) -> Result<(), String> {
        self.deliver_as(url, key, body, &ulid::Ulid::new().to_string()).await.map_err(|e| e.message)
    }

    /// POSTs a signed body to `url` with the stable `delivery` id in `X-Bridge-Delivery`, retrying
    /// non-2xx answers along `retry_delays`. A target the URL guard refuses is a permanent error.
    pub async fn deliver_as(&self, url: &str, key: &[u8], body: &[u8], delivery: &str) -> Result<(), CallbackError> {
        let permanent = |message: String| CallbackError { message, permanent: true };
        let parsed = self.check_url_syntax(url).map_err(permanent)?;
        let mut builder = crate::http::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(5));
        match self.resolve_target(&parsed).await {
            Ok(Some((host, addr))) => builder = builder.resolve(&host, addr),
            Ok(None) => {}
            // Resolution failures may pass; private targets will not.
            Err(m) => return Err(CallbackError { permanent: m.contains("private"), message: m }),
        }
        let client =
            builder.build().map_err(|e| CallbackError { message: format!("http client: {e}"), permanent: false })?;
        let mut last = String::new();
        for delay in std::iter::once(Duration::ZERO).chain(self.retry_delays.iter().copied()) {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            // Signed with the wall clock at sending time: receivers check its age.
            let ts = Utc::now().timestamp();
            let res = client
                .post(parsed.clone())
                .header("content-type", "application/json")
                .header("x-bridge-timestamp", ts.to_string())
                .header("x-bridge-signature", sign(key, ts, body))
                .header("x-bridge-delivery", delivery)
                .body(body.to_vec())
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("callback answered HTTP {}", r.status().as_u16()),
                Err(e) => last = format!("callback request failed: {}", e.without_url()),
            }
        }
        Err(CallbackError { message: last, permanent: false })
    }
}

/// Why a callback was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackError {
    pub message: String,
    /// Retrying cannot help (the URL is refused by the guard); the entry is dead-lettered at once.
    pub permanent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering_and_replays() {
        let now = Utc::now();
        let ts = now.timestamp();
        let sig = sign(b"k", ts, b"{}");
        assert!(sig.starts_with("v1=") && sig.len() == 67);
        assert!(verify(b"k", &ts.to_string(), b"{}", &sig, now, 300).is_ok());
        assert!(verify(b"k", &ts.to_string(), b"{ }", &sig, now, 300).is_err());
        assert!(verify(b"other", &ts.to_string(), b"{}", &sig, now, 300).is_err());
        let old = ts - 301;
        assert!(verify(b"k", &old.to_string(), b"{}", &sign(b"k", old, b"{}"), now, 300).is_err());
    }

    #[test]
    fn private_addresses_are_recognized() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn callback_url_syntax_guard() {
        let n = Notifier::new(false);
        assert!(n.check_url_syntax("https://iga.example.com/hook").is_ok());
        for bad in [
            "http://iga.example.com/",
            "https://127.0.0.1/x",
            "https://[::1]/x",
            "https://169.254.169.254/latest",
            "https://localhost/x",
            "https://10.0.0.1/",
        ] {
            assert!(n.check_url_syntax(bad).is_err(), "{bad}");
        }
        assert!(Notifier::new(true).check_url_syntax("http://127.0.0.1:9/x").is_ok());
    }

    #[tokio::test]
    async fn dns_names_resolving_to_loopback_are_refused() {
        let n = Notifier::new(false);
        let url = url::Url::parse("https://localhost.:8443/x").unwrap();
        assert!(n.resolve_target(&url).await.is_err());
    }
}
