//! State shared by every simulator: tickets with notes, customers and contacts, issued tokens,
//! armed faults, request counts, per-client rate limit and latency.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::faults::{Fault, Faults};
use crate::tokens::{TokenKind, Tokens};

/// A note / comment / article on a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimNote {
    pub id: u64,
    pub subject: Option<String>,
    pub body: String,
    /// Internal (not visible to the customer).
    pub internal: bool,
    pub author: String,
    pub created_at: DateTime<Utc>,
}

/// A ticket as the simulator stores it; each simulator renders it in its API's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimTicket {
    pub id: u64,
    /// Human-facing number (equals the id where the target has none).
    pub number: String,
    pub title: String,
    pub body: String,
    pub status: String,
    pub customer_id: Option<String>,
    pub contact_id: Option<String>,
    pub requester: Option<String>,
    pub queue: Option<String>,
    pub priority: Option<String>,
    /// The correlation key the client wrote into the ticket, wherever the target keeps it.
    pub correlation_key: Option<String>,
    /// Target-specific fields (custom fields, type ids…).
    pub fields: BTreeMap<String, Value>,
    /// The create request body exactly as received.
    pub request: Value,
    pub notes: Vec<SimNote>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// What a simulator's create handler fills in.
#[derive(Debug, Clone, Default)]
pub struct NewTicket {
    /// `None`: the profile's prefix + the id.
    pub number: Option<String>,
    pub title: String,
    pub body: String,
    /// `None`: the profile's initial status.
    pub status: Option<String>,
    pub customer_id: Option<String>,
    pub contact_id: Option<String>,
    pub requester: Option<String>,
    pub queue: Option<String>,
    pub priority: Option<String>,
    pub correlation_key: Option<String>,
    pub fields: BTreeMap<String, Value>,
    pub request: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCustomer {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimContact {
    pub id: String,
    pub customer_id: Option<String>,
    pub email: String,
    pub name: String,
}

/// Why a technician action failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    NotFound(String),
    InvalidStatus(String),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound(id) => write!(f, "no ticket '{id}'"),
            Self::InvalidStatus(s) => write!(f, "'{s}' is not a status of this desk"),
        }
    }
}

impl std::error::Error for SimError {}

/// One more than the largest numeric id (1 when there is none).
fn next_numeric<'a>(ids: impl Iterator<Item = &'a str>) -> u64 {
    ids.filter_map(|i| i.parse::<u64>().ok()).max().unwrap_or(0) + 1
}

/// Per-simulator constants.
#[derive(Debug, Clone)]
pub struct SimProfile {
    pub name: &'static str,
    /// Status of new tickets.
    pub initial_status: String,
    /// Status a technician's close sets when none is given.
    pub closed_status: String,
    /// Valid statuses (case-insensitive); empty accepts any.
    pub statuses: Vec<String>,
    /// Statuses that count as closed (sets `closed_at`).
    pub closed_statuses: Vec<String>,
    /// The target's "HTTP 200 with an error body": status code and body.
    pub error_body: (u16, Value),
    /// Body of injected 5xx responses.
    pub server_error_body: Value,
    /// First ticket id.
    pub first_id: u64,
    /// Ticket numbers are this prefix + the id (unless the handler sets one).
    pub number_prefix: String,
}

/// A request as the simulator saw it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// `"METHOD /route/{template}"`.
    pub route: String,
    pub path: String,
    pub query: Option<String>,
    pub at: Instant,
}

