//! Kaseya BMS v2 connector.
//!
//! Auth: `POST /v2/security/authenticate` (multipart: GrantType=password, UserName, Password,
//! Tenant) gives an access + refresh token, both stored in the connection's secret; renewal uses
//! `POST /v2/security/refreshtoken` and falls back to a password login when the refresh token is
//! refused. Every response is an envelope `{Success, Error, Result}` that is checked even on 200.
//!
//! Status polling reads all open tickets carrying the Ticket Bridge marker in pages
//! (`POST /v2/servicedesk/tickets/search`, `Filter.Details` + `ExcludeCompleted`), so one request
//! covers many tickets; tickets absent from that list (just completed, or the marker was edited
//! away) are read one by one. Secret fields: `username`, `password`, `tenant` (+ tokens written by
//! the connector).

mod crm;
mod sync_read;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::config::{CatchAll, ConnectionConfig};
use crate::connectors::psa_util::{
    self, Check, Part, body_with_marker, format_datetime, has_marker, marker_line, parse_datetime, parse_id,
    transport_diagnosis, truncate,
};
use crate::connectors::{
    ChangedTickets, CheckReport, Connector, ConnectorError, Contact, Contract, Customer, LineChange, NoteRequest,
    RecordPage, RemoteStatus, ServiceLine, TicketRequest, TokenKind, TokenState, create_with_recovery,
};
use crate::domain::{ConnectorKind, RecordKind, TicketDefaults, TicketRef};
use crate::http::{HttpClient, Redactor, TokenCache, TokenGrant, TokenSource, fields};
use crate::secrets::{Secret, Secrets};
use wire::{Lookup, LookupItem, Payload};

/// `connections.<name>.options` for BMS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BmsOptions {
    /// Rows per search / lookup page.
    pub page_size: u32,
    /// Tickets per status batch. One status call pages through all open marked tickets once, so
    /// every extra batch repeats that scan: the default takes a whole poll run in one batch.
    pub batch_size: usize,
    /// Note type (`TypeId`) for internal notes.
    pub note_type_id: i64,
    /// Location used when the account's main location cannot be read.
    pub location_id: Option<i64>,
    /// Ask BMS to attach the account's default contract when none is mapped.
    pub use_default_contract: bool,
    /// Technician link, with `{id}` / `{number}` placeholders.
    pub ticket_url: Option<String>,
    /// Accounts created by organization sync: `AccountTypeId` (tenant lookup id).
    pub account_type_id: Option<i64>,
    /// Accounts created by organization sync: `BusinessTypeId`.
    pub business_type_id: Option<i64>,
    /// Accounts created by organization sync: `AccountManagerId` (a BMS user id).
    pub account_manager_id: Option<i64>,
    /// Name of the main location of created accounts.
    pub location_name: String,
    /// `EmailTypeId` of the address of created contacts (omitted when unset).
    pub email_type_id: Option<i64>,
    /// Status (name or id) a cancelled task's ticket is resolved with; unset: BMS's own choice.
    pub close_status: Option<String>,
}

impl Default for BmsOptions {
    fn default() -> Self {
        Self {
            page_size: 100,
            batch_size: 20_000,
            note_type_id: 1,
            location_id: None,
            use_default_contract: false,
            ticket_url: None,
            account_type_id: None,
            business_type_id: None,
            account_manager_id: None,
            location_name: "Main Office".into(),
            email_type_id: None,
            close_status: None,
        }
    }
}

/// Login / refresh against the BMS token endpoints.
struct BmsAuth {
    http: HttpClient,
    base: String,
    secret_name: String,
}

