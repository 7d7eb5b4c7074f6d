//! Status polling: open tickets due on a connection are fetched in batches (bounded concurrency,
//! the connector's rate limit), mapped through the connection's status table, and closed ones
//! complete their tasks. Unchanged tickets cost no write.

use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::Engine;
use super::poll_changes::ReadPlan;
use super::status_apply::Applied;
use crate::connectors::{Connector, RemoteStatus};
use crate::domain::{MappedStatus, Task, TaskEvent};
use crate::store::StoreError;

/// What one poll run did on one connection.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    pub tickets: u32,
    pub requests: u32,
    pub changed: u32,
    pub completed: u32,
    pub failed_batches: u32,
    /// The run was skipped because another poller holds the connection (or polled it recently).
    pub skipped: bool,
    /// The run read only the tickets the target changed since the high-water mark.
    pub incremental: bool,
    /// Cancelled tasks whose ticket got its note/close this run (closed, noted, unsupported, failed).
    pub tickets_closed: u32,
    /// Tasks whose ticket stayed open past `give_up_after_days`: polling stopped (outcome `abandoned`).
    pub abandoned: u32,
}

/// Upper bound of tasks one poll run takes per connection.
pub const MAX_PER_RUN: usize = 20_000;

impl Engine {
    /// Polls every configured connection whose interval has passed.
    pub async fn poll_all(&self, now: DateTime<Utc>) -> BTreeMap<String, PollReport> {
        let mut out = BTreeMap::new();
        for name in self.config.connections.keys() {
            out.insert(name.clone(), self.poll_connection(name, now, true).await);
        }
        out
    }

