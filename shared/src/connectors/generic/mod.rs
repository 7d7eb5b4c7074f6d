//! Generic REST connector: any ticketing API described by request templates, like Saviynt's
//! CreateTicketJSON / TicketStatusJSON.
//!
//! ```toml
//! [connections.desk.options]
//! ticket_id_pointer = "/issue/id"          # JSON pointer (RFC 6901) into the create response
//! ticket_number_pointer = "/issue/key"     # optional
//! status_pointer = "/fields/status/name"   # in the status response, or in each item (batch)
//! items_pointer = "/data/issues"           # list of tickets in batch-status and find responses
//! item_id_pointer = "/id"                  # ticket id inside an item (default "/id")
//! error_pointer = "/errors"                # optional: a 2xx whose body has this is an error
//! batch_size = 50                          # > 1: the status request takes {{ ids }}
//! ticket_url = "https://desk.example.com/browse/{{ number }}"   # optional link
//! [connections.desk.options.create]
//! url = "/api/v2/issues"                   # relative to base_url, or absolute
//! body = '{"fields": {"summary": {{ title }}, "description": {{ body }}, "ext_ref": {{ correlation_key }}}}'
//! headers = { "X-Source" = "ticket-bridge" }
//! [connections.desk.options.status]
//! url = "/api/v2/issues?ids={{ ids | join(',') }}"
//! [connections.desk.options.note]
//! url = "/api/v2/issues/{{ ticket.id }}/comments"
//! body = '{"body": {{ body }}, "internal": true}'
//! [connections.desk.options.find]          # correlation search; strongly recommended
//! url = "/api/v2/issues?ext_ref={{ correlation_key }}"
//! [connections.desk.options.check]         # optional cheap authenticated read
//! url = "/api/v2/myself"
//! [connections.desk.options.close]         # optional: close a cancelled task's ticket
//! method = "PATCH"
//! url = "/api/v2/issues/{{ ticket.id }}"
//! body = '{"status": "Cancelled", "resolution": {{ body }}}'
//! [connections.desk.options.reopen]        # optional: reopen a group's recently closed ticket
//! url = "/api/v2/issues/{{ ticket.id }}/transitions"
//! body = '{"status": "Open", "comment": {{ body }}}'
//! [connections.desk.options.auth]          # none | header | bearer | basic | oauth2_client_credentials
//! type = "oauth2_client_credentials"
//! token_url = "/oauth/token"
//! scope = "issues"
//! ```
//!
//! Template variables: create — the ticket request (`title`, `body`, `correlation_key`,
//! `customer_id`, `contact_id`, `contact_email`, `contract_id`, `ticket_type`, `source`,
//! `status`, `queue`, `priority`, `issue_type`, `sub_issue_type`, `fields` = task fields,
//! `assignee`, `responsible`, `custom_fields` = a rule's custom fields by name);
//! find — `correlation_key`; note, close and reopen — `ticket` {id, number, url}, `title`, `body`; status — `ids`
//! (batch), `id` / `ticket.id` (single); everywhere — `connection`, `base_url`. Escaping rules:
//! see [`spec`]. Secrets are never template variables; `auth` reads them from the secret.
//!
//! Status names are mapped by the connection's `status_map` (no category is reported).

mod spec;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::RequestBuilder;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    CheckReport, Connector, ConnectorError, NoteRequest, RemoteStatus, TicketRequest, TokenKind, TokenState,
    create_with_recovery,
};
use crate::config::ConnectionConfig;
use crate::domain::{ConnectorKind, TicketRef};
use crate::http::{
    HttpClient, HttpResponse, Redactor, SecretCache, TokenCache, TokenGrant, TokenSource, pointer_str, require_str,
};
use crate::secrets::{Secret, Secrets};
use spec::{AuthSpec, RequestSpec, Spec, Templates};

/// Credentials applied to one request.
enum Cred {
    None,
    Header(String, String),
    Basic(String, String),
}

