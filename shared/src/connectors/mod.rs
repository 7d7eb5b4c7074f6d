//! Connectors to ITSM/PSA targets behind one [`Connector`] trait.
//!
//! Each connector owns its authentication (tokens are read from and written to [`crate::secrets`]),
//! speaks the target's real REST API through the shared [`crate::http`] layer, and batches
//! status queries where the API can.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::ConnectionConfig;
use crate::domain::{ConnectorKind, MappedStatus, RecordKind, TicketRef};
use crate::http::HttpClient;
pub use crate::http::{ConnectorError, TokenKind, TokenState};
use crate::secrets::Secrets;
pub use changes::ChangedTickets;
pub use records::{PsaEntry, RecordPage};

pub mod changes;
pub mod generic;
pub mod records;
pub mod rt;
pub mod sandbox;

/// Everything needed to open one ticket (already resolved: customer, contact, defaults).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TicketRequest {
    /// Correlation key (the task id) written into the ticket so a crash between "created" and
    /// "recorded" can be recovered by [`Connector::find_by_correlation`] instead of a second ticket.
    pub correlation_key: String,
    pub title: String,
    pub body: String,
    pub customer_id: Option<String>,
    pub contact_id: Option<String>,
    pub contact_email: Option<String>,
    pub contract_id: Option<String>,
    pub ticket_type: Option<String>,
    pub source: Option<String>,
    pub status: Option<String>,
    pub queue: Option<String>,
    pub priority: Option<String>,
    pub issue_type: Option<String>,
    pub sub_issue_type: Option<String>,
    /// Task fields for templated (generic) connectors.
    pub fields: serde_json::Value,
    /// Agent (or team) the ticket is assigned to, as the target names it (login, id or e-mail; see
    /// docs/psa-connectors.md per target).
    #[serde(default)]
    pub assignee: Option<String>,
    /// Secondary responsible agent (OTRS/Znuny `Responsible`).
    #[serde(default)]
    pub responsible: Option<String>,
    /// Target custom fields by name (OTRS dynamic fields, RT custom fields, NinjaOne attributes…).
    #[serde(default)]
    pub custom_fields: std::collections::BTreeMap<String, serde_json::Value>,
    /// The location of the user's contact (BMS `LocationId`), from the sync's contact records.
    #[serde(default)]
    pub location_id: Option<String>,
    /// The asset the alert names (BMS `HardwareAssetId`), from the sync's asset records.
    #[serde(default)]
    pub asset_id: Option<String>,
}

/// An internal note added to an open ticket (grouped alerts).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NoteRequest {
    pub correlation_key: String,
    pub title: String,
    pub body: String,
}

/// A ticket's status as read from the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteStatus {
    pub ticket_id: String,
    /// The status name shown to technicians.
    pub name: String,
    /// The stable category where the API has one (OTRS StateType, RT active/inactive,
    /// NinjaOne parent status, BMS completed date).
    pub category: Option<MappedStatus>,
}

/// Result of a connection check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub ok: bool,
    pub steps: Vec<String>,
}

/// A customer / account in the target (organization mapping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub name: String,
}

/// A contact (ticket requester) of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
}

/// A customer's contract (attached to its tickets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    pub id: String,
    pub name: String,
    /// The customer's default contract.
    #[serde(default)]
    pub is_default: bool,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// A service line of a contract whose quantity is the billed user count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLine {
    pub id: String,
    pub contract_id: String,
    /// The catalog service the line bills.
    pub service_id: String,
    pub quantity: u64,
}

/// What [`Connector::set_service_quantity`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineChange {
    Added,
    Updated,
    Unchanged,
}

/// The error of an optional operation a connector does not implement.
pub fn unsupported(kind: ConnectorKind, what: &str) -> ConnectorError {
    ConnectorError::Unsupported(format!("{what} is not supported by {}", kind.as_str()))
}

/// One ITSM/PSA tenant.
#[async_trait]
pub trait Connector: Send + Sync {
    fn kind(&self) -> ConnectorKind;

    /// How many tickets one status request can cover (1 when the API cannot batch).
    fn batch_size(&self) -> usize {
        1
    }

    /// Authenticates and reads something cheap; says precisely what is wrong.
    ///
    /// `Ok` lists the steps that passed; the first failing step is returned as the error whose
    /// variant is the diagnosis (Unreachable, Tls, Unauthorized = bad credentials, TokenExpired,
    /// Forbidden = missing scope / IP not allowed, NotFound / Config = wrong tenant or desk).
    async fn check(&self) -> Result<CheckReport, ConnectorError>;

