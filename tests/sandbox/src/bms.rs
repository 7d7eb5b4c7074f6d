//! Kaseya BMS v2 simulator.
//!
//! | method | path | notes |
//! |---|---|---|
//! | POST | /v2/security/authenticate | multipart `GrantType=password, UserName, Password, Tenant` |
//! | POST | /v2/security/refreshtoken | multipart `AccessToken, RefreshToken` (refresh token rotates) |
//! | POST | /v2/servicedesk/tickets | `TicketInputDto` (required fields checked) |
//! | GET | /v2/servicedesk/tickets/{ticketId} | |
//! | POST | /v2/servicedesk/tickets/search | `{PageNumber, PageSize, Filter{Details, ExcludeCompleted, LastActivityUpdateFrom, TicketNumber, StatusNames}}` |
//! | GET | /v2/servicedesk/tickets | the same filters as `Filter.*` query parameters |
//! | POST | /v2/servicedesk/tickets/{ticketId}/notes | `{Details, IsInternal, NoteDate, TypeId}` |
//! | GET | /v2/crm/contacts/search | `Filter.EmailAddress`, `Filter.AccountIds`, paging; `LocationId` of each contact |
//! | GET | /v2/crm/accounts/summary | `Filter.ModifiedOnFrom`, paging, `TotalRecords` (see [`crm_sync`]) |
//! | GET | /v2/servicedesk/hardwareasset/searchselect | `Filter.AccountId`, `Filter.AssetName`, paging |
//! | GET | /v2/crm/accounts/lookup | `PageNumber`, `PageSize`, `Filter.Name` (contains, case-insensitive), `Filter.Ids` |
//! | POST | /v2/crm/accounts | `AccountPostInputDto` (AccountName, AccountTypeId, BusinessTypeId, AccountManagerId, Locations required) |
//! | GET | /v2/crm/accounts/{accountId}/locations/lookup | the main location (id = account × 10 + 1) and added ones |
//! | GET | /v2/crm/accounts/{accountId}/contacts/lookup | `PageNumber`, `PageSize` |
//! | POST | /v2/crm/contacts/summary | `ContactInputDto` (AccountId, LocationId of the account, a name) |
//! | GET | /v2/finance/contracts/lookup | `AccountId`, `ExcludeExpiredContracts` |
//! | GET | /v2/admin/finance/services/lookup | `Filter.Name` (contains), paging |
//! | POST | /v2/finance/contracts/recurringservices/{contractId}/services | array of `{ServiceId, Units, EffectiveDate}` |
//! | GET | /v2/system/{statuses,priorities,queues,issuetypes}/lookup, /v2/system/issuetypes/{id}/issuesubtypes/lookup | |
//!
//! Tickets naming a `ContractId` must name a contract of their account. The v2 document has no
//! path to read or change a contract's service lines, so neither has the simulator. JSON
//! endpoints answer 415 to any other `Content-Type`; every request and response is also checked
//! against `contracts/bms.json` (see [`crate::contract`]).
//!
//! Every response is the envelope `{Success, Error{Code, Message}, Result, TotalRecords?}`.
//! Wrong tenant: 400 (Code 400, "Tenant … was not found"); wrong user/password: 401. Page size
//! is capped at [`BmsConfig::max_page_size`]. The per-endpoint hourly limit (1,500 in BMS) is set
//! with [`BmsConfig::rate_limit_per_hour`].

use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::psa::{contains_ci, content_type_is, marker_key, multipart_fields};
use crate::server::SimServer;
use crate::sim::{NewTicket, RateRule, Sim, SimProfile, SimTicket};
use crate::tokens::{TokenCheck, TokenKind};
use crate::util;

mod crm_sync;
pub use crm_sync::{SimAsset, SimLocation};

/// Ticket statuses `(Id, Name)`.
pub const STATUSES: [(i64, &str); 6] =
    [(1, "New"), (2, "In Progress"), (3, "Waiting Customer"), (4, "Completed"), (5, "Closed"), (6, "Cancelled")];
/// Statuses that set `CompletedDate`.
pub const COMPLETED: [&str; 3] = ["Completed", "Closed", "Cancelled"];
/// Priorities `(Id, Name, IsDefault)`.
pub const PRIORITIES: [(i64, &str, bool); 4] =
    [(1, "Low", false), (2, "Medium", true), (3, "High", false), (4, "Critical", false)];
pub const QUEUES: [(i64, &str); 2] = [(1, "Service Desk"), (2, "Security")];
pub const ISSUE_TYPES: [(i64, &str); 2] = [(10, "SaaS Alerts"), (11, "Access Request")];
/// Sub-issue types `(IssueTypeId, Id, Name)`.
pub const SUB_ISSUE_TYPES: [(i64, i64, &str); 3] =
    [(10, 100, "Data Leakage"), (10, 101, "Suspicious Login"), (11, 110, "New Account")];
/// Ticket types `(Id, Name)` (only ids are accepted on create).
pub const TYPES: [(i64, &str); 2] = [(1, "Incident"), (2, "Service Request")];

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct BmsConfig {
    pub tenant: String,
    pub username: String,
    pub password: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub max_page_size: usize,
    /// Calls per hour per endpoint and client; `None` = unlimited.
    pub rate_limit_per_hour: Option<u32>,
}

