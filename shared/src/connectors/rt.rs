//! Request Tracker 5 over REST2 (`{base_url}/REST/2.0`).
//!
//! Secret fields: `token` (sent as `Authorization: token …`), or `username` + `password`
//! (basic auth). Tokens do not expire; on 401 the secret is re-read once.
//!
//! Options: `queue` (default: `defaults.queue`, else "General"), `correlation_field` (ticket
//! custom field holding the correlation key; without it a `[tb:KEY]` marker is appended to the
//! subject), `customer_field` (custom field for the customer id), `per_page` (1–100, default
//! 100), `rest_path` (default "/REST/2.0"), `http`.
//!
//! Status category (default lifecycle): new/open → Open, stalled → Pending, resolved → Closed
//! (fulfilled), rejected/deleted → Closed (rejected); other (custom lifecycle) names have none.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{Method, RequestBuilder};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::changes::{parse_target_time, sql_time};
use super::{
    ChangedTickets, CheckReport, Connector, ConnectorError, NoteRequest, RemoteStatus, TicketRequest, TokenKind,
    TokenState, allow_options, create_with_recovery,
};
use crate::config::ConnectionConfig;
use crate::domain::{ConnectorKind, MappedStatus, Outcome, TicketRef};
use crate::http::{HttpClient, HttpResponse, Redactor, SecretCache};
use crate::secrets::{Secret, Secrets};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RtOptions {
    queue: Option<String>,
    correlation_field: Option<String>,
    customer_field: Option<String>,
    per_page: Option<usize>,
    rest_path: Option<String>,
    #[allow(dead_code)]
    http: Option<toml::Value>,
    close_status: Option<String>,
}

/// Connector for RT 5.
pub struct RtConnector {
    /// `https://rt.example.com[/rt]` without trailing slash.
    web: String,
    /// `{web}/REST/2.0`.
    api: String,
    queue: String,
    correlation_field: Option<String>,
    customer_field: Option<String>,
    per_page: usize,
    http: HttpClient,
    creds: SecretCache,
    /// Status a cancelled task's ticket is set to (default `rejected`).
    close_status: String,
}

/// The default lifecycle's category of an RT status.
pub fn category(status: &str) -> Option<MappedStatus> {
    match status.to_ascii_lowercase().as_str() {
        "new" | "open" => Some(MappedStatus::Open),
        "stalled" => Some(MappedStatus::Pending),
        "resolved" => Some(MappedStatus::Closed(Outcome::Fulfilled)),
        "rejected" | "deleted" => Some(MappedStatus::Closed(Outcome::Rejected)),
        _ => None,
    }
}

/// A TicketSQL string literal.
fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// One page of a REST2 collection. `pages` and `total` are numbers (RT 5.0.3 writes `0.0` for an
/// empty result) or, from RT 5.0.5 for a user without the global ShowTicket right, `null`; RT
/// 5.0.6+ then still sets `next_page` when more rows follow (`RT::REST2::Resource::Collection`).
#[derive(Deserialize)]
struct Collection {
    #[serde(default)]
    pages: Option<f64>,
    #[serde(default)]
    next_page: Option<String>,
    items: Vec<Value>,
}

impl Collection {
    /// Whether a page after `page` (of `per_page` rows asked) holds more rows. With `pages` known
    /// that decides; without it `next_page` does, and a full page without `next_page` (RT 5.0.5
    /// hides the count and sets no link) is followed once more to be sure.
    fn has_more(&self, page: usize, per_page: usize) -> bool {
        if self.items.is_empty() {
            return false;
        }
        match self.pages {
            Some(pages) => (page as f64) < pages,
            None => self.next_page.is_some() || self.items.len() >= per_page,
        }
    }
}