/// A request being handled; see [`Sim::idle`].
pub(crate) struct InFlight(Arc<AtomicU64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A per-client (and optionally per-route) fixed-window rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateRule {
    pub limit: u32,
    pub window: Duration,
    pub per_route: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Store {
    tickets: BTreeMap<u64, SimTicket>,
    next_id: u64,
    next_note_id: u64,
    customers: Vec<SimCustomer>,
    contacts: Vec<SimContact>,
}

/// The rate rule and each client's window start and count.
type RateState = (Option<RateRule>, HashMap<String, (Instant, u32)>);

struct Inner {
    profile: SimProfile,
    store: Mutex<Store>,
    tokens: Tokens,
    faults: Faults,
    log: Mutex<RequestLog>,
    rate: Mutex<RateState>,
    latency_ms: AtomicU64,
    /// 429s answered by the rate limit (not by injected faults).
    throttled: AtomicU64,
    /// Requests being handled right now.
    in_flight: Arc<AtomicU64>,
    persist: Mutex<Option<Journal>>,
    contract: Mutex<ContractState>,
    /// Milliseconds the simulator's clock (the stamps it writes on tickets) is ahead of the host's.
    clock_skew_ms: AtomicI64,
    /// One-shot actions run right after the handler of the next request whose route contains the
    /// pattern produced its response (before the client reads it).
    after_response: Mutex<Vec<(String, AfterResponse)>>,
    /// Outgoing webhooks on status changes (see [`crate::webhooks`]).
    webhooks: crate::webhooks::Webhooks,
}

/// An action [`Sim::after_next_response`] runs.
pub type AfterResponse = Box<dyn FnOnce(&Sim) + Send>;

/// Contract checking: on unless a test turns it off, and the violations seen.
#[derive(Debug)]
struct ContractState {
    enabled: bool,
    violations: Vec<String>,
}

impl Default for ContractState {
    fn default() -> Self {
        Self { enabled: true, violations: Vec::new() }
    }
}

/// Requests seen: exact counts per route, and the most recent [`RequestLog::KEEP`] in full (a
/// long-running `serve` must not grow without bound).
#[derive(Default)]
struct RequestLog {
    counts: HashMap<String, usize>,
    total: usize,
    recent: std::collections::VecDeque<RequestRecord>,
}

impl RequestLog {
    const KEEP: usize = 50_000;
}

/// One line of the persistence journal: a record as it is after a change.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Change {
    Ticket { ticket: Box<SimTicket>, next_id: u64, next_note_id: u64 },
    Customer { customer: SimCustomer },
    Contact { contact: SimContact },
}

impl Change {
    fn apply(self, s: &mut Store) {
        match self {
            Self::Ticket { ticket, next_id, next_note_id } => {
                s.next_id = s.next_id.max(next_id);
                s.next_note_id = s.next_note_id.max(next_note_id);
                s.tickets.insert(ticket.id, *ticket);
            }
            Self::Customer { customer } => match s.customers.iter_mut().find(|c| c.id == customer.id) {
                Some(c) => *c = customer,
                None => s.customers.push(customer),
            },
            Self::Contact { contact } => match s.contacts.iter_mut().find(|c| c.id == contact.id) {
                Some(c) => *c = contact,
                None => s.contacts.push(contact),
            },
        }
    }

    fn ticket(s: &Store, id: u64) -> Option<Self> {
        s.tickets.get(&id).map(|t| Self::Ticket {
            ticket: Box::new(t.clone()),
            next_id: s.next_id,
            next_note_id: s.next_note_id,
        })
    }
}

/// Persistence: a snapshot file plus an append-only journal of changes beside it (one JSON line
/// per change, so a write costs one small append however many tickets there are). The journal is
/// folded into the snapshot once it holds as many lines as there are records.
struct Journal {
    snapshot: PathBuf,
    file: std::fs::File,
    lines: usize,
}

impl Journal {
    fn path(snapshot: &Path) -> PathBuf {
        snapshot.with_extension("journal")
    }

    fn append(&mut self, store: &Store, change: Change) -> std::io::Result<()> {
        use std::io::Write;
        let mut line = serde_json::to_vec(&change).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.lines += 1;
        if self.lines >= (store.tickets.len() + store.customers.len() + store.contacts.len()).max(1_000) {
            self.compact(store)?;
        }
        Ok(())
    }

    fn compact(&mut self, store: &Store) -> std::io::Result<()> {
        let tmp = self.snapshot.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(store).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, &self.snapshot)?;
        self.file.set_len(0)?;
        self.lines = 0;
        Ok(())
    }
}

