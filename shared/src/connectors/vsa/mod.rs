//! Kaseya VSA 9 connector (Service Desk module).
//!
//! Auth: `GET /api/v1.0/auth` with `Basic base64(username:PAT)` gives a session token (Bearer)
//! valid until `SessionExpiration`; there is no refresh token, the connector simply authenticates
//! again shortly before the session ends (and once on a 401). The personal access token itself is
//! renewed by a person: its expiry date is recorded in the secret as `pat_expires_at` and reported
//! by [`Connector::token_state`] as [`TokenKind::Personal`].
//!
//! Secret fields: `username`, `pat`, optional `pat_expires_at` (date or RFC 3339).
//! Options: `service_desk_id` (required), `page_size` (≤ 100), `batch_size`, `ticket_url`.
//! The correlation marker goes at the end of `Summary` (`[tb-<key>]`): the desk-ticket list model
//! has no `Description`, so that is the field a `$filter` can search.

mod sync_read;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use base64::Engine;
use chrono::{Duration, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::config::ConnectionConfig;
use crate::connectors::psa_util::{
    self, Check, body_with_marker, marker_token, parse_datetime, transport_diagnosis, truncate,
};
use crate::connectors::{
    CheckReport, Connector, ConnectorError, Customer, NoteRequest, RemoteStatus, TicketRequest, TokenKind, TokenState,
    create_with_recovery,
};
use crate::domain::{ConnectorKind, TicketDefaults, TicketRef};
use crate::http::{HttpClient, Redactor, TokenCache, TokenGrant, TokenSource};
use crate::secrets::{Secret, Secrets};
use wire::{Catalogue, Payload};

/// Secret field holding the personal access token.
pub const PAT_FIELD: &str = "pat";
/// Secret field recording when the PAT expires.
pub const PAT_EXPIRES_FIELD: &str = "pat_expires_at";

/// `connections.<name>.options` for VSA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VsaOptions {
    /// The service desk tickets are created in (numeric id).
    pub service_desk_id: Option<String>,
    /// `$top` per page (VSA allows at most 100).
    pub page_size: u32,
    /// Tickets per status batch (one `$filter` of ids).
    pub batch_size: usize,
    /// Session length assumed when the server gives no `SessionExpiration`.
    pub session_minutes: i64,
    /// Technician link, with `{id}` / `{number}` placeholders.
    pub ticket_url: Option<String>,
    /// Status (name or id of the desk's status catalogue) a cancelled task's ticket is set to.
    pub close_status: String,
    /// Status a reopened ticket is set to.
    pub reopen_status: String,
}

impl Default for VsaOptions {
    fn default() -> Self {
        Self {
            service_desk_id: None,
            page_size: 100,
            batch_size: 50,
            session_minutes: 30,
            ticket_url: None,
            close_status: "Closed".into(),
            reopen_status: "Open".into(),
        }
    }
}

/// `GET /api/v1.0/auth` with the PAT.
struct VsaAuth {
    http: HttpClient,
    base: String,
    secret_name: String,
    session_minutes: i64,
}

impl VsaAuth {
    async fn login(&self, secret: &Secret) -> Result<TokenGrant, ConnectorError> {
        let req = |f: &str| {
            secret.require(&self.secret_name, f).map(str::to_string).map_err(|e| ConnectorError::Config(e.to_string()))
        };
        let (user, pat) = (req("username")?, req(PAT_FIELD)?);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pat}"));
        let url = format!("{}{}", self.base, wire::AUTH_PATH);
        let resp = self
            .http
            .send(|c| c.get(&url).header(reqwest::header::AUTHORIZATION, format!("Basic {basic}")), true)
            .await?;
        let auth: wire::AuthResult = wire::parse_envelope(&resp.body)?.result;
        if auth.token.is_empty() {
            return Err(ConnectorError::Malformed("VSA auth returned an empty token".into()));
        }
        let expires_at = auth.expires_at(Utc::now(), Duration::minutes(self.session_minutes));
        Ok(TokenGrant { access_token: auth.token, expires_at: Some(expires_at), ..Default::default() })
    }
}