impl Default for BmsConfig {
    fn default() -> Self {
        Self {
            tenant: "Acme MSP".into(),
            username: "api-user".into(),
            password: "correct horse battery".into(),
            access_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(7 * 86400),
            max_page_size: 100,
            rate_limit_per_hour: None,
        }
    }
}

/// Profile for the shared core.
pub fn profile() -> SimProfile {
    SimProfile {
        name: "kaseya-bms",
        initial_status: "New".into(),
        closed_status: "Completed".into(),
        statuses: STATUSES.iter().map(|(_, n)| n.to_string()).collect(),
        closed_statuses: COMPLETED.iter().map(|s| s.to_string()).collect(),
        error_body: (
            200,
            json!({"Success": false, "Error": {"Code": 500, "Message": "An unexpected error occurred", "SubErrors": []}, "Result": null}),
        ),
        server_error_body: json!({"Success": false, "Error": {"Code": 500, "Message": "Internal server error"}, "Result": null}),
        first_id: 5001,
        number_prefix: "T".into(),
    }
}

struct St {
    sim: Sim,
    config: BmsConfig,
    /// Spent refresh tokens presented again.
    replays: AtomicU64,
    spent: Mutex<HashSet<String>>,
    finance: Mutex<Finance>,
    crm: Mutex<crm_sync::Crm>,
}

/// A contract of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimContract {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub is_default: bool,
    pub is_active: bool,
}

/// A recurring service line of a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimServiceLine {
    pub id: i64,
    pub contract_id: i64,
    pub service_id: i64,
    pub units: u64,
}

/// Contracts, the service catalog and contract service lines.
#[derive(Debug, Default)]
struct Finance {
    contracts: Vec<SimContract>,
    services: Vec<(i64, String)>,
    lines: Vec<SimServiceLine>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl St {
    fn new(sim: Sim, config: BmsConfig) -> Self {
        Self {
            sim,
            config,
            replays: AtomicU64::new(0),
            spent: Mutex::default(),
            finance: Mutex::default(),
            crm: Mutex::default(),
        }
    }
}

/// A running BMS simulator.
pub struct Bms {
    server: SimServer,
    st: Arc<St>,
}

impl Bms {
    pub async fn spawn(config: BmsConfig) -> std::io::Result<Self> {
        let sim = Sim::new(profile());
        if let Some(limit) = config.rate_limit_per_hour {
            sim.set_rate_limit(Some(RateRule { limit, window: Duration::from_secs(3600), per_route: true }));
        }
        let st = Arc::new(St::new(sim.clone(), config));
        let server = SimServer::spawn_on(SocketAddr::from(([127, 0, 0, 1], 0)), sim, routes(st.clone())).await?;
        Ok(Self { server, st })
    }

    pub fn config(&self) -> &BmsConfig {
        &self.st.config
    }

    /// Refresh tokens presented after they were spent.
    pub fn refresh_replays(&self) -> u64 {
        self.st.replays.load(Ordering::SeqCst)
    }

    /// Adds a contract to an account.
    pub fn add_contract(&self, id: i64, account_id: i64, name: &str, is_default: bool) {
        lock(&self.st.finance).contracts.push(SimContract {
            id,
            account_id,
            name: name.into(),
            is_default,
            is_active: true,
        });
    }

    /// Adds a service to the catalog.
    pub fn add_service(&self, id: i64, name: &str) {
        lock(&self.st.finance).services.push((id, name.into()));
    }

    pub fn contracts(&self) -> Vec<SimContract> {
        lock(&self.st.finance).contracts.clone()
    }

