//! Fault matrix: every target × every fault the simulators can inject, on the create route and on
//! the status route. A batch of tasks is driven through create → poll → complete with the fault
//! armed, retrying with an advancing clock until every task is final (bounded). Invariants: every
//! task completed or dead-lettered with a reason, none lost, exactly one ticket per completed task
//! (no duplicates, no orphans), Retry-After waited out (measured on the simulator's request log).
//! Outcomes: a retryable fault (every class but an outage on create) must end with every task
//! completed, so an engine that gives up on a 503 fails here; an outage on create dead-letters every
//! task with a reason naming the 503; a revoked token costs exactly one re-login (requests to the
//! target's auth routes). Each scenario writes its counts to
//! `target/reliability/*.json` for `cargo xtask reliability-report`.

mod support;

use bridge::domain::{Grouping, TaskState};
use chrono::{Duration, Utc};
use sandbox::faults::Fault;
use sandbox::targets::Target;
use std::collections::BTreeMap;
use support::{Backend, CONN, Harness, access_task};

/// Tasks per scenario (× `TB_SOAK_SCALE` under `cargo xtask soak`).
const BATCH: usize = 5;
/// Upper bound of create/poll rounds; each round advances the clock by `ROUND`.
const MAX_ROUNDS: usize = 12;
const ROUND_SECS: i64 = 40;
/// HTTP timeout for these connections; hangs last longer.
const TIMEOUT_MS: u64 = 400;
const HANG_MS: u64 = 900;
/// The target's "error body" is treated as transient.
const ERROR_BODY_RETRYABLE: bool = true;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A burst of 503s.
    Burst5xx,
    /// 503 on every request: tasks must end dead-lettered with the reason, none lost.
    Outage5xx,
    /// 429 with `Retry-After: 1` (the HTTP client waits it out).
    RetryAfter,
    /// 429 with `Retry-After: 30`, beyond the client's cap: the engine defers the task ≥ 30 s.
    RetryAfterBeyondCap,
    /// The simulator's own per-client rate limit (3 requests/s).
    RateLimit,
    /// The request hangs past the client timeout.
    Hang,
    /// 200 with truncated JSON.
    Malformed,
    /// The target's "200 (or 4xx) carrying an error body".
    ErrorBody,
    /// Access/session tokens revoked after the first round.
    TokenRevoked,
    /// The request is handled but the response is lost (500).
    LostResponse,
    /// NinjaOne: a second engine (cold cache, same secrets) and a refresh run interleave with the
    /// batch after the access tokens were revoked; a rotated refresh token must never be replayed.
    RefreshReplay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Create,
    Status,
}

fn scale() -> usize {
    std::env::var("TB_SOAK_SCALE").ok().and_then(|s| s.parse().ok()).filter(|n: &usize| *n > 0).unwrap_or(1)
}

/// The route a target's connector creates tickets on and the one it reads statuses from.
/// What one scenario saw; written as JSON for the report.
#[derive(Debug, Default)]
struct Counts {
    tasks: usize,
    completed: usize,
    dead_lettered: usize,
    lost: usize,
    duplicates: usize,
    orphans: usize,
    faults_fired: u32,
    /// Failed create attempts plus failed status batches.
    errors: usize,
    rounds: usize,
}

fn write_counts(class: Class, target: Target, on: On, c: &Counts) {
    let v = serde_json::json!({
        "suite": "fault_matrix", "scale": scale(), "class": format!("{class:?}"), "target": format!("{target:?}"), "route": format!("{on:?}"),
        "runs": 1, "tasks": c.tasks, "completed": c.completed, "dead_lettered": c.dead_lettered, "lost": c.lost,
        "duplicates": c.duplicates, "orphans": c.orphans, "faults_fired": c.faults_fired, "errors": c.errors, "rounds": c.rounds,
    });
    sandbox::report::write(&format!("fault-{class:?}-{target:?}-{on:?}"), &v);
}

