//! Ticket creation: resolve customer, contact and defaults, then open a ticket or add a note to the
//! open ticket of the task's group. Retries with backoff; dead letter after the limit.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;

use super::{Engine, task_json};
use crate::connectors::{ConnectorError, NoteRequest};
use crate::domain::{ContactEntry, Task, TaskEvent, TaskPayload, TaskState, TicketGroup, TicketRef, UserMapping};
use crate::render::render;
use crate::store::{StoreError, claim};

/// What one creation run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CreateReport {
    pub created: u32,
    pub noted: u32,
    pub retried: u32,
    pub dead_lettered: u32,
    /// Tasks skipped because another worker had them or they were not due.
    pub skipped: u32,
    /// Store failures (the task stays due and is retried by the sweep).
    pub errors: u32,
    /// Cancelled tasks (delivered by the stream) whose ticket got its note/close.
    pub tickets_closed: u32,
}

impl CreateReport {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Created => self.created += 1,
            Outcome::Noted => self.noted += 1,
            Outcome::Retry => self.retried += 1,
            Outcome::DeadLetter => self.dead_lettered += 1,
            Outcome::Skipped => self.skipped += 1,
        }
    }
}

/// How long a task waits for another task of its group to record the ticket it is opening before
/// it gives this attempt up (and retries with backoff).
const GROUP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often it looks meanwhile.
const GROUP_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Who adds what to a group.
enum GroupClaim {
    /// The group has an open ticket of another task: add a note to it.
    Open(TicketGroup),
    /// This task opens the group's ticket (holding the claim, if it took one).
    Ours(Option<crate::domain::Lease>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Created,
    Noted,
    Retry,
    DeadLetter,
    Skipped,
}

/// How a task got its ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opened {
    Created,
    /// A note on its group's open ticket.
    Noted,
    /// Its group's recently closed ticket, reopened (see `reopen.rs`).
    Reopened,
}

/// Resolved target for a ticket: customer, contact, contract.
struct Target {
    customer_id: Option<String>,
    contact_id: Option<String>,
    contract_id: Option<String>,
}

/// Tasks a sweep claims at once.
const CLAIM_CHUNK: usize = 4;

/// Shortest time worth starting an attempt with (one request and its answer).
const MIN_ATTEMPT: std::time::Duration = std::time::Duration::from_millis(500);