    /// Polls one connection. With `respect_interval`, a lease named `poll#<conn>` that is never
    /// released (it simply expires after the poll interval) keeps concurrent or too-frequent runs off.
    pub async fn poll_connection(&self, conn: &str, now: DateTime<Utc>, respect_interval: bool) -> PollReport {
        let mut report = PollReport::default();
        let Some(cfg) = self.config.connections.get(conn) else { return report };
        let Some(connector) = self.connector(conn).cloned() else { return report };
        if respect_interval {
            let ttl = Duration::seconds(i64::try_from(cfg.poll_interval_secs).unwrap_or(300) - 5);
            let owner = ulid::Ulid::new().to_string();
            match self.store.acquire_lease(&format!("poll#{conn}"), &owner, now, ttl).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    report.skipped = true;
                    return report;
                }
                Err(e) => {
                    tracing::error!(connection = conn, error = %e, "poll lease failed");
                    report.skipped = true;
                    return report;
                }
            }
        }
        // Collect due tasks (pages of the sparse index).
        let mut tasks: Vec<Task> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            match self.store.due_for_polling(conn, now, 500, cursor.as_deref()).await {
                Ok(page) => {
                    tasks.extend(page.items);
                    cursor = page.cursor;
                }
                Err(e) => {
                    tracing::error!(connection = conn, error = %e, "due query failed");
                    break;
                }
            }
            if cursor.is_none() || tasks.len() >= MAX_PER_RUN {
                break;
            }
        }
        // Cancelled tasks still closing their ticket ride the poll queue: close them, poll the rest.
        let (closing, tasks): (Vec<Task>, Vec<Task>) = tasks.into_iter().partition(Task::closing_ticket);
        for task in closing {
            match self.close_cancelled(task, now).await {
                Ok(super::ticket_close::CloseAttempt::Done(_)) => report.tickets_closed += 1,
                Ok(_) => {}
                Err(e) => tracing::warn!(connection = conn, error = %e, "recording a ticket close failed"),
            }
        }
        let mut ids: Vec<String> = tasks.iter().filter_map(|t| t.ticket.as_ref().map(|x| x.id.clone())).collect();
        ids.sort();
        ids.dedup();
        report.tickets = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        if ids.is_empty() {
            return report;
        }
        let started = Utc::now();
        let plan = self.read_plan(conn, cfg, connector.as_ref()).await;
        let mut statuses: HashMap<String, RemoteStatus> = HashMap::with_capacity(ids.len());
        let mut latest = None;
        if let ReadPlan::Changes { since, .. } = &plan {
            match connector.changed_since(*since).await {
                Ok(changed) => {
                    report.incremental = true;
                    report.requests += changed.requests;
                    latest = changed.latest;
                    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
                    statuses.extend(
                        changed
                            .statuses
                            .into_iter()
                            .filter(|s| wanted.contains(s.ticket_id.as_str()))
                            .map(|s| (s.ticket_id.clone(), s)),
                    );
                }
                Err(e) => tracing::warn!(connection = conn, error = %e, "changed-ticket read failed; full read"),
            }
        }
        if !report.incremental {
            self.read_all(conn, cfg.poll_concurrency, &connector, &ids, &mut statuses, &mut report).await;
        }
        self.metrics.incr("Polls", u64::from(report.tickets));
        if !statuses.is_empty() {
            super::failpoint::hit("polled");
        }
        let mut mark =
            if report.failed_batches == 0 { plan.next_mark(conn, report.incremental, latest, started) } else { None };
        let horizon = (cfg.give_up_after_days > 0).then(|| now - Duration::days(i64::from(cfg.give_up_after_days)));
        for task in tasks {
            let Some(ticket) = task.ticket.as_ref() else { continue };
            let remote = statuses.get(&ticket.id);
            let mapped = remote.map(|r| cfg.status_map.map(&r.name, r.category));
            // Open past the give-up horizon (and not closing now): stop polling it.
            if let Some(h) = horizon
                && task.created_at <= h
                && !matches!(mapped, Some(MappedStatus::Closed(_)))
            {
                match self.abandon(task, cfg.give_up_after_days, remote.map(|r| r.name.as_str()), now).await {
                    Ok(true) => report.abandoned += 1,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(connection = conn, error = %e, "recording a give-up failed"),
                }
                continue;
            }
            let (Some(remote), Some(mapped)) = (remote, mapped) else { continue };
            match self.apply_status(task, mapped, &remote.name, now).await {
                Ok(Applied::Completed) => {
                    report.changed += 1;
                    report.completed += 1;
                }
                Ok(Applied::Changed) => report.changed += 1,
                Ok(Applied::Unchanged) => {}
                Err(e) => {
                    // Read again next cycle: the mark must not pass a change that was not recorded.
                    mark = None;
                    tracing::warn!(connection = conn, error = %e, "recording poll result failed");
                }
            }
        }
        // The mark moves only after every read succeeded and every result was applied.
        if let Some(mark) = mark
            && let Err(e) = self.store.put_poll_mark(&mark).await
        {
            tracing::warn!(connection = conn, error = %e, "storing the poll mark failed");
        }
        report
    }

    /// Reads the statuses of `ids` in batches with bounded concurrency.
    async fn read_all(
        &self,
        conn: &str,
        concurrency: usize,
        connector: &Arc<dyn Connector>,
        ids: &[String],
        statuses: &mut HashMap<String, RemoteStatus>,
        report: &mut PollReport,
    ) {
        // Fetch statuses in batches with bounded concurrency.
        let batch = connector.batch_size().max(1);
        let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for chunk in ids.chunks(batch) {
            let chunk = chunk.to_vec();
            let connector = connector.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                connector.statuses(&chunk).await
            });
        }
        while let Some(res) = set.join_next().await {
            report.requests += 1;
            match res {
                Ok(Ok(list)) => statuses.extend(list.into_iter().map(|s| (s.ticket_id.clone(), s))),
                Ok(Err(e)) => {
                    report.failed_batches += 1;
                    tracing::warn!(connection = conn, error = %e, "status batch failed");
                }
                Err(e) => {
                    report.failed_batches += 1;
                    tracing::error!(connection = conn, error = %e, "status batch panicked");
                }
            }
        }
    }

    /// Ends a task open past the connection's give-up horizon: outcome `abandoned`, result
    /// `failed`, the reason in `last_error` and the history; event `TaskAbandoned` and callback.
    async fn abandon(
        &self,
        mut task: Task,
        days: u32,
        remote: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let status = remote.map(|r| format!(" (ticket status '{r}')")).unwrap_or_default();
        let reason = format!(
            "ticket still open after {days} days{status}: polling stopped (connection setting give_up_after_days)"
        );
        let retain_until = now + Duration::days(i64::from(self.config.settings.retention_days));
        if task.apply(TaskEvent::PollAbandoned { reason, retain_until }, now).is_err() {
            return Ok(false);
        }
        // The event and callback it owes are stored in the same write as the state.
        let owed = self.completion_deliveries(&task, now);
        let saved = match self.store.update_task_with_deliveries(&task, &owed).await {
            Ok(t) => t,
            Err(StoreError::Conflict(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.metrics.incr("Abandoned", 1);
        if let (Some(key), Some(t)) = (&saved.group_key, &saved.ticket) {
            self.store.release_group(&saved.connection, key, &t.id).await?;
        }
        tracing::warn!(task = %saved.id, days, "task abandoned: ticket open past give_up_after_days");
        self.deliver_stored(owed, &self.notifier, now).await;
        Ok(true)
    }
}