impl Cred {
    fn apply(&self, r: RequestBuilder) -> RequestBuilder {
        match self {
            Self::None => r,
            Self::Header(n, v) => r.header(n.as_str(), v.as_str()),
            Self::Basic(u, p) => r.basic_auth(u, Some(p)),
        }
    }
}

enum Auth {
    None,
    Static(SecretCache),
    Oauth(TokenCache),
}

/// Connector for any REST ticketing API configured by templates.
pub struct GenericConnector {
    name: String,
    base: String,
    spec: Spec,
    templates: Templates,
    http: HttpClient,
    auth: Auth,
}

struct ClientCredentials {
    http: HttpClient,
    token_url: String,
    scope: Option<String>,
    id_field: String,
    secret_field: String,
    basic_auth: bool,
    secret_name: String,
}

#[derive(Deserialize)]
struct OAuthToken {
    access_token: String,
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

#[async_trait]
impl TokenSource for ClientCredentials {
    async fn fetch(&self, secret: &Secret) -> Result<TokenGrant, ConnectorError> {
        let field = |f: &str| {
            secret.require(&self.secret_name, f).map(str::to_string).map_err(|e| ConnectorError::Config(e.to_string()))
        };
        let (id, sec) = (field(&self.id_field)?, field(&self.secret_field)?);
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(s) = &self.scope {
            form.push(("scope", s));
        }
        if !self.basic_auth {
            form.push(("client_id", &id));
            form.push(("client_secret", &sec));
        }
        let resp = self
            .http
            .send_any(
                |c| {
                    let r = c.post(&self.token_url).form(&form);
                    if self.basic_auth { r.basic_auth(&id, Some(&sec)) } else { r }
                },
                true,
            )
            .await?;
        if !resp.status.is_success() {
            let code = resp.json::<OAuthError>().map(|e| e.error).unwrap_or_default();
            let msg =
                format!("token endpoint refused the client credentials ({code}) in secret '{}'", self.secret_name);
            return Err(match code.as_str() {
                "invalid_client" | "unauthorized_client" | "invalid_grant" => ConnectorError::Unauthorized(msg),
                "invalid_scope" => ConnectorError::Forbidden(format!(
                    "token endpoint refused scope {:?} (options.auth.scope)",
                    self.scope
                )),
                _ => resp.error(),
            });
        }
        let t: OAuthToken = resp.json()?;
        Ok(TokenGrant {
            access_token: t.access_token,
            expires_at: t.expires_in.map(|s| Utc::now() + chrono::Duration::seconds(s)),
            ..TokenGrant::default()
        })
    }
}

fn join(base: &str, url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") { url.to_string() } else { format!("{base}{url}") }
}

impl GenericConnector {
    /// Builds the connector for connection `name`, validating its options.
    pub fn new(name: &str, config: &ConnectionConfig, secrets: Arc<dyn Secrets>) -> Result<Self, ConnectorError> {
        let (spec, templates) = spec::parse(name, &config.options)?;
        let redactor = Redactor::new();
        let http = HttpClient::for_connection(name, config, redactor.clone())?;
        let base = config.base_url.trim_end_matches('/').to_string();
        let auth = match &spec.auth {
            AuthSpec::None => Auth::None,
            AuthSpec::Oauth2ClientCredentials {
                token_url,
                scope,
                client_id_field,
                client_secret_field,
                basic_auth,
            } => {
                let source = ClientCredentials {
                    http: http.clone(),
                    token_url: join(&base, token_url),
                    scope: scope.clone(),
                    id_field: client_id_field.clone(),
                    secret_field: client_secret_field.clone(),
                    basic_auth: *basic_auth,
                    secret_name: config.secret.clone(),
                };
                Auth::Oauth(TokenCache::new(secrets, &config.secret, Arc::new(source), redactor, TokenKind::Renewable))
            }
            AuthSpec::Header { name: h, .. } => {
                HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    ConnectorError::Config(format!("connections.{name}.options.auth.name: not a header name"))
                })?;
                Auth::Static(SecretCache::new(secrets, &config.secret, redactor))
            }
            AuthSpec::Bearer { .. } | AuthSpec::Basic { .. } => {
                Auth::Static(SecretCache::new(secrets, &config.secret, redactor))
            }
        };
        Ok(Self { name: name.to_string(), base, spec, templates, http, auth })
    }

    fn static_cred(&self, cache: &SecretCache, secret: &Secret) -> Result<Cred, ConnectorError> {
        Ok(match &self.spec.auth {
            AuthSpec::Header { name, field, prefix } => {
                Cred::Header(name.clone(), format!("{prefix}{}", cache.field(secret, field)?))
            }
            AuthSpec::Bearer { field } => {
                Cred::Header("authorization".into(), format!("Bearer {}", cache.field(secret, field)?))
            }
            AuthSpec::Basic { username_field, password_field } => Cred::Basic(
                cache.field(secret, username_field)?.to_string(),
                cache.field(secret, password_field)?.to_string(),
            ),
            AuthSpec::None | AuthSpec::Oauth2ClientCredentials { .. } => Cred::None,
        })
    }

    /// Runs `op` with credentials; a rejection triggers one re-authentication (OAuth) or one
    /// re-read of the secret (static credentials).
    async fn with_cred<T, F, Fut>(&self, op: F) -> Result<T, ConnectorError>
    where
        F: Fn(Cred) -> Fut,
        Fut: std::future::Future<Output = Result<T, ConnectorError>>,
    {
        match &self.auth {
            Auth::None => op(Cred::None).await,
            Auth::Oauth(tokens) => {
                tokens.with_token(|t| op(Cred::Header("authorization".into(), format!("Bearer {t}")))).await
            }
            Auth::Static(cache) => {
                let op = &op;
                cache
                    .with_secret(|secret| async move {
                        let cred = self.static_cred(cache, &secret)?;
                        op(cred).await
                    })
                    .await
            }
        }
    }

    fn context(&self, mut v: Value) -> Value {
        if let Value::Object(m) = &mut v {
            m.insert("connection".into(), json!(self.name));
            m.insert("base_url".into(), json!(self.base));
        }
        v
    }

    fn render(&self, template: &str, option: &str, ctx: &Value) -> Result<String, ConnectorError> {
        self.templates
            .render(template, ctx)
            .map_err(|e| ConnectorError::Rejected(format!("connections.{}.options.{option}: {e}", self.name)))
    }

    /// Renders and sends one configured request; returns the 2xx response.
    async fn send(&self, req: &RequestSpec, ctx: &Value, idempotent: bool) -> Result<HttpResponse, ConnectorError> {
        let s = req.section;
        let url = join(&self.base, &self.render(&format!("url:{s}"), &format!("{s}.url"), ctx)?);
        let mut headers = Vec::new();
        for h in &req.headers {
            let v = self.render(&format!("text:{s}:{h}"), &format!("{s}.headers.{h}"), ctx)?;
            if v.contains(['\r', '\n']) {
                return Err(ConnectorError::Rejected(format!(
                    "header '{h}' of options.{s} would contain a line break"
                )));
            }
            let value = HeaderValue::from_str(&v).map_err(|_| {
                ConnectorError::Rejected(format!("header '{h}' of options.{s} is not a valid header value"))
            })?;
            headers.push((h.clone(), value));
        }
        let body = match req.has_body {
            false => None,
            true => {
                let b = self.render(&format!("json:{s}"), &format!("{s}.body"), ctx)?;
                serde_json::from_str::<Value>(&b).map_err(|e| {
                    ConnectorError::Rejected(format!(
                        "options.{s}.body rendered invalid JSON ({})",
                        crate::http::describe_json_error(&e)
                    ))
                })?;
                Some(b)
            }
        };
        self.with_cred(|cred| {
            let (url, headers, body) = (&url, &headers, &body);
            async move {
                let build = |c: &reqwest::Client| {
                    let mut r = cred.apply(c.request(req.method.clone(), url.as_str()));
                    for (n, v) in headers {
                        r = r.header(n.as_str(), v.clone());
                    }
                    match body {
                        Some(b) => r.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.clone()),
                        None => r.header(reqwest::header::ACCEPT, "application/json"),
                    }
                };
                self.http.send(build, idempotent).await
            }
        })
        .await
    }

    /// The response JSON (empty body = null), rejecting bodies that carry `error_pointer`.
    fn body(&self, resp: &HttpResponse) -> Result<Value, ConnectorError> {
        let v: Value = if resp.body.iter().all(u8::is_ascii_whitespace) { Value::Null } else { resp.json()? };
        if let Some(p) = &self.spec.error_pointer {
            let failed = match v.pointer(p) {
                None | Some(Value::Null) | Some(Value::Bool(false)) => false,
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::Object(o)) => !o.is_empty(),
                Some(Value::String(s)) => !s.is_empty(),
                Some(_) => true,
            };
            if failed {
                return Err(ConnectorError::Server(format!(
                    "{}: target reported an error: {}",
                    resp.request,
                    resp.snippet()
                )));
            }
        }
        Ok(v)
    }

    fn items<'a>(&self, v: &'a Value, what: &str) -> Result<&'a Vec<Value>, ConnectorError> {
        let p = self.spec.items_pointer.as_deref().unwrap_or("");
        v.pointer(p)
            .and_then(Value::as_array)
            .ok_or_else(|| ConnectorError::Malformed(format!("{what}: no array at items_pointer '{p}'")))
    }

    fn ticket_url(&self, id: &str, number: Option<&str>) -> Option<String> {
        if !self.spec.has_ticket_url {
            return None;
        }
        let ctx = self.context(json!({"id": id, "number": number.unwrap_or(id)}));
        self.templates.render("url:ticket_url", &ctx).ok()
    }

    async fn create_once(&self, ctx: &Value) -> Result<TicketRef, ConnectorError> {
        let resp = self.send(&self.spec.create, ctx, false).await?;
        let v = self.body(&resp)?;
        let id = require_str(&v, &self.spec.ticket_id_pointer, "create response (ticket_id_pointer)")?;
        let number = self.spec.ticket_number_pointer.as_deref().and_then(|p| pointer_str(&v, p));
        Ok(TicketRef { url: self.ticket_url(&id, number.as_deref()), number, remote_status: None, id })
    }
}

