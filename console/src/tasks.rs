//! Tasks and dead letters: lists with filters, a task's detail and timeline, replay and cancel.

use bridge::domain::{Task, TaskResult, TaskState};
use http::StatusCode;
use std::fmt::Write;

use super::html::{self, esc, url_part};
use super::{Ctx, Reply, api_error, time_filter};

/// Tasks read per state for the list (the newest first within each state).
const PER_STATE: usize = 200;

/// The Tasks page: filters on state, result, connection, source and time received (since /
/// until), search by external id.
pub async fn list(ctx: &Ctx<'_>) -> Reply {
    let q = &ctx.query;
    let state = q.get("state").and_then(TaskState::parse);
    let result = q.get("result").filter(|r| TaskResult::ALL.iter().any(|x| x.as_str() == *r));
    let connection = q.get("connection");
    let source = q.get("source");
    let search = q.get("q");
    let mut errors = Vec::new();
    let mut bound = |field: &str, b: time_filter::Bound| {
        q.get(field).and_then(|v| time_filter::parse(field, v, b).map_err(|e| errors.push(e)).ok())
    };
    let since = bound("since", time_filter::Bound::Since);
    let until = bound("until", time_filter::Bound::Until);
    let states: Vec<TaskState> = match state {
        Some(s) => vec![s],
        None => TaskState::ALL.to_vec(),
    };
    let mut items = Vec::new();
    let mut notice = None;
    for s in states {
        match ctx.engine().list(s, PER_STATE, None).await {
            Ok(page) => items.extend(page.items),
            Err(e) => {
                notice = Some(html::notice(false, &format!("Could not read {} tasks: {}", s.as_str(), e.message)))
            }
        }
    }
    items.retain(|t| {
        result.is_none_or(|r| t.result().as_str() == r)
            && connection.is_none_or(|c| t.connection == c)
            && source.is_none_or(|s| t.source == s)
            && search.is_none_or(|x| t.external_id.to_lowercase().contains(&x.to_lowercase()))
            && since.is_none_or(|at| t.created_at >= at)
            && until.is_none_or(|at| t.created_at <= at)
    });
    if !errors.is_empty() {
        notice = Some(html::notice(false, &format!("{} (that bound is not applied)", errors.join("; "))));
    }
    items.sort_by_key(|t| std::cmp::Reverse(t.created_at));

    let opts = |all: &str, values: Vec<String>| -> Vec<(String, String)> {
        std::iter::once((String::new(), all.to_string())).chain(values.into_iter().map(|v| (v.clone(), v))).collect()
    };
    let mut body = String::from("<form method=\"get\" action=\"/\" class=\"filters\" role=\"search\">");
    let _ = write!(
        body,
        "<div>{}</div><div>{}</div><div>{}</div>\
<div><label for=\"f-source\">Source</label><input id=\"f-source\" name=\"source\" value=\"{}\"></div>\
<div><label for=\"f-q\">External id</label><input id=\"f-q\" name=\"q\" type=\"search\" value=\"{}\"></div>\
<div><label for=\"f-since\">Received since (UTC)</label><input id=\"f-since\" name=\"since\" type=\"datetime-local\" value=\"{}\"></div>\
<div><label for=\"f-until\">Received until (UTC)</label><input id=\"f-until\" name=\"until\" type=\"datetime-local\" value=\"{}\"></div>\
<div><button type=\"submit\">Filter</button> <a href=\"/\">Clear</a></div></form>",
        html::select(
            "state",
            "State",
            &opts("any", TaskState::ALL.map(|s| s.as_str().to_string()).to_vec()),
            q.get("state").unwrap_or("")
        ),
        html::select(
            "result",
            "Result",
            &opts("any", TaskResult::ALL.map(|s| s.as_str().to_string()).to_vec()),
            result.unwrap_or("")
        ),
        html::select(
            "connection",
            "Connection",
            &opts("any", ctx.engine().config.connections.keys().cloned().collect()),
            connection.unwrap_or("")
        ),
        esc(source.unwrap_or("")),
        esc(search.unwrap_or("")),
        esc(q.get("since").unwrap_or("")),
        esc(q.get("until").unwrap_or("")),
    );
    body.push_str(&task_table(&items, "Tasks", None));
    Reply::ok(ctx.page("Tasks", "/", notice, &body))
}

