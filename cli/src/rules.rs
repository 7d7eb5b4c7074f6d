//! `ticket-bridge rules test task.json`: which `[[rules]]` entry a task matches and the ticket that
//! would be sent for it, without storing or sending anything.

use anyhow::{Context, Result, bail};
use bridge::config::Config;
use bridge::domain::Task;
use clap::Subcommand;
use std::io::Read;
use std::path::Path;

#[derive(Subcommand)]
pub enum RulesCmd {
    /// Show the rule a task (a POST /v1/tasks body; `-` reads stdin) matches and the ticket it would get.
    Test { task: std::path::PathBuf },
}

pub fn run(config_path: Option<&Path>, cmd: RulesCmd) -> Result<()> {
    let RulesCmd::Test { task } = cmd;
    let Some(config_path) = config_path else {
        bail!("rules test needs a configuration (--config or TICKET_BRIDGE_CONFIG)");
    };
    let config = Config::load(Some(config_path), std::env::vars())?;
    let body = if task.as_os_str() == "-" {
        let mut s = Vec::new();
        std::io::stdin().read_to_end(&mut s).context("reading the task from stdin")?;
        s
    } else {
        std::fs::read(&task).with_context(|| format!("cannot read {}", task.display()))?
    };
    let new = bridge::engine::intake::parse_task(&body).map_err(|e| match &e.field {
        Some(f) => anyhow::anyhow!("task field '{f}': {}", e.message),
        None => anyhow::anyhow!("task: {}", e.message),
    })?;
    let (connection, _) = config.route_task((&new).into(), new.connection.as_deref()).map_err(anyhow::Error::msg)?;
    let connection = connection.to_string();
    let task = Task::new(new, connection.clone(), chrono::Utc::now());
    let view = bridge::engine::task_json(&task);
    let (req, rule) =
        bridge::engine::ticket_request::ticket_request(&config, &task, &view).map_err(anyhow::Error::msg)?;
    let mut ticket = serde_json::to_value(&req)?;
    if let Some(o) = ticket.as_object_mut() {
        // The task itself, and what is only known when sending (customer and contact lookups).
        for k in ["fields", "correlation_key", "customer_id", "contact_id"] {
            o.remove(k);
        }
    }
    let rule = rule.map(|(i, r)| serde_json::json!({"index": i, "name": r.name}));
    match &rule {
        Some(r) => eprintln!("rule {} matches; connection {connection}", r["index"]),
        None => eprintln!("no rule matches; connection {connection} with its defaults"),
    }
    let out = serde_json::json!({"rule": rule, "connection": connection, "ticket": ticket,
        "note": "customer and contact are resolved when the ticket is sent"});
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
