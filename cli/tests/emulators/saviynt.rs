//! Saviynt EIC's REST connector as its WSRETRY job uses a service-desk connection: the
//! ConnectionJSON's static bearer token, a CreateTicketJSON call whose `httpParams` has `${…}`
//! placeholders filled from the Saviynt task (unguarded: an attribute without a value becomes an
//! empty string), `ticketidPath` read from the create response and stored as the task's ticket id,
//! then TicketStatusJSON calls with `${ticketID}` whose `ticketStatusPath` value is compared with
//! `ticketStatusValue` (task completed) and `disContinueStatusValue` (task discontinued); anything
//! else is polled again on the next run. A status listed in the connection's
//! `retryFailureStatusCode` is retried up to `maxRefreshTryCount` times.
//!
//! Sources: saviynt/saviynt-connectors `<App>/src/Connection_*.json` (OTRS, ServiceDesk Plus,
//! Intercom, Zoho Desk, NinjaOne ticket JSONs) and saviynt/developer-portal
//! `docs/connectors/rest-connector/concepts/connection-json.mdx`. Only plain `${a.b}` placeholders
//! are evaluated: a recipe that needs Groovy makes the emulator fail rather than guess.

use serde_json::Value;
use std::collections::BTreeMap;

use super::{Transcript, as_text, localize, lookup};

/// Saviynt task states the WSRETRY job moves a task through (codes as on Saviynt's forum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// 1: waiting for its ticket (also after a failed create call: the next run tries again).
    New,
    /// 2: ticket created; its status is read on each run.
    InProgress,
    /// 3: the ticket reached a `ticketStatusValue`.
    Complete,
    /// 4: the ticket reached a `disContinueStatusValue`.
    Discontinue,
}

/// One Saviynt task: the attribute values its placeholders resolve to, and what WSRETRY stored.
#[derive(Debug, Clone)]
pub struct SaviyntTask {
    pub attributes: BTreeMap<String, String>,
    pub ticket_id: Option<String>,
    pub status: TaskStatus,
    pub last_error: Option<String>,
    /// The last `ticketStatusPath` value read.
    pub last_ticket_status: Option<String>,
}

impl SaviyntTask {
    pub fn new(attributes: &[(&str, &str)]) -> Self {
        Self {
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ticket_id: None,
            status: TaskStatus::New,
            last_error: None,
            last_ticket_status: None,
        }
    }
}

/// A service-desk connection: ConnectionJSON, one CreateTicketJSON, TicketStatusJSON.
pub struct Saviynt {
    connection: Value,
    create: Value,
    status: Value,
    http: reqwest::Client,
    pub transcript: Transcript,
}

impl Saviynt {
    /// Loads the three recipe files (relative to `docs/integrations/`) with the user's URL and key.
    pub fn load(connection: &str, create: &str, status: &str, base: &str, key: &str) -> Self {
        let parse = |rel: &str| -> Value {
            let text = super::read_recipe(rel);
            serde_json::from_str(&localize(&text, base, key)).unwrap_or_else(|e| panic!("{rel}: {e}"))
        };
        Self {
            connection: parse(connection),
            create: parse(create),
            status: parse(status),
            http: reqwest::Client::new(),
            transcript: Transcript::default(),
        }
    }

    /// One WSRETRY run over `task`: creates its ticket, or reads the ticket's status.
    pub async fn wsretry(&self, task: &mut SaviyntTask) {
        match task.status {
            TaskStatus::New => self.create_ticket(task).await,
            TaskStatus::InProgress => self.check_status(task).await,
            TaskStatus::Complete | TaskStatus::Discontinue => {}
        }
    }

