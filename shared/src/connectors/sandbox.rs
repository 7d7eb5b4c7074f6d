//! The built-in sandbox desk (`sandbox::desk`): API key → bearer token, tickets with a stable
//! status category, batch status by ids with paging.
//!
//! Secret fields: `api_key` (plus the cached `access_token` / `access_token_expires_at`).
//! Options: only `[options.http]`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    CheckReport, Connector, ConnectorError, Contact, Customer, NoteRequest, RemoteStatus, TicketRequest, TokenKind,
    TokenState, allow_options, create_with_recovery, encode_segment,
};
use crate::config::ConnectionConfig;
use crate::domain::{ConnectorKind, MappedStatus, Outcome, TicketRef};
use crate::http::{HttpClient, HttpResponse, Redactor, TokenCache, TokenGrant, TokenSource};
use crate::secrets::{Secret, Secrets};

/// Largest page the desk serves.
const PER_PAGE: usize = 25;

/// Connector for the sandbox desk.
pub struct SandboxConnector {
    base: String,
    secret: String,
    http: HttpClient,
    tokens: TokenCache,
}

#[derive(Deserialize)]
struct DeskError {
    error: String,
    #[serde(default)]
    message: String,
}

/// Maps the desk's `{"error", "message"}` bodies to precise errors.
fn desk_error(resp: &HttpResponse, secret: &str) -> ConnectorError {
    let Ok(e) = resp.json::<DeskError>() else { return resp.error() };
    let what = format!("{}: {} ({})", resp.request, e.error, e.message);
    match (resp.status.as_u16(), e.error.as_str()) {
        (401, "expired_api_key") => ConnectorError::TokenExpired(format!(
            "{what}; issue a new key and update field 'api_key' of secret '{secret}'"
        )),
        (401, "token_expired") => ConnectorError::TokenExpired(what),
        (401, "invalid_api_key") => {
            ConnectorError::Unauthorized(format!("{what}; check field 'api_key' of secret '{secret}'"))
        }
        (401, _) => ConnectorError::Unauthorized(what),
        (403, _) => ConnectorError::Forbidden(what),
        (404, _) => ConnectorError::NotFound(what),
        (s, _) if (200..300).contains(&s) => {
            ConnectorError::Server(format!("desk reported an error on HTTP {s}: {what}"))
        }
        _ => resp.error(),
    }
}

/// The JSON of a 2xx response, rejecting error bodies the desk may send with 200.
fn ok_json(resp: HttpResponse, secret: &str) -> Result<Value, ConnectorError> {
    if !resp.status.is_success() {
        return Err(desk_error(&resp, secret));
    }
    let v: Value = resp.json()?;
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return Err(desk_error(&resp, secret));
    }
    Ok(v)
}

struct Login {
    http: HttpClient,
    url: String,
    secret: String,
}

#[derive(Deserialize)]
struct TokenResp {
    access_token: String,
    expires_in: Option<i64>,
}

#[async_trait]
impl TokenSource for Login {
    async fn fetch(&self, secret: &Secret) -> Result<TokenGrant, ConnectorError> {
        let key = secret.require(&self.secret, "api_key").map_err(|e| ConnectorError::Config(e.to_string()))?;
        let body = json!({ "api_key": key });
        let resp = self.http.send_any(|c| c.post(&self.url).json(&body), true).await?;
        let v = ok_json(resp, &self.secret)?;
        let t: TokenResp = serde_json::from_value(v).map_err(|e| {
            ConnectorError::Malformed(format!("token response: {}", crate::http::describe_json_error(&e)))
        })?;
        Ok(TokenGrant {
            access_token: t.access_token,
            expires_at: t.expires_in.map(|s| Utc::now() + chrono::Duration::seconds(s)),
            ..TokenGrant::default()
        })
    }
}

