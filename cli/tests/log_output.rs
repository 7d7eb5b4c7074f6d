//! `serve`'s log written to a file: plain text without terminal colour codes, or one JSON object
//! per line with `--log-format json`; an unknown format is refused naming the setting.

mod support;

use std::fs::File;
use std::process::{Command, Stdio};

use support::{free_port, wait_for, wait_healthy};

/// Runs `serve` with stderr redirected to a file until its start-up has been logged, then returns
/// the log text.
async fn serve_log(format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("serve.log");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticket-bridge"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--log-format", format, "--data-dir"])
        .arg(dir.path().join("data"))
        .env_remove("TICKET_BRIDGE_CONFIG")
        .env_remove("TICKET_BRIDGE_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    wait_healthy(&http, &format!("http://127.0.0.1:{port}")).await;
    // The start-up line, whole (up to its newline), in either format.
    let log = wait_for("the start-up log line", || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let done = text.lines().any(|l| l.contains("ticket-bridge serving")) && text.ends_with('\n');
        async move { done.then_some(serde_json::Value::String(text)) }
    })
    .await;
    child.kill().ok();
    child.wait().ok();
    log.as_str().unwrap().to_string()
}

#[tokio::test]
async fn text_log_in_a_file_has_no_colour_codes() {
    let log = serve_log("text").await;
    assert!(!log.contains('\u{1b}'), "ANSI escape in a log file: {log:?}");
    assert!(log.contains("INFO"), "no level in the text log: {log}");
}

#[tokio::test]
async fn json_log_is_one_object_per_line_without_colour() {
    let log = serve_log("json").await;
    assert!(!log.contains('\u{1b}'), "ANSI escape in a JSON log: {log:?}");
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "no level: {line}");
    }
}

#[test]
fn unknown_log_format_is_refused_naming_the_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_ticket-bridge"))
        .args(["--log-format", "xml", "hash-key"])
        .env_remove("TICKET_BRIDGE_LOG_FORMAT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--log-format") && err.contains("xml"), "{err}");
}
