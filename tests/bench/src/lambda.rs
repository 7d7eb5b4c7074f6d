//! Benchmark 4: each function binary (x86_64 release build) started under a minimal Lambda
//! Runtime API emulator on loopback, handling its first event against moto and the sandbox desk:
//! time from exec to the function's init (first `/next`) and to its response, and peak RSS.

use anyhow::{Context, Result, bail};
use bridge::secrets::Secrets;
use sandbox::targets::Target;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Row, common, repo_root};

const KEY: &str = "tb_bench_lambda_key";
const START_TARGET: Duration = Duration::from_millis(20);
const RSS_TARGET_KB: i64 = 32 * 1024;
/// Cold starts per function; the table reports medians.
const RUNS: usize = 5;

/// What the emulator saw from the function.
#[derive(Debug)]
enum Seen {
    /// The function asked for its next event (init finished).
    Next,
    /// The function posted its response (or an error) for the event.
    Response { ok: bool, body: String },
}

/// Serves one event on `/next`, then holds further `/next` calls; reports what it sees.
fn emulator(event: Value, tx: mpsc::Sender<(Instant, Seen)>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let event = event.to_string();
    std::thread::spawn(move || {
        let mut served = false;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let tx = tx.clone();
            let first = !served;
            // One connection at a time is enough: the runtime client keeps its connection alive.
            served = true;
            let event = event.clone();
            std::thread::spawn(move || {
                let _ = serve_conn(stream, first, &event, &tx);
            });
        }
    });
    Ok(port)
}

fn serve_conn(stream: TcpStream, mut give_event: bool, event: &str, tx: &mpsc::Sender<(Instant, Seen)>) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        let at = Instant::now();
        if method == "GET" && path.ends_with("/runtime/invocation/next") {
            let _ = tx.send((at, Seen::Next));
            if !give_event {
                // Hold the second `/next` (the function waits for its next event) until killed.
                std::thread::sleep(Duration::from_secs(600));
                return Ok(());
            }
            give_event = false;
            let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
            write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: bench-req-1\r\n\
                 lambda-runtime-deadline-ms: {deadline}\r\nlambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:bench\r\n\
                 lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\ncontent-length: {}\r\n\r\n{event}",
                event.len()
            )?;
        } else if method == "POST" && (path.ends_with("/response") || path.ends_with("/error")) {
            let _ = tx.send((
                at,
                Seen::Response { ok: path.ends_with("/response"), body: String::from_utf8_lossy(&body).into_owned() },
            ));
            write!(
                out,
                "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{{\"status\":\"OK\"}}"
            )?;
        } else {
            let _ = tx.send((
                at,
                Seen::Response { ok: false, body: format!("{method} {path}: {}", String::from_utf8_lossy(&body)) },
            ));
            write!(out, "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{{}}")?;
        }
        out.flush()?;
    }
}

/// A TCP proxy that adds up how long the function waits for the server behind it (moto, the desk): per HTTP
/// exchange, from the last request byte it sent to the first response byte. Subtracting it from
/// the first-response time gives the function's own time ("excluding network to AWS").
struct WaitClock {
    url: String,
    waited_ns: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl WaitClock {
    fn start(endpoint: &str) -> Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        let upstream = endpoint.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let waited_ns = Arc::new(AtomicU64::new(0));
        let total = waited_ns.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let pending: Arc<Mutex<Option<Instant>>> = Arc::default();
                let (mut c_read, mut s_write) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                let (mut s_read, mut c_write) = (server, client);
                let p = pending.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        *p.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let total = total.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = s_read.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if let Some(sent) = pending.lock().unwrap_or_else(|e| e.into_inner()).take() {
                            total.fetch_add(sent.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        }
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Ok(Self { url, waited_ns })
    }

    /// Time waited since the last call.
    fn take(&self) -> Duration {
        Duration::from_nanos(self.waited_ns.swap(0, std::sync::atomic::Ordering::Relaxed))
    }
}

struct Measured {
    init: Duration,
    response: Duration,
    rss_kb: i64,
    ok: bool,
    body: String,
    /// Time spent waiting for moto (the AWS stand-in) during the run.
    aws_wait: Duration,
    /// Time spent waiting for the sandbox desk (the ITSM) during the run.
    itsm_wait: Duration,
}

fn run_function(
    bin: &PathBuf,
    event: Value,
    env: &[(String, String)],
    clock: &WaitClock,
    desk_clock: &WaitClock,
) -> Result<Measured> {
    clock.take();
    desk_clock.take();
    let (tx, rx) = mpsc::channel();
    let port = emulator(event, tx)?;
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut init = None;
    let mut response = None;
    let deadline = started + Duration::from_secs(30);
    while response.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((at, Seen::Next)) => {
                if init.is_none() {
                    init = Some(at - started);
                }
            }
            Ok((at, Seen::Response { ok, body })) => response = Some((at - started, ok, body)),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} gave no response within 30 s", bin.display());
            }
        }
    }
    // Let it reach its next `/next` so the peak covers the whole invocation, then stop it.
    let _ = rx.recv_timeout(Duration::from_secs(2));
    // Peak RSS of the function's own image: VmHWM belongs to the address space exec created.
    // (wait4's ru_maxrss also counts the bench's pages the child shared between fork and exec, so
    // it reports at least the bench's own size.)
    let hwm_kb = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|st| {
        st.lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<i64>().ok())
    });
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("wait4 failed for {}", bin.display());
    }
    let (response, ok, body) = response.unwrap_or_default();
    let aws_wait = clock.take();
    let itsm_wait = desk_clock.take();
    let rss_kb = hwm_kb.unwrap_or(usage.ru_maxrss);
    Ok(Measured { init: init.unwrap_or(response), response, rss_kb, ok, body, aws_wait, itsm_wait })
}