#[async_trait]
impl Connector for GenericConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Generic
    }

    fn rate_usage(&self) -> Option<crate::http::RateUsage> {
        Some(self.http.rate_usage())
    }

    fn batch_size(&self) -> usize {
        self.spec.batch_size
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        let mut steps = Vec::new();
        if let Auth::Oauth(tokens) = &self.auth {
            tokens.token().await?;
            steps.push("obtained an access token (client credentials)".to_string());
        }
        match &self.spec.check {
            Some(req) => {
                let resp = self.send(req, &self.context(json!({})), true).await?;
                self.body(&resp)?;
                steps.push(format!("{} succeeded", resp.request));
            }
            None => steps.push("no options.check request configured: credentials were not verified".to_string()),
        }
        Ok(CheckReport { ok: true, steps })
    }

    async fn create_ticket(&self, req: &TicketRequest) -> Result<TicketRef, ConnectorError> {
        let ctx = self.context(serde_json::to_value(req).map_err(|e| ConnectorError::Rejected(e.to_string()))?);
        if self.spec.find.is_none() {
            return self.create_once(&ctx).await;
        }
        create_with_recovery(&self.http, || self.create_once(&ctx), || self.find_by_correlation(&req.correlation_key))
            .await
    }

    async fn find_by_correlation(&self, key: &str) -> Result<Option<TicketRef>, ConnectorError> {
        let Some(find) = &self.spec.find else { return Ok(None) };
        let resp = self.send(find, &self.context(json!({"correlation_key": key})), true).await?;
        let v = self.body(&resp)?;
        let first = self.items(&v, "find response")?.iter().find_map(|item| {
            let id = pointer_str(item, &self.spec.item_id_pointer)?;
            let number = self.spec.item_number_pointer.as_deref().and_then(|p| pointer_str(item, p));
            Some(TicketRef {
                url: self.ticket_url(&id, number.as_deref()),
                remote_status: pointer_str(item, &self.spec.status_pointer),
                number,
                id,
            })
        });
        Ok(first)
    }

    async fn add_note(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        let Some(req) = &self.spec.note else {
            return Err(ConnectorError::Config(format!(
                "connections.{}.options.note: not configured (needed to add grouped alerts as notes)",
                self.name
            )));
        };
        let ctx = self.context(json!({
            "ticket": ticket, "title": note.title, "body": note.body, "correlation_key": note.correlation_key,
        }));
        let resp = self.send(req, &ctx, false).await?;
        self.body(&resp).map(|_| ())
    }

    /// The `close` request, which carries the note (`title`, `body`) itself; without one,
    /// unsupported (the engine then adds the note through `note`).
    async fn close_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        let Some(req) = &self.spec.close else {
            return Err(ConnectorError::Unsupported(format!(
                "connections.{}.options.close is not configured",
                self.name
            )));
        };
        let ctx = self.context(json!({
            "ticket": ticket, "title": note.title, "body": note.body, "correlation_key": note.correlation_key,
        }));
        let resp = self.send(req, &ctx, true).await?;
        self.body(&resp).map(|_| ())
    }

    /// The `reopen` request (carrying the note); without one, unsupported (a new ticket opens).
    async fn reopen_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        let Some(req) = &self.spec.reopen else {
            return Err(ConnectorError::Unsupported(format!(
                "connections.{}.options.reopen is not configured",
                self.name
            )));
        };
        let ctx = self.context(json!({
            "ticket": ticket, "title": note.title, "body": note.body, "correlation_key": note.correlation_key,
        }));
        let resp = self.send(req, &ctx, true).await?;
        self.body(&resp).map(|_| ())
    }

    async fn statuses(&self, ticket_ids: &[String]) -> Result<Vec<RemoteStatus>, ConnectorError> {
        let mut out = Vec::new();
        if self.spec.batch_size == 1 {
            for id in ticket_ids {
                let ctx = self.context(json!({"id": id, "ids": [id], "ticket": {"id": id}}));
                let resp = match self.send(&self.spec.status, &ctx, true).await {
                    Err(ConnectorError::NotFound(_)) => continue,
                    other => other?,
                };
                let v = self.body(&resp)?;
                let name = require_str(&v, &self.spec.status_pointer, "status response (status_pointer)")?;
                out.push(RemoteStatus { ticket_id: id.clone(), name, category: None });
            }
            return Ok(out);
        }
        for chunk in ticket_ids.chunks(self.spec.batch_size) {
            let ctx = self.context(json!({"ids": chunk, "id": chunk.first(), "ticket": {"id": chunk.first()}}));
            let resp = self.send(&self.spec.status, &ctx, true).await?;
            let v = self.body(&resp)?;
            for item in self.items(&v, "status response")? {
                let Some(id) = pointer_str(item, &self.spec.item_id_pointer) else {
                    return Err(ConnectorError::Malformed(format!(
                        "status item without id at '{}'",
                        self.spec.item_id_pointer
                    )));
                };
                if !chunk.contains(&id) {
                    continue;
                }
                let name = require_str(item, &self.spec.status_pointer, "status item (status_pointer)")?;
                out.push(RemoteStatus { ticket_id: id, name, category: None });
            }
        }
        Ok(out)
    }

    async fn token_state(&self) -> Result<TokenState, ConnectorError> {
        match &self.auth {
            Auth::Oauth(t) => t.state().await,
            _ => Ok(TokenState { kind: TokenKind::None, expires_at: None }),
        }
    }

    async fn refresh_token(&self) -> Result<TokenState, ConnectorError> {
        match &self.auth {
            Auth::Oauth(t) => t.refresh().await,
            _ => self.token_state().await,
        }
    }
}
