//! Soak of the real `serve` process against the sandbox desk simulator: `TB_SOAK_TASKS` tasks
//! (default 1,000; `cargo xtask soak` runs 100,000) submitted over HTTP, faults of every kind the
//! simulator offers injected one at a time throughout the run (1 % of the tasks in total), tickets
//! closed by a technician loop, and `serve` killed with SIGKILL and restarted once half the tasks
//! are in and 1 % have had their callback. Counted at the end: every task completed (0 lost), exactly one ticket per task and none
//! without one (0 duplicates), and a completion callback for every task (de-duplicated by
//! `X-Bridge-Delivery`). The figures go to `target/reliability/soak-serve.json`.

mod support;

use sandbox::faults::Fault;
use sandbox::targets::{SpawnedTarget, Target, spawn};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{Serve, callback_receiver, write_config_with};

/// Submissions in flight at once.
const SUBMITTERS: usize = 16;
/// Tasks submitted just before the kill, and how many of their creates are in flight at it
/// (ticket made, answer held).
const KILL_BATCH: usize = 16;
const KILL_WINDOW: usize = 4;

/// The fault kinds injected, by name; `token_revoked` revokes every access token (not a `Fault`).
const KINDS: [&str; 8] = [
    "status_503",
    "rate_limited",
    "hang",
    "malformed_json",
    "error_body",
    "lose_response",
    "slow_response",
    "token_revoked",
];

fn fault(kind: &str) -> Option<Fault> {
    Some(match kind {
        "status_503" => Fault::Status { status: 503 },
        "rate_limited" => Fault::RateLimited { retry_after_secs: 1 },
        "hang" => Fault::Hang { ms: 300 },
        "malformed_json" => Fault::MalformedJson,
        "error_body" => Fault::ErrorBody,
        "lose_response" => Fault::LoseResponse,
        "slow_response" => Fault::SlowResponse { ms: 300 },
        _ => return None,
    })
}

fn logins(t: &SpawnedTarget) -> usize {
    Target::Sandbox.auth_routes().iter().map(|r| t.sim.requests(r)).sum()
}

