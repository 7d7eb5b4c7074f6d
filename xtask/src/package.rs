//! `cargo xtask package`: release builds of every Lambda function for arm64 as deployable zips
//! (cargo-lambda with zig as the cross linker, both pinned in `.venv`), then a size table.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::venv::{self, Pin};

/// cargo-lambda and the zig toolchain it links with (cargo-lambda only asks for `ziglang>=0.10`;
/// pinning zig keeps cross builds reproducible).
pub const TOOLS: &[Pin] = &[Pin { name: "cargo-lambda", version: "1.9.2" }, Pin { name: "ziglang", version: "0.15.2" }];

/// Rust target of the `arm64` Lambda architecture.
pub const TARGET: &str = "aarch64-unknown-linux-gnu";

/// Lambda's limit for a zip uploaded directly (larger ones must go through S3).
const DIRECT_UPLOAD_LIMIT: u64 = 50 * 1024 * 1024;

/// One function crate under `functions/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCrate {
    pub dir: PathBuf,
    /// Package (and binary) name.
    pub name: String,
}

/// Every `functions/<dir>/Cargo.toml`, sorted by name.
pub fn function_crates(root: &Path) -> Result<Vec<FunctionCrate>> {
    let functions = root.join("functions");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&functions).with_context(|| format!("cannot read {}", functions.display()))? {
        let dir = entry?.path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
        let name = package_name(&text).with_context(|| format!("no [package] name in {}", manifest.display()))?;
        out.push(FunctionCrate { dir, name });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    if out.is_empty() {
        bail!("no function crates under {}", functions.display());
    }
    Ok(out)
}

/// `name = "…"` of the `[package]` table of a manifest.
pub fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
        {
            return Some(value.trim().trim_matches('"').to_string());
        }
    }
    None
}

pub fn run(root: &Path, args: &[String]) -> Result<i32> {
    if let Some(a) = args.first() {
        bail!("`package` takes no arguments (got '{a}')");
    }
    let crates = function_crates(root)?;
    let venv = venv::ensure(root, TOOLS)?;
    ensure_target()?;
    let lambda_dir = crate::target_dir(root).join("lambda");

    let mut cmd = Command::new(venv.join("bin").join("cargo-lambda"));
    cmd.args(["lambda", "build", "--release", "--arm64", "--output-format", "zip", "--lambda-dir"])
        .arg(&lambda_dir)
        .current_dir(root)
        .env("PATH", venv::path_with(&venv)?);
    for c in &crates {
        cmd.args(["--package", &c.name]);
    }
    if let Some(zig) =
        venv::site_packages(&venv).into_iter().map(|sp| sp.join("ziglang").join("zig")).find(|p| p.is_file())
    {
        cmd.env("CARGO_ZIGBUILD_ZIG_PATH", zig);
    }
    let started = std::time::Instant::now();
    let status = crate::run_cmd(&mut cmd)?;
    if !status.success() {
        eprintln!("xtask: cargo lambda build failed ({status})");
        return Ok(status.code().unwrap_or(1));
    }
    println!("xtask: built {} functions in {:.0}s\n", crates.len(), started.elapsed().as_secs_f64());

    let mut rows = Vec::new();
    for c in &crates {
        let zip = lambda_dir.join(&c.name).join("bootstrap.zip");
        let bytes = std::fs::metadata(&zip).with_context(|| format!("missing {}", zip.display()))?.len();
        check_zip(&zip)?;
        rows.push((c.name.clone(), bytes, zip));
    }
    print!("{}", size_table(&rows, root));
    if let Some((name, ..)) = rows.iter().find(|(_, b, _)| *b > DIRECT_UPLOAD_LIMIT) {
        eprintln!("xtask: {name} is larger than Lambda's 50 MiB direct-upload limit");
        return Ok(1);
    }
    Ok(0)
}

