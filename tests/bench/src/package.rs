//! Benchmark 3: zip size of each function built for arm64 by cargo-lambda (installed with pip
//! into the repository's `.venv`, with `ziglang` as the cross linker).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Row, repo_root};

pub const FUNCTIONS: [&str; 4] = ["intake", "create-ticket", "poll-status", "refresh-token"];
const LIMIT: u64 = 3 * 1024 * 1024;

fn venv_bin(root: &Path) -> PathBuf {
    root.join(".venv/bin")
}

/// Makes sure cargo-lambda and zig are in `.venv` and the arm64 Rust target is installed.
fn ensure_tools(root: &Path) -> Result<()> {
    let bin = venv_bin(root);
    if !bin.join("cargo-lambda").is_file() || !bin.join("python").is_file() {
        if !bin.join("python").is_file() {
            let st = Command::new("python3").args(["-m", "venv"]).arg(root.join(".venv")).status()?;
            if !st.success() {
                bail!("cannot create .venv");
            }
        }
        eprintln!("bench: pip install cargo-lambda ziglang into .venv");
        let st = Command::new(bin.join("python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "cargo-lambda", "ziglang"])
            .status()?;
        if !st.success() {
            bail!("pip install cargo-lambda ziglang failed");
        }
    }
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output().context("rustup")?;
    if !String::from_utf8_lossy(&installed.stdout).contains("aarch64-unknown-linux-gnu") {
        let st = Command::new("rustup").args(["target", "add", "aarch64-unknown-linux-gnu"]).status()?;
        if !st.success() {
            bail!("rustup target add aarch64-unknown-linux-gnu failed");
        }
    }
    Ok(())
}

/// The biggest symbols / sections of an ELF file, as far as a stripped binary shows them.
fn dominant(elf: &Path) -> String {
    let out = Command::new("size").arg("-A").arg(elf).output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let mut secs: Vec<(String, u64)> = text
                .lines()
                .filter_map(|l| {
                    let mut p = l.split_whitespace();
                    let name = p.next()?.to_string();
                    let size = p.next()?.parse().ok()?;
                    name.starts_with('.').then_some((name, size))
                })
                .collect();
            secs.sort_by(|a, b| b.1.cmp(&a.1));
            secs.iter().take(4).map(|(n, s)| format!("{n} {:.2} MB", *s as f64 / 1048576.0)).collect::<Vec<_>>().join(", ")
        }
        _ => "size -A unavailable".into(),
    }
}

pub fn run() -> Result<(Vec<Row>, String)> {
    let root = repo_root();
    ensure_tools(&root)?;
    let bin = venv_bin(&root);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root).env("PATH", &path).args(["lambda", "build", "--release", "--arm64", "--output-format", "zip"]);
    for f in FUNCTIONS {
        cmd.args(["-p", f]);
    }
    eprintln!("bench: cargo lambda build --release --arm64 --output-format zip (slow when cold)");
    let started = std::time::Instant::now();
    let st = cmd.status().context("cannot run cargo lambda")?;
    if !st.success() {
        bail!("cargo lambda build failed ({st})");
    }
    let build_secs = started.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    let mut notes = format!(
        "`cargo lambda build --release --arm64 --output-format zip` (cargo-lambda from PyPI in `.venv`, zig as linker; \
         workspace release profile: opt-level z, fat LTO, 1 codegen unit, stripped); this run's build took {build_secs:.0} s \
         (incremental when cached). Sizes of `target/lambda/<function>/bootstrap.zip`.\n\n\
         | function | zip | unzipped bootstrap | largest sections |\n|---|---|---|---|\n"
    );
    for f in FUNCTIONS {
        let zip = root.join("target/lambda").join(f).join("bootstrap.zip");
        let meta = std::fs::metadata(&zip).with_context(|| format!("{} missing", zip.display()))?;
        let elf = root.join("target/aarch64-unknown-linux-gnu/release").join(f);
        let raw = std::fs::metadata(&elf).map(|m| m.len()).unwrap_or(0);
        let dom = dominant(&elf);
        notes.push_str(&format!("| {f} | {:.2} MB | {:.2} MB | {dom} |\n", meta.len() as f64 / 1048576.0, raw as f64 / 1048576.0));
        rows.push(Row::new(
            format!("{f}: arm64 zip size"),
            format!("{:.2} MB ({} bytes)", meta.len() as f64 / 1048576.0, meta.len()),
            "≤ 3 MB",
            Some(meta.len() <= LIMIT),
            "cargo lambda build --release --arm64 --output-format zip",
        ));
    }
    Ok((rows, notes))
}
