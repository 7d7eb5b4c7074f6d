//! The web console in a real headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`; `cargo xtask test` installs them and sets TB_BROWSER_TESTS=required), plus
//! its HTTP-level guarantees (cookie flags, CSRF, loopback-only open mode) checked without a browser.
//! Screenshots of every page go to target/console-screenshots/.

mod support;
mod webdriver;

use std::path::PathBuf;
use support::{Serve, wait_for, write_config};
use webdriver::{Browser, Driver, browser_paths, browser_required};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// The browser, or `None` (test skipped with a note) when it is not installed and not required.
async fn browser(log_dir: &std::path::Path) -> Option<(Driver, Browser)> {
    match browser_paths() {
        Ok((driver, chromium)) => {
            let d = Driver::start(&driver, &chromium, &log_dir.join("chromedriver.log")).await;
            let b = d.session().await;
            Some((d, b))
        }
        Err(why) if !browser_required() => {
            eprintln!("browser test skipped: {why}; `cargo xtask test` installs it");
            None
        }
        Err(why) => panic!("{why}"),
    }
}

async fn submit(http: &reqwest::Client, base: &str, external_id: &str, name: &str) -> String {
    let body = serde_json::json!({"source":"saviynt","external_id":external_id,"kind":"access","action":"create_account",
        "user":{"id":"u-1","name":name,"email":"ada@example.com"},"application":"Payroll"});
    let res = http.post(format!("{base}/v1/tasks")).json(&body).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let v: serde_json::Value = res.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Local mode (no config, no keys: open on loopback): a task with `<script>` in its title shows as
/// text; closing its sandbox ticket in the console completes it; a dead letter is replayed; a
/// mapping preview is run and applied; the pages are keyboard-reachable.
#[tokio::test]
async fn console_local_mode_runs_tasks_dead_letters_mappings_and_the_desk() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_driver, b)) = browser(dir.path()).await else { return };
    let http = reqwest::Client::new();
    let (_serve, base) = Serve::launch(&http, dir.path(), None, &[]).await.expect("serve started");

    // Tasks: the hostile title is shown as text, and no script element exists on the page.
    let id = submit(&http, &base, "TASK-<script>", "<script>alert(1)</script>").await;
    b.goto(&format!("{base}/")).await;
    b.find(&format!("tr[data-task='{id}']")).await;
    let row = b.text(&format!("tr[data-task='{id}']")).await;
    assert!(row.contains("Create Account: <script>alert(1)</script> in Payroll"), "{row}");
    assert!(row.contains("TASK-<script>"), "{row}");
    assert!(b.all("script").await.is_empty(), "a <script> reached the DOM");
    // Keyboard: the first Tab lands on the skip link.
    b.keys("\u{E004}").await;
    assert_eq!(b.active_attr("href").await, "#main");
    // Search by external id narrows the list.
    b.fill("#f-q", "nothing-like-this").await;
    b.click_and_load("form.filters button[type=submit]").await;
    b.find("#no-tasks").await;
    b.fill("#f-q", "task-<scr").await;
    b.click_and_load("form.filters button[type=submit]").await;
    b.find(&format!("tr[data-task='{id}']")).await;
    b.screenshot(&shots().join("tasks.png")).await;

    // Detail: wait for the ticket, close it on the desk page, watch the task complete.
    b.click_and_load(&format!("tr[data-task='{id}'] a")).await;
    b.reload_until("#task-state", "the ticket to open", |s| s == "ticket_open").await;
    let ticket = b.text("#ticket-link").await;
    assert!(ticket.starts_with("SBX-"), "{ticket}");
    let task_url = b.current_url().await;
    b.goto(&format!("{base}/desk")).await;
    b.find("#desk-tickets").await;
    b.screenshot(&shots().join("desk.png")).await;
    let close = b.all("#desk-tickets button[id^=close-]").await;
    assert_eq!(close.len(), 1, "one open ticket on the desk");
    b.click_and_load("#desk-tickets button[id^=close-]").await;
    let notice = b.text(".notice").await;
    assert!(notice.contains("set to Resolved"), "{notice}");
    b.goto(&task_url).await;
    b.reload_until("#task-state", "completion", |s| s == "completed").await;
    assert_eq!(b.text("#task-result").await, "fulfilled");
    let timeline = b.text("#timeline").await;
    assert!(timeline.contains("ticket_created") && timeline.contains("completed: Resolved"), "{timeline}");
    b.screenshot(&shots().join("task-detail.png")).await;

    // Dead letters: the desk refuses the next creation for good, the task fails, replay it.
    let fault = serde_json::json!({"kind":"status","status":400,"times":1,"route":"POST /api/v1/tickets"});
    let r = http.post(format!("{base}/sandbox/faults")).json(&fault).send().await.unwrap();
    assert!(r.status().is_success(), "arming the fault: {}", r.status());
    let dead = submit(&http, &base, "TASK-DEAD", "Bob").await;
    wait_for("dead letter", || async {
        let t: serde_json::Value = http.get(format!("{base}/v1/tasks/{dead}")).send().await.ok()?.json().await.ok()?;
        (t["state"] == "failed").then_some(t)
    })
    .await;
    b.goto(&format!("{base}/dead-letters")).await;
    let row = b.text(&format!("tr[data-task='{dead}']")).await;
    assert!(row.contains("TASK-DEAD") && row.contains("400"), "the reason is shown: {row}");
    b.screenshot(&shots().join("dead-letters.png")).await;
    b.click(&format!("#sel-{dead}")).await;
    b.click_and_load("#replay-form button").await;
    let notice = b.text(".notice").await;
    assert_eq!(notice, "Replayed 1 task(s).");
    b.goto(&format!("{base}/tasks/{dead}")).await;
    b.reload_until("#task-state", "the replayed task's ticket", |s| s == "ticket_open").await;

    // Mappings: preview, then apply with customer creation, then the preview says already mapped.
    b.goto(&format!("{base}/mappings")).await;
    b.fill("#organizations", "id,name\norg-1,Acme Corp\norg-2,Globex").await;
    b.click("#auto_create").await;
    b.click_and_load("#preview").await;
    assert_eq!(b.text("td[data-count=to_create]").await, "2");
    assert!(b.text(".notice").await.contains("nothing was changed"));
    b.screenshot(&shots().join("mappings-preview.png")).await;
    b.click_and_load("#apply").await;
    // The apply runs in the background; its progress page turns into the result when it ends.
    b.find(".notice").await;
    let notice = b.text(".notice").await;
    assert!(notice.contains("2 customer(s) created") && notice.contains("0 failure(s)"), "{notice}");
    let mappings = b.text("#mappings").await;
    assert!(mappings.contains("Acme Corp") && mappings.contains("Globex"), "{mappings}");
    b.click_and_load("#preview").await;
    assert_eq!(b.text("td[data-count=already_mapped]").await, "2");
    // Manual match of a third organization to one of the customers now in the target.
    let options = b.all("#customers option").await;
    assert_eq!(options.len(), 2, "the datalist lists the target's customers");
    b.screenshot(&shots().join("mappings.png")).await;

    // Connections: the start-up check is shown in words.
    b.goto(&format!("{base}/connections")).await;
    let health = b.text("#conn-sandbox .health").await;
    assert!(health.starts_with("OK"), "{health}");
    b.quit().await;
}

