//! `ticket-bridge rules test task.json` shows the matching rule and the ticket it would send,
//! without sending anything; bad rules and bad tasks are named.

use std::process::Command;

const CONFIG: &str = r#"
[settings]
default_connection = "desk"

[connections.desk]
kind = "sandbox"
base_url = "http://127.0.0.1:9"
secret = "desk"
[connections.desk.defaults]
queue = "Service Desk"
priority = "normal"

[connections.msp]
kind = "sandbox"
base_url = "http://127.0.0.1:9"
secret = "msp"

[[rules]]
name = "payroll access"
when = { source = "saviynt", application = "Payroll", action = ["add_access", "remove_access"] }
ticket = { queue = "Payroll", priority = "{{ 'high' if task.action == 'remove_access' else 'normal' }}", assignee = "hr-desk" }

[[rules]]
name = "acme critical"
connection = "msp"
when = { organization = "Acme", severity = ["high", "critical"] }
ticket = { queue = "Acme SOC", custom_fields = { AlertType = "{{ task.alert_type }}" } }
"#;

fn run(config: &str, task: serde_json::Value) -> (bool, serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    std::fs::write(dir.path().join("task.json"), task.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ticket-bridge"))
        .arg("--config")
        .arg(dir.path().join("c.toml"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["rules", "test"])
        .arg(dir.path().join("task.json"))
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn access(action: &str, app: &str) -> serde_json::Value {
    serde_json::json!({"source":"saviynt","external_id":"T-1","kind":"access","action":action,
        "user":{"email":"ada@example.com"},"application":app,"entitlements":["payroll-admin"]})
}

#[test]
fn shows_the_matching_rule_and_the_ticket() {
    let (ok, out, err) = run(CONFIG, access("remove_access", "Payroll"));
    assert!(ok, "{err}");
    assert_eq!(out["rule"]["index"], 0, "{out}");
    assert_eq!(out["rule"]["name"], "payroll access");
    assert_eq!(out["connection"], "desk");
    assert_eq!(out["ticket"]["queue"], "Payroll");
    assert_eq!(out["ticket"]["priority"], "high");
    assert_eq!(out["ticket"]["assignee"], "hr-desk");
    assert_eq!(out["ticket"]["title"], "Remove Access: ada@example.com in Payroll");

    let alert = serde_json::json!({"source":"saas-alerts","external_id":"A-1","kind":"alert",
        "user_email":"bob@acme.com","alert_type":"Too Many Downloads","severity":"critical",
        "organization":{"id":"o-1","name":"ACME"}});
    let (ok, out, err) = run(CONFIG, alert);
    assert!(ok, "{err}");
    assert_eq!(out["rule"]["index"], 1, "{out}");
    assert_eq!(out["connection"], "msp", "the rule picks the connection");
    assert_eq!(out["ticket"]["custom_fields"]["AlertType"], "Too Many Downloads");
    assert_eq!(out["ticket"]["queue"], "Acme SOC");
}

#[test]
fn no_match_uses_the_default_connection_and_its_defaults() {
    let (ok, out, err) = run(CONFIG, access("add_access", "CRM"));
    assert!(ok, "{err}");
    assert!(out["rule"].is_null(), "{out}");
    assert!(err.contains("no rule matches"), "{err}");
    assert_eq!(out["connection"], "desk");
    assert_eq!(out["ticket"]["queue"], "Service Desk");
    assert!(out["ticket"]["assignee"].is_null());
}

#[test]
fn bad_rules_and_bad_tasks_are_named() {
    let (ok, _, err) = run(&CONFIG.replace("connection = \"msp\"", "connection = \"nope\""), access("add_access", "X"));
    assert!(!ok);
    assert!(err.contains("rules[1].connection"), "{err}");
    let (ok, _, err) = run(&CONFIG.replace("action = [", "actions = ["), access("add_access", "X"));
    assert!(!ok);
    assert!(err.contains("rules[0].when.actions"), "{err}");
    let (ok, _, err) = run(CONFIG, serde_json::json!({"source":"saviynt","external_id":"1","kind":"access"}));
    assert!(!ok);
    assert!(err.contains("'action'"), "{err}");
}
