//! OTRS / Znuny connector (GenericTicketConnectorREST web service).
//!
//! Auth: `SessionCreate` (`POST /Session {UserLogin, Password}`) gives a `SessionID` that is sent
//! in the JSON body of POST/PATCH calls and in the query of GET calls; it is kept in the secret
//! (`access_token`) so processes share one session, redacted from logs and errors, and replaced
//! once when an operation answers `*.AuthFail`. Operation errors arrive as HTTP 200 with an
//! `Error` object and are always checked.
//!
//! Statuses come from one `TicketGet` with a comma list of ids; the category from `StateType`.
//!
//! Correlation goes through a ticket dynamic field (`options.dynamic_field`, default
//! `TicketBridgeRef`): TicketCreate sets it to the correlation key, and the search after an unclear
//! create is `TicketSearch` with `DynamicField_<Name>: {Equals: key}`, exact and immediate. (The
//! article full-text index is filled by a daemon task once a minute and holds only the first
//! `WordCountMax` words, so a body search right after a create finds nothing.) The search body is
//! a JSON object, which Znuny's REST transport reads only for non-GET requests: TicketSearch needs
//! a POST route (default `/TicketSearch`), which the sample web service does not have.
//! Secret fields: `username`, `password`. Options: `webservice`, `path_prefix`, `routes.*`,
//! `dynamic_field`, `queue`, `state`, `priority`, `customer_user`, `session_minutes`, `batch_size`,
//! `ticket_url`.

pub mod wire;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::{CatchAll, ConnectionConfig};
use crate::connectors::changes::{parse_target_time, sql_time};
use crate::connectors::psa_util::{self, Check, body_with_marker, transport_diagnosis, truncate};
use crate::connectors::{
    ChangedTickets, CheckReport, Connector, ConnectorError, NoteRequest, RemoteStatus, TicketRequest, TokenKind,
    TokenState, create_with_recovery,
};
use crate::domain::{ConnectorKind, TicketDefaults, TicketRef};
use crate::http::{HttpClient, Redactor, TokenCache, TokenGrant, TokenSource};
use crate::secrets::{Secret, Secrets};
use wire::{Reply, Routes};

/// `connections.<name>.options` for OTRS / Znuny.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtrsOptions {
    /// Web service name (ignored when `base_url` already points into `nph-genericinterface.pl`).
    pub webservice: String,
    /// Path from the host to `nph-genericinterface.pl`.
    pub path_prefix: String,
    pub routes: Routes,
    /// Ticket dynamic field (type Text) holding the correlation key.
    pub dynamic_field: String,
    /// Defaults for new tickets when the connection defaults name none.
    pub queue: String,
    pub state: String,
    pub priority: String,
    /// Customer user for tickets without a contact (OTRS requires one).
    pub customer_user: Option<String>,
    /// How long a session is reused before a new one is opened (OTRS `SessionMaxTime` is 16 h,
    /// idle time 2 h by default).
    pub session_minutes: i64,
    /// Tickets per `TicketGet`.
    pub batch_size: usize,
    /// Technician link, with `{id}` / `{number}` placeholders.
    pub ticket_url: Option<String>,
    /// State a cancelled task's ticket is moved to (a state of type `closed`).
    pub close_state: String,
    /// State a reopened ticket is moved to (a state of type `open`).
    pub reopen_state: String,
}

impl Default for OtrsOptions {
    fn default() -> Self {
        Self {
            webservice: wire::DEFAULT_WEBSERVICE.into(),
            path_prefix: wire::DEFAULT_PREFIX.into(),
            routes: Routes::default(),
            dynamic_field: wire::DEFAULT_DYNAMIC_FIELD.into(),
            queue: "Raw".into(),
            state: "new".into(),
            priority: "3 normal".into(),
            customer_user: None,
            session_minutes: 110,
            batch_size: 50,
            ticket_url: None,
            close_state: "closed unsuccessful".into(),
            reopen_state: "open".into(),
        }
    }
}

/// `SessionCreate`.
struct OtrsAuth {
    http: HttpClient,
    service: String,
    route: String,
    secret_name: String,
    session_minutes: i64,
}

