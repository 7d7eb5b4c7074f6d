//! The console's "Connect" flow for NinjaOne connections: the same OAuth authorization-code flow
//! as `ticket-bridge connect` (shared code in [`crate::oauth`]), with the console's own callback
//! page as the redirect URI. The form posts with CSRF; the pending grant (client secret included)
//! stays in this process's memory, keyed by the random `state`, for at most [`PENDING_FOR`].
//!
//! The callback is answered without a signed-in session: the session cookie is SameSite=Strict,
//! so a browser coming back from NinjaOne does not send it. The unguessable, single-use `state`
//! handed out to the signed-in admin who posted the form is what authorizes the callback.

use super::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::html::{self, Frame, esc, url_part};
use super::status::Health;
use super::{Console, Ctx, Form, Reply};
use crate::oauth::{self, Authorization};

/// Path of the callback the console registers as redirect URI.
pub const CALLBACK_PATH: &str = "/connections/oauth/callback";
/// How long a started authorization may take.
pub const PENDING_FOR: Duration = Duration::from_secs(600);
/// At most this many authorizations wait at once (the oldest is dropped).
const MAX_PENDING: usize = 32;

/// One authorization waiting for NinjaOne to send the browser back.
struct Pending {
    connection: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    started: Instant,
}

/// Authorizations started from the console, by `state`.
#[derive(Clone, Default)]
pub struct PendingGrants(Arc<Mutex<HashMap<String, Pending>>>);

impl PendingGrants {
    fn insert(&self, state: String, p: Pending) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|_, p| p.started.elapsed() < PENDING_FOR);
            while m.len() >= MAX_PENDING {
                let Some(oldest) = m.iter().min_by_key(|(_, p)| p.started).map(|(k, _)| k.clone()) else { break };
                m.remove(&oldest);
            }
            m.insert(state, p);
        }
    }

    /// Removes and returns the unexpired authorization whose state is `state` (single use).
    fn take(&self, state: Option<&str>) -> Option<Pending> {
        let state = state?;
        let mut m = self.0.lock().ok()?;
        let key = m.keys().find(|k| oauth::state_matches(Some(state), k))?.clone();
        m.remove(&key).filter(|p| p.started.elapsed() < PENDING_FOR)
    }
}

/// The "Connect" form of a NinjaOne connection on the Connections page.
pub async fn form(ctx: &Ctx<'_>, name: &str) -> String {
    let engine = ctx.engine();
    let Ok(cfg) = oauth::oauth_connection(engine, name) else { return String::new() };
    let stored = engine.secrets.get(&cfg.secret).await.ok();
    let client_id = stored.as_ref().and_then(|s| s.get("client_id")).unwrap_or("");
    let has_secret = stored.as_ref().and_then(|s| s.get("client_secret")).is_some_and(|s| !s.is_empty());
    let secret_hint = if has_secret { "leave blank to use the stored one" } else { "required" };
    let id = esc(name);
    format!(
        "<details class=\"connect\"><summary>Connect {id} to NinjaOne (OAuth)</summary>\
<form method=\"post\" action=\"/connections/{path}/connect\">{csrf}\
<p><label for=\"cid-{id}\">Client id</label><br><input id=\"cid-{id}\" name=\"client_id\" value=\"{cid}\" required size=\"40\"></p>\
<p><label for=\"csec-{id}\">Client secret ({secret_hint})</label><br>\
<input id=\"csec-{id}\" name=\"client_secret\" type=\"password\" autocomplete=\"off\" size=\"40\"{req}></p>\
<p>Register <code>{redirect}</code> as a redirect URI of the NinjaOne app. The refresh token is stored in \
secret <code>{secret}</code> ({backend}).</p>\
<p><button type=\"submit\">Connect {id}</button></p></form></details>",
        path = url_part(name),
        csrf = ctx.csrf(),
        cid = esc(client_id),
        req = if has_secret { "" } else { " required" },
        redirect = esc(&callback_uri(ctx.headers).unwrap_or_else(|| CALLBACK_PATH.to_string())),
        secret = esc(&cfg.secret),
        backend = oauth::backend_name(engine),
    )
}

/// The redirect URI of this console: scheme and host of the request, then [`CALLBACK_PATH`].
fn callback_uri(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?.trim();
    if host.is_empty() || host.contains(['/', '?', '#', '@', '\\']) {
        return None;
    }
    let scheme = if super::session::is_https(headers) { "https" } else { "http" };
    let u = url::Url::parse(&format!("{scheme}://{host}{CALLBACK_PATH}")).ok()?;
    (u.path() == CALLBACK_PATH && u.host_str().is_some()).then(|| u.to_string())
}

/// POST /connections/{conn}/connect: starts the authorization and sends the browser to NinjaOne.
pub async fn start(ctx: &Ctx<'_>, conn: &str) -> Reply {
    match begin(ctx, conn).await {
        Ok(url) => Reply::Redirect(url),
        Err(e) => {
            let text = format!("{conn}: cannot start connecting: {e:#}");
            super::connections::page(ctx, Some(html::notice(false, &text))).await
        }
    }
}

