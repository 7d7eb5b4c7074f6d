//! SailPoint Identity Security Cloud's Generic Service Desk integration: the ticket-creation
//! request template (Velocity over the provisioning `$plan`) is rendered and POSTed, the response
//! element gives the ticket id, and the status check (resource with `$ticketId`, response element)
//! maps each external status to Committed, Queued or Failed; Queued is checked again later.
//!
//! Sources: SailPoint's Generic Service Desk documentation (General Settings, Connectivity and
//! Authentication, Ticket Creation, Status Mapping pages), the SailPoint community article
//! "Working with Velocity Template Language in ITSM Ticketing" (`$plan`, `$plan.arguments`,
//! `$plan.requests`, `#foreach` over requests and their items, `$!{…}`), and the API
//! `/service-desk-integrations/status-check-configuration`.
//!
//! The Velocity interpreter covers what the recipe uses: `$!{a.b}`, `${a.b}`, `$a.b`,
//! `#set($x = "…" | $a.b)`, `#if($a.b == "…")` / `#elseif` / `#else` / `#end`,
//! `#foreach($x in $a.b)` / `#end`. Anything else fails the test.

use serde_json::{Map, Value};

use super::{Transcript, as_text, localize, lookup};

/// Where SailPoint's provisioning stands for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    Queued,
    Committed,
    Failed,
}

/// The integration as configured from the recipe files.
pub struct SailPoint {
    settings: Value,
    template: String,
    base: String,
    key: String,
    http: reqwest::Client,
    pub transcript: Transcript,
}

impl SailPoint {
    pub fn load(base: &str, key: &str) -> Self {
        let settings: Value =
            serde_json::from_str(&localize(&super::read_recipe("sailpoint/generic-service-desk.json"), base, key))
                .expect("generic-service-desk.json");
        let template_file = settings["ticketCreation"]["requestTemplate"].as_str().expect("requestTemplate");
        let template = super::read_recipe(&format!("sailpoint/{template_file}"));
        Self {
            settings,
            template,
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            http: reqwest::Client::new(),
            transcript: Transcript::default(),
        }
    }

    fn url(&self, resource: &str) -> String {
        let root = self.settings["connectivity"]["url"].as_str().expect("connectivity.url").trim_end_matches('/');
        format!("{root}/{}", resource.trim_start_matches('/'))
    }

    fn request(&self, method: &str, url: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method.parse().expect("method"), url);
        if let Some(h) = self.settings["connectivity"]["headers"].as_object() {
            for (k, v) in h {
                req = req.header(k, v.as_str().unwrap_or_default());
            }
        }
        req
    }

    /// Renders the request template for `plan` (what SailPoint would send).
    pub fn render(&self, plan: &Value) -> String {
        let mut ctx = Map::new();
        ctx.insert("plan".into(), plan.clone());
        render(&self.template, &mut ctx)
    }

    /// Ticket creation: the ticket id from the response element, or the HTTP status and body.
    pub async fn create(&self, plan: &Value) -> Result<String, (u16, Value)> {
        let tc = &self.settings["ticketCreation"];
        let url = self.url(tc["resource"].as_str().expect("resource"));
        let body = self.render(plan);
        let compact = serde_json::from_str::<Value>(&body).map(|v| v.to_string()).unwrap_or(body.clone());
        self.transcript.push(format!("  rendered request template {compact}"));
        let res = self.request(tc["method"].as_str().unwrap_or("POST"), &url).body(body).send().await.expect("send");
        let status = res.status().as_u16();
        let json: Value = res.json().await.unwrap_or(Value::Null);
        let line = format!("POST /{} -> {status} {}", tc["resource"].as_str().unwrap_or(""), summary(&json));
        if !(200..300).contains(&status) {
            self.transcript.push(format!("{line} => ticket creation failed"));
            return Err((status, json));
        }
        let element = tc["responseElement"].as_str().expect("responseElement");
        let id = json_path(&json, element).map(as_text).filter(|s| !s.is_empty());
        self.transcript.push(format!("{line} => {element} = {id:?}"));
        id.ok_or((status, json))
    }

    /// One status check: the external status and what the status mapping makes of it.
    pub async fn check(&self, ticket_id: &str) -> (String, Provisioning) {
        let sc = &self.settings["statusCheck"];
        let resource = sc["resource"].as_str().expect("statusCheck.resource").replace("$ticketId", ticket_id);
        let res =
            self.request(sc["method"].as_str().unwrap_or("GET"), &self.url(&resource)).send().await.expect("send");
        let status = res.status().as_u16();
        let json: Value = res.json().await.unwrap_or(Value::Null);
        let line = format!("GET /{resource} -> {status} {}", summary(&json));
        let external =
            json_path(&json, sc["responseElement"].as_str().expect("responseElement")).map(as_text).unwrap_or_default();
        let mapped = match self.settings["statusMapping"][&external].as_str() {
            Some("Committed") => Provisioning::Committed,
            Some("Failed") => Provisioning::Failed,
            Some("Queued") => Provisioning::Queued,
            // An unmapped status leaves the request where it is.
            _ => Provisioning::Queued,
        };
        self.transcript.push(format!("{line} => {external:?} maps to {mapped:?}"));
        (external, mapped)
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn base(&self) -> &str {
        &self.base
    }
}

