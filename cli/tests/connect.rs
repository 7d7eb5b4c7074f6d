//! `ticket-bridge connect`: a new user connects a NinjaOne (simulator) tenant through the OAuth
//! authorization-code flow, with no secret edited by hand; the simulator enforces the registered
//! redirect URI and single-use codes, and `connect` refuses a redirect whose `state` is not its own.

mod support;

use sandbox::ninjaone::{NinjaConfig, NinjaOne};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use support::free_port;

const CLIENT_SECRET: &str = "ninja-client-secret-value";

/// A config with one NinjaOne connection and no secrets file.
fn config(dir: &Path, base_url: &str) -> std::path::PathBuf {
    config_with(dir, base_url, "", "ninja")
}

/// [`config`] with `settings` (TOML lines) and the secret's name.
fn config_with(dir: &Path, base_url: &str, settings: &str, secret: &str) -> std::path::PathBuf {
    let path = dir.join("ticket-bridge.toml");
    let text = format!(
        "[settings]\n{settings}\n[connections.ninja]\nkind = \"ninjaone\"\nbase_url = \"{base_url}\"\nsecret = \"{secret}\"\n\
[connections.ninja.status_map]\nfulfilled = [\"Resolved\"]\n[connections.ninja.catch_all]\ncustomer_id = \"7\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `connect` and returns it with the authorize URL it printed.
fn start_connect(
    dir: &Path,
    config: &Path,
    port: u16,
    redirect: &str,
) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticket-bridge"))
        .args([
            "connect",
            "ninja",
            "--client-id",
            "ninja-client",
            "--port",
            &port.to_string(),
            "--redirect-uri",
            redirect,
        ])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("TICKET_BRIDGE_CONFIG")
        .env_remove("TICKET_BRIDGE_CLIENT_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{CLIENT_SECRET}").unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "connect ended before printing the authorize URL");
        if let Some(u) = line.trim().strip_prefix("http") {
            break format!("http{u}");
        }
    };
    (child, url, out)
}

fn rest(mut out: BufReader<std::process::ChildStdout>, child: Child) -> (bool, String, String) {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut out, &mut text).unwrap();
    let o = child.wait_with_output().unwrap();
    (o.status.success(), text, String::from_utf8_lossy(&o.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_connects_a_ninjaone_tenant_without_editing_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let ninja =
        NinjaOne::spawn(NinjaConfig { redirect_uris: vec![redirect.clone()], ..Default::default() }).await.unwrap();
    ninja.add_customer("7", "Acme Corp");
    let config = config(dir.path(), ninja.base_url());
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // The simulator sends nobody to a redirect URI the app did not register.
    let evil = format!(
        "{}/ws/oauth/authorize?response_type=code&client_id=ninja-client&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fx&state=s",
        ninja.base_url()
    );
    let res = http.get(evil).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert!(res.headers().get("location").is_none());

    let (child, url, out) = start_connect(dir.path(), &config, port, &redirect);
    let q: std::collections::HashMap<String, String> =
        url::Url::parse(&url).unwrap().query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["redirect_uri"], redirect);
    assert!(q["scope"].split(' ').any(|s| s == "offline_access"), "{url}");
    assert!(!url.contains(CLIENT_SECRET), "no secret in the URL");

    // The user's browser: NinjaOne redirects to the loopback URI with the code and state.
    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 302);
    let back = res.headers()["location"].to_str().unwrap().to_string();
    assert!(back.starts_with(&redirect), "{back}");
    let page = http.get(&back).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("connected"));
    // Waiting for the process blocks this thread; the simulator answers on the other worker.
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || rest(out, child)).await.unwrap();
    assert!(ok, "connect failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ninja: OK"), "{stdout}");
    assert!(!stdout.contains(CLIENT_SECRET) && !stderr.contains(CLIENT_SECRET), "the secret is never printed");

    // What it stored works: the secrets file holds the credentials and a refresh token.
    let secrets: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("secrets.json")).unwrap()).unwrap();
    assert_eq!(secrets["ninja"]["client_id"], "ninja-client");
    assert_eq!(secrets["ninja"]["client_secret"], CLIENT_SECRET);
    assert!(secrets["ninja"]["refresh_token"].as_str().is_some_and(|r| !r.is_empty()));

    // The code was single-use.
    let code = url::Url::parse(&back).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let again = http
        .post(format!("{}/ws/oauth/token", ninja.base_url()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "ninja-client"),
            ("client_secret", CLIENT_SECRET),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 400);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");

    // `check` on its own passes with the stored secret.
    let out = Command::new(env!("CARGO_BIN_EXE_ticket-bridge"))
        .args(["check", "ninja", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("TICKET_BRIDGE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_a_redirect_with_another_state_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let ninja =
        NinjaOne::spawn(NinjaConfig { redirect_uris: vec![redirect.clone()], ..Default::default() }).await.unwrap();
    let config = config(dir.path(), ninja.base_url());
    let (child, _url, out) = start_connect(dir.path(), &config, port, &redirect);
    // A forged redirect (someone else's code, not our state).
    let res = reqwest::get(format!("{redirect}?code=stolen&state=forged")).await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let (ok, stdout, stderr) = rest(out, child);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("state does not match"), "{stderr}");
    let stored = std::fs::read_to_string(dir.path().join("secrets.json")).unwrap_or_default();
    assert!(!stored.contains("refresh_token"), "nothing stored: {stored}");
}

/// With `settings.secrets = "aws"` the refresh token goes to Secrets Manager (moto in tests), not
/// to the local file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_stores_the_refresh_token_in_secrets_manager_when_configured() {
    let Ok(endpoint) = std::env::var("TB_AWS_ENDPOINT") else {
        panic!("TB_AWS_ENDPOINT is not set: run through `cargo xtask test` (it starts moto) or `cargo xtask moto`");
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let ninja =
        NinjaOne::spawn(NinjaConfig { redirect_uris: vec![redirect.clone()], ..Default::default() }).await.unwrap();
    ninja.add_customer("7", "Acme Corp");
    let name = format!("ninja-connect-{}", ulid::Ulid::new());
    let config = config_with(dir.path(), ninja.base_url(), "secrets = \"aws\"", &name);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let (child, url, out) = start_connect(dir.path(), &config, port, &redirect);
    let res = http.get(&url).send().await.unwrap();
    let back = res.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(http.get(&back).send().await.unwrap().status().as_u16(), 200);
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || rest(out, child)).await.unwrap();
    assert!(ok, "connect failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("(Secrets Manager)") && stdout.contains("ninja: OK"), "{stdout}");
    let sdk = bridge::aws::sdk_config(Some(&endpoint)).await;
    let sm =
        bridge::secrets::aws::AwsSecrets::new(aws_sdk_secretsmanager::Client::new(&sdk), std::time::Duration::ZERO);
    let stored = bridge::secrets::Secrets::get(&sm, &name).await.unwrap();
    assert_eq!(stored.get("client_id"), Some("ninja-client"));
    assert!(stored.get("refresh_token").is_some_and(|r| !r.is_empty()));
    let file = std::fs::read_to_string(dir.path().join("secrets.json")).unwrap_or_default();
    assert!(!file.contains("refresh_token"), "nothing in the local file: {file}");
}
