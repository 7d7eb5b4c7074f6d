//! OTRS / Znuny GenericTicketConnectorREST simulator.
//!
//! Routes live under `/otrs/nph-genericinterface.pl/Webservice/<name>` (the sample web service):
//!
//! | method | route | operation |
//! |---|---|---|
//! | POST | /Session | SessionCreate `{UserLogin, Password}` → `{SessionID}` |
//! | POST | /Ticket | TicketCreate `{SessionID, Ticket{Title, Queue, State, Priority, CustomerUser, …}, Article{…}}` |
//! | GET | /Ticket | TicketSearch (`SessionID`, `TicketID` (repeatable), `MIMEBase_Body` / `Body`, `Title`, `States`, `StateType`, `Limit`) → `{TicketID:[…]}` or `{}` |
//! | GET | /Ticket/{TicketID} | TicketGet, comma list → `{Ticket:[…]}` (an unknown id fails the whole call with AccessDenied); `AllArticles=1`, `ArticleLimit`, `DynamicFields=1` |
//! | POST | /TicketSearch | TicketSearch with a JSON body (a route the administrator adds; also `DynamicField_<Name>: {Equals}`) |
//! | PATCH | /Ticket/{TicketID} | TicketUpdate `{SessionID, Ticket?{State}, Article?}` |
//!
//! Operation errors are HTTP 200 with `{"Error":{"ErrorCode","ErrorMessage"}}`; an unknown or
//! expired session gives `<Operation>.AuthFail`.
//!
//! As in Znuny (sources in docs/psa-connectors.md): ticket dynamic fields must exist
//! ([`OtrsConfig::dynamic_fields`]; TicketCreate refuses another name with `InvalidParameter`
//! before creating anything) and TicketSearch ignores a `DynamicField_<Name>` it does not know or
//! that is not an object (a query-string value can never be one); the article search index lags
//! ([`OtrsConfig::search_index_delay`], the daemon task runs once a minute) and holds only the
//! first [`OtrsConfig::word_count_max`] words of each article. POST/PATCH bodies must be sent as
//! `application/json` (stricter than Znuny's transport, which only reads the charset).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::psa::{contains_ci, marker_key};
use crate::server::SimServer;
use crate::sim::{NewTicket, Sim, SimProfile, SimTicket};
use crate::tokens::{TokenCheck, TokenKind};

/// States `(name, StateType)`.
pub const STATES: [(&str, &str); 8] = [
    ("new", "new"),
    ("open", "open"),
    ("closed successful", "closed"),
    ("closed unsuccessful", "closed"),
    ("pending reminder", "pending reminder"),
    ("pending auto close+", "pending auto"),
    ("removed", "removed"),
    ("merged", "merged"),
];
pub const QUEUES: [&str; 3] = ["Raw", "Junk", "Service Desk"];
pub const PRIORITIES: [&str; 5] = ["1 very low", "2 low", "3 normal", "4 high", "5 very high"];

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct OtrsConfig {
    pub webservice: String,
    pub user: String,
    pub password: String,
    pub session_ttl: Duration,
    /// Valid ticket dynamic fields (others are refused by TicketCreate, ignored by TicketSearch).
    pub dynamic_fields: Vec<String>,
    /// How long after it is written an article becomes searchable (the index daemon's lag).
    pub search_index_delay: Duration,
    /// Words of each article the search index keeps (`Ticket::SearchIndex::Attribute` WordCountMax).
    pub word_count_max: usize,
    /// Logins of valid agents (TicketCreate refuses any other `Owner` / `Responsible`).
    pub agents: Vec<String>,
}

impl Default for OtrsConfig {
    fn default() -> Self {
        Self {
            webservice: "GenericTicketConnectorREST".into(),
            user: "bridge-agent".into(),
            password: "agent-password-1".into(),
            session_ttl: Duration::from_secs(7200),
            dynamic_fields: vec!["TicketBridgeRef".into()],
            search_index_delay: Duration::from_secs(60),
            word_count_max: 1000,
            agents: vec!["bridge-agent".into(), "jane.tech".into()],
        }
    }
}

impl OtrsConfig {
    /// Path prefix of the web service.
    pub fn service_path(&self) -> String {
        format!("/otrs/nph-genericinterface.pl/Webservice/{}", self.webservice)
    }
}

