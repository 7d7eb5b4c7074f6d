//! Benchmark: technician close → task completed. Per target (RT: the documented scrip, signed;
//! the sandbox desk: its own signed hook), N open tickets, 50 ms latency on every target request,
//! an engine over SQLite with serve's poll loop (`poll_all` every 2 s; each connection's lease paces
//! real cycles to its interval):
//! - *webhook*: the simulator sends its webhook to `POST /v1/hooks/{connection}` (served over HTTP
//!   by the API handler, as serve does) and the poll loop runs at the default interval;
//! - *polling*: no webhook; the poll loop at a stated short interval, closes spread evenly over the
//!   interval's phases.

use anyhow::{Context, Result, bail};
use bridge::domain::{NewTask, Task, TaskEvent, TaskId, TaskState, TicketRef};
use bridge::engine::Engine;
use bridge::engine::api::{ApiRequest, handle};
use bridge::secrets::{Secret, Secrets};
use bridge::store::Store;
use bridge::store::sqlite::SqliteStore;
use chrono::Utc;
use sandbox::NewTicket;
use sandbox::targets::{SpawnedTarget, Target};
use sandbox::webhooks::WebhookConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Row;
use crate::common::{self, CONN};
use crate::poll::target_name;

const LATENCY: Duration = Duration::from_millis(50);
/// Open tickets per target.
const N: usize = 1_000;
/// Closes measured through webhooks, and through polling.
const HOOK_SAMPLES: usize = 20;
const POLL_SAMPLES: usize = 6;
/// The stated interval of the polling run (the smallest the configuration allows).
const POLL_INTERVAL_SECS: u64 = 10;
/// serve's poll tick (cli/src/serve.rs `POLL_TICK`).
const POLL_TICK: Duration = Duration::from_secs(2);
/// Goal for close → completed through a webhook (issue #17).
const HOOK_GOAL: Duration = Duration::from_secs(2);
const HOOK_SECRET: &str = "tb/hooks";
const HOOK_KEY: &str = "bench-webhook-key";

pub async fn run() -> Result<(Vec<Row>, String)> {
    let mut rows = Vec::new();
    let mut table = String::from(
        "| target | N | webhook: samples | webhook p50 | webhook max | polling interval | polling: samples | \
         polling mean | polling max | measured ratio (polling mean / webhook p50) | default 300 s: expected mean (computed) | \
         ratio to today's poller at 300 s (computed) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for target in [Target::Rt, Target::Sandbox] {
        run_target(target, &mut rows, &mut table).await.with_context(|| format!("target {}", target_name(target)))?;
    }
    let default_interval = default_interval()?;
    let notes = format!(
        "Per target and run: {N} open tickets seeded straight into the simulator and their tasks into SQLite (tmpfs), \
         a warm-up cycle without latency, then 50 ms per target request and serve's poll loop (`poll_all` every \
         {}s; the connection's lease lets a cycle run once per `poll_interval_secs - 5` s). A technician closes one \
         ticket at a time in the simulator; the time is from the close to the task reading `completed` in the store \
         (checked every 5 ms). *Webhook*: the simulator sends the webhook its product's documented set-up sends \
         (tests/sandbox/src/webhooks.rs, docs/webhooks.md) over loopback HTTP to `POST /v1/hooks/{{connection}}` served \
         by the API handler; the poll loop runs at the default interval ({default_interval} s), so no cycle falls in \
         the measured windows. *Polling*: no webhook; `poll_interval_secs = {POLL_INTERVAL_SECS}`; the closes are \
         spread evenly over the loop's phase (close i waits i/{POLL_SAMPLES} of the interval after the previous \
         completion). The last two columns are computed, not measured: at the default interval a close waits on \
         average half the interval for the next cycle, plus the measured polling delay beyond its own wait \
         (polling mean − half the effective period, floored at the webhook p50).\n\n{table}",
        POLL_TICK.as_secs()
    );
    Ok((rows, notes))
}

/// `poll_interval_secs` of a connection that does not set it.
fn default_interval() -> Result<u64> {
    let c: bridge::config::ConnectionConfig =
        toml::from_str("kind = \"sandbox\"\nbase_url = \"http://127.0.0.1\"\nsecret = \"s\"\n")?;
    Ok(c.poll_interval_secs)
}

/// An SQLite store on tmpfs where there is one.
fn temp_dir() -> Result<tempfile::TempDir> {
    Ok(if std::path::Path::new("/dev/shm").is_dir() { tempfile::tempdir_in("/dev/shm")? } else { tempfile::tempdir()? })
}

