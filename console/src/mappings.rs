//! Mappings: the sync wizard (preview created / matched / excluded / collisions, then apply),
//! manual match against searchable lists of the target's customers and contacts, exclude and include.

use serde_json::{Value, json};
use std::fmt::Write;

use super::apply_jobs::ApplyCall;
use super::html::{self, esc, url_part};
use super::{Ctx, Form, Reply, api_error};
use bridge::engine::api::ApiResponse;

/// Example organization list shown in an empty wizard.
const EXAMPLE: &str = "id,name\norg-1,Acme Corp\norg-2,Globex";

pub async fn page(ctx: &Ctx<'_>, result: Option<(String, Option<String>)>) -> Reply {
    let conns: Vec<String> = ctx.engine().config.connections.keys().cloned().collect();
    let chosen = ctx
        .query
        .get("connection")
        .or_else(|| ctx.path.strip_prefix("/mappings/").and_then(|r| r.split('/').next()))
        .filter(|c| conns.iter().any(|x| x == c))
        .map(str::to_string)
        .or_else(|| conns.first().cloned());
    let Some(conn) = chosen else {
        return Reply::ok(ctx.page("Mappings", "/mappings", None, "<p>No connections are configured.</p>"));
    };
    let (result_html, notice) = result.unwrap_or_default();
    let c = url_part(&conn);
    let orgs_text = ctx.form.get("organizations").unwrap_or(EXAMPLE);
    let mode = ctx.form.get("match").unwrap_or("exact");
    let auto = ctx.form.get("auto_create").is_some();
    let options: Vec<(String, String)> = conns.iter().map(|x| (x.clone(), x.clone())).collect();
    let modes: Vec<(String, String)> =
        [("exact", "exact names"), ("normalized", "normalized names")].map(|(a, b)| (a.into(), b.into())).to_vec();
    let mut body = format!(
        "<form method=\"get\" action=\"/mappings\" class=\"filters\"><div>{}</div><div><button type=\"submit\">Show</button></div></form>",
        html::select("connection", "Connection", &options, &conn)
    );
    let _ = write!(
        body,
        "<h2>Sync organizations</h2><form method=\"post\" action=\"/mappings/{c}/preview\" id=\"sync\">{csrf}\
<p><label for=\"organizations\">Organizations (CSV with a header row: id, name, optional contact_name, contact_email, user_count)</label>\
<textarea id=\"organizations\" name=\"organizations\" required>{orgs}</textarea></p>\
<div class=\"filters\"><div>{mode}</div><div><input type=\"checkbox\" id=\"auto_create\" name=\"auto_create\" value=\"true\"{auto}>\
<label for=\"auto_create\">create missing customers</label></div>\
<div><button type=\"submit\" id=\"preview\">Preview</button> \
<button type=\"submit\" id=\"apply\" formaction=\"/mappings/{c}/apply\" class=\"secondary\">Apply</button></div></div></form>{result_html}",
        csrf = ctx.csrf(),
        orgs = esc(orgs_text),
        mode = html::select("match", "Match on", &modes, mode),
        auto = if auto { " checked" } else { "" },
    );
    // Manual match with the target's customers (a datalist: type to search).
    let customers = match ctx.engine().connectors.get(&conn) {
        Some(k) => k.list_customers().await.map_err(|e| e.to_string()),
        None => Err("no connector".into()),
    };
    body.push_str("<h2>Match by hand</h2>");
    match &customers {
        Ok(list) => {
            body.push_str("<datalist id=\"customers\">");
            for k in list {
                let _ = write!(body, "<option value=\"{}\">{}</option>", esc(&k.id), esc(&k.name));
            }
            body.push_str("</datalist>");
        }
        Err(e) => body.push_str(&html::notice(false, &format!("Cannot list the target's customers: {e}"))),
    }
    let customer = ctx.query.get("customer").or_else(|| ctx.form.get("customer_id")).unwrap_or("");
    let customer_name =
        customers.as_ref().ok().and_then(|l| l.iter().find(|k| k.id == customer)).map(|k| k.name.as_str());
    body.push_str(&super::mapping_contacts::section(ctx, &conn, customer, customer_name).await);
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/mappings/{c}/match\" class=\"filters\">{csrf}\
<div><label for=\"m-org\">Organization id</label><input id=\"m-org\" name=\"org_id\" required></div>\
<div><label for=\"m-name\">Organization name</label><input id=\"m-name\" name=\"org_name\"></div>\
<div><label for=\"m-cust\">Customer (type to search)</label><input id=\"m-cust\" name=\"customer_id\" list=\"customers\" value=\"{cust}\" required></div>\
<div><label for=\"m-contact\">Default contact (optional, type to search)</label><input id=\"m-contact\" name=\"contact_id\" list=\"contacts\"></div>\
<div><button type=\"submit\">Match</button></div></form>\
{users}\
<h2>Exclude or include</h2>\
<form method=\"post\" action=\"/mappings/{c}/exclude\" class=\"filters\">{csrf}\
<div><label for=\"x-org\">Organization id</label><input id=\"x-org\" name=\"org_id\" required></div>\
<div><label for=\"x-name\">Organization name</label><input id=\"x-name\" name=\"org_name\"></div>\
<div><button type=\"submit\">Exclude</button></div></form>\
<form method=\"post\" action=\"/mappings/{c}/include\" class=\"filters\">{csrf}\
<div><label for=\"i-org\">Organization id</label><input id=\"i-org\" name=\"org_id\" required></div>\
<div><button type=\"submit\">Include again</button></div></form>",
        csrf = ctx.csrf(),
        cust = esc(customer),
        users = super::mapping_contacts::user_match_form(ctx, &c, customer),
    );
    let res = ctx.api("GET", &format!("/v1/admin/connections/{c}/mappings"), None, "application/json", b"").await;
    body.push_str("<h2>Current mappings</h2>");
    if res.status != 200 {
        body.push_str(&html::notice(false, &api_error(&res)));
    } else {
        let items = res.body["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            body.push_str("<p id=\"no-mappings\">No mappings yet.</p>");
        } else {
            body.push_str("<table id=\"mappings\"><caption>Mappings</caption><thead><tr><th scope=\"col\">Organization</th><th scope=\"col\">Name</th><th scope=\"col\">Customer</th><th scope=\"col\">Contact</th><th scope=\"col\">Excluded</th></tr></thead><tbody>");
            for m in &items {
                let customer = match (m["customer_name"].as_str(), m["customer_id"].as_str()) {
                    (Some(n), Some(i)) => format!("{n} ({i})"),
                    (None, Some(i)) => i.to_string(),
                    _ => String::new(),
                };
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(s(&m["org_id"])),
                    esc(s(&m["org_name"])),
                    esc(&customer),
                    esc(s(&m["contact_id"])),
                    if m["excluded"].as_bool() == Some(true) { "yes" } else { "no" }
                );
            }
            body.push_str("</tbody></table>");
        }
    }
    Reply::ok(ctx.page("Mappings", "/mappings", notice, &body))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// preview / apply / match / exclude / include through the admin API.