fn apigw_event(body: &Value) -> Value {
    json!({
        "version": "2.0", "routeKey": "POST /v1/tasks", "rawPath": "/v1/tasks", "rawQueryString": "",
        "headers": {"authorization": format!("Bearer {KEY}"), "content-type": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123", "http": {"method": "POST", "path": "/v1/tasks", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "bench"},
            "requestId": "req-1", "routeKey": "POST /v1/tasks", "stage": "$default", "time": "23/Nov/2026:10:00:00 +0000", "timeEpoch": 1795428000000i64
        },
        "body": body.to_string(), "isBase64Encoded": false
    })
}

fn stream_event(id: &str) -> Value {
    json!({"Records": [{
        "eventID": "ev1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {"ApproximateCreationDateTime": 1795428000.0,
            "Keys": {"PK": {"S": format!("TASK#{id}")}, "SK": {"S": "TASK"}},
            "NewImage": {"PK": {"S": format!("TASK#{id}")}, "SK": {"S": "TASK"}, "state_pk": {"S": "STATE#received"}},
            "SequenceNumber": "1000", "SizeBytes": 120, "StreamViewType": "NEW_IMAGE"},
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/tb/stream/2026-11-23T00:00:00.000"
    }]})
}

fn schedule_event() -> Value {
    json!({"version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
        "time": "2026-11-23T10:00:00Z", "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/tb"], "detail": {}})
}

