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

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=1000).rev().map(Duration::from_millis).collect());
        assert_eq!((p.p50, p.p90, p.p99, p.p999, p.max), (500.0, 900.0, 990.0, 999.0, 1000.0));
    }
}
