//! Duplicate storm against the real `ticket-bridge serve` binary over HTTP: many concurrent
//! clients resend a smaller set of submissions; exactly one task and one ticket per key.
//! Normal run: 100 requests / 10 keys / 20 clients; `cargo xtask soak` (scale 10) gives 1,000 / 100 / 50.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::Serve;

fn scale() -> usize {
    std::env::var("TB_SOAK_SCALE").ok().and_then(|s| s.parse().ok()).filter(|n: &usize| *n > 0).unwrap_or(1)
}

fn body(key: usize) -> serde_json::Value {
    serde_json::json!({"source":"saviynt","external_id":format!("STORM-{key}"),"kind":"access","action":"create_account",
        "user":{"id":format!("u-{key}"),"name":"Ada Lovelace","email":"ada@example.com"},"application":"Payroll"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_duplicate_storm_makes_one_task_and_one_ticket_per_key() {
    let (requests, keys, clients) = (100 * scale(), 10 * scale(), (5 * scale()).clamp(20, 50));
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (_server, base) = Serve::launch(&http, dir.path(), None, &[]).await.expect("serve started");
    let mut set = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (http, base) = (http.clone(), base.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            for j in (c..requests).step_by(clients) {
                let key = j % keys;
                let res = http.post(format!("{base}/v1/tasks")).json(&body(key)).send().await.unwrap();
                let status = res.status().as_u16();
                let v: serde_json::Value = res.json().await.unwrap();
                out.push((key, status, v["id"].as_str().unwrap_or_default().to_string()));
            }
            out
        });
    }
    let (mut created, mut refused) = (0, 0);
    let mut ids: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        for (key, status, id) in r.unwrap() {
            total += 1;
            refused += usize::from(status != 201 && status != 200);
            created += usize::from(status == 201);
            if status == 201 || status == 200 {
                ids.entry(key).or_default().insert(id);
            }
        }
    }
    assert_eq!(total, requests);
    assert_eq!(created, keys, "one 201 per key");
    assert_eq!(ids.len(), keys);
    assert!(ids.values().all(|s| s.len() == 1), "a key got two task ids: {ids:?}");
    let task_ids: BTreeSet<String> = ids.into_values().flatten().collect();
    // Every task gets its ticket, exactly once.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut opened, mut duplicates, mut orphans);
    loop {
        let tickets: serde_json::Value =
            http.get(format!("{base}/sandbox/tickets")).send().await.unwrap().json().await.unwrap();
        let list = tickets.as_array().cloned().or_else(|| tickets["items"].as_array().cloned()).unwrap_or_default();
        let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
        for t in &list {
            *per_key.entry(t["correlation_key"].as_str().unwrap_or_default().to_string()).or_default() += 1;
        }
        duplicates = per_key.values().map(|n| n.saturating_sub(1)).sum::<usize>();
        orphans = per_key.keys().filter(|k| !task_ids.contains(*k)).count();
        opened = per_key.keys().filter(|k| task_ids.contains(*k)).count();
        if list.len() >= keys || duplicates + orphans > 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Counted, written whatever the outcome, then asserted.
    let v = serde_json::json!({"suite": "duplicate_storm", "class": format!("serve over HTTP ({clients} clients, {keys} keys)"),
        "route": "-", "runs": 1, "tasks": total, "completed": opened, "lost": keys - opened, "duplicates": duplicates + orphans,
        "errors": refused});
    sandbox::report::write("storm-serve", &v);
    assert_eq!(refused, 0, "requests answered with neither 201 nor 200");
    assert_eq!(duplicates, 0, "duplicate tickets");
    assert_eq!(orphans, 0, "tickets without a task");
    assert_eq!(opened, keys, "only {opened} of {keys} tasks got a ticket");
}