pub fn profile() -> SimProfile {
    SimProfile {
        name: "otrs",
        initial_status: "new".into(),
        closed_status: "closed successful".into(),
        statuses: STATES.iter().map(|s| s.0.to_string()).collect(),
        closed_statuses: vec![
            "closed successful".into(),
            "closed unsuccessful".into(),
            "removed".into(),
            "merged".into(),
        ],
        error_body: (
            200,
            json!({"Error": {"ErrorCode": "TicketGet.DatabaseError", "ErrorMessage": "Could not query the database"}}),
        ),
        server_error_body: json!({"Error": {"ErrorCode": "Provider.InternalError", "ErrorMessage": "Internal Server Error"}}),
        first_id: 1,
        number_prefix: String::new(),
    }
}

struct St {
    sim: Sim,
    config: OtrsConfig,
}

/// A running OTRS simulator.
pub struct Otrs {
    server: SimServer,
    config: OtrsConfig,
}

impl Otrs {
    pub async fn spawn(config: OtrsConfig) -> std::io::Result<Self> {
        let sim = Sim::new(profile());
        let server =
            SimServer::spawn_on(SocketAddr::from(([127, 0, 0, 1], 0)), sim.clone(), router(sim, config.clone()))
                .await?;
        Ok(Self { server, config })
    }

    pub fn config(&self) -> &OtrsConfig {
        &self.config
    }

    /// Route key for faults and request counts, e.g. `route("GET", "/Ticket/{TicketID}")`.
    pub fn route(&self, method: &str, route: &str) -> String {
        format!("{method} {}{route}", self.config.service_path())
    }
}

impl Deref for Otrs {
    type Target = SimServer;
    fn deref(&self) -> &SimServer {
        &self.server
    }
}

/// The OTRS routes over `sim`.
pub fn router(sim: Sim, config: OtrsConfig) -> Router {
    let prefix = config.service_path();
    let st = Arc::new(St { sim, config });
    Router::new()
        .route(&format!("{prefix}/Session"), post(session))
        .route(&format!("{prefix}/Ticket"), post(create).get(search))
        .route(&format!("{prefix}/TicketSearch"), post(search_post))
        .route(&format!("{prefix}/Ticket/{{TicketID}}"), get(get_tickets).patch(update))
        .with_state(st)
}

fn op_error(code: &str, message: impl ToString) -> Response {
    Json(json!({"Error": {"ErrorCode": code, "ErrorMessage": message.to_string()}})).into_response()
}

fn session_ok(st: &St, op: &str, session: Option<&str>) -> Result<(), Response> {
    match session.map(|s| st.sim.tokens().check(s, TokenKind::Access)) {
        Some(TokenCheck::Valid(_)) => Ok(()),
        _ => Err(op_error(&format!("{op}.AuthFail"), format!("{op}: Authorization failing!"))),
    }
}

/// The JSON body of a POST/PATCH. Znuny's transport answers 500 to a body it cannot decode or
/// read; the simulator also wants `application/json` (see the module docs).
fn parse(headers: &HeaderMap, bytes: &Bytes) -> Result<Value, Response> {
    let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json").into_response());
    }
    if bytes.is_empty() {
        return Err((StatusCode::INTERNAL_SERVER_ERROR, "Could not read input data").into_response());
    }
    serde_json::from_slice::<Value>(bytes)
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "Error while decoding request content.").into_response())
}

async fn session(State(st): State<Arc<St>>, headers: HeaderMap, bytes: Bytes) -> Response {
    let req = match parse(&headers, &bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let user = req.get("UserLogin").and_then(Value::as_str).unwrap_or_default();
    let pass = req.get("Password").and_then(Value::as_str).unwrap_or_default();
    if user != st.config.user || pass != st.config.password {
        return op_error("SessionCreate.AuthFail", "SessionCreate: Authorization failing!");
    }
    let (sid, _) = st.sim.tokens().issue(TokenKind::Access, user, &[], Some(st.config.session_ttl));
    Json(json!({"SessionID": sid})).into_response()
}

fn state_type(state: &str) -> &'static str {
    STATES.iter().find(|s| s.0.eq_ignore_ascii_case(state)).map(|s| s.1).unwrap_or("open")
}

fn ticket_json(t: &SimTicket) -> Value {
    json!({
        "TicketID": t.id.to_string(),
        "TicketNumber": t.number,
        "Title": t.title,
        "State": t.status,
        "StateType": state_type(&t.status),
        "Queue": t.queue,
        "Priority": t.priority,
        "CustomerUserID": t.requester,
        "CustomerID": t.customer_id,
        "Type": t.fields.get("Type"),
        "Created": t.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        "Changed": t.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
    })
}

