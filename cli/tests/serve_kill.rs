//! Crash points of the real `serve` process: SIGKILL while tickets are being created (each ticket
//! exists in the ITSM, its response not yet read, so the task is not recorded), restart on the same
//! data dir, and again while closed tickets are being polled. Afterwards every task has exactly one
//! ticket carrying its correlation key, and every task completes: none lost, no duplicate.

mod support;

use sandbox::faults::Fault;
use sandbox::targets::{Target, spawn};
use std::collections::BTreeSet;
use support::{Serve, wait_for, write_config_with};

/// Tasks per run: more than the creation lanes, so some are still queued in memory at the kill.
const TASKS: usize = 12;

async fn states(http: &reqwest::Client, base: &str, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let v: serde_json::Value = match http.get(format!("{base}/v1/tasks/{id}")).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        out.push(v["state"].as_str().unwrap_or("unknown").to_string());
    }
    out
}

async fn kill9_mid_run_loses_nothing_and_duplicates_nothing(target: Target) {
    let t = spawn(target).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = toml::Table::new();
    settings.insert("allow_private_callbacks".into(), true.into());
    // A worker's claim lapses 2 s after a crash, so the restarted sweep (every 5 s) takes it over.
    settings.insert("claim_secs".into(), 2.into());
    settings.insert("retry_base_secs".into(), 1.into());
    settings.insert("retry_max_secs".into(), 2.into());
    // An attempt runs within four fifths of its claim: no rate-limit waits of seconds here.
    let mut conn = toml::Table::new();
    conn.insert("rate_limit_per_hour".into(), 1_000_000.into());
    let config = write_config_with(dir.path(), &t, settings, conn);
    let http = reqwest::Client::new();

    // 1. Kill while creates are in flight: the target makes each ticket, then holds the answer.
    t.sim.faults().inject_on(target.create_route(), Fault::SlowResponse { ms: 10_000 }, 1_000);
    let (server, base) = Serve::launch(&http, dir.path(), Some(&config), &[]).await.expect("serve started");
    let mut ids = Vec::new();
    for i in 0..TASKS {
        let body = serde_json::json!({"source":"saviynt","external_id":format!("KILL-{i}"),"kind":"access",
            "action":"create_account","user":{"id":format!("u-{i}"),"email":format!("user{i}@acme.io")},
            "application":"Payroll"});
        let res = http.post(format!("{base}/v1/tasks")).json(&body).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 201, "{target:?}");
        ids.push(res.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    wait_for("tickets created but not answered", || async {
        let n = t.sim.tickets().len();
        (n >= 4).then_some(n.into())
    })
    .await;
    let made = t.sim.tickets().len();
    let recorded = states(&http, &base, &ids).await.iter().filter(|s| *s == "ticket_open").count();
    assert!(recorded < made, "{target:?}: the kill must fall in the window (made {made}, recorded {recorded})");
    server.kill9();
    t.sim.faults().clear();

    // 2. Restart: claims lapse, the sweep recovers the made tickets by correlation and creates the rest.
    let (server, base) = Serve::launch(&http, dir.path(), Some(&config), &[]).await.expect("serve restarted");
    wait_for("every task has its ticket", || async {
        let s = states(&http, &base, &ids).await;
        s.iter().all(|s| s == "ticket_open").then_some(serde_json::Value::Null)
    })
    .await;
    let tickets = t.sim.tickets();
    let keys: BTreeSet<String> = tickets.iter().filter_map(|k| k.correlation_key.clone()).collect();
    assert_eq!(tickets.len(), TASKS, "{target:?}: one ticket per task, no duplicate");
    assert_eq!(keys, ids.iter().cloned().collect::<BTreeSet<_>>(), "{target:?}: each ticket carries its task's key");

    // 3. Technicians close every ticket; kill again while the poller is reporting completions.
    for k in &tickets {
        t.sim.close(&k.id.to_string(), Some(t.done_status)).unwrap();
    }
    wait_for("the poller to see a closed ticket", || async {
        let s = states(&http, &base, &ids).await;
        s.iter().any(|s| s == "completed").then_some(serde_json::Value::Null)
    })
    .await;
    server.kill9();
    let (_server, base) = Serve::launch(&http, dir.path(), Some(&config), &[]).await.expect("serve restarted");
    wait_for("every task completed", || async {
        let s = states(&http, &base, &ids).await;
        s.iter().all(|s| s == "completed").then_some(serde_json::Value::Null)
    })
    .await;
    let completed = states(&http, &base, &ids).await.iter().filter(|s| *s == "completed").count();
    let tickets = t.sim.tickets();
    let with_task = tickets.iter().filter(|k| k.correlation_key.as_ref().is_some_and(|c| ids.contains(c))).count();
    let keys: BTreeSet<_> = tickets.iter().filter_map(|k| k.correlation_key.clone()).collect();
    let counts = Counts {
        tasks: ids.len(),
        completed,
        lost: ids.len() - completed,
        duplicates: tickets.len() - keys.len() + (tickets.len() - with_task),
        unrecorded_at_kill: made - recorded,
    };
    write_counts(&format!("{target:?}").to_lowercase(), &counts);
    assert_eq!(tickets.len(), TASKS, "{target:?}: still one ticket per task");
}

/// What one run counted.
struct Counts {
    tasks: usize,
    completed: usize,
    lost: usize,
    duplicates: usize,
    unrecorded_at_kill: usize,
}

/// Adds this run to the reliability report (`cargo xtask reliability-report`).
fn write_counts(target: &str, c: &Counts) {
    let v = serde_json::json!({"suite": "crash_points", "class": "serve SIGKILL mid-create and mid-poll, restart",
        "target": target, "route": "-", "runs": 1, "tasks": c.tasks, "completed": c.completed, "lost": c.lost,
        "duplicates": c.duplicates, "faults_fired": c.unrecorded_at_kill});
    sandbox::report::write(&format!("crash-serve-kill9-{target}"), &v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_sandbox() {
    kill9_mid_run_loses_nothing_and_duplicates_nothing(Target::Sandbox).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_rt() {
    kill9_mid_run_loses_nothing_and_duplicates_nothing(Target::Rt).await
}
