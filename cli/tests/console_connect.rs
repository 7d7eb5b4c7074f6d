//! The console's Connect flow for a NinjaOne connection, at the HTTP level against the NinjaOne
//! simulator (which enforces the registered redirect URI and single-use codes): the form posts
//! with CSRF, the browser is sent to the authorize page with `state`, the console's callback
//! checks `state` (single use), exchanges the code, stores the refresh token and runs `check`.

mod support;

use sandbox::ninjaone::{NinjaConfig, NinjaOne};
use std::collections::HashMap;
use std::path::Path;
use support::{Serve, free_port, wait_for, wait_healthy};

fn config(dir: &Path, base_url: &str) -> std::path::PathBuf {
    let path = dir.join("ticket-bridge.toml");
    let text = format!(
        "[connections.ninja]\nkind = \"ninjaone\"\nbase_url = \"{base_url}\"\nsecret = \"ninja\"\n\
[connections.ninja.status_map]\nfulfilled = [\"Resolved\"]\n[connections.ninja.catch_all]\ncustomer_id = \"7\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The value of the first hidden `csrf` field on a page.
fn csrf_of(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    page[start..].split('"').next().unwrap().to_string()
}

fn stored(dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(dir.join("secrets.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_connects_a_ninjaone_tenant_through_oauth() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let redirect = format!("{base}/connections/oauth/callback");
    let ninja =
        NinjaOne::spawn(NinjaConfig { redirect_uris: vec![redirect.clone()], ..Default::default() }).await.unwrap();
    let client_secret = NinjaConfig::default().client_secret;
    let client_secret = client_secret.as_str();
    ninja.add_customer("7", "Acme Corp");
    let cfg = config(dir.path(), ninja.base_url());
    let _serve = Serve::start(port, dir.path(), Some(&cfg));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    wait_healthy(&http, &base).await;

    // No keys configured: the console is open on loopback. Wait for the start-up check (no secret yet).
    let res = http.get(format!("{base}/connections")).send().await.unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains(&format!("form-action 'self' {}", ninja.base_url())), "{csp}");
    let page = wait_for("the start-up check", || async {
        let p =
            http.get(format!("{base}/connections")).header("cookie", &cookie).send().await.ok()?.text().await.ok()?;
        p.contains("health notice err").then_some(serde_json::Value::String(p))
    })
    .await;
    let page = page.as_str().unwrap();
    assert!(page.contains("Connect ninja") && page.contains(&redirect), "{page}");
    let csrf = csrf_of(page);
    let connect = format!("{base}/connections/ninja/connect");

    // Without CSRF: refused.
    let res =
        http.post(&connect).header("cookie", &cookie).form(&[("client_id", "ninja-client")]).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 403);
    // No client secret stored and none typed: the field is named, nothing starts.
    let res = http
        .post(&connect)
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("client_id", "ninja-client"), ("client_secret", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.text().await.unwrap().contains("client_secret: enter the client secret"));

    // Starts the flow with `secret` and follows NinjaOne's redirect; returns the authorize URL and
    // where NinjaOne sends the browser back to.
    let authorize_with = |secret: String| {
        let (http, connect, cookie, csrf) = (http.clone(), connect.clone(), cookie.clone(), csrf.clone());
        async move {
            let form = [("csrf", csrf.as_str()), ("client_id", "ninja-client"), ("client_secret", secret.as_str())];
            let res = http.post(&connect).header("cookie", &cookie).form(&form).send().await.unwrap();
            assert_eq!(res.status().as_u16(), 303);
            let authorize = res.headers()["location"].to_str().unwrap().to_string();
            let res = http.get(&authorize).send().await.unwrap();
            assert_eq!(res.status().as_u16(), 302);
            (authorize, res.headers()["location"].to_str().unwrap().to_string())
        }
    };

    // A wrong client secret: NinjaOne refuses the exchange, the page says so, nothing is stored.
    let (_, back) = authorize_with("not-the-secret".to_string()).await;
    let res = http.get(&back).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 502);
    assert!(res.text().await.unwrap().contains("client authentication failed"));
    assert!(stored(dir.path())["ninja"].is_null(), "nothing stored");

    let (authorize, back) = authorize_with(client_secret.to_string()).await;
    assert!(authorize.starts_with(&format!("{}/ws/oauth/authorize?", ninja.base_url())), "{authorize}");
    assert!(!authorize.contains(client_secret), "no secret in the URL");
    let q: HashMap<String, String> = url::Url::parse(&authorize).unwrap().query_pairs().into_owned().collect();
    assert_eq!(q["redirect_uri"], redirect);
    assert_eq!(q["client_id"], "ninja-client");
    assert!(q["scope"].split(' ').any(|s| s == "offline_access"));
    assert_eq!(q["state"].len(), 64);

    // NinjaOne sent the browser back with a code and our state.
    assert!(back.starts_with(&redirect), "{back}");

    // A forged redirect (not our state) stores nothing.
    let res = http.get(format!("{redirect}?code=stolen&state=forged")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert!(stored(dir.path())["ninja"]["refresh_token"].is_null(), "nothing stored");

    // The real one, without the SameSite=Strict cookie a browser would not send here.
    let res = http.get(&back).send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("ninja: connected to NinjaOne") && text.contains("Check: OK"), "{text}");
    assert!(!text.contains(client_secret));
    let s = stored(dir.path());
    assert_eq!(s["ninja"]["client_id"], "ninja-client");
    assert_eq!(s["ninja"]["client_secret"], client_secret);
    assert!(s["ninja"]["refresh_token"].as_str().is_some_and(|r| !r.is_empty()), "{s}");

    // The state is single-use: the same redirect again is refused.
    let res = http.get(&back).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 400);

    // The Connections page shows the new check result.
    let page = http.get(format!("{base}/connections")).header("cookie", &cookie).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("health notice ok"), "{page}");
}
