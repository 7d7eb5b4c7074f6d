//! NinjaOne connector (ticketing API v2).
//!
//! Auth: OAuth refresh-token grant at `POST /ws/oauth/token`. NinjaOne rotates the refresh token
//! on every use, so the token exchange is never retried once the request may have reached the
//! server, the freshest stored secret is re-read before each exchange (another process may have
//! rotated it), and the new refresh token is written to the secret before the access token is
//! used (the shared [`TokenCache`] does both).
//!
//! Status polling runs a board (`POST /v2/ticketing/trigger/board/{id}/run`) filtered to the
//! wanted ticket ids, following `lastCursorId`; the category comes from the status' system parent
//! (`RESOLVED` / `CLOSED` = closed). Comments are internal (`public: false`).
//!
//! Secret fields: `client_id`, `client_secret`, `refresh_token` (+ tokens written by the connector).

mod sync_read;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::config::{CatchAll, ConnectionConfig};
use crate::connectors::psa_util::{
    self, Check, Part, body_with_marker, has_marker, marker_token, parse_id, transport_diagnosis, truncate,
};
use crate::connectors::{
    CheckReport, Connector, ConnectorError, Customer, NoteRequest, RecordPage, RemoteStatus, TicketRequest, TokenKind,
    TokenState, create_with_recovery,
};
use crate::domain::{ConnectorKind, RecordKind, TicketDefaults, TicketRef};
use crate::http::{HttpClient, Redactor, TokenCache, TokenGrant, TokenSource, fields};
use crate::secrets::{Secret, Secrets};

/// `connections.<name>.options` for NinjaOne.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NinjaOptions {
    /// Ticket form used for new tickets.
    pub ticket_form_id: i64,
    /// Board used for status queries; default: the board named `board_name`.
    pub board_id: Option<String>,
    pub board_name: String,
    /// Rows per board page.
    pub page_size: u32,
    /// Tickets per status batch.
    pub batch_size: usize,
    /// Status of new tickets when the defaults name none (id or name).
    pub new_status: String,
    /// Minutes the status catalogue is cached.
    pub catalogue_minutes: i64,
    /// Technician link, with `{id}` / `{number}` placeholders.
    pub ticket_url: Option<String>,
    /// Status (id or name) a cancelled task's ticket is set to (default `6000`, system CLOSED).
    pub close_status: String,
    /// Status (id or name) a reopened ticket is set to (default `2000`, system OPEN).
    pub reopen_status: String,
}

impl Default for NinjaOptions {
    fn default() -> Self {
        Self {
            ticket_form_id: 1,
            board_id: None,
            board_name: "All tickets".into(),
            page_size: 100,
            batch_size: 100,
            new_status: "1000".into(),
            catalogue_minutes: 10,
            ticket_url: None,
            close_status: "6000".into(),
            reopen_status: "2000".into(),
        }
    }
}

/// The refresh-token grant.
struct NinjaAuth {
    http: HttpClient,
    base: String,
    secret_name: String,
}

#[async_trait]
impl TokenSource for NinjaAuth {
    async fn fetch(&self, secret: &Secret) -> Result<TokenGrant, ConnectorError> {
        let req = |f: &str| {
            secret.require(&self.secret_name, f).map(str::to_string).map_err(|e| ConnectorError::Config(e.to_string()))
        };
        let (client_id, client_secret, refresh) =
            (req("client_id")?, req("client_secret")?, req(fields::REFRESH_TOKEN)?);
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
            ("refresh_token", refresh.as_str()),
        ];
        let url = format!("{}{}", self.base, wire::TOKEN_PATH);
        // Not idempotent: a replayed (rotated) refresh token is refused, so only requests that
        // cannot have reached the server are retried.
        let resp = self.http.send_any(|c| c.post(&url).form(&form), false).await?;
        if !resp.status.is_success() {
            let oauth: Option<wire::OAuthError> = serde_json::from_slice(&resp.body).ok();
            return Err(match oauth.filter(|o| o.error.is_some()) {
                Some(o) => wire::oauth_error(&o),
                None => resp.error(),
            });
        }
        let t = wire::parse_token(&resp.body)?;
        let expires_at = Utc::now() + Duration::seconds(t.expires_in.unwrap_or(3600).max(1));
        Ok(TokenGrant {
            access_token: t.access_token,
            expires_at: Some(expires_at),
            refresh_token: t.refresh_token.filter(|r| !r.is_empty()),
            refresh_expires_at: None,
            extra: Vec::new(),
        })
    }
}

struct CachedCatalogue {
    at: chrono::DateTime<Utc>,
    catalogue: wire::Catalogue,
}

