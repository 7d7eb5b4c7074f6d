//! Developer and CI tasks: `cargo xtask <command>`.
//!
//! - `test [-- <extra test-runner args>]`: sets up `.venv` with the pinned `moto[server]`,
//!   installs Debian's `chromium` and `chromium-driver` (apt-get, when missing) for the console's
//!   browser tests, starts `moto_server` on a free loopback port, runs every workspace test against
//!   it and always stops the server again. Exits with the test run's status.
//! - `moto [--port N]`: starts `moto_server` in the foreground and prints the environment to use.
//! - `lint`: the SAM template (cfn-lint, `sam validate --lint`), clippy, rustfmt and the layer
//!   rule of the library ([`lint`], [`layers`]).
//! - `package`: arm64 release zips of every Lambda function with cargo-lambda ([`package`]).
//! - `audit`: cargo-deny over the dependency graph ([`audit`]).
//! - `peer rt`: the RT connector's suites against a real Request Tracker ([`peer`]).

mod audit;
mod bench;
mod layers;
mod lint;
mod package;
mod peer;
mod venv;

mod soak;

use anyhow::{Context, Result, anyhow, bail};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Debian packages of the console's browser tests (cli/tests/console_browser.rs).
const BROWSER_PACKAGES: [&str; 2] = ["chromium", "chromium-driver"];