impl OtrsAuth {
    async fn session(&self, secret: &Secret) -> Result<TokenGrant, ConnectorError> {
        let req = |f: &str| {
            secret.require(&self.secret_name, f).map(str::to_string).map_err(|e| ConnectorError::Config(e.to_string()))
        };
        let body = serde_json::json!({ "UserLogin": req("username")?, "Password": req("password")? });
        let url = format!("{}{}", self.service, self.route);
        let resp = self.http.send(|c| c.post(&url).json(&body), true).await?;
        match wire::parse_reply::<wire::SessionReply>(&resp.body)? {
            Reply::Ok(s) if !s.session_id.is_empty() => Ok(TokenGrant {
                access_token: s.session_id,
                expires_at: Some(Utc::now() + Duration::minutes(self.session_minutes)),
                ..Default::default()
            }),
            Reply::Ok(_) => Err(ConnectorError::Malformed("OTRS SessionCreate returned an empty SessionID".into())),
            Reply::Err(e) => Err(e.to_error()),
        }
    }
}

#[async_trait]
impl TokenSource for OtrsAuth {
    async fn fetch(&self, secret: &Secret) -> Result<TokenGrant, ConnectorError> {
        self.session(secret).await
    }
}

/// An OTRS / Znuny system.
pub struct OtrsConnector {
    service: String,
    http: HttpClient,
    auth: Arc<OtrsAuth>,
    tokens: TokenCache,
    secrets: Arc<dyn Secrets>,
    secret_name: String,
    defaults: TicketDefaults,
    catch_all: Option<CatchAll>,
    opts: OtrsOptions,
}

impl OtrsConnector {
    /// One `TicketUpdate` with the new state and an internal article together.
    async fn update_state(&self, ticket: &TicketRef, note: &NoteRequest, state: &str) -> Result<(), ConnectorError> {
        let route = self.opts.routes.update(&ticket.id)?;
        let article = wire::Article::internal(&note.title, &body_with_marker(&note.body, &note.correlation_key));
        let body = serde_json::json!({ "Ticket": { "State": state }, "Article": article });
        let _: wire::TicketReply = self.op(Method::PATCH, &route, &[], Some(body), false).await?;
        Ok(())
    }

    /// Builds the connector for connection `name`.
    pub fn new(name: &str, cfg: &ConnectionConfig, secrets: Arc<dyn Secrets>) -> Result<Self, ConnectorError> {
        let opts: OtrsOptions = psa_util::options(name, cfg)?;
        if opts.batch_size == 0 {
            return Err(ConnectorError::Config(format!("connections.{name}.options.batch_size: must be > 0")));
        }
        if !opts.routes.ticket_search_method.eq_ignore_ascii_case("POST") {
            return Err(ConnectorError::Config(format!(
                "connections.{name}.options.routes.ticket_search_method: must be POST (the dynamic-field search is a \
                 JSON body, which Znuny reads only for non-GET requests); add a POST route for TicketSearch, e.g. \
                 /TicketSearch, to the web service"
            )));
        }
        if !wire::valid_field_name(&opts.dynamic_field) {
            return Err(ConnectorError::Config(format!(
                "connections.{name}.options.dynamic_field: '{}' is not a dynamic field name (letters and digits only)",
                truncate(&opts.dynamic_field, 60)
            )));
        }
        let redactor = Redactor::new();
        let http = HttpClient::for_connection(name, cfg, redactor.clone())?;
        let service = wire::service_base(&cfg.base_url, &opts.path_prefix, &opts.webservice);
        let auth = Arc::new(OtrsAuth {
            http: http.clone(),
            service: service.clone(),
            route: opts.routes.session_create.clone(),
            secret_name: cfg.secret.clone(),
            session_minutes: opts.session_minutes.max(1),
        });
        let tokens = TokenCache::new(secrets.clone(), &cfg.secret, auth.clone(), redactor, TokenKind::Renewable);
        Ok(Self {
            service,
            http,
            auth,
            tokens,
            secrets,
            secret_name: cfg.secret.clone(),
            defaults: cfg.defaults.clone(),
            catch_all: cfg.catch_all.clone(),
            opts,
        })
    }

