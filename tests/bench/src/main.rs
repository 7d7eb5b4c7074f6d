//! `bench`: the benchmarks behind `cargo xtask bench`. Each module measures one figure family and
//! returns table rows; `main` writes them to `docs/benchmarks.md`.
//!
//! Usage: `bench [--only poll,poll_changes,close_latency,dynamo,package,lambda,intake] [--out PATH]`. Needs TB_AWS_ENDPOINT
//! (moto) for `dynamo` and `lambda`; `cargo xtask bench` sets everything up.

mod close_latency;
mod common;
mod constant_rate;
mod dynamo;
mod intake;
mod lambda;
mod package;
mod poll;
mod poll_changes;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One line of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    pub figure: String,
    pub value: String,
    pub target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` no target.
    pub met: Option<bool>,
    pub how: String,
}

impl Row {
    pub fn new(
        figure: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
        how: impl Into<String>,
    ) -> Self {
        Self { figure: figure.into(), value: value.into(), target: target.into(), met, how: how.into() }
    }
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

const ALL: [&str; 7] = ["poll", "poll_changes", "close_latency", "dynamo", "lambda", "intake", "package"];

fn main() -> Result<()> {
    let mut only: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
    let mut out = repo_root().join("docs/benchmarks.md");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--only" => only = args.next().context("--only needs a list")?.split(',').map(str::to_string).collect(),
            "--out" => out = PathBuf::from(args.next().context("--out needs a path")?),
            other => anyhow::bail!("unknown argument {other}; usage: bench [--only {}] [--out PATH]", ALL.join(",")),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let started = Instant::now();
    let mut sections: Vec<(&str, Vec<Row>, String)> = Vec::new();
    for name in ALL {
        if !only.iter().any(|o| o == name) {
            continue;
        }
        let t = Instant::now();
        eprintln!("bench: == {name} ==");
        let res: Result<(Vec<Row>, String)> = match name {
            "poll" => rt.block_on(poll::run()),
            "poll_changes" => rt.block_on(poll_changes::run()),
            "close_latency" => rt.block_on(close_latency::run()),
            "dynamo" => rt.block_on(dynamo::run()),
            "lambda" => rt.block_on(lambda::run()),
            "intake" => intake::run(),
            "package" => package::run(),
            _ => unreachable!(),
        };
        let (rows, notes) = match res {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bench: {name} failed: {e:#}");
                (
                    vec![Row::new(format!("{name}: not measured"), "error", "-", Some(false), format!("{e:#}"))],
                    String::new(),
                )
            }
        };
        for r in &rows {
            eprintln!("bench: {} = {} (target {}) {}", r.figure, r.value, r.target, mark(r.met));
        }
        eprintln!("bench: {name} took {:.1}s", t.elapsed().as_secs_f64());
        sections.push((name, rows, notes));
    }
    // Each section is kept in target/bench/<name>.md, so `--only` refreshes part of the page and
    // the rest keeps its last measurement (every row carries its date).
    let section_dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&section_dir)?;
    for (name, rows, notes) in &sections {
        std::fs::write(section_dir.join(format!("{name}.md")), render_section(name, rows, notes))?;
    }
    // A section neither run now nor kept in target/bench (a fresh checkout) keeps what the page has.
    let page = std::fs::read_to_string(&out).unwrap_or_default();
    let mut md = header(started.elapsed().as_secs_f64(), &only);
    for name in ALL {
        let kept = std::fs::read_to_string(section_dir.join(format!("{name}.md"))).ok();
        match kept.or_else(|| section_of_page(&page, name)) {
            Some(text) => md.push_str(&text),
            None => md.push_str(&format!(
                "\n## {}\n\nNot measured yet on this checkout: run `cargo xtask bench -- --only {name}`.\n",
                title_of(name)
            )),
        }
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, md).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("bench: wrote {} in {:.1}s total", out.display(), started.elapsed().as_secs_f64());
    Ok(())
}

fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "",
    }
}

fn header(total_secs: f64, only: &[String]) -> String {
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let host = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!(
        "# Benchmarks\n\nWritten by `cargo xtask bench` (last run {date}, sections {}, {total_secs:.0} s; {cores} cores, {host}).\n\
         Re-run it to refresh this file (`cargo xtask bench -- --only poll` refreshes one section; the others keep \
         their last measurement and date). Numbers from a shared 2-core machine are noisy (±20 %).\n\
         Figures with a baseline show the ratio measured side by side in the same run.\n",
        {
            let ran: Vec<&str> = ALL.iter().copied().filter(|n| only.iter().any(|o| o == n)).collect();
            if ran.is_empty() { "none (page re-assembled from the kept sections)".to_string() } else { ran.join(", ") }
        }
    )
}

fn render_section(name: &str, rows: &[Row], notes: &str) -> String {
    let title = title_of(name);
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M");
    let mut s =
        format!("\n## {title}\n\n| figure | value | target | met | how measured | date |\n|---|---|---|---|---|---|\n");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        s.push_str(&format!(
            "| {} | {} | {} | {met} | {} | {date} |\n",
            cell(&r.figure),
            cell(&r.value),
            cell(&r.target),
            cell(&r.how)
        ));
    }
    if !notes.trim().is_empty() {
        s.push('\n');
        s.push_str(notes.trim_end());
        s.push('\n');
    }
    s
}

fn title_of(name: &str) -> &str {
    let titles = [
        ("poll", "Polling: one poll cycle, 50 ms injected latency per target request"),
        ("poll_changes", "Incremental polling: changed tickets only, N = 10,000, 1 % changed, 50 ms per request"),
        ("close_latency", "Technician close → task completed: webhook vs polling, 50 ms per request"),
        ("dynamo", "DynamoDB cost of one task's life (moto)"),
        ("lambda", "Lambda start-up and memory (local Runtime API emulator)"),
        ("intake", "Intake throughput (`ticket-bridge serve`, SQLite, wrk and constant-rate load)"),
        ("package", "Packaging (cargo-lambda, arm64 zip)"),
    ];
    titles.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).unwrap_or(name)
}

/// The section of `page` (a benchmarks.md written before) whose heading starts like section
/// `name`'s title (up to its first " (" or ":", so a reworded tail still matches), blank line first.
fn section_of_page(page: &str, name: &str) -> Option<String> {
    let title = title_of(name);
    let stem = title.split([':', '(']).next().unwrap_or(title).trim_end();
    let start = page.match_indices("\n## ").map(|(i, _)| i).find(|&i| page[i + 4..].starts_with(stem))?;
    let end = page[start + 4..].find("\n## ").map(|e| start + 4 + e).unwrap_or(page.len());
    Some(format!("{}\n", page[start..end].trim_end()))
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