impl BmsAuth {
    async fn post_form(&self, path: &str, parts: &[Part<'_>]) -> Result<wire::TokenOutput, ConnectorError> {
        let (content_type, body) = psa_util::multipart(parts);
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .send(|c| c.post(&url).header(reqwest::header::CONTENT_TYPE, &content_type).body(body.clone()), true)
            .await?;
        Ok(wire::parse_envelope::<wire::TokenOutput>(&resp.body)?.result)
    }

    fn grant(out: wire::TokenOutput) -> TokenGrant {
        let now = Utc::now();
        TokenGrant {
            expires_at: Some(parse_datetime(&out.access_token_expire_on).unwrap_or(now + Duration::minutes(55))),
            refresh_expires_at: out.refresh_token_expire_on.as_deref().and_then(parse_datetime),
            refresh_token: out.refresh_token.filter(|r| !r.is_empty()),
            access_token: out.access_token,
            extra: Vec::new(),
        }
    }

    /// A password login (also used by `check`).
    async fn login(&self, secret: &Secret) -> Result<TokenGrant, ConnectorError> {
        let req = |f: &str| {
            secret.require(&self.secret_name, f).map(str::to_string).map_err(|e| ConnectorError::Config(e.to_string()))
        };
        let (user, password, tenant) = (req("username")?, req("password")?, req("tenant")?);
        let out = self
            .post_form(
                wire::AUTH_PATH,
                &[
                    Part { name: "GrantType", value: "password", content_type: None },
                    Part { name: "UserName", value: &user, content_type: None },
                    Part { name: "Password", value: &password, content_type: None },
                    Part { name: "Tenant", value: &tenant, content_type: None },
                ],
            )
            .await?;
        Ok(Self::grant(out))
    }
}

#[async_trait]
impl TokenSource for BmsAuth {
    async fn fetch(&self, secret: &Secret) -> Result<TokenGrant, ConnectorError> {
        let access = secret.get(fields::ACCESS_TOKEN).filter(|s| !s.is_empty());
        let refresh = secret.get(fields::REFRESH_TOKEN).filter(|s| !s.is_empty());
        let refresh_valid = secret
            .get(fields::REFRESH_TOKEN_EXPIRES_AT)
            .and_then(parse_datetime)
            .is_none_or(|e| e > Utc::now() + Duration::seconds(30));
        if let (Some(access), Some(refresh), true) = (access, refresh, refresh_valid) {
            let parts = [
                Part { name: "AccessToken", value: access, content_type: None },
                Part { name: "RefreshToken", value: refresh, content_type: None },
            ];
            match self.post_form(wire::REFRESH_PATH, &parts).await {
                Ok(out) => return Ok(Self::grant(out)),
                Err(
                    e @ (ConnectorError::Unauthorized(_)
                    | ConnectorError::Rejected(_)
                    | ConnectorError::TokenExpired(_)),
                ) => {
                    tracing::info!(secret = %self.secret_name, error = %e, "BMS refresh token refused; logging in again");
                }
                Err(e) => return Err(e),
            }
        }
        self.login(secret).await
    }
}

/// A Kaseya BMS tenant.
pub struct BmsConnector {
    base: String,
    http: HttpClient,
    auth: Arc<BmsAuth>,
    tokens: TokenCache,
    secrets: Arc<dyn Secrets>,
    secret_name: String,
    defaults: TicketDefaults,
    catch_all: Option<CatchAll>,
    opts: BmsOptions,
    lookups: Mutex<HashMap<Lookup, Vec<LookupItem>>>,
    locations: Mutex<HashMap<i64, i64>>,
}

impl BmsConnector {
    /// Builds the connector for connection `name`.
    pub fn new(name: &str, cfg: &ConnectionConfig, secrets: Arc<dyn Secrets>) -> Result<Self, ConnectorError> {
        let opts: BmsOptions = psa_util::options(name, cfg)?;
        if opts.page_size == 0 || opts.batch_size == 0 {
            return Err(ConnectorError::Config(format!(
                "connections.{name}.options: page_size and batch_size must be > 0"
            )));
        }
        let redactor = Redactor::new();
        let http = HttpClient::for_connection(name, cfg, redactor.clone())?;
        let base = psa_util::base_url(cfg);
        let auth = Arc::new(BmsAuth { http: http.clone(), base: base.clone(), secret_name: cfg.secret.clone() });
        let tokens = TokenCache::new(secrets.clone(), &cfg.secret, auth.clone(), redactor, TokenKind::Renewable);
        Ok(Self {
            base,
            http,
            auth,
            tokens,
            secrets,
            secret_name: cfg.secret.clone(),
            defaults: cfg.defaults.clone(),
            catch_all: cfg.catch_all.clone(),
            opts,
            lookups: Mutex::new(HashMap::new()),
            locations: Mutex::new(HashMap::new()),
        })
    }