    /// All contract service lines, in creation order.
    pub fn service_lines(&self) -> Vec<SimServiceLine> {
        lock(&self.st.finance).lines.clone()
    }
}

impl Deref for Bms {
    type Target = SimServer;
    fn deref(&self) -> &SimServer {
        &self.server
    }
}

/// The BMS routes over `sim`.
pub fn router(sim: Sim, config: BmsConfig) -> Router {
    routes(Arc::new(St::new(sim, config)))
}

fn routes(st: Arc<St>) -> Router {
    Router::new()
        .route("/v2/security/authenticate", post(authenticate))
        .route("/v2/security/refreshtoken", post(refresh))
        .route("/v2/servicedesk/tickets", post(create).get(list))
        .route("/v2/servicedesk/tickets/search", post(search))
        .route("/v2/servicedesk/tickets/{ticketId}", get(get_ticket))
        .route("/v2/servicedesk/tickets/{ticketId}/notes", post(add_note))
        .route("/v2/servicedesk/tickets/{ticketId}/resolve", post(resolve))
        .route("/v2/crm/contacts/search", get(contacts))
        .route("/v2/crm/accounts/lookup", get(accounts))
        .route("/v2/crm/accounts", post(create_account))
        .route("/v2/crm/accounts/summary", get(crm_sync::accounts_summary))
        .route("/v2/servicedesk/hardwareasset/searchselect", get(crm_sync::hardware_assets))
        .route("/v2/crm/accounts/{accountId}/locations/lookup", get(locations))
        .route("/v2/crm/accounts/{accountId}/contacts/lookup", get(account_contacts))
        .route("/v2/crm/contacts/summary", post(create_contact))
        .route("/v2/finance/contracts/lookup", get(contracts))
        .route("/v2/admin/finance/services/lookup", get(services))
        .route("/v2/finance/contracts/recurringservices/{contractId}/services", post(add_service_lines))
        .route("/v2/system/statuses/lookup", get(|s: State<Arc<St>>, h: HeaderMap| lookup(s, h, "statuses")))
        .route("/v2/system/priorities/lookup", get(|s: State<Arc<St>>, h: HeaderMap| lookup(s, h, "priorities")))
        .route("/v2/system/queues/lookup", get(|s: State<Arc<St>>, h: HeaderMap| lookup(s, h, "queues")))
        .route("/v2/system/issuetypes/lookup", get(|s: State<Arc<St>>, h: HeaderMap| lookup(s, h, "issuetypes")))
        .route("/v2/system/issuetypes/{issueTypeId}/issuesubtypes/lookup", get(sub_issue_types))
        .with_state(st)
}

/// Media types BMS JSON endpoints take (the `requestBody.content` keys of the v2 document).
const JSON_TYPES: [&str; 4] = ["application/json", "text/json", "application/json-patch+json", "application/*+json"];

/// 415 unless the request says it is JSON.
fn json_only(headers: &HeaderMap) -> Result<(), Response> {
    if content_type_is(headers, &JSON_TYPES) {
        Ok(())
    } else {
        Err(fail(StatusCode::UNSUPPORTED_MEDIA_TYPE, 415, "Unsupported Media Type"))
    }
}

fn ok(result: Value) -> Response {
    Json(json!({"Success": true, "Error": null, "Result": result})).into_response()
}

fn ok_paged(result: Value, total: usize) -> Response {
    Json(json!({"Success": true, "Error": null, "Result": result, "TotalRecords": total})).into_response()
}

fn fail(status: StatusCode, code: i64, message: impl ToString) -> Response {
    let body = json!({"Success": false, "Error": {"Code": code, "Message": message.to_string(), "SubErrors": []}, "Result": null});
    (status, Json(body)).into_response()
}

fn authorize(st: &St, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = util::bearer(headers) else {
        return Err(fail(StatusCode::UNAUTHORIZED, 401, "Authorization has been denied"));
    };
    match st.sim.tokens().check(token, TokenKind::Access) {
        TokenCheck::Valid(_) => Ok(()),
        TokenCheck::Expired => Err(fail(StatusCode::UNAUTHORIZED, 401, "Access token expired")),
        TokenCheck::Revoked | TokenCheck::Unknown => Err(fail(StatusCode::UNAUTHORIZED, 401, "Invalid access token")),
    }
}

fn issue(st: &St, subject: &str) -> Response {
    let tokens = st.sim.tokens();
    let (access, access_exp) = tokens.issue(TokenKind::Access, subject, &[], Some(st.config.access_ttl));
    let (refresh, refresh_exp) =
        tokens.issue(TokenKind::Refresh, subject, std::slice::from_ref(&access), Some(st.config.refresh_ttl));
    let fmt = |t: Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
    ok(json!({
        "AccessToken": access,
        "RefreshToken": refresh,
        "AccessTokenExpireOn": fmt(access_exp),
        "RefreshTokenExpireOn": fmt(refresh_exp),
    }))
}

async fn authenticate(State(st): State<Arc<St>>, form: Multipart) -> Response {
    let Some(f) = multipart_fields(form).await else {
        return fail(StatusCode::BAD_REQUEST, 400, "Expected multipart/form-data");
    };
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    if !get("GrantType").eq_ignore_ascii_case("password") {
        return fail(StatusCode::BAD_REQUEST, 400, "Unsupported GrantType");
    }
    if !get("Tenant").eq_ignore_ascii_case(&st.config.tenant) {
        return fail(StatusCode::BAD_REQUEST, 400, format!("Tenant '{}' was not found", get("Tenant")));
    }
    if get("UserName") != st.config.username || get("Password") != st.config.password {
        return fail(StatusCode::UNAUTHORIZED, 401, "Invalid user name or password");
    }
    issue(&st, &st.config.username)
}

async fn refresh(State(st): State<Arc<St>>, form: Multipart) -> Response {
    let Some(f) = multipart_fields(form).await else {
        return fail(StatusCode::BAD_REQUEST, 400, "Expected multipart/form-data");
    };
    let access = f.get("AccessToken").cloned().unwrap_or_default();
    let refresh = f.get("RefreshToken").cloned().unwrap_or_default();
    if access.is_empty() {
        return fail(StatusCode::BAD_REQUEST, 400, "AccessToken is required");
    }
    let tokens = st.sim.tokens();
    if tokens.check(&access, TokenKind::Access) == TokenCheck::Unknown {
        return fail(StatusCode::UNAUTHORIZED, 401, "Invalid access token");
    }
    match tokens.check(&refresh, TokenKind::Refresh) {
        TokenCheck::Valid(info) if info.scopes.first() == Some(&access) => {
            tokens.consume(&refresh, TokenKind::Refresh);
            st.spent.lock().unwrap_or_else(|p| p.into_inner()).insert(refresh);
            issue(&st, &info.subject)
        }
        TokenCheck::Valid(_) => {
            fail(StatusCode::UNAUTHORIZED, 401, "Refresh token does not belong to this access token")
        }
        TokenCheck::Revoked => {
            if st.spent.lock().unwrap_or_else(|p| p.into_inner()).contains(&refresh) {
                st.replays.fetch_add(1, Ordering::SeqCst);
            }
            fail(StatusCode::UNAUTHORIZED, 401, "Refresh token is no longer valid")
        }
        TokenCheck::Expired | TokenCheck::Unknown => fail(StatusCode::UNAUTHORIZED, 401, "Invalid refresh token"),
    }
}

fn status_id(name: &str) -> i64 {
    STATUSES.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(i, _)| *i).unwrap_or(0)
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

fn ticket_json(t: &SimTicket) -> Value {
    let f = |k: &str| t.fields.get(k).cloned().unwrap_or(Value::Null);
    let priority_id = f("PriorityId");
    let priority_name = priority_id.as_i64().and_then(|p| PRIORITIES.iter().find(|x| x.0 == p)).map(|x| x.1);
    json!({
        "Id": t.id,
        "TicketNumber": t.number,
        "Title": t.title,
        "Details": t.body,
        "AccountId": f("AccountId"),
        "LocationId": f("LocationId"),
        "ContactId": f("ContactId"),
        "StatusId": status_id(&t.status),
        "StatusName": t.status,
        "PriorityId": priority_id,
        "PriorityName": priority_name,
        "QueueId": f("QueueId"),
        "TypeId": f("TypeId"),
        "SourceId": f("SourceId"),
        "IssueTypeId": f("IssueTypeId"),
        "SubIssueTypeId": f("SubIssueTypeId"),
        "ContractId": f("ContractId"),
        "OpenDate": f("OpenDate"),
        "CreatedOn": fmt_time(t.created_at),
        "ModifiedOn": fmt_time(t.updated_at),
        "LastActivityUpdate": fmt_time(t.updated_at),
        "CompletedDate": t.closed_at.map(fmt_time),
    })
}

fn account_exists(st: &St, id: i64) -> bool {
    st.sim.customers().iter().any(|c| c.id == id.to_string())
}

async fn create(State(st): State<Arc<St>>, headers: HeaderMap, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    if let Err(r) = json_only(&headers) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, 400, "Invalid JSON");
    };
    let int = |k: &str| req.get(k).and_then(Value::as_i64);
    let text = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_string).filter(|s| !s.trim().is_empty());
    for k in ["Title", "Details", "OpenDate"] {
        if text(k).is_none() {
            return fail(StatusCode::BAD_REQUEST, 400, format!("{k} is required"));
        }
    }
    for k in ["AccountId", "LocationId", "StatusId", "PriorityId", "TypeId", "SourceId"] {
        if int(k).is_none() {
            return fail(StatusCode::BAD_REQUEST, 400, format!("{k} is required"));
        }
    }
    let account = int("AccountId").unwrap_or_default();
    if !account_exists(&st, account) {
        return fail(StatusCode::BAD_REQUEST, 400, format!("Account {account} does not exist"));
    }
    if !int("LocationId").is_some_and(|l| lock(&st.crm).location_of(account, l)) {
        return fail(StatusCode::BAD_REQUEST, 400, "LocationId does not belong to the account");
    }
    if let Some(a) = int("HardwareAssetId")
        && !lock(&st.crm).asset_of(account, a)
    {
        return fail(StatusCode::BAD_REQUEST, 400, format!("Hardware asset {a} does not belong to account {account}"));
    }
    let Some((_, status)) = STATUSES.iter().find(|(i, _)| Some(*i) == int("StatusId")) else {
        return fail(StatusCode::BAD_REQUEST, 400, "StatusId is invalid");
    };
    if !PRIORITIES.iter().any(|p| Some(p.0) == int("PriorityId")) {
        return fail(StatusCode::BAD_REQUEST, 400, "PriorityId is invalid");
    }
    if !TYPES.iter().any(|t| Some(t.0) == int("TypeId")) {
        return fail(StatusCode::BAD_REQUEST, 400, "TypeId is invalid");
    }
    if !(0..=9).contains(&int("SourceId").unwrap_or(-1)) {
        return fail(StatusCode::BAD_REQUEST, 400, "SourceId is invalid");
    }
    if let Some(q) = int("QueueId")
        && !QUEUES.iter().any(|x| x.0 == q)
    {
        return fail(StatusCode::BAD_REQUEST, 400, "QueueId is invalid");
    }
    if let Some(i) = int("IssueTypeId")
        && !ISSUE_TYPES.iter().any(|x| x.0 == i)
    {
        return fail(StatusCode::BAD_REQUEST, 400, "IssueTypeId is invalid");
    }
    if let Some(s) = int("SubIssueTypeId")
        && !SUB_ISSUE_TYPES.iter().any(|x| x.1 == s && Some(x.0) == int("IssueTypeId"))
    {
        return fail(StatusCode::BAD_REQUEST, 400, "SubIssueTypeId is invalid for the issue type");
    }
    if let Some(c) = int("ContactId")
        && !st.sim.contacts().iter().any(|x| x.id == c.to_string())
    {
        return fail(StatusCode::BAD_REQUEST, 400, format!("Contact {c} does not exist"));
    }
    if let Some(c) = int("ContractId")
        && !lock(&st.finance).contracts.iter().any(|x| x.id == c && x.account_id == account)
    {
        return fail(StatusCode::BAD_REQUEST, 400, format!("Contract {c} does not belong to account {account}"));
    }
    let mut fields = BTreeMap::new();
    for k in [
        "AccountId",
        "LocationId",
        "ContactId",
        "PriorityId",
        "TypeId",
        "SourceId",
        "QueueId",
        "IssueTypeId",
        "SubIssueTypeId",
        "ContractId",
        "OpenDate",
        "UseDefaultContract",
        // Kept as sent: the BMS document gives their shapes (employee id, custom field id + Data)
        // but not how an unknown id is answered, so the simulator does not invent a refusal.
        "AssigneeId",
        "CustomFieldsData",
        "HardwareAssetId",
    ] {
        if let Some(v) = req.get(k).filter(|v| !v.is_null()) {
            fields.insert(k.to_string(), v.clone());
        }
    }
    let details = text("Details").unwrap_or_default();
    let next = st.sim.next_id();
    let t = st.sim.create_ticket(NewTicket {
        number: Some(format!("T{}.{:04}", Utc::now().format("%Y%m%d"), next % 10_000)),
        title: text("Title").unwrap_or_default(),
        correlation_key: marker_key(&details),
        body: details,
        status: Some(status.to_string()),
        customer_id: Some(account.to_string()),
        contact_id: int("ContactId").map(|c| c.to_string()),
        requester: None,
        queue: int("QueueId").map(|q| q.to_string()),
        priority: int("PriorityId").map(|p| p.to_string()),
        fields,
        request: req.clone(),
    });
    ok(ticket_json(&t))
}

