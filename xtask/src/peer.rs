//! `cargo xtask peer rt`: the RT connector's suites against a real Request Tracker.
//!
//! Installs Debian's `request-tracker5`, `rt5-db-sqlite` and `rt5-standalone` with apt-get when
//! missing, initialises a throwaway SQLite RT in a temporary folder (its own `RT_SiteConfig.pm`
//! through `RT_SITE_CONFIG` / `RT_SITE_CONFIG_DIR`: no web path, low bcrypt cost, mail to files),
//! creates root's auth token and the correlation custom field with RT's own Perl API
//! (`xtask/rt_peer_setup.pl`), serves it with `rt-server` on a free loopback port, runs the
//! connector conformance suite, the change-filter test (`connector_changes`) and the `serve`
//! end-to-end test against it (`TB_RT_URL`,
//! `TB_RT_TOKEN`), then stops the server and removes the folder.

use anyhow::{Context, Result, bail};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{answers_http, describe, exit_code, free_port, nextest_available, run_cmd, tail};

/// The Debian packages of RT 5 with SQLite and the standalone (Starlet) server.
const PACKAGES: [&str; 3] = ["request-tracker5", "rt5-db-sqlite", "rt5-standalone"];
/// Where Debian puts RT's tools.
const SETUP_DATABASE: &str = "/usr/sbin/rt-setup-database-5";
const RT_SERVER: &str = "/usr/share/request-tracker5/libexec/rt-server";
/// Custom fields the suites use (`sandbox::rt_peer::CORRELATION_CF`, the serve test's customer).
const CUSTOM_FIELDS: [&str; 2] = ["TicketBridgeKey", "Customer"];
/// The tests that run against the real RT: the RT conformance suite and the serve end-to-end flow.
const FILTER: &str = "(binary(connector_conformance) & test(/^rt::/)) | (binary(assignee_fields) & test(/^rt::/)) \
     | (binary(connector_changes) & test(/^rt::/)) | (binary(serve) & test(=serve_rt))";
/// How long RT may take to answer HTTP after start (it loads all of RT per worker).
const START_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(root: &Path, args: &[String]) -> Result<i32> {
    match args.first().map(String::as_str) {
        Some("rt") if args.len() == 1 => rt(root),
        _ => bail!("usage: cargo xtask peer rt"),
    }
}

fn rt(root: &Path) -> Result<i32> {
    let started = Instant::now();
    let install = Instant::now();
    ensure_packages(&PACKAGES)?;
    let install = install.elapsed();

    let setup = Instant::now();
    let dir = TempDir::new()?;
    let (server, token) = RtServer::start(&dir.0)?;
    let setup = setup.elapsed();
    let url = format!("http://127.0.0.1:{}", server.port);
    println!("xtask: RT ready at {url} (folder {}, log {})", dir.0.display(), server.log.display());

    let tests = Instant::now();
    let env = |cmd: &mut Command| {
        cmd.current_dir(root).env("TB_RT_URL", &url).env("TB_RT_TOKEN", &token);
    };
    // One test at a time: RT on SQLite serialises writes, and the suites' 1 s request timeouts
    // are meant for the connector's behaviour, not for queueing behind other tests.
    let mut commands = Vec::new();
    if nextest_available() {
        // The same selection of packages and targets as `cargo xtask test`, so CI reuses its build.
        let mut cmd = Command::new(crate::cargo());
        cmd.args(["nextest", "run", "--workspace", "--all-targets", "--test-threads", "1", "--no-fail-fast", "-E"]);
        cmd.arg(FILTER);
        commands.push(cmd);
    } else {
        for (package, test, filter) in [
            ("bridge", "connector_conformance", "rt::"),
            ("bridge", "assignee_fields", "rt::"),
            ("bridge", "connector_changes", "rt::"),
            ("ticket-bridge", "serve", "serve_rt"),
        ] {
            let mut cmd = Command::new(crate::cargo());
            cmd.args(["test", "-p", package, "--test", test, filter, "--", "--test-threads", "1"]);
            commands.push(cmd);
        }
    }
    let mut status = None;
    for mut cmd in commands {
        env(&mut cmd);
        let s = run_cmd(&mut cmd)?;
        if status.is_none_or(|prev: std::process::ExitStatus| prev.success()) {
            status = Some(s);
        }
    }
    let tests = tests.elapsed();
    drop(server);
    drop(dir);
    let ok = status.is_some_and(|s| s.success());
    println!(
        "xtask: peer rt {} — install {:.1}s, RT setup and start {:.1}s, tests {:.1}s, total {:.1}s",
        if ok { "passed" } else { "FAILED" },
        install.as_secs_f64(),
        setup.as_secs_f64(),
        tests.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(status.map(exit_code).unwrap_or(1))
}

/// Installs the Debian `packages` that `dpkg-query` does not report as installed (apt-get, as root
/// or through `sudo -n`).
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("xtask: {} installed", packages.join(", "));
        return Ok(());
    }
    println!("xtask: installing {} with apt-get", missing.join(", "));
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| -> Result<()> {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        let status = run_cmd(&mut cmd)?;
        if !status.success() {
            bail!("`{}` failed ({status}); run as root or with passwordless sudo", describe(&cmd));
        }
        Ok(())
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install)?;
    if let Some(p) = packages.iter().find(|p| !installed(p)) {
        bail!("apt-get succeeded but {p} is not installed");
    }
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// A temporary folder (in /dev/shm when there is one), removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        // In RAM where the machine has it: RT on SQLite syncs on every write, and right after a cold
        // build the disk's write-back can stall those syncs past the suites' 1 s request timeouts.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() && fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly()) {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("tb-rt-peer-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        for sub in ["site.d", "mason", "sessions", "log"] {
            fs::create_dir_all(dir.join(sub)).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The running `rt-server`, in its own process group; the group is stopped when dropped.