    fn only_call<'a>(&self, json: &'a Value, what: &str) -> &'a Value {
        let calls = json["call"].as_array().unwrap_or_else(|| panic!("{what}: no \"call\" list"));
        assert_eq!(calls.len(), 1, "{what}: the recipe uses one call");
        &calls[0]
    }

    async fn create_ticket(&self, task: &mut SaviyntTask) {
        let call = self.only_call(&self.create, "CreateTicketJSON");
        let (status, body, line) = self.send(call, task).await;
        if !listed(&call["successResponses"]["statusCode"], &Value::from(status)) {
            self.transcript.push(format!("{line} => not a success response: task stays New"));
            task.last_error = Some(format!("HTTP {status}: {body}"));
            return;
        }
        let path = call["ticketidPath"].as_str().expect("CreateTicketJSON: ticketidPath");
        match lookup(&body, path).map(as_text).filter(|s| !s.is_empty()) {
            Some(id) => {
                self.transcript.push(format!("{line} => {path} = {id:?}: task InProgress"));
                task.ticket_id = Some(id);
                task.status = TaskStatus::InProgress;
                task.last_error = None;
            }
            None => {
                self.transcript.push(format!("{line} => no {path}: task stays New"));
                task.last_error = Some(format!("no ticket id at '{path}' in {body}"));
            }
        }
    }

    async fn check_status(&self, task: &mut SaviyntTask) {
        let call = self.only_call(&self.status, "TicketStatusJSON");
        let (status, body, line) = self.send(call, task).await;
        if !listed(&call["successResponses"]["statusCode"], &Value::from(status)) {
            self.transcript.push(format!("{line} => not a success response: polled again next run"));
            task.last_error = Some(format!("HTTP {status}: {body}"));
            return;
        }
        let path = call["ticketStatusPath"].as_str().expect("TicketStatusJSON: ticketStatusPath");
        let value = lookup(&body, path).map(as_text).unwrap_or_default();
        let v = Value::from(value.clone());
        if listed(&call["ticketStatusValue"], &v) {
            task.status = TaskStatus::Complete;
        } else if listed(&call["disContinueStatusValue"], &v) {
            task.status = TaskStatus::Discontinue;
        }
        self.transcript.push(format!("{line} => {path} = {value:?}: task {:?}", task.status));
        task.last_ticket_status = Some(value);
    }

    /// Sends one call, retrying the connection's `retryFailureStatusCode` answers; returns the
    /// last answer and its transcript line (retried attempts are logged here).
    async fn send(&self, call: &Value, task: &SaviyntTask) -> (u16, Value, String) {
        let conn_name = call["connection"].as_str().expect("call.connection");
        let auth = &self.connection["authentications"][conn_name];
        assert!(auth.is_object(), "ConnectionJSON has no authentication '{conn_name}'");
        let token = auth["accessToken"].as_str().expect("accessToken").to_string();
        let retry_on = &auth["retryFailureStatusCode"];
        let tries = 1 + auth["maxRefreshTryCount"].as_u64().unwrap_or(0);
        let expand = |s: &str| substitute(s, task, &token);
        let url = expand(call["url"].as_str().expect("call.url"));
        let method = call["httpMethod"].as_str().expect("call.httpMethod");
        let path = reqwest::Url::parse(&url).map(|u| u.path().to_string()).unwrap_or(url.clone());
        let mut last = (0, Value::Null, String::new());
        for attempt in 1..=tries {
            let mut req = self.http.request(method.parse().expect("http method"), &url);
            if let Some(headers) = call["httpHeaders"].as_object() {
                for (k, v) in headers {
                    req = req.header(k, expand(v.as_str().unwrap_or_default()));
                }
            }
            if let Some(ct) = call["httpContentType"].as_str() {
                req = req.header("content-type", ct);
            }
            if let Some(params) = call["httpParams"].as_str() {
                let body = expand(params);
                if attempt == 1 {
                    self.transcript.push(format!("  body {body}"));
                }
                req = req.body(body);
            }
            let res = req.send().await.expect("request to Ticket Bridge");
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let summary = match (body.get("state"), body.get("result")) {
                (Some(s), Some(r)) => format!("state={} result={}", as_text(s), as_text(r)),
                _ => body.get("error").map(|e| format!("error={e}")).unwrap_or_default(),
            };
            let auth_error = auth["errorPath"]
                .as_str()
                .and_then(|p| lookup(&body, p))
                .is_some_and(|code| listed(&auth["authError"], code));
            let retry = listed(retry_on, &Value::from(status)) && attempt < tries;
            let line = format!("{method} {path} -> {status} {summary}{}", if auth_error { " [authError]" } else { "" });
            if !retry {
                last = (status, body, line);
                break;
            }
            self.transcript.push(format!("{line} => retryFailureStatusCode: retry {attempt}/{}", tries - 1));
        }
        last
    }
}

fn listed(list: &Value, v: &Value) -> bool {
    list.as_array().is_some_and(|l| l.iter().any(|x| x == v))
}

/// Fills `${name}` placeholders: `access_token`, `ticketID`, or a task attribute. An attribute the
/// task has no value for is an empty string (no guard); an expression that is not a plain dotted
/// name, or a name the fixture does not define, fails the test.
pub fn substitute(text: &str, task: &SaviyntTask, token: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').unwrap_or_else(|| panic!("unclosed placeholder in {text}"));
        let name = &after[..end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_'),
            "the emulator evaluates plain ${{a.b}} placeholders only, not '{name}'"
        );
        let value = match name {
            "access_token" => token.to_string(),
            "ticketID" => task.ticket_id.clone().expect("${ticketID} before a ticket id was stored"),
            _ => task
                .attributes
                .get(name)
                .cloned()
                .unwrap_or_else(|| panic!("the Saviynt task fixture has no attribute '{name}'")),
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}