async fn scenario(target: Target, class: Class, on: On) {
    let h = Harness::for_target(target, Backend::Sqlite, Grouping::None, |c| {
        c.settings.max_attempts = 5;
        let conn = c.connections.get_mut(CONN).unwrap();
        let http: toml::Table = toml::from_str(&format!(
            "max_retries = 1\nbackoff_base_ms = 5\nbackoff_max_ms = 20\ntimeout_ms = {TIMEOUT_MS}\nmax_retry_after_secs = 5\nrate_burst = 1000"
        ))
        .unwrap();
        conn.options.insert("http".into(), toml::Value::Table(http));
        conn.rate_limit_per_hour = 1_000_000;
    })
    .await;
    let sim = h.sim().clone();
    let (create_route, status_route) = (target.create_route(), target.status_route());
    let route = if on == On::Create { create_route } else { status_route };
    let n = BATCH * scale();
    let armed: u32 = match class {
        Class::Burst5xx => {
            sim.faults().inject_on(route, Fault::Status { status: 503 }, 3);
            3
        }
        Class::Outage5xx => {
            sim.faults().inject_on(route, Fault::Status { status: 503 }, 10_000);
            10_000
        }
        Class::RetryAfter => {
            sim.faults().inject_on(route, Fault::RateLimited { retry_after_secs: 1 }, 1);
            1
        }
        Class::RetryAfterBeyondCap => {
            sim.faults().inject_on(route, Fault::RateLimited { retry_after_secs: 30 }, 1);
            1
        }
        Class::RateLimit => {
            sim.set_rate_limit(Some(sandbox::RateRule {
                limit: 3,
                window: std::time::Duration::from_secs(1),
                per_route: false,
            }));
            0
        }
        Class::Hang => {
            sim.faults().inject_on(route, Fault::hang(std::time::Duration::from_millis(HANG_MS)), 2);
            2
        }
        Class::Malformed => {
            sim.faults().inject_on(route, Fault::MalformedJson, 2);
            2
        }
        Class::ErrorBody => {
            sim.faults().inject_on(route, Fault::ErrorBody, 2);
            2
        }
        Class::LostResponse => {
            sim.faults().inject_on(route, Fault::LoseResponse, 2);
            2
        }
        Class::TokenRevoked | Class::RefreshReplay => 0,
    };

    let mut ids = Vec::new();
    for i in 0..n {
        let (s, t) = h.submit(access_task(&format!("FM-{i}"))).await;
        assert_eq!(s, 201, "{t}");
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    let start = Utc::now();
    let mut now = start;
    let twin = (class == Class::RefreshReplay).then(|| h.twin());
    let mut counts = Counts { tasks: n, ..Default::default() };
    let mut fired_before_clear = None;
    let mut logins_before_revoke = None;
    for round in 0..MAX_ROUNDS {
        counts.rounds = round + 1;
        if round == 3 && class == Class::Outage5xx && on == On::Status {
            // Three rounds of a status outage: every task still waits for its status (none lost);
            // then the target comes back.
            for t in futures_join(&h, &ids).await {
                assert_eq!(t.state, TaskState::TicketOpen, "{target:?}: status outage moved task {}", t.id.as_str());
            }
            fired_before_clear = Some(armed - sim.faults().pending());
            sim.faults().clear();
        }
        if round == 0 {
            // First attempts, as the stream delivers them. Token faults revoke every access token
            // after the first ticket: the rest of the batch must log in again, once.
            for (i, id) in ids.iter().enumerate() {
                if i == 1 && matches!(class, Class::TokenRevoked | Class::RefreshReplay) {
                    logins_before_revoke = Some(logins(&sim, target));
                    sim.revoke_tokens();
                    if class == Class::RefreshReplay {
                        // The rest is left to the two instances' interleaved sweeps below.
                        break;
                    }
                }
                h.engine.create_one(&bridge::domain::TaskId::parse(id).unwrap(), now).await.unwrap();
            }
            if class == Class::RetryAfterBeyondCap && on == On::Create {
                // The 429'd task is deferred at least Retry-After (30 s), beyond the engine's own backoff.
                let deferred: Vec<_> =
                    futures_join(&h, &ids).await.into_iter().filter(|t| t.state == TaskState::Received).collect();
                assert_eq!(deferred.len(), 1, "{target:?}: exactly the 429'd task is deferred");
                let at = deferred[0].next_attempt_at.unwrap();
                assert!(
                    at >= now + Duration::seconds(30),
                    "{target:?}: retry at {at} ignores Retry-After 30 s from {now}"
                );
                assert_eq!(
                    h.engine.create_due(now + Duration::seconds(29), 100).await.created,
                    0,
                    "retried before Retry-After"
                );
            }
        } else if let Some(other) = &twin {
            // Two instances: a refresh run and a sweep of the other instance interleave.
            let (_, r) = tokio::join!(h.engine.refresh_tokens(now), other.create_due(now, 1000));
            counts.errors += r.errors as usize;
            h.engine.create_due(now, 1000).await;
        } else {
            h.engine.create_due(now, 1000).await;
        }
        // The technician closes every ticket that is still open.
        for t in sim.tickets() {
            if t.closed_at.is_none() {
                sim.close(&t.id.to_string(), Some(h.target.done_status)).unwrap();
            }
        }
        match &twin {
            Some(other) if round % 2 == 1 => {
                counts.errors += other.poll_connection(CONN, now, false).await.failed_batches as usize;
            }
            _ => {
                counts.errors += h.poll_at(now).await.failed_batches as usize;
            }
        }
        let tasks = futures_join(&h, &ids).await;
        if tasks.iter().all(|t| t.state.is_final()) {
            break;
        }
        now += Duration::seconds(ROUND_SECS);
    }

    // Invariants.
    let tasks = futures_join(&h, &ids).await;
    let tickets = sim.tickets();
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for t in &tickets {
        *per_key.entry(t.correlation_key.clone().unwrap_or_default()).or_default() += 1;
    }
    for t in &tasks {
        let id = t.id.as_str();
        let count = per_key.get(id).copied().unwrap_or(0);
        counts.duplicates += count.saturating_sub(1);
        // Failed create attempts (attempts count the successful one too).
        counts.errors += t.attempts.saturating_sub(u32::from(t.state != TaskState::Failed)) as usize;
        match t.state {
            TaskState::Completed => {
                counts.completed += 1;
                assert_eq!(count, 1, "{target:?}/{class:?}/{on:?}: completed task {id} has {count} tickets");
                assert_eq!(
                    t.ticket.as_ref().unwrap().id,
                    tickets.iter().find(|x| x.correlation_key.as_deref() == Some(id)).unwrap().id.to_string()
                );
            }
            TaskState::Failed => {
                counts.dead_lettered += 1;
                assert!(
                    t.last_error.as_deref().is_some_and(|e| !e.is_empty()),
                    "{target:?}: dead letter {id} without a reason"
                );
                assert!(count <= 1, "{target:?}/{class:?}: dead-lettered task {id} has {count} tickets");
            }
            other => {
                counts.lost += 1;
                write_counts(class, target, on, &counts);
                panic!(
                    "{target:?}/{class:?}/{on:?}: task {id} stuck in {other:?} after {MAX_ROUNDS} rounds: {:?}",
                    t.last_error
                );
            }
        }
    }
    counts.orphans =
        tickets.iter().filter(|t| !ids.iter().any(|i| t.correlation_key.as_deref() == Some(i.as_str()))).count();
    assert_eq!(counts.duplicates, 0, "{target:?}/{class:?}/{on:?}: duplicate tickets {per_key:?}");
    assert_eq!(counts.orphans, 0, "{target:?}/{class:?}/{on:?}: tickets without a task");
    counts.faults_fired = match class {
        Class::RateLimit => sim.throttled() as u32,
        Class::TokenRevoked | Class::RefreshReplay => u32::from(logins_before_revoke.is_some()),
        _ => fired_before_clear.unwrap_or(armed - sim.faults().pending()),
    };
    assert!(counts.faults_fired > 0, "{target:?}/{class:?}/{on:?}: the fault never fired");
    if class.retryable(on) {
        // A retryable fault ends with every task completed, each with exactly one ticket (checked above).
        let gave_up: Vec<_> = tasks
            .iter()
            .filter(|t| t.state != TaskState::Completed)
            .map(|t| (t.id.as_str().to_string(), t.last_error.clone()))
            .collect();
        assert!(gave_up.is_empty(), "{target:?}/{class:?}/{on:?}: gave up on a retryable fault: {gave_up:?}");
    } else {
        // A permanent fault dead-letters every task with a reason naming it.
        let needle = class.reason();
        for t in &tasks {
            assert_eq!(t.state, TaskState::Failed, "{target:?}/{class:?}/{on:?}: {} not dead-lettered", t.id.as_str());
            let reason = t.last_error.as_deref().unwrap_or_default();
            assert!(
                reason.contains(needle),
                "{target:?}/{class:?}/{on:?}: dead-letter reason {reason:?} does not name {needle:?}"
            );
        }
    }
    if let Some(before) = logins_before_revoke.filter(|_| !target.auth_routes().is_empty()) {
        let relogins = logins(&sim, target) - before;
        match class {
            // One engine: one login for the whole rest of the batch.
            Class::TokenRevoked => {
                assert_eq!(relogins, 1, "{target:?}: {relogins} re-authentications after one revocation")
            }
            // Two engines with separate caches: one each at most.
            _ => assert!((1..=2).contains(&relogins), "{target:?}: {relogins} re-authentications by two instances"),
        }
    }
    if class == Class::RetryAfter {
        // The request after the 429 came no sooner than Retry-After (1 s).
        let log: Vec<_> = sim.request_log().into_iter().filter(|r| r.route == route).collect();
        assert!(log.len() >= 2, "{target:?}: no request after the 429");
        let gap = log[1].at.duration_since(log[0].at);
        assert!(
            gap >= std::time::Duration::from_millis(990),
            "{target:?}/{on:?}: retried after {gap:?} despite Retry-After: 1"
        );
    }
    if target == Target::Ninjaone {
        let ninja = h.target.guard.downcast_ref::<sandbox::ninjaone::NinjaOne>().unwrap();
        assert_eq!(ninja.refresh_replays(), 0, "{class:?}: a rotated refresh token was replayed");
    }
    write_counts(class, target, on, &counts);
}

/// Requests to the target's login/renewal routes so far.
fn logins(sim: &sandbox::Sim, target: Target) -> usize {
    target.auth_routes().iter().map(|r| sim.requests(r)).sum()
}

impl Class {
    /// Whether every task must end completed despite the fault (on `on`).
    fn retryable(self, on: On) -> bool {
        match self {
            Class::Outage5xx => on == On::Status,
            Class::ErrorBody => ERROR_BODY_RETRYABLE,
            _ => true,
        }
    }

    /// What the reason of a task dead-lettered by this fault must contain.
    fn reason(self) -> &'static str {
        match self {
            Class::Outage5xx => "503",
            _ => "",
        }
    }
}

