//! The caller's side: Saviynt EIC and SailPoint ISC, emulated from the recipe files in
//! `docs/integrations/` (loaded unmodified but for URL and key), against a real
//! `ticket-bridge serve` with its built-in sandbox ITSM. Each path a caller can see is driven to
//! its end: completed, discontinued on a rejected ticket, on a cancelled task, on a task the bridge
//! gave up on, and intake with empty placeholders.

mod emulators;
mod support;

use emulators::sailpoint::{Provisioning, SailPoint};
use emulators::saviynt::{Saviynt, SaviyntTask, TaskStatus};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Serve, free_port, wait_for, wait_healthy};

const KEY: &str = "tb_caller_test_key_0123456789";

/// `serve` with the built-in sandbox ITSM and one tasks-scoped API key, as a Saviynt or SailPoint
/// tenant would be given.
struct Bridge {
    base: String,
    http: reqwest::Client,
    _serve: Serve,
    _dir: tempfile::TempDir,
}

impl Bridge {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let keys =
            format!("[{{name = \"iga\", sha256 = \"{}\", scope = \"tasks\"}}]", bridge::engine::api::hash_key(KEY));
        let child = Command::new(env!("CARGO_BIN_EXE_ticket-bridge"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .env_remove("TICKET_BRIDGE_CONFIG")
            .env("TICKET_BRIDGE__AUTH__API_KEYS", keys)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ticket-bridge serve");
        let b = Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _serve: Serve(child),
            _dir: dir,
        };
        wait_healthy(&b.http, &b.base).await;
        b
    }

