//! Client commands: `check`, `tasks`, `sandbox`.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::path::Path;

#[derive(Subcommand)]
pub enum TasksCmd {
    /// Show one task.
    #[command(alias = "get")]
    Show { id: String },
    /// List tasks in a state (default: failed, the dead letters).
    List {
        #[arg(long, default_value = "failed")]
        state: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Put a dead-lettered task back in the queue.
    Replay { id: String },
    /// Cancel a task.
    Cancel { id: String },
}

#[derive(Subcommand)]
pub enum SandboxCmd {
    /// List the sandbox ITSM's tickets.
    List,
    /// Close a ticket as a technician would.
    Close {
        ticket_id: String,
        /// Status to close with (e.g. Resolved, Closed, Rejected).
        #[arg(long, default_value = "Resolved")]
        status: String,
    },
}

async fn call(req: reqwest::RequestBuilder) -> Result<serde_json::Value> {
    let res = req.send().await.context("cannot reach the server (is `ticket-bridge serve` running?)")?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        let msg = body.pointer("/error/message").and_then(|m| m.as_str()).unwrap_or("");
        bail!("server answered {status}: {msg}");
    }
    Ok(body)
}

pub async fn tasks(server: &str, key: Option<&str>, cmd: TasksCmd) -> Result<()> {
    let http = bridge::http::client_builder().build()?;
    let base = server.trim_end_matches('/');
    let auth = |r: reqwest::RequestBuilder| match key {
        Some(k) => r.bearer_auth(k),
        None => r,
    };
    let out = match cmd {
        TasksCmd::Show { id } => call(auth(http.get(format!("{base}/v1/tasks/{id}")))).await?,
        TasksCmd::List { state, limit } => {
            call(auth(http.get(format!("{base}/v1/tasks")).query(&[("state", state), ("limit", limit.to_string())])))
                .await?
        }
        TasksCmd::Replay { id } => call(auth(http.post(format!("{base}/v1/tasks/{id}/replay")))).await?,
        TasksCmd::Cancel { id } => call(auth(http.delete(format!("{base}/v1/tasks/{id}")))).await?,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub async fn sandbox(server: &str, cmd: SandboxCmd) -> Result<()> {
    let http = bridge::http::client_builder().build()?;
    let base = server.trim_end_matches('/');
    let out = match cmd {
        SandboxCmd::List => call(http.get(format!("{base}/sandbox/tickets"))).await?,
        SandboxCmd::Close { ticket_id, status } => {
            call(
                http.post(format!("{base}/sandbox/tickets/{ticket_id}/close"))
                    .json(&serde_json::json!({"status": status})),
            )
            .await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub async fn check(config: Option<&Path>, data_dir: &Path, connection: &str) -> Result<()> {
    let local = crate::local::build(config, data_dir).await?;
    let Some(c) = local.engine.connectors.get(connection) else {
        bail!(
            "unknown connection '{connection}'; configured: {:?}",
            local.engine.connectors.keys().collect::<Vec<_>>()
        );
    };
    match c.check().await {
        Ok(report) => {
            for s in &report.steps {
                println!("  {s}");
            }
            if report.ok {
                println!("{connection}: OK");
                Ok(())
            } else {
                bail!("{connection}: check failed")
            }
        }
        Err(e) => bail!("{connection}: {e}"),
    }
}