/// With API keys: the console asks for an admin key, refuses others, and shows why a connection
/// fails its check (a NinjaOne tenant with a wrong client secret).
#[tokio::test]
async fn console_signs_in_with_an_admin_key_and_explains_a_failing_connection() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_driver, b)) = browser(dir.path()).await else { return };
    let (config, _target) = keyed_config(dir.path()).await;
    let (_serve, base) =
        Serve::launch(&reqwest::Client::new(), dir.path(), Some(&config), &[]).await.expect("serve started");

    b.goto(&format!("{base}/connections")).await;
    assert!(b.current_url().await.ends_with("/login"), "signed-out users are sent to sign in");
    b.screenshot(&shots().join("sign-in.png")).await;
    b.fill("#api_key", TASKS_KEY).await;
    b.click_and_load("form[action='/login'] button").await;
    assert!(b.text(".notice").await.contains("not admin-scoped"));
    b.fill("#api_key", ADMIN_KEY).await;
    b.click_and_load("form[action='/login'] button").await;
    b.find("#tasks, #no-tasks").await;
    assert!(!b.current_url().await.contains(ADMIN_KEY) && !b.source().await.contains(ADMIN_KEY));

    b.goto(&format!("{base}/connections")).await;
    let health = b.reload_until("#conn-itsm .health", "the start-up check", |s| s != "not checked yet").await;
    assert!(health.starts_with("check failed"), "{health}");
    let steps = b.text("#conn-itsm .steps, #conn-itsm .health").await;
    assert!(steps.to_lowercase().contains("client") || steps.contains("401"), "the cause is named: {steps}");
    b.screenshot(&shots().join("connections-failure.png")).await;
    // Re-check from the page gives the same explanation.
    b.click_and_load("#conn-itsm form button").await;
    assert!(b.text(".notice").await.starts_with("itsm: check failed"));

    b.click_and_load("header form button").await;
    assert!(b.current_url().await.ends_with("/login"));
    b.goto(&format!("{base}/")).await;
    assert!(b.current_url().await.ends_with("/login"), "signed out for good");
    b.quit().await;
}