    async fn task(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/tasks/{id}", self.base))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The sandbox ticket of task `id`, once the bridge has opened it.
    async fn ticket_of(&self, id: &str) -> String {
        let t = wait_for("ticket", || async {
            let t = self.task(id).await;
            (t["state"] == "ticket_open").then_some(t)
        })
        .await;
        t["ticket"]["id"].as_str().unwrap().to_string()
    }

    /// A technician closes the sandbox ticket with `status` (Resolved, Rejected, …).
    async fn close(&self, ticket: &str, status: &str) {
        let r = self
            .http
            .post(format!("{}/sandbox/tickets/{ticket}/close", self.base))
            .json(&json!({"status": status}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "closing {ticket}: {}", r.status());
    }

    async fn cancel(&self, id: &str) {
        let r = self.http.delete(format!("{}/v1/tasks/{id}", self.base)).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    /// The sandbox ITSM refuses the next ticket creations (as a target refuses a bad ticket).
    async fn refuse_tickets(&self) {
        let r = self
            .http
            .post(format!("{}/sandbox/faults", self.base))
            .json(&json!({"kind": "status", "status": 422, "times": 100, "route": "POST /api/v1/tickets"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

fn saviynt(bridge_url: &str, task_type: &str) -> Saviynt {
    Saviynt::load(
        "saviynt/ConnectionJSON.json",
        &format!("saviynt/CreateTicketJSON.{task_type}.json"),
        "saviynt/TicketStatusJSON.json",
        bridge_url,
        KEY,
    )
}

/// A Saviynt add-access task with every attribute the recipe reads.
fn add_access_task(id: &str) -> SaviyntTask {
    SaviyntTask::new(&[
        ("task", id),
        ("task.accountName", "ada.lovelace"),
        ("endpoint", "Payroll"),
        ("user.username", "ada"),
        ("user.firstname", "Ada"),
        ("user.lastname", "Lovelace"),
        ("user.email", "ada@example.com"),
        ("user.companyname", "Acme Corp"),
        ("entitlementValue.entitlementID", "payroll-admin"),
    ])
}

/// WSRETRY runs, one after another, until `done` holds (a real job runs on a schedule).
async fn wsretry_until(s: &Saviynt, task: &mut SaviyntTask, what: &str, done: impl Fn(&SaviyntTask) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        s.wsretry(task).await;
        if done(task) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {task:?}\n{}", s.transcript.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates the Saviynt task's ticket (one WSRETRY run) and returns the bridge task id it stored.
async fn saviynt_create(s: &Saviynt, task: &mut SaviyntTask) -> String {
    s.wsretry(task).await;
    assert_eq!(task.status, TaskStatus::InProgress, "create failed: {:?}\n{}", task.last_error, s.transcript.text());
    let id = task.ticket_id.clone().unwrap();
    assert!(bridge::domain::TaskId::parse(&id).is_some(), "ticketidPath must give the bridge task id, got {id}");
    id
}

#[tokio::test]
async fn saviynt_fulfilled_request_completes() {
    let b = Bridge::start().await;
    let s = saviynt(&b.base, "add_access");
    let mut task = add_access_task("1001");
    let id = saviynt_create(&s, &mut task).await;
    let ticket = b.ticket_of(&id).await;
    // While the ticket is open, WSRETRY leaves the task in progress.
    s.wsretry(&mut task).await;
    assert_eq!((task.status, task.last_ticket_status.as_deref()), (TaskStatus::InProgress, Some("open")));
    b.close(&ticket, "Resolved").await;
    wsretry_until(&s, &mut task, "completion", |t| t.status != TaskStatus::InProgress).await;
    assert_eq!(task.status, TaskStatus::Complete);
    let t = b.task(&id).await;
    assert_eq!(
        (t["state"].as_str(), t["outcome"].as_str(), t["result"].as_str()),
        (Some("completed"), Some("fulfilled"), Some("fulfilled"))
    );
    assert_eq!(t["entitlements"], json!(["payroll-admin"]));
    assert_eq!(t["organization"], json!({"id": "Acme Corp", "name": "Acme Corp"}));
    println!("--- Saviynt emulator transcript (add_access, fulfilled) ---\n{}", s.transcript.text());
}

#[tokio::test]
async fn saviynt_rejected_ticket_discontinues() {
    let b = Bridge::start().await;
    let s = saviynt(&b.base, "add_access");
    let mut task = add_access_task("1002");
    let id = saviynt_create(&s, &mut task).await;
    let ticket = b.ticket_of(&id).await;
    b.close(&ticket, "Rejected").await;
    wsretry_until(&s, &mut task, "discontinue", |t| t.status != TaskStatus::InProgress).await;
    assert_eq!((task.status, task.last_ticket_status.as_deref()), (TaskStatus::Discontinue, Some("rejected")));
    // Old callers still see what they saw before: state completed, outcome rejected.
    let t = b.task(&id).await;
    assert_eq!(
        (t["state"].as_str(), t["status"].as_str(), t["outcome"].as_str()),
        (Some("completed"), Some("Closed"), Some("rejected"))
    );
}

#[tokio::test]
async fn saviynt_cancelled_task_discontinues() {
    let b = Bridge::start().await;
    let s = saviynt(&b.base, "remove_access");
    let mut task = add_access_task("1003");
    let id = saviynt_create(&s, &mut task).await;
    b.ticket_of(&id).await;
    b.cancel(&id).await;
    wsretry_until(&s, &mut task, "discontinue", |t| t.status != TaskStatus::InProgress).await;
    assert_eq!((task.status, task.last_ticket_status.as_deref()), (TaskStatus::Discontinue, Some("cancelled")));
    assert_eq!(b.task(&id).await["action"], "remove_access");
}

#[tokio::test]
async fn saviynt_task_the_bridge_gave_up_on_discontinues() {
    let b = Bridge::start().await;
    b.refuse_tickets().await;
    let s = saviynt(&b.base, "create_account");
    let mut task = add_access_task("1004");
    let id = saviynt_create(&s, &mut task).await;
    wsretry_until(&s, &mut task, "discontinue", |t| t.status != TaskStatus::InProgress).await;
    assert_eq!((task.status, task.last_ticket_status.as_deref()), (TaskStatus::Discontinue, Some("failed")));
    let t = b.task(&id).await;
    assert_eq!((t["state"].as_str(), t["result"].as_str()), (Some("failed"), Some("failed")));
    assert!(t["last_error"].as_str().unwrap_or("").contains("422"), "{t}");
}

#[tokio::test]
async fn saviynt_empty_placeholders_do_not_break_intake() {
    let b = Bridge::start().await;
    let s = saviynt(&b.base, "create_account");
    // Unguarded placeholders of attributes the user does not have arrive as "".
    let mut task = SaviyntTask::new(&[
        ("task", "1005"),
        ("task.accountName", ""),
        ("endpoint", "Payroll"),
        ("user.username", "ada"),
        ("user.firstname", ""),
        ("user.lastname", ""),
        ("user.email", ""),
        ("user.companyname", ""),
    ]);
    let id = saviynt_create(&s, &mut task).await;
    let t = b.task(&id).await;
    assert_eq!(t["user"], json!({"id": "ada"}), "blank name and e-mail count as absent: {t}");
    assert!(t.get("organization").is_none(), "an organization of blanks is absent: {t}");
    assert_eq!(t["action"], "create_account");
    // A required value left blank is refused, naming it; Saviynt keeps the task for its next run.
    let mut nobody = SaviyntTask::new(&[
        ("task", "1006"),
        ("task.accountName", ""),
        ("endpoint", "Payroll"),
        ("user.username", ""),
        ("user.firstname", ""),
        ("user.lastname", ""),
        ("user.email", ""),
        ("user.companyname", ""),
    ]);
    s.wsretry(&mut nobody).await;
    assert_eq!(nobody.status, TaskStatus::New);
    let err = nobody.last_error.unwrap();
    assert!(err.starts_with("HTTP 422") && err.contains("\"field\":\"user\""), "{err}");
}

#[tokio::test]
async fn every_saviynt_task_type_recipe_submits_its_action() {
    let b = Bridge::start().await;
    for (n, action) in
        ["create_account", "add_access", "remove_access", "remove_account", "update_account"].iter().enumerate()
    {
        let s = saviynt(&b.base, action);
        let mut task = add_access_task(&format!("20{n}"));
        let id = saviynt_create(&s, &mut task).await;
        let t = b.task(&id).await;
        assert_eq!((t["action"].as_str(), t["source"].as_str()), (Some(*action), Some("saviynt")), "{t}");
        assert_eq!(t["external_id"], format!("20{n}"));
        // A second WSRETRY create of the same Saviynt task is the same bridge task (idempotent).
        let mut again = add_access_task(&format!("20{n}"));
        s.wsretry(&mut again).await;
        assert_eq!(again.ticket_id.as_deref(), Some(id.as_str()));
    }
}

/// A proxy in front of `serve` that answers 503 to the first `fail` task submissions (a
/// load balancer during a deploy), so the connection's `retryFailureStatusCode` retry is exercised.
async fn flaky_front(upstream: String, fail: usize) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let failed = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (failed, http, upstream) = (failed.clone(), http.clone(), upstream.clone());
        async move {
            if method == Method::POST && uri.path() == "/v1/tasks" && failed.fetch_add(1, Ordering::SeqCst) < fail {
                return (StatusCode::SERVICE_UNAVAILABLE, r#"{"error":{"code":"unavailable"}}"#.to_string());
            }
            let mut req = http.request(method, format!("{upstream}{uri}")).body(body.to_vec());
            for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
                req = req.header(k, v);
            }
            let res = req.send().await.unwrap();
            let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
            (status, res.text().await.unwrap())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://{addr}")
}

#[tokio::test]
async fn saviynt_retries_the_connections_retry_status_codes() {
    let b = Bridge::start().await;
    let front = flaky_front(b.base.clone(), 2).await;
    let s = saviynt(&front, "add_access");
    let mut task = add_access_task("1007");
    let id = saviynt_create(&s, &mut task).await;
    assert!(s.transcript.contains("-> 503"), "{}", s.transcript.text());
    assert_eq!(b.task(&id).await["external_id"], "1007");
    // More 503s than the connection retries: the run fails, the task stays New for the next run.
    let front = flaky_front(b.base.clone(), 10).await;
    let s = saviynt(&front, "add_access");
    let mut task = add_access_task("1008");
    s.wsretry(&mut task).await;
    assert_eq!(task.status, TaskStatus::New);
    assert!(task.last_error.unwrap().starts_with("HTTP 503"));
}

#[tokio::test]
async fn saviynt_recipes_point_at_the_documented_api() {
    // The recipe's status values are exactly the API's result values, split into done and not.
    let status = emulators::recipe_json("saviynt/TicketStatusJSON.json");
    let call = &status["call"][0];
    let mut listed: Vec<String> = ["ticketStatusValue", "disContinueStatusValue"]
        .iter()
        .flat_map(|k| call[*k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()))
        .collect();
    listed.extend(["open".to_string(), "pending".to_string()]);
    listed.sort();
    let mut api: Vec<String> = bridge::domain::TaskResult::ALL.iter().map(|r| r.as_str().to_string()).collect();
    api.sort();
    assert_eq!(listed, api, "TicketStatusJSON must sort every result value except open/pending");
    for r in bridge::domain::TaskResult::ALL {
        let v = json!(r.as_str());
        let settled = call["ticketStatusValue"].as_array().unwrap().contains(&v)
            || call["disContinueStatusValue"].as_array().unwrap().contains(&v);
        assert_eq!(settled, r.is_settled(), "{}", r.as_str());
    }
    let openapi = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml")).unwrap();
    let all = bridge::domain::TaskResult::ALL.map(|r| r.as_str()).join(", ");
    assert!(openapi.contains(&format!("enum: [{all}]")), "docs/openapi.yaml must list result values [{all}]");
}

/// A SailPoint provisioning plan (the `$plan` the request template reads).
fn plan(request_id: &str, operation: &str, items: Value) -> Value {
    json!({
        "arguments": {"identityRequestId": request_id},
        "identity": {"name": "ada", "displayName": "Ada Lovelace", "email": "ada@example.com"},
        "requests": [{"applicationName": "Payroll", "operation": operation, "items": items}]
    })
}

async fn sailpoint_until(sp: &SailPoint, ticket: &str, want: Provisioning) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (external, mapped) = sp.check(ticket).await;
        if mapped != Provisioning::Queued {
            assert_eq!(mapped, want, "status {external}\n{}", sp.transcript.text());
            return external;
        }
        assert!(Instant::now() < deadline, "still Queued\n{}", sp.transcript.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn sailpoint_status_mapping_commits_and_fails() {
    let b = Bridge::start().await;
    let sp = SailPoint::load(&b.base, KEY);
    let add = json!([{"operation": "Add", "name": "groups", "value": "payroll-admin"}, {"operation": "Add", "name": "groups", "value": "payroll-viewer"}]);

    // Fulfilled → Committed.
    let id = sp.create(&plan("REQ-1", "Modify", add.clone())).await.unwrap();
    let t = b.task(&id).await;
    assert_eq!((t["action"].as_str(), t["application"].as_str()), (Some("add_access"), Some("Payroll")));
    assert_eq!(t["entitlements"], json!(["payroll-admin", "payroll-viewer"]));
    let ticket = b.ticket_of(&id).await;
    assert_eq!(sp.check(&id).await, ("open".to_string(), Provisioning::Queued));
    b.close(&ticket, "Resolved").await;
    assert_eq!(sailpoint_until(&sp, &id, Provisioning::Committed).await, "fulfilled");

    // Rejected ticket → Failed.
    let id = sp.create(&plan("REQ-2", "Create", json!([]))).await.unwrap();
    assert_eq!(b.task(&id).await["action"], "create_account");
    let ticket = b.ticket_of(&id).await;
    b.close(&ticket, "Rejected").await;
    assert_eq!(sailpoint_until(&sp, &id, Provisioning::Failed).await, "rejected");

    // Cancelled task → Failed.
    let id = sp.create(&plan("REQ-3", "Delete", json!([]))).await.unwrap();
    assert_eq!(b.task(&id).await["action"], "remove_account");
    b.cancel(&id).await;
    assert_eq!(sailpoint_until(&sp, &id, Provisioning::Failed).await, "cancelled");

    // Ticket creation given up → Failed.
    b.refuse_tickets().await;
    let remove = json!([{"operation": "Remove", "name": "groups", "value": "payroll-admin"}]);
    let id = sp.create(&plan("REQ-4", "Modify", remove)).await.unwrap();
    assert_eq!(b.task(&id).await["action"], "remove_access");
    assert_eq!(sailpoint_until(&sp, &id, Provisioning::Failed).await, "failed");
    println!("--- SailPoint emulator transcript ---\n{}", sp.transcript.text());
}

#[tokio::test]
async fn sailpoint_recipe_settings_are_complete() {
    let settings = emulators::recipe_json("sailpoint/generic-service-desk.json");
    let mapping = settings["statusMapping"].as_object().unwrap();
    let mut keys: Vec<&str> = mapping.keys().map(String::as_str).collect();
    keys.sort();
    let mut api: Vec<&str> = bridge::domain::TaskResult::ALL.iter().map(|r| r.as_str()).collect();
    api.sort();
    assert_eq!(keys, api, "every result value needs a status mapping");
    assert!(mapping.values().any(|v| v == "Committed"), "SailPoint requires one status mapped to Committed");
    for r in bridge::domain::TaskResult::ALL {
        let want = match r.as_str() {
            "fulfilled" => "Committed",
            _ if r.is_settled() => "Failed",
            _ => "Queued",
        };
        assert_eq!(mapping[r.as_str()], want, "{}", r.as_str());
    }
    let polling = emulators::recipe_json("sailpoint/status-check-configuration.json");
    assert!(polling["provisioningStatusCheckIntervalMinutes"].as_u64().is_some_and(|m| m >= 1));
    assert!(polling["provisioningMaxStatusCheckDays"].as_u64().is_some_and(|d| d >= 1));
}

#[tokio::test]
async fn submission_can_wait_for_the_ticket() {
    let b = Bridge::start().await;
    let body = json!({"source": "saviynt", "external_id": "W-1", "kind": "access", "action": "create_account",
        "user": {"id": "ada"}, "application": "Payroll"});
    let post = |q: &'static str| b.http.post(format!("{}/v1/tasks{q}", b.base)).bearer_auth(KEY).json(&body).send();
    // Beyond the bound: refused, naming the parameter, and nothing is stored.
    let r = post("?wait=25s").await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["field"], "wait");
    let r = post("?wait=15s").await.unwrap();
    assert_eq!(r.status().as_u16(), 201, "the first accepted submission is new");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["state"], "ticket_open", "{t}");
    assert!(t["ticket"]["number"].is_string(), "{t}");
    assert_eq!(t["result"], "open");
}