pub async fn act(ctx: &Ctx<'_>, conn: &str, op: &str) -> Reply {
    let base = format!("/v1/admin/connections/{}/mappings", url_part(conn));
    let f = &ctx.form;
    let res = match op {
        "preview" | "apply" => {
            let mut q = format!("match={}", url_part(f.get("match").unwrap_or("exact")));
            q.push_str(if f.get("auto_create").is_some() { "&auto_create=true" } else { "&auto_create=false" });
            let csv = f.get("organizations").unwrap_or("");
            if op == "apply" && ctx.console.local {
                // In serve the apply runs in the background and the progress page follows it.
                let call = ApplyCall {
                    session: ctx.session.id.clone(),
                    key: ctx.session.key.clone(),
                    loopback: ctx.loopback,
                    connection: conn.to_string(),
                    query: q,
                    csv: csv.to_string(),
                    form: f.0.iter().filter(|(k, _)| k != "csrf").cloned().collect(),
                };
                let id = ctx.console.jobs.start(ctx.console.engine.clone(), call);
                return Reply::Redirect(format!("/mappings/{}/jobs/{id}", url_part(conn)));
            }
            ctx.api("POST", &format!("{base}/{op}"), Some(&q), "text/csv", csv.as_bytes()).await
        }
        "match" => {
            let b = json!({"org_id": f.get("org_id"), "customer_id": f.get("customer_id"), "org_name": f.get("org_name"),
                "contact_id": f.get("contact_id")});
            ctx.api("POST", &format!("{base}/match"), None, "application/json", b.to_string().as_bytes()).await
        }
        "exclude" => {
            let b = json!({"org_id": f.get("org_id"), "org_name": f.get("org_name")});
            ctx.api("POST", &format!("{base}/exclude"), None, "application/json", b.to_string().as_bytes()).await
        }
        "user-match" => {
            let b = json!({"email": f.get("email"), "contact_id": f.get("contact_id"), "customer_id": f.get("customer_id")});
            ctx.api(
                "POST",
                &format!("/v1/admin/connections/{}/users/match", url_part(conn)),
                None,
                "application/json",
                b.to_string().as_bytes(),
            )
            .await
        }
        "include" => {
            let b = json!({"org_id": f.get("org_id")});
            ctx.api("POST", &format!("{base}/include"), None, "application/json", b.to_string().as_bytes()).await
        }
        _ => return page(ctx, Some((String::new(), Some(html::notice(false, "Unknown mapping action."))))).await,
    };
    if res.status != 200 {
        let n = html::notice(false, &format!("{op} failed: {}", api_error(&res)));
        return page(ctx, Some((String::new(), Some(n)))).await;
    }
    let (result, text) = match op {
        "preview" => (plan_html(&res.body, "Preview"), "Preview ready: nothing was changed yet.".to_string()),
        "apply" => applied(&res.body),
        other => (String::new(), format!("{other}: done.")),
    };
    page(ctx, Some((result, Some(html::notice(true, &text))))).await
}

