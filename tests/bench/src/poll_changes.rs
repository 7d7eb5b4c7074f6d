//! Benchmark: incremental status reads. N = 10,000 open tickets per target with a change filter,
//! 1 % closed by a technician since the last cycle, 50 ms latency on every target request: the
//! incremental cycle beside today's batched full read (same harness, same store) and the naive
//! one-request-per-ticket poller; and the hourly request budget at a 5-minute interval with one
//! full sweep per hour (`full_sweep_every = 12`), against BMS's 1,500 calls per hour per endpoint.

use anyhow::{Context, Result, bail};
use bridge::domain::{NewTask, Task, TaskEvent, TicketRef};
use bridge::store::Store;
use bridge::store::sqlite::SqliteStore;
use chrono::Utc;
use sandbox::NewTicket;
use sandbox::targets::Target;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Row;
use crate::common::{self, CONN};
use crate::poll::{api_requests, page_size, target_name};

const LATENCY: Duration = Duration::from_millis(50);
const N: usize = 10_000;
const CHANGED: usize = N / 100;
/// Cycles per hour at the default 300 s interval, one of them the full sweep.
const CYCLES_PER_HOUR: usize = 12;
const BMS_LIMIT_PER_HOUR: usize = 1_500;

pub async fn run() -> Result<(Vec<Row>, String)> {
    let mut rows = Vec::new();
    let mut table = String::from(
        "| target | N | changed | page | incremental cycle | bound ceil(changed/page)+1 | batched full read | naive | \
         requests ratio (full / incremental) | incremental wall | full wall | hourly requests (11 incremental + 1 full) | \
         hourly today (12 full) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for target in [Target::Rt, Target::Otrs, Target::Bms] {
        run_target(target, &mut rows, &mut table).await.with_context(|| format!("target {}", target_name(target)))?;
    }
    let notes = format!(
        "Per target: {N} tickets seeded straight into the simulator (stamped an hour ago: the simulator clock is set \
         back while seeding) and tasks straight into SQLite (tmpfs); a warm-up cycle without latency records every \
         status and stores the connection's first poll mark. Then {CHANGED} tickets are closed and the engine with \
         default settings (`polling.incremental = true`, margin 120 s) runs one cycle with 50 ms per request: the \
         incremental cycle. Another {CHANGED} are closed and an engine with `polling.incremental = false` over the same \
         store runs one cycle: today's batched full read. Requests are counted by the simulator (authentication \
         included when it happens). *naive* is one request per open ticket (the poll section measures it). Hourly \
         figures are computed from the two measured cycles: 11 × incremental + 1 × full (`full_sweep_every = 12` at \
         `poll_interval_secs = 300`), beside 12 × full today; BMS allows {BMS_LIMIT_PER_HOUR} calls per hour per \
         endpoint; the hourly figure counts all status requests together (BMS's full read uses two endpoints, tickets/search and tickets/{{id}}, so each stays below the total).\n\n{table}"
    );
    Ok((rows, notes))
}