struct RtServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl RtServer {
    /// Writes the config, initialises the database, creates the token and custom fields, starts
    /// the server and waits until it answers. Returns the server and root's token.
    fn start(dir: &Path) -> Result<(Self, String)> {
        let log = dir.join("log").join("rt-server.log");
        let mut last_err = None;
        for attempt in 0..3 {
            let port = free_port()?;
            let config = dir.join("RT_SiteConfig.pm");
            fs::write(&config, site_config(dir, port)).with_context(|| format!("cannot write {}", config.display()))?;
            let rt_env = |cmd: &mut Command| {
                cmd.current_dir(dir).env("RT_SITE_CONFIG", &config).env("RT_SITE_CONFIG_DIR", dir.join("site.d"));
            };
            let token = if attempt == 0 {
                let mut init = Command::new(SETUP_DATABASE);
                init.args(["--action", "init", "--skip-create"]);
                rt_env(&mut init);
                quiet(&mut init, &dir.join("log").join("setup-database.log"))?;
                let mut setup = Command::new("perl");
                setup.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("rt_peer_setup.pl")).args(CUSTOM_FIELDS);
                rt_env(&mut setup);
                let out = setup.output().with_context(|| format!("cannot run {}", describe(&setup)))?;
                if !out.status.success() {
                    bail!("`{}` failed: {}", describe(&setup), String::from_utf8_lossy(&out.stderr));
                }
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                let token = stdout.lines().last().unwrap_or("").trim().to_string();
                if token.is_empty() {
                    bail!("{} printed no token", describe(&setup));
                }
                fs::write(dir.join("token"), &token)?;
                token
            } else {
                fs::read_to_string(dir.join("token"))?.trim().to_string()
            };
            let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
            let mut cmd = Command::new(RT_SERVER);
            // One worker, never recycled: its first requests load much of RT (0.7-0.9 s each,
            // measured), so it is warmed up below and must stay warm for the suites' 1 s timeouts.
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--max-workers", "1"])
                .args(["--max-reqs-per-child", "1000000"])
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out);
            rt_env(&mut cmd);
            #[cfg(unix)]
            {
                use std::os::unix::process::CommandExt;
                cmd.process_group(0);
            }
            println!("xtask: starting {}", describe(&cmd));
            let child = cmd.spawn().with_context(|| format!("cannot start {RT_SERVER}"))?;
            let mut server = RtServer { child, port, log: log.clone() };
            match server.wait_ready() {
                Ok(()) => {
                    server.warm_up(&token)?;
                    return Ok((server, token));
                }
                // It exited (e.g. the port was taken meanwhile): try another port.
                Err(e) if matches!(server.child.try_wait(), Ok(Some(_))) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("rt-server did not start")))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "rt-server exited early ({status}); last lines of {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            if answers_http(self.port, "/REST/2.0/rt") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "rt-server did not answer on port {} within {}s; last lines of {}:\n{}",
                    self.port,
                    START_TIMEOUT.as_secs(),
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            sleep(Duration::from_millis(100));
        }
    }
}