async fn futures_join(h: &Harness, ids: &[String]) -> Vec<bridge::domain::Task> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(h.task(id).await);
    }
    out
}

macro_rules! matrix {
    ($($m:ident => $target:expr),* $(,)?) => {
        $(mod $m {
            use super::{scenario, Class, On};
            use ::sandbox::targets::Target;
            macro_rules! t {
                ($name:ident, $class:expr, $on:expr) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() { scenario($target, $class, $on).await }
                };
            }
            t!(create_5xx_burst, Class::Burst5xx, On::Create);
            t!(create_5xx_outage, Class::Outage5xx, On::Create);
            t!(create_retry_after, Class::RetryAfter, On::Create);
            t!(create_retry_after_beyond_cap, Class::RetryAfterBeyondCap, On::Create);
            t!(create_hang, Class::Hang, On::Create);
            t!(create_malformed, Class::Malformed, On::Create);
            t!(create_error_body, Class::ErrorBody, On::Create);
            t!(create_lost_response, Class::LostResponse, On::Create);
            t!(status_5xx_burst, Class::Burst5xx, On::Status);
            t!(status_5xx_outage, Class::Outage5xx, On::Status);
            t!(status_retry_after, Class::RetryAfter, On::Status);
            t!(status_hang, Class::Hang, On::Status);
            t!(status_malformed, Class::Malformed, On::Status);
            t!(status_error_body, Class::ErrorBody, On::Status);
            t!(status_lost_response, Class::LostResponse, On::Status);
            t!(rate_limited_by_target, Class::RateLimit, On::Create);
            t!(token_revoked_mid_run, Class::TokenRevoked, On::Create);
            t!(refresh_replay_two_instances, Class::RefreshReplay, On::Create);
        })*
    };
}

matrix!(
    desk => Target::Sandbox,
    rt => Target::Rt,
    generic => Target::Generic,
    bms => Target::Bms,
    vsa => Target::Vsa,
    ninjaone => Target::Ninjaone,
    otrs => Target::Otrs,
);