pub async fn run() -> Result<(Vec<Row>, String)> {
    let endpoint = std::env::var(bridge::aws::ENDPOINT_ENV)
        .context("TB_AWS_ENDPOINT is not set: run `cargo xtask bench` (it starts moto)")?;
    let release =
        std::env::var_os("BENCH_RELEASE_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target/release"));
    let sdk = bridge::aws::sdk_config(Some(&endpoint)).await;
    let table = format!("bench-fn-{}", ulid::Ulid::new().to_string().to_lowercase());
    bridge::store::dynamo::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .map_err(|e| anyhow::anyhow!("create table: {e}"))?;
    let desk = sandbox::targets::spawn(Target::Sandbox).await?;
    let secret = format!("tb/bench-{}", ulid::Ulid::new().to_string().to_lowercase());
    let secrets =
        bridge::secrets::aws::AwsSecrets::new(aws_sdk_secretsmanager::Client::new(&sdk), Duration::from_secs(60));
    common::put_secret(&secrets as &dyn Secrets, &secret, &desk).await?;
    // The same timing proxy in front of the sandbox desk shows how much of *own* is ITSM round trips.
    let desk_clock = WaitClock::start(&desk.base_url)?;
    let config = format!(
        "[settings]\nstore = \"dynamodb\"\nsecrets = \"aws\"\ntable_name = \"{table}\"\nallow_private_callbacks = true\n\
         [[auth.api_keys]]\nname = \"bench\"\nsha256 = \"{}\"\nscope = \"admin\"\n\
         [connections.desk]\nkind = \"sandbox\"\nbase_url = \"{}\"\nsecret = \"{secret}\"\n",
        bridge::engine::api::hash_key(KEY),
        desk_clock.url
    );
    let clock = WaitClock::start(&endpoint)?;
    let env = vec![
        ("TB_AWS_ENDPOINT".to_string(), clock.url.clone()),
        ("TICKET_BRIDGE_CONFIG_TOML".to_string(), config),
        ("RUST_LOG".to_string(), "info".to_string()),
    ];
    let mut rows = Vec::new();
    let mut notes = format!(
        "x86_64 release builds (`target/release/<function>`, the workspace release profile: opt-level z, fat LTO, \
         1 codegen unit, stripped), not the arm64 Lambda artefacts (this machine cannot run those natively). Each binary is \
         exec'd {RUNS} times (a cold start each) with `AWS_LAMBDA_RUNTIME_API` pointing at an emulator in the bench that \
         serves one event on `/2018-06-01/runtime/invocation/next` and records the `/response` POST; the table shows \
         medians. The handlers call DynamoDB, Secrets Manager and EventBridge on moto over loopback through a timing proxy \
         in the bench that adds up how long the function waited for each answer (last request byte → first response \
         byte): *own* = first response − AWS wait, the figure the ≤ 20 ms target is about (\"excluding network to AWS\"; \
         moto, a Python server, takes several ms per call). Calls to the sandbox desk (the ITSM) stay in *own*. \
         *init* = exec → first `/next` (runtime + engine set-up, no network). Peak RSS is the largest `VmHWM` \
         (`/proc/<pid>/status`, the high-water mark of the address space exec created) over the runs, each read after the function asked for its second event (earlier runs of this bench used `wait4`'s `ru_maxrss`, which also counts the bench's own pages shared before exec and so overstated it).\n\n\
         *ITSM wait* is the part of *own* spent waiting for the desk (measured the same way).\n\n\
         | function | event | init | first response | AWS wait | own | of which ITSM wait | peak RSS | result |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let names = ["intake", "create-ticket", "poll-status", "refresh-token"];
    let mut runs: std::collections::BTreeMap<&str, Vec<Measured>> = Default::default();
    for i in 0..RUNS {
        let mut task_id: Option<String> = None;
        for name in names {
            let bin = release.join(name);
            if !bin.is_file() {
                continue;
            }
            let event = match name {
                "intake" => apigw_event(&common::access_task(&format!("BENCH-FN-{i}"))),
                "create-ticket" => match &task_id {
                    Some(id) => stream_event(id),
                    None => bail!("intake produced no task id for create-ticket"),
                },
                _ => schedule_event(),
            };
            let m = run_function(&bin, event, &env, &clock, &desk_clock)?;
            if name == "intake" {
                let body: Value = serde_json::from_str(&m.body).unwrap_or(Value::Null);
                let inner: Value = body
                    .get("body")
                    .and_then(Value::as_str)
                    .and_then(|b| serde_json::from_str(b).ok())
                    .unwrap_or(Value::Null);
                task_id = inner.get("id").and_then(Value::as_str).map(str::to_string);
            }
            runs.entry(name).or_default().push(m);
        }
    }
    for name in names {
        let Some(ms) = runs.get(name).filter(|m| !m.is_empty()) else {
            rows.push(Row::new(
                format!("{name}: start-up"),
                "not measured",
                "≤ 20 ms",
                Some(false),
                format!("{} missing", release.join(name).display()),
            ));
            continue;
        };
        let med = |f: &dyn Fn(&Measured) -> Duration| {
            let mut v: Vec<Duration> = ms.iter().map(f).collect();
            v.sort();
            v[v.len() / 2]
        };
        let init = med(&|m| m.init);
        let response = med(&|m| m.response);
        let aws = med(&|m| m.aws_wait);
        let own = med(&|m| m.response.saturating_sub(m.aws_wait));
        let itsm = med(&|m| m.itsm_wait);
        let rss_kb = ms.iter().map(|m| m.rss_kb).max().unwrap_or(0);
        let all_ok = ms.iter().all(|m| m.ok);
        let result: String = ms[0].body.chars().take(80).collect();
        let ms_ = |d: Duration| d.as_secs_f64() * 1e3;
        notes.push_str(&format!(
            "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MB | {}: `{}` |\n",
            match name {
                "intake" => "API Gateway v2 POST /v1/tasks",
                "create-ticket" => "DynamoDB stream INSERT",
                _ => "EventBridge schedule",
            },
            ms_(init),
            ms_(response),
            ms_(aws),
            ms_(own),
            ms_(itsm),
            rss_kb as f64 / 1024.0,
            if all_ok { "ok" } else { "ERROR" },
            result.replace('|', "\\|").replace('`', "'")
        ));
        rows.push(Row::new(
            format!("{name}: exec → first response, excluding AWS wait"),
            format!(
                "{:.1} ms (init {:.1} ms; first response {:.1} ms of which {:.1} ms waiting on moto; ITSM wait {:.1} ms){}",
                ms_(own),
                ms_(init),
                ms_(response),
                ms_(aws),
                ms_(itsm),
                if all_ok { "" } else { ", handler returned an error" }
            ),
            "≤ 20 ms",
            Some(all_ok && own <= START_TARGET),
            format!("median of {RUNS} cold starts under the local Runtime API emulator, x86_64 release binary"),
        ));
        rows.push(Row::new(
            format!("{name}: peak RSS"),
            format!("{:.1} MB", rss_kb as f64 / 1024.0),
            "≤ 32 MB",
            Some(rss_kb <= RSS_TARGET_KB),
            format!("largest VmHWM (/proc/<pid>/status) over {RUNS} runs, init + first event"),
        ));
    }
    Ok((rows, notes))
}