async fn get_ticket(State(st): State<Arc<St>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    match id.parse::<u64>().ok().and_then(|id| st.sim.ticket(id)) {
        Some(t) => ok(ticket_json(&t)),
        None => fail(StatusCode::NOT_FOUND, 404, format!("Ticket {id} was not found")),
    }
}

/// Search criteria shared by `POST .../search` and `GET ...?Filter.*`.
#[derive(Default)]
struct Criteria {
    page: usize,
    size: usize,
    details: Option<String>,
    exclude_completed: bool,
    activity_from: Option<DateTime<Utc>>,
    number: Option<String>,
    statuses: Vec<String>,
}

fn run_search(st: &St, c: &Criteria) -> Response {
    if c.size == 0 || c.page == 0 {
        return fail(StatusCode::BAD_REQUEST, 400, "PageNumber and PageSize must be positive");
    }
    let size = c.size.min(st.config.max_page_size);
    let hits: Vec<SimTicket> = st
        .sim
        .tickets()
        .into_iter()
        .filter(|t| c.details.as_deref().is_none_or(|d| contains_ci(&t.body, d)))
        .filter(|t| !(c.exclude_completed && t.closed_at.is_some()))
        .filter(|t| c.activity_from.is_none_or(|from| t.updated_at >= from))
        .filter(|t| c.number.as_deref().is_none_or(|n| t.number == n))
        .filter(|t| c.statuses.is_empty() || c.statuses.iter().any(|s| s.eq_ignore_ascii_case(&t.status)))
        .collect();
    let (page, _) = util::page(&hits, c.page, size);
    ok_paged(Value::Array(page.iter().map(ticket_json).collect()), hits.len())
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok().map(|n| n.and_utc()))
}