/// A simulator's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Sim(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sim {
    pub fn new(profile: SimProfile) -> Self {
        let store = Store { next_id: profile.first_id, next_note_id: 1, ..Store::default() };
        Self(Arc::new(Inner {
            profile,
            store: Mutex::new(store),
            tokens: Tokens::default(),
            faults: Faults::default(),
            log: Mutex::default(),
            rate: Mutex::default(),
            latency_ms: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            in_flight: Arc::default(),
            persist: Mutex::new(None),
            contract: Mutex::default(),
            clock_skew_ms: AtomicI64::new(0),
            after_response: Mutex::default(),
            webhooks: Default::default(),
        }))
    }

    /// The simulator's clock: the host's plus the skew set by [`Sim::set_clock_skew`].
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.0.clock_skew_ms.load(Ordering::SeqCst))
    }

    /// Puts the simulator's clock `skew` ahead of the host's (negative: behind), as a target
    /// server whose clock drifts; every change stamp it writes from now on uses it.
    pub fn set_clock_skew(&self, skew: chrono::Duration) {
        self.0.clock_skew_ms.store(skew.num_milliseconds(), Ordering::SeqCst);
    }

    /// Runs `action` once, right after the next request whose route (`METHOD /template`) contains
    /// `route` has been answered by its handler, before the client receives the answer: a change
    /// that lands while a client's read is in flight.
    pub fn after_next_response(&self, route: &str, action: impl FnOnce(&Sim) + Send + 'static) {
        lock(&self.0.after_response).push((route.to_string(), Box::new(action)));
    }

    /// Runs the action armed for `route`, if any.
    pub(crate) fn fire_after_response(&self, route: &str) {
        let action = {
            let mut armed = lock(&self.0.after_response);
            armed.iter().position(|(r, _)| route.contains(r.as_str())).map(|i| armed.remove(i).1)
        };
        if let Some(action) = action {
            action(self);
        }
    }

    pub fn profile(&self) -> &SimProfile {
        &self.0.profile
    }

    pub(crate) fn webhooks(&self) -> &crate::webhooks::Webhooks {
        &self.0.webhooks
    }

    /// Keeps tickets, customers and contacts in `path` (JSON), loading what is there now.
    pub fn persist_to(&self, path: PathBuf) -> std::io::Result<()> {
        let mut store = lock(&self.0.store);
        if path.exists() {
            let text = std::fs::read_to_string(&path)?;
            *store = serde_json::from_str(&text).map_err(std::io::Error::other)?;
        }
        let journal = Journal::path(&path);
        if journal.exists() {
            // A kill mid-append can leave a torn last line; it is skipped.
            for line in std::fs::read_to_string(&journal)?.lines() {
                if let Ok(change) = serde_json::from_str::<Change>(line) {
                    change.apply(&mut store);
                }
            }
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&journal)?;
        let mut j = Journal { snapshot: path, file, lines: 0 };
        j.compact(&store)?;
        *lock(&self.0.persist) = Some(j);
        Ok(())
    }

    /// Applies `f` to the store; when persisting, journals the record `changed` names.
    fn mutate<R>(&self, f: impl FnOnce(&mut Store) -> R, changed: impl FnOnce(&Store, &R) -> Option<Change>) -> R {
        let mut store = lock(&self.0.store);
        let out = f(&mut store);
        if let Some(journal) = lock(&self.0.persist).as_mut()
            && let Some(change) = changed(&store, &out)
            && let Err(e) = journal.append(&store, change)
        {
            tracing::error!(path = %journal.snapshot.display(), error = %e, "could not save simulator state");
        }
        out
    }

    // ---- tickets ----

    /// Stores a new ticket and returns it.
    pub fn create_ticket(&self, t: NewTicket) -> SimTicket {
        let now = self.now();
        let initial = self.0.profile.initial_status.clone();
        let prefix = self.0.profile.number_prefix.clone();
        self.mutate(
            |s| {
                let id = s.next_id;
                s.next_id += 1;
                let ticket = SimTicket {
                    id,
                    number: t.number.unwrap_or_else(|| format!("{prefix}{id}")),
                    title: t.title,
                    body: t.body,
                    status: t.status.unwrap_or(initial),
                    customer_id: t.customer_id,
                    contact_id: t.contact_id,
                    requester: t.requester,
                    queue: t.queue,
                    priority: t.priority,
                    correlation_key: t.correlation_key,
                    fields: t.fields,
                    request: t.request,
                    notes: Vec::new(),
                    created_at: now,
                    updated_at: now,
                    closed_at: None,
                };
                s.tickets.insert(id, ticket.clone());
                ticket
            },
            |s, t| Change::ticket(s, t.id),
        )
    }

    /// The id the next created ticket gets.
    pub fn next_id(&self) -> u64 {
        lock(&self.0.store).next_id
    }

    /// All tickets, by id.
    pub fn tickets(&self) -> Vec<SimTicket> {
        lock(&self.0.store).tickets.values().cloned().collect()
    }

    /// Tickets for which `pred` holds, by id; only the matches are cloned (searches over
    /// thousands of tickets stay cheap).
    pub fn tickets_matching(&self, pred: impl Fn(&SimTicket) -> bool) -> Vec<SimTicket> {
        lock(&self.0.store).tickets.values().filter(|t| pred(t)).cloned().collect()
    }

    pub fn ticket(&self, id: u64) -> Option<SimTicket> {
        lock(&self.0.store).tickets.get(&id).cloned()
    }

    /// A ticket by id or by number.
    pub fn find_ticket(&self, id_or_number: &str) -> Option<SimTicket> {
        let store = lock(&self.0.store);
        id_or_number
            .parse::<u64>()
            .ok()
            .and_then(|id| store.tickets.get(&id))
            .or_else(|| store.tickets.values().find(|t| t.number == id_or_number))
            .cloned()
    }

    /// Applies `f` to ticket `id` (updating `updated_at`); `None` if there is no such ticket.
    pub fn update_ticket(&self, id: u64, f: impl FnOnce(&mut SimTicket)) -> Option<SimTicket> {
        let now = self.now();
        self.mutate(
            |s| {
                let t = s.tickets.get_mut(&id)?;
                f(t);
                t.updated_at = now;
                Some(t.clone())
            },
            |s, t| t.as_ref().and_then(|t| Change::ticket(s, t.id)),
        )
    }

    /// Adds a note to ticket `id`.
    pub fn add_note(
        &self,
        id: u64,
        subject: Option<String>,
        body: String,
        internal: bool,
        author: &str,
    ) -> Option<SimNote> {
        let now = self.now();
        self.mutate(
            |s| {
                let note_id = s.next_note_id;
                let t = s.tickets.get_mut(&id)?;
                let note =
                    SimNote { id: note_id, subject, body, internal, author: author.to_string(), created_at: now };
                t.notes.push(note.clone());
                t.updated_at = note.created_at;
                s.next_note_id += 1;
                Some(note)
            },
            |s, n| n.as_ref().and_then(|_| Change::ticket(s, id)),
        )
    }

    /// The profile's spelling of `status`, if valid.
    pub fn canonical_status(&self, status: &str) -> Option<String> {
        let p = &self.0.profile;
        if p.statuses.is_empty() {
            return Some(status.to_string());
        }
        p.statuses.iter().find(|s| s.eq_ignore_ascii_case(status.trim())).cloned()
    }

    /// Whether `status` closes a ticket in this desk.
    pub fn is_closed_status(&self, status: &str) -> bool {
        self.0.profile.closed_statuses.iter().any(|s| s.eq_ignore_ascii_case(status))
    }

    /// Technician: sets a ticket's status (by id or number).
    pub fn set_status(&self, id_or_number: &str, status: &str) -> Result<SimTicket, SimError> {
        let status = self.canonical_status(status).ok_or_else(|| SimError::InvalidStatus(status.to_string()))?;
        let before = self.find_ticket(id_or_number).ok_or_else(|| SimError::NotFound(id_or_number.to_string()))?;
        let closed = self.is_closed_status(&status).then(|| self.now());
        let t = self
            .update_ticket(before.id, |t| {
                t.status = status;
                t.closed_at = closed;
            })
            .ok_or_else(|| SimError::NotFound(id_or_number.to_string()))?;
        if t.status != before.status {
            self.status_changed(&t);
        }
        Ok(t)
    }

    /// Technician: closes a ticket with `status` (default: the profile's closed status).
    pub fn close(&self, id_or_number: &str, status: Option<&str>) -> Result<SimTicket, SimError> {
        let status = status.unwrap_or(&self.0.profile.closed_status).to_string();
        self.set_status(id_or_number, &status)
    }

    // ---- customers and contacts ----

    pub fn add_customer(&self, id: &str, name: &str) {
        let customer = SimCustomer { id: id.into(), name: name.into() };
        self.mutate(
            |s| s.customers.push(customer),
            |s, _| s.customers.last().cloned().map(|customer| Change::Customer { customer }),
        );
    }

    pub fn add_contact(&self, id: &str, customer_id: Option<&str>, email: &str, name: &str) {
        let contact = SimContact {
            id: id.into(),
            customer_id: customer_id.map(str::to_string),
            email: email.into(),
            name: name.into(),
        };
        self.mutate(
            |s| s.contacts.push(contact),
            |s, _| s.contacts.last().cloned().map(|contact| Change::Contact { contact }),
        );
    }

    /// Adds a customer with the next free numeric id (one more than the largest numeric id).
    pub fn create_customer(&self, name: &str) -> SimCustomer {
        self.mutate(
            |s| {
                let id = next_numeric(s.customers.iter().map(|c| c.id.as_str()));
                let c = SimCustomer { id: id.to_string(), name: name.into() };
                s.customers.push(c.clone());
                c
            },
            |_, c| Some(Change::Customer { customer: c.clone() }),
        )
    }

    /// Adds a contact with the next free numeric id.
    pub fn create_contact(&self, customer_id: Option<&str>, email: &str, name: &str) -> SimContact {
        self.mutate(
            |s| {
                let id = next_numeric(s.contacts.iter().map(|c| c.id.as_str()));
                let c = SimContact {
                    id: id.to_string(),
                    customer_id: customer_id.map(str::to_string),
                    email: email.into(),
                    name: name.into(),
                };
                s.contacts.push(c.clone());
                c
            },
            |_, c| Some(Change::Contact { contact: c.clone() }),
        )
    }

    pub fn customers(&self) -> Vec<SimCustomer> {
        lock(&self.0.store).customers.clone()
    }

    pub fn contacts(&self) -> Vec<SimContact> {
        lock(&self.0.store).contacts.clone()
    }

    // ---- auth, faults, traffic ----

    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }

    pub fn faults(&self) -> &Faults {
        &self.0.faults
    }

    /// The next `n` requests answer `status` (e.g. 503).
    pub fn fail_next(&self, n: u32, status: u16) {
        self.0.faults.inject(Fault::Status { status }, n);
    }

    /// The next `n` requests answer 429 with `Retry-After: secs`.
    pub fn rate_limit_next(&self, n: u32, retry_after_secs: u64) {
        self.0.faults.inject(Fault::RateLimited { retry_after_secs }, n);
    }

    /// The next `n` requests hang for `d`, then answer 504.
    pub fn hang_next(&self, n: u32, d: Duration) {
        self.0.faults.inject(Fault::hang(d), n);
    }

    /// The next `n` requests get a truncated JSON body.
    pub fn malformed_next(&self, n: u32) {
        self.0.faults.inject(Fault::MalformedJson, n);
    }

    /// The next `n` requests get the target's 200-with-error body.
    pub fn error_body_next(&self, n: u32) {
        self.0.faults.inject(Fault::ErrorBody, n);
    }

    /// The next `n` requests are handled but answered with 500.
    pub fn lose_next_responses(&self, n: u32) {
        self.0.faults.inject(Fault::LoseResponse, n);
    }

    /// Revokes all access/session tokens (clients must log in again).
    pub fn revoke_tokens(&self) {
        self.0.tokens.revoke(&[TokenKind::Access]);
    }

    /// Revokes every credential, including refresh and static tokens.
    pub fn revoke_all_credentials(&self) {
        self.0.tokens.revoke(&[TokenKind::Access, TokenKind::Refresh, TokenKind::Static]);
    }

    /// Adds `d` of latency to every target request (benchmarks use 50 ms).
    pub fn set_latency(&self, d: Duration) {
        self.0.latency_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.0.latency_ms.load(Ordering::Relaxed))
    }

    /// Limits each client to `limit` requests per `window` (per route if `per_route`); beyond
    /// that the simulator answers 429 with `Retry-After`.
    pub fn set_rate_limit(&self, rule: Option<RateRule>) {
        let mut r = lock(&self.0.rate);
        r.0 = rule;
        r.1.clear();
    }

    /// Counts a request as in flight until the guard drops.
    pub(crate) fn in_flight(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.0.in_flight.clone())
    }

    /// Waits (up to `limit`) until no request is being handled; `false` on timeout.
    pub async fn idle(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while self.0.in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// How many requests the rate limit answered with 429.
    pub fn throttled(&self) -> u64 {
        self.0.throttled.load(Ordering::Relaxed)
    }

    /// `Some(retry_after_secs)` when this request exceeds the rate limit.
    pub(crate) fn rate_check(&self, client: &str, route: &str) -> Option<u64> {
        let mut r = lock(&self.0.rate);
        let rule = r.0?;
        let key = if rule.per_route { format!("{client} {route}") } else { client.to_string() };
        let now = Instant::now();
        let entry = r.1.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= rule.window {
            *entry = (now, 0);
        }
        if entry.1 >= rule.limit {
            let left = rule.window.saturating_sub(now.duration_since(entry.0));
            self.0.throttled.fetch_add(1, Ordering::Relaxed);
            return Some((left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1));
        }
        entry.1 += 1;
        None
    }

    pub(crate) fn record(&self, route: &str, path: &str, query: Option<&str>) {
        let mut log = lock(&self.0.log);
        *log.counts.entry(route.to_string()).or_default() += 1;
        log.total += 1;
        if log.recent.len() >= RequestLog::KEEP {
            log.recent.pop_front();
        }
        log.recent.push_back(RequestRecord {
            route: route.to_string(),
            path: path.to_string(),
            query: query.map(str::to_string),
            at: Instant::now(),
        });
    }

    /// Requests seen on `route` (`"METHOD /route/{template}"`).
    pub fn requests(&self, route: &str) -> usize {
        lock(&self.0.log).counts.get(route).copied().unwrap_or(0)
    }

    /// All target requests seen.
    pub fn request_count(&self) -> usize {
        lock(&self.0.log).total
    }

    /// Requests per route.
    pub fn request_counts(&self) -> BTreeMap<String, usize> {
        lock(&self.0.log).counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// The most recent requests (up to 50,000), oldest first.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        lock(&self.0.log).recent.iter().cloned().collect()
    }

    pub fn reset_requests(&self) {
        *lock(&self.0.log) = RequestLog::default();
    }

    /// Whether requests and responses are checked against the target's vendor contract (on by
    /// default wherever `tests/sandbox/contracts/<target>` exists). Only tests of the
    /// simulator's own refusals turn it off, to reach the handler with a shape the contract
    /// already refuses.
    pub fn set_contract_checks(&self, on: bool) {
        lock(&self.0.contract).enabled = on;
    }

    pub fn contract_checks(&self) -> bool {
        lock(&self.0.contract).enabled
    }

    /// Records contract violations (the server answers them with [`crate::contract`]'s status).
    pub fn record_contract_violations(&self, found: &[String]) {
        for v in found {
            tracing::error!(simulator = self.0.profile.name, violation = %v, "contract violation");
            crate::contract::log_line(&format!("VIOLATION\t{}\t{v}", self.0.profile.name));
        }
        lock(&self.0.contract).violations.extend_from_slice(found);
    }

    /// Contract violations seen so far.
    pub fn contract_violations(&self) -> Vec<String> {
        lock(&self.0.contract).violations.clone()
    }

    /// Returns and forgets the violations seen (for tests that send a wrong shape on purpose).
    pub fn take_contract_violations(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.0.contract).violations)
    }
}

