//! `cargo xtask lint`: the SAM template (cfn-lint, `sam validate --lint`), clippy, rustfmt and the
//! library's layer rule ([`crate::layers`]).

use anyhow::Result;
use std::path::Path;
use std::process::Command;

use crate::venv::{self, Pin};

/// Linters pinned in `.venv` (the SAM CLI runs cfn-lint itself for `--lint`).
pub const TOOLS: &[Pin] =
    &[Pin { name: "cfn-lint", version: "1.58.0" }, Pin { name: "aws-sam-cli", version: "1.170.0" }];

/// The SAM template, relative to the repository root.
pub const TEMPLATE: &str = "infra/template.yaml";

/// Runs every check (all of them, even after a failure) and reports which failed.
pub fn run(root: &Path, args: &[String]) -> Result<i32> {
    if let Some(a) = args.first() {
        anyhow::bail!("`lint` takes no arguments (got '{a}')");
    }
    let venv = venv::ensure(root, TOOLS)?;
    let bin = venv.join("bin");
    let path = venv::path_with(&venv)?;

    let mut steps: Vec<(&str, Command)> = Vec::new();

    let mut cfn = Command::new(bin.join("cfn-lint"));
    cfn.arg(TEMPLATE);
    steps.push(("cfn-lint", cfn));

    let mut sam = Command::new(bin.join("sam"));
    sam.args(["validate", "--lint", "-t", TEMPLATE]);
    offline_aws_env(&mut sam);
    steps.push(("sam validate --lint", sam));

    let mut clippy = Command::new(crate::cargo());
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    steps.push(("clippy", clippy));

    let mut fmt = Command::new(crate::cargo());
    fmt.args(["fmt", "--all", "--check"]);
    steps.push(("rustfmt", fmt));

    let mut failed = Vec::new();
    match crate::layers::check_tree(&root.join("shared/src")) {
        Ok(v) if v.is_empty() => println!("xtask: layers ({}): ok", crate::layers::order()),
        Ok(v) => {
            for violation in &v {
                eprintln!("xtask: {violation}");
            }
            println!("xtask: layers: FAILED ({} upward imports; order: {})", v.len(), crate::layers::order());
            failed.push("layers");
        }
        Err(e) => {
            eprintln!("xtask: layers: {e:#}");
            failed.push("layers");
        }
    }
    for (name, mut cmd) in steps {
        cmd.current_dir(root).env("PATH", &path);
        let ok = match crate::run_cmd(&mut cmd) {
            Ok(status) => status.success(),
            Err(e) => {
                eprintln!("xtask: {name}: {e:#}");
                false
            }
        };
        println!("xtask: {name}: {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(name);
        }
    }
    if failed.is_empty() {
        println!("xtask: lint passed");
        Ok(0)
    } else {
        eprintln!("xtask: lint FAILED: {}", failed.join(", "));
        Ok(1)
    }
}

/// `sam validate` wants a region and credentials even though `--lint` never calls AWS: give it
/// dummy ones, no telemetry, and never a developer's real session.
fn offline_aws_env(cmd: &mut Command) {
    cmd.env("SAM_CLI_TELEMETRY", "0")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "xtask-lint")
        .env("AWS_SECRET_ACCESS_KEY", "xtask-lint")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
}