    /// How many logins / refreshes this connector made (tests).
    pub fn token_fetches(&self) -> u64 {
        self.tokens.fetch_count()
    }

    /// One authenticated call; the envelope is checked, a rejected token is renewed once.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
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

    async fn lookup(&self, table: Lookup) -> Result<Vec<LookupItem>, ConnectorError> {
        if let Some(items) = self.lookups.lock().await.get(&table) {
            return Ok(items.clone());
        }
        let items: Vec<LookupItem> = self.call(Method::GET, &table.path(), &[], None, true).await?.result;
        self.lookups.lock().await.insert(table, items.clone());
        Ok(items)
    }

    /// An id given directly, or a name resolved through a lookup table.
    async fn resolve(&self, table: Lookup, value: &str) -> Result<i64, ConnectorError> {
        if let Ok(id) = value.trim().parse::<i64>() {
            return Ok(id);
        }
        let items = self.lookup(table).await?;
        wire::find_by_name(&items, value).ok_or_else(|| {
            let known: Vec<&str> = items.iter().take(20).map(|i| i.name.as_str()).collect();
            ConnectorError::Config(format!(
                "{}: BMS has no '{}' (known: {})",
                table.setting(),
                truncate(value, 60),
                known.join(", ")
            ))
        })
    }

    async fn location(&self, account: i64) -> Result<i64, ConnectorError> {
        if let Some(id) = self.locations.lock().await.get(&account) {
            return Ok(*id);
        }
        let found = match self
            .call::<Vec<wire::Location>>(Method::GET, &wire::locations_path(account), &[], None, true)
            .await
        {
            Ok(p) => wire::main_location(&p.result),
            Err(e @ (ConnectorError::NotFound(_) | ConnectorError::Forbidden(_)))
                if self.opts.location_id.is_some() =>
            {
                tracing::warn!(account, error = %e, "cannot read account locations; using options.location_id");
                None
            }
            Err(e) => return Err(e),
        };
        let id = found.or(self.opts.location_id).ok_or_else(|| {
            ConnectorError::Rejected(format!("BMS account {account} has no location; set options.location_id"))
        })?;
        self.locations.lock().await.insert(account, id);
        Ok(id)
    }