impl RtConnector {
    /// Builds the connector for connection `name`.
    pub fn new(name: &str, config: &ConnectionConfig, secrets: Arc<dyn Secrets>) -> Result<Self, ConnectorError> {
        allow_options(
            name,
            &config.options,
            &["queue", "correlation_field", "customer_field", "per_page", "rest_path", "http", "close_status"],
        )?;
        let opts = RtOptions::deserialize(toml::Value::Table(config.options.clone()))
            .map_err(|e| ConnectorError::Config(format!("connections.{name}.options: {e}")))?;
        let per_page = opts.per_page.unwrap_or(100);
        if !(1..=100).contains(&per_page) {
            return Err(ConnectorError::Config(format!(
                "connections.{name}.options.per_page: must be between 1 and 100"
            )));
        }
        for (k, v) in [("correlation_field", &opts.correlation_field), ("customer_field", &opts.customer_field)] {
            if v.as_deref().is_some_and(|f| f.is_empty() || f.contains(['{', '}', '\''])) {
                return Err(ConnectorError::Config(format!(
                    "connections.{name}.options.{k}: not a valid custom field name"
                )));
            }
        }
        let redactor = Redactor::new();
        let http = HttpClient::for_connection(name, config, redactor.clone())?;
        let web = config.base_url.trim_end_matches('/').to_string();
        let rest = opts.rest_path.unwrap_or_else(|| "/REST/2.0".into());
        let api = format!("{web}/{}", rest.trim_matches('/'));
        let queue = opts.queue.or_else(|| config.defaults.queue.clone()).unwrap_or_else(|| "General".into());
        Ok(Self {
            web,
            api,
            queue,
            correlation_field: opts.correlation_field,
            customer_field: opts.customer_field,
            per_page,
            http,
            creds: SecretCache::new(secrets, &config.secret, redactor),
            close_status: opts.close_status.unwrap_or_else(|| "rejected".into()),
        })
    }

    /// How to authenticate with `secret`.
    fn auth(&self, secret: &Secret) -> Result<Auth, ConnectorError> {
        if let Some(t) = secret.get("token").filter(|t| !t.is_empty()) {
            return Ok(Auth::Token(t.to_string()));
        }
        match (secret.get("username"), secret.get("password")) {
            (Some(u), Some(p)) if !u.is_empty() => Ok(Auth::Basic(u.to_string(), p.to_string())),
            _ => Err(ConnectorError::Config(format!(
                "secret '{}' needs field 'token' (or 'username' and 'password')",
                self.creds.name()
            ))),
        }
    }

    /// One call to `{api}{path}`; returns the 2xx response.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<HttpResponse, ConnectorError> {
        let url = format!("{}{path}", self.api);
        self.creds
            .with_secret(|secret| {
                let (url, method) = (&url, &method);
                async move {
                    let auth = self.auth(&secret)?;
                    let build = |c: &reqwest::Client| {
                        let r = auth.apply(c.request(method.clone(), url).query(query));
                        match body {
                            Some(b) => r.json(b),
                            None => r,
                        }
                    };
                    self.http.send(build, idempotent).await
                }
            })
            .await
    }

    fn ticket_ref(&self, id: String, status: Option<String>) -> TicketRef {
        TicketRef {
            url: Some(format!("{}/Ticket/Display.html?id={id}", self.web)),
            number: Some(id.clone()),
            remote_status: status,
            id,
        }
    }

    /// All pages of a TicketSQL search.
    async fn search(&self, query: &str, fields: &str) -> Result<Vec<Value>, ConnectorError> {
        self.search_counted(query, fields).await.map(|(items, _)| items)
    }

    /// All pages of a TicketSQL search, with the number of pages requested.
    async fn search_counted(&self, query: &str, fields: &str) -> Result<(Vec<Value>, u32), ConnectorError> {
        let mut out = Vec::new();
        let mut page = 1usize;
        loop {
            let q = [
                ("query", query.to_string()),
                ("fields", fields.to_string()),
                ("page", page.to_string()),
                ("per_page", self.per_page.to_string()),
                ("orderby", "id".to_string()),
                ("order", "ASC".to_string()),
            ];
            let c: Collection = self.call(Method::GET, "/tickets", &q, None, true).await?.json()?;
            let more = c.has_more(page, self.per_page);
            out.extend(c.items);
            // The next page is asked by number, not by following the `next_page` URL: RT builds
            // that from the request it saw, which behind a proxy may name another host or scheme.
            if !more || page >= 1000 {
                return Ok((out, u32::try_from(page).unwrap_or(u32::MAX)));
            }
            page += 1;
        }
    }

    /// `PUT /ticket/{id}` `{"Status"}`. REST2 answers 200 with a list of messages even when it
    /// refuses a change (RT::REST2::Resource::Record::Writable), so the ticket is read back to tell.
    async fn set_status(&self, ticket: &TicketRef, status: &str, setting: &str) -> Result<(), ConnectorError> {
        let path = format!("/ticket/{}", super::encode_segment(&ticket.id));
        let body = json!({ "Status": status });
        let messages: Value = self.call(Method::PUT, &path, &[], Some(&body), true).await?.json()?;
        let now: Value = self.call(Method::GET, &path, &[], None, true).await?.json()?;
        match now.get("Status").and_then(Value::as_str) {
            Some(s) if s.eq_ignore_ascii_case(status) => Ok(()),
            Some(s) => Err(ConnectorError::Rejected(format!(
                "RT kept ticket {} in status '{s}' ({setting} '{status}'): {messages}",
                ticket.id
            ))),
            None => Err(ConnectorError::Malformed(format!("RT ticket {} without 'Status'", ticket.id))),
        }
    }

    fn correlation_query(&self, key: &str) -> String {
        match &self.correlation_field {
            Some(cf) => format!("'CF.{{{cf}}}' = {}", sql_quote(key)),
            None => format!("Subject LIKE {}", sql_quote(&marker(key))),
        }
    }
}

