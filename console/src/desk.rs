//! The built-in sandbox desk (local mode): its tickets, closed or rejected as a technician would.

use http::StatusCode;
use std::fmt::Write;

use super::html::{self, esc, url_part};
use super::{Ctx, Reply};

/// Statuses a technician can close with (the sandbox connection maps them to fulfilled / rejected).
const CLOSE_WITH: [&str; 3] = ["Resolved", "Closed", "Rejected"];

pub async fn page(ctx: &Ctx<'_>, notice: Option<String>) -> Reply {
    let Some(desk) = &ctx.console.desk_url else {
        return Reply::Html(
            StatusCode::NOT_FOUND,
            ctx.page(
                "Sandbox desk",
                "/desk",
                notice,
                "<p>serve is not running the built-in sandbox desk (a config file is in use).</p>",
            ),
        );
    };
    let tickets: Vec<serde_json::Value> = match ctx.console.http.get(format!("{desk}/_sim/tickets")).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(e) => {
            let n = html::notice(false, &format!("The sandbox desk did not answer: {e}"));
            return Reply::ok(ctx.page("Sandbox desk", "/desk", Some(n), ""));
        }
    };
    let mut body = String::new();
    if tickets.is_empty() {
        body.push_str("<p id=\"no-tickets\">The desk has no tickets yet.</p>");
    } else {
        let _ = write!(
            body,
            "<table id=\"desk-tickets\"><caption>Tickets ({})</caption><thead><tr><th scope=\"col\">Ticket</th><th scope=\"col\">Title</th><th scope=\"col\">Status</th><th scope=\"col\">Act as technician</th></tr></thead><tbody>",
            tickets.len()
        );
        for t in tickets.iter().rev() {
            let id = t["id"].as_u64().map(|i| i.to_string()).unwrap_or_default();
            let status = t["status"].as_str().unwrap_or("");
            let open = !CLOSE_WITH.contains(&status);
            let _ = write!(
                body,
                "<tr data-ticket=\"{id}\"><td>{number}</td><td>{title}</td><td class=\"ticket-status\">{status}</td><td>",
                id = esc(&id),
                number = esc(t["number"].as_str().unwrap_or(&id)),
                title = esc(t["title"].as_str().unwrap_or("")),
                status = esc(status),
            );
            if open {
                let options: Vec<(String, String)> =
                    CLOSE_WITH.iter().map(|s| (s.to_string(), s.to_string())).collect();
                let _ = write!(
                    body,
                    "<form method=\"post\" action=\"/desk/tickets/{path}/close\" class=\"inline\">{csrf}{select} <button type=\"submit\" id=\"close-{id}\">Close ticket {id}</button></form>",
                    path = url_part(&id),
                    csrf = ctx.csrf(),
                    select = html::select_with_id(&format!("status-{id}"), "status", "Status", &options, "Resolved"),
                    id = esc(&id),
                );
            }
            body.push_str("</td></tr>");
        }
        body.push_str("</tbody></table>");
    }
    Reply::ok(ctx.page("Sandbox desk", "/desk", notice, &body))
}

pub async fn close(ctx: &Ctx<'_>, id: &str) -> Reply {
    let Some(desk) = &ctx.console.desk_url else { return page(ctx, None).await };
    let status = ctx.form.get("status").unwrap_or("Resolved");
    if !CLOSE_WITH.contains(&status) {
        return page(ctx, Some(html::notice(false, &format!("status must be one of {}", CLOSE_WITH.join(", "))))).await;
    }
    let url = format!("{desk}/_sim/tickets/{}/close", url_part(id));
    let res = ctx.console.http.post(url).json(&serde_json::json!({"status": status})).send().await;
    let notice = match res {
        Ok(r) if r.status().is_success() => html::notice(true, &format!("Ticket {id} set to {status}.")),
        Ok(r) => html::notice(false, &format!("The desk refused to close ticket {id} ({}).", r.status())),
        Err(e) => html::notice(false, &format!("The sandbox desk did not answer: {e}")),
    };
    page(ctx, Some(notice)).await
}
