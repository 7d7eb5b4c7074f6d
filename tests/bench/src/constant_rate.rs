//! Constant-rate (open-loop, wrk2-style) load for the intake benchmark: request `i` is due at
//! `start + i / rate` whatever happened to the earlier ones. Each request's latency is kept twice:
//! *plain*, from when it was actually sent, and *corrected* for coordinated omission, from when it
//! was due, so time spent queued behind a slow answer counts against the server.

use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

/// Latencies of one constant-rate run.
pub struct RateResult {
    /// Requests per second the schedule asked for.
    pub target_rps: f64,
    /// Responses per second actually completed over the run.
    pub achieved_rps: f64,
    pub requests: u64,
    pub non_2xx: u64,
    pub errors: u64,
    /// From the actual send to the full response.
    pub plain: Percentiles,
    /// From the scheduled send time to the full response.
    pub corrected: Percentiles,
}

/// Latency percentiles in milliseconds (nearest rank over every request of the run).
#[derive(Clone, Copy)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return f64::NAN;
            }
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1].as_secs_f64() * 1000.0
        };
        Self { p50: at(0.50), p90: at(0.90), p99: at(0.99), p999: at(0.999), max: at(1.0) }
    }
}

#[derive(Default)]
struct Samples {
    plain: Vec<Duration>,
    corrected: Vec<Duration>,
    non_2xx: u64,
    errors: u64,
}

/// Sends `POST url` with `body(i)` at `rate` requests per second for `secs` seconds over at most
/// `connections` requests in flight (as wrk2's connections). A request that finds every connection
/// busy waits for one, and that wait is in its corrected latency.
pub async fn run(
    url: &str,
    rate: f64,
    secs: u32,
    connections: usize,
    body: impl Fn(u64) -> String,
) -> Result<RateResult> {
    let client = bridge::http::client_builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(5))
        .build()
        .context("cannot build the load generator's HTTP client")?;
    let total = (rate * f64::from(secs)).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let slots = Arc::new(Semaphore::new(connections));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let request = client.post(url).header("content-type", "application/json").body(body(i));
        let (slots, samples) = (slots.clone(), samples.clone());
        tasks.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else { return };
            let sent = Instant::now();
            let outcome = match request.send().await {
                Ok(resp) => {
                    let ok = resp.status().is_success();
                    // The latency covers the whole answer, as wrk's does.
                    resp.bytes().await.map(|_| ok)
                }
                Err(e) => Err(e),
            };
            let done = Instant::now();
            let mut s = samples.lock().await;
            match outcome {
                Ok(ok) => {
                    s.plain.push(done - sent);
                    s.corrected.push(done - due);
                    if !ok {
                        s.non_2xx += 1;
                    }
                }
                Err(_) => s.errors += 1,
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a load generator task failed")?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let s = std::mem::take(&mut *samples.lock().await);
    let answered = s.plain.len() as u64;
    Ok(RateResult {
        target_rps: rate,
        achieved_rps: answered as f64 / elapsed,
        requests: total,
        non_2xx: s.non_2xx,
        errors: s.errors,
        plain: Percentiles::of(s.plain),
        corrected: Percentiles::of(s.corrected),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback HTTP/1.1 server that answers every request after `delay` (one at a time per
    /// connection); returns its `POST` URL.
    async fn slow_server(delay: Duration) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request: headers, then content-length bytes of body.
                        let request_len = loop {
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                                let body = head
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length:"))
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                                    .unwrap_or(0);
                                if buf.len() >= end + 4 + body {
                                    break end + 4 + body;
                                }
                            }
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        buf.drain(..request_len);
                        tokio::time::sleep(delay).await;
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if sock.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{addr}/v1/tasks")
    }

    /// 40 req/s for 1 s against a server that needs 50 ms per answer over one connection: it can
    /// serve 20 req/s, so requests queue. Plain latency sees only the 50 ms service time; the
    /// corrected one sees the queue (the last request, due at 975 ms, cannot be answered before
    /// 40 x 50 ms = 2 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrected_latency_counts_the_queue_behind_slow_answers() {
        let url = slow_server(Duration::from_millis(50)).await;
        let r = run(&url, 40.0, 1, 1, |i| format!("{{\"i\":{i}}}")).await.unwrap();
        assert_eq!((r.requests, r.non_2xx, r.errors), (40, 0, 0));
        assert!(r.plain.p50 >= 50.0 && r.plain.max < 1000.0, "plain {:?}", (r.plain.p50, r.plain.max));
        assert!(r.corrected.max >= 1025.0, "corrected max {} ms", r.corrected.max);
        assert!(r.corrected.p50 > r.plain.p50 * 5.0, "corrected p50 {} vs plain {}", r.corrected.p50, r.plain.p50);
        assert!(r.achieved_rps < 21.0, "achieved {} req/s with one 50 ms connection", r.achieved_rps);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=1000).rev().map(Duration::from_millis).collect());
        assert_eq!((p.p50, p.p90, p.p99, p.p999, p.max), (500.0, 900.0, 990.0, 999.0, 1000.0));
    }
}