/// The subject marker used when no correlation custom field is configured.
fn marker(key: &str) -> String {
    format!("[tb:{key}]")
}

enum Auth {
    Token(String),
    Basic(String, String),
}

impl Auth {
    fn apply(&self, r: RequestBuilder) -> RequestBuilder {
        match self {
            Self::Token(t) => r.header(reqwest::header::AUTHORIZATION, format!("token {t}")),
            Self::Basic(u, p) => r.basic_auth(u, Some(p)),
        }
    }
}

#[async_trait]
impl Connector for RtConnector {
    fn kind(&self) -> ConnectorKind {
        ConnectorKind::Rt
    }

    fn rate_usage(&self) -> Option<crate::http::RateUsage> {
        Some(self.http.rate_usage())
    }

    fn batch_size(&self) -> usize {
        100
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        let mut steps = Vec::new();
        let v: Value = self
            .call(Method::GET, "/rt", &[], None, true)
            .await
            .map_err(|e| match e {
                ConnectorError::Unauthorized(m) => ConnectorError::Unauthorized(format!(
                    "RT rejected the credentials in secret '{}' ({m}); check the auth token or whether it was revoked",
                    self.creds.name()
                )),
                ConnectorError::NotFound(m) => ConnectorError::NotFound(format!(
                    "no RT REST2 API at {} ({m}); check base_url / options.rest_path",
                    self.api
                )),
                other => other,
            })?
            .json()?;
        steps.push(format!("authenticated to RT {}", v.get("Version").and_then(Value::as_str).unwrap_or("?")));
        let queue_path = format!("/queue/{}", super::encode_segment(&self.queue));
        let queue: Value = self
            .call(Method::GET, &queue_path, &[], None, true)
            .await
            .map_err(|e| match e {
                ConnectorError::NotFound(_) | ConnectorError::Forbidden(_) => ConnectorError::Forbidden(format!(
                    "queue '{}' does not exist or this user cannot see it (options.queue; needs SeeQueue)",
                    self.queue
                )),
                other => other,
            })?
            .json()?;
        steps.push(format!("queue '{}' visible", self.queue));
        // RT drops values of custom fields that do not apply to the queue and matches nothing
        // when a search names one: a missing field would lose the correlation key silently.
        let applied: Vec<&str> = queue
            .get("TicketCustomFields")
            .and_then(Value::as_array)
            .map(|cfs| cfs.iter().filter_map(|cf| cf.get("name").and_then(Value::as_str)).collect())
            .unwrap_or_default();
        for (option, field) in
            [("correlation_field", &self.correlation_field), ("customer_field", &self.customer_field)]
        {
            if let Some(field) = field.as_deref().filter(|f| !applied.iter().any(|a| a.eq_ignore_ascii_case(f))) {
                return Err(ConnectorError::Config(format!(
                    "custom field '{field}' (options.{option}) does not apply to tickets in queue '{}'; create it in \
                     RT (Admin > Custom Fields, applies to Tickets) and apply it to that queue",
                    self.queue
                )));
            }
        }
        self.search(&self.correlation_query("check"), "Status").await?;
        steps.push("correlation search works".to_string());
        Ok(CheckReport { ok: true, steps })
    }