/// A fresh store and engine over `t` with `N` open tickets (no latency) and one warm-up cycle;
/// returns the engine and the open tickets' (task id, ticket id).
async fn seeded(
    t: &SpawnedTarget,
    dir: &tempfile::TempDir,
    interval: u64,
    hooks: bool,
) -> Result<(Arc<Engine>, Vec<(String, String)>)> {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("tb.db")).map_err(|e| anyhow::anyhow!("{e}"))?);
    let secrets: Arc<dyn Secrets> = Arc::new(
        bridge::secrets::file::FileSecrets::open(dir.path().join("secrets.json"))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    common::put_secret(secrets.as_ref(), "tb/desk", t).await?;
    let mut s = Secret::new();
    s.set("webhook_key", HOOK_KEY);
    secrets.put(HOOK_SECRET, &s).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = common::engine_with(t, "tb/desk", store.clone(), secrets, |c| {
        c.poll_interval_secs = interval;
        c.polling.webhook_secret = hooks.then(|| HOOK_SECRET.to_string());
    })?;
    t.sim.set_latency(Duration::ZERO);
    let now = Utc::now();
    let mut open = Vec::with_capacity(N);
    for i in 1..=N {
        let st = t.sim.create_ticket(NewTicket {
            title: format!("Bench ticket {i}"),
            body: format!("seeded by the close-latency benchmark\n\nTicket Bridge reference: tb-close-{i}"),
            customer_id: t.catch_all.clone(),
            correlation_key: Some(format!("close-{i}")),
            ..Default::default()
        });
        let new: NewTask = serde_json::from_value(common::access_task(&format!("CL-{i}")))?;
        let mut task = Task::new(new, CONN.into(), now);
        let tref = TicketRef { id: st.id.to_string(), number: Some(st.number.clone()), url: None, remote_status: None };
        task.apply(TaskEvent::TicketCreated { ticket: tref, next_poll_at: now }, now)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        store.create_task(&task).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        open.push((task.id.to_string(), st.id.to_string()));
    }
    // Warm-up: the first cycle reads everything (and takes the lease, as serve's first tick does).
    let warm = engine.poll_all(Utc::now()).await;
    let r = warm.get(CONN).context("no poll report")?;
    if r.failed_batches > 0 || r.tickets as usize != N {
        bail!("warm-up: {r:?}");
    }
    Ok((Arc::new(engine), open))
}

/// serve's poll loop over `engine`.
fn poll_loop(engine: Arc<Engine>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL_TICK);
        loop {
            tick.tick().await;
            engine.poll_all(Utc::now()).await;
        }
    })
}

