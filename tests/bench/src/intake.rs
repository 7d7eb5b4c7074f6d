//! Benchmark 5: `ticket-bridge serve` (release build, SQLite, built-in sandbox desk) under wrk
//! from a second process: 30 s, 32 connections, unique and duplicate external ids. Then a constant-rate
//! (open-loop, wrk2-style) load of unique ids at 50 % and 90 % of wrk's unique-key rate, whose latencies
//! are shown plain and corrected for coordinated omission.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::constant_rate::{self, Percentiles, RateResult};
use crate::{Row, repo_root};

const SECS: u32 = 30;
const CONNECTIONS: u32 = 32;
/// Length of each constant-rate run.
const RATE_SECS: u32 = 20;
/// Constant-rate loads as fractions of wrk's measured unique-key throughput.
const RATE_FRACTIONS: [f64; 2] = [0.5, 0.9];

/// wrk's closed-loop runs (label, result) and the constant-rate runs.
type Measured = (Vec<(&'static str, WrkResult)>, Vec<RateResult>);

fn unique_body(run: &str, i: u64) -> String {
    format!(
        r#"{{"source":"rate","external_id":"R-{run}-{i}","kind":"access","action":"add_access","user":{{"id":"u-1","email":"ada@example.com"}},"application":"Payroll","entitlements":["payroll-admin"]}}"#
    )
}

const UNIQUE_LUA: &str = r#"
local n = 0
function setup(thread)
  n = n + 1
  thread:set("tid", n)
end
local counter = 0
function request()
  counter = counter + 1
  local body = string.format('{"source":"wrk","external_id":"U-%s-%d","kind":"access","action":"add_access","user":{"id":"u-1","email":"ada@example.com"},"application":"Payroll","entitlements":["payroll-admin"]}', tostring(tid) .. "-" .. tostring(os.time()), counter)
  return wrk.format("POST", "/v1/tasks", {["content-type"] = "application/json"}, body)
end
"#;

const DUPLICATE_LUA: &str = r#"
wrk.method = "POST"
wrk.path = "/v1/tasks"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"source":"wrk","external_id":"DUP-1","kind":"access","action":"add_access","user":{"id":"u-1","email":"ada@example.com"},"application":"Payroll","entitlements":["payroll-admin"]}'
"#;

struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    non_2xx: u64,
    errors: String,
}

fn ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60_000.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}

