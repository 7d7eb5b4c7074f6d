//! The web console of `ticket-bridge serve` and of the `web-console` Lambda function: server-rendered
//! pages over the engine and the public API (every change goes through [`bridge::engine::api`]
//! with the signed-in key, so the console can do exactly what that key may do through the API).
//! No script (except the apply progress page's one inline script, allowed by a per-response
//! nonce), nothing from another origin. Framework-free: requests come in as [`ConsoleRequest`]
//! and leave as [`Response`] (`http` types), so axum (serve) and API Gateway (the function) both
//! carry it.

pub mod apply_jobs;
mod connections;
mod desk;
pub mod html;
mod mapping_contacts;
mod mappings;
pub mod oauth;
pub mod oauth_connect;
mod rate_headroom;
pub mod session;
pub mod status;
mod tasks;
mod time_filter;

use bridge::config::KeyScope;
use bridge::engine::Engine;
use bridge::engine::api::{self, ApiRequest, ApiResponse};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;

use html::{Frame, esc};
use session::{Session, Sessions};
pub use status::ConnectionStatus;

/// A console answer: an HTML page or a redirect, to be sent by whatever server runs the console.
pub type Response = http::Response<String>;

/// Whether `path` is a console page (everything the API and the sandbox proxy do not own).
pub fn owns(path: &str) -> bool {
    !(path == "/healthz" || path.starts_with("/v1/") || path == "/v1" || path.starts_with("/sandbox/"))
}

/// What the console works with.
#[derive(Clone)]
pub struct Console {
    pub engine: Arc<Engine>,
    /// Base URL of the built-in sandbox desk (local mode without a config).
    pub desk_url: Option<String>,
    pub http: reqwest::Client,
    pub sessions: Sessions,
    pub status: ConnectionStatus,
    /// OAuth authorizations started from the Connections page.
    pub oauth: oauth_connect::PendingGrants,
    /// Running inside `ticket-bridge serve`: offers the pages that need one long-lived process
    /// (the sandbox desk, the OAuth Connect flow whose pending grants live in memory). `false` in
    /// the Lambda function, which hides them.
    pub local: bool,
    /// Mapping applies running in the background (`serve` only; the function applies in-request).
    pub jobs: apply_jobs::ApplyJobs,
}

/// One console request, already read.
pub struct ConsoleRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub peer_loopback: bool,
}

/// Decoded `application/x-www-form-urlencoded` pairs (form body or query string).
pub struct Form(Vec<(String, String)>);

impl Form {
    fn parse(raw: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(raw).into_owned().collect())
    }
    /// The first value of `k`, trimmed; `None` when absent or blank.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }
    /// Every non-blank value of `k`.
    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0.iter().filter(|(key, _)| key == k).map(|(_, v)| v.trim()).filter(|v| !v.is_empty()).collect()
    }
}

/// A signed-in (or open-mode) request being answered.
pub struct Ctx<'a> {
    pub console: &'a Console,
    pub session: Session,
    pub query: Form,
    pub form: Form,
    pub loopback: bool,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

impl Ctx<'_> {
    pub fn engine(&self) -> &Engine {
        &self.console.engine
    }

    /// Calls the public API as the signed-in user.
    pub async fn api(&self, method: &str, path: &str, query: Option<&str>, ct: &str, body: &[u8]) -> ApiResponse {
        let headers = api_headers(self.session.key.as_deref(), ct);
        let req = ApiRequest { method, path, query, headers: &headers, body, peer_loopback: self.loopback };
        api::handle(self.engine(), req, chrono::Utc::now()).await
    }

    /// Wraps `body` in the page frame.
    pub fn page(&self, title: &str, current: &str, notice: Option<String>, body: &str) -> String {
        let frame = Frame {
            current,
            desk: self.console.local && self.console.desk_url.is_some(),
            sign_out_csrf: self.session.key.as_ref().map(|_| self.session.csrf.as_str()),
            notice,
        };
        html::page(title, &frame, body)
    }

    /// The hidden CSRF field for this session's forms.
    pub fn csrf(&self) -> String {
        html::csrf_field(&self.session.csrf)
    }
}

