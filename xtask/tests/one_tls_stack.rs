//! One TLS stack per shipped binary: rustls on ring for both the AWS SDK and reqwest. reqwest is
//! compiled without a crypto provider of its own, so an HTTP client built anywhere but
//! `bridge::http::client_builder` (which installs ring) would panic at run time; and a second
//! provider (aws-lc) would add most of a megabyte to every zip.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn product_code_builds_http_clients_only_through_client_builder() {
    let root = root();
    let mut files = Vec::new();
    for dir in ["shared/src", "cli/src", "console/src", "functions"] {
        rust_files(&root.join(dir), &mut files);
    }
    let allowed = root.join("shared/src/http/mod.rs");
    let mut offenders = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let builds = line.contains("reqwest::Client::new(")
                || line.contains("reqwest::Client::builder(")
                || line.contains("reqwest::ClientBuilder::new(")
                || (line.contains("Client::builder()") && *f != allowed);
            if builds {
                offenders.push(format!("{}:{}: {}", f.strip_prefix(&root).unwrap().display(), n + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "build HTTP clients with bridge::http::client_builder():\n{}", offenders.join("\n"));
}

#[test]
fn shipped_binaries_link_ring_and_not_aws_lc() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for package in ["intake", "create-ticket", "poll-status", "refresh-token", "sync-mappings", "ticket-bridge"] {
        let tree = |krate: &str| {
            let out = Command::new(&cargo)
                .current_dir(root())
                .args(["tree", "--locked", "-e", "normal", "-p", package, "-i", krate])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert!(tree("ring").contains("rustls"), "{package}: rustls on ring expected");
        assert!(tree("aws-lc-rs").trim().is_empty(), "{package} links aws-lc:\n{}", tree("aws-lc-rs"));
    }
}