/// An apply's report as the plan carried out, its failures, and a one-line summary.
fn applied(body: &Value) -> (String, String) {
    let failures = body["failures"].as_array().map(Vec::len).unwrap_or(0);
    let text = format!(
        "Applied: {} mapped, {} customer(s) created, {} failure(s).",
        body["mapped"].as_u64().unwrap_or(0),
        body["created"].as_array().map(Vec::len).unwrap_or(0),
        failures
    );
    let mut h = plan_html(&body["plan"], "Applied plan");
    if let Some(list) = body["failures"].as_array().filter(|l| !l.is_empty()) {
        h.push_str("<h3>Failures</h3><ul>");
        for x in list {
            let _ = write!(h, "<li>{}</li>", esc(&x.to_string()));
        }
        h.push_str("</ul>");
    }
    (h, text)
}

/// Keeps the progress page current without reloading it: fetches the page again, copies the
/// phase and the `<progress>` over, and reloads once the job's section is gone (the apply ended).
const PROGRESS_SCRIPT: &str = "(function(){var n=0;function tick(){fetch(location.href,{cache:'no-store',credentials:'same-origin'})\
.then(function(r){return r.text();}).then(function(t){var d=new DOMParser().parseFromString(t,'text/html');\
if(!d.getElementById('job')){location.reload();return;}var p=document.getElementById('job-progress'),q=d.getElementById('job-progress');\
['max','value'].forEach(function(a){var v=q.getAttribute(a);if(v===null){p.removeAttribute(a);}else{p.setAttribute(a,v);}});\
p.textContent=q.textContent;document.getElementById('job-phase').textContent=d.getElementById('job-phase').textContent;\
document.getElementById('job').setAttribute('data-polls',String(++n));setTimeout(tick,250);})\
.catch(function(){setTimeout(tick,1000);});}setTimeout(tick,250);})();";

