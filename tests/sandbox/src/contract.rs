//! Vendor contracts: OpenAPI 3 documents in `tests/sandbox/contracts/<target>.{json,yaml}` that
//! every request to a simulator, and every response it sends, is checked against.
//!
//! A small hand-written validator of the OpenAPI subset vendor documents use: path templates and
//! methods, path and query parameters (declared, typed), request content types, JSON,
//! `application/x-www-form-urlencoded` and `multipart/form-data` bodies against their schema
//! (`$ref`, `allOf`/`oneOf`/`anyOf`, objects with `required` and `additionalProperties`, arrays,
//! enums, `nullable`, integer formats and bounds, string lengths, `uuid` and `date-time`
//! formats), and response bodies against the schema of their status. Leniencies, each because
//! OpenAPI 3.0 generators cannot say otherwise, are listed in `contracts/README.md`.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// HTTP status of a simulator's answer to a contract violation (a 4xx: never retried).
pub const VIOLATION_STATUS: u16 = 422;
/// Header marking that answer.
pub const VIOLATION_HEADER: &str = "x-sim-contract-violation";

/// Appends `target<TAB>METHOD /template` of a checked request to the file named by
/// `TB_CONTRACT_LOG`, if set (to count the request shapes the suites check).
pub fn log_checked(contract: &Contract, op: usize) {
    log_line(&format!("{}\t{}", contract.target(), contract.operation_name(op)));
}

/// Appends a line to the `TB_CONTRACT_LOG` file, if set.
pub fn log_line(line: &str) {
    let Some(file) = std::env::var_os("TB_CONTRACT_LOG") else { return };
    let line = format!("{line}\n");
    let opened = std::fs::OpenOptions::new().create(true).append(true).open(file);
    if let Ok(mut f) = opened {
        let _ = std::io::Write::write_all(&mut f, line.as_bytes());
    }
}

/// The folder holding the contracts.
pub fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")
}

/// The contract name of a simulator profile (`SimProfile::name`), if it has one.
pub fn target_of_profile(profile: &str) -> Option<&'static str> {
    match profile {
        "kaseya-bms" => Some("bms"),
        "kaseya-vsa" => Some("vsa"),
        "ninjaone" => Some("ninjaone"),
        "otrs" => Some("otrs"),
        "rt" => Some("rt"),
        _ => None,
    }
}

/// The contract of `target` (loaded once per process), or `None` when no file exists.
///
/// # Panics
/// When the file exists but is not a usable OpenAPI document: a broken contract must not
/// silently switch checking off.
pub fn for_target(target: &str) -> Option<Arc<Contract>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<Contract>>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
    cache
        .entry(target.to_string())
        .or_insert_with(|| {
            let dir = contracts_dir();
            let file =
                ["json", "yaml", "yml"].iter().map(|e| dir.join(format!("{target}.{e}"))).find(|p| p.is_file())?;
            match Contract::load(target, &file) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => panic!("contract {}: {e}", file.display()),
            }
        })
        .clone()
}

/// A request as the contract sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// A form field: name, (part Content-Type, text).
type FormField = (String, (Option<String>, String));

enum Segment {
    Literal(String),
    Param(String),
}

struct Operation {
    method: String,
    template: String,
    segments: Vec<Segment>,
    /// The operation object, path-level parameters merged in.
    node: Value,
}

/// One loaded contract.
pub struct Contract {
    target: String,
    doc: Value,
    ops: Vec<Operation>,
}

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

