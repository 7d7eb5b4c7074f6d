//! One HTTP layer for every connector: a reqwest (rustls) client per connection with connect and
//! total timeouts, retries with capped exponential backoff and full jitter, `Retry-After`, a
//! per-connection rate limit, error mapping to [`ConnectorError`], and secret redaction.
//!
//! Retry policy: idempotent requests are retried on 5xx (500/502/503/504), 408, 429, timeouts and
//! transport errors. Non-idempotent requests (ticket creation) are retried only where the target
//! cannot have acted: 429 and failures to connect. Anything else is returned to the connector,
//! which searches by correlation key before creating again (see
//! [`crate::connectors::create_with_recovery`]).

mod error;
mod json;
mod redact;
mod token;
mod usage;

pub use error::{ConnectorError, TokenKind, TokenState};
pub use json::{describe as describe_json_error, parse_json, pointer_str, require_str, valid_pointer};
pub use redact::{REDACTED, Redactor};
pub use token::{SecretCache, TokenCache, TokenGrant, TokenSource, fields};
pub use usage::{RateMeter, RateUsage};

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::ConnectionConfig;

/// Timeouts, retries and rate limit of one connection's HTTP client.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Time allowed to open a TCP + TLS connection.
    pub connect_timeout: Duration,
    /// Time allowed for one whole attempt (connect, send, read the body).
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff cap; doubles per retry up to `backoff_max` (full jitter below the cap).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A `Retry-After` longer than this is not waited out: the call fails with `RateLimited`.
    pub max_retry_after: Duration,
    /// Requests per hour (token bucket refill rate).
    pub rate_limit_per_hour: u32,
    /// Requests that may be made back to back before the hourly rate applies.
    pub rate_burst: u32,
    /// Longest wait for the local rate limiter before failing with `RateLimited`.
    pub max_rate_wait: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_retries: 3,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            rate_limit_per_hour: 1500,
            rate_burst: 10,
            max_rate_wait: Duration::from_secs(30),
        }
    }
}

/// Overrides a connection may set under `[connections.<name>.options.http]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpOptions {
    connect_timeout_ms: Option<u64>,
    timeout_ms: Option<u64>,
    max_retries: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    max_retry_after_secs: Option<u64>,
    rate_burst: Option<u32>,
    max_rate_wait_ms: Option<u64>,
}

impl HttpConfig {
    /// Defaults, the connection's `rate_limit_per_hour`, and its `options.http` overrides.
    pub fn from_connection(name: &str, c: &ConnectionConfig) -> Result<Self, ConnectorError> {
        let key = format!("connections.{name}.options.http");
        let opts = match c.options.get("http") {
            None => HttpOptions::default(),
            Some(v) => {
                HttpOptions::deserialize(v.clone()).map_err(|e| ConnectorError::Config(format!("{key}: {e}")))?
            }
        };
        let d = Self::default();
        let ms = |v: Option<u64>, dflt: Duration| v.map(Duration::from_millis).unwrap_or(dflt);
        let cfg = Self {
            connect_timeout: ms(opts.connect_timeout_ms, d.connect_timeout),
            timeout: ms(opts.timeout_ms, d.timeout),
            max_retries: opts.max_retries.unwrap_or(d.max_retries),
            backoff_base: ms(opts.backoff_base_ms, d.backoff_base),
            backoff_max: ms(opts.backoff_max_ms, d.backoff_max),
            max_retry_after: opts.max_retry_after_secs.map(Duration::from_secs).unwrap_or(d.max_retry_after),
            rate_limit_per_hour: c.rate_limit_per_hour,
            rate_burst: opts.rate_burst.unwrap_or(d.rate_burst),
            max_rate_wait: ms(opts.max_rate_wait_ms, d.max_rate_wait),
        };
        if cfg.timeout.is_zero() || cfg.connect_timeout.is_zero() {
            return Err(ConnectorError::Config(format!("{key}: timeouts must be greater than 0")));
        }
        if cfg.rate_limit_per_hour == 0 || cfg.rate_burst == 0 {
            return Err(ConnectorError::Config(format!(
                "{key}.rate_burst / connections.{name}.rate_limit_per_hour: must be at least 1"
            )));
        }
        if cfg.backoff_max < cfg.backoff_base {
            return Err(ConnectorError::Config(format!("{key}.backoff_max_ms: must be >= backoff_base_ms")));
        }
        Ok(cfg)
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

struct Inner {
    name: String,
    client: Client,
    config: HttpConfig,
    limiter: Limiter,
    clock: DefaultClock,
    redactor: Redactor,
    meter: RateMeter,
}

/// A connection's HTTP client. Cheap to clone (shared state).
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("name", &self.inner.name).field("config", &self.inner.config).finish()
    }
}

/// A response that was read completely.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// `METHOD /path?query` with secrets redacted, for messages.
    pub request: String,
    redactor: Redactor,
}

