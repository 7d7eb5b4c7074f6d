//! Benchmark 2: DynamoDB requests by operation and consumed capacity for one task's whole life
//! (intake → ticket → 3 polls → completed), against moto, as the Lambda functions run it.

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::config::{ConfigBag, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::body::SdkBody;
use bridge::domain::{TaskId, TaskState};
use bridge::store::Store;
use bridge::store::dynamo::{CountOps, DynamoStore, OpCounter};
use chrono::{Duration, Utc};
use sandbox::targets::Target;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::Row;
use crate::common::{self, CONN};

/// Operations that accept `ReturnConsumedCapacity`.
const CAPACITY_OPS: [&str; 10] = [
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "TransactWriteItems",
    "TransactGetItems",
    "BatchGetItem",
    "BatchWriteItem",
];

/// Asks DynamoDB for `ReturnConsumedCapacity: TOTAL` on every data operation and sums what comes
/// back per operation (`None` entries: the response carried no figure).
#[derive(Debug, Default)]
struct Capacity {
    by_op: Mutex<BTreeMap<String, (f64, u32, u32)>>, // (capacity units, responses with a figure, responses without)
}

#[derive(Debug, Clone)]
struct CapacityInterceptor(Arc<Capacity>);

fn op_name(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>().map_or("unknown", Metadata::name).to_string()
}

impl Intercept for CapacityInterceptor {
    fn name(&self) -> &'static str {
        "BenchConsumedCapacity"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !CAPACITY_OPS.contains(&op_name(cfg).as_str()) {
            return Ok(());
        }
        let req = context.request_mut();
        let Some(bytes) = req.body().bytes() else { return Ok(()) };
        let mut v: serde_json::Value = serde_json::from_slice(bytes)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("ReturnConsumedCapacity".into(), "TOTAL".into());
        }
        let body = serde_json::to_vec(&v)?;
        let len = body.len();
        *req.body_mut() = SdkBody::from(body);
        req.headers_mut().insert("content-length", len.to_string());
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = op_name(cfg);
        if !CAPACITY_OPS.contains(&op.as_str()) {
            return Ok(());
        }
        let units = context
            .response()
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v.get("ConsumedCapacity").cloned())
            .map(|c| match c {
                serde_json::Value::Array(items) => items.iter().map(units_of).sum(),
                other => units_of(&other),
            });
        let mut m = self.0.by_op.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(op).or_default();
        match units {
            Some(u) => {
                e.0 += u;
                e.1 += 1;
            }
            None => e.2 += 1,
        }
        Ok(())
    }
}

fn units_of(c: &serde_json::Value) -> f64 {
    c.get("CapacityUnits").and_then(serde_json::Value::as_f64).unwrap_or(0.0)
}