impl Contract {
    /// Reads a JSON or YAML OpenAPI 3 document.
    pub fn load(target: &str, file: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
        let doc: Value = if file.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| e.to_string())?
        } else {
            serde_norway::from_str(&text).map_err(|e| e.to_string())?
        };
        Self::from_value(target, doc)
    }

    /// A contract from a parsed document.
    pub fn from_value(target: &str, doc: Value) -> Result<Self, String> {
        if !doc.get("openapi").and_then(Value::as_str).is_some_and(|v| v.starts_with('3')) {
            return Err("not an OpenAPI 3 document (no `openapi: 3.x`)".into());
        }
        let paths = doc.get("paths").and_then(Value::as_object).ok_or("no `paths`")?;
        let mut ops = Vec::new();
        for (template, item) in paths {
            let shared = item.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
            for m in METHODS {
                let Some(op) = item.get(m) else { continue };
                let mut node = op.clone();
                let mut params = shared.clone();
                params.extend(op.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default());
                if let Some(obj) = node.as_object_mut() {
                    obj.insert("parameters".into(), Value::Array(params));
                }
                let segments = template
                    .trim_matches('/')
                    .split('/')
                    .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(p) => Segment::Param(p.to_string()),
                        None => Segment::Literal(s.to_string()),
                    })
                    .collect();
                ops.push(Operation { method: m.to_ascii_uppercase(), template: template.clone(), segments, node });
            }
        }
        Ok(Self { target: target.to_string(), doc, ops })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// `"METHOD /template"` of operation `op`.
    pub fn operation_name(&self, op: usize) -> String {
        self.ops.get(op).map(|o| format!("{} {}", o.method, o.template)).unwrap_or_default()
    }

    /// Number of operations in the contract.
    pub fn operation_count(&self) -> usize {
        self.ops.len()
    }

    /// The matching operation, or the violations of the request.
    pub fn check_request(&self, req: &RequestView<'_>) -> Result<usize, Vec<String>> {
        let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let mut best: Option<(usize, usize)> = None;
        let mut path_known = false;
        for (i, op) in self.ops.iter().enumerate() {
            let Some(literals) = match_path(&op.segments, &segs) else { continue };
            path_known = true;
            if op.method == req.method && best.is_none_or(|(_, l)| literals > l) {
                best = Some((i, literals));
            }
        }
        let Some((i, _)) = best else {
            let what = if path_known { "this method" } else { "this path" };
            return Err(vec![format!(
                "{} {}: the {} contract has no operation for {what}",
                req.method, req.path, self.target
            )]);
        };
        let op = &self.ops[i];
        let name = self.operation_name(i);
        let mut out = Vec::new();
        self.check_path_params(op, &segs, &mut out);
        self.check_query(op, req.query, &mut out);
        self.check_body(op, req, &mut out);
        if out.is_empty() { Ok(i) } else { Err(out.into_iter().map(|v| format!("{name}: request {v}")).collect()) }
    }

    /// Violations of a response of operation `op`.
    pub fn check_response(&self, op: usize, status: u16, content_type: Option<&str>, body: &[u8]) -> Vec<String> {
        let Some(operation) = self.ops.get(op) else { return Vec::new() };
        let name = self.operation_name(op);
        let responses = operation.node.get("responses").and_then(Value::as_object);
        let code = status.to_string();
        let class = format!("{}XX", status / 100);
        let success = (200..300).contains(&status);
        // `default` describes the success body in generated documents (swagger-core writes
        // "default response"); error bodies are checked only where a status documents them.
        let entry = responses.and_then(|r| {
            r.get(&code)
                .or_else(|| r.get(&class))
                .or_else(|| r.get(&class.to_lowercase()))
                .or_else(|| r.get("default").filter(|_| success))
        });
        let Some(entry) = entry.map(|e| self.resolve(e)) else {
            return if success {
                vec![format!("{name}: response status {status} is not documented")]
            } else {
                Vec::new()
            };
        };
        let Some(content) = entry.get("content").and_then(Value::as_object) else { return Vec::new() };
        let schema = ["application/json", "text/json"]
            .iter()
            .find_map(|k| content.get(*k))
            .or_else(|| content.iter().find(|(k, _)| k.contains("json")).map(|(_, v)| v))
            .and_then(|m| m.get("schema"));
        let Some(schema) = schema else { return Vec::new() };
        let mut out = Vec::new();
        let media = media_type(content_type);
        if body.is_empty() {
            out.push(format!("response {status} has an empty body; the contract documents a JSON body"));
        } else if !media.contains("json") {
            out.push(format!("response {status} has Content-Type '{media}'; the contract documents JSON"));
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(v) => self.validate(schema, &v, "body", &mut out, 0),
                Err(e) => out.push(format!("response {status} body is not JSON: {e}")),
            }
        }
        out.into_iter().map(|v| format!("{name}: response {v}")).collect()
    }

    fn parameters<'a>(&'a self, op: &'a Operation, location: &str) -> Vec<&'a Value> {
        op.node
            .get("parameters")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| self.resolve(p))
                    .filter(|p| p.get("in").and_then(Value::as_str) == Some(location))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn check_path_params(&self, op: &Operation, segs: &[&str], out: &mut Vec<String>) {
        let params = self.parameters(op, "path");
        for (seg, raw) in op.segments.iter().zip(segs) {
            let Segment::Param(name) = seg else { continue };
            let text = percent_decode(raw);
            match params.iter().find(|p| p.get("name").and_then(Value::as_str) == Some(name)) {
                Some(p) => {
                    if let Some(s) = p.get("schema") {
                        self.validate_text(s, &text, &format!("path parameter {name}"), out);
                    }
                }
                None => out.push(format!("path parameter {name} is not declared")),
            }
        }
    }

    fn check_query(&self, op: &Operation, query: Option<&str>, out: &mut Vec<String>) {
        let params = self.parameters(op, "query");
        let pairs = query.map(parse_pairs).unwrap_or_default();
        for (k, v) in &pairs {
            match params.iter().find(|p| p.get("name").and_then(Value::as_str) == Some(k.as_str())) {
                Some(p) => {
                    if let Some(s) = p.get("schema") {
                        let s = self.resolve(s);
                        let item = if s.get("type").and_then(Value::as_str) == Some("array") {
                            s.get("items").unwrap_or(&Value::Null)
                        } else {
                            s
                        };
                        self.validate_text(item, v, &format!("query parameter {k}"), out);
                    }
                }
                None => out.push(format!("query parameter '{k}' is not declared")),
            }
        }
        for p in params {
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
            if p.get("required").and_then(Value::as_bool) == Some(true) && !pairs.iter().any(|(k, _)| k == name) {
                out.push(format!("required query parameter '{name}' is missing"));
            }
        }
    }

    fn check_body(&self, op: &Operation, req: &RequestView<'_>, out: &mut Vec<String>) {
        let Some(rb) = op.node.get("requestBody").map(|r| self.resolve(r)) else {
            if !req.body.is_empty() {
                out.push("has a body; the operation takes none".into());
            }
            return;
        };
        if req.body.is_empty() {
            if rb.get("required").and_then(Value::as_bool) == Some(true) {
                out.push("body is required".into());
            }
            return;
        }
        let content = rb.get("content").and_then(Value::as_object).cloned().unwrap_or_default();
        let media = media_type(req.content_type);
        let Some((_, entry)) = content.iter().find(|(k, _)| media_matches(k, &media)) else {
            let accepted: Vec<&str> = content.keys().map(String::as_str).collect();
            out.push(format!("Content-Type '{media}' is not accepted (the contract accepts {})", accepted.join(", ")));
            return;
        };
        let schema = entry.get("schema").cloned().unwrap_or(Value::Null);
        if media.contains("json") {
            match serde_json::from_slice::<Value>(req.body) {
                Ok(v) => self.validate(&schema, &v, "body", out, 0),
                Err(e) => out.push(format!("body is not JSON: {e}")),
            }
        } else if media == "application/x-www-form-urlencoded" {
            let text = String::from_utf8_lossy(req.body);
            let fields = parse_pairs(&text).into_iter().map(|(k, v)| (k, (None, v))).collect();
            self.validate_form(&schema, fields, out);
        } else if media == "multipart/form-data" {
            match parse_multipart(req.content_type.unwrap_or_default(), req.body) {
                Some(parts) => self.validate_form(&schema, parts, out),
                None => out.push("body is not valid multipart/form-data".into()),
            }
        }
    }

    /// Form fields (name → (part content type, text)) against an object schema.
    fn validate_form(&self, schema: &Value, fields: Vec<FormField>, out: &mut Vec<String>) {
        let schema = self.resolve(schema);
        let props = schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        for (name, (ctype, text)) in &fields {
            let at = format!("form field {name}");
            match props.get(name) {
                Some(p) => {
                    let p = self.resolve(p);
                    if p.get("type").and_then(Value::as_str) == Some("object") {
                        if ctype.as_deref().is_some_and(|c| !media_type(Some(c)).contains("json")) {
                            out.push(format!(
                                "{at} has Content-Type '{}'; an object part is JSON",
                                media_type(ctype.as_deref())
                            ));
                        }
                        match serde_json::from_str::<Value>(text) {
                            Ok(v) => self.validate(p, &v, &at, out, 0),
                            Err(e) => out.push(format!("{at} is not JSON: {e}")),
                        }
                    } else {
                        self.validate_text(p, text, &at, out);
                    }
                }
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    out.push(format!("{at} is not declared"))
                }
                None => {}
            }
        }
        for r in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !fields.iter().any(|(k, _)| k == r) {
                out.push(format!("required form field '{r}' is missing"));
            }
        }
    }

    /// Resolves a local `$ref` (repeatedly).
    fn resolve<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        for _ in 0..32 {
            let Some(r) = node.get("$ref").and_then(Value::as_str) else { return node };
            match r.strip_prefix('#').and_then(|p| self.doc.pointer(p)) {
                Some(n) => node = n,
                None => return &Value::Null,
            }
        }
        node
    }

    /// A scalar sent as text (path, query, form field) against its schema.
    fn validate_text(&self, schema: &Value, text: &str, at: &str, out: &mut Vec<String>) {
        let s = self.resolve(schema);
        let value = match s.get("type").and_then(Value::as_str) {
            Some("integer") => match text.trim().parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => return out.push(format!("{at} = '{}' is not an integer", clip(text))),
            },
            Some("number") => match text.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => Value::Number(n),
                None => return out.push(format!("{at} = '{}' is not a number", clip(text))),
            },
            Some("boolean") => match text.trim().to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return out.push(format!("{at} = '{}' is not a boolean", clip(text))),
            },
            Some("object") | Some("array") => {
                return out.push(format!("{at}: the contract wants a structured value, not text"));
            }
            _ => Value::String(text.to_string()),
        };
        self.validate(s, &value, at, out, 0);
    }

    /// A JSON value against a schema.
    fn validate(&self, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>, depth: usize) {
        if depth > 64 {
            return;
        }
        let is_ref = schema.get("$ref").is_some();
        let s = self.resolve(schema);
        let Some(obj) = s.as_object() else { return };
        if v.is_null() {
            let nullable = obj.get("nullable").and_then(Value::as_bool) == Some(true);
            if !(nullable || is_ref || obj.get("type").is_none()) {
                out.push(format!("{at} is null; the contract does not allow null"));
            }
            return;
        }
        for (key, any) in [("allOf", false), ("anyOf", true), ("oneOf", true)] {
            let Some(subs) = obj.get(key).and_then(Value::as_array) else { continue };
            if any {
                let fits = subs.iter().any(|sub| {
                    let mut o = Vec::new();
                    self.validate(sub, v, at, &mut o, depth + 1);
                    o.is_empty()
                });
                if !fits {
                    out.push(format!("{at} matches none of the {key} alternatives"));
                }
            } else {
                for sub in subs {
                    self.validate(sub, v, at, out, depth + 1);
                }
            }
        }
        if let Some(allowed) = obj.get("enum").and_then(Value::as_array)
            && !allowed.contains(v)
        {
            out.push(format!(
                "{at} = {} is not one of {}",
                clip(&v.to_string()),
                clip(&Value::Array(allowed.clone()).to_string())
            ));
        }
        match obj.get("type").and_then(Value::as_str) {
            Some("object") => self.validate_object(obj, v, at, out, depth),
            Some("array") => match v.as_array() {
                Some(items) => {
                    if let Some(item) = obj.get("items") {
                        for (i, x) in items.iter().enumerate() {
                            self.validate(item, x, &format!("{at}[{i}]"), out, depth + 1);
                        }
                    }
                }
                None => out.push(format!("{at} is {}; the contract wants an array", kind(v))),
            },
            Some("string") => match v.as_str() {
                Some(text) => check_string(obj, text, at, out),
                None => out.push(format!("{at} is {}; the contract wants a string", kind(v))),
            },
            Some("integer") => {
                if v.is_i64() || v.is_u64() {
                    check_number(obj, v, at, out);
                } else {
                    out.push(format!("{at} is {}; the contract wants an integer", kind(v)));
                }
            }
            Some("number") => {
                if v.is_number() {
                    check_number(obj, v, at, out);
                } else {
                    out.push(format!("{at} is {}; the contract wants a number", kind(v)));
                }
            }
            Some("boolean") if !v.is_boolean() => {
                out.push(format!("{at} is {}; the contract wants a boolean", kind(v)))
            }
            _ => {}
        }
    }

    fn validate_object(&self, obj: &Map<String, Value>, v: &Value, at: &str, out: &mut Vec<String>, depth: usize) {
        let free_form = !["properties", "additionalProperties", "required", "allOf", "oneOf", "anyOf"]
            .iter()
            .any(|k| obj.contains_key(*k));
        if free_form {
            // `{type: object}` alone is what swagger-core writes for `java.lang.Object`: any value.
            return;
        }
        let Some(fields) = v.as_object() else {
            return out.push(format!("{at} is {}; the contract wants an object", kind(v)));
        };
        let props = obj.get("properties").and_then(Value::as_object);
        for r in obj.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !fields.contains_key(r) {
                out.push(format!("{at}.{r} is required but missing"));
            }
        }
        for (k, x) in fields {
            let here = format!("{at}.{k}");
            match (props.and_then(|p| p.get(k)), obj.get("additionalProperties")) {
                (Some(p), _) => self.validate(p, x, &here, out, depth + 1),
                (None, Some(Value::Bool(false))) => out.push(format!("{here} is not a property the contract declares")),
                (None, Some(extra)) if extra.is_object() => self.validate(extra, x, &here, out, depth + 1),
                _ => {}
            }
        }
    }
}