impl Engine {
    /// Sweep: claims due tasks (first attempts missed by the stream, and retries) and processes them,
    /// a few at a time so each claim starts when its task's turn comes (a claim taken for the whole
    /// sweep would run out before the last tasks of a long one). Each task is tried at most once per
    /// sweep, at most `limit` tasks.
    pub async fn create_due(&self, now: DateTime<Utc>, limit: usize) -> CreateReport {
        let lease = self.claim_lease();
        let started = std::time::Instant::now();
        let mut report = CreateReport::default();
        let mut seen = std::collections::HashSet::new();
        while seen.len() < limit {
            // The caller's clock, moved on by the time this sweep has taken.
            let at = now + Duration::from_std(started.elapsed()).unwrap_or_default();
            let claimed = match self.store.claim_for_creation(at, lease, CLAIM_CHUNK.min(limit - seen.len())).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "claiming due tasks failed");
                    report.errors += 1;
                    return report;
                }
            };
            if claimed.is_empty() {
                break;
            }
            let claimed_at = std::time::Instant::now();
            let mut again = false;
            for task in claimed {
                if !seen.insert(task.id.clone()) {
                    // Its retry came due during this sweep: given back, due now, for the next sweep
                    // (left claimed, it would wait out the whole claim).
                    again = true;
                    report.skipped += 1;
                    self.release_claim(task, at).await;
                    continue;
                }
                match self.process_claimed(task, at, claimed_at).await {
                    Ok(o) => report.add(o),
                    Err(e) => {
                        tracing::error!(error = %e, "recording ticket creation failed");
                        report.errors += 1;
                    }
                }
            }
            if again {
                break;
            }
        }
        report
    }

    /// Processes one task delivered by the stream (or the local channel): claims it, then creates.
    /// Returns `Err` only for store failures, so the caller can report the record as failed.
    pub async fn create_one(
        &self,
        task_id: &crate::domain::TaskId,
        now: DateTime<Utc>,
    ) -> Result<CreateReport, StoreError> {
        let mut report = CreateReport::default();
        let Some(task) = self.store.get_task(task_id).await? else {
            report.skipped += 1;
            return Ok(report);
        };
        // A cancelled task whose ticket is still to be closed (its stream record): close it now.
        if task.closing_ticket() {
            if task.next_poll_at.is_none_or(|at| at <= now)
                && let super::ticket_close::CloseAttempt::Done(_) = self.close_cancelled(task, now).await?
            {
                report.tickets_closed += 1;
            } else {
                report.skipped += 1;
            }
            return Ok(report);
        }
        let lease = self.claim_lease();
        match claim(self.store.as_ref(), task, now, lease).await? {
            Some(t) => report.add(self.process_claimed(t, now, std::time::Instant::now()).await?),
            None => report.skipped += 1,
        }
        Ok(report)
    }

    /// Runs one claimed attempt within what is left of its claim (taken at `claimed_at`). A task
    /// whose claim ran out while it waited its turn in a sweep is left for the next claim.
    async fn process_claimed(
        &self,
        task: Task,
        now: DateTime<Utc>,
        claimed_at: std::time::Instant,
    ) -> Result<Outcome, StoreError> {
        let budget = self.attempt_budget(claimed_at);
        if budget < MIN_ATTEMPT {
            tracing::info!(task = %task.id, "claim ran out before the attempt started; the next sweep takes it");
            return Ok(Outcome::Skipped);
        }
        super::failpoint::hit("claimed");
        let result = match tokio::time::timeout(budget, self.open_or_note(&task, now)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectorError::Timeout(format!(
                "the attempt ran out of its claim (settings.claim_secs = {}); the next attempt first looks \
                 the ticket up by correlation key",
                self.config.settings.claim_secs
            ))),
        };
        if result.is_ok() {
            super::failpoint::hit("ticket_created");
        }
        let outcome = self.record(task, result, now).await;
        super::failpoint::hit("recorded");
        outcome
    }

    /// Gives back a claim this worker will not use: the task is due again at `at`. A conflict
    /// means another worker or a state change got there first; either way nothing is lost (a
    /// claim that is not given back simply lapses).
    async fn release_claim(&self, mut task: Task, at: DateTime<Utc>) {
        if task.apply(TaskEvent::Released { at }, at).is_err() {
            return;
        }
        match self.store.update_task(&task).await {
            Ok(_) | Err(StoreError::Conflict(_)) => {}
            Err(e) => tracing::warn!(task = %task.id, error = %e, "giving back a claim failed; it lapses instead"),
        }
    }

    /// How long a claim on a task (or a group's ticket) lasts: `settings.claim_secs`.
    fn claim_lease(&self) -> Duration {
        Duration::seconds(i64::try_from(self.config.settings.claim_secs).unwrap_or(300))
    }

    /// How long an attempt claimed at `claimed_at` may still run: four fifths of the claim, less
    /// the time already spent, so it ends before another worker can claim the task. An attempt
    /// that outlived its claim could open a ticket while the next claimant, finding none by
    /// correlation key yet, opens a second one.
    fn attempt_budget(&self, claimed_at: std::time::Instant) -> std::time::Duration {
        let lease = std::time::Duration::from_secs(self.config.settings.claim_secs);
        lease.mul_f64(0.8).saturating_sub(claimed_at.elapsed())
    }

    /// Talks to the ITSM. Never writes the task.
    async fn open_or_note(
        &self,
        task: &Task,
        now: DateTime<Utc>,
    ) -> Result<(TicketRef, Opened, Option<String>), ConnectorError> {
        let conn_cfg = self
            .config
            .connections
            .get(&task.connection)
            .ok_or_else(|| ConnectorError::Config(format!("connection '{}' is not configured", task.connection)))?;
        let connector = self
            .connector(&task.connection)
            .ok_or_else(|| ConnectorError::Config(format!("connection '{}' has no connector", task.connection)))?;
        let view = task_json(task);
        let group_key = match &task.payload {
            TaskPayload::Alert(a) => conn_cfg.grouping.key(&a.user_email, &a.alert_type),
            TaskPayload::Access(_) => None,
        };
        // Grouped alert: add a note to the group's open ticket, or claim the group to open it.
        let mut group_claim = None;
        if let Some(key) = &group_key {
            match self.claim_group(task, key, now).await? {
                GroupClaim::Open(group) => {
                    let note = NoteRequest {
                        correlation_key: task.id.to_string(),
                        title: render(&conn_cfg.template.note_title, &view, &task.connection)
                            .map_err(ConnectorError::Config)?,
                        body: render(&conn_cfg.template.note_body, &view, &task.connection)
                            .map_err(ConnectorError::Config)?,
                    };
                    connector.add_note(&group.ticket, &note).await?;
                    return Ok((group.ticket, Opened::Noted, group_key));
                }
                GroupClaim::Ours(lease) => group_claim = lease,
            }
        }
        let result = self.open_ticket(task, connector.as_ref(), view, group_key, now).await;
        if let Some(lease) = group_claim
            && let Err(e) = self.store.release_lease(&lease).await
        {
            tracing::warn!(task = %task.id, error = %e, "could not release group claim (it expires)");
        }
        result
    }

    /// Decides who opens a group's ticket. The group's open ticket, if recorded, gets the note;
    /// otherwise the first task to take the group's claim (a conditional write, both stores) opens
    /// it, and the others wait for that ticket to be recorded, then add notes. A claim held by a
    /// task that died mid-way expires after the claim lease, like the task's own claim; the dead
    /// task's retry finds its ticket by correlation key and records it as the group's.
    async fn claim_group(&self, task: &Task, key: &str, now: DateTime<Utc>) -> Result<GroupClaim, ConnectorError> {
        let lease_ttl = self.claim_lease();
        let name = format!("group/{}/{key}", task.connection);
        let waited_from = std::time::Instant::now();
        loop {
            match self.store.get_group(&task.connection, key).await.map_err(store_err)? {
                Some(group) if group.owner != task.id => return Ok(GroupClaim::Open(group)),
                // Our own ticket, recorded by an earlier attempt: recovered below by correlation.
                Some(_) => return Ok(GroupClaim::Ours(None)),
                None => {}
            }
            if let Some(lease) =
                self.store.acquire_lease(&name, task.id.as_str(), now, lease_ttl).await.map_err(store_err)?
            {
                // Re-read: the previous holder may have recorded the ticket just before releasing.
                return match self.store.get_group(&task.connection, key).await.map_err(store_err)? {
                    Some(group) if group.owner != task.id => {
                        let _ = self.store.release_lease(&lease).await;
                        Ok(GroupClaim::Open(group))
                    }
                    _ => Ok(GroupClaim::Ours(Some(lease))),
                };
            }
            if waited_from.elapsed() >= GROUP_WAIT {
                return Err(ConnectorError::Server(format!(
                    "the ticket of group '{key}' is being opened by another task; will add a note when it is recorded"
                )));
            }
            tokio::time::sleep(GROUP_POLL).await;
        }
    }

    /// Creates the task's ticket (or recovers the one an earlier attempt created) and records it
    /// as its group's open ticket.
    async fn open_ticket(
        &self,
        task: &Task,
        connector: &dyn crate::connectors::Connector,
        view: serde_json::Value,
        group_key: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(TicketRef, Opened, Option<String>), ConnectorError> {
        // A previous claim may have created the ticket and crashed before recording it.
        if task.claims > 1
            && let Some(found) = connector.find_by_correlation(task.id.as_str()).await?
        {
            tracing::info!(task = %task.id, ticket = %found.id, "recovered ticket created by an earlier attempt");
            self.remember_group(task, group_key.as_deref(), &found, now).await;
            return Ok((found, Opened::Created, group_key));
        }
        if let Some(key) = &group_key
            && let Some(ticket) = self.try_reopen(task, connector, key, now).await?
        {
            self.remember_group(task, Some(key), &ticket, now).await;
            self.forget_closed_group(task, key, &ticket).await;
            return Ok((ticket, Opened::Reopened, group_key));
        }
        let target = self.resolve_target(task).await?;
        let (mut req, rule) =
            super::ticket_request::ticket_request(&self.config, task, &view).map_err(ConnectorError::Config)?;
        if let Some((i, r)) = rule {
            tracing::info!(task = %task.id, rule = i, name = r.name.as_deref().unwrap_or(""), "ticket rule applies");
        }
        req.customer_id = target.customer_id;
        req.contact_id = target.contact_id;
        req.contract_id = target.contract_id.or(req.contract_id);
        let links = crate::mapping::ticket_links::ticket_links(
            self.store.as_ref(),
            &task.connection,
            req.customer_id.as_deref(),
            req.contact_id.as_deref(),
            &task.payload,
        )
        .await;
        req.location_id = links.location_id;
        req.asset_id = links.asset_id;
        let ticket = connector.create_ticket(&req).await?;
        self.remember_group(task, group_key.as_deref(), &ticket, now).await;
        Ok((ticket, Opened::Created, group_key))
    }

    /// Makes a new ticket its group's open ticket. Losing the race to another task of the same
    /// group only means this ticket stays ungrouped; it is never a second ticket for one task.
    async fn remember_group(&self, task: &Task, key: Option<&str>, ticket: &TicketRef, now: DateTime<Utc>) {
        let Some(key) = key else { return };
        let group = TicketGroup {
            connection: task.connection.clone(),
            key: key.to_string(),
            ticket: ticket.clone(),
            owner: task.id.clone(),
            created_at: now,
        };
        match self.store.create_group(&group).await {
            Ok(Some(other)) if other.owner != task.id => {
                tracing::warn!(task = %task.id, group_ticket = %other.ticket.id, "group already had an open ticket; this ticket stays separate")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(task = %task.id, error = %e, "could not record ticket group"),
        }
    }

    /// Customer (mapping → catch-all), contact (e-mail lookup, cached → mapping default → catch-all).
    async fn resolve_target(&self, task: &Task) -> Result<Target, ConnectorError> {
        let conn = &task.connection;
        let cfg = &self.config.connections[conn];
        let mapping = match &task.organization {
            Some(org) => self.store.get_mapping(conn, &org.id).await.map_err(store_err)?,
            None => None,
        };
        let mapped = mapping.filter(|m| !m.excluded && m.customer_id.is_some());
        let (customer_id, default_contact, contract_id) = match &mapped {
            Some(m) => (m.customer_id.clone(), m.contact_id.clone(), m.contract_id.clone()),
            None => match &cfg.catch_all {
                Some(c) => (Some(c.customer_id.clone()), c.contact_id.clone(), None),
                None => (None, None, None),
            },
        };
        let mut contact_id = None;
        if let Some(email) = task.payload.user_email() {
            // A user mapped by hand or by user sync wins (for its customer); an excluded user
            // gets the default contact.
            let user = self.store.get_user_mapping(conn, &UserMapping::key(email)).await.map_err(store_err)?;
            contact_id = match user {
                Some(u) if u.excluded => None,
                Some(u) if u.contact_id.is_some() && (u.customer_id.is_none() || u.customer_id == customer_id) => {
                    u.contact_id
                }
                _ => self.lookup_contact(conn, customer_id.as_deref(), email).await?,
            };
        }
        Ok(Target { customer_id, contact_id: contact_id.or(default_contact), contract_id })
    }

    async fn lookup_contact(
        &self,
        conn: &str,
        customer: Option<&str>,
        email: &str,
    ) -> Result<Option<String>, ConnectorError> {
        let email = email.trim().to_lowercase();
        let now = Utc::now();
        if let Some(hit) = self.store.get_contact(conn, &email, now).await.map_err(store_err)? {
            return Ok(hit.contact_id);
        }
        let connector =
            self.connector(conn).ok_or_else(|| ConnectorError::Config(format!("no connector for '{conn}'")))?;
        let found = connector.find_contact(customer, &email).await?;
        let entry = ContactEntry {
            connection: conn.to_string(),
            email,
            contact_id: found.clone(),
            expires_at: now + if found.is_some() { Duration::hours(24) } else { Duration::hours(1) },
        };
        if let Err(e) = self.store.put_contact(&entry).await {
            tracing::warn!(error = %e, "contact cache write failed");
        }
        Ok(found)
    }

    /// Records the attempt's result on the task (version-checked).
    async fn record(
        &self,
        mut task: Task,
        result: Result<(TicketRef, Opened, Option<String>), ConnectorError>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        let poll_at = now;
        let (event, outcome) = match result {
            Ok((ticket, opened, group_key)) => {
                task.group_key = group_key;
                match opened {
                    Opened::Noted => (TaskEvent::Noted { ticket, next_poll_at: poll_at }, Outcome::Noted),
                    Opened::Created => (TaskEvent::TicketCreated { ticket, next_poll_at: poll_at }, Outcome::Created),
                    Opened::Reopened => (TaskEvent::TicketReopened { ticket, next_poll_at: poll_at }, Outcome::Created),
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let policy = self.config.connections.get(&task.connection).map(|c| &c.retry);
                let default = crate::config::RetryPolicy::default();
                let policy = policy.unwrap_or(&default);
                let limit = policy.attempts(self.config.settings.max_attempts);
                if !super::retry::retries(policy, &e) || task.attempts + 1 >= limit {
                    tracing::warn!(task = %task.id, error = %msg, attempts = task.attempts + 1, "dead-lettering task");
                    (TaskEvent::GaveUp { error: msg }, Outcome::DeadLetter)
                } else {
                    let retry_at = now + self.backoff(task.attempts, &e);
                    tracing::info!(task = %task.id, error = %msg, %retry_at, "ticket creation failed; will retry");
                    (TaskEvent::CreateFailed { error: msg, retry_at }, Outcome::Retry)
                }
            }
        };
        if task.apply(event, now).is_err() {
            return Ok(Outcome::Skipped);
        }
        // A dead-lettered task owes its event and callback: stored in the same write as the state.
        let owed = if outcome == Outcome::DeadLetter { self.completion_deliveries(&task, now) } else { Vec::new() };
        let written = if owed.is_empty() {
            self.store.update_task(&task).await
        } else {
            self.store.update_task_with_deliveries(&task, &owed).await
        };
        match written {
            Ok(_saved) => {
                match outcome {
                    Outcome::Created => self.metrics.incr("TicketsCreated", 1),
                    Outcome::Noted => self.metrics.incr("NotesAdded", 1),
                    Outcome::Retry => self.metrics.incr("Retries", 1),
                    Outcome::DeadLetter => {
                        self.metrics.incr("DeadLetters", 1);
                        self.deliver_stored(owed, &self.notifier, now).await;
                    }
                    Outcome::Skipped => {}
                }
                Ok(outcome)
            }
            Err(StoreError::Conflict(_)) => {
                // Someone changed the task meanwhile (e.g. it was cancelled). A ticket we opened for
                // a task cancelled meanwhile is recorded and closed like any cancelled task's.
                let current = self.store.get_task(&task.id).await?;
                tracing::warn!(task = %task.id, state = ?current.as_ref().map(|t| t.state), "task changed during ticket creation");
                if outcome == Outcome::Created
                    && let (Some(mut current), Some(ticket)) = (current, task.ticket.clone())
                    && current.apply(TaskEvent::LateTicket { ticket, close_at: now }, now).is_ok()
                {
                    self.store.update_task(&current).await?;
                }
                Ok(Outcome::Skipped)
            }
            Err(e) => Err(e),
        }
    }

    /// Capped exponential backoff with full jitter; honours a target's Retry-After when longer.
    fn backoff(&self, attempts: u32, err: &ConnectorError) -> Duration {
        let s = &self.config.settings;
        let cap = s.retry_base_secs.saturating_mul(1u64 << attempts.min(20)).min(s.retry_max_secs);
        let jittered = rand::rng().random_range(s.retry_base_secs.min(cap)..=cap);
        let floor = match err {
            ConnectorError::RateLimited { retry_after_secs: Some(r) } => *r,
            _ => 0,
        };
        Duration::seconds(i64::try_from(jittered.max(floor)).unwrap_or(3600))
    }
}

fn store_err(e: StoreError) -> ConnectorError {
    ConnectorError::Server(format!("store: {e}"))
}

impl Task {
    /// Whether the task is still waiting for a ticket.
    pub fn awaiting_ticket(&self) -> bool {
        self.state == TaskState::Received
    }
}
