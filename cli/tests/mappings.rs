//! `ticket-bridge mappings …` for real: the binary against a config file, SQLite in the data
//! directory, a private secrets file and the BMS simulator.

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

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{args:?} failed\nstdout: {stdout}\nstderr: {stderr}");
        stdout.into_owned()
    }

    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let text = self.ok(&all).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

async fn setup(dir: &Path) -> (Bms, Cli) {
    let sim = Bms::spawn(BmsConfig::default()).await.unwrap();
    sim.add_customer("1", "Default Customer");
    sim.add_contact("10", Some("1"), "default@msp.example", "Default Contact");
    for i in 0..120 {
        sim.add_customer(&(100 + i).to_string(), &format!("Client {i:03}"));
    }
    sim.add_customer("900", "Acme, Inc.");
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
contact_id = "10"
[connections.bms.options]
account_type_id = 1
business_type_id = 1
account_manager_id = 1
[connections.bms.options.http]
rate_burst = 10000
"#,
            sim.base_url()
        ),
    );
    (sim, Cli { config, data })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_apply_twice_exclude_include_and_contacts() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, cli) = setup(dir.path()).await;
    let mut csv = String::from("id,name\n");
    for i in 0..100 {
        csv.push_str(&format!("org-{i},Client {i:03}\n"));
    }
    csv.push_str("org-acme,ACME Inc\norg-new,Fresh Start Ltd\n");
    let orgs = dir.path().join("orgs.csv");
    write(&orgs, &csv);
    let orgs = orgs.to_str().unwrap();

    // Preview: exact by default (auto-create off in the config), normalized on request.
    let plan = cli.json(&["mappings", "preview", "--orgs", orgs]).await;
    assert_eq!((plan["counts"]["matched"].as_u64(), plan["counts"]["unmatched"].as_u64()), (Some(100), Some(2)));
    let plan = cli.json(&["mappings", "preview", "--orgs", orgs, "--match", "normalized", "--auto-create"]).await;
    assert_eq!((plan["counts"]["matched"].as_u64(), plan["counts"]["to_create"].as_u64()), (Some(101), Some(1)));
    assert_eq!(plan["to_create"][0]["org"]["id"], "org-new");
    let table = cli.ok(&["mappings", "preview", "--orgs", orgs, "--match", "normalized", "--auto-create"]).await;
    assert!(table.contains("Will be matched (101)") && table.contains("Will be created (1)"), "{table}");
    assert!(table.contains("will be matched") && table.contains("101"), "{table}");

    // Apply twice: the second run creates nothing.
    let first = cli.ok(&["mappings", "apply", "--orgs", orgs, "--match", "normalized", "--auto-create"]).await;
    assert!(first.contains("Customers created (1)") && first.contains("Fresh Start Ltd"), "{first}");
    assert_eq!(sim.requests("POST /v2/crm/accounts"), 1);
    let second = cli.json(&["mappings", "apply", "--orgs", orgs, "--match", "normalized", "--auto-create"]).await;
    assert_eq!(second["created"].as_array().map(Vec::len), Some(0));
    assert_eq!(second["plan"]["counts"]["already_mapped"], 102);
    assert_eq!(sim.requests("POST /v2/crm/accounts"), 1, "second apply created no account");
    assert_eq!(sim.requests("POST /v2/crm/contacts/summary"), 1);

    // Exclude / include round trip, manual match, list.
    cli.ok(&["mappings", "exclude", "org-3"]).await;
    let list = cli.json(&["mappings", "list"]).await;
    let org3 = list.as_array().unwrap().iter().find(|m| m["org_id"] == "org-3").unwrap().clone();
    assert_eq!((org3["excluded"].as_bool(), org3["customer_id"].as_str()), (Some(true), Some("103")));
    let out = cli.ok(&["mappings", "include", "org-3"]).await;
    assert!(out.contains("included again -> customer 103"), "{out}");
    cli.ok(&["mappings", "match", "org-unknown", "900", "--org-name", "Acme Again"]).await;
    let table = cli.ok(&["mappings", "list"]).await;
    assert!(
        table.contains("org-unknown")
            && table.contains("900 (Acme, Inc.)")
            && table.contains("103 mappings (0 excluded)"),
        "{table}"
    );

    // Contacts by address.
    cli.ok(&["mappings", "contacts", "exclude", "Eve@Example.com"]).await;
    let users = cli.json(&["mappings", "contacts", "list"]).await;
    assert_eq!(users[0]["email"], "eve@example.com");
    cli.ok(&["mappings", "contacts", "include", "eve@example.com"]).await;
    assert_eq!(cli.json(&["mappings", "contacts", "list"]).await, serde_json::json!([]));

    // Errors name the place and fail the command.
    write(&dir.path().join("bad.csv"), "id,name\norg-1,\n");
    let out = cli.run(&["mappings", "preview", "--orgs", dir.path().join("bad.csv").to_str().unwrap()]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2, column 'name'"), "{err}");
    let out = cli.run(&["mappings", "match", "org-1", "424242"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no customer '424242'"));
}
