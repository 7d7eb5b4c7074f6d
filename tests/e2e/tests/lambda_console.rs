//! The web-console Lambda handler invoked in-process with real API Gateway HTTP API (payload 2.0)
//! events, over DynamoDB and Secrets Manager on moto: sign-in with an admin API key, the task list,
//! a dead letter replayed by a form post with the CSRF token, and what is refused (a tasks-scoped
//! key, a post without the CSRF token, a forged cookie, the local-only pages).

mod support;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use bridge::config::{ApiKey, KeyScope};
use bridge::domain::{Grouping, TaskState};
use bridge::engine::api::hash_key;
use bridge::secrets::Secret;
use chrono::{Duration, Utc};
use sandbox::faults::Fault;
use sandbox::targets::Target;
use serde_json::json;
use std::sync::Arc;
use support::{Backend, Harness, REQUESTS_PER_ATTEMPT, access_task, unique};

const ADMIN_KEY: &str = "tb_console_admin_key";
const TASKS_KEY: &str = "tb_console_tasks_key";
const CREATE_ROUTE: &str = Target::Sandbox.create_route();

/// A browser request as API Gateway hands it to the function: cookies in `cookies`, a form body
/// base64-encoded as HTTP APIs do for form posts.
fn event(method: &str, path: &str, cookies: &[String], form: Option<&str>) -> ApiGatewayV2httpRequest {
    use base64::Engine as _;
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut headers = json!({"host": "abc123.execute-api.eu-west-1.amazonaws.com", "user-agent": "Mozilla/5.0",
        "x-forwarded-proto": "https", "accept": "text/html"});
    if form.is_some() {
        headers["content-type"] = json!("application/x-www-form-urlencoded");
    }
    let event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "cookies": cookies,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123", "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "Mozilla/5.0"},
            "requestId": "req-1", "routeKey": format!("{method} {path}"), "stage": "$default", "time": "23/Nov/2026:10:00:00 +0000", "timeEpoch": 1795428000000i64
        },
        "body": form.map(|f| base64::engine::general_purpose::STANDARD.encode(f)),
        "isBase64Encoded": form.is_some()
    });
    serde_json::from_value(event).unwrap()
}

fn text(res: &ApiGatewayV2httpResponse) -> &str {
    match &res.body {
        Some(Body::Text(t)) => t,
        other => panic!("expected a text body, got {other:?}"),
    }
}

/// The `name=value` part of the session cookie the response sets.
fn session_cookie(res: &ApiGatewayV2httpResponse) -> String {
    let c = res.cookies.iter().find(|c| c.starts_with("tb_console=")).expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(c.contains(attr), "session cookie lacks {attr}: {c}");
    }
    c.split(';').next().unwrap().to_string()
}

/// The value of the first hidden `csrf` field in a page.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