async fn search(State(st): State<Arc<St>>, headers: HeaderMap, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    if let Err(r) = json_only(&headers) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, 400, "Invalid JSON");
    };
    let filter = req.get("Filter").cloned().unwrap_or(Value::Null);
    let s = |k: &str| filter.get(k).and_then(Value::as_str).map(str::to_string).filter(|x| !x.is_empty());
    let c = Criteria {
        page: req.get("PageNumber").and_then(Value::as_u64).unwrap_or(1) as usize,
        size: req.get("PageSize").and_then(Value::as_u64).unwrap_or(20) as usize,
        details: s("Details"),
        exclude_completed: filter.get("ExcludeCompleted").and_then(Value::as_i64) == Some(1),
        activity_from: s("LastActivityUpdateFrom").as_deref().and_then(parse_time),
        number: s("TicketNumber"),
        statuses: s("StatusNames").map(|x| x.split(',').map(|p| p.trim().to_string()).collect()).unwrap_or_default(),
    };
    run_search(&st, &c)
}

async fn list(State(st): State<Arc<St>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let s = |k: &str| q.get(k).cloned().filter(|x| !x.is_empty());
    let c = Criteria {
        page: s("PageNumber").and_then(|p| p.parse().ok()).unwrap_or(1),
        size: s("PageSize").and_then(|p| p.parse().ok()).unwrap_or(20),
        details: s("Filter.Details"),
        exclude_completed: s("Filter.ExcludeCompleted").as_deref() == Some("1"),
        activity_from: s("Filter.LastActivityUpdateFrom").as_deref().and_then(parse_time),
        number: s("Filter.TicketNumber"),
        statuses: s("Filter.StatusNames")
            .map(|x| x.split(',').map(|p| p.trim().to_string()).collect())
            .unwrap_or_default(),
    };
    run_search(&st, &c)
}