    async fn create_ticket(&self, req: &TicketRequest) -> Result<TicketRef, ConnectorError> {
        let mut body = Map::new();
        body.insert("Queue".into(), json!(self.queue));
        let subject = match &self.correlation_field {
            Some(_) => req.title.clone(),
            None => format!("{} {}", req.title, marker(&req.correlation_key)),
        };
        body.insert("Subject".into(), json!(subject));
        body.insert("Content".into(), json!(req.body));
        body.insert("ContentType".into(), json!("text/plain"));
        if let Some(e) = &req.contact_email {
            body.insert("Requestor".into(), json!(e));
        }
        if let Some(p) = req.priority.as_deref().filter(|p| p.parse::<i64>().is_ok()) {
            body.insert("Priority".into(), json!(p));
        }
        if let Some(s) = &req.status {
            body.insert("Status".into(), json!(s));
        }
        // RT loads the owner by id, name, then e-mail; one it cannot load or who lacks OwnTicket
        // leaves the ticket with Nobody (a non-fatal error; the create still answers 201).
        if let Some(owner) = &req.assignee {
            body.insert("Owner".into(), json!(owner));
        }
        let mut cfs = Map::new();
        // Rule custom fields first; the bridge's own fields win on a name clash.
        for (name, value) in &req.custom_fields {
            let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
            let v = match value {
                Value::Array(items) => json!(items.iter().map(text).collect::<Vec<_>>()),
                other => json!(text(other)),
            };
            cfs.insert(name.clone(), v);
        }
        if let Some(cf) = &self.correlation_field {
            cfs.insert(cf.clone(), json!(req.correlation_key));
        }
        if let (Some(cf), Some(c)) = (&self.customer_field, &req.customer_id) {
            cfs.insert(cf.clone(), json!(c));
        }
        if !cfs.is_empty() {
            body.insert("CustomFields".into(), Value::Object(cfs));
        }
        let body = Value::Object(body);
        create_with_recovery(
            &self.http,
            || async {
                let v: Value = self.call(Method::POST, "/ticket", &[], Some(&body), false).await?.json()?;
                let id = v
                    .get("id")
                    .and_then(id_text)
                    .ok_or_else(|| ConnectorError::Malformed("RT create response without 'id'".into()))?;
                Ok(self.ticket_ref(id, None))
            },
            || self.find_by_correlation(&req.correlation_key),
        )
        .await
    }

    async fn find_by_correlation(&self, key: &str) -> Result<Option<TicketRef>, ConnectorError> {
        let items = self.search(&self.correlation_query(key), "Status").await?;
        let mut found: Vec<(u64, TicketRef)> = items
            .iter()
            .filter_map(|i| {
                let id = i.get("id").and_then(id_text)?;
                let status = i.get("Status").and_then(Value::as_str).map(str::to_string);
                Some((id.parse().unwrap_or(u64::MAX), self.ticket_ref(id, status)))
            })
            .collect();
        found.sort_by_key(|(n, _)| *n);
        Ok(found.into_iter().next().map(|(_, t)| t))
    }

    async fn add_note(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        let body = json!({ "Subject": note.title, "Content": note.body, "ContentType": "text/plain" });
        let path = format!("/ticket/{}/comment", super::encode_segment(&ticket.id));
        self.call(Method::POST, &path, &[], Some(&body), false).await.map(|_| ())
    }