fn check_string(obj: &Map<String, Value>, text: &str, at: &str, out: &mut Vec<String>) {
    let len = text.chars().count() as u64;
    if let Some(max) = obj.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        out.push(format!("{at} has {len} characters; the contract allows at most {max}"));
    }
    if let Some(min) = obj.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        out.push(format!("{at} has {len} characters; the contract wants at least {min}"));
    }
    match obj.get("format").and_then(Value::as_str) {
        Some("uuid") if !is_uuid(text) => out.push(format!("{at} = '{}' is not a UUID", clip(text))),
        Some("date-time") if !is_date_time(text) => out.push(format!("{at} = '{}' is not a date-time", clip(text))),
        _ => {}
    }
}

fn check_number(obj: &Map<String, Value>, v: &Value, at: &str, out: &mut Vec<String>) {
    let Some(n) = v.as_f64() else { return };
    let (lo, hi) = match obj.get("format").and_then(Value::as_str) {
        Some("int32") => (Some(i32::MIN as f64), Some(i32::MAX as f64)),
        Some("int64") => (Some(i64::MIN as f64), Some(i64::MAX as f64)),
        _ => (None, None),
    };
    if lo.is_some_and(|l| n < l) || hi.is_some_and(|h| n > h) {
        out.push(format!("{at} = {n} does not fit {}", obj.get("format").and_then(Value::as_str).unwrap_or_default()));
    }
    let exclusive = |k: &str| obj.get(k).and_then(Value::as_bool) == Some(true);
    if let Some(min) = obj.get("minimum").and_then(Value::as_f64)
        && (n < min || (exclusive("exclusiveMinimum") && n == min))
    {
        out.push(format!("{at} = {n} is below the minimum {min}"));
    }
    if let Some(max) = obj.get("maximum").and_then(Value::as_f64)
        && (n > max || (exclusive("exclusiveMaximum") && n == max))
    {
        out.push(format!("{at} = {n} is above the maximum {max}"));
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 80 { format!("{}…", s.chars().take(80).collect::<String>()) } else { s.to_string() }
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_date_time(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").is_ok()
}

/// Number of literal segments when `segments` matches `path`.
fn match_path(segments: &[Segment], path: &[&str]) -> Option<usize> {
    if segments.len() != path.len() {
        return None;
    }
    let mut literals = 0;
    for (seg, p) in segments.iter().zip(path) {
        match seg {
            Segment::Literal(l) if l == p => literals += 1,
            Segment::Literal(_) => return None,
            Segment::Param(_) if p.is_empty() => return None,
            Segment::Param(_) => {}
        }
    }
    Some(literals)
}

/// `type/subtype`, lower-case, without parameters (empty when absent).
fn media_type(content_type: Option<&str>) -> String {
    content_type.unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Whether `media` is accepted by the contract's content key (`application/*+json` style
/// wildcards allowed).
fn media_matches(key: &str, media: &str) -> bool {
    let key = key.to_ascii_lowercase();
    if key == media || key == "*/*" {
        return !media.is_empty();
    }
    let (Some((kt, ks)), Some((mt, ms))) = (key.split_once('/'), media.split_once('/')) else { return false };
    (kt == "*" || kt == mt) && (ks == "*" || ks.strip_prefix('*').is_some_and(|suffix| ms.ends_with(suffix)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `k=v&k2=v2` pairs, percent-decoded.
fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Parts of a `multipart/form-data` body: name → (part Content-Type, text).
fn parse_multipart(content_type: &str, body: &[u8]) -> Option<Vec<FormField>> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_string())?;
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut chunks = text.split(delimiter.as_str());
    chunks.next()?;
    for chunk in chunks {
        if chunk.starts_with("--") {
            return Some(parts);
        }
        let chunk = chunk.strip_prefix("\r\n")?;
        let (head, content) = chunk.split_once("\r\n\r\n")?;
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        let mut name = None;
        let mut ctype = None;
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':')?;
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                name = v
                    .split(';')
                    .filter_map(|p| p.trim().strip_prefix("name="))
                    .next()
                    .map(|n| n.trim_matches('"').to_string());
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                ctype = Some(v.trim().to_string());
            }
        }
        parts.push((name?, (ctype, content.to_string())));
    }
    None
}

#[cfg(test)]
mod tests;