/// A NinjaOne instance.
pub struct NinjaOneConnector {
    base: String,
    http: HttpClient,
    tokens: TokenCache,
    secrets: Arc<dyn Secrets>,
    secret_name: String,
    defaults: TicketDefaults,
    catch_all: Option<CatchAll>,
    opts: NinjaOptions,
    catalogue: Mutex<Option<CachedCatalogue>>,
    board: Mutex<Option<String>>,
}

impl NinjaOneConnector {
    /// Builds the connector for connection `name`.
    pub fn new(name: &str, cfg: &ConnectionConfig, secrets: Arc<dyn Secrets>) -> Result<Self, ConnectorError> {
        let opts: NinjaOptions = psa_util::options(name, cfg)?;
        if opts.page_size == 0 || opts.batch_size == 0 {
            return Err(ConnectorError::Config(format!(
                "connections.{name}.options: page_size and batch_size must be > 0"
            )));
        }
        let redactor = Redactor::new();
        let http = HttpClient::for_connection(name, cfg, redactor.clone())?;
        let base = psa_util::base_url(cfg);
        let auth = Arc::new(NinjaAuth { http: http.clone(), base: base.clone(), secret_name: cfg.secret.clone() });
        let tokens = TokenCache::new(secrets.clone(), &cfg.secret, auth, redactor, TokenKind::Renewable);
        Ok(Self {
            base,
            http,
            tokens,
            secrets,
            secret_name: cfg.secret.clone(),
            defaults: cfg.defaults.clone(),
            catch_all: cfg.catch_all.clone(),
            board: Mutex::new(opts.board_id.clone()),
            opts,
            catalogue: Mutex::new(None),
        })
    }

    /// How many token exchanges this connector made (tests).
    pub fn token_fetches(&self) -> u64 {
        self.tokens.fetch_count()
    }

    /// One authenticated call with a JSON (or no) body.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        idempotent: bool,
    ) -> Result<T, ConnectorError> {
        let url = format!("{}{path}", self.base);
        self.tokens
            .with_token(|token| {
                let (url, method) = (url.clone(), method.clone());
                async move {
                    let resp = self.http.send_bearer(method, &url, &token, query, body, idempotent).await?;
                    wire::parse_body::<T>(&resp.body)
                }
            })
            .await
    }

    async fn catalogue(&self) -> Result<wire::Catalogue, ConnectorError> {
        let mut guard = self.catalogue.lock().await;
        if let Some(c) = guard.as_ref()
            && Utc::now() - c.at < Duration::minutes(self.opts.catalogue_minutes)
        {
            return Ok(c.catalogue.clone());
        }
        let list: Vec<wire::Status> = self.call(Method::GET, wire::STATUSES_PATH, &[], None, true).await?;
        let catalogue = wire::Catalogue::new(list);
        *guard = Some(CachedCatalogue { at: Utc::now(), catalogue: catalogue.clone() });
        Ok(catalogue)
    }

    async fn board_id(&self) -> Result<String, ConnectorError> {
        let mut guard = self.board.lock().await;
        if let Some(b) = guard.as_ref() {
            return Ok(b.clone());
        }
        let boards: Vec<wire::Board> = self.call(Method::GET, wire::BOARDS_PATH, &[], None, true).await?;
        let id = boards
            .iter()
            .find(|b| b.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&self.opts.board_name)))
            .map(|b| b.id.clone())
            .ok_or_else(|| {
                ConnectorError::Config(format!(
                    "options.board_id: no board named '{}'; set options.board_id",
                    truncate(&self.opts.board_name, 60)
                ))
            })?;
        *guard = Some(id.clone());
        Ok(id)
    }

    /// Pages of a board run until `done` says enough or the cursor ends.
    async fn run_board(
        &self,
        mut run: wire::BoardRun,
        mut done: impl FnMut(&[wire::Ticket]) -> bool,
    ) -> Result<Vec<wire::Ticket>, ConnectorError> {
        let path = wire::board_run_path(&self.board_id().await?);
        let mut out = Vec::new();
        for _ in 0..psa_util::MAX_PAGES {
            let body = serde_json::to_value(&run).map_err(|e| ConnectorError::Config(e.to_string()))?;
            let page: wire::BoardPage = self.call(Method::POST, &path, &[], Some(&body), true).await?;
            let next = page.next_cursor(run.page_size, run.last_cursor_id);
            out.extend(page.data);
            if done(&out) {
                break;
            }
            match next {
                Some(c) => run.last_cursor_id = Some(c),
                None => break,
            }
        }
        Ok(out)
    }

    /// Checks the ticket has a requester (else unsupported, nothing written), adds the private
    /// comment, re-reads the ticket and `PUT`s it with status `wanted` (id or name, `options.<setting>`).
    async fn comment_and_set_status(
        &self,
        ticket: &TicketRef,
        note: &NoteRequest,
        wanted: &str,
        setting: &str,
    ) -> Result<(), ConnectorError> {
        parse_id("NinjaOne ticket id", &ticket.id).map_err(ConnectorError::Rejected)?;
        let status = if wanted.trim().bytes().all(|b| b.is_ascii_digit()) {
            wanted.trim().to_string()
        } else {
            self.catalogue().await?.id_by_name(wanted).ok_or_else(|| {
                ConnectorError::Config(format!("options.{setting}: NinjaOne has no status '{}'", truncate(wanted, 60)))
            })?
        };
        let path = wire::ticket_path(&ticket.id);
        let before: serde_json::Value = self.call(Method::GET, &path, &[], None, true).await?;
        if before.get("requesterUid").and_then(serde_json::Value::as_str).is_none() {
            return Err(ConnectorError::Unsupported(format!(
                "NinjaOne ticket {} has no requester, and its update API requires requesterUid",
                ticket.id
            )));
        }
        self.add_note(ticket, note).await?;
        let now: serde_json::Value = self.call(Method::GET, &path, &[], None, true).await?;
        let body = wire::close_update(&now, &status)?;
        let _: serde_json::Value = self.call(Method::PUT, &path, &[], Some(&body), true).await?;
        Ok(())
    }

    async fn status_for_new_ticket(&self, req: &TicketRequest) -> Result<String, ConnectorError> {
        let wanted = req
            .status
            .clone()
            .or_else(|| self.defaults.status.clone())
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| self.opts.new_status.clone());
        if wanted.trim().bytes().all(|b| b.is_ascii_digit()) {
            return Ok(wanted.trim().to_string());
        }
        self.catalogue().await?.id_by_name(&wanted).ok_or_else(|| {
            ConnectorError::Config(format!("defaults.status: NinjaOne has no status '{}'", truncate(&wanted, 60)))
        })
    }

    fn ticket_ref(&self, id: &str, status: Option<String>) -> TicketRef {
        TicketRef {
            url: psa_util::ticket_url(self.opts.ticket_url.as_deref(), id, None),
            number: None,
            remote_status: status,
            id: id.to_string(),
        }
    }
}