/// The progress page of a background apply, or its result once it has finished.
pub async fn job(ctx: &mut Ctx<'_>, id: &str) -> Reply {
    let Some(view) = ctx.console.jobs.view(id, &ctx.session.id) else {
        let n = html::notice(
            false,
            "This apply is not known here: it was started by another session, or it finished over an hour ago.",
        );
        let body = "<p><a href=\"/mappings\">Back to the mappings</a></p>";
        return Reply::Html(http::StatusCode::NOT_FOUND, ctx.page("Mappings", "/mappings", Some(n), body));
    };
    ctx.form = Form(view.form.clone());
    if let Some(res) = &view.result {
        return match finished(res) {
            Ok((result, text)) => page(ctx, Some((result, Some(html::notice(true, &text))))).await,
            Err(n) => page(ctx, Some((String::new(), Some(n)))).await,
        };
    }
    let nonce = super::session::random_token();
    let (value, max) = if view.total > 0 {
        (format!(" value=\"{}\"", view.done), format!(" max=\"{}\"", view.total))
    } else {
        (String::new(), String::new())
    };
    let body = format!(
        "<section id=\"job\" data-state=\"running\" aria-labelledby=\"job-h\"><h2 id=\"job-h\">Applying the organizations of {conn}</h2>\
<p id=\"job-phase\" aria-live=\"polite\">{phase}: {done} of {total}</p>\
<p><label for=\"job-progress\">Progress of this step</label><br><progress id=\"job-progress\"{max}{value}>{done} of {total}</progress></p>\
<p><small>The apply runs on the server: leaving this page does not stop it. This page follows it by itself \
(<a href=\"{here}\">refresh</a>).</small></p><noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript></section>\
<script nonce=\"{nonce}\">{PROGRESS_SCRIPT}</script>",
        conn = esc(&view.connection),
        phase = esc(&view.phase),
        done = view.done,
        total = view.total,
        here = esc(ctx.path),
    );
    Reply::Scripted(ctx.page("Mappings", "/mappings", None, &body), nonce)
}

/// A finished apply's result, or the notice of its error.
fn finished(res: &ApiResponse) -> Result<(String, String), String> {
    if res.status != 200 {
        return Err(html::notice(false, &format!("apply failed: {}", api_error(res))));
    }
    Ok(applied(&res.body))
}

/// The plan as counts and lists.
fn plan_html(plan: &Value, caption: &str) -> String {
    let counts = &plan["counts"];
    let n = |k: &str| counts[k].as_u64().unwrap_or(0);
    let mut h = format!(
        "<section id=\"plan\" aria-label=\"{cap}\"><table id=\"plan-counts\"><caption>{cap}</caption><thead><tr>\
<th scope=\"col\">Matched</th><th scope=\"col\">To create</th><th scope=\"col\">Unmatched</th><th scope=\"col\">Excluded</th>\
<th scope=\"col\">Already mapped</th><th scope=\"col\">Stale</th><th scope=\"col\">In collisions</th></tr></thead>\
<tbody><tr><td data-count=\"matched\">{}</td><td data-count=\"to_create\">{}</td><td data-count=\"unmatched\">{}</td>\
<td data-count=\"excluded\">{}</td><td data-count=\"already_mapped\">{}</td><td data-count=\"stale\">{}</td><td data-count=\"colliding\">{}</td></tr></tbody></table>",
        n("matched"),
        n("to_create"),
        n("unmatched"),
        n("excluded"),
        n("already_mapped"),
        n("stale"),
        n("colliding"),
        cap = esc(caption),
    );
    let org = |o: &Value| format!("{} ({})", s(&o["name"]), s(&o["id"]));
    let list = |h: &mut String, title: &str, items: Vec<String>| {
        if !items.is_empty() {
            let _ = write!(h, "<h3>{}</h3><ul>", esc(title));
            for i in items {
                let _ = write!(h, "<li>{}</li>", esc(&i));
            }
            h.push_str("</ul>");
        }
    };
    let arr = |k: &str| plan[k].as_array().cloned().unwrap_or_default();
    list(
        &mut h,
        "Matched",
        arr("matched").iter().map(|m| format!("{} → {}", org(&m["org"]), org(&m["customer"]))).collect(),
    );
    list(&mut h, "Created in the target", arr("to_create").iter().map(|m| org(&m["org"])).collect());
    list(&mut h, "Unmatched (tickets go to the catch-all)", arr("unmatched").iter().map(org).collect());
    list(&mut h, "Excluded", arr("excluded").iter().map(org).collect());
    list(
        &mut h,
        "Collisions (match these by hand)",
        arr("collisions")
            .iter()
            .map(|c| {
                let orgs: Vec<String> = c["orgs"].as_array().into_iter().flatten().map(org).collect();
                let custs: Vec<String> = c["customers"].as_array().into_iter().flatten().map(org).collect();
                format!("'{}': organizations {}; customers {}", s(&c["key"]), orgs.join(", "), custs.join(", "))
            })
            .collect(),
    );
    h.push_str("</section>");
    h
}