fn summary(json: &Value) -> String {
    match (json.get("state"), json.get("result")) {
        (Some(s), Some(r)) => format!("state={} result={}", as_text(s), as_text(r)),
        _ => json.get("error").map(|e| format!("error={e}")).unwrap_or_default(),
    }
}

/// `$.a.b[0].c` (the JSON-path subset a response element uses).
fn json_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let rest = path.strip_prefix('$').unwrap_or_else(|| panic!("response element '{path}' must start with $"));
    lookup(v, rest.trim_start_matches('.'))
}

// ---- a minimal Velocity ----

enum Node {
    Text(String),
    Ref { path: String, quiet: bool, raw: String },
    Set { var: String, value: Expr },
    If { branches: Vec<(Cond, Vec<Node>)>, otherwise: Vec<Node> },
    Foreach { var: String, list: String, body: Vec<Node> },
}

enum Expr {
    Lit(String),
    Path(String),
}

struct Cond {
    left: String,
    right: String,
}

/// Renders `template` with `ctx` (variables set by `#set` / `#foreach` are added to it).
pub fn render(template: &str, ctx: &mut Map<String, Value>) -> String {
    let mut p = Parser { s: template, i: 0 };
    let (nodes, stop) = p.block();
    assert!(stop.is_none(), "unexpected #{} in the request template", stop.unwrap_or_default());
    let mut out = String::new();
    eval(&nodes, ctx, &mut out);
    out
}

fn eval(nodes: &[Node], ctx: &mut Map<String, Value>, out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Ref { path, quiet, raw } => match resolve(ctx, path) {
                Some(v) if !v.is_null() => out.push_str(&as_text(v)),
                // Velocity prints an unresolved `$x` as written; `$!x` as nothing.
                _ if *quiet => {}
                _ => out.push_str(raw),
            },
            Node::Set { var, value } => {
                let v = match value {
                    Expr::Lit(s) => Value::from(s.clone()),
                    Expr::Path(p) => resolve(ctx, p).cloned().unwrap_or(Value::Null),
                };
                ctx.insert(var.clone(), v);
            }
            Node::If { branches, otherwise } => {
                let chosen = branches
                    .iter()
                    .find(|(c, _)| resolve(ctx, &c.left).map(as_text).as_deref() == Some(c.right.as_str()))
                    .map(|(_, b)| b)
                    .unwrap_or(otherwise);
                eval(chosen, ctx, out);
            }
            Node::Foreach { var, list, body } => {
                let items = resolve(ctx, list).and_then(Value::as_array).cloned().unwrap_or_default();
                for item in items {
                    ctx.insert(var.clone(), item);
                    eval(body, ctx, out);
                }
            }
        }
    }
}