fn location(res: &ApiGatewayV2httpResponse) -> &str {
    res.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// Signs in with `key`: the login page's anonymous session and CSRF token, then the form post.
async fn sign_in(console: &bridge_console::Console, key: &str) -> ApiGatewayV2httpResponse {
    let login = web_console::handle(console, event("GET", "/login", &[], None)).await;
    assert_eq!(login.status_code, 200);
    let anon = session_cookie(&login);
    let body = form(&[("csrf", &csrf(text(&login))), ("api_key", key)]);
    web_console::handle(console, event("POST", "/login", &[anon], Some(&body))).await
}

#[tokio::test]
async fn console_function_signs_in_admins_lists_tasks_and_replays_a_dead_letter() {
    let secret_name = unique("tb/console-session");
    let sn = secret_name.clone();
    let h = Harness::for_target(Target::Sandbox, Backend::Dynamo, Grouping::None, move |c| {
        c.auth.api_keys = vec![
            ApiKey { name: "ops".into(), sha256: hash_key(ADMIN_KEY), scope: KeyScope::Admin, sources: vec![] },
            ApiKey { name: "iga".into(), sha256: hash_key(TASKS_KEY), scope: KeyScope::Tasks, sources: vec![] },
        ];
        c.auth.console_secret = Some(sn);
    })
    .await;
    // Without its secret the function refuses to start, naming the setting.
    let err = web_console::for_lambda(Arc::new(h.twin())).await.err().expect("no secret yet");
    assert!(format!("{err:#}").contains("auth.console_secret"), "{err:#}");
    let mut s = Secret::new();
    s.set("session_key", "k".repeat(64));
    h.secrets.put(&secret_name, &s).await.unwrap();
    // Two instances over the same table and secret, as Lambda runs them.
    let console = web_console::for_lambda(Arc::new(h.twin())).await.unwrap();
    let other_instance = web_console::for_lambda(Arc::new(h.twin())).await.unwrap();

    // A dead letter: three failed attempts at opening its ticket.
    h.sim().faults().inject_on(CREATE_ROUTE, Fault::Status { status: 500 }, 3 * REQUESTS_PER_ATTEMPT);
    let (_, t) = h.call_as(Some(ADMIN_KEY), "POST", "/v1/tasks", Some(access_task("CONSOLE-DL"))).await;
    let id = t["id"].as_str().unwrap().to_string();
    h.create(&id).await;
    for i in 1..=2 {
        h.engine.create_due(Utc::now() + Duration::seconds(10 * i), 10).await;
    }
    assert_eq!(h.task(&id).await.state, TaskState::Failed);

    // Signed out, every page sends the browser to the sign-in page.
    let res = web_console::handle(&console, event("GET", "/", &[], None)).await;
    assert_eq!((res.status_code, location(&res)), (303, "/login"));

    // A tasks-scoped key (it may submit through the API) does not open the console.
    let res = sign_in(&console, TASKS_KEY).await;
    assert_eq!(res.status_code, 401);
    assert!(text(&res).contains("not admin-scoped"), "{}", text(&res));
    assert!(!text(&res).contains(TASKS_KEY), "the key is never echoed");

    // The admin key signs in; the sealed cookie never shows the key.
    let res = sign_in(&console, ADMIN_KEY).await;
    assert_eq!((res.status_code, location(&res)), (303, "/"));
    let cookie = session_cookie(&res);
    assert!(!cookie.contains(ADMIN_KEY) && !cookie.contains(&hex::encode(ADMIN_KEY)));

    // The task list, on another instance (the session travels in the cookie).
    let res = web_console::handle(&other_instance, event("GET", "/", std::slice::from_ref(&cookie), None)).await;
    assert_eq!(res.status_code, 200, "{}", text(&res));
    assert!(text(&res).contains("CONSOLE-DL") && text(&res).contains(&id), "{}", text(&res));
    assert_eq!(res.headers["content-type"], "text/html; charset=utf-8");
    assert!(res.headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));

    // The dead letter page, and its replay form without the CSRF token: refused, nothing replayed.
    let dl = web_console::handle(&console, event("GET", "/dead-letters", std::slice::from_ref(&cookie), None)).await;
    assert_eq!(dl.status_code, 200);
    assert!(text(&dl).contains(&id));
    let token = csrf(text(&dl));
    let no_csrf = form(&[("id", &id)]);
    let res = web_console::handle(
        &console,
        event("POST", "/dead-letters/replay", std::slice::from_ref(&cookie), Some(&no_csrf)),
    )
    .await;
    assert_eq!(res.status_code, 403);
    let wrong_csrf = form(&[("csrf", "0".repeat(64).as_str()), ("id", &id)]);
    let res = web_console::handle(
        &console,
        event("POST", "/dead-letters/replay", std::slice::from_ref(&cookie), Some(&wrong_csrf)),
    )
    .await;
    assert_eq!(res.status_code, 403);
    assert_eq!(h.task(&id).await.state, TaskState::Failed, "a refused form changes nothing");

    // A forged cookie is no session.
    let forged = format!("tb_console={}", "ab".repeat(90));
    let res = web_console::handle(&console, event("GET", "/dead-letters", &[forged], None)).await;
    assert_eq!((res.status_code, location(&res)), (303, "/login"));

    // With the token: replayed (through the API, as the signed-in key), ready for a new ticket.
    let ok = form(&[("csrf", &token), ("id", &id)]);
    let res = web_console::handle(
        &other_instance,
        event("POST", "/dead-letters/replay", std::slice::from_ref(&cookie), Some(&ok)),
    )
    .await;
    assert_eq!(res.status_code, 200, "{}", text(&res));
    assert!(text(&res).contains("Replayed 1 task(s)."), "{}", text(&res));
    let t = h.task(&id).await;
    assert_eq!(t.state, TaskState::Received);
    assert_eq!(h.engine.create_due(Utc::now(), 10).await.created, 1);
    assert_eq!(h.sim().tickets().len(), 1);

    // Pages that need one long-lived process are not offered on AWS.
    let res = web_console::handle(&console, event("GET", "/desk", std::slice::from_ref(&cookie), None)).await;
    assert_eq!(res.status_code, 404);
    let page = web_console::handle(&console, event("GET", "/", std::slice::from_ref(&cookie), None)).await;
    assert!(!text(&page).contains("href=\"/desk\""), "no sandbox desk in the navigation");

    // Connections: the configured rate limit only; live headroom is per instance on AWS.
    let res = web_console::handle(&console, event("GET", "/connections", std::slice::from_ref(&cookie), None)).await;
    assert_eq!(res.status_code, 200);
    assert!(text(&res).contains("requests/hour configured") && text(&res).contains("Live headroom is not shown here"));
    assert!(!text(&res).contains("data-rate=\"used\""), "no per-instance figures shown as if they were the tenant's");
    // Mappings: apply runs within the request (no background job, no progress page).
    let apply = form(&[("csrf", &token), ("organizations", "id,name\norg-9,Lambda Labs"), ("auto_create", "true")]);
    let path = format!("/mappings/{}/apply", support::CONN);
    let res = web_console::handle(&console, event("POST", &path, std::slice::from_ref(&cookie), Some(&apply))).await;
    assert_eq!(res.status_code, 200, "{}", text(&res));
    assert!(text(&res).contains("1 customer(s) created, 0 failure(s)."), "{}", text(&res));
    let jobs = format!("/mappings/{}/jobs/x", support::CONN);
    let res = web_console::handle(&console, event("GET", &jobs, std::slice::from_ref(&cookie), None)).await;
    assert_eq!(res.status_code, 404);

    // Sign-out clears the cookie.
    let out = form(&[("csrf", &token)]);
    let res = web_console::handle(&console, event("POST", "/logout", std::slice::from_ref(&cookie), Some(&out))).await;
    assert_eq!((res.status_code, location(&res)), (303, "/login"));
    assert!(
        res.cookies.iter().any(|c| c.starts_with("tb_console=;") && c.contains("Max-Age=0") && c.contains("Secure"))
    );
}
