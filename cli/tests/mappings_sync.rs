//! `ticket-bridge mappings sync | status | records …` for real: the binary against a config file,
//! SQLite in the data directory, a private secrets file and the BMS simulator.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sandbox::bms::{Bms, BmsConfig};

struct Cli {
    config: PathBuf,
    data: PathBuf,
}

impl Cli {
    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ticket-bridge"));
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .env("TICKET_BRIDGE_LOG", "warn");
        tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
    }

    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.run(&all).await;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{args:?} failed\nstdout: {stdout}\nstderr: {stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"))
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

async fn setup(dir: &Path) -> (Bms, Cli) {
    let sim = Bms::spawn(BmsConfig::default()).await.unwrap();
    sim.add_account(1, "Default Customer");
    for i in 0..30 {
        sim.add_account(100 + i, &format!("Client {i:02}"));
    }
    for i in 0..250 {
        sim.add_asset(100 + (i % 30), &format!("PC-{i:03}"), None);
    }
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let c = sim.config().clone();
    let secrets = data.join("secrets.json");
    write(
        &secrets,
        &serde_json::json!({"tb/bms": {"username": c.username, "password": c.password, "tenant": c.tenant}})
            .to_string(),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("bridge.toml");
    write(
        &config,
        &format!(
            r#"[connections.bms]
kind = "bms"
base_url = "{}"
secret = "tb/bms"
rate_limit_per_hour = 1000000
[connections.bms.defaults]
ticket_type = "1"
[connections.bms.catch_all]
customer_id = "1"
[connections.bms.sync]
enabled = true
auto_create = ["assets"]
max_pages_per_run = 2
[connections.bms.options]
page_size = 100
[connections.bms.options.http]
rate_burst = 10000
"#,
            sim.base_url()
        ),
    );
    (sim, Cli { config, data })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_in_steps_status_and_records_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, cli) = setup(dir.path()).await;
    let status = cli.json(&["mappings", "status"]).await;
    assert!(status.is_null(), "never synced: {status}");

    // Two pages per run: customers + contacts, then locations + assets page 1, then assets pages 2
    // and 3 (50 of 100: the last).
    let first = cli.json(&["mappings", "sync"]).await;
    assert_eq!(first["outcome"], "partial", "{first}");
    let status = cli.json(&["mappings", "status"]).await;
    assert_eq!((status["cursor"]["kind"].as_str(), status["cursor"]["page"].as_u64()), (Some("locations"), Some(1)));
    let second = cli.json(&["mappings", "sync"]).await;
    assert_eq!((second["outcome"].as_str(), second["resumed"].as_bool()), (Some("partial"), Some(true)), "{second}");
    let last = cli.json(&["mappings", "sync"]).await;
    assert_eq!((last["outcome"].as_str(), last["pages"].as_u64()), (Some("finished"), Some(2)), "{last}");
    assert_eq!(last["counts"]["assets"]["created"], 250, "{last}");
    assert_eq!(last["counts"]["customers"]["pending"], 31, "{last}");

    let status = cli.json(&["mappings", "status"]).await;
    assert!(status["cursor"].is_null() && status["since"].is_string(), "{status}");
    let counts: Vec<(String, u64)> = status["last_run"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kc| (kc[0].as_str().unwrap().to_string(), kc[1]["read"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        counts,
        [("customers".into(), 31), ("contacts".into(), 0), ("locations".into(), 31), ("assets".into(), 250)]
    );

    // Locations wait for the operator: preview, apply, nothing left.
    let pending = cli.json(&["mappings", "records", "preview", "--kind", "locations"]).await;
    assert_eq!(pending.as_array().unwrap().len(), 31);
    let applied = cli.json(&["mappings", "records", "apply", "--kind", "locations"]).await;
    assert_eq!(applied.as_array().unwrap().len(), 31);
    let again = cli.json(&["mappings", "records", "apply", "--kind", "locations"]).await;
    assert_eq!(again.as_array().unwrap().len(), 0, "applying twice changes nothing");
    let excluded = cli.json(&["mappings", "records", "exclude", "--kind", "locations", "1001"]).await;
    assert_eq!(excluded["state"], "excluded");
    let out = cli.run(&["mappings", "records", "exclude", "--kind", "devices", "1"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected customers, contacts, locations or assets"));
}