impl HttpResponse {
    /// The body parsed as `T` ([`ConnectorError::Malformed`] without echoing values).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ConnectorError> {
        parse_json(&self.body, &self.request)
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A short, redacted excerpt of the body for error messages.
    pub fn snippet(&self) -> String {
        let text: String = self.text().split_whitespace().collect::<Vec<_>>().join(" ");
        let cut: String = text.chars().take(300).collect();
        self.redactor.redact(&cut)
    }

    /// The error this response's status means (use for non-2xx responses).
    pub fn error(&self) -> ConnectorError {
        let msg = format!("{}: HTTP {}: {}", self.request, self.status.as_u16(), self.snippet());
        match self.status.as_u16() {
            401 => ConnectorError::Unauthorized(msg),
            403 => ConnectorError::Forbidden(msg),
            404 | 410 => ConnectorError::NotFound(msg),
            408 => ConnectorError::Timeout(msg),
            429 => ConnectorError::RateLimited {
                retry_after_secs: self
                    .header("retry-after")
                    .and_then(|v| parse_retry_after(v, Utc::now()))
                    .map(ceil_secs),
            },
            s if s >= 500 => ConnectorError::Server(msg),
            _ => ConnectorError::Rejected(msg),
        }
    }

    /// `Ok(self)` for 2xx, else [`HttpResponse::error`].
    pub fn error_for_status(self) -> Result<Self, ConnectorError> {
        if self.status.is_success() { Ok(self) } else { Err(self.error()) }
    }
}

/// A reqwest client builder with the process-wide TLS crypto provider (rustls on ring) installed.
/// reqwest is compiled without a provider of its own, so every HTTP client of the product is built
/// from here (a test in xtask checks that no other construction site exists).
pub fn client_builder() -> reqwest::ClientBuilder {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Err only when a provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    Client::builder()
}