/// `rustup target add` unless the arm64 standard library is already installed.
fn ensure_target() -> Result<()> {
    let out = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match out {
        Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == TARGET) => Ok(()),
        Ok(_) => {
            let status = crate::run_cmd(Command::new("rustup").args(["target", "add", TARGET]))?;
            if !status.success() {
                bail!("`rustup target add {TARGET}` failed ({status})");
            }
            Ok(())
        }
        Err(e) => {
            println!("xtask: rustup not available ({e}); assuming the {TARGET} standard library is installed");
            Ok(())
        }
    }
}

/// A zip whose local file header names `bootstrap` (the custom-runtime entry point).
fn check_zip(zip: &Path) -> Result<()> {
    let data = std::fs::read(zip).with_context(|| format!("cannot read {}", zip.display()))?;
    if !data.starts_with(b"PK\x03\x04") {
        bail!("{} is not a zip file", zip.display());
    }
    // Local file header: name length at offset 26 (u16 LE), name at offset 30.
    let name_len = data.get(26..28).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))).unwrap_or(0);
    if data.get(30..30 + name_len) != Some(b"bootstrap".as_slice()) {
        bail!("{} does not start with a `bootstrap` entry", zip.display());
    }
    Ok(())
}

/// A plain-text table of zip sizes.
pub fn size_table(rows: &[(String, u64, PathBuf)], root: &Path) -> String {
    let width = rows.iter().map(|(n, ..)| n.len()).max().unwrap_or(8).max(8);
    let mut out = format!("{:<width$}  {:>12}  {:>8}  zip\n", "function", "bytes", "MiB");
    let mut total = 0;
    for (name, bytes, zip) in rows {
        total += bytes;
        let shown = zip.strip_prefix(root).unwrap_or(zip);
        out.push_str(&format!("{name:<width$}  {bytes:>12}  {:>8.2}  {}\n", mib(*bytes), shown.display()));
    }
    out.push_str(&format!("{:<width$}  {total:>12}  {:>8.2}\n", "total", mib(total)));
    out
}

fn mib(bytes: u64) -> f64 {
    // Sizes are far below 2^52, so the conversion is exact enough for display.
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_name_reads_only_the_package_table() {
        let m = "[workspace]\nname = \"no\"\n\n[package]\nversion = \"1\"\nname = \"poll-status\"\n[dependencies]\nname = \"x\"\n";
        assert_eq!(package_name(m).as_deref(), Some("poll-status"));
        assert_eq!(package_name("[dependencies]\nname = \"x\"\n"), None);
    }

    #[test]
    fn every_function_dir_is_found() {
        let root = crate::repo_root().unwrap();
        let names: Vec<String> = function_crates(&root).unwrap().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["create-ticket", "intake", "poll-status", "refresh-token", "sync-mappings", "web-console"]);
    }

    #[test]
    fn size_table_sums_and_aligns() {
        let root = Path::new("/r");
        let rows = vec![
            ("intake".to_string(), 2 * 1024 * 1024, PathBuf::from("/r/target/lambda/intake/bootstrap.zip")),
            ("refresh-token".to_string(), 1024 * 1024, PathBuf::from("/r/target/lambda/refresh-token/bootstrap.zip")),
        ];
        let t = size_table(&rows, root);
        assert!(t.contains("intake              2097152      2.00  target/lambda/intake/bootstrap.zip"), "{t}");
        assert!(t.lines().last().unwrap().contains("3145728      3.00"), "{t}");
    }

    #[test]
    fn zip_check_wants_a_bootstrap_entry() {
        let dir = std::env::temp_dir().join(format!("xtask-zip-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut header = b"PK\x03\x04".to_vec();
        header.extend_from_slice(&[0u8; 22]);
        header.extend_from_slice(&9u16.to_le_bytes());
        header.extend_from_slice(&[0u8; 2]);
        let good = dir.join("good.zip");
        std::fs::write(&good, [header.clone(), b"bootstrap".to_vec()].concat()).unwrap();
        assert!(check_zip(&good).is_ok());
        let bad = dir.join("bad.zip");
        std::fs::write(&bad, [header, b"handler.x".to_vec()].concat()).unwrap();
        assert!(check_zip(&bad).is_err());
        std::fs::write(&bad, b"not a zip").unwrap();
        assert!(check_zip(&bad).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