fn resolve<'a>(ctx: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    lookup(ctx.get(head)?, rest)
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.i..]
    }

    /// Parses nodes until `#end`, `#else` or `#elseif(` (returned) or the end of input (None).
    fn block(&mut self) -> (Vec<Node>, Option<String>) {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while self.i < self.s.len() {
            let r = self.rest();
            if let Some(after_hash) = r.strip_prefix('#') {
                let word: String = after_hash.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
                if matches!(word.as_str(), "end" | "else" | "elseif") {
                    flush(&mut text, &mut nodes);
                    self.i += 1 + word.len();
                    self.gobble_line_end();
                    return (nodes, Some(word));
                }
                if matches!(word.as_str(), "set" | "if" | "foreach") {
                    flush(&mut text, &mut nodes);
                    self.i += 1 + word.len();
                    let args = self.parens();
                    self.gobble_line_end();
                    nodes.push(self.directive(&word, &args));
                    continue;
                }
                panic!("the emulator's Velocity has no #{word}");
            }
            if r.starts_with('$')
                && let Some((node, len)) = reference(r)
            {
                flush(&mut text, &mut nodes);
                nodes.push(node);
                self.i += len;
                continue;
            }
            let c = r.chars().next().unwrap_or_default();
            text.push(c);
            self.i += c.len_utf8();
        }
        flush(&mut text, &mut nodes);
        (nodes, None)
    }

    fn directive(&mut self, word: &str, args: &str) -> Node {
        match word {
            "set" => {
                let (var, value) = args.split_once('=').expect("#set($x = …)");
                let var = var.trim().trim_start_matches('$').to_string();
                let value = value.trim();
                let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(lit) => Expr::Lit(lit.to_string()),
                    None => Expr::Path(ref_path(value)),
                };
                Node::Set { var, value }
            }
            "foreach" => {
                let (var, list) = args.split_once(" in ").expect("#foreach($x in $list)");
                let (body, stop) = self.block();
                assert_eq!(stop.as_deref(), Some("end"), "#foreach without #end");
                Node::Foreach { var: ref_path(var.trim()), list: ref_path(list.trim()), body }
            }
            "if" => {
                let mut branches = vec![];
                let mut cond = condition(args);
                loop {
                    let (body, stop) = self.block();
                    branches.push((cond, body));
                    match stop.as_deref() {
                        Some("elseif") => cond = condition(&self.parens_after_keyword()),
                        Some("else") => {
                            let (otherwise, stop) = self.block();
                            assert_eq!(stop.as_deref(), Some("end"), "#else without #end");
                            return Node::If { branches, otherwise };
                        }
                        Some("end") => return Node::If { branches, otherwise: vec![] },
                        other => panic!("#if ended by {other:?}"),
                    }
                }
            }
            _ => unreachable!(),
        }
    }

    /// After `#elseif` was consumed by `block` (with any line end), read its `( … )`.
    fn parens_after_keyword(&mut self) -> String {
        // `block` gobbled nothing before the parenthesis: `#elseif(` has no space.
        let args = self.parens();
        self.gobble_line_end();
        args
    }

    fn parens(&mut self) -> String {
        let r = self.rest();
        assert!(r.starts_with('('), "directive without ( … ) at {}", &r[..r.len().min(30)]);
        let mut depth = 0;
        for (k, c) in r.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        let inner = r[1..k].to_string();
                        self.i += k + 1;
                        return inner;
                    }
                }
                _ => {}
            }
        }
        panic!("unclosed ( in the request template")
    }

    /// A directive alone on its line takes the line break with it, as Velocity does.
    fn gobble_line_end(&mut self) {
        if self.rest().starts_with('\n') {
            let line_start = self.s[..self.i].rfind('\n').map(|p| p + 1).unwrap_or(0);
            let before = &self.s[line_start..self.i];
            if before.trim_start().starts_with('#') {
                self.i += 1;
            }
        }
    }
}

fn flush(text: &mut String, nodes: &mut Vec<Node>) {
    if !text.is_empty() {
        nodes.push(Node::Text(std::mem::take(text)));
    }
}

/// `$!{a.b}`, `${a.b}`, `$!a.b`, `$a.b` at the start of `r`: the node and its length.
fn reference(r: &str) -> Option<(Node, usize)> {
    let mut i = 1;
    let quiet = r[i..].starts_with('!');
    if quiet {
        i += 1;
    }
    let braced = r[i..].starts_with('{');
    if braced {
        i += 1;
    }
    let name_len = r[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.').count();
    if name_len == 0 {
        return None;
    }
    let mut path = r[i..i + name_len].to_string();
    i += name_len;
    if braced {
        if !r[i..].starts_with('}') {
            return None;
        }
        i += 1;
    } else {
        // A trailing dot is text (`$x.` at the end of a sentence).
        while path.ends_with('.') {
            path.pop();
            i -= 1;
        }
    }
    Some((Node::Ref { path, quiet, raw: r[..i].to_string() }, i))
}

fn ref_path(s: &str) -> String {
    let s = s.trim().trim_start_matches('$').trim_start_matches('!');
    s.trim_start_matches('{').trim_end_matches('}').to_string()
}

fn condition(args: &str) -> Cond {
    let (l, r) = args.split_once("==").expect("the emulator's #if supports `$a.b == \"text\"` only");
    let right = r.trim();
    let right = right.strip_prefix('"').and_then(|v| v.strip_suffix('"')).expect("#if compares with a \"literal\"");
    Cond { left: ref_path(l), right: right.to_string() }
}