    /// How many sessions this connector opened (tests).
    pub fn token_fetches(&self) -> u64 {
        self.tokens.fetch_count()
    }

    /// One operation. `body` gets `SessionID` added (POST/PATCH); GET carries it in the query.
    /// `AuthFail` opens one new session and repeats the call.
    async fn op<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
        idempotent: bool,
    ) -> Result<T, ConnectorError> {
        let url = format!("{}{route}", self.service);
        self.tokens
            .with_token(|session| {
                let (url, method, body) = (url.clone(), method.clone(), body.clone());
                async move {
                    let mut q: Vec<(&str, String)> = query.to_vec();
                    let body = match body {
                        Some(mut b) => {
                            if let Some(obj) = b.as_object_mut() {
                                obj.insert("SessionID".into(), serde_json::Value::String(session.clone()));
                            }
                            Some(b)
                        }
                        None => {
                            q.push(("SessionID", session.clone()));
                            None
                        }
                    };
                    let resp = self
                        .http
                        .send(
                            |c| {
                                let rb = c.request(method.clone(), &url).query(&q);
                                match &body {
                                    Some(b) => rb.json(b),
                                    None => rb,
                                }
                            },
                            idempotent,
                        )
                        .await?;
                    match wire::parse_reply::<T>(&resp.body)? {
                        Reply::Ok(v) => Ok(v),
                        Reply::Err(e) => Err(e.to_error()),
                    }
                }
            })
            .await
    }

    /// `TicketSearch` with a JSON body (repeated parameters become arrays).
    async fn search(&self, params: &[(&str, String)]) -> Result<Vec<String>, ConnectorError> {
        let mut body = serde_json::Map::new();
        for (k, v) in params {
            let v = serde_json::Value::String(v.clone());
            match body.get_mut(*k) {
                Some(serde_json::Value::Array(a)) => a.push(v),
                Some(prev) => *prev = serde_json::Value::Array(vec![prev.clone(), v]),
                None => {
                    body.insert((*k).to_string(), v);
                }
            }
        }
        self.search_body(serde_json::Value::Object(body)).await
    }

    async fn search_body(&self, body: serde_json::Value) -> Result<Vec<String>, ConnectorError> {
        let route = self.opts.routes.ticket_search.clone();
        let reply: wire::SearchReply = self.op(Method::POST, &route, &[], Some(body), true).await?;
        Ok(reply.ids)
    }

    /// The message for a missing dynamic field, naming it and what to do.
    fn missing_field(&self) -> String {
        format!(
            "OTRS has no valid ticket dynamic field '{0}': create one (Admin > Dynamic Fields > Ticket > Text, name \
             '{0}'), or set options.dynamic_field to an existing Text field",
            self.opts.dynamic_field
        )
    }

    async fn get(&self, ids: &[String]) -> Result<Vec<wire::Ticket>, ConnectorError> {
        let route = self.opts.routes.get(ids)?;
        let reply: wire::GetReply = self.op(Method::GET, &route, &[], None, true).await?;
        Ok(reply.tickets)
    }

    /// `TicketGet` for a batch that may hold ids OTRS no longer shows us. One unknown or
    /// inaccessible id fails the whole `TicketGet`, so after such a failure one `TicketSearch`
    /// restricted to the batch's `TicketID`s tells which are readable, and those are fetched again.
    async fn get_readable(&self, ids: &[String]) -> Result<Vec<wire::Ticket>, ConnectorError> {
        match self.get(ids).await {
            Ok(t) => Ok(t),
            Err(e) if gone(&e) && ids.len() > 1 => {
                tracing::info!(error = %e, "OTRS TicketGet refused the batch; asking which tickets are readable");
                let mut params: Vec<(&str, String)> = ids.iter().map(|id| ("TicketID", id.clone())).collect();
                params.push(("Limit", ids.len().to_string()));
                let found: HashSet<String> = self.search(&params).await?.into_iter().collect();
                let readable: Vec<String> = ids.iter().filter(|id| found.contains(*id)).cloned().collect();
                if readable.is_empty() {
                    return Ok(Vec::new());
                }
                // Normally one call; if the search sees a ticket TicketGet refuses, bisect.
                self.get_skipping_gone(readable).await
            }
            Err(e) if gone(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// `TicketGet` that splits a failing batch in halves until unreadable ids are isolated and
    /// skipped (≈ 2·log2(n) extra calls per such id).
    fn get_skipping_gone(
        &self,
        ids: Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<wire::Ticket>, ConnectorError>> + Send + '_>> {
        Box::pin(async move {
            match self.get(&ids).await {
                Ok(t) => Ok(t),
                Err(e) if gone(&e) && ids.len() == 1 => {
                    tracing::info!(ticket = %ids[0], error = %e, "OTRS ticket not readable; skipped");
                    Ok(Vec::new())
                }
                Err(e) if gone(&e) && !ids.is_empty() => {
                    let (a, b) = ids.split_at(ids.len() / 2);
                    let mut out = self.get_skipping_gone(a.to_vec()).await?;
                    out.extend(self.get_skipping_gone(b.to_vec()).await?);
                    Ok(out)
                }
                Err(e) => Err(e),
            }
        })
    }

    fn ticket_ref(&self, id: &str, number: Option<String>, status: Option<String>) -> TicketRef {
        TicketRef {
            url: psa_util::ticket_url(self.opts.ticket_url.as_deref(), id, number.as_deref()),
            number,
            remote_status: status,
            id: id.to_string(),
        }
    }
}

fn gone(e: &ConnectorError) -> bool {
    matches!(e, ConnectorError::NotFound(_) | ConnectorError::Forbidden(_) | ConnectorError::Rejected(_))
}

#[async_trait]
impl Connector for OtrsConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Otrs
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
        match self.auth.session(&secret).await {
            Ok(_) => check.pass(format!("session created at {}", self.service)),
            Err(e) => {
                let why = transport_diagnosis(&e).unwrap_or_else(|| match &e {
                    ConnectorError::Unauthorized(m) => {
                        format!("bad credentials: agent login or password rejected ({m})")
                    }
                    ConnectorError::NotFound(m) | ConnectorError::Rejected(m) => format!(
                        "web service not found: check options.webservice '{}' and options.routes ({m})",
                        self.opts.webservice
                    ),
                    _ => format!("SessionCreate failed: {e}"),
                });
                return Ok(check.fail(why));
            }
        }
        let route = format!("POST {}", self.opts.routes.ticket_search);
        let any = match self.search(&[("Limit", "1".to_string())]).await {
            Ok(ids) => {
                check.pass(format!("TicketSearch works ({route})"));
                !ids.is_empty()
            }
            Err(e) => {
                return Ok(check.fail(transport_diagnosis(&e).unwrap_or_else(|| {
                    format!(
                        "TicketSearch failed at {route}: the web service needs a POST route for TicketSearch \
                         (Admin > Web Services > {} > TicketSearch: route {}, method POST), and the agent needs \
                         read permission: {e}",
                        self.opts.webservice, self.opts.routes.ticket_search
                    )
                })));
            }
        };
        // TicketSearch silently ignores dynamic fields that do not exist (it only reads the valid,
        // configured ones): a filter on a value no ticket has matches nothing when the field exists,
        // and everything when it does not.
        let nonce = format!("ticket-bridge-check-{}", Utc::now().timestamp_nanos_opt().unwrap_or_default());
        match self.search_body(wire::dynamic_field_search(&self.opts.dynamic_field, &nonce, 1)).await {
            Ok(ids) if !ids.is_empty() => return Ok(check.fail(self.missing_field())),
            Ok(_) if any => check.pass(format!("ticket dynamic field '{}' exists", self.opts.dynamic_field)),
            Ok(_) => check.pass(format!(
                "note: no ticket visible yet, so dynamic field '{}' cannot be verified; the first create names it if \
                 it is missing",
                self.opts.dynamic_field
            )),
            Err(e) => return Ok(check.fail(format!("TicketSearch on dynamic field failed: {e}"))),
        }
        Ok(check.done())
    }

    async fn create_ticket(&self, req: &TicketRequest) -> Result<TicketRef, ConnectorError> {
        let d = &self.defaults;
        let pick = |r: &Option<String>, dflt: &Option<String>, fallback: &str| {
            r.clone().or_else(|| dflt.clone()).filter(|s| !s.trim().is_empty()).unwrap_or_else(|| fallback.to_string())
        };
        let customer_user = req
            .contact_email
            .clone()
            .or_else(|| req.contact_id.clone())
            .or_else(|| self.catch_all.as_ref().and_then(|c| c.contact_id.clone()))
            .or_else(|| self.opts.customer_user.clone())
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                ConnectorError::Config(
                    "options.customer_user: OTRS needs a customer user for tickets without a contact".into(),
                )
            })?;
        let ticket = wire::NewTicket {
            title: req.title.chars().take(250).collect(),
            queue: pick(&req.queue, &d.queue, &self.opts.queue),
            state: pick(&req.status, &d.status, &self.opts.state),
            priority: pick(&req.priority, &d.priority, &self.opts.priority),
            customer_user,
            customer_id: req.customer_id.clone().or_else(|| self.catch_all.as_ref().map(|c| c.customer_id.clone())),
            ticket_type: req.ticket_type.clone().or_else(|| d.ticket_type.clone()),
            owner: req.assignee.clone(),
            responsible: req.responsible.clone(),
        };
        if let Some(bad) = req.custom_fields.keys().find(|k| !wire::valid_field_name(k)) {
            return Err(ConnectorError::Config(format!(
                "custom field '{}' is not an OTRS dynamic field name (letters and digits only)",
                truncate(bad, 60)
            )));
        }
        // The correlation field first; then the rule's custom fields as further dynamic fields.
        let mut dynamic = vec![serde_json::json!({"Name": self.opts.dynamic_field, "Value": req.correlation_key})];
        for (name, value) in &req.custom_fields {
            if *name != self.opts.dynamic_field {
                dynamic.push(serde_json::json!({"Name": name, "Value": value}));
            }
        }
        let article = wire::Article::internal(&req.title, &body_with_marker(&req.body, &req.correlation_key));
        let body = serde_json::json!({
            "Ticket": ticket,
            "Article": article,
            "DynamicField": dynamic,
        });
        let route = self.opts.routes.ticket_create.clone();
        let create = || async {
            let reply: wire::TicketReply =
                self.op(Method::POST, &route, &[], Some(body.clone()), false).await.map_err(|e| match e {
                    // TicketCreate validates the field before creating anything.
                    ConnectorError::Rejected(m) if m.contains("DynamicField->Name") && req.custom_fields.is_empty() => {
                        ConnectorError::Config(self.missing_field())
                    }
                    ConnectorError::Rejected(m) if m.contains("DynamicField->Name") => ConnectorError::Config(format!(
                        "OTRS refused a dynamic field: '{}' (correlation) or one of the custom fields {} is not a \
                         valid ticket dynamic field",
                        self.opts.dynamic_field,
                        req.custom_fields
                            .keys()
                            .map(|k| format!("'{}'", truncate(k, 60)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    ConnectorError::Rejected(m) if m.contains("Ticket->Owner") || m.contains("Ticket->Responsible") => {
                        ConnectorError::Rejected(format!(
                            "{m} (owner '{}', responsible '{}': OTRS needs the login of a valid agent)",
                            req.assignee.as_deref().map(|a| truncate(a, 60)).unwrap_or_default(),
                            req.responsible.as_deref().map(|a| truncate(a, 60)).unwrap_or_default()
                        ))
                    }
                    e => e,
                })?;
            Ok(self.ticket_ref(&reply.ticket_id, reply.ticket_number, None))
        };
        create_with_recovery(&self.http, create, || self.find_by_correlation(&req.correlation_key)).await
    }

    /// `TicketSearch` on the dynamic field, then `TicketGet` with `DynamicFields=1` to confirm
    /// the exact value (a search on a field that does not exist is ignored and matches anything).
    async fn find_by_correlation(&self, key: &str) -> Result<Option<TicketRef>, ConnectorError> {
        let df = &self.opts.dynamic_field;
        let mut ids = self.search_body(wire::dynamic_field_search(df, key, 20)).await?;
        if ids.is_empty() {
            return Ok(None);
        }
        ids.sort_by_key(|i| i.parse::<u64>().unwrap_or(u64::MAX));
        let route = self.opts.routes.get(&ids)?;
        let reply: wire::GetReply =
            self.op(Method::GET, &route, &[("DynamicFields", "1".to_string())], None, true).await?;
        let mut tickets = reply.tickets;
        tickets.sort_by_key(|t| t.ticket_id.parse::<u64>().unwrap_or(u64::MAX));
        let found = tickets.iter().find(|t| t.field_is(df, key));
        if found.is_none() && tickets.iter().all(|t| !t.dynamic_fields.iter().any(|f| &f.name == df)) {
            // The search matched tickets that do not even list the field: it does not exist.
            return Err(ConnectorError::Config(self.missing_field()));
        }
        Ok(found.map(|t| self.ticket_ref(&t.ticket_id, t.ticket_number.clone(), t.state.clone())))
    }

    async fn add_note(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        let route = self.opts.routes.update(&ticket.id)?;
        let article = wire::Article::internal(&note.title, &body_with_marker(&note.body, &note.correlation_key));
        let body = serde_json::json!({ "Article": article });
        let _: wire::TicketReply = self.op(Method::PATCH, &route, &[], Some(body), false).await?;
        Ok(())
    }

    /// One `TicketUpdate`: the state change and the internal article together (Znuny checks the
    /// ticket attributes before it writes anything, so a refused state adds no article).
    async fn close_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        self.update_state(ticket, note, &self.opts.close_state).await
    }

    /// The same single `TicketUpdate`, to `options.reopen_state`.
    async fn reopen_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        self.update_state(ticket, note, &self.opts.reopen_state).await
    }

    async fn statuses(&self, ticket_ids: &[String]) -> Result<Vec<RemoteStatus>, ConnectorError> {
        if ticket_ids.is_empty() {
            return Ok(Vec::new());
        }
        let tickets = self.get_readable(ticket_ids).await?;
        let wanted: HashSet<&str> = ticket_ids.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        Ok(tickets
            .iter()
            .filter(|t| wanted.contains(t.ticket_id.as_str()) && seen.insert(t.ticket_id.clone()))
            .map(wire::Ticket::remote_status)
            .collect())
    }

    async fn token_state(&self) -> Result<TokenState, ConnectorError> {
        self.tokens.state().await
    }

    async fn refresh_token(&self) -> Result<TokenState, ConnectorError> {
        self.tokens.refresh().await
    }

    fn change_filter(&self) -> Option<&'static str> {
        Some("TicketSearch TicketChangeTimeNewerDate")
    }

    /// `TicketSearch` with `TicketChangeTimeNewerDate` (history entries created at or after it, whole
    /// seconds, system time zone = UTC), then `TicketGet` in batches; `Changed` gives the mark.
    async fn changed_since(&self, since: DateTime<Utc>) -> Result<ChangedTickets, ConnectorError> {
        let mut body = serde_json::Map::new();
        body.insert("TicketChangeTimeNewerDate".into(), serde_json::Value::String(sql_time(since)));
        body.insert("Limit".into(), serde_json::Value::String(CHANGED_LIMIT.to_string()));
        let ids = self.search_body(serde_json::Value::Object(body)).await?;
        if ids.len() >= CHANGED_LIMIT {
            return Err(ConnectorError::Unsupported(format!(
                "more than {CHANGED_LIMIT} tickets changed since {since}; a full read is needed"
            )));
        }
        let mut out = ChangedTickets { requests: 1, ..ChangedTickets::default() };
        let mut seen = HashSet::new();
        for chunk in ids.chunks(self.batch_size().max(1)) {
            out.requests += 1;
            for t in self.get_readable(chunk).await? {
                if !seen.insert(t.ticket_id.clone()) {
                    continue;
                }
                if let Some(changed) = t.changed.as_deref() {
                    out.latest = out.latest.max(Some(parse_target_time(changed, "OTRS Changed")?));
                }
                out.statuses.push(t.remote_status());
            }
        }
        Ok(out)
    }
}

/// Largest TicketSearch result read incrementally (Znuny's own default `Limit`); a reply that
/// reaches it may be cut, so the cycle falls back to the full read.
const CHANGED_LIMIT: usize = 10_000;