async fn begin(ctx: &Ctx<'_>, conn: &str) -> anyhow::Result<String> {
    let engine = ctx.engine();
    let cfg = oauth::oauth_connection(engine, conn)?;
    let secrets = oauth::secrets_backend(engine).await;
    let secret = oauth::current_secret(secrets.as_ref(), cfg).await?;
    let Some(client_id) = ctx.form.get("client_id") else {
        anyhow::bail!("client_id: enter the client id of the NinjaOne app");
    };
    let client_secret = match ctx.form.get("client_secret").or(secret.get("client_secret").filter(|s| !s.is_empty())) {
        Some(s) => s.to_string(),
        None => anyhow::bail!("client_secret: enter the client secret of the NinjaOne app"),
    };
    let Some(redirect_uri) = callback_uri(ctx.headers) else {
        anyhow::bail!("the request's Host header does not give this console's address for the redirect URI");
    };
    let state = oauth::new_state();
    let auth =
        Authorization { cfg, client_id, redirect_uri: &redirect_uri, scope: oauth::DEFAULT_SCOPE, state: &state };
    let url = auth.url()?.to_string();
    let pending = Pending {
        connection: conn.to_string(),
        client_id: client_id.to_string(),
        client_secret,
        redirect_uri,
        started: Instant::now(),
    };
    ctx.console.oauth.insert(state, pending);
    tracing::info!(connection = %conn, "console: OAuth authorization started");
    Ok(url)
}

/// GET [`CALLBACK_PATH`]: checks `state`, exchanges the code, stores the refresh token, runs
/// `check` and records it for the Connections page.
pub async fn callback(console: &Console, query: &Form) -> Response {
    let Some(p) = console.oauth.take(query.get("state")) else {
        return reply(
            StatusCode::BAD_REQUEST,
            &html::notice(
                false,
                "This redirect does not belong to an authorization started here, has expired or was already used. \
Nothing was stored; start again from Connections.",
            ),
        );
    };
    let conn = p.connection.clone();
    if let Some(err) = query.get("error") {
        let text = format!("{conn}: NinjaOne refused the authorization: {err}. Nothing was stored.");
        return reply(StatusCode::BAD_REQUEST, &html::notice(false, &text));
    }
    let Some(code) = query.get("code") else {
        return reply(
            StatusCode::BAD_REQUEST,
            &html::notice(false, "The redirect carries no code. Nothing was stored."),
        );
    };
    match finish(console, &p, code).await {
        Ok(h) => {
            let text = format!("{conn}: connected to NinjaOne; the refresh token is stored. Check: {}", h.summary());
            let mut body = html::notice(h.ok, &text);
            body.push_str("<ul class=\"steps\">");
            for s in &h.steps {
                body.push_str(&format!("<li>{}</li>", esc(s)));
            }
            body.push_str("</ul>");
            reply(StatusCode::OK, &body)
        }
        Err(e) => reply(StatusCode::BAD_GATEWAY, &html::notice(false, &format!("{conn}: {e:#}"))),
    }
}

async fn finish(console: &Console, p: &Pending, code: &str) -> anyhow::Result<Health> {
    let engine = console.engine.as_ref();
    let cfg = oauth::oauth_connection(engine, &p.connection)?;
    let auth = Authorization {
        cfg,
        client_id: &p.client_id,
        redirect_uri: &p.redirect_uri,
        scope: oauth::DEFAULT_SCOPE,
        state: "",
    };
    let refresh = auth.exchange(&p.client_secret, code).await?;
    let secrets = oauth::secrets_backend(engine).await;
    let secret = oauth::current_secret(secrets.as_ref(), cfg).await?;
    oauth::store_grant(secrets.as_ref(), cfg, secret, &p.client_id, &p.client_secret, &refresh).await?;
    tracing::info!(connection = %p.connection, backend = oauth::backend_name(engine), "console: stored the refresh token");
    let at = chrono::Utc::now();
    let health = match oauth::check(&p.connection, cfg, secrets).await {
        Ok(r) => Health { at, ok: r.ok, steps: r.steps, error: None },
        Err(e) => Health { at, ok: false, steps: vec![], error: Some(format!("{e:#}")) },
    };
    console.status.record_check(&p.connection, health.clone());
    Ok(health)
}

fn reply(status: StatusCode, body: &str) -> Response {
    let frame = Frame { current: "", desk: false, sign_out_csrf: None, notice: None };
    let body = format!("{body}<p><a href=\"/connections\">Back to Connections</a></p>");
    super::finish(Reply::Html(status, html::page("Connect", &frame, &body)))
}

/// Widens the page's `form-action` to the NinjaOne origins, so the Connect form's redirect to the
/// authorize page is not blocked by the console's content security policy.
pub fn allow_vendor_forms(console: &Console, res: &mut Response) {
    let mut origins: Vec<String> = Vec::new();
    for name in console.engine.config.connections.keys() {
        if let Ok(cfg) = oauth::oauth_connection(&console.engine, name)
            && let Ok(u) = url::Url::parse(&cfg.base_url)
        {
            let o = u.origin().ascii_serialization();
            if o != "null" && !origins.contains(&o) {
                origins.push(o);
            }
        }
    }
    if origins.is_empty() {
        return;
    }
    let Some(csp) = res.headers().get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()) else { return };
    let widened = csp.replace("form-action 'self'", &format!("form-action 'self' {}", origins.join(" ")));
    if let Ok(v) = HeaderValue::from_str(&widened) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
}
