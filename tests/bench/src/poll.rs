//! Benchmark 1: one poll cycle for N open tickets per target simulator, with 50 ms latency on
//! every target request, against a naive poller that asks for each ticket on its own.

use anyhow::{Context, Result, bail};
use bridge::connectors::Connector;
use bridge::domain::{NewTask, Task, TaskEvent, TicketRef};
use bridge::store::Store;
use bridge::store::sqlite::SqliteStore;
use chrono::Utc;
use sandbox::NewTicket;
use sandbox::targets::{SpawnedTarget, Target};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Row;
use crate::common::{self, CONN};

const LATENCY: Duration = Duration::from_millis(50);
const SIZES: [usize; 3] = [100, 1_000, 10_000];
/// Tickets the naive poller is timed on per target; larger N are extrapolated linearly.
const NAIVE_SAMPLE: usize = 100;
/// Share of tickets a technician closed since the last cycle (so "changed" is not zero).
const CHANGED_PER_MILLE: usize = 10;

pub(crate) fn target_name(t: Target) -> &'static str {
    match t {
        Target::Sandbox => "sandbox",
        Target::Rt => "rt",
        Target::Generic => "generic",
        Target::Bms => "bms",
        Target::Vsa => "vsa",
        Target::Ninjaone => "ninjaone",
        Target::Otrs => "otrs",
    }
}

/// Requests the simulator saw, leaving out authentication / session routes.
pub(crate) fn api_requests(t: &SpawnedTarget) -> (usize, String) {
    let counts = t.sim.request_counts();
    let mut n = 0;
    let mut routes = Vec::new();
    for (route, c) in &counts {
        routes.push(format!("{route}×{c}"));
        n += c;
    }
    (n, routes.join(", "))
}

pub async fn run() -> Result<(Vec<Row>, String)> {
    let mut rows = Vec::new();
    let mut notes = String::from(
        "Engine: `Engine::poll_connection` over SQLite (on tmpfs, `/dev/shm`), the connector's own batch size, `poll_concurrency` 4 (default), \
         rate limiter opened wide. Tickets are seeded straight into the simulator and tasks straight into the store; a \
         warm-up cycle without latency at N = 100 records every ticket's current status (as ticket creation does) and \
         later seeds carry that status, then 1 % of the \
         tickets are closed by a technician and the measured cycle runs with 50 ms added to every target request. \
         *batch* is the connector's ids per status call, *page* the tickets one API response can carry (the smaller \
         of the batch and the simulator's page cap, e.g. the sandbox desk's 25, RT's configured `per_page = 20`); the \
         bound uses the page. Requests are counted by the simulator (authentication requests included when they happen).\n\n\
         Naive baseline: the same connector asked `statuses(&[id])` for one ticket at a time, sequentially \
         (WSRETRY-style). It is timed on the first 100 tickets of each target; its figures for N = 1,000 and 10,000 are \
         that measurement scaled linearly (marked *est.*), except sandbox at N = 1,000, run in full to check the scaling.\n\n\
         | target | N | batch / page | engine requests | bound ceil(N/page)+changed | engine wall | naive requests | naive wall | requests ratio | wall ratio |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    // BENCH_POLL_TARGETS=bms,otrs narrows the run (while working on one connector).
    let only = std::env::var("BENCH_POLL_TARGETS").ok();
    for target in Target::ALL {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|n| n == target_name(target))) {
            continue;
        }
        match run_target(target, &mut rows, &mut notes).await {
            Ok(()) => {}
            Err(e) => {
                eprintln!("bench: poll {} failed: {e:#}", target_name(target));
                rows.push(Row::new(
                    format!("poll {}: not measured", target_name(target)),
                    "error",
                    "-",
                    Some(false),
                    format!("{e:#}"),
                ));
            }
        }
    }
    Ok((rows, notes))
}