#[cfg(test)]
mod persistence_tests {
    use super::*;

    fn new(title: &str) -> NewTicket {
        NewTicket { title: title.into(), body: "b".into(), ..NewTicket::default() }
    }

    #[test]
    fn journal_survives_reload_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desk.json");
        let sim = Sim::new(crate::desk::profile());
        sim.persist_to(path.clone()).unwrap();
        let a = sim.create_ticket(new("a"));
        let b = sim.create_ticket(new("b"));
        sim.add_note(a.id, None, "note".into(), true, "tech").unwrap();
        sim.update_ticket(b.id, |t| t.status = "Closed".into()).unwrap();
        sim.add_customer("c-9", "Globex");
        // A process killed mid-append leaves half a line behind.
        let journal = path.with_extension("journal");
        let mut text = std::fs::read_to_string(&journal).unwrap();
        assert_eq!(text.lines().count(), 5, "one line per change, no snapshot rewrite");
        text.push_str("{\"op\":\"ticket\",\"ticket\":{\"id\":");
        std::fs::write(&journal, text).unwrap();

        let again = Sim::new(crate::desk::profile());
        again.persist_to(path.clone()).unwrap();
        assert_eq!(again.tickets(), sim.tickets());
        assert_eq!(again.ticket(a.id).unwrap().notes.len(), 1);
        assert_eq!(again.ticket(b.id).unwrap().status, "Closed");
        let c = again.create_ticket(new("c"));
        assert_eq!(c.id, b.id + 1, "ids continue after the replayed ones");
        // Loading folded the journal into the snapshot.
        assert_eq!(std::fs::read_to_string(&journal).unwrap().lines().count(), 1);
    }
}
