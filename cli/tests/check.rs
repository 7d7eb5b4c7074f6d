//! `ticket-bridge check <connection>` names what is wrong: unreachable, TLS, bad credentials,
//! expired token, wrong tenant — and says OK when all is well.

use std::process::Command;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// Writes a config with connection "itsm" from `table` and its secret `fields`.
    fn new(table: toml::Table, fields: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut connections = toml::Table::new();
        connections.insert("itsm".into(), toml::Value::Table(table));
        let mut config = toml::Table::new();
        config.insert("connections".into(), toml::Value::Table(connections));
        std::fs::write(dir.path().join("ticket-bridge.toml"), toml::to_string(&config).unwrap()).unwrap();
        let secret: serde_json::Map<String, serde_json::Value> =
            fields.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        let path = dir.path().join("secrets.json");
        std::fs::write(&path, serde_json::json!({ "itsm": secret }).to_string()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self { dir }
    }

    /// Runs the check; returns (success, everything printed).
    fn check(&self) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_ticket-bridge"))
            .arg("--config")
            .arg(self.dir.path().join("ticket-bridge.toml"))
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(["check", "itsm"])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text.to_lowercase())
    }
}

fn with_field(fields: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    fields.iter().map(|(k, v)| (k.clone(), if k == key { value.to_string() } else { v.clone() })).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_ok_or_names_the_failure_class() {
    use sandbox::targets::{Target, spawn};
    let desk = spawn(Target::Sandbox).await.unwrap();
    let good = desk.connection_table("itsm", "none");

    let (ok, text) = Setup::new(good.clone(), &desk.secret).check();
    assert!(ok, "{text}");
    assert!(text.contains("itsm: ok"), "{text}");

    let (ok, text) = Setup::new(good.clone(), &with_field(&desk.secret, "api_key", "sbx_wrong")).check();
    assert!(!ok);
    assert!(text.contains("credentials") || text.contains("api_key"), "bad credentials: {text}");
    assert!(!text.contains("sbx_wrong"), "the wrong key must not be echoed: {text}");

    // Nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut t = good.clone();
    t.insert("base_url".into(), format!("http://{dead}").into());
    let (ok, text) = Setup::new(t, &desk.secret).check();
    assert!(!ok);
    assert!(text.contains("unreachable"), "unreachable: {text}");

    // https to a server that speaks plain HTTP: a TLS failure.
    let mut t = good.clone();
    t.insert("base_url".into(), desk.base_url.replace("http://127.0.0.1", "https://localhost").into());
    let (ok, text) = Setup::new(t, &desk.secret).check();
    assert!(!ok);
    assert!(text.contains("tls"), "TLS: {text}");

    // BMS with the wrong tenant.
    let bms = spawn(Target::Bms).await.unwrap();
    let (ok, text) = Setup::new(bms.connection_table("itsm", "none"), &bms.secret).check();
    assert!(ok, "{text}");
    let (ok, text) =
        Setup::new(bms.connection_table("itsm", "none"), &with_field(&bms.secret, "tenant", "OtherCo")).check();
    assert!(!ok);
    assert!(text.contains("tenant"), "wrong tenant: {text}");

    // VSA with a personal access token the server no longer accepts.
    let vsa = spawn(Target::Vsa).await.unwrap();
    let (ok, text) = Setup::new(
        vsa.connection_table("itsm", "none"),
        &with_field(&vsa.secret, "pat", "00000000-0000-0000-0000-000000000000"),
    )
    .check();
    assert!(!ok);
    assert!(text.contains("credentials") || text.contains("token"), "bad PAT: {text}");

    // OTRS without the ticket dynamic field the connection names: check says which one to create.
    let otrs = spawn(Target::Otrs).await.unwrap();
    let (ok, text) = Setup::new(otrs.connection_table("itsm", "none"), &otrs.secret).check();
    assert!(ok, "{text}");
    otrs.sim.create_ticket(sandbox::NewTicket { title: "an existing ticket".into(), ..Default::default() });
    let mut t = otrs.connection_table("itsm", "none");
    let options = t.entry("options").or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(o) = options {
        o.insert("dynamic_field".into(), "BridgeRefMissing".into());
    }
    let (ok, text) = Setup::new(t, &otrs.secret).check();
    assert!(!ok);
    assert!(text.contains("dynamic field 'bridgerefmissing'") && text.contains("dynamic fields"), "{text}");
}