pub async fn run() -> Result<(Vec<Row>, String)> {
    let endpoint = std::env::var(bridge::aws::ENDPOINT_ENV)
        .context("TB_AWS_ENDPOINT is not set: run `cargo xtask bench` (it starts moto)")?;
    let sdk = bridge::aws::sdk_config(Some(&endpoint)).await;
    let counter = OpCounter::new();
    let capacity = Arc::new(Capacity::default());
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(CountOps(counter.clone()))
        .interceptor(CapacityInterceptor(capacity.clone()))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(conf);
    let table = format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase());
    bridge::store::dynamo::create_table(&client, &table).await.map_err(|e| anyhow::anyhow!("create table: {e}"))?;
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(client, table));
    let dir = tempfile::tempdir()?;
    let secrets: Arc<dyn bridge::secrets::Secrets> = Arc::new(
        bridge::secrets::file::FileSecrets::open(dir.path().join("secrets.json"))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let t = sandbox::targets::spawn(Target::Sandbox).await?;
    common::put_secret(secrets.as_ref(), "tb/desk", &t).await?;
    let engine = common::engine(&t, "tb/desk", store, secrets)?;

    counter.reset();
    capacity.by_op.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let mut phases: Vec<(String, BTreeMap<String, u64>)> = Vec::new();
    let mut last = BTreeMap::new();
    let mut phase = |name: &str, counter: &OpCounter| {
        let now = counter.snapshot();
        let delta: BTreeMap<String, u64> = now
            .iter()
            .map(|(k, v)| (k.clone(), v - last.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        phases.push((name.to_string(), delta));
        last = now;
    };

    let base = Utc::now();
    let mut per_life: Vec<(u64, u64, BTreeMap<String, u64>)> = Vec::new(); // (writes, scans, ops)
    for life in 0..2i64 {
        let before = counter.snapshot();
        let t0 = base + Duration::seconds(100 * life);
        let label = if life == 0 { "task 1" } else { "task 2 (same user)" };
        // Intake (API Gateway → intake function).
        let body = common::access_task(&format!("BENCH-LIFE-{life}")).to_string().into_bytes();
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", http::HeaderValue::from_static("application/json"));
        let req = bridge::engine::api::ApiRequest {
            method: "POST",
            path: "/v1/tasks",
            query: None,
            headers: &headers,
            body: &body,
            peer_loopback: true,
        };
        let res = bridge::engine::api::handle(&engine, req, t0).await;
        if res.status != 201 && res.status != 202 && res.status != 200 {
            bail!("intake answered {}: {}", res.status, res.body);
        }
        let id = res.body.get("id").and_then(|v| v.as_str()).context("intake response has no id")?.to_string();
        let tid = TaskId::parse(&id).context("bad task id")?;
        phase(&format!("{label}: intake"), &counter);
        // Stream → create-ticket.
        engine.create_one(&tid, t0).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        phase(&format!("{label}: create ticket"), &counter);
        let task = engine.get(&id).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let ticket = task.ticket.clone().context("no ticket after creation")?;
        // Three scheduled polls as the poll-status function runs them (with its lease).
        for k in 1..=3i64 {
            if k == 3 {
                t.sim.close(&ticket.id, Some(t.done_status)).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let reports = engine.poll_all(t0 + Duration::seconds(11 * k)).await;
            let r = reports.get(CONN).cloned().unwrap_or_default();
            if r.skipped {
                bail!("poll {k} was skipped");
            }
            phase(&format!("{label}: poll {k}{}", if k == 3 { " (ticket closed)" } else { " (unchanged)" }), &counter);
        }
        let done = engine.get(&id).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if done.state != TaskState::Completed {
            bail!("task ended in {:?}, not completed", done.state);
        }
        let after = counter.snapshot();
        let delta: BTreeMap<String, u64> = after
            .iter()
            .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        let w: u64 = ["PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"]
            .iter()
            .map(|o| delta.get(*o).copied().unwrap_or(0))
            .sum();
        per_life.push((w, delta.get("Scan").copied().unwrap_or(0), delta));
    }
    let total = counter.snapshot();
    let scans = counter.count("Scan");
    // Each poll run takes the connection's poll lease: one conditional write per run, whatever the
    // number of tickets polled, so it is shared by every task of the run.
    let lease_writes = 3u64;
    let (w1, _, ops1) = per_life[0].clone();
    let (w2, _, ops2) = per_life[1].clone();
    let task1 = w1.saturating_sub(lease_writes);
    let task2 = w2.saturating_sub(lease_writes);
    let fmt = |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
    let cap = capacity.by_op.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let with: u32 = cap.values().map(|c| c.1).sum();
    let without: u32 = cap.values().map(|c| c.2).sum();
    let cap_total: f64 = cap.values().map(|c| c.0).sum();
    let cap_text = if with == 0 {
        format!(
            "moto returned no ConsumedCapacity for any of {without} data requests (asked with ReturnConsumedCapacity=TOTAL)"
        )
    } else {
        format!(
            "{cap_total:.1} capacity units ({}){}",
            cap.iter().filter(|(_, c)| c.1 > 0).map(|(k, c)| format!("{k} {:.1}", c.0)).collect::<Vec<_>>().join(", "),
            if without > 0 { format!("; {without} responses without a figure") } else { String::new() }
        )
    };

    let mut notes = String::from(
        "One access task through the engine as the functions run it, on a fresh table in moto with a counting SDK \
         interceptor (`client_with_op_counter`) and a second interceptor adding `ReturnConsumedCapacity: TOTAL` to each \
         data request: intake (`POST /v1/tasks`), `create_one` (the stream handler), then three scheduled `poll_all` runs \
         (each takes the connection's poll lease, one conditional write per run whatever the number of tickets); the \
         technician closes the ticket before the third. Two tasks for the same user run one after the other: the first \
         also caches the user's contact lookup (one PutItem), the second finds it cached. Writes *for the task* leave \
         out the three lease writes.\n\n| phase | operations |\n|---|---|\n",
    );
    for (name, d) in &phases {
        notes.push_str(&format!("| {name} | {} |\n", fmt(d)));
    }
    notes.push_str(&format!("| **total** | {} |\n\nConsumed capacity (both tasks): {cap_text}.\n", fmt(&total)));
    let rows = vec![
        Row::new(
            "DynamoDB write requests, first task of a user",
            format!("{task1} (+{lease_writes} poll-lease writes shared by every task of a poll run; {w1} in all)"),
            "≤ 4",
            Some(task1 <= 4),
            "op counter on the SDK client, intake → ticket → 3 polls → completed, moto; includes the contact-cache write",
        ),
        Row::new(
            "DynamoDB write requests, later task of the same user",
            format!("{task2} (+{lease_writes} poll-lease writes; {w2} in all)"),
            "≤ 4",
            Some(task2 <= 4),
            "same run, second task (contact lookup cached)",
        ),
        Row::new("DynamoDB Scans per task", scans.to_string(), "0", Some(scans == 0), "same run, both tasks"),
        Row::new(
            "DynamoDB requests per task (all ops)",
            format!("task 1: {}; task 2: {}", fmt(&ops1), fmt(&ops2)),
            "-",
            None,
            "same run",
        ),
        Row::new(
            "DynamoDB consumed capacity, both tasks",
            cap_text,
            "-",
            None,
            "ReturnConsumedCapacity=TOTAL on every data request",
        ),
    ];
    Ok((rows, notes))
}