    /// Opens a ticket carrying `req.correlation_key`.
    async fn create_ticket(&self, req: &TicketRequest) -> Result<TicketRef, ConnectorError>;

    /// Finds a ticket created earlier with this correlation key (crash recovery).
    async fn find_by_correlation(&self, key: &str) -> Result<Option<TicketRef>, ConnectorError>;

    /// Adds an internal note to an open ticket.
    async fn add_note(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError>;

    /// Statuses of up to [`Connector::batch_size`] tickets. Tickets the target no longer knows
    /// are omitted.
    async fn statuses(&self, ticket_ids: &[String]) -> Result<Vec<RemoteStatus>, ConnectorError>;

    /// Contact id for an e-mail address (optionally within a customer), if the target has contacts.
    async fn find_contact(&self, _customer_id: Option<&str>, _email: &str) -> Result<Option<String>, ConnectorError> {
        Ok(None)
    }

    /// Customers / accounts (organization mapping); empty where the target has none.
    async fn list_customers(&self) -> Result<Vec<Customer>, ConnectorError> {
        Ok(Vec::new())
    }

    /// Creates a customer / account named `name` (organization sync with auto-create).
    async fn create_customer(&self, _name: &str) -> Result<Customer, ConnectorError> {
        Err(unsupported(self.kind(), "creating customers"))
    }

    /// Contacts of one customer.
    async fn list_contacts(&self, _customer_id: &str) -> Result<Vec<Contact>, ConnectorError> {
        Err(unsupported(self.kind(), "listing contacts"))
    }

    /// Creates a contact in a customer; returns its id.
    async fn create_contact(
        &self,
        _customer_id: &str,
        _name: &str,
        _email: Option<&str>,
    ) -> Result<String, ConnectorError> {
        Err(unsupported(self.kind(), "creating contacts"))
    }

    /// Contracts of one customer.
    async fn list_contracts(&self, _customer_id: &str) -> Result<Vec<Contract>, ConnectorError> {
        Err(unsupported(self.kind(), "contracts"))
    }

    /// Sets the quantity (user count) of contract `contract_id`'s line for `service` (a catalog id
    /// or name): the line `line_id` if given and still there, else the contract's line for that
    /// service, else a new line. Writes nothing when the quantity is already right.
    async fn set_service_quantity(
        &self,
        _contract_id: &str,
        _line_id: Option<&str>,
        _service: &str,
        _quantity: u64,
    ) -> Result<(ServiceLine, LineChange), ConnectorError> {
        Err(unsupported(self.kind(), "contract service lines"))
    }

    /// Current credential expiry, from the stored secret.
    async fn token_state(&self) -> Result<TokenState, ConnectorError>;

    /// Renews the session/OAuth token now and stores the new secret version.
    async fn refresh_token(&self) -> Result<TokenState, ConnectorError>;

    /// The target's change filter used by [`Connector::changed_since`] (e.g. "TicketSQL LastUpdated"),
    /// `None` where the API has none and polling stays a batched full read.
    fn change_filter(&self) -> Option<&'static str> {
        None
    }

    /// Statuses of the tickets the target changed after `since` (its clock), every page read.
    async fn changed_since(&self, _since: DateTime<Utc>) -> Result<ChangedTickets, ConnectorError> {
        Err(unsupported(self.kind(), "reading changed tickets"))
    }

    /// Page `page` (1-based) of the target's entries of `kind` for the continuous sync: only those
    /// changed since `since` where the API can filter by change time, else all of them.
    async fn read_records(
        &self,
        _kind: RecordKind,
        _since: Option<DateTime<Utc>>,
        _page: u32,
    ) -> Result<RecordPage, ConnectorError> {
        Err(unsupported(self.kind(), &format!("reading {} for the sync", _kind.as_str())))
    }

    /// Adds `note` to the ticket of a cancelled task and closes it (or moves it to the target's
    /// cancelled/rejected state). Safe to call again after a failure: a ticket already closed
    /// stays closed. Targets whose API cannot close tickets answer [`ConnectorError::Unsupported`]
    /// (the engine then adds the note alone).
    async fn close_ticket(&self, _ticket: &TicketRef, _note: &NoteRequest) -> Result<(), ConnectorError> {
        Err(unsupported(self.kind(), "closing tickets"))
    }