/// Serves `POST /v1/hooks/{connection}` through the API handler on loopback; returns the URL of
/// [`CONN`]'s hook.
async fn hook_endpoint(engine: Arc<Engine>) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new().route(
        "/v1/hooks/{conn}",
        axum::routing::post(
            move |axum::extract::Path(conn): axum::extract::Path<String>,
                  headers: http::HeaderMap,
                  body: axum::body::Bytes| {
                let engine = engine.clone();
                async move {
                    let path = format!("/v1/hooks/{conn}");
                    let req = ApiRequest {
                        method: "POST",
                        path: &path,
                        query: None,
                        headers: &headers,
                        body: &body,
                        peer_loopback: false,
                    };
                    let res = handle(&engine, req, Utc::now()).await;
                    let status = http::StatusCode::from_u16(res.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
                    (status, axum::Json(res.body))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/v1/hooks/{CONN}"), server))
}

/// Closes `ticket` as a technician and waits (up to `limit`) until `task` is completed.
async fn close_to_completed(
    t: &SpawnedTarget,
    engine: &Engine,
    task: &str,
    ticket: &str,
    limit: Duration,
) -> Result<Duration> {
    let id = TaskId::parse(task).with_context(|| format!("bad task id {task}"))?;
    let started = Instant::now();
    t.sim.close(ticket, Some(t.done_status)).map_err(|e| anyhow::anyhow!("{e}"))?;
    while started.elapsed() < limit {
        let state = engine.store.get_task(&id).await.map_err(|e| anyhow::anyhow!("{e}"))?.map(|t| t.state);
        if state == Some(TaskState::Completed) {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("task {task} not completed {limit:?} after its ticket {ticket} was closed")
}

async fn run_target(target: Target, rows: &mut Vec<Row>, table: &mut String) -> Result<()> {
    let name = target_name(target);
    let default_interval = default_interval()?;

    // Webhook run: hooks on, the poll loop at the default interval.
    let t = sandbox::targets::spawn(target).await.context("spawn simulator")?;
    let dir = temp_dir()?;
    let (engine, open) = seeded(&t, &dir, default_interval, true).await?;
    let (url, server) = hook_endpoint(engine.clone()).await?;
    t.sim.set_webhook(Some(WebhookConfig { url, key: HOOK_KEY.into() })).map_err(|e| anyhow::anyhow!(e))?;
    let poller = poll_loop(engine.clone());
    t.sim.set_latency(LATENCY);
    let mut hook = Vec::with_capacity(HOOK_SAMPLES);
    for (task, ticket) in open.iter().take(HOOK_SAMPLES) {
        hook.push(close_to_completed(&t, &engine, task, ticket, Duration::from_secs(30)).await?);
    }
    poller.abort();
    server.abort();
    let stats = t.sim.webhook_stats();
    if stats.delivered as usize != HOOK_SAMPLES || stats.failed > 0 {
        bail!("{name}: webhooks {stats:?}");
    }
    drop(t);

    // Polling run: no webhook, the poll loop at the stated interval.
    let t = sandbox::targets::spawn(target).await.context("spawn simulator")?;
    let dir = temp_dir()?;
    let (engine, open) = seeded(&t, &dir, POLL_INTERVAL_SECS, false).await?;
    let poller = poll_loop(engine.clone());
    t.sim.set_latency(LATENCY);
    let interval = Duration::from_secs(POLL_INTERVAL_SECS);
    let mut polled = Vec::with_capacity(POLL_SAMPLES);
    for (i, (task, ticket)) in open.iter().take(POLL_SAMPLES).enumerate() {
        tokio::time::sleep(interval.mul_f64(i as f64 / POLL_SAMPLES as f64)).await;
        polled.push(close_to_completed(&t, &engine, task, ticket, interval * 4).await?);
    }
    poller.abort();
    if t.sim.webhook_stats().triggered > 0 {
        bail!("{name}: a webhook was sent in the polling run");
    }

    hook.sort();
    let p50 = hook[hook.len() / 2];
    let hook_max = hook[hook.len() - 1];
    let poll_mean = polled.iter().sum::<Duration>() / polled.len() as u32;
    let poll_max = polled.iter().max().copied().unwrap_or_default();
    let ratio = poll_mean.as_secs_f64() / p50.as_secs_f64().max(1e-6);
    // serve's lease lets one cycle run per `interval - 5` s, rounded up to the 2 s tick.
    let period = |secs: u64| {
        let lease = secs.saturating_sub(5) as f64;
        (lease / POLL_TICK.as_secs_f64()).ceil() * POLL_TICK.as_secs_f64()
    };
    let beyond_wait = (poll_mean.as_secs_f64() - period(POLL_INTERVAL_SECS) / 2.0).max(p50.as_secs_f64());
    let default_mean = period(default_interval) / 2.0 + beyond_wait;
    let default_ratio = default_mean / p50.as_secs_f64().max(1e-6);
    eprintln!(
        "bench: close_latency {name}: webhook {:?}; polling {:?}",
        hook.iter().map(|d| format!("{:.3}", d.as_secs_f64())).collect::<Vec<_>>(),
        polled.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>()
    );
    table.push_str(&format!(
        "| {name} | {N} | {HOOK_SAMPLES} | {} | {} | {POLL_INTERVAL_SECS} s | {POLL_SAMPLES} | {} | {} | {ratio:.0}× faster | \
         {default_mean:.0} s | {default_ratio:.0}× faster |\n",
        ms(p50),
        ms(hook_max),
        common::secs(poll_mean),
        common::secs(poll_max),
    ));
    rows.push(Row::new(
        format!("{name}: technician close → task completed, via webhook"),
        format!("p50 {}, max {} ({HOOK_SAMPLES} closes, N={N} open)", ms(p50), ms(hook_max)),
        format!("≤ {} s", HOOK_GOAL.as_secs()),
        Some(hook_max <= HOOK_GOAL),
        "simulator's own webhook → /v1/hooks over loopback HTTP, 50 ms per target request; close to `completed` in the store",
    ));
    rows.push(Row::new(
        format!("{name}: technician close → task completed, via polling ({POLL_INTERVAL_SECS} s interval)"),
        format!(
            "mean {}, max {} ({POLL_SAMPLES} closes); webhook p50 is {ratio:.0}× faster; at the default {default_interval} s \
             interval ≈ {default_mean:.0} s mean (computed), {default_ratio:.0}× the webhook",
            common::secs(poll_mean),
            common::secs(poll_max)
        ),
        "-",
        None,
        "serve's poll loop, no webhook, closes spread over the interval's phase; the 300 s figure is computed",
    ));
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