fn article_text(a: &Value) -> Result<(String, String, bool), Response> {
    let subject = a.get("Subject").and_then(Value::as_str).unwrap_or_default().to_string();
    let body = a.get("Body").and_then(Value::as_str).unwrap_or_default().to_string();
    if subject.is_empty() || body.is_empty() {
        return Err(op_error("TicketCreate.MissingParameter", "Article->Subject and Article->Body are required!"));
    }
    if a.get("ContentType").is_none() && a.get("MimeType").is_none() {
        return Err(op_error(
            "TicketCreate.MissingParameter",
            "Article->ContentType or Article->MimeType is required!",
        ));
    }
    let internal = a.get("IsVisibleForCustomer").and_then(Value::as_i64) == Some(0)
        || a.get("CommunicationChannel").and_then(Value::as_str) == Some("Internal");
    Ok((subject, body, internal))
}

async fn create(State(st): State<Arc<St>>, headers: HeaderMap, bytes: Bytes) -> Response {
    let req = match parse(&headers, &bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = session_ok(&st, "TicketCreate", req.get("SessionID").and_then(Value::as_str)) {
        return r;
    }
    let t = req.get("Ticket").cloned().unwrap_or(Value::Null);
    let text = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_string).filter(|s| !s.is_empty());
    let missing =
        |k: &str| op_error("TicketCreate.MissingParameter", format!("TicketCreate: Ticket->{k} parameter is missing!"));
    let Some(title) = text("Title") else { return missing("Title") };
    let Some(queue) = text("Queue") else { return missing("Queue") };
    let Some(state) = text("State") else { return missing("State") };
    let Some(priority) = text("Priority") else { return missing("Priority") };
    let Some(customer_user) = text("CustomerUser") else { return missing("CustomerUser") };
    if !QUEUES.iter().any(|q| q.eq_ignore_ascii_case(&queue)) {
        return op_error("TicketCreate.InvalidParameter", "TicketCreate: Ticket->Queue is invalid!");
    }
    let Some(state) = st.sim.canonical_status(&state) else {
        return op_error("TicketCreate.InvalidParameter", "TicketCreate: Ticket->State is invalid!");
    };
    if !PRIORITIES.iter().any(|p| p.eq_ignore_ascii_case(&priority)) {
        return op_error("TicketCreate.InvalidParameter", "TicketCreate: Ticket->Priority is invalid!");
    }
    let (_, body, _) = match article_text(req.get("Article").unwrap_or(&Value::Null)) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut fields = BTreeMap::new();
    if let Some(ty) = text("Type") {
        fields.insert("Type".to_string(), json!(ty));
    }
    // TicketCreate::_CheckTicket: an Owner / Responsible given must be a valid agent
    // (TicketCommon ValidateOwner / ValidateResponsible, by login).
    for role in ["Owner", "Responsible"] {
        if let Some(login) = text(role) {
            if !st.config.agents.iter().any(|a| a == &login) {
                return op_error(
                    "TicketCreate.InvalidParameter",
                    format!("TicketCreate: Ticket->{role}ID or Ticket->{role} parameter is invalid!"),
                );
            }
            fields.insert(role.to_string(), json!(login));
        }
    }
    // TicketCreate::_CheckDynamicField: a hash or a list of {Name, Value}; an unknown name is
    // refused before anything is created.
    let dynamic: Vec<Value> = match req.get("DynamicField") {
        None => Vec::new(),
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        Some(o @ Value::Object(m)) if !m.is_empty() => vec![o.clone()],
        Some(_) => {
            return op_error(
                "TicketCreate.MissingParameter",
                "TicketCreate: DynamicField parameter is missing or not valid!",
            );
        }
    };
    for df in &dynamic {
        let (Some(name), Some(value)) = (df.get("Name").and_then(Value::as_str), df.get("Value")) else {
            return op_error(
                "TicketCreate.MissingParameter",
                "TicketCreate: DynamicField->Name  parameter is missing!",
            );
        };
        if !st.config.dynamic_fields.iter().any(|f| f == name) {
            return op_error("TicketCreate.InvalidParameter", "TicketCreate: DynamicField->Name parameter is invalid!");
        }
        fields.insert(format!("DynamicField_{name}"), value.clone());
    }
    let next = st.sim.next_id();
    let t = st.sim.create_ticket(NewTicket {
        number: Some(format!("{}10{:06}", Utc::now().format("%Y%m%d"), next)),
        title,
        correlation_key: marker_key(&body)
            .or_else(|| dynamic.first().and_then(|d| d.get("Value")).and_then(Value::as_str).map(str::to_string)),
        body,
        status: Some(state),
        customer_id: text("CustomerID"),
        requester: Some(customer_user),
        queue: Some(queue),
        priority: Some(priority),
        fields,
        request: req.clone(),
        ..Default::default()
    });
    Json(json!({"TicketID": t.id.to_string(), "TicketNumber": t.number, "ArticleID": (t.id * 10).to_string()}))
        .into_response()
}