#[async_trait]
impl TokenSource for VsaAuth {
    async fn fetch(&self, secret: &Secret) -> Result<TokenGrant, ConnectorError> {
        self.login(secret).await
    }
}

/// A Kaseya VSA server.
pub struct VsaConnector {
    base: String,
    desk: String,
    http: HttpClient,
    auth: Arc<VsaAuth>,
    tokens: TokenCache,
    secrets: Arc<dyn Secrets>,
    secret_name: String,
    defaults: TicketDefaults,
    opts: VsaOptions,
    catalogues: Mutex<HashMap<Catalogue, Vec<serde_json::Value>>>,
    /// Set once the server refused the id `$filter`: statuses are then read by path.
    id_filter_refused: AtomicBool,
}

impl VsaConnector {
    /// Builds the connector for connection `name`.
    pub fn new(name: &str, cfg: &ConnectionConfig, secrets: Arc<dyn Secrets>) -> Result<Self, ConnectorError> {
        let opts: VsaOptions = psa_util::options(name, cfg)?;
        let desk = opts
            .service_desk_id
            .clone()
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                ConnectorError::Config(format!(
                    "connections.{name}.options.service_desk_id: set the numeric service desk id"
                ))
            })?;
        if opts.page_size == 0 || opts.page_size > wire::MAX_TOP || opts.batch_size == 0 {
            return Err(ConnectorError::Config(format!(
                "connections.{name}.options: page_size must be 1..=100 and batch_size > 0"
            )));
        }
        let redactor = Redactor::new();
        let http = HttpClient::for_connection(name, cfg, redactor.clone())?;
        let base = psa_util::base_url(cfg);
        let auth = Arc::new(VsaAuth {
            http: http.clone(),
            base: base.clone(),
            secret_name: cfg.secret.clone(),
            session_minutes: opts.session_minutes.max(1),
        });
        let tokens = TokenCache::new(secrets.clone(), &cfg.secret, auth.clone(), redactor, TokenKind::Personal);
        Ok(Self {
            base,
            desk,
            http,
            auth,
            tokens,
            secrets,
            secret_name: cfg.secret.clone(),
            defaults: cfg.defaults.clone(),
            opts,
            catalogues: Mutex::new(HashMap::new()),
            id_filter_refused: AtomicBool::new(false),
        })
    }

    /// How many session logins this connector made (tests).
    pub fn token_fetches(&self) -> u64 {
        self.tokens.fetch_count()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&serde_json::Value>,
        idempotent: bool,
    ) -> Result<Payload<T>, ConnectorError> {
        let url = format!("{}{path}", self.base);
        self.tokens
            .with_token(|token| {
                let (url, method) = (url.clone(), method.clone());
                async move {
                    let resp = self.http.send_bearer(method, &url, &token, query, body, idempotent).await?;
                    wire::parse_envelope::<T>(&resp.body)
                }
            })
            .await
    }

    async fn catalogue(&self, cat: Catalogue) -> Result<Vec<serde_json::Value>, ConnectorError> {
        if let Some(rows) = self.catalogues.lock().await.get(&cat) {
            return Ok(rows.clone());
        }
        let rows: Vec<serde_json::Value> = self.call(Method::GET, &cat.path(&self.desk), &[], None, true).await?.result;
        self.catalogues.lock().await.insert(cat, rows.clone());
        Ok(rows)
    }

    async fn resolve(&self, cat: Catalogue, value: &str) -> Result<i64, ConnectorError> {
        if let Ok(id) = value.trim().parse::<i64>() {
            return Ok(id);
        }
        let rows = self.catalogue(cat).await?;
        wire::catalogue_id(&rows, cat, value).and_then(|id| id.parse::<i64>().ok()).ok_or_else(|| {
            ConnectorError::Config(format!(
                "{}: service desk {} has no '{}'",
                cat.setting(),
                self.desk,
                truncate(value, 60)
            ))
        })
    }

    /// A status of the desk by name or id, for `options.<setting>`.
    async fn status_id(&self, value: &str, setting: &str) -> Result<i64, ConnectorError> {
        self.resolve(Catalogue::Statuses, value).await.map_err(|e| match e {
            ConnectorError::Config(_) => ConnectorError::Config(format!(
                "options.{setting}: service desk {} has no status '{}'",
                self.desk,
                truncate(value, 60)
            )),
            other => other,
        })
    }

    /// `PUT automation/servicedesktickets/{ticketId}/status/{statusId}`.
    async fn put_status(&self, ticket: &TicketRef, status: i64) -> Result<(), ConnectorError> {
        wire::check_id(&ticket.id)?;
        let path = wire::status_path(&ticket.id, status);
        self.call::<serde_json::Value>(Method::PUT, &path, &[], None, true).await?;
        Ok(())
    }

    /// The first priority of the desk when none is configured (VSA requires one).
    async fn first_priority(&self) -> Result<i64, ConnectorError> {
        let rows = self.catalogue(Catalogue::Priorities).await?;
        rows.first()
            .and_then(|r| r.get("PriorityId"))
            .and_then(wire::id_text)
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| {
                ConnectorError::Config(format!("defaults.priority: service desk {} lists no priorities", self.desk))
            })
    }

    fn ticket_ref(&self, id: String, number: Option<String>, status: Option<String>) -> TicketRef {
        TicketRef {
            url: psa_util::ticket_url(self.opts.ticket_url.as_deref(), &id, number.as_deref()),
            number,
            remote_status: status,
            id,
        }
    }

    /// All pages of a desk ticket listing for `filter`.
    async fn list(&self, filter: &str, limit: Option<usize>) -> Result<Vec<wire::Ticket>, ConnectorError> {
        let path = wire::desk_tickets_path(&self.desk);
        let top = self.opts.page_size;
        let mut out = Vec::new();
        let mut skip = 0u32;
        for _ in 0..psa_util::MAX_PAGES {
            let page: Payload<Vec<wire::Ticket>> =
                self.call(Method::GET, &path, &wire::page_query(filter, top, skip), None, true).await?;
            let n = page.result.len() as u32;
            out.extend(page.result);
            skip += n;
            let more = n >= top && page.total_records.is_none_or(|t| u64::from(skip) < t);
            if !more || limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    /// `GET servicedesktickets/{id}` for each id; tickets that are gone are skipped.
    async fn read_each(&self, ids: &[String]) -> Result<Vec<wire::Ticket>, ConnectorError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.call::<wire::Ticket>(Method::GET, &wire::ticket_path(id), &[], None, true).await {
                Ok(p) => out.push(p.result),
                Err(ConnectorError::NotFound(m)) => {
                    tracing::info!(ticket = %id, error = %m, "VSA ticket gone; skipped")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn pat_expiry(secret: &Secret) -> Option<chrono::DateTime<Utc>> {
        secret.get(PAT_EXPIRES_FIELD).and_then(parse_datetime)
    }
}

#[async_trait]
impl Connector for VsaConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Vsa
    }

    fn rate_usage(&self) -> Option<crate::http::RateUsage> {
        Some(self.http.rate_usage())
    }

    fn batch_size(&self) -> usize {
        self.opts.batch_size
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        let mut check = Check::default();
        let secret = match self.secrets.get(&self.secret_name).await {
            Ok(s) => s,
            Err(e) => return Ok(check.fail(format!("cannot read secret '{}': {e}", self.secret_name))),
        };
        self.http.redactor().add_secret(&secret);
        check.pass(format!("secret '{}' readable", self.secret_name));
        let pat_expiry = Self::pat_expiry(&secret);
        match pat_expiry {
            Some(t) if t <= Utc::now() => check.pass(format!(
                "note: {PAT_EXPIRES_FIELD} says the personal access token expired on {}",
                t.date_naive()
            )),
            Some(t) => check.pass(format!("personal access token valid until {} (recorded)", t.date_naive())),
            None => check.pass(format!("no {PAT_EXPIRES_FIELD} recorded: expiry warnings are off")),
        }
        match self.auth.login(&secret).await {
            Ok(_) => check.pass(format!("authenticated to {} with the personal access token", self.base)),
            Err(e) => {
                let text = e.to_string();
                let why = transport_diagnosis(&e).unwrap_or_else(|| match &e {
                    ConnectorError::Unauthorized(_)
                        if pat_expiry.is_some_and(|t| t <= Utc::now())
                            || text.to_ascii_lowercase().contains("expired") =>
                    {
                        format!("expired personal access token: create a new PAT in VSA and update the secret ({text})")
                    }
                    ConnectorError::Unauthorized(_) => {
                        format!("bad credentials: user name or personal access token rejected ({text})")
                    }
                    ConnectorError::Forbidden(_) => {
                        format!("forbidden: the PAT lacks the REST API scope or this IP is not allow-listed ({text})")
                    }
                    _ => format!("authentication failed: {text}"),
                });
                return Ok(check.fail(why));
            }
        }
        match self.catalogue(Catalogue::Statuses).await {
            Ok(rows) => check.pass(format!("service desk {} has {} statuses", self.desk, rows.len())),
            Err(ConnectorError::NotFound(_)) => {
                return Ok(check.fail(format!("service desk {} not found: check options.service_desk_id", self.desk)));
            }
            Err(ConnectorError::Forbidden(m)) => {
                return Ok(check.fail(format!("no access to service desk {} (scope/role): {m}", self.desk)));
            }
            Err(e) => {
                return Ok(
                    check.fail(transport_diagnosis(&e).unwrap_or_else(|| format!("reading the desk failed: {e}")))
                );
            }
        }
        for (cat, value) in
            [(Catalogue::Priorities, &self.defaults.priority), (Catalogue::Statuses, &self.defaults.status)]
        {
            if let Some(v) = value.as_deref() {
                match self.resolve(cat, v).await {
                    Ok(id) => check.pass(format!("{} '{v}' = id {id}", cat.setting())),
                    Err(e) => return Ok(check.fail(e.to_string())),
                }
            }
        }
        Ok(check.done())
    }

    async fn create_ticket(&self, req: &TicketRequest) -> Result<TicketRef, ConnectorError> {
        let d = &self.defaults;
        let pick = |r: &Option<String>, dflt: &Option<String>| {
            r.clone().or_else(|| dflt.clone()).filter(|s| !s.trim().is_empty())
        };
        let priority = match pick(&req.priority, &d.priority) {
            Some(p) => self.resolve(Catalogue::Priorities, &p).await?,
            None => self.first_priority().await?,
        };
        let status = match pick(&req.status, &d.status) {
            Some(s) => Some(self.resolve(Catalogue::Statuses, &s).await?),
            None => None,
        };
        let category =
            match pick(&req.issue_type, &d.issue.issue_type).or_else(|| pick(&req.ticket_type, &d.ticket_type)) {
                Some(c) => Some(self.resolve(Catalogue::Categories, &c).await?),
                None => None,
            };
        let ticket = wire::NewTicket {
            summary: wire::summary_with_marker(&req.title, &req.correlation_key),
            description: body_with_marker(&req.body, &req.correlation_key),
            priority,
            status,
            category,
            submitter_email: req.contact_email.clone(),
            submitter_name: None,
            assignee: req.assignee.clone(),
            attributes: req.custom_fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let body = serde_json::to_value(&ticket).map_err(|e| ConnectorError::Config(e.to_string()))?;
        let create = || async {
            let result: serde_json::Value =
                self.call(Method::POST, &wire::create_path(&self.desk), &[], Some(&body), false).await?.result;
            let (id, number) = wire::created_ticket(&result)?;
            Ok(self.ticket_ref(id, number, None))
        };
        create_with_recovery(&self.http, create, || self.find_by_correlation(&req.correlation_key)).await
    }

    /// Searches the desk's ticket list for the marker in `Summary` (the list model has no
    /// `Description`) and keeps only tickets whose summary carries exactly this key's marker.
    async fn find_by_correlation(&self, key: &str) -> Result<Option<TicketRef>, ConnectorError> {
        let filter = wire::filter_summary_contains(&marker_token(key));
        let found = self.list(&filter, Some(20)).await?;
        Ok(found
            .into_iter()
            .filter(|t| t.summary.as_deref().is_some_and(|s| wire::summary_has_marker(s, key)))
            .min_by_key(|t| (t.service_desk_ticket_id.len(), t.service_desk_ticket_id.clone()))
            .map(|t| self.ticket_ref(t.service_desk_ticket_id, t.ticket_ref, t.status)))
    }

    async fn add_note(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        let text = body_with_marker(&format!("{}\n\n{}", note.title, note.body), &note.correlation_key);
        let body = serde_json::to_value(wire::Note { text, hidden: true, system_flag: false })
            .map_err(|e| ConnectorError::Config(e.to_string()))?;
        wire::check_id(&ticket.id)?;
        self.call::<serde_json::Value>(Method::POST, &wire::notes_path(&ticket.id), &[], Some(&body), false).await?;
        Ok(())
    }

    /// Hidden note, then `PUT automation/servicedesktickets/{ticketId}/status/{statusId}` (no body;
    /// Kaseya's VSAModule `Update-VSASDTicketStatus`), the status resolved from the desk's catalogue.
    async fn close_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        let status = self.status_id(&self.opts.close_status, "close_status").await?;
        self.add_note(ticket, note).await?;
        self.put_status(ticket, status).await
    }

    /// The same status request to `options.reopen_status`, then the note.
    async fn reopen_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        let status = self.status_id(&self.opts.reopen_status, "reopen_status").await?;
        self.put_status(ticket, status).await?;
        self.add_note(ticket, note).await
    }

    /// One `$filter` over the batch's ids; should the server refuse that filter (HTTP 400), the
    /// tickets are read one by one by path from then on, as Kaseya's VSAModule README advises.
    async fn statuses(&self, ticket_ids: &[String]) -> Result<Vec<RemoteStatus>, ConnectorError> {
        if ticket_ids.is_empty() {
            return Ok(Vec::new());
        }
        let filter = wire::filter_by_ids(ticket_ids)?;
        let rows = if self.id_filter_refused.load(Ordering::Relaxed) {
            self.read_each(ticket_ids).await?
        } else {
            match self.list(&filter, None).await {
                Ok(rows) => rows,
                Err(ConnectorError::Rejected(m)) => {
                    tracing::warn!(error = %m, "VSA refused the id filter; reading tickets one by one");
                    self.id_filter_refused.store(true, Ordering::Relaxed);
                    self.read_each(ticket_ids).await?
                }
                Err(e) => return Err(e),
            }
        };
        let mut seen = std::collections::HashSet::new();
        Ok(rows
            .into_iter()
            .filter(|t| ticket_ids.contains(&t.service_desk_ticket_id) && seen.insert(t.service_desk_ticket_id.clone()))
            .map(|t| t.remote_status())
            .collect())
    }

    async fn list_customers(&self) -> Result<Vec<Customer>, ConnectorError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Org {
            org_id: serde_json::Value,
            #[serde(default)]
            org_name: Option<String>,
        }
        let top = self.opts.page_size;
        let mut out = Vec::new();
        let mut skip = 0u32;
        for _ in 0..psa_util::MAX_PAGES {
            let q = vec![("$top".to_string(), top.to_string()), ("$skip".to_string(), skip.to_string())];
            let page: Payload<Vec<Org>> = self.call(Method::GET, wire::ORGS_PATH, &q, None, true).await?;
            let n = page.result.len() as u32;
            out.extend(page.result.into_iter().filter_map(|o| {
                wire::id_text(&o.org_id).map(|id| Customer { id, name: o.org_name.unwrap_or_default() })
            }));
            skip += n;
            if n < top || page.total_records.is_some_and(|t| u64::from(skip) >= t) {
                break;
            }
        }
        Ok(out)
    }

    async fn read_records(
        &self,
        kind: crate::domain::RecordKind,
        since: Option<chrono::DateTime<Utc>>,
        page: u32,
    ) -> Result<crate::connectors::RecordPage, ConnectorError> {
        self.sync_page(kind, since, page).await
    }

    async fn token_state(&self) -> Result<TokenState, ConnectorError> {
        let secret = self.secrets.get(&self.secret_name).await.map_err(|e| ConnectorError::Secrets(e.to_string()))?;
        Ok(TokenState { kind: TokenKind::Personal, expires_at: Self::pat_expiry(&secret) })
    }

    /// Opens a new session now (proves the PAT still works); reports the PAT's expiry.
    async fn refresh_token(&self) -> Result<TokenState, ConnectorError> {
        self.tokens.refresh().await?;
        self.token_state().await
    }
}