impl RtServer {
    /// Sends RT each kind of request the suites make once (create, comment, search, status
    /// change, queue read) and checks the answers, so the worker has loaded what they need.
    fn warm_up(&self, token: &str) -> Result<()> {
        let started = Instant::now();
        let create = r#"{"Queue":"General","Subject":"warm-up","Content":"warm-up","ContentType":"text/plain","Requestor":"warm-up@example.com","CustomFields":{"TicketBridgeKey":"warm-up"}}"#;
        let (status, body) = http(self.port, token, "POST", "/REST/2.0/ticket", Some(create))?;
        if status != 201 {
            bail!("warm-up ticket not created: {status} {body}");
        }
        let id: String = body
            .split("\"id\"")
            .nth(1)
            .map(|rest| rest.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect())
            .unwrap_or_default();
        if id.is_empty() {
            bail!("warm-up create answered without an id: {body}");
        }
        let steps = [
            (
                "POST",
                format!("/REST/2.0/ticket/{id}/comment"),
                Some(r#"{"Content":"warm-up","ContentType":"text/plain"}"#),
                201,
            ),
            (
                "GET",
                "/REST/2.0/tickets?query=%27CF.%7BTicketBridgeKey%7D%27%3D%27warm-up%27&fields=Status".into(),
                None,
                200,
            ),
            ("GET", "/REST/2.0/queue/General".into(), None, 200),
            ("PUT", format!("/REST/2.0/ticket/{id}"), Some(r#"{"Status":"resolved"}"#), 200),
        ];
        for (method, path, body, want) in steps {
            let (status, text) = http(self.port, token, method, &path, body)?;
            if status != want {
                bail!("warm-up {method} {path}: {status} {text}");
            }
        }
        println!("xtask: RT warmed up in {:.1}s", started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// One HTTP/1.1 request to RT on the loopback port; returns the status and body.
fn http(port: u16, token: &str, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).context("cannot connect to RT")?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).context("cannot read RT's answer")?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

impl Drop for RtServer {
    fn drop(&mut self) {
        // Starlet's master stops its workers on SIGTERM; the group kill also reaches any worker
        // whose master is already gone. Only this server's own group is signalled.
        let group = format!("-{}", self.child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill").args([sig, "--", &group]).stderr(Stdio::null()).status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            sleep(Duration::from_millis(50));
        }
        signal("-KILL");
        let _ = self.child.wait();
    }
}

/// The throwaway instance's whole site configuration (Debian's in /etc is not read).
fn site_config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "# Written by `cargo xtask peer rt`; removed with this folder.\n\
         Set($rtname, 'tb-peer');\n\
         Set($Organization, 'tb-peer.invalid');\n\
         Set($CorrespondAddress, 'rt@tb-peer.invalid');\n\
         Set($CommentAddress, 'rt-comment@tb-peer.invalid');\n\
         Set($Timezone, 'UTC');\n\
         Set($WebDomain, '127.0.0.1');\n\
         Set($WebPort, {port});\n\
         Set($WebPath, '');\n\
         Set($WebBaseURL, 'http://127.0.0.1:{port}');\n\
         Set($DatabaseType, 'SQLite');\n\
         Set($DatabaseName, '{d}/rt.sqlite');\n\
         Set($DatabaseHost, '');\n\
         Set($DatabaseUser, '');\n\
         Set($DatabasePassword, '');\n\
         Set($BcryptCost, 4);\n\
         Set($MailCommand, 'testfile');\n\
         Set($LogToSyslog, undef);\n\
         Set($LogToFile, undef);\n\
         Set($LogToSTDERR, 'warning');\n\
         Set($LogDir, '{d}/log');\n\
         Set($MasonDataDir, '{d}/mason');\n\
         Set($MasonSessionDir, '{d}/sessions');\n\
         1;\n"
    )
}

/// Runs `cmd` with its output in `log`; on failure the error shows the log's end.
fn quiet(cmd: &mut Command, log: &Path) -> Result<()> {
    let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
    println!("xtask: running {}", describe(cmd));
    let status = cmd.status().with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status}); last lines of {}:\n{}", describe(cmd), log.display(), tail(log, 30));
    }
    Ok(())
}