const ADMIN_KEY: &str = "console-admin-key-0123456789";
const TASKS_KEY: &str = "console-tasks-key-0123456789";

/// A config with an admin and a tasks key and one NinjaOne simulator connection whose client
/// secret is wrong.
async fn keyed_config(dir: &std::path::Path) -> (PathBuf, sandbox::targets::SpawnedTarget) {
    let mut target = sandbox::targets::spawn(sandbox::targets::Target::Ninjaone).await.unwrap();
    for (k, v) in target.secret.iter_mut() {
        if k == "client_secret" {
            *v = "not-the-secret".into();
        }
    }
    let path = write_config(dir, &target, toml::Table::new());
    let mut text = std::fs::read_to_string(&path).unwrap();
    let hash = |k: &str| bridge::engine::api::hash_key(k);
    text.push_str(&format!(
        "\n[[auth.api_keys]]\nname = \"ops\"\nsha256 = \"{}\"\nscope = \"admin\"\n\n[[auth.api_keys]]\nname = \"intake\"\nsha256 = \"{}\"\nscope = \"tasks\"\n",
        hash(ADMIN_KEY),
        hash(TASKS_KEY)
    ));
    std::fs::write(&path, text).unwrap();
    (path, target)
}

/// Without a browser: the session cookie's flags, CSRF on every form, the key never echoed.
#[tokio::test]
async fn console_cookie_is_httponly_strict_and_forms_need_the_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _target) = keyed_config(dir.path()).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let (_serve, base) = Serve::launch(&http, dir.path(), Some(&config), &[]).await.expect("serve started");

    let res = http.get(format!("{base}/login")).send().await.unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http on loopback: no Secure flag");
    let session = cookie.split(';').next().unwrap().to_string();
    let page = res.text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();

    // Without the CSRF token, sign-in is refused even with the right key.
    let res = http
        .post(format!("{base}/login"))
        .header("cookie", &session)
        .form(&[("api_key", ADMIN_KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let res = http
        .post(format!("{base}/login"))
        .header("cookie", &session)
        .header("x-forwarded-proto", "https")
        .form(&[("api_key", ADMIN_KEY), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let signed = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(signed.contains("Secure"), "Secure where the browser came over https: {signed}");
    assert!(!signed.contains(ADMIN_KEY), "the key stays on the server");
    let new_session = signed.split(';').next().unwrap().to_string();
    assert_ne!(new_session, session, "a new session id on sign-in");
    // The old id is dead; the new one works; a form without its token is refused.
    let old = http.get(format!("{base}/")).header("cookie", &session).send().await.unwrap();
    assert_eq!(old.status().as_u16(), 303);
    let ok = http.get(format!("{base}/connections")).header("cookie", &new_session).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert!(ok.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    let res = http
        .post(format!("{base}/connections/itsm/check"))
        .header("cookie", &new_session)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
}

/// Local mode: an apply runs in the background and its page follows it live (the `<progress>`
/// moves without the page reloading); a customer's contacts are listed and searchable and one is
/// picked for a manual match and a user match; the Connections page shows the rate-limit
/// headroom as counted by the connection's limiter (it moves when the page's own check runs).
#[tokio::test]
async fn console_apply_progress_contacts_and_rate_headroom() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_driver, b)) = browser(dir.path()).await else { return };
    let http = reqwest::Client::new();
    let (_serve, base) = Serve::launch(&http, dir.path(), None, &[]).await.expect("serve started");

    // Two slow customer creations keep the apply running long enough to watch it.
    let fault = serde_json::json!({"kind":"slow_response","ms":1500,"times":2,"route":"POST /api/v1/customers"});
    let r = http.post(format!("{base}/sandbox/faults")).json(&fault).send().await.unwrap();
    assert!(r.status().is_success(), "arming the fault: {}", r.status());
    b.goto(&format!("{base}/mappings")).await;
    b.fill("#organizations", "id,name,contact_name,contact_email\norg-a,Initech,Peter Gibbons,peter@initech.test\norg-b,Hooli,Gavin Belson,gavin@hooli.test\norg-c,Umbrella,,").await;
    b.click("#auto_create").await;
    b.click_and_load("#apply").await;
    assert!(b.current_url().await.contains("/mappings/sandbox/jobs/"), "apply leads to its progress page");
    let page = b.find("html").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let polls: u32 = b.attr("#job", "data-polls").await.and_then(|v| v.parse().ok()).unwrap_or(0);
        let value: u32 = b.attr("#job-progress", "value").await.and_then(|v| v.parse().ok()).unwrap_or(0);
        let max = b.attr("#job-progress", "max").await;
        if polls >= 1 && value >= 1 && max.as_deref() == Some("3") {
            assert!(b.still_attached(&page).await, "the progress moved without a page load");
            let phase = b.text("#job-phase").await;
            assert!(phase.starts_with("mapping organizations: ") && phase.ends_with(" of 3"), "{phase}");
            let source = b.source().await;
            assert!(source.contains("<noscript><meta http-equiv=\"refresh\""), "without script it refreshes itself");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the progress never moved: polls {polls}, value {value}, max {max:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    b.screenshot(&shots().join("mappings-progress.png")).await;
    // The job belongs to the browser's session: another client (no cookie) cannot see it.
    let other = http.get(b.current_url().await).send().await.unwrap();
    assert_eq!(other.status().as_u16(), 404);
    b.find(".notice").await;
    let notice = b.text(".notice").await;
    assert!(notice.contains("3 customer(s) created") && notice.contains("0 failure(s)"), "{notice}");
    assert!(b.all("#job").await.is_empty() && b.all("script").await.is_empty(), "the result page has no script");

    // Contacts: the customer of org-a and its default contact, searchable in a datalist.
    let v: serde_json::Value =
        http.get(format!("{base}/v1/admin/connections/sandbox/mappings")).send().await.unwrap().json().await.unwrap();
    let items = v["items"].as_array().unwrap();
    let initech = items.iter().find(|m| m["org_id"] == "org-a").unwrap();
    let customer = initech["customer_id"].as_str().unwrap().to_string();
    b.goto(&format!("{base}/mappings")).await;
    b.fill("#c-cust", &customer).await;
    b.click_and_load("#show-contacts").await;
    let table = b.text("#contacts-table").await;
    assert!(table.contains("Peter Gibbons") && table.contains("peter@initech.test"), "{table}");
    assert!(table.contains(&format!("Contacts of customer Initech ({customer})")), "{table}");
    let options = b.all("#contacts option").await;
    assert_eq!(options.len(), 1, "Initech's one contact is in the searchable list");
    let contact = b.attr("#contacts option", "value").await.unwrap();
    assert_eq!(Some(contact.as_str()), initech["contact_id"].as_str());
    assert_eq!(b.attr("#m-cust", "value").await.as_deref(), Some(customer.as_str()), "the customer is kept");
    b.click("#m-contact").await; // scrolls the contacts and the match form into view
    b.screenshot(&shots().join("mappings-contacts.png")).await;
    b.fill("#m-org", "org-z").await;
    b.fill("#m-name", "Initech Labs").await;
    b.fill("#m-contact", &contact).await;
    b.click_and_load("form[action='/mappings/sandbox/match'] button").await;
    assert_eq!(b.text(".notice").await, "match: done.");
    let row = b.text("#mappings tbody tr:last-child").await;
    assert!(row.contains("org-z") && row.contains(&customer) && row.contains(&contact), "{row}");
    b.goto(&format!("{base}/mappings?connection=sandbox&customer={customer}")).await;
    b.fill("#u-email", "peter@initech.test").await;
    b.fill("#u-contact", &contact).await;
    b.click_and_load("#user-match button").await;
    assert_eq!(b.text(".notice").await, "user-match: done.");
    let users: serde_json::Value =
        http.get(format!("{base}/v1/admin/connections/sandbox/users")).send().await.unwrap().json().await.unwrap();
    let user = users["items"].as_array().unwrap().iter().find(|u| u["email"] == "peter@initech.test").cloned();
    assert_eq!(user.as_ref().and_then(|u| u["contact_id"].as_str()), Some(contact.as_str()), "{users}");

    // Rate limit: what the limiter counted, and a check from the page counts more.
    b.goto(&format!("{base}/connections")).await;
    let num = |s: String| s.parse::<u64>().unwrap_or_else(|_| panic!("not a number: '{s}'"));
    let rate = |k: &'static str| {
        let b = &b;
        async move { num(b.text(&format!("#conn-sandbox [data-rate={k}]")).await) }
    };
    let (limit, used, left, now, burst) =
        (rate("limit").await, rate("used").await, rate("left").await, rate("now").await, rate("burst").await);
    assert!(used >= 6, "the apply's requests were counted: {used}");
    assert_eq!(used + left, limit, "left is the limit minus the used");
    assert!(now <= burst, "headroom now {now} within the burst {burst}");
    b.screenshot(&shots().join("connections.png")).await;
    b.click_and_load("#conn-sandbox form button").await;
    let after = rate("used").await;
    assert!(after > used, "the page's check was counted: {used} -> {after}");
    assert_eq!(after + rate("left").await, limit);
    b.quit().await;
}
