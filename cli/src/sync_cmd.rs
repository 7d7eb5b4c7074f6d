//! `ticket-bridge mappings sync | status | records …`: the continuous PSA sync run by hand, its
//! checkpoint and last run's counts, and the preview → apply of pending records.

use anyhow::{Result, bail};
use bridge::domain::{RecordKind, RecordState, SyncCounts};
use bridge::engine::{Engine, SyncOutcomeKind};
use bridge::mapping::records;
use bridge::mapping::sync::SyncProgress;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::mappings::{Output, table};

fn parse_kind(s: &str) -> Result<RecordKind, String> {
    RecordKind::parse(s).ok_or_else(|| format!("'{s}': expected customers, contacts, locations or assets"))
}

#[derive(Subcommand)]
pub enum RecordsCmd {
    /// List the records the sync read (all states, or one).
    List {
        #[arg(long, value_parser = parse_kind)]
        kind: RecordKind,
        /// matched, excluded, created or pending.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show the pending records of a kind (what `records apply` takes over).
    Preview {
        #[arg(long, value_parser = parse_kind)]
        kind: RecordKind,
    },
    /// Take the pending records of a kind over (state created: tickets may use them).
    Apply {
        #[arg(long, value_parser = parse_kind)]
        kind: RecordKind,
    },
    /// Never use a record for tickets.
    Exclude {
        #[arg(long, value_parser = parse_kind)]
        kind: RecordKind,
        id: String,
    },
    /// Undo exclude (the record is pending again).
    Include {
        #[arg(long, value_parser = parse_kind)]
        kind: RecordKind,
        id: String,
    },
}

/// Page-by-page progress on stderr (a spinner with the counts; hidden when not a terminal).
struct Spinner(ProgressBar);

impl SyncProgress for Spinner {
    fn page(&self, connection: &str, kind: RecordKind, page: u32, c: &SyncCounts) {
        self.0.set_message(format!(
            "{connection}: {} page {page}: read {} matched {} created {} pending {} failed {}",
            kind.as_str(),
            c.read,
            c.matched,
            c.created,
            c.pending,
            c.failed
        ));
        self.0.tick();
    }
}

fn count_rows(counts: &[(RecordKind, SyncCounts)]) -> Vec<Vec<String>> {
    counts
        .iter()
        .map(|(k, c)| {
            [k.as_str().to_string()]
                .into_iter()
                .chain([c.read, c.matched, c.created, c.excluded, c.pending, c.failed].map(|n| n.to_string()))
                .collect()
        })
        .collect()
}

const COUNT_HEADERS: [&str; 7] = ["kind", "read", "matched", "created", "excluded", "pending", "failed"];

fn emit<T: serde::Serialize>(out: Output, value: &T, human: impl FnOnce()) -> Result<()> {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Table => human(),
    }
    Ok(())
}

/// `mappings sync`: one run (or the rest of an interrupted one) now.
pub async fn sync(engine: &Engine, conn: &str, out: Output) -> Result<()> {
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let outcome = engine.sync_connection(conn, chrono::Utc::now(), &Spinner(pb.clone())).await;
    pb.finish_and_clear();
    emit(out, &outcome, || match &outcome {
        SyncOutcomeKind::Finished { counts, resumed, pages } | SyncOutcomeKind::Partial { counts, resumed, pages } => {
            let done = matches!(outcome, SyncOutcomeKind::Finished { .. });
            let rows = count_rows(&counts.iter().map(|(k, c)| (*k, *c)).collect::<Vec<_>>());
            print!("{}", table(&COUNT_HEADERS, &rows));
            println!(
                "{conn}: {} ({pages} pages{})",
                if done { "sync finished" } else { "page budget reached; the next run continues" },
                if *resumed { ", resumed an interrupted run" } else { "" }
            );
        }
        SyncOutcomeKind::Busy => println!("{conn}: another sync of this connection is running"),
        SyncOutcomeKind::Failed { error } => println!("{conn}: sync stopped: {error}"),
    })?;
    if let SyncOutcomeKind::Failed { error } = &outcome {
        bail!("sync of '{conn}' stopped (the next run resumes it): {error}");
    }
    Ok(())
}

/// `mappings status`: the checkpoint (since, run in progress) and the last run's counts.
pub async fn status(engine: &Engine, conn: &str, out: Output) -> Result<()> {
    let cp = engine.store.get_sync_checkpoint(conn).await?;
    emit(out, &cp, || match &cp {
        None => println!("{conn}: never synced (run `ticket-bridge mappings sync`)"),
        Some(cp) => {
            let since = cp.since.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into());
            println!("{conn}: changes read up to {since}");
            if let Some(c) = &cp.cursor {
                println!(
                    "run in progress since {}: next {} page {} ({} pages read)",
                    c.started_at.to_rfc3339(),
                    c.kind.as_str(),
                    c.page,
                    c.pages
                );
            }
            if let Some(r) = &cp.last_run {
                println!(
                    "last run {} .. {}{}",
                    r.started_at.to_rfc3339(),
                    r.finished_at.to_rfc3339(),
                    if r.resumed { " (resumed)" } else { "" }
                );
                print!("{}", table(&COUNT_HEADERS, &count_rows(&r.counts)));
            }
        }
    })
}

fn parse_state(s: &str) -> Result<RecordState> {
    match s {
        "matched" => Ok(RecordState::Matched),
        "excluded" => Ok(RecordState::Excluded),
        "created" => Ok(RecordState::Created),
        "pending" => Ok(RecordState::Pending),
        _ => bail!("--state '{s}': expected matched, excluded, created or pending"),
    }
}

/// `mappings records …`.
pub async fn records(engine: &Engine, conn: &str, out: Output, cmd: RecordsCmd) -> Result<()> {
    let store = engine.store.as_ref();
    let now = chrono::Utc::now();
    let print = |all: &[bridge::domain::PsaRecord]| {
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|r| {
                vec![
                    r.id.clone(),
                    r.name.clone(),
                    format!("{:?}", r.state).to_lowercase(),
                    r.customer_id.clone().unwrap_or_default(),
                    r.location_id.clone().unwrap_or_default(),
                    r.email.clone().unwrap_or_default(),
                    r.upstream.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print!("{}", table(&["id", "name", "state", "customer", "location", "email", "upstream"], &rows));
        println!("{} records", all.len());
    };
    match cmd {
        RecordsCmd::List { kind, state } => {
            let state = state.as_deref().map(parse_state).transpose()?;
            let all = records::list(store, conn, kind, state).await?;
            emit(out, &all, || print(&all))
        }
        RecordsCmd::Preview { kind } => {
            let all = records::list(store, conn, kind, Some(RecordState::Pending)).await?;
            emit(out, &all, || print(&all))
        }
        RecordsCmd::Apply { kind } => {
            let all = records::apply_pending(store, conn, kind, now).await?;
            emit(out, &all, || println!("{conn}: {} {} taken over (created)", all.len(), kind.as_str()))
        }
        RecordsCmd::Exclude { kind, id } => {
            let r = records::set_state(store, conn, kind, &id, RecordState::Excluded, now).await?;
            emit(out, &r, || println!("{} {id} excluded", kind.as_str()))
        }
        RecordsCmd::Include { kind, id } => {
            let r = records::set_state(store, conn, kind, &id, RecordState::Pending, now).await?;
            emit(out, &r, || println!("{} {id} included (pending)", kind.as_str()))
        }
    }
}