async fn add_note(State(st): State<Arc<St>>, headers: HeaderMap, Path(id): Path<String>, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    if let Err(r) = json_only(&headers) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, 400, "Invalid JSON");
    };
    let details = req.get("Details").and_then(Value::as_str).filter(|d| !d.trim().is_empty());
    let internal = req.get("IsInternal").and_then(Value::as_bool);
    let (Some(details), Some(internal)) = (details, internal) else {
        return fail(StatusCode::BAD_REQUEST, 400, "Details and IsInternal are required");
    };
    if req.get("NoteDate").and_then(Value::as_str).is_none() || req.get("TypeId").and_then(Value::as_i64).is_none() {
        return fail(StatusCode::BAD_REQUEST, 400, "NoteDate and TypeId are required");
    }
    let Some(tid) = id.parse::<u64>().ok().filter(|i| st.sim.ticket(*i).is_some()) else {
        return fail(StatusCode::NOT_FOUND, 404, format!("Ticket {id} was not found"));
    };
    match st.sim.add_note(tid, None, details.to_string(), internal, "api") {
        Some(n) => {
            ok(json!({"Id": n.id, "Details": n.body, "IsInternal": n.internal, "CreatedOn": fmt_time(n.created_at)}))
        }
        None => fail(StatusCode::NOT_FOUND, 404, format!("Ticket {id} was not found")),
    }
}

/// `ResolveTicket` (`ResolveTicketDto`: `Comment` required, `StatusId`, `IsInternal`, no other
/// members): the comment becomes a note and the ticket takes the status (default `Completed`,
/// assumed), which sets `CompletedDate`.
async fn resolve(State(st): State<Arc<St>>, headers: HeaderMap, Path(id): Path<String>, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    if let Err(r) = json_only(&headers) {
        return r;
    }
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, 400, "Invalid JSON");
    };
    if let Some(k) = req.keys().find(|k| {
        !["Id", "Comment", "StatusId", "IsPublishToKnowledgeBase", "IsInternal", "KnowledgeBaseCategoryId"]
            .contains(&k.as_str())
    }) {
        return fail(
            StatusCode::BAD_REQUEST,
            400,
            format!("Could not find member '{k}' on object of type 'ResolveTicketDto'"),
        );
    }
    let Some(comment) = req.get("Comment").and_then(Value::as_str).filter(|c| !c.is_empty()) else {
        return fail(StatusCode::BAD_REQUEST, 400, "The Comment field is required.");
    };
    let status = match req.get("StatusId").filter(|v| !v.is_null()) {
        None => "Completed",
        Some(v) => match v.as_i64().and_then(|i| STATUSES.iter().find(|(sid, _)| *sid == i)) {
            Some((_, name)) => *name,
            None => return fail(StatusCode::BAD_REQUEST, 400, format!("Status {v} was not found")),
        },
    };
    let internal = req.get("IsInternal").and_then(Value::as_bool).unwrap_or(false);
    let Some(tid) = id.parse::<u64>().ok().filter(|i| st.sim.ticket(*i).is_some()) else {
        return fail(StatusCode::NOT_FOUND, 404, format!("Ticket {id} was not found"));
    };
    st.sim.add_note(tid, None, comment.to_string(), internal, "api");
    match st.sim.set_status(&tid.to_string(), status) {
        Ok(t) => ok(ticket_json(&t)),
        Err(_) => fail(StatusCode::NOT_FOUND, 404, format!("Ticket {id} was not found")),
    }
}

async fn contacts(State(st): State<Arc<St>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let email = q.get("Filter.EmailAddress").map(|e| e.trim().to_lowercase());
    let accounts: Vec<String> =
        q.get("Filter.AccountIds").map(|a| a.split(',').map(|x| x.trim().to_string()).collect()).unwrap_or_default();
    let page = q.get("PageNumber").and_then(|p| p.parse().ok()).unwrap_or(1usize).max(1);
    let size = q.get("PageSize").and_then(|p| p.parse().ok()).unwrap_or(50usize).clamp(1, st.config.max_page_size);
    let crm = lock(&st.crm);
    let rows: Vec<Value> = st
        .sim
        .contacts()
        .into_iter()
        .filter(|c| email.as_deref().is_none_or(|e| c.email.to_lowercase() == e))
        .filter(|c| accounts.is_empty() || c.customer_id.as_ref().is_some_and(|a| accounts.contains(a)))
        .map(|c| {
            let id = c.id.parse::<i64>().unwrap_or_default();
            let account = c.customer_id.as_deref().and_then(|a| a.parse::<i64>().ok());
            let mut row = json!({
                "Id": id,
                "AccountId": account,
                "FirstName": c.name,
                "EmailAddress": c.email,
                "IsActive": true,
            });
            if let (Some(l), Some(o)) = (crm.contact_location(id, account), row.as_object_mut()) {
                o.insert("LocationId".into(), l.into());
                o.insert("LocationName".into(), crm.location_name(l).into());
            }
            row
        })
        .collect();
    let (rows, _) = util::page(&rows, page, size);
    ok(Value::Array(rows))
}

