//! A small W3C WebDriver client over HTTP (reqwest + serde_json) for the console's browser tests,
//! and a `chromedriver` driving Debian's headless `chromium`.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a condition may take before a test fails.
const WAIT: Duration = Duration::from_secs(60);

/// Where `chromedriver` and `chromium` are, or why the browser tests cannot run here.
pub fn browser_paths() -> Result<(PathBuf, PathBuf), String> {
    let find = |env: &str, names: &[&str]| -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(env) {
            return Some(PathBuf::from(p));
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.is_file())
    };
    let driver =
        find("TB_CHROMEDRIVER", &["chromedriver"]).ok_or("chromedriver not found (Debian: chromium-driver)")?;
    let browser =
        find("TB_CHROMIUM", &["chromium", "chromium-browser"]).ok_or("chromium not found (Debian: chromium)")?;
    Ok((driver, browser))
}

/// Whether a missing browser fails the test (set by `cargo xtask test`, which installs it) or
/// skips it with a note (a developer's plain `cargo test` without chromium).
pub fn browser_required() -> bool {
    std::env::var("TB_BROWSER_TESTS").is_ok_and(|v| v == "required")
}

/// A running chromedriver; killed when dropped.
pub struct Driver {
    child: Child,
    pub base: String,
    browser: PathBuf,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Driver {
    pub async fn start(driver: &Path, browser: &Path, log: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let d = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            browser: browser.to_path_buf(),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = d.http.get(format!("{}/status", d.base)).send().await.ok();
            let ready = match ready {
                Some(r) => r.json::<Value>().await.ok().is_some_and(|v| v["value"]["ready"] == true),
                None => false,
            };
            if ready {
                return d;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new headless browser session.
    pub async fn session(&self) -> Browser {
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": self.browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--no-first-run", "--disable-extensions"]}}}});
        let v: Value =
            self.http.post(format!("{}/session", self.base)).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        Browser { http: self.http.clone(), url: format!("{}/session/{id}", self.base) }
    }
}

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    url: String,
}

/// An element reference.
#[derive(Clone)]
pub struct Element(String);

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.map_err(|e| e.to_string())?;
        let ok = res.status().is_success();
        let v: Value = res.json().await.map_err(|e| e.to_string())?;
        if ok { Ok(v["value"].clone()) } else { Err(v["value"].to_string()) }
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await.unwrap();
    }

    pub async fn current_url(&self) -> String {
        self.get("/url").await.unwrap().as_str().unwrap_or_default().to_string()
    }

    pub async fn source(&self) -> String {
        self.get("/source").await.unwrap().as_str().unwrap_or_default().to_string()
    }

    pub async fn title(&self) -> String {
        self.get("/title").await.unwrap().as_str().unwrap_or_default().to_string()
    }

    /// Every element matching a CSS selector.
    pub async fn all(&self, css: &str) -> Vec<Element> {
        let v = self.post("/elements", json!({"using": "css selector", "value": css})).await.unwrap_or_default();
        v.as_array().into_iter().flatten().filter_map(element_id).map(Element).collect()
    }

    /// The element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.all(css).await.into_iter().next() {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element '{css}' on {}:\n{}",
                self.current_url().await,
                self.text("body").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{}/click", e.0), json!({})).await.unwrap_or_else(|m| panic!("click {css}: {m}"));
    }

    /// Clicks something that loads a new page (a link, a form's button) and waits until the old
    /// page is gone, so what is read next comes from the new one.
    pub async fn click_and_load(&self, css: &str) {
        let old = self.find("html").await;
        self.click(css).await;
        let deadline = Instant::now() + WAIT;
        while self.get(&format!("/element/{}/name", old.0)).await.is_ok() {
            assert!(Instant::now() < deadline, "clicking '{css}' loaded no new page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.find("body").await;
    }

    /// Clears a field and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{}/clear", e.0), json!({})).await.unwrap();
        self.post(&format!("/element/{}/value", e.0), json!({"text": text})).await.unwrap();
    }

    /// Visible text of the first element matching `css` ("" when there is none).
    pub async fn text(&self, css: &str) -> String {
        let Some(e) = self.all(css).await.into_iter().next() else { return String::new() };
        self.get(&format!("/element/{}/text", e.0))
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Reloads the page until `css`'s text satisfies `pred` (panics after a while, with the page text).
    pub async fn reload_until(&self, css: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let t = self.text(css).await;
            if pred(&t) {
                return t;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; '{css}' shows '{t}'");
            tokio::time::sleep(Duration::from_millis(250)).await;
            self.post("/refresh", json!({})).await.unwrap();
        }
    }

    /// Sends keys to the focused element (e.g. "\u{E004}" for Tab).
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [json!({"type": "keyDown", "value": c.to_string()}), json!({"type": "keyUp", "value": c.to_string()})]
            })
            .collect();
        self.post("/actions", json!({"actions": [{"type": "key", "id": "kb", "actions": actions}]})).await.unwrap();
    }

    /// The focused element's attribute `name`.
    pub async fn active_attr(&self, name: &str) -> String {
        let e = self.get("/element/active").await.unwrap();
        let id = element_id(&e).unwrap();
        self.get(&format!("/element/{id}/attribute/{name}"))
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Attribute `name` of the first element matching `css` (`None` when absent).
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let e = self.all(css).await.into_iter().next()?;
        self.get(&format!("/element/{}/attribute/{name}", e.0)).await.ok()?.as_str().map(str::to_string)
    }

    /// Whether an element found earlier is still in the page (no navigation happened since).
    pub async fn still_attached(&self, e: &Element) -> bool {
        self.get(&format!("/element/{}/name", e.0)).await.is_ok()
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self.get("/screenshot").await.unwrap();
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    pub async fn quit(self) {
        self.http.delete(&self.url).send().await.ok();
    }
}

fn element_id(v: &Value) -> Option<String> {
    v.as_object()?.values().next()?.as_str().map(str::to_string)
}