    /// Reopens a closed ticket (moves it back to an open status) and adds `note` (the alert that
    /// reopened it). Targets that cannot answer [`ConnectorError::Unsupported`] before writing
    /// anything (the engine then opens a new ticket).
    async fn reopen_ticket(&self, _ticket: &TicketRef, _note: &NoteRequest) -> Result<(), ConnectorError> {
        Err(unsupported(self.kind(), "reopening tickets"))
    }

    /// [`Connector::read_records`] for targets that page by cursor: `after` is the previous
    /// page's [`RecordPage::next`] (`None` on a kind's first page). By default the numbered page.
    async fn read_records_after(
        &self,
        kind: RecordKind,
        since: Option<DateTime<Utc>>,
        page: u32,
        _after: Option<&str>,
    ) -> Result<RecordPage, ConnectorError> {
        self.read_records(kind, since, page).await
    }

    /// This process's view of the connection's local rate limiter (used in the last hour,
    /// headroom now); `None` where the connector has no HTTP client.
    fn rate_usage(&self) -> Option<crate::http::RateUsage> {
        None
    }
}

/// Builds the connector for connection `name` (no I/O; credentials are read on first use).
pub fn build(
    name: &str,
    config: &ConnectionConfig,
    secrets: Arc<dyn Secrets>,
) -> Result<Arc<dyn Connector>, ConnectorError> {
    match config.kind {
        ConnectorKind::Sandbox => Ok(Arc::new(sandbox::SandboxConnector::new(name, config, secrets)?)),
        ConnectorKind::Rt => Ok(Arc::new(rt::RtConnector::new(name, config, secrets)?)),
        ConnectorKind::Generic => Ok(Arc::new(generic::GenericConnector::new(name, config, secrets)?)),
        ConnectorKind::Bms => Ok(Arc::new(bms::BmsConnector::new(name, config, secrets)?)),
        ConnectorKind::Vsa => Ok(Arc::new(vsa::VsaConnector::new(name, config, secrets)?)),
        ConnectorKind::Ninjaone => Ok(Arc::new(ninjaone::NinjaOneConnector::new(name, config, secrets)?)),
        ConnectorKind::Otrs => Ok(Arc::new(otrs::OtrsConnector::new(name, config, secrets)?)),
    }
}

/// Percent-encodes one URL path segment (everything but RFC 3986 unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Rejects option keys a connector does not know, naming the key.
pub fn allow_options(name: &str, options: &toml::Table, allowed: &[&str]) -> Result<(), ConnectorError> {
    match options.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ConnectorError::Config(format!(
            "connections.{name}.options.{k}: unknown option (allowed: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// Whether a failed create may have opened the ticket anyway (the response was lost).
pub fn is_ambiguous(e: &ConnectorError) -> bool {
    matches!(
        e,
        ConnectorError::Server(_)
            | ConnectorError::Timeout(_)
            | ConnectorError::Malformed(_)
            | ConnectorError::Unreachable(_)
    )
}

/// Creates a ticket without ever creating two: a create whose outcome is unknown (5xx, timeout,
/// lost or garbled response) is followed by a correlation search, and only when that finds
/// nothing is the create retried (with backoff, up to the client's `max_retries`).
pub async fn create_with_recovery<C, CF, S, SF>(
    http: &HttpClient,
    create: C,
    search: S,
) -> Result<TicketRef, ConnectorError>
where
    C: Fn() -> CF,
    CF: Future<Output = Result<TicketRef, ConnectorError>>,
    S: Fn() -> SF,
    SF: Future<Output = Result<Option<TicketRef>, ConnectorError>>,
{
    let mut attempt = 0;
    loop {
        let err = match create().await {
            Ok(t) => return Ok(t),
            Err(e) if is_ambiguous(&e) && attempt < http.config().max_retries => e,
            Err(e) => return Err(e),
        };
        tracing::warn!(error = %err, attempt, "create outcome unknown; searching by correlation key");
        http.backoff(attempt).await;
        match search().await {
            Ok(Some(found)) => {
                tracing::info!(ticket = %found.id, "found the ticket the failed create opened");
                return Ok(found);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "correlation search failed; not creating again");
                return Err(err);
            }
        }
        attempt += 1;
    }
}

pub mod bms;
pub mod ninjaone;
pub mod otrs;
pub(crate) mod psa_util;
pub mod vsa;