async fn accounts(State(st): State<Arc<St>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let page = q.get("PageNumber").and_then(|p| p.parse().ok()).unwrap_or(1usize).max(1);
    let size = q.get("PageSize").and_then(|p| p.parse().ok()).unwrap_or(50usize).clamp(1, st.config.max_page_size);
    let name = q.get("Filter.Name").filter(|n| !n.is_empty());
    let ids: Option<Vec<String>> = q.get("Filter.Ids").map(|i| i.split(',').map(|x| x.trim().to_string()).collect());
    let all: Vec<Value> = st
        .sim
        .customers()
        .into_iter()
        .filter(|c| name.is_none_or(|n| contains_ci(&c.name, n)))
        .filter(|c| ids.as_ref().is_none_or(|ids| ids.contains(&c.id)))
        .map(|c| json!({"Id": c.id.parse::<i64>().unwrap_or_default(), "Name": c.name, "IsActive": true}))
        .collect();
    let (rows, _) = util::page(&all, page, size);
    ok(Value::Array(rows))
}

async fn locations(State(st): State<Arc<St>>, headers: HeaderMap, Path(account): Path<String>) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    match account.parse::<i64>().ok().filter(|a| account_exists(&st, *a)) {
        Some(a) => ok(lock(&st.crm).locations_json(a)),
        None => fail(StatusCode::NOT_FOUND, 404, format!("Account {account} was not found")),
    }
}

async fn lookup(State(st): State<Arc<St>>, headers: HeaderMap, table: &'static str) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let rows: Vec<Value> = match table {
        "statuses" => STATUSES.iter().map(|(i, n)| json!({"Id": i, "Name": n, "IsActive": true})).collect(),
        "priorities" => PRIORITIES.iter().map(|(i, n, d)| json!({"Id": i, "Name": n, "IsDefault": d})).collect(),
        "queues" => QUEUES.iter().map(|(i, n)| json!({"Id": i, "Name": n, "IsActive": true})).collect(),
        _ => ISSUE_TYPES.iter().map(|(i, n)| json!({"Id": i, "Name": n, "IsActive": true})).collect(),
    };
    ok(Value::Array(rows))
}

async fn sub_issue_types(State(st): State<Arc<St>>, headers: HeaderMap, Path(issue): Path<String>) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let issue: i64 = issue.parse().unwrap_or(-1);
    let rows: Vec<Value> =
        SUB_ISSUE_TYPES.iter().filter(|(p, _, _)| *p == issue).map(|(_, i, n)| json!({"Id": i, "Name": n})).collect();
    ok(Value::Array(rows))
}

async fn create_account(State(st): State<Arc<St>>, headers: HeaderMap, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    if let Err(r) = json_only(&headers) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, 400, "Invalid JSON");
    };
    let name = req.get("AccountName").and_then(Value::as_str).map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return fail(StatusCode::BAD_REQUEST, 400, "AccountName is required");
    }
    for k in ["AccountTypeId", "BusinessTypeId", "AccountManagerId"] {
        if req.get(k).and_then(Value::as_i64).is_none() {
            return fail(StatusCode::BAD_REQUEST, 400, format!("{k} is required"));
        }
    }
    let locations = req.get("Locations").and_then(Value::as_array).cloned().unwrap_or_default();
    if locations.is_empty() {
        return fail(StatusCode::BAD_REQUEST, 400, "Locations is required");
    }
    for l in &locations {
        let named = l.get("LocationName").and_then(Value::as_str).is_some_and(|n| !n.trim().is_empty());
        if !named || !l.get("Addresses").is_some_and(Value::is_array) {
            return fail(StatusCode::BAD_REQUEST, 400, "Each location needs LocationName and Addresses");
        }
    }
    let c = st.sim.create_customer(name);
    let id = c.id.parse::<i64>().unwrap_or_default();
    lock(&st.crm).touch(id);
    let location_name = locations[0].get("LocationName").cloned().unwrap_or(Value::Null);
    ok(json!({
        "Id": id,
        "AccountName": c.name,
        "IsActive": true,
        "Locations": [{"Id": id * 10 + 1, "LocationName": location_name, "IsMain": true, "IsActive": true}],
    }))
}

fn account_id(st: &St, raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|a| account_exists(st, *a))
}

async fn account_contacts(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let Some(a) = account_id(&st, &account) else {
        return fail(StatusCode::NOT_FOUND, 404, format!("Account {account} was not found"));
    };
    let page = q.get("PageNumber").and_then(|p| p.parse().ok()).unwrap_or(1usize).max(1);
    let size = q.get("PageSize").and_then(|p| p.parse().ok()).unwrap_or(50usize).clamp(1, st.config.max_page_size);
    let all: Vec<Value> = st
        .sim
        .contacts()
        .into_iter()
        .filter(|c| c.customer_id.as_deref() == Some(account.as_str()))
        .map(|c| {
            json!({"Id": c.id.parse::<i64>().unwrap_or_default(), "Name": c.name, "LocationId": a * 10 + 1,
                   "LocationName": "Main Office", "EmailAddress": c.email, "Phone": null})
        })
        .collect();
    let (rows, _) = util::page(&all, page, size);
    ok(Value::Array(rows))
}