    /// Comment, then `PUT /ticket/{id}` `{"Status": close_status}`, confirmed by reading it back.
    async fn close_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        self.add_note(ticket, note).await?;
        self.set_status(ticket, &self.close_status, "options.close_status").await
    }

    /// `PUT /ticket/{id}` `{"Status": "open"}` (RT's default lifecycle allows resolved/rejected →
    /// open), confirmed by reading it back, then the comment.
    async fn reopen_ticket(&self, ticket: &TicketRef, note: &NoteRequest) -> Result<(), ConnectorError> {
        self.set_status(ticket, "open", "status 'open'").await?;
        self.add_note(ticket, note).await
    }

    async fn statuses(&self, ticket_ids: &[String]) -> Result<Vec<RemoteStatus>, ConnectorError> {
        let ids: Vec<u64> = ticket_ids.iter().filter_map(|i| i.parse().ok()).collect();
        let mut out = Vec::new();
        for chunk in ids.chunks(self.batch_size()) {
            let query = chunk.iter().map(|i| format!("id = {i}")).collect::<Vec<_>>().join(" OR ");
            for item in self.search(&query, "Status").await? {
                let id = item
                    .get("id")
                    .and_then(id_text)
                    .ok_or_else(|| ConnectorError::Malformed("RT item without 'id'".into()))?;
                let name = item
                    .get("Status")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ConnectorError::Malformed(format!("RT ticket {id} without 'Status'")))?
                    .to_string();
                out.push(RemoteStatus { ticket_id: id, category: category(&name), name });
            }
        }
        Ok(out)
    }

    async fn token_state(&self) -> Result<TokenState, ConnectorError> {
        Ok(TokenState { kind: TokenKind::None, expires_at: None })
    }

    async fn refresh_token(&self) -> Result<TokenState, ConnectorError> {
        self.token_state().await
    }

    fn change_filter(&self) -> Option<&'static str> {
        Some("TicketSQL LastUpdated >")
    }

    /// `LastUpdated > 'YYYY-MM-DD HH:MM:SS'` (UTC; RT reads the value in the API user's time zone,
    /// which must be UTC) over every queue (a technician may move a ticket), ordered by id.
    /// `LastUpdated` comes back as `2026-11-30T14:00:05Z`, whole seconds.
    async fn changed_since(&self, since: DateTime<Utc>) -> Result<ChangedTickets, ConnectorError> {
        let query = format!("LastUpdated > {}", sql_quote(&sql_time(since)));
        let (items, requests) = self.search_counted(&query, "Status,LastUpdated").await?;
        let mut out = ChangedTickets { requests, ..ChangedTickets::default() };
        for item in items {
            let id = item
                .get("id")
                .and_then(id_text)
                .ok_or_else(|| ConnectorError::Malformed("RT item without 'id'".into()))?;
            let name = item
                .get("Status")
                .and_then(Value::as_str)
                .ok_or_else(|| ConnectorError::Malformed(format!("RT ticket {id} without 'Status'")))?
                .to_string();
            let updated = item
                .get("LastUpdated")
                .and_then(Value::as_str)
                .ok_or_else(|| ConnectorError::Malformed(format!("RT ticket {id} without 'LastUpdated'")))?;
            let updated = parse_target_time(updated, "RT LastUpdated")?;
            out.latest = out.latest.max(Some(updated));
            out.statuses.push(RemoteStatus { ticket_id: id, category: category(&name), name });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::Collection;

    fn parse(body: &str) -> Collection {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn collection_pages_as_real_rt_writes_them() {
        // RT 5.0.3 (Debian 12), a search with no result: `pages` is the float 0.0.
        let empty = parse(r#"{"per_page":20,"count":0,"pages":0.0,"page":1,"items":[],"total":0}"#);
        assert!(!empty.has_more(1, 20));
        let middle = parse(r#"{"count":2,"per_page":2,"total":5,"items":[{"id":"3"},{"id":"4"}],"pages":3,"page":2}"#);
        assert!(middle.has_more(2, 2));
        assert!(!middle.has_more(3, 2));
    }

    #[test]
    fn null_pages_follow_next_page() {
        // RT >= 5.0.6 for a user without global ShowTicket: no count, `next_page` when more follow.
        let more = parse(
            r#"{"count":1,"per_page":2,"total":null,"pages":null,"page":1,"items":[{"id":"1"}],"next_page":"x?page=2"}"#,
        );
        assert!(more.has_more(1, 2));
        let last = parse(r#"{"count":1,"per_page":2,"total":null,"pages":null,"page":2,"items":[{"id":"3"}]}"#);
        assert!(!last.has_more(2, 2));
        // RT 5.0.5: null counts and never a `next_page`; a full page is followed once more.
        let full =
            parse(r#"{"count":2,"per_page":2,"total":null,"pages":null,"page":1,"items":[{"id":"1"},{"id":"2"}]}"#);
        assert!(full.has_more(1, 2));
    }
}