fn category(c: &str) -> Option<MappedStatus> {
    match c {
        "open" => Some(MappedStatus::Open),
        "pending" => Some(MappedStatus::Pending),
        "done" => Some(MappedStatus::Closed(Outcome::Fulfilled)),
        "rejected" => Some(MappedStatus::Closed(Outcome::Rejected)),
        _ => None,
    }
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

impl SandboxConnector {
    /// Builds the connector for connection `name`.
    pub fn new(name: &str, config: &ConnectionConfig, secrets: Arc<dyn Secrets>) -> Result<Self, ConnectorError> {
        allow_options(name, &config.options, &["http"])?;
        let redactor = Redactor::new();
        let http = HttpClient::for_connection(name, config, redactor.clone())?;
        let base = config.base_url.trim_end_matches('/').to_string();
        let login =
            Login { http: http.clone(), url: format!("{base}/api/v1/auth/token"), secret: config.secret.clone() };
        let tokens = TokenCache::new(secrets, &config.secret, Arc::new(login), redactor, TokenKind::Renewable);
        Ok(Self { base, secret: config.secret.clone(), http, tokens })
    }

    /// One authenticated call; returns the response JSON.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<Value, ConnectorError> {
        let url = format!("{}{path}", self.base);
        self.tokens
            .with_token(|token| {
                let (url, method) = (&url, &method);
                async move {
                    let resp = self
                        .http
                        .send_any(
                            |c| {
                                let r = c.request(method.clone(), url).bearer_auth(&token).query(query);
                                match body {
                                    Some(b) => r.json(b),
                                    None => r,
                                }
                            },
                            idempotent,
                        )
                        .await?;
                    ok_json(resp, &self.secret)
                }
            })
            .await
    }

    fn ticket_ref(&self, v: &Value) -> Result<TicketRef, ConnectorError> {
        let id =
            v.get("id").and_then(id_text).ok_or_else(|| ConnectorError::Malformed("ticket without 'id'".into()))?;
        Ok(TicketRef {
            url: Some(format!("{}/_sim/tickets/{id}", self.base)),
            number: v.get("number").and_then(id_text),
            remote_status: v.get("status").and_then(Value::as_str).map(str::to_string),
            id,
        })
    }

    fn items(v: &Value) -> Result<&Vec<Value>, ConnectorError> {
        v.get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| ConnectorError::Malformed("list response without 'items'".into()))
    }

    /// All pages of a list call.
    async fn list_all(&self, path: &str, query: Vec<(&str, String)>) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        let mut page = 1usize;
        loop {
            let mut q = query.clone();
            q.push(("page", page.to_string()));
            q.push(("per_page", PER_PAGE.to_string()));
            let v = self.call(Method::GET, path, &q, None, true).await?;
            out.extend(Self::items(&v)?.iter().cloned());
            match v.get("next_page").and_then(Value::as_u64) {
                Some(n) if n as usize > page && page < 10_000 => page = n as usize,
                _ => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl Connector for SandboxConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Sandbox
    }

    fn rate_usage(&self) -> Option<crate::http::RateUsage> {
        Some(self.http.rate_usage())
    }

    fn batch_size(&self) -> usize {
        100
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        let me = self.call(Method::GET, "/api/v1/me", &[], None, true).await?;
        let scopes: Vec<&str> = me
            .get("scopes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let key = me.get("key_id").and_then(Value::as_str).unwrap_or("?");
        for needed in ["tickets:read", "tickets:write"] {
            if !scopes.contains(&needed) {
                return Err(ConnectorError::Forbidden(format!(
                    "API key '{key}' lacks scope {needed} (has: {})",
                    scopes.join(", ")
                )));
            }
        }
        Ok(CheckReport {
            ok: true,
            steps: vec![
                format!("reached {}", self.base),
                format!("authenticated with API key '{key}'"),
                format!("scopes present: {}", scopes.join(", ")),
            ],
        })
    }

    async fn create_ticket(&self, req: &TicketRequest) -> Result<TicketRef, ConnectorError> {
        let mut body = json!({
            "title": req.title,
            "body": req.body,
            "correlation_key": req.correlation_key,
            "customer_id": req.customer_id,
            "contact_id": req.contact_id,
            "contact_email": req.contact_email,
            "priority": req.priority,
            "queue": req.queue,
            "type": req.ticket_type,
            "status": req.status,
        });
        if let Some(o) = body.as_object_mut() {
            if let Some(a) = &req.assignee {
                o.insert("assignee".into(), json!(a));
            }
            if !req.custom_fields.is_empty() {
                o.insert("custom_fields".into(), json!(req.custom_fields));
            }
        }
        create_with_recovery(
            &self.http,
            || async {
                let v = self.call(Method::POST, "/api/v1/tickets", &[], Some(&body), false).await?;
                self.ticket_ref(&v)
            },
            || self.find_by_correlation(&req.correlation_key),
        )
        .await
    }

    async fn find_by_correlation(&self, key: &str) -> Result<Option<TicketRef>, ConnectorError> {
        let v = self.call(Method::GET, "/api/v1/tickets", &[("correlation_key", key.to_string())], None, true).await?;
        let mut found: Vec<TicketRef> =
            Self::items(&v)?.iter().map(|t| self.ticket_ref(t)).collect::<Result<_, _>>()?;
        found.sort_by_key(|t| t.id.parse::<u64>().unwrap_or(u64::MAX));
        Ok(found.into_iter().next())
    }

    async fn add_note(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        let body = json!({ "title": note.title, "body": note.body, "internal": true });
        let path = format!("/api/v1/tickets/{}/notes", encode_segment(&ticket.id));
        self.call(Method::POST, &path, &[], Some(&body), false).await.map(|_| ())
    }

    /// Note, then `PATCH /api/v1/tickets/{id}` to status `Rejected` (category `rejected`).
    async fn close_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        self.add_note(ticket, note).await?;
        let path = format!("/api/v1/tickets/{}", encode_segment(&ticket.id));
        self.call(Method::PATCH, &path, &[], Some(&json!({"status": "Rejected"})), true).await.map(|_| ())
    }

    /// `PATCH /api/v1/tickets/{id}` to status `In Progress`, then the note.
    async fn reopen_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        let path = format!("/api/v1/tickets/{}", encode_segment(&ticket.id));
        self.call(Method::PATCH, &path, &[], Some(&json!({"status": "In Progress"})), true).await?;
        self.add_note(ticket, note).await
    }

    async fn statuses(&self, ticket_ids: &[String]) -> Result<Vec<RemoteStatus>, ConnectorError> {
        // The desk's ids are numbers; anything else cannot exist there.
        let ids: Vec<&String> = ticket_ids.iter().filter(|i| i.parse::<u64>().is_ok()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = ids.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
        let items = self.list_all("/api/v1/tickets", vec![("ids", list)]).await?;
        items
            .iter()
            .map(|t| {
                let ticket_id = t
                    .get("id")
                    .and_then(id_text)
                    .ok_or_else(|| ConnectorError::Malformed("ticket without 'id'".into()))?;
                let name = t.get("status").and_then(Value::as_str).unwrap_or_default().to_string();
                Ok(RemoteStatus {
                    ticket_id,
                    name,
                    category: t.get("category").and_then(Value::as_str).and_then(category),
                })
            })
            .collect()
    }

    async fn find_contact(&self, customer_id: Option<&str>, email: &str) -> Result<Option<String>, ConnectorError> {
        let mut q = vec![("email", email.to_string())];
        if let Some(c) = customer_id {
            q.push(("customer_id", c.to_string()));
        }
        let v = self.call(Method::GET, "/api/v1/contacts", &q, None, true).await?;
        Ok(Self::items(&v)?.first().and_then(|c| c.get("id")).and_then(id_text))
    }

    async fn list_customers(&self) -> Result<Vec<Customer>, ConnectorError> {
        let items = self.list_all("/api/v1/customers", Vec::new()).await?;
        Ok(items
            .iter()
            .filter_map(|c| {
                Some(Customer { id: c.get("id").and_then(id_text)?, name: c.get("name")?.as_str()?.to_string() })
            })
            .collect())
    }

    async fn create_customer(&self, name: &str) -> Result<Customer, ConnectorError> {
        let v = self.call(Method::POST, "/api/v1/customers", &[], Some(&json!({ "name": name.trim() })), false).await?;
        let id =
            v.get("id").and_then(id_text).ok_or_else(|| ConnectorError::Malformed("customer without 'id'".into()))?;
        let name = v.get("name").and_then(Value::as_str).unwrap_or(name).to_string();
        Ok(Customer { id, name })
    }

    async fn list_contacts(&self, customer_id: &str) -> Result<Vec<Contact>, ConnectorError> {
        let v =
            self.call(Method::GET, "/api/v1/contacts", &[("customer_id", customer_id.to_string())], None, true).await?;
        Ok(Self::items(&v)?
            .iter()
            .filter_map(|c| {
                Some(Contact {
                    id: c.get("id").and_then(id_text)?,
                    name: c.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                    email: c.get("email").and_then(Value::as_str).filter(|e| !e.is_empty()).map(str::to_string),
                    customer_id: c.get("customer_id").and_then(id_text),
                })
            })
            .collect())
    }

    async fn create_contact(
        &self,
        customer_id: &str,
        name: &str,
        email: Option<&str>,
    ) -> Result<String, ConnectorError> {
        let body = json!({ "customer_id": customer_id, "name": name.trim(), "email": email.map(str::trim) });
        let v = self.call(Method::POST, "/api/v1/contacts", &[], Some(&body), false).await?;
        v.get("id").and_then(id_text).ok_or_else(|| ConnectorError::Malformed("contact without 'id'".into()))
    }

    async fn token_state(&self) -> Result<TokenState, ConnectorError> {
        self.tokens.state().await
    }

    async fn refresh_token(&self) -> Result<TokenState, ConnectorError> {
        self.tokens.refresh().await
    }
}