async fn create_contact(State(st): State<Arc<St>>, headers: HeaderMap, bytes: Bytes) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    if let Err(r) = json_only(&headers) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, 400, "Invalid JSON");
    };
    let text = |k: &str| req.get(k).and_then(Value::as_str).map(str::trim).unwrap_or_default().to_string();
    let (first, last) = (text("FirstName"), text("LastName"));
    if first.is_empty() && last.is_empty() {
        return fail(StatusCode::BAD_REQUEST, 400, "FirstName or LastName is required");
    }
    let Some(account) = req.get("AccountId").and_then(Value::as_i64).filter(|a| account_exists(&st, *a)) else {
        return fail(StatusCode::BAD_REQUEST, 400, "AccountId is required and must exist");
    };
    let Some(location) =
        req.get("LocationId").and_then(Value::as_i64).filter(|l| lock(&st.crm).location_of(account, *l))
    else {
        return fail(StatusCode::BAD_REQUEST, 400, "LocationId does not belong to the account");
    };
    let emails = req.get("Emails").and_then(Value::as_array).cloned().unwrap_or_default();
    let email = emails
        .iter()
        .find(|e| e.get("IsDefault").and_then(Value::as_bool) == Some(true))
        .or(emails.first())
        .and_then(|e| e.get("EmailAddress"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string();
    let name = [first.as_str(), last.as_str()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" ");
    let c = st.sim.create_contact(Some(&account.to_string()), &email, &name);
    let contact_id = c.id.parse::<i64>().unwrap_or_default();
    lock(&st.crm).contact_locations.insert(contact_id, location);
    ok(json!({
        "Id": contact_id,
        "FirstName": first,
        "LastName": last,
        "AccountId": account,
        "LocationId": location,
        "EmailAddress": c.email,
    }))
}

async fn contracts(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let account = q.get("AccountId").and_then(|a| a.parse::<i64>().ok());
    let rows: Vec<Value> = lock(&st.finance)
        .contracts
        .iter()
        .filter(|c| account.is_none_or(|a| c.account_id == a))
        .map(|c| json!({"Id": c.id, "Name": c.name, "IsDefault": c.is_default, "IsActive": c.is_active, "SLAId": null, "EndDate": null}))
        .collect();
    ok(Value::Array(rows))
}

async fn services(State(st): State<Arc<St>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let page = q.get("PageNumber").and_then(|p| p.parse().ok()).unwrap_or(1usize).max(1);
    let size = q.get("PageSize").and_then(|p| p.parse().ok()).unwrap_or(50usize).clamp(1, st.config.max_page_size);
    let name = q.get("Filter.Name").filter(|n| !n.is_empty());
    let all: Vec<Value> = lock(&st.finance)
        .services
        .iter()
        .filter(|(_, n)| name.is_none_or(|f| contains_ci(n, f)))
        .map(|(i, n)| json!({"Id": i, "Name": n, "Description": null}))
        .collect();
    let (rows, _) = util::page(&all, page, size);
    ok_paged(Value::Array(rows), all.len())
}

fn line_json(l: &SimServiceLine, f: &Finance) -> Value {
    let service_name = f.services.iter().find(|(i, _)| *i == l.service_id).map(|(_, n)| n.clone());
    json!({"Id": l.id, "ServiceId": l.service_id, "ServiceName": service_name, "ContractId": l.contract_id, "Units": l.units as f64})
}

fn contract_of(f: &Finance, raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|id| f.contracts.iter().any(|c| c.id == *id))
}

async fn add_service_lines(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Path(contract): Path<String>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    if let Err(r) = json_only(&headers) {
        return r;
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, 400, "Expected a JSON array of services");
    };
    let mut f = lock(&st.finance);
    let Some(cid) = contract_of(&f, &contract) else {
        return fail(StatusCode::NOT_FOUND, 404, format!("Contract {contract} was not found"));
    };
    if items.is_empty() {
        return fail(StatusCode::BAD_REQUEST, 400, "At least one service is required");
    }
    let mut added = Vec::new();
    for item in &items {
        let Some(service) =
            item.get("ServiceId").and_then(Value::as_i64).filter(|s| f.services.iter().any(|(i, _)| i == s))
        else {
            return fail(StatusCode::BAD_REQUEST, 400, "ServiceId is invalid");
        };
        let Some(units) = item.get("Units").and_then(Value::as_u64) else {
            return fail(StatusCode::BAD_REQUEST, 400, "Units is required");
        };
        let id = f.lines.iter().map(|l| l.id).max().unwrap_or(9000) + 1;
        let line = SimServiceLine { id, contract_id: cid, service_id: service, units };
        f.lines.push(line.clone());
        added.push(line);
    }
    let first = line_json(&added[0], &f);
    ok(first)
}