    async fn ticket_input(&self, req: &TicketRequest) -> Result<wire::TicketInput, ConnectorError> {
        let d = &self.defaults;
        let pick = |r: &Option<String>, dflt: &Option<String>| {
            r.clone().or_else(|| dflt.clone()).filter(|s| !s.trim().is_empty())
        };
        let account =
            req.customer_id.as_deref().or(self.catch_all.as_ref().map(|c| c.customer_id.as_str())).ok_or_else(
                || ConnectorError::Config("no BMS account for this task: map its organization or set catch_all".into()),
            )?;
        let account_id = parse_id("AccountId (customer id)", account).map_err(ConnectorError::Config)?;
        let status_id = match pick(&req.status, &d.status) {
            Some(s) => self.resolve(Lookup::Statuses, &s).await?,
            None => self.resolve(Lookup::Statuses, "New").await?,
        };
        let priority_id = match pick(&req.priority, &d.priority) {
            Some(p) => self.resolve(Lookup::Priorities, &p).await?,
            None => self.default_priority().await?,
        };
        let type_id = pick(&req.ticket_type, &d.ticket_type)
            .ok_or_else(|| ConnectorError::Config("defaults.ticket_type: set the BMS ticket TypeId".into()))
            .and_then(|t| parse_id("defaults.ticket_type (BMS TypeId)", &t).map_err(ConnectorError::Config))?;
        let source_id = match pick(&req.source, &d.source) {
            Some(s) => wire::source_id(&s).ok_or_else(|| {
                ConnectorError::Config(format!("defaults.source: unknown BMS source '{}'", truncate(&s, 40)))
            })?,
            None => 8,
        };
        let queue_id = match pick(&req.queue, &d.queue) {
            Some(q) => Some(self.resolve(Lookup::Queues, &q).await?),
            None => None,
        };
        let issue_type_id = match pick(&req.issue_type, &d.issue.issue_type) {
            Some(i) => Some(self.resolve(Lookup::IssueTypes, &i).await?),
            None => None,
        };
        let sub_issue_type_id = match (issue_type_id, pick(&req.sub_issue_type, &d.issue.sub_issue_type)) {
            (Some(issue), Some(sub)) => Some(self.resolve(Lookup::SubIssueTypes(issue), &sub).await?),
            (None, Some(_)) => {
                return Err(ConnectorError::Config("defaults.issue.sub_issue_type needs an issue type".into()));
            }
            _ => None,
        };
        let catch_all_contact = if req.customer_id.is_none() {
            self.catch_all.as_ref().and_then(|c| c.contact_id.as_deref())
        } else {
            None
        };
        let contact_id = match req.contact_id.as_deref().or(catch_all_contact).filter(|c| !c.trim().is_empty()) {
            Some(c) => Some(parse_id("ContactId", c).map_err(ConnectorError::Config)?),
            None => None,
        };
        let contract_id = match pick(&req.contract_id, &d.contract) {
            Some(c) => Some(parse_id("ContractId", &c).map_err(ConnectorError::Config)?),
            None => None,
        };
        Ok(wire::TicketInput {
            title: req.title.chars().take(250).collect(),
            details: body_with_marker(&req.body, &req.correlation_key),
            account_id,
            location_id: match req.location_id.as_deref().filter(|l| !l.trim().is_empty()) {
                Some(l) => parse_id("LocationId (location id)", l).map_err(ConnectorError::Config)?,
                None => self.location(account_id).await?,
            },
            status_id,
            priority_id,
            type_id,
            source_id,
            open_date: format_datetime(Utc::now()),
            contact_id,
            queue_id,
            issue_type_id,
            sub_issue_type_id,
            use_default_contract: (contract_id.is_none() && self.opts.use_default_contract).then_some(true),
            contract_id,
            assignee_id: req
                .assignee
                .as_deref()
                .map(|a| parse_id("assignee (BMS AssigneeId, an employee id)", a).map_err(ConnectorError::Config))
                .transpose()?,
            custom_fields_data: req
                .custom_fields
                .iter()
                .map(|(name, value)| {
                    let custom_field_id =
                        parse_id("custom field (BMS CustomFieldId)", name).map_err(ConnectorError::Config)?;
                    let data = value.as_str().map_or_else(|| value.to_string(), str::to_string);
                    Ok(wire::CustomFieldData { custom_field_id, data })
                })
                .collect::<Result<_, ConnectorError>>()?,
            hardware_asset_id: match req.asset_id.as_deref().filter(|a| !a.trim().is_empty()) {
                Some(a) => Some(parse_id("HardwareAssetId (asset id)", a).map_err(ConnectorError::Config)?),
                None => None,
            },
        })
    }

    async fn default_priority(&self) -> Result<i64, ConnectorError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct P {
            id: i64,
            #[serde(default)]
            is_default: Option<bool>,
        }
        let rows: Vec<P> = self.call(Method::GET, &Lookup::Priorities.path(), &[], None, true).await?.result;
        rows.iter()
            .find(|p| p.is_default == Some(true))
            .or(rows.first())
            .map(|p| p.id)
            .ok_or_else(|| ConnectorError::Config("defaults.priority: BMS lists no priorities".into()))
    }

    fn ticket_ref(&self, t: &wire::Ticket) -> TicketRef {
        let id = t.id.to_string();
        TicketRef {
            url: psa_util::ticket_url(self.opts.ticket_url.as_deref(), &id, t.ticket_number.as_deref()),
            number: t.ticket_number.clone(),
            remote_status: t.status_name.clone(),
            id,
        }
    }

