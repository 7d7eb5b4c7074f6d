//! The README's main command for real: `ticket-bridge serve` with no config (SQLite, local
//! secrets file, built-in sandbox ITSM), driven over HTTP and through the `sandbox` subcommand.

mod support;

use std::process::Command;
use support::{Serve, wait_for, write_config};

/// Callbacks a receiver got: headers and raw body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

#[tokio::test]
async fn serve_runs_a_task_from_intake_to_completion_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_ticket-bridge");
    let http = reqwest::Client::new();
    let (server, base) = Serve::launch(&http, dir.path(), None, &[]).await.expect("serve started");

    // The secrets file it created is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("secrets.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "secrets file must not be readable by others");

    let body = serde_json::json!({"source":"saviynt","external_id":"TASK-1","kind":"access","action":"create_account",
        "user":{"id":"u-1","name":"Ada Lovelace","email":"ada@example.com"},"application":"Payroll"});
    let res = http.post(format!("{base}/v1/tasks")).json(&body).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let task: serde_json::Value = res.json().await.unwrap();
    let id = task["id"].as_str().unwrap().to_string();

    let open = wait_for("ticket", || async {
        let t: serde_json::Value = http.get(format!("{base}/v1/tasks/{id}")).send().await.ok()?.json().await.ok()?;
        (t["state"] == "ticket_open").then_some(t)
    })
    .await;
    let ticket_id = open["ticket"]["id"].as_str().unwrap().to_string();

    // Restart: the task and the sandbox's tickets persist in the data dir.
    drop(server);
    let (_server, base) = Serve::launch(&http, dir.path(), None, &[]).await.expect("serve restarted");

    let out = Command::new(bin).args(["sandbox", "close", &ticket_id, "--server", &base]).output().unwrap();
    assert!(out.status.success(), "sandbox close failed: {}", String::from_utf8_lossy(&out.stderr));
    let done = wait_for("completion", || async {
        let t: serde_json::Value = http.get(format!("{base}/v1/tasks/{id}")).send().await.ok()?.json().await.ok()?;
        (t["state"] == "completed").then_some(t)
    })
    .await;
    assert_eq!(done["status"], "Closed");
    assert_eq!(done["outcome"], "fulfilled");
    assert_eq!(done["ticket"]["id"], ticket_id.as_str());

    // A repeat of the same submission returns the first task.
    let res = http.post(format!("{base}/v1/tasks")).json(&body).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let again: serde_json::Value = res.json().await.unwrap();
    assert_eq!(again["id"], id.as_str());
}

/// `serve` with a config file for `target`: two tasks become tickets in the target (its
/// simulator, or for RT the real one when `TB_RT_URL` is set, see `cargo xtask peer rt`), the
/// technician resolves one and rejects the other, serve's poller completes both with the right
/// outcome and the signed callbacks arrive.
async fn serve_with_config(target: sandbox::targets::Target) {
    let t = sandbox::targets::spawn_or_peer(target).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Callback receiver.
    let got: Received = Default::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap, b: axum::body::Bytes| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push((h, b.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    // Config file and private secrets file, as an operator would write them.
    let mut settings = toml::Table::new();
    settings.insert("allow_private_callbacks".into(), true.into());
    let config_path = write_config(dir.path(), &t, settings);
    let http = reqwest::Client::new();
    let (_server, base) = Serve::launch(&http, dir.path(), Some(&config_path), &[]).await.expect("serve started");
    let mut tasks = Vec::new();
    for (n, application) in [(1, "Payroll"), (2, "Ledger")] {
        let body = serde_json::json!({"source":"saviynt","external_id":format!("SRV-{target:?}-{n}"),"kind":"access",
            "action":"remove_access","user":{"id":"u-1","name":"Alice","email":"alice@acme.io"},
            "application":application,"entitlements":["admin"],"callback_url": hook});
        let res = http.post(format!("{base}/v1/tasks")).json(&body).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 201, "{target:?}");
        tasks.push(res.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    let mut ticket_ids = Vec::new();
    for id in &tasks {
        let open = wait_for("ticket", || async {
            let v: serde_json::Value =
                http.get(format!("{base}/v1/tasks/{id}")).send().await.ok()?.json().await.ok()?;
            (v["state"] == "ticket_open").then_some(v)
        })
        .await;
        ticket_ids.push(open["ticket"]["id"].as_str().unwrap().to_string());
    }
    let mut keys: Vec<Option<String>> = t.state().tickets().await.into_iter().map(|t| t.correlation_key).collect();
    keys.sort();
    let mut want: Vec<Option<String>> = tasks.iter().cloned().map(Some).collect();
    want.sort();
    assert_eq!(keys, want, "{target:?}: one ticket per task, each carrying its task id");
    t.state().close(&ticket_ids[0], t.done_status).await.unwrap();
    t.state().close(&ticket_ids[1], t.rejected_status).await.unwrap();
    for (id, outcome) in tasks.iter().zip(["fulfilled", "rejected"]) {
        let done = wait_for("completion", || async {
            let v: serde_json::Value =
                http.get(format!("{base}/v1/tasks/{id}")).send().await.ok()?.json().await.ok()?;
            (v["state"] == "completed").then_some(v)
        })
        .await;
        assert_eq!(done["outcome"], outcome, "{target:?}");
    }
    let callbacks = wait_for("callbacks", || async {
        let n = got.lock().unwrap().len();
        (n >= 2).then_some(serde_json::json!(n))
    })
    .await;
    assert_eq!(callbacks, 2);
    for (headers, raw) in got.lock().unwrap().clone() {
        bridge::engine::notify::verify(
            b"serve-callback-key",
            headers["x-bridge-timestamp"].to_str().unwrap(),
            &raw,
            headers["x-bridge-signature"].to_str().unwrap(),
            chrono::Utc::now(),
            300,
        )
        .unwrap();
    }
}

macro_rules! serve_targets {
    ($($name:ident => $target:ident),* $(,)?) => {
        $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() { serve_with_config(sandbox::targets::Target::$target).await })*
    };
}

serve_targets!(
    serve_sandbox => Sandbox,
    serve_rt => Rt,
    serve_generic => Generic,
    serve_bms => Bms,
    serve_vsa => Vsa,
    serve_ninjaone => Ninjaone,
    serve_otrs => Otrs,
);