/// An optional numeric id of a new ticket (blank = none); `what` names it in the error.
fn optional_id(what: &str, value: Option<&str>) -> Result<Option<i64>, ConnectorError> {
    value.filter(|v| !v.trim().is_empty()).map(|v| parse_id(what, v).map_err(ConnectorError::Config)).transpose()
}

/// What a failed token exchange means for the person fixing it.
fn auth_diagnosis(e: &ConnectorError) -> String {
    let text = e.to_string();
    transport_diagnosis(e).unwrap_or_else(|| match e {
        ConnectorError::Unauthorized(_) if text.contains("invalid_client") => {
            format!("bad credentials: client id / client secret rejected ({text})")
        }
        ConnectorError::Unauthorized(_) => {
            format!("refresh token rejected (expired, revoked or already used): authorize the app again ({text})")
        }
        ConnectorError::Forbidden(_) => format!("missing scope (monitoring management offline_access): {text}"),
        _ => format!("token exchange failed: {text}"),
    })
}

#[async_trait]
impl Connector for NinjaOneConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Ninjaone
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
        for f in ["client_id", "client_secret", fields::REFRESH_TOKEN] {
            if secret.get(f).is_none_or(str::is_empty) {
                return Ok(check.fail(format!("secret '{}' lacks field '{f}'", self.secret_name)));
            }
        }
        check.pass(format!("secret '{}' has client id, client secret and refresh token", self.secret_name));
        // Uses the stored access token while it is valid: a check does not spend the refresh token.
        if let Err(e) = self.tokens.token().await {
            return Ok(check.fail(auth_diagnosis(&e)));
        }
        check.pass(format!("access token available for {}", self.base));
        // One real authenticated read (never from cache), so a revoked grant shows up here.
        match self.call::<Vec<wire::Status>>(Method::GET, wire::STATUSES_PATH, &[], None, true).await {
            Ok(list) => check.pass(format!("read {} ticket statuses", list.len())),
            Err(ConnectorError::Forbidden(m)) => {
                return Ok(check.fail(format!("no ticketing access (scope/role): {m}")));
            }
            Err(e @ ConnectorError::Unauthorized(_)) => return Ok(check.fail(auth_diagnosis(&e))),
            Err(e) => {
                return Ok(
                    check.fail(transport_diagnosis(&e).unwrap_or_else(|| format!("reading statuses failed: {e}")))
                );
            }
        }
        match self.board_id().await {
            Ok(b) => check.pass(format!("status board {b}")),
            Err(e) => return Ok(check.fail(e.to_string())),
        }
        Ok(check.done())
    }

    async fn create_ticket(&self, req: &TicketRequest) -> Result<TicketRef, ConnectorError> {
        let client =
            req.customer_id.as_deref().or(self.catch_all.as_ref().map(|c| c.customer_id.as_str())).ok_or_else(
                || {
                    ConnectorError::Config(
                        "no NinjaOne organization for this task: map its organization or set catch_all".into(),
                    )
                },
            )?;
        let client_id = parse_id("clientId (organization id)", client).map_err(ConnectorError::Config)?;
        let pick =
            |r: &Option<String>, d: &Option<String>| r.clone().or_else(|| d.clone()).filter(|s| !s.trim().is_empty());
        // NinjaOne takes ids only: the technician's app user id and ticket attribute ids.
        let assigned_app_user_id = req
            .assignee
            .as_deref()
            .map(|a| parse_id("assignee (NinjaOne app user id)", a).map_err(ConnectorError::Config))
            .transpose()?;
        let mut attributes = Vec::new();
        for (name, value) in &req.custom_fields {
            let attribute_id =
                parse_id("custom field (NinjaOne ticket attribute id)", name).map_err(ConnectorError::Config)?;
            let value = value.as_str().map_or_else(|| value.to_string(), str::to_string);
            attributes.push(wire::AttributeValue { attribute_id, value });
        }
        let ticket = wire::NewTicket {
            client_id,
            ticket_form_id: self.opts.ticket_form_id,
            subject: req.title.chars().take(200).collect(),
            description: wire::Description { public: false, body: body_with_marker(&req.body, &req.correlation_key) },
            status: self.status_for_new_ticket(req).await?,
            ticket_type: pick(&req.ticket_type, &self.defaults.ticket_type).map(|t| t.to_ascii_uppercase()),
            priority: pick(&req.priority, &self.defaults.priority).map(|p| p.to_ascii_uppercase()),
            requester_uid: req.contact_id.clone().or_else(|| {
                req.customer_id.is_none().then(|| self.catch_all.as_ref().and_then(|c| c.contact_id.clone())).flatten()
            }),
            assigned_app_user_id,
            attributes,
            location_id: optional_id("location (NinjaOne location id)", req.location_id.as_deref())?,
            node_id: optional_id("asset (NinjaOne device id)", req.asset_id.as_deref())?,
        };
        let body = serde_json::to_value(&ticket).map_err(|e| ConnectorError::Config(e.to_string()))?;
        let create = || async {
            let created: wire::Ticket = self.call(Method::POST, wire::CREATE_PATH, &[], Some(&body), false).await?;
            let status = created.status.as_ref().and_then(|s| s.display_name.clone().or(s.name.clone()));
            Ok(self.ticket_ref(&created.id, status))
        };
        create_with_recovery(&self.http, create, || self.find_by_correlation(&req.correlation_key)).await
    }

    async fn find_by_correlation(&self, key: &str) -> Result<Option<TicketRef>, ConnectorError> {
        let run = wire::BoardRun { page_size: 20, search_criteria: Some(marker_token(key)), ..Default::default() };
        let mut found = self.run_board(run, |rows| !rows.is_empty()).await?;
        found.sort_by_key(|t| t.id.parse::<i64>().unwrap_or(i64::MAX));
        // The search is a substring search: confirm the exact marker in the description.
        for t in found {
            let q = [("type", "DESCRIPTION".to_string())];
            let entries: Vec<wire::LogEntry> =
                self.call(Method::GET, &wire::log_entry_path(&t.id), &q, None, true).await?;
            let described = entries
                .iter()
                .filter(|e| e.entry_type.as_deref().is_none_or(|ty| ty.eq_ignore_ascii_case("DESCRIPTION")));
            if described.into_iter().any(|e| [&e.body, &e.html_body].into_iter().flatten().any(|b| has_marker(b, key)))
            {
                return Ok(Some(self.ticket_ref(&t.id, t.status.as_ref().and_then(|s| s.display_name.clone()))));
            }
        }
        Ok(None)
    }

    /// Private comment, then `PUT /v2/ticketing/ticket/{ticketId}` with the fields the spec
    /// requires (`version, clientId, ticketFormId, subject, requesterUid, status`) read back from
    /// the ticket after the comment, and the close status. A ticket without a requester cannot
    /// be updated through the API (the spec requires `requesterUid`): unsupported, note only.
    async fn close_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        self.comment_and_set_status(ticket, note, &self.opts.close_status, "close_status").await
    }

    /// The same update to `options.reopen_status`.
    async fn reopen_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        self.comment_and_set_status(ticket, note, &self.opts.reopen_status, "reopen_status").await
    }

    async fn add_note(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        parse_id("NinjaOne ticket id", &ticket.id).map_err(ConnectorError::Rejected)?;
        let text = body_with_marker(&format!("{}\n\n{}", note.title, note.body), &note.correlation_key);
        let comment = serde_json::to_string(&wire::Comment { body: text, public: false, time_tracked: 0 })
            .map_err(|e| ConnectorError::Config(e.to_string()))?;
        let (content_type, body) =
            psa_util::multipart(&[Part { name: "comment", value: &comment, content_type: Some("application/json") }]);
        let url = format!("{}{}", self.base, wire::comment_path(&ticket.id));
        self.tokens
            .with_token(|token| {
                let (url, content_type, body) = (url.clone(), content_type.clone(), body.clone());
                async move {
                    let resp = self
                        .http
                        .send(
                            |c| {
                                c.post(&url)
                                    .bearer_auth(&token)
                                    .header(reqwest::header::CONTENT_TYPE, &content_type)
                                    .body(body.clone())
                            },
                            false,
                        )
                        .await?;
                    match wire::api_error(&resp.body) {
                        Some(e) => Err(e),
                        None => Ok(()),
                    }
                }
            })
            .await
    }

    async fn statuses(&self, ticket_ids: &[String]) -> Result<Vec<RemoteStatus>, ConnectorError> {
        if ticket_ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: HashSet<&str> = ticket_ids.iter().map(String::as_str).collect();
        let run = wire::BoardRun::for_ids(ticket_ids, self.opts.page_size)?;
        let rows = self
            .run_board(run, |rows| {
                let got: HashSet<&str> = rows.iter().map(|t| t.id.as_str()).filter(|id| wanted.contains(id)).collect();
                got.len() == wanted.len()
            })
            .await?;
        let catalogue = self.catalogue().await?;
        let mut out: HashMap<String, RemoteStatus> = HashMap::new();
        for t in rows.into_iter().filter(|t| wanted.contains(t.id.as_str())) {
            out.entry(t.id.clone()).or_insert_with(|| t.remote_status(&catalogue));
        }
        let mut v: Vec<RemoteStatus> = out.into_values().collect();
        v.sort_by(|a, b| a.ticket_id.cmp(&b.ticket_id));
        Ok(v)
    }

    async fn list_customers(&self) -> Result<Vec<Customer>, ConnectorError> {
        let size = self.opts.page_size;
        let mut out: Vec<Customer> = Vec::new();
        let mut after: Option<i64> = None;
        for _ in 0..psa_util::MAX_PAGES {
            let mut q = vec![("pageSize", size.to_string())];
            if let Some(a) = after {
                q.push(("after", a.to_string()));
            }
            let page: Vec<wire::Organization> =
                self.call(Method::GET, wire::ORGANIZATIONS_PATH, &q, None, true).await?;
            let n = page.len();
            let last = page.iter().map(|o| o.id).max();
            out.extend(page.into_iter().map(Customer::from));
            if (n as u32) < size || last.is_none() || last == after {
                break;
            }
            after = last;
        }
        Ok(out)
    }

    async fn token_state(&self) -> Result<TokenState, ConnectorError> {
        self.tokens.state().await
    }

    async fn refresh_token(&self) -> Result<TokenState, ConnectorError> {
        self.tokens.refresh().await
    }

    /// The first page of `kind` (NinjaOne pages by cursor: see [`Connector::read_records_after`]).
    async fn read_records(
        &self,
        kind: RecordKind,
        _since: Option<chrono::DateTime<Utc>>,
        _page: u32,
    ) -> Result<RecordPage, ConnectorError> {
        self.sync_page(kind, None).await
    }

    /// The page after id `after`; no change filter exists, so `since` is not used.
    async fn read_records_after(
        &self,
        kind: RecordKind,
        _since: Option<chrono::DateTime<Utc>>,
        _page: u32,
        after: Option<&str>,
    ) -> Result<RecordPage, ConnectorError> {
        self.sync_page(kind, after).await
    }
}