/// `GET /Ticket`: query parameters are flat strings (a repeated one becomes a list), so a
/// `DynamicField_<Name>` given here is never the object TicketSearch needs and is ignored.
async fn search(State(st): State<Arc<St>>, Query(q): Query<Vec<(String, String)>>) -> Response {
    let mut params = serde_json::Map::new();
    for (k, v) in q {
        match params.get_mut(&k) {
            Some(Value::Array(a)) => a.push(Value::String(v)),
            Some(prev) => *prev = Value::Array(vec![prev.clone(), Value::String(v)]),
            None => {
                params.insert(k, Value::String(v));
            }
        }
    }
    run_search(&st, &params)
}

/// `POST /TicketSearch` with the parameters in a JSON body.
async fn search_post(State(st): State<Arc<St>>, headers: HeaderMap, bytes: Bytes) -> Response {
    let req = match parse(&headers, &bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match req {
        Value::Object(params) => run_search(&st, &params),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Unsupported request content structure.").into_response(),
    }
}

/// A parameter as a list of strings (TicketSearch accepts a string or an array).
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Array(a)) => a.iter().flat_map(|x| strings(Some(x))).collect(),
        _ => Vec::new(),
    }
}

/// The words of an article the search index holds: the first `max` words, lowercased.
fn indexed_words(text: &str, max: usize) -> String {
    text.split_whitespace().take(max).collect::<Vec<_>>().join(" ").to_lowercase()
}