fn parse(out: &str) -> Result<WrkResult> {
    let mut r =
        WrkResult { rps: 0.0, p50_ms: f64::NAN, p99_ms: f64::NAN, requests: 0, non_2xx: 0, errors: String::new() };
    for line in out.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50%") {
            r.p50_ms = ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = l.strip_prefix("99%") {
            r.p99_ms = ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse().unwrap_or(0);
        } else if l.starts_with("Socket errors:") {
            r.errors = l.to_string();
        } else if l.contains("requests in") {
            r.requests = l.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    if r.rps == 0.0 {
        bail!("cannot read wrk output:\n{out}");
    }
    Ok(r)
}

fn wait_listening(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("ticket-bridge serve did not listen on {port} within {timeout:?}")
}

pub fn run() -> Result<(Vec<Row>, String)> {
    if Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        bail!("wrk is not installed (apt-get install wrk); intake throughput skipped");
    }
    let release =
        std::env::var_os("BENCH_RELEASE_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target/release"));
    let bin = release.join("ticket-bridge");
    if !bin.is_file() {
        bail!("{} is missing (cargo build --release -p ticket-bridge)", bin.display());
    }
    let load_before = load_average();
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::File::create(dir.path().join("serve.log"))?;
    let mut child = Command::new(&bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .env_remove("TICKET_BRIDGE_CONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let result = (|| -> Result<Measured> {
        wait_listening(port, Duration::from_secs(30))?;
        let mut out = Vec::new();
        for (label, lua) in [("unique keys", UNIQUE_LUA), ("duplicate key", DUPLICATE_LUA)] {
            let script = dir.path().join(format!("{}.lua", label.replace(' ', "-")));
            std::fs::File::create(&script)?.write_all(lua.as_bytes())?;
            eprintln!("bench: wrk {label}: {SECS} s, {CONNECTIONS} connections");
            let o = Command::new("wrk")
                .args(["-t2", &format!("-c{CONNECTIONS}"), &format!("-d{SECS}s"), "--latency", "--timeout", "5s", "-s"])
                .arg(&script)
                .arg(format!("http://127.0.0.1:{port}/v1/tasks"))
                .output()
                .context("cannot run wrk")?;
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let r = parse(&text)?;
            if r.requests > 0 && r.non_2xx == r.requests {
                bail!("every {label} request was answered with an error status; wrk output:\n{text}");
            }
            out.push((label, r));
        }
        let peak = out.first().map(|(_, r)| r.rps).unwrap_or(0.0);
        let url = format!("http://127.0.0.1:{port}/v1/tasks");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let mut rates = Vec::new();
        for fraction in RATE_FRACTIONS {
            let rate = (peak * fraction).round().max(1.0);
            let tag = ulid::Ulid::new().to_string();
            eprintln!(
                "bench: constant rate {rate:.0} req/s ({:.0} % of wrk's {peak:.0}): {RATE_SECS} s",
                fraction * 100.0
            );
            let r =
                rt.block_on(constant_rate::run(&url, rate, RATE_SECS, CONNECTIONS as usize, |i| unique_body(&tag, i)))?;
            if r.requests > 0 && r.non_2xx + r.errors == r.requests {
                bail!("every constant-rate request at {rate:.0} req/s failed");
            }
            rates.push(r);
        }
        Ok((out, rates))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let load_after = load_average();
    let (results, rates) = result?;
    let mut rows = Vec::new();
    let mut notes = format!(
        "Machine during this run: {}; load average (1, 5, 15 min) {load_before} before the section, {load_after} \
         after it. Everything else on the machine competes for the same cores: a load above the core count means \
         the figures below are for a shared machine, not for the bridge alone.\n\n\
         `target/release/ticket-bridge serve` without a config (SQLite store, built-in sandbox desk, log level info to a \
         file; its background workers create the tickets meanwhile), then `wrk -t2 -c{CONNECTIONS} -d{SECS}s --latency` on \
         `POST /v1/tasks` from a separate process on the same 2 cores. *Unique*: a Lua script gives every request a new \
         external_id (each is a new task: SQLite insert + ticket creation on the desk). *Duplicate*: one body repeated \
         (after the first, each is an idempotent repeat answered from the store).\n\n\
         | keys | requests | req/s | p50 | p99 | non-2xx | socket errors |\n|---|---|---|---|---|---|---|\n",
        machine()
    );
    for (label, r) in &results {
        notes.push_str(&format!(
            "| {label} | {} | {:.0} | {:.2} ms | {:.2} ms | {} | {} |\n",
            r.requests,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.non_2xx,
            if r.errors.is_empty() { "none" } else { &r.errors }
        ));
        rows.push(Row::new(
            format!("intake {label}: throughput"),
            format!("{:.0} req/s ({} non-2xx of {})", r.rps, r.non_2xx, r.requests),
            "≥ 5,000 req/s",
            Some(r.rps >= 5000.0 && r.non_2xx == 0),
            format!("wrk {SECS} s, {CONNECTIONS} connections, 2 threads, same machine"),
        ));
        rows.push(Row::new(
            format!("intake {label}: latency p50 / p99"),
            format!("{:.2} ms / {:.2} ms", r.p50_ms, r.p99_ms),
            "p99 ≤ 10 ms",
            Some(r.p99_ms <= 10.0),
            "wrk --latency percentiles (plain wrk: not corrected for coordinated omission)",
        ));
    }
    notes.push_str(&format!(
        "\nConstant rate (open loop, wrk2-style): a Rust load generator in the bench crate (tokio, reqwest, at most \
         {CONNECTIONS} requests in flight) schedules request *i* at start + *i*/rate and sends unique-key bodies for \
         {RATE_SECS} s at {} of the unique-key req/s wrk measured above. *Plain* latency runs from the actual send, \
         *corrected* from the scheduled send, so waiting behind a slow answer counts (coordinated omission).\n\n\
         | rate | achieved | requests | non-2xx | errors | latency | p50 | p90 | p99 | p99.9 | max |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        RATE_FRACTIONS.map(|f| format!("{:.0} %", f * 100.0)).join(" and ")
    ));
    for r in &rates {
        for (kind, p) in [("plain", &r.plain), ("corrected", &r.corrected)] {
            notes.push_str(&format!(
                "| {:.0} req/s | {:.0} req/s | {} | {} | {} | {kind} | {} |\n",
                r.target_rps,
                r.achieved_rps,
                r.requests,
                r.non_2xx,
                r.errors,
                percentile_cells(p)
            ));
        }
        rows.push(Row::new(
            format!("intake constant {:.0} req/s: p99 plain / corrected", r.target_rps),
            format!("{:.2} ms / {:.2} ms", r.plain.p99, r.corrected.p99),
            "p99 ≤ 10 ms",
            Some(r.corrected.p99 <= 10.0 && r.non_2xx == 0 && r.errors == 0),
            format!(
                "open-loop constant rate {RATE_SECS} s, unique keys; corrected = from the scheduled send (coordinated \
                 omission); {} non-2xx, {} errors of {}",
                r.non_2xx, r.errors, r.requests
            ),
        ));
    }
    Ok((rows, notes))
}

fn percentile_cells(p: &Percentiles) -> String {
    [p.p50, p.p90, p.p99, p.p999, p.max].map(|v| format!("{v:.2} ms")).join(" | ")
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages, as `"a, b, c"`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| "unknown".into())
}

/// Cores and CPU model, as the page header gives them.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(str::trim)
                .map(String::from)
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {cpu}")
}
