//! Helpers shared by the tests that run the real `ticket-bridge serve` binary.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `serve` process; dropping it kills it with SIGKILL (no graceful shutdown).
pub struct Serve(pub Child);

impl Serve {
    /// `ticket-bridge serve` on `port` with `data_dir` and, if given, a config file.
    pub fn start(port: u16, data_dir: &Path, config: Option<&Path>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ticket-bridge"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .env_remove("TICKET_BRIDGE_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        Self(cmd.spawn().expect("spawn ticket-bridge serve"))
    }

    /// `ticket-bridge serve` on a port the system picks (`--listen 127.0.0.1:0`), with `envs` set;
    /// returns the process and its base URL once it answers `/healthz`. The address comes from the
    /// `serve.addr` file serve writes into its data dir, so tests running at once can never talk to
    /// each other's server (a probed free port can be taken before serve binds it). `None` when the
    /// process exits first (e.g. it aborted at an armed crash point while starting).
    pub async fn launch(
        http: &reqwest::Client,
        data_dir: &Path,
        config: Option<&Path>,
        envs: &[(&str, &str)],
    ) -> Option<(Self, String)> {
        let addr_file = data_dir.join("serve.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ticket-bridge"));
        // The log goes to `<data-dir>/serve.log` (appended across restarts) for [`log_tail`].
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join("serve.log")).unwrap();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("TICKET_BRIDGE_CONFIG")
            .env_remove("TB_FAILPOINT")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut server = Self(cmd.spawn().expect("spawn ticket-bridge serve"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if server.0.try_wait().unwrap().is_some() {
                return None;
            }
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                let base = format!("http://{}", addr.trim());
                let up = http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success());
                if up {
                    return Some((server, base));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("serve did not start within 60 s");
    }

    /// SIGKILL, as a crashed host or an OOM kill would stop it.
    pub fn kill9(mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// The last `n` lines serve logged into `data_dir` (started by [`Serve::launch`]), for failure messages.
pub fn log_tail(data_dir: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(data_dir.join("serve.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Callbacks received: task id → the delivery ids of every copy.
pub type Callbacks = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Vec<String>>>>;

/// A loopback receiver of task callbacks; returns its URL and what it received.
pub async fn callback_receiver() -> (String, Callbacks) {
    let got: Callbacks = std::sync::Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let task = v["id"].as_str().unwrap_or("").to_string();
                let id = headers.get("x-bridge-delivery").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
                g.lock().unwrap().entry(task).or_default().push(id);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/hook"), got)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` every 200 ms until it yields a value (panics after 60 s).
pub async fn wait_for<F, Fut>(what: &str, mut check: F) -> serde_json::Value
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

/// Waits until `GET {base}/healthz` answers 2xx.
pub async fn wait_healthy(http: &reqwest::Client, base: &str) {
    wait_for("healthz", || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| serde_json::Value::Null)
    })
    .await;
}

/// Writes a config file with one connection `itsm` to `target` plus `settings`, and the private
/// secrets file holding its credentials (and a callback key). Returns the config path.
pub fn write_config(dir: &Path, target: &sandbox::targets::SpawnedTarget, settings: toml::Table) -> PathBuf {
    write_config_with(dir, target, settings, toml::Table::new())
}

/// As [`write_config`], with `overrides` replacing keys of the connection (e.g. `poll_interval_secs`).
pub fn write_config_with(
    dir: &Path,
    target: &sandbox::targets::SpawnedTarget,
    settings: toml::Table,
    overrides: toml::Table,
) -> PathBuf {
    let mut connection = target.connection_table("itsm", "none");
    connection.extend(overrides);
    let mut connections = toml::Table::new();
    connections.insert("itsm".into(), toml::Value::Table(connection));
    let mut config = toml::Table::new();
    config.insert("settings".into(), toml::Value::Table(settings));
    config.insert("connections".into(), toml::Value::Table(connections));
    let config_path = dir.join("ticket-bridge.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let mut fields: serde_json::Map<String, serde_json::Value> =
        target.secret.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
    fields.insert("callback_key".into(), "serve-callback-key".into());
    let secrets_path = dir.join("secrets.json");
    std::fs::write(&secrets_path, serde_json::json!({ "itsm": fields }).to_string()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    config_path
}