fn run_search(st: &St, q: &serde_json::Map<String, Value>) -> Response {
    let get = |k: &str| strings(q.get(k)).into_iter().next();
    if let Err(r) = session_ok(st, "TicketSearch", get("SessionID").as_deref()) {
        return r;
    }
    let states: Vec<String> = strings(q.get("States")).iter().map(|v| v.to_lowercase()).collect();
    let ids_wanted = strings(q.get("TicketID"));
    // OTRS 5 calls the article body field `Body`, OTRS 6+ / Znuny `MIMEBase_Body`. Only indexed
    // articles are searched: written at least `search_index_delay` ago, first `word_count_max` words.
    let body = get("MIMEBase_Body").or_else(|| get("Body"));
    let indexed_before = Utc::now() - chrono::Duration::from_std(st.config.search_index_delay).unwrap_or_default();
    let max_words = st.config.word_count_max;
    let in_index = |text: &str, at: chrono::DateTime<Utc>, needle: &str| {
        at <= indexed_before && contains_ci(&indexed_words(text, max_words), needle)
    };
    // Dynamic fields: only configured ones, and only as an object of operators (`Equals`).
    let mut field_filters: Vec<(String, Vec<String>)> = Vec::new();
    for name in &st.config.dynamic_fields {
        if let Some(Value::Object(ops)) = q.get(&format!("DynamicField_{name}")) {
            field_filters.push((format!("DynamicField_{name}"), strings(ops.get("Equals"))));
        }
    }
    // `TicketChangeTimeNewerDate`: tickets with a history entry created at or after the time
    // (`th.create_time >= '…'`, Kernel/System/Ticket/TicketSearch.pm), whole seconds, system time
    // zone UTC. A value that is not `YYYY-MM-DD HH:MM:SS` makes the kernel search log an error and
    // return nothing, which the operation answers as `{}`.
    let changed_after = match get("TicketChangeTimeNewerDate") {
        None => None,
        Some(v) => match chrono::NaiveDateTime::parse_from_str(&v, "%Y-%m-%d %H:%M:%S") {
            Ok(t) => Some(t.and_utc().timestamp()),
            Err(_) => return Json(json!({})).into_response(),
        },
    };
    let limit = get("Limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(500);
    let ids: Vec<String> = st
        .sim
        .tickets()
        .into_iter()
        .filter(|t| ids_wanted.is_empty() || ids_wanted.contains(&t.id.to_string()))
        .filter(|t| {
            body.as_deref().is_none_or(|b| {
                in_index(&t.body, t.created_at, b) || t.notes.iter().any(|n| in_index(&n.body, n.created_at, b))
            })
        })
        .filter(|t| changed_after.is_none_or(|after| t.updated_at.timestamp() >= after))
        .filter(|t| get("Title").is_none_or(|b| contains_ci(&t.title, &b)))
        .filter(|t| states.is_empty() || states.contains(&t.status.to_lowercase()))
        .filter(|t| get("StateType").is_none_or(|ty| state_type(&t.status).eq_ignore_ascii_case(&ty)))
        .filter(|t| {
            field_filters.iter().all(|(key, equals)| {
                let have = strings(t.fields.get(key));
                equals.is_empty() || equals.iter().any(|e| have.contains(e))
            })
        })
        .take(limit)
        .map(|t| t.id.to_string())
        .collect();
    if ids.is_empty() { Json(json!({})).into_response() } else { Json(json!({"TicketID": ids})).into_response() }
}

/// The ticket's articles: the create article first, then notes.
fn articles(t: &SimTicket, limit: Option<usize>) -> Vec<Value> {
    let first =
        json!({"ArticleID": (t.id * 10).to_string(), "Subject": t.title, "Body": t.body, "IsVisibleForCustomer": 0});
    let notes = t.notes.iter().map(|n| {
        json!({"ArticleID": (t.id * 10 + n.id).to_string(), "Subject": n.subject, "Body": n.body, "IsVisibleForCustomer": if n.internal { 0 } else { 1 }})
    });
    std::iter::once(first).chain(notes).take(limit.unwrap_or(usize::MAX)).collect()
}

async fn get_tickets(
    State(st): State<Arc<St>>,
    Path(ids): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = session_ok(&st, "TicketGet", q.get("SessionID").map(String::as_str)) {
        return r;
    }
    let with_articles = q.get("AllArticles").is_some_and(|v| v == "1");
    let with_fields = q.get("DynamicFields").is_some_and(|v| v == "1");
    let limit = q.get("ArticleLimit").and_then(|l| l.parse::<usize>().ok());
    let mut out = Vec::new();
    for id in ids.split(',') {
        match id.trim().parse::<u64>().ok().and_then(|i| st.sim.ticket(i)) {
            Some(t) => {
                let mut j = ticket_json(&t);
                if with_fields {
                    // Every valid ticket dynamic field, with null where the ticket has no value.
                    let list: Vec<Value> = st
                        .config
                        .dynamic_fields
                        .iter()
                        .map(|n| json!({"Name": n, "Value": t.fields.get(&format!("DynamicField_{n}"))}))
                        .collect();
                    j["DynamicField"] = Value::Array(list);
                }
                if with_articles {
                    j["Article"] = Value::Array(articles(&t, limit));
                }
                out.push(j)
            }
            None => return op_error("TicketGet.AccessDenied", "TicketGet: User does not have access to the ticket!"),
        }
    }
    Json(json!({"Ticket": out})).into_response()
}

async fn update(State(st): State<Arc<St>>, headers: HeaderMap, Path(id): Path<String>, bytes: Bytes) -> Response {
    let req = match parse(&headers, &bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = session_ok(&st, "TicketUpdate", req.get("SessionID").and_then(Value::as_str)) {
        return r;
    }
    let Some(t) = id.parse::<u64>().ok().and_then(|i| st.sim.ticket(i)) else {
        return op_error("TicketUpdate.AccessDenied", "TicketUpdate: User does not have access to the ticket!");
    };
    // TicketUpdate.pm checks the Ticket attributes (_CheckTicket) before it writes anything.
    let state = req.get("Ticket").and_then(|x| x.get("State")).and_then(Value::as_str);
    if let Some(state) = state
        && st.sim.canonical_status(state).is_none()
    {
        return op_error("TicketUpdate.InvalidParameter", "TicketUpdate: Ticket->State is invalid!");
    }
    let mut article_id = None;
    if let Some(a) = req.get("Article") {
        let (subject, body, internal) = match article_text(a) {
            Ok(x) => x,
            Err(_) => {
                return op_error(
                    "TicketUpdate.MissingParameter",
                    "TicketUpdate: Article->Subject and Body are required!",
                );
            }
        };
        article_id = st.sim.add_note(t.id, Some(subject), body, internal, "agent").map(|n| n.id.to_string());
    }
    if let Some(state) = state
        && let Err(e) = st.sim.set_status(&t.id.to_string(), state)
    {
        return op_error("TicketUpdate.InvalidParameter", e);
    }
    Json(json!({"TicketID": t.id.to_string(), "TicketNumber": t.number, "ArticleID": article_id})).into_response()
}