/// A table of tasks; with `select`, a checkbox per row for the form with that id.
fn task_table(items: &[Task], caption: &str, select: Option<&str>) -> String {
    if items.is_empty() {
        return "<p id=\"no-tasks\">No tasks match.</p>".to_string();
    }
    let mut s = format!("<table id=\"tasks\"><caption>{} ({})</caption><thead><tr>", esc(caption), items.len());
    if select.is_some() {
        s.push_str("<th scope=\"col\">Select</th>");
    }
    s.push_str("<th scope=\"col\">Received</th><th scope=\"col\">Task</th><th scope=\"col\">Source</th><th scope=\"col\">External id</th><th scope=\"col\">Title</th><th scope=\"col\">Connection</th><th scope=\"col\">State</th><th scope=\"col\">Result</th><th scope=\"col\">Ticket</th><th scope=\"col\">Last error</th></tr></thead><tbody>");
    for t in items {
        let _ = write!(s, "<tr data-task=\"{}\">", esc(t.id.as_str()));
        if let Some(form) = select {
            let _ = write!(
                s,
                "<td><input type=\"checkbox\" form=\"{form}\" name=\"id\" value=\"{id}\" id=\"sel-{id}\" aria-label=\"Select task {ext}\"></td>",
                id = esc(t.id.as_str()),
                ext = esc(&t.external_id)
            );
        }
        let _ = write!(
            s,
            "<td>{}</td><td><a href=\"/tasks/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"state\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.created_at.format("%Y-%m-%d %H:%M:%S"),
            url_part(t.id.as_str()),
            esc(t.id.as_str()),
            esc(&t.source),
            esc(&t.external_id),
            esc(&title(t)),
            esc(&t.connection),
            esc(t.state.as_str()),
            esc(t.result().as_str()),
            t.ticket.as_ref().map(|k| esc(k.number.as_deref().unwrap_or(&k.id))).unwrap_or_default(),
            esc(t.last_error.as_deref().unwrap_or("")),
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// What the task is about, in a few words (the default ticket title).
fn title(t: &Task) -> String {
    let view = bridge::engine::task_json(t);
    bridge::render::render(bridge::render::DEFAULT_TITLE, &view, &t.connection).unwrap_or_default()
}

/// One task: facts, ticket link, last error, timeline, replay / cancel.
pub async fn detail(ctx: &Ctx<'_>, id: &str, notice: Option<String>) -> Reply {
    let task = match ctx.engine().get(id).await {
        Ok(t) => t,
        Err(e) => {
            let body = format!("<p>{}</p><p><a href=\"/\">All tasks</a></p>", esc(&e.message));
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::NOT_FOUND);
            return Reply::Html(status, ctx.page("Task not found", "/", notice, &body));
        }
    };
    let notice = notice.or_else(|| match ctx.query.get("done") {
        Some("replay") => Some(html::notice(true, "Replayed: the task is queued for ticket creation again.")),
        Some("cancel") => Some(html::notice(true, "Cancelled.")),
        _ => None,
    });
    let ticket = match &task.ticket {
        None => "none yet".to_string(),
        Some(k) => {
            let label = esc(k.number.as_deref().unwrap_or(&k.id));
            let status = k.remote_status.as_deref().map(|s| format!(" ({})", esc(s))).unwrap_or_default();
            match k.url.as_deref().filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
                Some(u) => format!("<a id=\"ticket-link\" href=\"{}\" rel=\"noreferrer\">{label}</a>{status}", esc(u)),
                None => format!("<span id=\"ticket-link\">{label}</span>{status}"),
            }
        }
    };
    let mut body = format!(
        "<dl class=\"facts\"><dt>Title</dt><dd>{title}</dd><dt>State</dt><dd id=\"task-state\" class=\"state\">{state}</dd>\
<dt>Result</dt><dd id=\"task-result\">{result}</dd><dt>Source</dt><dd>{source}</dd><dt>External id</dt><dd>{ext}</dd>\
<dt>Connection</dt><dd>{conn}</dd><dt>Ticket</dt><dd>{ticket}</dd><dt>Attempts</dt><dd>{attempts}</dd>\
<dt>Last error</dt><dd id=\"last-error\">{err}</dd><dt>Received</dt><dd>{created}</dd><dt>Updated</dt><dd>{updated}</dd></dl>",
        title = esc(&title(&task)),
        state = esc(task.state.as_str()),
        result = esc(task.result().as_str()),
        source = esc(&task.source),
        ext = esc(&task.external_id),
        conn = esc(&task.connection),
        attempts = task.attempts,
        err = esc(task.last_error.as_deref().unwrap_or("none")),
        created = task.created_at.to_rfc3339(),
        updated = task.updated_at.to_rfc3339(),
    );
    let id_path = url_part(task.id.as_str());
    body.push_str("<p>");
    if task.state == TaskState::Failed {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/tasks/{id_path}/replay\" class=\"inline\">{}<button type=\"submit\">Replay</button></form> ",
            ctx.csrf()
        );
    }
    if !task.state.is_final() {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/tasks/{id_path}/cancel\" class=\"inline\">{}<button type=\"submit\" class=\"secondary\">Cancel task</button></form> ",
            ctx.csrf()
        );
    }
    let _ = write!(
        body,
        "<a href=\"/tasks/{id_path}\">Refresh</a></p><h2>History</h2><ol class=\"timeline\" id=\"timeline\">"
    );
    for h in &task.history {
        let _ = write!(
            body,
            "<li><time datetime=\"{at}\">{at_short}</time> <strong>{event}</strong>{detail}</li>",
            at = h.at.to_rfc3339(),
            at_short = h.at.format("%Y-%m-%d %H:%M:%S"),
            event = esc(&h.event),
            detail = h.detail.as_deref().map(|d| format!(": {}", esc(d))).unwrap_or_default(),
        );
    }
    body.push_str("</ol>");
    Reply::ok(ctx.page(&format!("Task {}", task.external_id), "/", notice, &body))
}

