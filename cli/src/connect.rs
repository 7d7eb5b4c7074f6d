//! `ticket-bridge connect <connection>`: the OAuth authorization-code flow for a NinjaOne
//! connection, so nobody copies a refresh token by hand. Prints the authorize URL (scopes with
//! `offline_access`), waits for the browser on a loopback redirect URI, checks `state`, exchanges
//! the code, stores the refresh token in the connection's secret and runs `check`.

use anyhow::{Context, Result, bail};
use bridge::secrets::Secret;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use bridge_console::oauth::{self, Authorization};

/// Environment variable the client secret may come from (else the secret or stdin).
const CLIENT_SECRET_ENV: &str = "TICKET_BRIDGE_CLIENT_SECRET";

/// Options of `connect`.
#[derive(clap::Args)]
pub struct ConnectArgs {
    /// The connection (kind = "ninjaone") to authorize.
    pub connection: String,
    /// Loopback port the redirect lands on (must match the redirect URI registered in NinjaOne).
    #[arg(long, default_value_t = 9090)]
    pub port: u16,
    /// Redirect URI registered for the client app (default: http://localhost:<port>/).
    #[arg(long)]
    pub redirect_uri: Option<String>,
    /// Client id of the NinjaOne app (default: the one already in the connection's secret).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Scopes to request (space-separated; must include offline_access).
    #[arg(long, default_value = oauth::DEFAULT_SCOPE)]
    pub scope: String,
    /// How long to wait for the browser to come back.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

pub async fn run(config: Option<&Path>, data_dir: &Path, args: ConnectArgs) -> Result<()> {
    let local = crate::local::build(config, data_dir).await?;
    let engine = &local.engine;
    let name = args.connection.as_str();
    let cfg = oauth::oauth_connection(engine, name)?;
    oauth::require_offline_access(&args.scope).context("--scope")?;
    let secrets = oauth::secrets_backend(engine).await;
    let secret = oauth::current_secret(secrets.as_ref(), cfg).await?;
    let client_id = match args.client_id.clone().or_else(|| secret.get("client_id").map(str::to_string)) {
        Some(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => bail!("no client id: pass --client-id (Administration > Apps > API > Client App IDs in NinjaOne)"),
    };
    let client_secret = client_secret(&secret)?;
    let redirect_uri = args.redirect_uri.clone().unwrap_or_else(|| format!("http://localhost:{}/", args.port));
    let callback = url::Url::parse(&redirect_uri).context("--redirect-uri is not a URL")?;
    if !matches!(callback.host_str(), Some("localhost" | "127.0.0.1"))
        || callback.port_or_known_default() != Some(args.port)
    {
        bail!(
            "--redirect-uri must be http://localhost:{0}/… or http://127.0.0.1:{0}/… (this machine, --port)",
            args.port
        );
    }
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{} (use --port)", args.port))?;
    let state = oauth::new_state();
    let auth =
        Authorization { cfg, client_id: &client_id, redirect_uri: &redirect_uri, scope: &args.scope, state: &state };
    let authorize = auth.url()?;
    println!("Open this URL in a browser, sign in to NinjaOne and allow access:\n\n  {authorize}\n");
    println!("Waiting for NinjaOne to redirect to {redirect_uri} …");

    let code =
        tokio::time::timeout(Duration::from_secs(args.timeout_secs), wait_for_code(&listener, callback.path(), &state))
            .await
            .map_err(|_| anyhow::anyhow!("no redirect within {} s; run `connect` again", args.timeout_secs))??;

    let refresh = auth.exchange(&client_secret, &code).await?;
    oauth::store_grant(secrets.as_ref(), cfg, secret, &client_id, &client_secret, &refresh).await?;
    println!("Stored the refresh token in secret '{}' ({}).", cfg.secret, oauth::backend_name(engine));

    let report = oauth::check(name, cfg, secrets.clone()).await?;
    for s in &report.steps {
        println!("  {s}");
    }
    if !report.ok {
        bail!("{name}: check failed");
    }
    println!("{name}: OK");
    Ok(())
}

/// The client secret: already in the connection's secret, else $TICKET_BRIDGE_CLIENT_SECRET,
/// else one line from stdin (never a command-line flag: those end up in shell history and `ps`).
fn client_secret(secret: &Secret) -> Result<String> {
    if let Some(s) = secret.get("client_secret").filter(|s| !s.is_empty()) {
        return Ok(s.to_string());
    }
    if let Ok(s) = std::env::var(CLIENT_SECRET_ENV)
        && !s.trim().is_empty()
    {
        return Ok(s.trim().to_string());
    }
    eprintln!("Client secret of the NinjaOne app (input is read from stdin):");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the client secret from stdin")?;
    let s = line.trim().to_string();
    if s.is_empty() {
        bail!("no client secret: type it when asked or set {CLIENT_SECRET_ENV}");
    }
    Ok(s)
}

/// Answers requests on the loopback listener until one to `path` carries a code; fails on a
/// `state` that is not ours or an `error` from NinjaOne.
async fn wait_for_code(listener: &TcpListener, path: &str, state: &str) -> Result<String> {
    loop {
        let (mut stream, _) = listener.accept().await.context("accepting the redirect")?;
        let mut buf = vec![0u8; 8192];
        let n =
            tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.unwrap_or(Ok(0)).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        let target = head.lines().next().and_then(|l| l.split(' ').nth(1)).unwrap_or("").to_string();
        let (req_path, query) = target.split_once('?').unwrap_or((&target, ""));
        if req_path != path {
            reply(&mut stream, "404 Not Found", "Not the Ticket Bridge redirect.").await;
            continue;
        }
        let q: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        if !oauth::state_matches(get("state"), state) {
            reply(
                &mut stream,
                "400 Bad Request",
                "This redirect does not belong to the running `ticket-bridge connect`.",
            )
            .await;
            bail!("the redirect's state does not match this authorization request; nothing was stored");
        }
        if let Some(err) = get("error") {
            reply(&mut stream, "400 Bad Request", "NinjaOne refused the authorization; see the terminal.").await;
            bail!("NinjaOne refused the authorization: {err} {}", get("error_description").unwrap_or(""));
        }
        let Some(code) = get("code").filter(|c| !c.is_empty()) else {
            reply(&mut stream, "400 Bad Request", "The redirect carries no code.").await;
            bail!("the redirect carries no code");
        };
        reply(&mut stream, "200 OK", "Ticket Bridge is connected to NinjaOne. You can close this tab.").await;
        return Ok(code.to_string());
    }
}

async fn reply(stream: &mut tokio::net::TcpStream, status: &str, text: &str) {
    let body = format!(
        "<!doctype html><html lang=\"en\"><title>Ticket Bridge</title><p>{}</p></html>",
        bridge_console::html::esc(text)
    );
    let msg = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(msg.as_bytes()).await.ok();
    stream.shutdown().await.ok();
}