async fn run_target(target: Target, rows: &mut Vec<Row>, table: &mut String) -> Result<()> {
    let name = target_name(target);
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")?
    } else {
        tempfile::tempdir()?
    };
    let t = sandbox::targets::spawn(target).await.context("spawn simulator")?;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("tb.db")).map_err(|e| anyhow::anyhow!("{e}"))?);
    let secrets: Arc<dyn bridge::secrets::Secrets> = Arc::new(
        bridge::secrets::file::FileSecrets::open(dir.path().join("secrets.json"))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    common::put_secret(secrets.as_ref(), "tb/desk", &t).await?;
    let incremental = common::engine(&t, "tb/desk", store.clone(), secrets.clone())?;
    let full = common::engine_with(&t, "tb/desk", store.clone(), secrets.clone(), |c| c.polling.incremental = false)?;
    let connector = incremental.connectors.get(CONN).context("no connector")?.clone();
    if connector.change_filter().is_none() {
        bail!("{name} has no change filter");
    }
    let page = page_size(target, &t, connector.batch_size().max(1));

    // Seed N open tickets stamped an hour ago.
    t.sim.set_clock_skew(chrono::Duration::hours(-1));
    let now = Utc::now();
    let mut open: Vec<TicketRef> = Vec::with_capacity(N);
    for i in 1..=N {
        let st = t.sim.create_ticket(NewTicket {
            title: format!("Bench ticket {i}"),
            body: format!("seeded by the poll benchmark\n\nTicket Bridge reference: tb-bench-{i}"),
            customer_id: t.catch_all.clone(),
            correlation_key: Some(format!("bench-{i}")),
            fields: seed_fields(target, t.catch_all.as_deref(), now),
            ..Default::default()
        });
        let new: NewTask = serde_json::from_value(common::access_task(&format!("C-{i}")))?;
        let mut task = Task::new(new, CONN.into(), now);
        let tref = TicketRef { id: st.id.to_string(), number: Some(st.number.clone()), url: None, remote_status: None };
        task.apply(TaskEvent::TicketCreated { ticket: tref.clone(), next_poll_at: now }, now)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        store.create_task(&task).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        open.push(tref);
    }
    t.sim.set_clock_skew(chrono::Duration::zero());
    t.sim.set_latency(Duration::ZERO);
    let warm = incremental.poll_connection(CONN, Utc::now(), false).await;
    if warm.incremental || warm.failed_batches > 0 || warm.tickets as usize != N {
        bail!("warm-up: {warm:?}");
    }
    if store.get_poll_mark(CONN).await.map_err(|e| anyhow::anyhow!("{e}"))?.is_none() {
        bail!("warm-up stored no poll mark");
    }

    let measure = async |engine: &bridge::engine::Engine, open: &mut Vec<TicketRef>| -> Result<_> {
        for tref in open.drain(..CHANGED) {
            t.sim.close(&tref.id, Some(t.done_status)).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        t.sim.set_latency(LATENCY);
        t.sim.reset_requests();
        let started = Instant::now();
        let report = engine.poll_connection(CONN, Utc::now(), false).await;
        let wall = started.elapsed();
        t.sim.set_latency(Duration::ZERO);
        let (requests, routes) = api_requests(&t);
        eprintln!(
            "bench: poll_changes {name}: {requests} requests ({routes}) in {:.2}s; {report:?}",
            wall.as_secs_f64()
        );
        if report.completed as usize != CHANGED || report.failed_batches > 0 {
            bail!("{name}: completed {} of {CHANGED}: {report:?}", report.completed);
        }
        Ok((report, requests, wall))
    };
    let (inc_report, inc_req, inc_wall) = measure(&incremental, &mut open).await?;
    if !inc_report.incremental {
        bail!("{name}: the default cycle was not incremental: {inc_report:?}");
    }
    let (full_report, full_req, full_wall) = measure(&full, &mut open).await?;
    if full_report.incremental {
        bail!("{name}: the batched cycle was incremental");
    }
    let bound = CHANGED.div_ceil(page) + 1;
    let hourly = (CYCLES_PER_HOUR - 1) * inc_req + full_req;
    let hourly_today = CYCLES_PER_HOUR * full_req;
    let ratio = full_req as f64 / inc_req.max(1) as f64;
    table.push_str(&format!(
        "| {name} | {N} | {CHANGED} | {page} | {inc_req} | {bound} | {full_req} | {N} | {ratio:.0}× fewer | {} | {} | {hourly} | {hourly_today} |\n",
        common::secs(inc_wall),
        common::secs(full_wall)
    ));
    rows.push(Row::new(
        format!("poll {name}, N={N}, {CHANGED} changed: requests, incremental cycle"),
        format!("{inc_req} (batched full read {full_req}: {ratio:.0}× fewer; naive {N})"),
        format!("≤ {bound} = ceil({CHANGED}/{page}) + 1"),
        Some(inc_req <= bound),
        "simulator request count for one `poll_connection` cycle, 50 ms latency per request",
    ));
    rows.push(Row::new(
        format!("poll {name}: requests per hour, N={N}, 5-min interval, 1 full sweep per hour"),
        format!("{hourly} (today {hourly_today}; {:.1}× fewer)", hourly_today as f64 / hourly.max(1) as f64),
        if target == Target::Bms { format!("< {BMS_LIMIT_PER_HOUR} per endpoint") } else { "-".into() },
        (target == Target::Bms).then_some(hourly < BMS_LIMIT_PER_HOUR),
        "11 × the measured incremental cycle + 1 × the measured full read",
    ));
    Ok(())
}

/// The ticket fields a ticket created through the API carries where the simulator's answers need
/// them (BMS: account, location, priority, type, source, queue, open date are never null).
fn seed_fields(
    target: Target,
    account: Option<&str>,
    now: chrono::DateTime<Utc>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut f = std::collections::BTreeMap::new();
    if target == Target::Bms {
        let account: i64 = account.and_then(|a| a.parse().ok()).unwrap_or(100);
        for (k, v) in [
            ("AccountId", serde_json::json!(account)),
            ("LocationId", serde_json::json!(account * 10 + 1)),
            ("PriorityId", serde_json::json!(2)),
            ("TypeId", serde_json::json!(1)),
            ("SourceId", serde_json::json!(1)),
            ("QueueId", serde_json::json!(1)),
            ("OpenDate", serde_json::json!(now.format("%Y-%m-%dT%H:%M:%S").to_string())),
        ] {
            f.insert(k.to_string(), v);
        }
    }
    f
}
