//! `cargo xtask bench [-- ARGS]`: starts moto, builds the release binaries the start-up and
//! intake benchmarks exec, and runs the `bench` crate, which rewrites docs/benchmarks.md.
//! ARGS go to the bench binary (e.g. `-- --only poll,dynamo`). On a fresh machine it installs what
//! the sections exec: wrk (Debian package) for the intake section.

use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::{Moto, cargo, ensure_venv, exit_code, peer, run_cmd, target_dir};

/// Debian packages the benchmarks exec: wrk for the intake section's closed-loop peak.
const BENCH_PACKAGES: [&str; 1] = ["wrk"];

pub fn bench(root: &Path, args: &[String]) -> Result<i32> {
    let extra: &[String] = match args.split_first() {
        None => &[],
        Some((dashdash, rest)) if dashdash == "--" => rest,
        Some(_) => bail!("unexpected arguments {args:?}; pass bench arguments after `--`"),
    };
    let started = Instant::now();
    let wants = |name: &str| {
        let only = extra.iter().position(|a| a == "--only").and_then(|i| extra.get(i + 1));
        only.is_none_or(|list| list.split(',').any(|n| n == name))
    };
    // BENCH_SKIP_BUILD=1 reuses the release binaries already in target/release.
    let skip_build = std::env::var_os("BENCH_SKIP_BUILD").is_some_and(|v| v != "0");
    if wants("intake") {
        // The intake section drives `ticket-bridge serve` with wrk for its peak throughput.
        peer::ensure_packages(&BENCH_PACKAGES)?;
    }
    if (wants("lambda") || wants("intake")) && !skip_build {
        // Release builds of what the start-up and intake benchmarks exec (cached in target/release).
        let mut build = Command::new(cargo());
        build.current_dir(root).args([
            "build",
            "--release",
            "-p",
            "intake",
            "-p",
            "create-ticket",
            "-p",
            "poll-status",
            "-p",
            "refresh-token",
            "-p",
            "ticket-bridge",
        ]);
        let st = run_cmd(&mut build)?;
        if !st.success() {
            return Ok(exit_code(st));
        }
    }
    let moto_server = ensure_venv(root)?;
    let moto = Moto::start(&moto_server, &target_dir(root))?;
    let endpoint = moto.endpoint();
    println!("xtask: moto_server ready at {endpoint}");
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root)
        // The simulators filter every ticket on each request; unoptimized, they would dominate the
        // 10,000-ticket cycles. Only the sandbox crate is built optimized for the bench run.
        .args(["run", "--quiet", "--config", "profile.dev.package.sandbox.opt-level=3", "-p", "bench", "--"])
        .args(extra)
        .env("TB_AWS_ENDPOINT", &endpoint)
        .env("BENCH_RELEASE_DIR", target_dir(root).join("release"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
    let status = run_cmd(&mut cmd)?;
    drop(moto);
    println!(
        "xtask: bench {} in {:.0}s",
        if status.success() { "finished" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    Ok(exit_code(status))
}