/// Replay or cancel through the API.
pub async fn act(ctx: &Ctx<'_>, id: &str, op: &str) -> Reply {
    let path = format!("/v1/tasks/{id}");
    let res = match op {
        "replay" => ctx.api("POST", &format!("{path}/replay"), None, "application/json", b"").await,
        _ => ctx.api("DELETE", &path, None, "application/json", b"").await,
    };
    if res.status == 200 {
        tracing::info!(task = %id, op, "console action");
        return Reply::Redirect(format!("/tasks/{}?done={op}", url_part(id)));
    }
    let notice = html::notice(false, &format!("Could not {op}: {}", api_error(&res)));
    match detail(ctx, id, Some(notice)).await {
        Reply::Html(_, b) => Reply::Html(StatusCode::from_u16(res.status).unwrap_or(StatusCode::CONFLICT), b),
        r => r,
    }
}

/// Dead letters: failed tasks with their reason; replay one or many.
pub async fn dead_letters(ctx: &Ctx<'_>, notice: Option<String>) -> Reply {
    let (items, notice) = match ctx.engine().list(TaskState::Failed, 500, None).await {
        Ok(p) => (p.items, notice),
        Err(e) => (vec![], Some(html::notice(false, &e.message))),
    };
    let mut body = String::new();
    if !items.is_empty() {
        let _ = write!(
            body,
            "<form id=\"replay-form\" method=\"post\" action=\"/dead-letters/replay\">{}<button type=\"submit\">Replay selected</button></form>",
            ctx.csrf()
        );
    }
    body.push_str(&task_table(&items, "Dead letters", Some("replay-form")));
    Reply::ok(ctx.page("Dead letters", "/dead-letters", notice, &body))
}

/// Replays every selected dead letter and says how each went.
pub async fn replay_many(ctx: &Ctx<'_>) -> Reply {
    let ids = ctx.form.all("id");
    if ids.is_empty() {
        return dead_letters(ctx, Some(html::notice(false, "Select at least one task to replay."))).await;
    }
    let (mut done, mut failed) = (0, Vec::new());
    for id in &ids {
        let res = ctx.api("POST", &format!("/v1/tasks/{id}/replay"), None, "application/json", b"").await;
        if res.status == 200 {
            done += 1;
        } else {
            failed.push(format!("{id}: {}", api_error(&res)));
        }
    }
    let notice = if failed.is_empty() {
        html::notice(true, &format!("Replayed {done} task(s)."))
    } else {
        html::notice(false, &format!("Replayed {done} task(s); failed: {}", failed.join("; ")))
    };
    dead_letters(ctx, Some(notice)).await
}