    async fn search(
        &self,
        filter: wire::TicketFilter,
        page: u32,
        size: u32,
    ) -> Result<Payload<Vec<wire::Ticket>>, ConnectorError> {
        let input = wire::SearchInput { page_number: page, page_size: size, sort: Some("Id".into()), filter };
        let body = serde_json::to_value(&input).map_err(|e| ConnectorError::Config(e.to_string()))?;
        self.call(Method::POST, wire::SEARCH_PATH, &[], Some(&body), true).await
    }

    /// Reads one ticket; `None` when BMS no longer knows it.
    async fn get_ticket(&self, id: i64) -> Result<Option<wire::Ticket>, ConnectorError> {
        match self.call::<wire::Ticket>(Method::GET, &wire::ticket_path(id), &[], None, true).await {
            Ok(p) => Ok(Some(p.result)),
            Err(ConnectorError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Connector for BmsConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Bms
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
        let tenant = secret.get("tenant").unwrap_or_default().to_string();
        match self.auth.login(&secret).await {
            Ok(_) => check.pass(format!("logged in to {} (tenant '{tenant}')", self.base)),
            Err(e) => {
                let why = transport_diagnosis(&e).unwrap_or_else(|| {
                    let text = e.to_string();
                    if text.to_ascii_lowercase().contains("tenant") {
                        format!("wrong tenant: BMS does not know company '{tenant}' ({text})")
                    } else if matches!(e, ConnectorError::Unauthorized(_)) {
                        format!("bad credentials: user name or password rejected ({text})")
                    } else if matches!(e, ConnectorError::Forbidden(_)) {
                        format!("login refused (IP not allowed or user disabled): {text}")
                    } else {
                        format!("login failed: {text}")
                    }
                });
                return Ok(check.fail(why));
            }
        }
        match self.call::<Vec<LookupItem>>(Method::GET, &Lookup::Statuses.path(), &[], None, true).await {
            Ok(p) => check.pass(format!("read {} ticket statuses", p.result.len())),
            Err(ConnectorError::Forbidden(m)) => {
                return Ok(
                    check.fail(format!("missing permission: the API user's role needs Service Desk access ({m})"))
                );
            }
            Err(e) => {
                return Ok(
                    check.fail(transport_diagnosis(&e).unwrap_or_else(|| format!("reading statuses failed: {e}")))
                );
            }
        }
        for (table, value) in [
            (Lookup::Statuses, &self.defaults.status),
            (Lookup::Priorities, &self.defaults.priority),
            (Lookup::Queues, &self.defaults.queue),
            (Lookup::IssueTypes, &self.defaults.issue.issue_type),
        ] {
            if let Some(v) = value.as_deref() {
                match self.resolve(table, v).await {
                    Ok(id) => check.pass(format!("{} '{v}' = id {id}", table.setting())),
                    Err(e) => return Ok(check.fail(e.to_string())),
                }
            }
        }
        Ok(check.done())
    }

    async fn create_ticket(&self, req: &TicketRequest) -> Result<TicketRef, ConnectorError> {
        let input = self.ticket_input(req).await?;
        let body = serde_json::to_value(&input).map_err(|e| ConnectorError::Config(e.to_string()))?;
        let create = || async {
            let created: wire::Ticket =
                self.call(Method::POST, wire::TICKETS_PATH, &[], Some(&body), false).await?.result;
            Ok(self.ticket_ref(&created))
        };
        create_with_recovery(&self.http, create, || self.find_by_correlation(&req.correlation_key)).await
    }

    async fn find_by_correlation(&self, key: &str) -> Result<Option<TicketRef>, ConnectorError> {
        let filter = wire::TicketFilter { details: Some(marker_line(key)), ..Default::default() };
        let found = self.search(filter, 1, 20).await?.result;
        Ok(found
            .iter()
            .filter(|t| t.details.as_deref().is_none_or(|d| has_marker(d, key)))
            .min_by_key(|t| t.id)
            .map(|t| self.ticket_ref(t)))
    }

    async fn add_note(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        let id = parse_id("BMS ticket id", &ticket.id).map_err(ConnectorError::Rejected)?;
        let text = body_with_marker(&format!("{}\n\n{}", note.title, note.body), &note.correlation_key);
        let input = wire::NoteInput {
            details: text,
            is_internal: true,
            note_date: format_datetime(Utc::now()),
            type_id: self.opts.note_type_id,
        };
        let body = serde_json::to_value(&input).map_err(|e| ConnectorError::Config(e.to_string()))?;
        self.call::<serde_json::Value>(Method::POST, &wire::notes_path(id), &[], Some(&body), false).await?;
        Ok(())
    }

    /// `POST /v2/servicedesk/tickets/{ticketId}/resolve` (`ResolveTicketDto`): the note is the
    /// internal resolution comment, so note and close are one request.
    async fn close_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        let id = parse_id("BMS ticket id", &ticket.id).map_err(ConnectorError::Rejected)?;
        let status_id = match &self.opts.close_status {
            Some(s) => Some(self.resolve(Lookup::Statuses, s).await.map_err(|e| match e {
                ConnectorError::Config(m) => ConnectorError::Config(format!("options.close_status: {m}")),
                other => other,
            })?),
            None => None,
        };
        let text = body_with_marker(&format!("{}\n\n{}", note.title, note.body), &note.correlation_key);
        let input = wire::ResolveInput { comment: text, status_id, is_internal: true };
        let body = serde_json::to_value(&input).map_err(|e| ConnectorError::Config(e.to_string()))?;
        self.call::<serde_json::Value>(Method::POST, &wire::resolve_path(id), &[], Some(&body), true).await?;
        Ok(())
    }

    async fn statuses(&self, ticket_ids: &[String]) -> Result<Vec<RemoteStatus>, ConnectorError> {
        let mut wanted: HashSet<i64> = HashSet::new();
        for id in ticket_ids {
            wanted.insert(parse_id("BMS ticket id", id).map_err(ConnectorError::Rejected)?);
        }
        let mut found: HashMap<i64, RemoteStatus> = HashMap::new();
        // Open tickets carrying our marker, many per page.
        let filter = wire::TicketFilter {
            details: Some(psa_util::MARKER_PREFIX.to_string()),
            exclude_completed: Some(1),
            ..Default::default()
        };
        let size = self.opts.page_size;
        let mut page = 1;
        loop {
            let p = self.search(filter.clone(), page, size).await?;
            let n = p.result.len();
            for t in p.result {
                if wanted.contains(&t.id) {
                    found.insert(t.id, t.remote_status());
                }
            }
            let seen = u64::from(page - 1) * u64::from(size) + n as u64;
            let more = n as u32 >= size && p.total_records.is_none_or(|total| seen < total);
            if !more || found.len() == wanted.len() || page >= psa_util::MAX_PAGES {
                break;
            }
            page += 1;
        }
        // The rest were completed (or lost the marker): read them one by one.
        let mut missing: Vec<i64> = wanted.iter().filter(|id| !found.contains_key(id)).copied().collect();
        missing.sort_unstable();
        for id in missing {
            if let Some(t) = self.get_ticket(id).await? {
                found.insert(id, t.remote_status());
            }
        }
        let mut out: Vec<RemoteStatus> = found.into_values().collect();
        out.sort_by(|a, b| a.ticket_id.cmp(&b.ticket_id));
        Ok(out)
    }

    async fn find_contact(&self, customer_id: Option<&str>, email: &str) -> Result<Option<String>, ConnectorError> {
        let account = match customer_id {
            Some(c) => Some(parse_id("customer id", c).map_err(ConnectorError::Config)?),
            None => None,
        };
        let mut query = vec![("Filter.EmailAddress", email.trim().to_string()), ("PageSize", "50".to_string())];
        if let Some(a) = account {
            query.push(("Filter.AccountIds", a.to_string()));
        }
        let found: Vec<wire::Contact> =
            self.call(Method::GET, wire::CONTACTS_SEARCH_PATH, &query, None, true).await?.result;
        Ok(wire::pick_contact(&found, account, email).map(|id| id.to_string()))
    }

    async fn list_customers(&self) -> Result<Vec<Customer>, ConnectorError> {
        let size = self.opts.page_size;
        let mut out = Vec::new();
        for page in 1..=psa_util::MAX_PAGES {
            let query = [("PageNumber", page.to_string()), ("PageSize", size.to_string())];
            let rows: Vec<wire::Account> =
                self.call(Method::GET, wire::ACCOUNTS_LOOKUP_PATH, &query, None, true).await?.result;
            let n = rows.len();
            out.extend(rows.into_iter().filter(|a| a.is_active != Some(false)).map(Customer::from));
            if (n as u32) < size {
                break;
            }
        }
        Ok(out)
    }

    async fn create_customer(&self, name: &str) -> Result<Customer, ConnectorError> {
        self.crm_create_account(name).await
    }

    async fn list_contacts(&self, customer_id: &str) -> Result<Vec<Contact>, ConnectorError> {
        self.crm_account_contacts(customer_id).await
    }

    async fn create_contact(
        &self,
        customer_id: &str,
        name: &str,
        email: Option<&str>,
    ) -> Result<String, ConnectorError> {
        self.crm_create_contact(customer_id, name, email).await
    }

    async fn list_contracts(&self, customer_id: &str) -> Result<Vec<Contract>, ConnectorError> {
        self.finance_contracts(customer_id).await
    }

    async fn set_service_quantity(
        &self,
        _contract_id: &str,
        _line_id: Option<&str>,
        _service: &str,
        _quantity: u64,
    ) -> Result<(ServiceLine, LineChange), ConnectorError> {
        Err(ConnectorError::Unsupported(crm::SERVICE_LINES_OFF.into()))
    }

    async fn token_state(&self) -> Result<TokenState, ConnectorError> {
        self.tokens.state().await
    }

    async fn refresh_token(&self) -> Result<TokenState, ConnectorError> {
        self.tokens.refresh().await
    }

    fn change_filter(&self) -> Option<&'static str> {
        Some("tickets/search Filter.LastActivityUpdateFrom")
    }