/// Arms one fault at a time (kinds in turn) and waits until a request consumed it (a revoked
/// token: until the next login), `total` times or until `stop`. Returns fired counts by kind.
async fn inject_faults(t: Arc<SpawnedTarget>, total: usize, stop: Arc<AtomicBool>) -> BTreeMap<String, u64> {
    let mut fired: BTreeMap<String, u64> = KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    for i in 0..total {
        let kind = KINDS[i % KINDS.len()];
        let before = logins(&t);
        match fault(kind) {
            Some(f) => t.sim.faults().inject(f, 1),
            None => t.sim.revoke_tokens(),
        }
        loop {
            let done = match kind {
                "token_revoked" => logins(&t) > before,
                _ => t.sim.faults().pending() == 0,
            };
            if done {
                *fired.get_mut(kind).unwrap() += 1;
                break;
            }
            if stop.load(Ordering::Relaxed) {
                t.sim.faults().clear();
                return fired;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    fired
}

/// Closes open tickets as a technician would, until `stop`. Returns how many it closed. It
/// remembers the highest ticket id it has looked at (the sandbox numbers tickets in order), so each
/// round reads only the tickets made since, plus any whose close failed.
async fn technician(t: Arc<SpawnedTarget>, stop: Arc<AtomicBool>) -> u64 {
    let mut closed = 0;
    let mut seen = 0u64;
    let mut retry: Vec<u64> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let fresh = t.sim.tickets_matching(|k| k.id > seen);
        seen = fresh.iter().map(|k| k.id).max().unwrap_or(seen).max(seen);
        let ids: Vec<u64> = std::mem::take(&mut retry)
            .into_iter()
            .chain(fresh.into_iter().filter(|k| k.status != t.done_status).map(|k| k.id))
            .collect();
        for id in ids {
            match t.sim.close(&id.to_string(), Some(t.done_status)) {
                Ok(_) => closed += 1,
                Err(_) => retry.push(id),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    closed
}

/// Submits `body` until serve answers 200/201 (retrying across the kill); returns the task id.
async fn submit(http: &reqwest::Client, base: &str, body: &serde_json::Value) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(res) = http.post(format!("{base}/v1/tasks")).json(body).send().await {
            let status = res.status().as_u16();
            if let Ok(v) = res.json::<serde_json::Value>().await
                && (status == 200 || status == 201)
                && let Some(id) = v["id"].as_str()
            {
                return id.to_string();
            }
            assert!(status >= 500 || status == 429 || status == 200 || status == 201, "submission refused: {status}");
        }
        assert!(Instant::now() < deadline, "serve did not accept {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Task ids in `state`, all pages.
async fn list(http: &reqwest::Client, base: &str, state: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = http.get(format!("{base}/v1/tasks")).query(&[("state", state), ("limit", "500")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let v: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
        for t in v["items"].as_array().unwrap() {
            out.insert(t["id"].as_str().unwrap().to_string());
        }
        match v["cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
            _ => return out,
        }
    }
}

fn tasks_wanted() -> usize {
    std::env::var("TB_SOAK_TASKS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_serve_sandbox() {
    let n = tasks_wanted();
    let started = Instant::now();
    let t = Arc::new(spawn(Target::Sandbox).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (hook, callbacks) = callback_receiver().await;
    let mut settings = toml::Table::new();
    settings.insert("allow_private_callbacks".into(), true.into());
    settings.insert("claim_secs".into(), 2.into());
    settings.insert("delivery_claim_secs".into(), 2.into());
    settings.insert("retry_base_secs".into(), 1.into());
    settings.insert("retry_max_secs".into(), 2.into());
    settings.insert("delivery_retry_base_secs".into(), 1.into());
    let mut conn = toml::Table::new();
    conn.insert("poll_concurrency".into(), 16.into());
    conn.insert("rate_limit_per_hour".into(), 100_000_000.into());
    let config = write_config_with(dir.path(), &t, settings, conn);
    let http = reqwest::Client::new();

    let (server, base) = Serve::launch(&http, dir.path(), Some(&config), &[]).await.expect("serve started");
    let stop = Arc::new(AtomicBool::new(false));
    let faults_total = n.div_ceil(100);
    let injector = tokio::spawn(inject_faults(t.clone(), faults_total, stop.clone()));
    let tech = tokio::spawn(technician(t.clone(), stop.clone()));

    // Submit the first half, SIGKILL serve while it works on them, restart, submit the rest.
    let body = |i: usize| {
        serde_json::json!({"source":"saviynt","external_id":format!("SOAK-{i}"),"kind":"access",
            "action":"create_account","user":{"id":format!("u-{i}"),"email":format!("user{i}@acme.io")},
            "application":"Payroll","callback_url": hook})
    };
    let submit_range = |base: &str, range: std::ops::Range<usize>| {
        let mut set = tokio::task::JoinSet::new();
        for w in 0..SUBMITTERS {
            let http = http.clone();
            let base = base.to_string();
            let bodies: Vec<(usize, serde_json::Value)> =
                range.clone().filter(|i| i % SUBMITTERS == w).map(|i| (i, body(i))).collect();
            set.spawn(async move {
                let mut out = Vec::new();
                for (i, b) in bodies {
                    out.push((i, submit(&http, &base, &b).await));
                }
                out
            });
        }
        async move {
            let mut all: Vec<(usize, String)> = set.join_all().await.into_iter().flatten().collect();
            all.sort();
            all.into_iter().map(|(_, id)| id).collect::<Vec<String>>()
        }
    };
    let mut ids = submit_range(&base, 0..n / 2).await;
    // Kill once callbacks are flowing (1 % of the tasks have theirs), so the kill falls among
    // tickets being created, polled and callbacks being sent.
    let flowing = n.div_ceil(100);
    let deadline = Instant::now() + Duration::from_secs(120 + (n as u64) / 100);
    while callbacks.lock().unwrap().len() < flowing {
        assert!(Instant::now() < deadline, "no callbacks before the kill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The kill also falls in the window where tickets exist that serve never recorded: the target
    // makes the next tickets and holds their answers (10 s) until serve is gone.
    let create = Target::Sandbox.create_route();
    let before = t.sim.requests(create);
    t.sim.faults().inject_on(create, Fault::SlowResponse { ms: 10_000 }, KILL_WINDOW as u32);
    let batch = submit_range(&base, n / 2..n / 2 + KILL_BATCH).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while t.sim.requests(create) < before + KILL_WINDOW {
        assert!(Instant::now() < deadline, "creates never reached the kill window");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tickets_at_kill = t.sim.tickets().len();
    let callbacks_at_kill = callbacks.lock().unwrap().len();
    server.kill9();
    let kills = 1u64;
    let (_server, base) = Serve::launch(&http, dir.path(), Some(&config), &[]).await.expect("serve restarted");
    // Tasks accepted before the kill survived it: resubmitting is a repeat with the same id.
    let rest = submit_range(&base, n / 2..n).await;
    assert_eq!(&rest[..KILL_BATCH], &batch[..], "tasks accepted before the kill survived it");
    ids.extend(rest);
    let submitted = Instant::now();
    let want: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(want.len(), n, "one task per external id");

    // Wait (on the counted condition) until every task has its callback; give up after a limit
    // that scales with n.
    let limit = Duration::from_secs(120 + (n as u64) / 10);
    let deadline = Instant::now() + limit;
    loop {
        let got = {
            let c = callbacks.lock().unwrap();
            want.iter().filter(|id| c.contains_key(*id)).count()
        };
        if got == n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let finished = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let fired = injector.await.unwrap();
    let closed = tech.await.unwrap();

    // Count.
    let completed = list(&http, &base, "completed").await;
    let completed_ours = want.intersection(&completed).count();
    let lost: Vec<&String> = want.difference(&completed).collect();
    let tickets = t.sim.tickets();
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    let mut orphans = 0u64;
    for k in &tickets {
        match k.correlation_key.as_deref() {
            Some(key) if want.contains(key) => *per_key.entry(key).or_default() += 1,
            _ => orphans += 1,
        }
    }
    let duplicates: u64 = per_key.values().map(|c| (*c as u64).saturating_sub(1)).sum::<u64>() + orphans;
    let without_ticket = n - per_key.len();
    let (callback_tasks, deliveries, distinct_ids, extra_ids) = {
        let c = callbacks.lock().unwrap();
        let tasks = want.iter().filter(|id| c.contains_key(*id)).count();
        let deliveries: usize = c.values().map(Vec::len).sum();
        let mut distinct = 0;
        let mut extra = 0;
        for seen in c.values() {
            let s: BTreeSet<&String> = seen.iter().collect();
            distinct += s.len();
            extra += s.len().saturating_sub(1);
        }
        (tasks, deliveries, distinct, extra)
    };
    let faults_fired: u64 = fired.values().sum();
    let wall = finished.duration_since(started).as_secs_f64();
    let figures = serde_json::json!({
        "suite": "soak", "class": "serve + sandbox desk, 1 % faults of every kind, SIGKILL and restart mid-run",
        "target": "sandbox", "route": "-", "runs": 1, "scale": 1,
        "tasks": n, "completed": completed_ours, "lost": lost.len(), "duplicates": duplicates,
        "orphans": 0, "tickets": tickets.len(), "tickets_at_kill": tickets_at_kill, "callbacks_at_kill": callbacks_at_kill, "tasks_without_ticket": without_ticket,
        "faults_fired": faults_fired, "creates_unanswered_at_kill": KILL_WINDOW, "faults_planned": faults_total, "faults_by_kind": fired,
        "tickets_closed_by_technician": closed, "callbacks": callback_tasks, "deliveries": deliveries,
        "delivery_ids": distinct_ids, "tasks_with_two_delivery_ids": extra_ids, "kills": kills,
        "wall_secs": (wall * 10.0).round() / 10.0,
        "submit_secs": (submitted.duration_since(started).as_secs_f64() * 10.0).round() / 10.0,
        "tasks_per_sec": ((n as f64 / wall) * 10.0).round() / 10.0,
    });
    println!("soak figures: {figures}");
    sandbox::report::write("soak-serve", &figures);

    assert!(
        lost.is_empty(),
        "{} tasks lost (not completed), e.g. {:?}",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(without_ticket, 0, "tasks without a ticket");
    assert_eq!(duplicates, 0, "duplicate tickets ({orphans} without a task key)");
    assert_eq!(callback_tasks, n, "every task's callback delivered");
    assert_eq!(extra_ids, 0, "every copy of a task's callback carries one delivery id");
    assert_eq!(faults_fired as usize, faults_total, "every planned fault fired: {fired:?}");
    assert!(KINDS.iter().all(|k| fired[*k] > 0), "every fault kind fired: {fired:?}");
}