/// Exact moto release the tests are written against.
const MOTO_REQUIREMENT: &str = "moto[server]==5.2.5";
const MOTO_VERSION: &str = "5.2.5";
/// How long moto may take to answer HTTP after start.
const MOTO_START_TIMEOUT: Duration = Duration::from_secs(60);

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [-- ARGS]   install moto (in .venv) and chromium + chromium-driver (apt-get, when missing,
                   for the console's browser tests), start moto on a free loopback port, run all workspace
                   tests (cargo nextest if installed, else cargo test), stop moto; ARGS go to the
                   test runner (e.g. `cargo xtask test -- secrets`)
  moto [--port N]  run moto_server in the foreground and print the environment for tests
  lint             cfn-lint + `sam validate --lint` on infra/template.yaml (tools pinned in .venv),
                   cargo clippy --workspace --all-targets -D warnings, cargo fmt --check,
                   the library's layer rule (imports only point down)
  package          cargo lambda build --release --arm64 --output-format zip for every crate in
                   functions/ (cargo-lambda + ziglang pinned in .venv); prints each zip's size
  soak [SCALE]     the reliability suites with TB_SOAK_SCALE=SCALE (default 10), then the soak of
                   serve at TB_SOAK_TASKS (default 100,000), then the reports
  soak-serve [TASKS]  only the soak of serve (default 100,000 tasks), then docs/soak.md
  reliability-report  write docs/reliability.md from target/reliability/*.json
  audit [--advisory-db PATH] [CHECKS]
                   cargo-deny (pinned in .venv) with deny.toml: licenses, bans, sources, and
                   advisories from PATH (a rustsec/advisory-db git clone), else fetched from
                   GitHub, skipped with a note when that fails; CHECKS narrows the run
  peer rt          install Debian's request-tracker5 (apt-get, when missing), start a throwaway
                   SQLite RT on a free loopback port, run the RT conformance suite and the serve
                   end-to-end test against it (TB_RT_URL, TB_RT_TOKEN), stop it and clean up
  bench [-- ARGS]  run the benchmarks (moto, release builds, cargo-lambda) and rewrite
                   docs/benchmarks.md; ARGS e.g. `-- --only poll,dynamo`

environment:
  PYTHON           interpreter used to create .venv (default: python3)
  CI               when set, nextest uses its `ci` profile (unless --profile/NEXTEST_PROFILE given)
  XTASK_NO_DOCTESTS=1  skip `cargo test --doc` after nextest
  TB_ADVISORY_DB   advisory database for `audit` when --advisory-db is not given";

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            1
        }
    };
    // Every guard (moto) has been dropped by now; exiting is safe.
    std::process::exit(code);
}

fn run() -> Result<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root()?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root, &args[1..]),
        Some("moto") => moto_foreground(&root, &args[1..]),
        Some("lint") => lint::run(&root, &args[1..]),
        Some("package") => package::run(&root, &args[1..]),
        Some("soak" | "soak-serve" | "reliability-report") => soak::run(&root, &args),
        Some("audit") => audit::run(&root, &args[1..]),
        Some("bench") => bench::bench(&root, &args[1..]),
        Some("peer") => peer::run(&root, &args[1..]),
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(if args.is_empty() { 2 } else { 0 })
        }
        Some(other) => {
            eprintln!("xtask: unknown command '{other}'\n\n{USAGE}");
            Ok(2)
        }
    }
}

/// The workspace root: the parent of this crate's directory.
fn repo_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot find the repository root above {}", manifest_dir.display()))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

// ------------------------------------------------------------------------------------ test

fn test(root: &Path, args: &[String]) -> Result<i32> {
    let extra: &[String] = match args.split_first() {
        None => &[],
        Some((dashdash, rest)) if dashdash == "--" => rest,
        Some(_) => bail!("unexpected arguments {args:?}; pass test-runner arguments after `--`\n\n{USAGE}"),
    };
    let started = Instant::now();
    let moto_server = ensure_venv(root)?;
    // The console's browser tests drive Debian's headless Chromium through chromedriver.
    let browser = Instant::now();
    peer::ensure_packages(&BROWSER_PACKAGES)?;
    println!("xtask: browser packages ready in {:.1}s", browser.elapsed().as_secs_f64());
    let moto = Moto::start(&moto_server, &target_dir(root))?;
    let endpoint = moto.endpoint();
    println!("xtask: moto_server ready at {endpoint} (log: {})", moto.log.display());

    let aws_env = |cmd: &mut Command| {
        cmd.current_dir(root)
            .env("TB_BROWSER_TESTS", "required")
            .env("TB_AWS_ENDPOINT", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // Never let a developer's real AWS session leak into the tests.
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE");
    };

    let tests_started = Instant::now();
    let status = if nextest_available() {
        let mut cmd = Command::new(cargo());
        cmd.args(["nextest", "run", "--workspace", "--all-targets"]);
        let wants_profile = extra.iter().any(|a| a == "--profile" || a.starts_with("--profile=") || a == "-P");
        if std::env::var_os("CI").is_some() && std::env::var_os("NEXTEST_PROFILE").is_none() && !wants_profile {
            cmd.args(["--profile", "ci"]);
        }
        cmd.args(extra);
        aws_env(&mut cmd);
        let mut status = run_cmd(&mut cmd)?;
        // nextest does not run doctests; they are cheap here, so run them unless asked not to
        // or the caller narrowed the run with extra arguments.
        let skip_doc = std::env::var_os("XTASK_NO_DOCTESTS").is_some_and(|v| v != "0") || !extra.is_empty();
        if status.success() && !skip_doc {
            let mut doc = Command::new(cargo());
            doc.args(["test", "--workspace", "--doc", "--quiet"]);
            aws_env(&mut doc);
            status = run_cmd(&mut doc)?;
        }
        status
    } else {
        println!("xtask: cargo-nextest not found (install: cargo install cargo-nextest); using cargo test");
        let mut cmd = Command::new(cargo());
        cmd.args(["test", "--workspace"]).args(extra);
        aws_env(&mut cmd);
        run_cmd(&mut cmd)?
    };
    drop(moto);
    println!(
        "xtask: tests {} in {:.1}s (total {:.1}s)",
        if status.success() { "passed" } else { "FAILED" },
        tests_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(exit_code(status))
}

fn nextest_available() -> bool {
    Command::new(cargo())
        .args(["nextest", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_cmd(cmd: &mut Command) -> Result<ExitStatus> {
    println!("xtask: running {}", describe(cmd));
    cmd.status().with_context(|| format!("cannot run {}", describe(cmd)))
}

fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

fn exit_code(status: ExitStatus) -> i32 {
    match status.code() {
        Some(code) => code,
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(signal) = status.signal() {
                    return 128 + signal;
                }
            }
            1
        }
    }
}

// ------------------------------------------------------------------------------------ venv

/// Makes sure `<root>/.venv` holds the pinned moto; returns the path of `moto_server`.
fn ensure_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join(".venv");
    let bin = venv.join("bin");
    let python = bin.join("python");
    let moto_server = bin.join("moto_server");
    if moto_server.is_file() && python.is_file() && moto_installed(&venv) {
        println!("xtask: using {} ({MOTO_REQUIREMENT})", venv.display());
        return Ok(moto_server);
    }
    let started = Instant::now();
    if !python.is_file() {
        let interpreter = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        println!("xtask: creating Python venv {} with {interpreter}", venv.display());
        let mut cmd = Command::new(&interpreter);
        cmd.args([OsStr::new("-m"), OsStr::new("venv"), OsStr::new("--clear"), venv.as_os_str()]);
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
    println!("xtask: installing {MOTO_REQUIREMENT} into {} (pip, quiet)", venv.display());
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", MOTO_REQUIREMENT]);
    let status = pip.status().with_context(|| format!("cannot run {}", describe(&pip)))?;
    if !status.success() {
        bail!("`{}` failed ({status}); is PyPI reachable?", describe(&pip));
    }
    if !moto_server.is_file() || !moto_installed(&venv) {
        bail!("pip succeeded but {} or moto {MOTO_VERSION} is missing", moto_server.display());
    }
    println!("xtask: venv ready in {:.1}s", started.elapsed().as_secs_f64());
    Ok(moto_server)
}

/// Whether the venv's site-packages hold exactly the pinned moto release.
fn moto_installed(venv: &Path) -> bool {
    let marker = format!("moto-{MOTO_VERSION}.dist-info");
    let Ok(libs) = fs::read_dir(venv.join("lib")) else { return false };
    libs.flatten().any(|lib| lib.path().join("site-packages").join(&marker).is_dir())
}

// ------------------------------------------------------------------------------------ moto

/// A running `moto_server`; killed and reaped when dropped, whatever happened in between.
struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Moto {
    /// Starts moto on a free loopback port with output to `<target>/moto.log` and waits until it
    /// answers HTTP. Retries on another port if the server exits early (the port was taken meanwhile).
    fn start(moto_server: &Path, target: &Path) -> Result<Self> {
        fs::create_dir_all(target).with_context(|| format!("cannot create {}", target.display()))?;
        let log = target.join("moto.log");
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
            let err = out.try_clone()?;
            // moto_serial.py runs moto_server with request handling serialized, so conditional
            // writes are atomic as in DynamoDB (see the script).
            let python = moto_server.with_file_name("python");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("moto_serial.py");
            println!("xtask: starting {} -H 127.0.0.1 -p {port} (serialized)", script.display());
            let child = Command::new(&python)
                .arg(&script)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .with_context(|| format!("cannot start {}", moto_server.display()))?;
            let mut moto = Moto { child, port, log: log.clone() };
            match moto.wait_ready(MOTO_START_TIMEOUT) {
                Ok(()) => return Ok(moto),
                // It exited (e.g. the port was taken in the meantime): try another port.
                Err(e) if matches!(moto.child.try_wait(), Ok(Some(_))) => last_err = Some(e),
                // It hangs: waiting again would not help. Dropping `moto` kills it.
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("moto_server did not start")))
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "moto_server exited early ({status}); last lines of {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            if answers_http(self.port, "/moto-api/") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "moto_server did not answer on port {} within {}s; last lines of {}:\n{}",
                    self.port,
                    timeout.as_secs(),
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (bind to port 0, read it, release it).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Whether something on the port answers a minimal HTTP request for `path` with a status line.
fn answers_http(port: u16, path: &str) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// The last `lines` lines of a log file (or a note that it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let shown = all[all.len().saturating_sub(lines)..].join("\n");
            if shown.is_empty() { "(empty)".into() } else { shown }
        }
        Err(e) => format!("(cannot read: {e})"),
    }
}

// ------------------------------------------------------------------------------------ moto (fg)

fn moto_foreground(root: &Path, args: &[String]) -> Result<i32> {
    let port = match args {
        [] => free_port()?,
        [flag, port] if flag == "--port" || flag == "-p" => {
            port.parse().with_context(|| format!("invalid port '{port}'"))?
        }
        _ => bail!("usage: cargo xtask moto [--port N]"),
    };
    let moto_server = ensure_venv(root)?;
    println!(
        "xtask: starting {} -H 127.0.0.1 -p {port} (Ctrl-C stops it). In another shell:\n\n  \
         export TB_AWS_ENDPOINT=http://127.0.0.1:{port} AWS_ACCESS_KEY_ID=test \
         AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true\n",
        moto_server.display()
    );
    let mut cmd = Command::new(moto_server.with_file_name("python"));
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("moto_serial.py"));
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdin(Stdio::null());
    #[cfg(unix)]
    {
        // Become moto_server: Ctrl-C then reaches it directly and nothing is left behind.
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        Err(anyhow!(err).context(format!("cannot start {}", moto_server.display())))
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status().with_context(|| format!("cannot start {}", moto_server.display()))?;
        Ok(exit_code(status))
    }
}