    /// `POST /v2/servicedesk/tickets/search` with `Filter.LastActivityUpdateFrom` (TicketFilterDto in
    /// the vendor's OpenAPI) and the marker in `Details`, completed tickets included, paged;
    /// `LastActivityUpdate` of the answers gives the mark. Sent without a zone, read as UTC (assumed).
    async fn changed_since(&self, since: DateTime<Utc>) -> Result<ChangedTickets, ConnectorError> {
        let filter = wire::TicketFilter {
            details: Some(psa_util::MARKER_PREFIX.to_string()),
            last_activity_update_from: Some(since.format("%Y-%m-%dT%H:%M:%S").to_string()),
            ..Default::default()
        };
        let size = self.opts.page_size;
        let mut out = ChangedTickets::default();
        let mut page = 1;
        loop {
            let p = self.search(filter.clone(), page, size).await?;
            out.requests += 1;
            let n = p.result.len();
            for t in p.result {
                if let Some(at) = t.last_activity_update.as_deref().and_then(psa_util::parse_datetime) {
                    out.latest = out.latest.max(Some(at));
                }
                out.statuses.push(t.remote_status());
            }
            let seen = u64::from(page - 1) * u64::from(size) + n as u64;
            let more = n as u32 >= size && p.total_records.is_none_or(|total| seen < total);
            if !more || page >= psa_util::MAX_PAGES {
                return Ok(out);
            }
            page += 1;
        }
    }

    async fn read_records(
        &self,
        kind: RecordKind,
        since: Option<chrono::DateTime<Utc>>,
        page: u32,
    ) -> Result<RecordPage, ConnectorError> {
        self.sync_page(kind, since, page).await
    }
}
