//! The README's main command for real: `ticket-bridge serve` with no config (SQLite, local
//! secrets file, built-in sandbox ITSM), driven over HTTP and through the `sandbox` subcommand.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_for<F, Fut>(what: &str, mut check: F) -> serde_json::Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<serde_json::Value>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn serve_runs_a_task_from_intake_to_completion_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let bin = env!("CARGO_BIN_EXE_ticket-bridge");
    let start = || {
        Serve(
            Command::new(bin)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
                .arg(dir.path())
                .env_remove("TICKET_BRIDGE_CONFIG")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let http = reqwest::Client::new();
    let server = start();
    wait_for("healthz", || async {
        http.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status().is_success()).map(|_| serde_json::Value::Null)
    })
    .await;

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
    let _server = start();
    wait_for("healthz after restart", || async {
        http.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status().is_success()).map(|_| serde_json::Value::Null)
    })
    .await;

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