/// The message of an API error body.
pub fn api_error(res: &ApiResponse) -> String {
    let e = &res.body["error"];
    let msg = e["message"].as_str().unwrap_or("request failed");
    match e["field"].as_str() {
        Some(f) => format!("{msg} (field: {f})"),
        None => msg.to_string(),
    }
}

fn api_headers(key: Option<&str>, ct: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(k) = key
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {k}"))
    {
        h.insert(header::AUTHORIZATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(ct) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h
}

/// A console answer.
pub enum Reply {
    Html(StatusCode, String),
    /// 303 to a path of the console (or, for the Connect flow, to the vendor's authorize page).
    Redirect(String),
    /// A page with one inline script, allowed by the Content-Security-Policy through this nonce.
    Scripted(String, String),
}

impl Reply {
    pub fn ok(html: String) -> Self {
        Self::Html(StatusCode::OK, html)
    }
}

/// Answers one console request.
pub async fn handle(console: &Console, req: ConsoleRequest<'_>) -> Response {
    let https = session::is_https(req.headers);
    let auth = &console.engine.config.auth;
    let open = auth.api_keys.is_empty() && auth.hmac_secret.is_none();
    if open && !req.peer_loopback {
        return bare(StatusCode::FORBIDDEN, "No API keys are configured: the console answers loopback callers only.");
    }
    if console.local && req.method == "GET" && req.path == oauth_connect::CALLBACK_PATH {
        return oauth_connect::callback(console, &Form::parse(req.query.unwrap_or("").as_bytes())).await;
    }
    let (session, new_cookie) = match console.sessions.find(req.headers) {
        Some(s) => (s, false),
        None => (console.sessions.start(None), true),
    };
    let mut set_cookie = new_cookie.then(|| session::set_cookie(&session, https));
    let form = if req.method == "POST" { Form::parse(req.body) } else { Form(vec![]) };
    if req.method == "POST" && !session.csrf_ok(form.get("csrf")) {
        let r = bare(
            StatusCode::FORBIDDEN,
            "The form was stale or not sent by this console. Reload the page and try again.",
        );
        return with_cookie(r, set_cookie);
    }
    if req.path == "/logout" && req.method == "POST" {
        console.sessions.end(&session.id);
        return with_cookie(redirect("/login"), Some(session::clear_cookie(https)));
    }
    let mut ctx = Ctx {
        console,
        session,
        query: Form::parse(req.query.unwrap_or("").as_bytes()),
        form,
        loopback: req.peer_loopback,
        path: req.path,
        headers: req.headers,
    };
    if !open {
        let signed_in = match &ctx.session.key {
            Some(key) => admin_key_ok(console, key).await,
            None => false,
        };
        if !signed_in {
            if req.path == "/login" && req.method == "POST" {
                let key = ctx.form.get("api_key").unwrap_or("").to_string();
                if admin_key_ok(console, &key).await {
                    console.sessions.end(&ctx.session.id);
                    let s = console.sessions.start(Some(key));
                    tracing::info!("console sign-in");
                    return with_cookie(redirect("/"), Some(session::set_cookie(&s, https)));
                }
                tracing::warn!("console sign-in refused");
                let page = login_page(&ctx, Some("That key is unknown or not admin-scoped."));
                return with_cookie(finish(Reply::Html(StatusCode::UNAUTHORIZED, page)), set_cookie);
            }
            if req.path == "/login" {
                return with_cookie(finish(Reply::ok(login_page(&ctx, None))), set_cookie);
            }
            if ctx.session.key.is_some() {
                console.sessions.end(&ctx.session.id);
                set_cookie = Some(session::clear_cookie(https));
            }
            return with_cookie(redirect("/login"), set_cookie);
        }
    }
    if req.path == "/login" {
        return with_cookie(redirect("/"), set_cookie);
    }
    let reply = route(&mut ctx, req.method).await;
    let mut res = finish(reply);
    if console.local && req.path.starts_with("/connections") {
        oauth_connect::allow_vendor_forms(console, &mut res);
    }
    with_cookie(res, set_cookie)
}

async fn route(ctx: &mut Ctx<'_>, method: &str) -> Reply {
    let path = ctx.path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segments.as_slice()) {
        ("GET", []) => tasks::list(ctx).await,
        ("GET", ["tasks", id]) => tasks::detail(ctx, id, None).await,
        ("POST", ["tasks", id, op @ ("replay" | "cancel")]) => tasks::act(ctx, id, op).await,
        ("GET", ["dead-letters"]) => tasks::dead_letters(ctx, None).await,
        ("POST", ["dead-letters", "replay"]) => tasks::replay_many(ctx).await,
        ("GET", ["connections"]) => connections::page(ctx, None).await,
        ("POST", ["connections", conn, "check"]) => connections::recheck(ctx, conn).await,
        ("POST", ["connections", conn, "connect"]) if ctx.console.local => oauth_connect::start(ctx, conn).await,
        ("GET", ["mappings"]) => mappings::page(ctx, None).await,
        ("POST", ["mappings", conn, op]) => mappings::act(ctx, conn, op).await,
        ("GET", ["mappings", _conn, "jobs", id]) if ctx.console.local => mappings::job(ctx, id).await,
        ("GET", ["desk"]) if ctx.console.local => desk::page(ctx, None).await,
        ("POST", ["desk", "tickets", id, "close"]) if ctx.console.local => desk::close(ctx, id).await,
        _ => Reply::Html(StatusCode::NOT_FOUND, ctx.page("Not found", "", None, "<p>There is no such page.</p>")),
    }
}

/// Whether `key` is a configured admin-scoped API key.
async fn admin_key_ok(console: &Console, key: &str) -> bool {
    if key.is_empty() {
        return false;
    }
    let headers = api_headers(Some(key), "text/plain");
    let req = ApiRequest { method: "GET", path: "/", query: None, headers: &headers, body: &[], peer_loopback: false };
    matches!(api::authenticate(&console.engine, &req, chrono::Utc::now()).await, Ok(c) if c.scope == KeyScope::Admin)
}

fn login_page(ctx: &Ctx<'_>, error: Option<&str>) -> String {
    let body = format!(
        "<form method=\"post\" action=\"/login\">{csrf}<p><label for=\"api_key\">Admin API key</label><br>\
<input id=\"api_key\" name=\"api_key\" type=\"password\" autocomplete=\"current-password\" required size=\"40\"></p>\
<p><button type=\"submit\">Sign in</button></p></form>\
<p>Use a key from <code>[[auth.api_keys]]</code> with <code>scope = \"admin\"</code>. It is kept on the server, not in your browser.</p>",
        csrf = ctx.csrf()
    );
    let frame =
        Frame { current: "/login", desk: false, sign_out_csrf: None, notice: error.map(|e| html::notice(false, e)) };
    html::page("Sign in", &frame, &body)
}

/// The console's Content-Security-Policy: nothing from elsewhere, no script.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn finish(reply: Reply) -> Response {
    match reply {
        Reply::Scripted(body, nonce) => {
            let mut r = finish(Reply::Html(StatusCode::OK, body));
            let csp = format!("{CSP}; script-src 'nonce-{nonce}'; connect-src 'self'");
            if let Ok(v) = HeaderValue::from_str(&csp) {
                r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
            }
            r
        }
        Reply::Html(status, body) => {
            let mut r = Response::new(body);
            *r.status_mut() = status;
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Reply::Redirect(to) => redirect(&to),
    }
}

fn redirect(to: &str) -> Response {
    let mut r = Response::new(String::new());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn bare(status: StatusCode, text: &str) -> Response {
    let body = format!("<!doctype html><html lang=\"en\"><title>Ticket Bridge</title><p>{}</p></html>", esc(text));
    finish(Reply::Html(status, body))
}

fn with_cookie(mut r: Response, cookie: Option<String>) -> Response {
    if let Some(c) = cookie
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