impl HttpClient {
    /// Builds the client for connection `name`.
    pub fn new(name: &str, config: HttpConfig, redactor: Redactor) -> Result<Self, ConnectorError> {
        let client = client_builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .user_agent(concat!("ticket-bridge/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| ConnectorError::Config(format!("connections.{name}: cannot build HTTP client: {e}")))?;
        let per_hour = NonZeroU32::new(config.rate_limit_per_hour).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.rate_burst).unwrap_or(NonZeroU32::MIN);
        let clock = DefaultClock::default();
        let limiter = RateLimiter::direct_with_clock(Quota::per_hour(per_hour).allow_burst(burst), clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        let meter = RateMeter::new(per_hour.get(), burst.get(), std::time::Instant::now());
        let inner = Inner { name: name.to_string(), client, config, limiter, clock, redactor, meter };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Client for connection `name` configured from its [`ConnectionConfig`].
    pub fn for_connection(name: &str, c: &ConnectionConfig, redactor: Redactor) -> Result<Self, ConnectorError> {
        Self::new(name, HttpConfig::from_connection(name, c)?, redactor)
    }

    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    pub fn redactor(&self) -> &Redactor {
        &self.inner.redactor
    }

    /// What this connection's rate limiter let through and has left now, in this process.
    pub fn rate_usage(&self) -> RateUsage {
        self.inner.meter.snapshot(std::time::Instant::now())
    }

    /// `method url` with a bearer token, query pairs and an optional JSON body; see [`HttpClient::send`].
    pub async fn send_bearer<Q: serde::Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &str,
        query: &Q,
        body: Option<&serde_json::Value>,
        idempotent: bool,
    ) -> Result<HttpResponse, ConnectorError> {
        self.send(
            |c| {
                let rb = c.request(method.clone(), url).bearer_auth(token).query(query);
                match body {
                    Some(b) => rb.json(b),
                    None => rb,
                }
            },
            idempotent,
        )
        .await
    }

    /// Sends the request `build` makes (called once per attempt) and returns a 2xx response;
    /// any other status becomes the matching [`ConnectorError`].
    pub async fn send<F>(&self, build: F, idempotent: bool) -> Result<HttpResponse, ConnectorError>
    where
        F: Fn(&Client) -> RequestBuilder,
    {
        self.send_any(build, idempotent).await?.error_for_status()
    }

    /// Like [`HttpClient::send`] but returns non-2xx responses that are not retried (4xx other
    /// than 408/429) so the connector can read target-specific error bodies. 5xx, 408 and 429
    /// still end as errors once retries are used up.
    pub async fn send_any<F>(&self, build: F, idempotent: bool) -> Result<HttpResponse, ConnectorError>
    where
        F: Fn(&Client) -> RequestBuilder,
    {
        let cfg = &self.inner.config;
        let mut attempt: u32 = 0;
        loop {
            self.acquire().await?;
            let req = build(&self.inner.client).build().map_err(|e| {
                ConnectorError::Config(self.inner.redactor.redact(&format!("invalid request: {}", error_chain(&e))))
            })?;
            let request = format!("{} {}", req.method(), self.redact_url(req.url()));
            tracing::debug!(connection = %self.inner.name, request = %request, attempt, "http request");
            let (err, wait) = match self.execute(req, &request).await {
                Ok(resp) => {
                    let code = resp.status.as_u16();
                    let retry_after = resp.header("retry-after").and_then(|v| parse_retry_after(v, Utc::now()));
                    if code == 429 {
                        let err = resp.error();
                        if retry_after.is_some_and(|ra| ra > cfg.max_retry_after) {
                            return Err(err);
                        }
                        (err, retry_after)
                    } else if matches!(code, 408 | 500 | 502 | 503 | 504) {
                        if !idempotent {
                            return Err(resp.error());
                        }
                        (resp.error(), retry_after.filter(|ra| *ra <= cfg.max_retry_after))
                    } else {
                        tracing::debug!(connection = %self.inner.name, request = %request, status = code, "http response");
                        return Ok(resp);
                    }
                }
                Err((err, connect_phase)) => {
                    let retryable = !matches!(err, ConnectorError::Tls(_)) && (idempotent || connect_phase);
                    if !retryable {
                        return Err(err);
                    }
                    (err, None)
                }
            };
            if attempt >= cfg.max_retries {
                tracing::warn!(connection = %self.inner.name, request = %request, attempts = attempt + 1, error = %err, "giving up");
                return Err(err);
            }
            let delay = wait.unwrap_or_else(|| self.backoff_delay(attempt));
            tracing::warn!(
                connection = %self.inner.name, request = %request, attempt, delay_ms = delay.as_millis() as u64,
                error = %err, "retrying request"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Full-jitter backoff before retry number `attempt` (0-based): uniform in
    /// `[0, min(backoff_max, backoff_base * 2^attempt)]`.
    pub fn backoff_delay(&self, attempt: u32) -> Duration {
        let cfg = &self.inner.config;
        let cap =
            cfg.backoff_base.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX)).min(cfg.backoff_max);
        let ms = cap.as_millis() as u64;
        Duration::from_millis(if ms == 0 { 0 } else { rand::rng().random_range(0..=ms) })
    }

    /// Sleeps for [`HttpClient::backoff_delay`].
    pub async fn backoff(&self, attempt: u32) {
        tokio::time::sleep(self.backoff_delay(attempt)).await;
    }

    /// Waits for the connection's rate limiter (at most `max_rate_wait`).
    pub async fn acquire(&self) -> Result<(), ConnectorError> {
        loop {
            match self.inner.limiter.check() {
                Ok(state) => {
                    self.inner.meter.allowed(std::time::Instant::now(), state.remaining_burst_capacity());
                    return Ok(());
                }
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.inner.clock.now());
                    if wait > self.inner.config.max_rate_wait {
                        self.inner.meter.refused(std::time::Instant::now());
                        tracing::warn!(connection = %self.inner.name, wait_ms = wait.as_millis() as u64, "local rate limit reached");
                        return Err(ConnectorError::RateLimited { retry_after_secs: Some(ceil_secs(wait)) });
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Runs one attempt and reads the whole body. Errors carry whether they happened while
    /// connecting (the target cannot have seen the request).
    async fn execute(&self, req: reqwest::Request, request: &str) -> Result<HttpResponse, (ConnectorError, bool)> {
        let resp =
            self.inner.client.execute(req).await.map_err(|e| (self.map_transport(&e, request), e.is_connect()))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| (self.map_transport(&e, request), false))?;
        Ok(HttpResponse {
            status,
            headers,
            body: body.to_vec(),
            request: request.to_string(),
            redactor: self.inner.redactor.clone(),
        })
    }

    fn map_transport(&self, e: &reqwest::Error, request: &str) -> ConnectorError {
        let chain = self.inner.redactor.redact(&error_chain(e));
        if e.is_timeout() {
            return ConnectorError::Timeout(format!(
                "{request}: no complete response within {} ms",
                self.inner.config.timeout.as_millis()
            ));
        }
        let lower = chain.to_ascii_lowercase();
        let tls = [
            "certificate",
            "tls",
            "handshake",
            "invalidcontenttype",
            "corrupt message",
            "unknownissuer",
            "fatal alert",
        ]
        .iter()
        .any(|w| lower.contains(w));
        if tls {
            ConnectorError::Tls(format!("{request}: {chain}"))
        } else {
            ConnectorError::Unreachable(format!("{request}: {chain}"))
        }
    }

    /// Path and query of `url` with credentials redacted (host omitted: it is in the config).
    fn redact_url(&self, url: &reqwest::Url) -> String {
        let mut s = url.path().to_string();
        if let Some(q) = url.query() {
            s.push('?');
            s.push_str(q);
        }
        self.inner.redactor.redact(&s)
    }
}

/// The error and its sources, without reqwest's top-level "for url (…)" text.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    if parts.is_empty() {
        // Only the top level: drop any URL reqwest put there.
        let top = e.to_string();
        return top.split(" for url (").next().unwrap_or(&top).to_string();
    }
    parts.join(": ")
}

/// `Retry-After` as delay-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let when = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

/// Whole seconds, rounded up.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests;
