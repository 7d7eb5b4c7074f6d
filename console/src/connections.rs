//! Connections: the check result in words (from start-up or a re-check), token expiry and
//! personal-access-token warnings, the last poll run, the rate-limit headroom.

use bridge::connectors::TokenKind;
use chrono::Utc;
use std::fmt::Write;

use super::html::{self, esc, url_part};
use super::{Ctx, Reply};

/// Tokens lapsing sooner than this get a warning.
const WARN_DAYS: i64 = 7;

pub async fn page(ctx: &Ctx<'_>, notice: Option<String>) -> Reply {
    let engine = ctx.engine();
    let status = &ctx.console.status;
    let mut body = String::new();
    if engine.config.connections.is_empty() {
        body.push_str("<p>No connections are configured.</p>");
    }
    for (name, cfg) in &engine.config.connections {
        let id = url_part(name);
        let _ = write!(
            body,
            "<section class=\"connection\" id=\"conn-{anchor}\" aria-labelledby=\"h-{anchor}\"><h2 id=\"h-{anchor}\">{name}</h2>\
<dl class=\"facts\"><dt>Kind</dt><dd>{kind}</dd><dt>Base URL</dt><dd>{url}</dd>",
            anchor = esc(name),
            name = esc(name),
            kind = esc(&format!("{:?}", cfg.kind)),
            url = esc(&cfg.base_url),
        );
        match status.check_of(name) {
            None => body.push_str("<dt>Health</dt><dd class=\"health\">not checked yet</dd>"),
            Some(h) => {
                let class = if h.ok { "ok" } else { "err" };
                let _ = write!(
                    body,
                    "<dt>Health</dt><dd class=\"health notice {class}\">{}<br><small>checked {}</small>",
                    esc(&h.summary()),
                    h.at.format("%Y-%m-%d %H:%M:%S UTC")
                );
                if !h.steps.is_empty() {
                    body.push_str("<ul class=\"steps\">");
                    for s in &h.steps {
                        let _ = write!(body, "<li>{}</li>", esc(s));
                    }
                    body.push_str("</ul>");
                }
                body.push_str("</dd>");
            }
        }
        let token = match engine.connectors.get(name) {
            None => "no connector".to_string(),
            Some(c) => match c.token_state().await {
                Err(e) => html::notice(false, &format!("token state unknown: {e}")),
                Ok(t) => {
                    let left = t.expires_at.map(|at| (at, (at - Utc::now()).num_days()));
                    match (t.kind, left) {
                        (TokenKind::None, _) => "no expiring credential".to_string(),
                        (TokenKind::Renewable, None) => "renewed by the bridge".to_string(),
                        (TokenKind::Renewable, Some((at, _))) => {
                            format!("renewed by the bridge; current token lapses {}", at.format("%Y-%m-%d %H:%M UTC"))
                        }
                        (TokenKind::Personal, None) => format!(
                            "<span class=\"notice warn\">{}</span>",
                            esc("personal access token: only a person can renew it; its expiry is unknown")
                        ),
                        (TokenKind::Personal, Some((at, days))) => {
                            let text = format!(
                                "personal access token: only a person can renew it; it expires {} ({days} days)",
                                at.format("%Y-%m-%d")
                            );
                            let class = if days < WARN_DAYS { "err" } else { "warn" };
                            format!("<span class=\"notice {class}\">{}</span>", esc(&text))
                        }
                    }
                }
            },
        };
        let _ = write!(body, "<dt>Token</dt><dd class=\"token\">{token}</dd>");
        match status.poll_of(name) {
            None => body.push_str("<dt>Last poll run</dt><dd>none since start-up</dd>"),
            Some(p) => {
                let _ = write!(
                    body,
                    "<dt>Last poll run</dt><dd>{} UTC: {} ticket(s), {} request(s), {} completed, {} failed batch(es), {} ms</dd>",
                    p.at.format("%Y-%m-%d %H:%M:%S"),
                    p.report.tickets,
                    p.report.requests,
                    p.report.completed,
                    p.report.failed_batches,
                    p.duration.as_millis()
                );
            }
        }
        let rate = super::rate_headroom::describe(ctx, name, cfg.rate_limit_per_hour);
        let _ = write!(
            body,
            "<dt>Rate limit</dt><dd class=\"rate\">{rate}</dd></dl>\
<form method=\"post\" action=\"/connections/{id}/check\">{}<button type=\"submit\">Check {} now</button></form>{}</section>",
            ctx.csrf(),
            esc(name),
            if ctx.console.local { super::oauth_connect::form(ctx, name).await } else { String::new() }
        );
    }
    Reply::ok(ctx.page("Connections", "/connections", notice, &body))
}

pub async fn recheck(ctx: &Ctx<'_>, conn: &str) -> Reply {
    if !ctx.engine().connectors.contains_key(conn) {
        return page(ctx, Some(html::notice(false, &format!("There is no connection '{conn}'.")))).await;
    }
    let h = ctx.console.status.check(ctx.engine(), conn).await;
    page(ctx, Some(html::notice(h.ok, &format!("{conn}: {}", h.summary())))).await
}