async fn run_target(target: Target, rows: &mut Vec<Row>, notes: &mut String) -> Result<()> {
    let name = target_name(target);
    // SQLite on tmpfs where there is one: seeding 10,000 tasks one transaction each is then
    // seconds, not minutes of fsync; the measured cycle writes only the changed tasks anyway.
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
    // Today's batched read: incremental reads (section poll_changes) off.
    let engine = common::engine_with(&t, "tb/desk", store.clone(), secrets.clone(), |c| c.polling.incremental = false)?;
    // The naive poller: a connector of its own over the same connection settings.
    let cfg = common::connection_for(&t, "tb/desk")?;
    let naive = bridge::connectors::build(CONN, &cfg, secrets.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let batch = naive.batch_size().max(1);
    let page = page_size(target, &t, batch);

    let mut open: Vec<TicketRef> = Vec::new();
    let mut seeded = 0usize;
    let mut naive_per_ticket: Option<(f64, Duration)> = None; // (requests per ticket, wall per ticket)
    // Status name the target reports for a new ticket, learnt from the first warm-up; later seeds
    // carry it (as ticket creation records it), so they need no warm-up cycle.
    let mut initial_status: Option<String> = None;
    for n in SIZES {
        // Seed up to n open tickets (tasks closed by the previous cycle are done).
        let now = Utc::now();
        while open.len() < n {
            seeded += 1;
            let st = t.sim.create_ticket(NewTicket {
                title: format!("Bench ticket {seeded}"),
                // The marker line ticket creation writes into every body (PSA connectors search for it).
                body: format!("seeded by the poll benchmark\n\nTicket Bridge reference: tb-bench-{seeded}"),
                customer_id: t.catch_all.clone(),
                correlation_key: Some(format!("bench-{seeded}")),
                ..Default::default()
            });
            let new: NewTask = serde_json::from_value(common::access_task(&format!("B-{seeded}")))?;
            let mut task = Task::new(new, CONN.into(), now);
            let tref = TicketRef {
                id: st.id.to_string(),
                number: Some(st.number.clone()),
                url: None,
                remote_status: initial_status.clone(),
            };
            task.apply(TaskEvent::TicketCreated { ticket: tref.clone(), next_poll_at: now }, now)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            store.create_task(&task).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            open.push(tref);
        }
        if initial_status.is_none() {
            // Warm-up without latency: records remote statuses, fetches tokens.
            t.sim.set_latency(Duration::ZERO);
            let warm = engine.poll_connection(CONN, Utc::now(), false).await;
            if warm.tickets as usize != n || warm.failed_batches > 0 || warm.changed as usize != n {
                bail!(
                    "warm-up poll saw {} tickets, {} changed, {} failed batches (expected {n}, {n}, 0)",
                    warm.tickets,
                    warm.changed,
                    warm.failed_batches
                );
            }
            let first = open.first().context("no ticket seeded")?;
            let due = store.due_for_polling(CONN, Utc::now(), 1000, None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            initial_status = due
                .items
                .iter()
                .find(|task| task.ticket.as_ref().is_some_and(|x| x.id == first.id))
                .and_then(|task| task.ticket.as_ref().and_then(|x| x.remote_status.clone()));
            if initial_status.is_none() {
                bail!("warm-up recorded no remote status");
            }
        }
        // A technician closes 1 %.
        let changed = (n * CHANGED_PER_MILLE / 1000).max(1);
        for tref in open.drain(..changed) {
            t.sim.close(&tref.id, Some(t.done_status)).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        t.sim.set_latency(LATENCY);
        t.sim.reset_requests();
        let started = Instant::now();
        let report = engine.poll_connection(CONN, Utc::now(), false).await;
        let wall = started.elapsed();
        let (requests, routes) = api_requests(&t);
        if report.completed as usize != changed {
            eprintln!("bench: poll {name} N={n}: completed {} of {changed} closed tickets", report.completed);
        }
        let bound = n.div_ceil(page) + changed;
        eprintln!("bench: poll {name} N={n}: {requests} requests ({routes}) in {:.2}s; {report:?}", wall.as_secs_f64());

        // Naive baseline.
        let full_naive = n <= NAIVE_SAMPLE || (target == Target::Sandbox && n == 1_000);
        let (naive_req, naive_wall, est) = if full_naive || naive_per_ticket.is_none() {
            let sample: Vec<String> =
                open.iter().take(if full_naive { n } else { NAIVE_SAMPLE }).map(|r| r.id.clone()).collect();
            // Closed tickets were removed from `open`; pad with them so the sample has n ids.
            let (r, w) = naive_cycle(&t, naive.as_ref(), &sample).await?;
            let per = (r as f64 / sample.len() as f64, w / sample.len() as u32);
            if naive_per_ticket.is_none() {
                naive_per_ticket = Some(per);
            }
            let scale = n as f64 / sample.len() as f64;
            ((r as f64 * scale).round() as usize, w.mul_f64(scale), !full_naive)
        } else {
            let (rpt, wpt) = naive_per_ticket.unwrap_or((1.0, LATENCY));
            ((rpt * n as f64).round() as usize, wpt * n as u32, true)
        };
        t.sim.set_latency(Duration::ZERO);
        let e = if est { " *est.*" } else { "" };
        let req_ratio = naive_req as f64 / requests.max(1) as f64;
        let wall_ratio = naive_wall.as_secs_f64() / wall.as_secs_f64().max(1e-6);
        notes.push_str(&format!(
            "| {name} | {n} | {batch} / {page} | {requests} | {bound} | {} | {naive_req}{e} | {}{e} | {req_ratio:.0}× fewer | {wall_ratio:.0}× faster |\n",
            common::secs(wall),
            common::secs(naive_wall)
        ));
        let batching = batch > 1;
        rows.push(Row::new(
            format!("poll {name}, N={n}: requests"),
            format!("{requests} (naive {naive_req}{e}; {req_ratio:.0}× fewer)"),
            if batching {
                format!("≤ {bound} = ceil({n}/{page}) + {changed} changed")
            } else {
                "target API has no batch read".into()
            },
            if batching { Some(requests <= bound) } else { None },
            "simulator request count for one `poll_connection` cycle, 50 ms latency per request",
        ));
        rows.push(Row::new(
            format!("poll {name}, N={n}: wall time"),
            format!("{} (naive {}{e}; {wall_ratio:.0}× faster)", common::secs(wall), common::secs(naive_wall)),
            if n == 10_000 { "< 60 s".into() } else { "-".to_string() },
            if n == 10_000 { Some(wall < Duration::from_secs(60)) } else { None },
            "wall clock of the same cycle",
        ));
    }
    Ok(())
}

/// Tickets one status response can carry: the connector's batch, capped by the API's page size.
pub(crate) fn page_size(target: Target, t: &SpawnedTarget, batch: usize) -> usize {
    let cap = match target {
        Target::Sandbox => Some(sandbox::desk::DeskConfig::default().max_per_page),
        Target::Rt => t
            .options
            .parse::<toml::Table>()
            .ok()
            .and_then(|o| o.get("per_page").and_then(toml::Value::as_integer))
            .and_then(|v| usize::try_from(v).ok())
            .or(Some(sandbox::rt::RtConfig::default().max_per_page)),
        Target::Bms => Some(sandbox::bms::BmsConfig::default().max_page_size),
        Target::Ninjaone => Some(sandbox::ninjaone::NinjaConfig::default().max_page_size),
        _ => None,
    };
    cap.map_or(batch, |c| c.min(batch)).max(1)
}

/// Asks for each ticket on its own, one after the other; returns requests made and wall time.
async fn naive_cycle(t: &SpawnedTarget, c: &dyn Connector, ids: &[String]) -> Result<(usize, Duration)> {
    // Let the connector fetch its token outside the measurement.
    t.sim.set_latency(Duration::ZERO);
    if let Some(first) = ids.first() {
        c.statuses(std::slice::from_ref(first)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    t.sim.set_latency(LATENCY);
    t.sim.reset_requests();
    let started = Instant::now();
    for id in ids {
        c.statuses(std::slice::from_ref(id)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let wall = started.elapsed();
    Ok((api_requests(t).0, wall))
}
