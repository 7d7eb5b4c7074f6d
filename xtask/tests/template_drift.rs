//! Keeps `infra/template.yaml` in step with the code, without AWS or network:
//!
//! - every function crate is deployed from its own directory as a `rust-cargolambda` build;
//! - every environment variable the code reads is set on every function (or is listed below as
//!   one the template must not set), and the configuration overrides really select DynamoDB and
//!   Secrets Manager when fed through the real config loader;
//! - each function's IAM grants equal what its code path calls: the DynamoDB operations of the
//!   store methods it reaches, secrets reads/writes, events; nothing more, nothing less;
//! - the table layout, the stream filter, the API routes and the alarms' metrics match the code.
//!
//! The facts that cannot be read mechanically (which engine files a function runs, which DynamoDB
//! operations a store method issues) are the tables at the top; the tests cross-check them against
//! the sources so that a new store call, operation, env var, metric or route fails here first.

mod common;

use common::{STORE_METHOD_ACTIONS, eval, read, root, template};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

// ───────────────────────────── tables derived by reading the code ─────────────────────────────

/// Engine files each function's entrypoint runs (functions/*/src/main.rs call these use cases).
#[rustfmt::skip]
const FUNCTION_ENGINE_FILES: &[(&str, &[&str])] = &[
    // api::handle: routing + auth (HMAC key from secrets), intake parsing, accept/get/cancel/replay/list,
    // and desk webhooks (engine/hooks.rs: the webhook key, the poll index, the connector's status read,
    // then apply_status as a poll run records it).
    (
        "intake",
        &[
            "engine/api.rs", "engine/intake.rs", "engine/mod.rs", "engine/deliveries_api.rs", "engine/cancel.rs",
            "engine/hooks.rs",
        ],
    ),
    // create_one (stream) and create_due (sweep).
    ("create-ticket", &["engine/create.rs", "mapping/ticket_links.rs"]),
    // poll_all (and its read plan / poll mark), then deliver_due (the outbox).
    ("poll-status", &["engine/poll.rs", "engine/poll_changes.rs", "engine/outbox.rs"]),
    // refresh_tokens.
    ("refresh-token", &["engine/tokens.rs"]),
    // sync_mappings: the engine's lease and metrics, the run itself in the mapping layer.
    ("sync-mappings", &["engine/sync.rs", "mapping/sync.rs"]),
    // The web console: api::handle as intake does, plus the admin mapping routes its Mappings page
    // calls in-process (engine/mappings_api.rs and the mapping layer's preview / match / apply);
    // its own pages are in FUNCTION_CRATE_DIRS.
    (
        "web-console",
        &[
            "engine/api.rs", "engine/intake.rs", "engine/mod.rs", "engine/deliveries_api.rs", "engine/cancel.rs",
            "engine/mappings_api.rs", "mapping/mod.rs", "mapping/apply.rs", "mapping/apply_users.rs",
            "mapping/plan.rs", "mapping/records.rs", "mapping/source.rs", "mapping/users.rs",
        ],
    ),
];

/// Library crates besides `bridge` whose code a function runs (their store, secrets and connector
/// calls count towards its grants like the engine files'): directory relative to the root.
const FUNCTION_CRATE_DIRS: &[(&str, &str)] = &[("web-console", "console/src")];

/// `TICKET_BRIDGE__…` overrides only some functions set: (function, variable, why).
#[rustfmt::skip]
const FUNCTION_OVERRIDES: &[(&str, &str, &str)] = &[
    (
        "web-console",
        "TICKET_BRIDGE__AUTH__CONSOLE_SECRET",
        "the secret whose session_key seals the console's session cookies",
    ),
];

/// Calls that pull in another file's calls (`marker` found in a function's files → scan `file` too).
const INCLUDES: &[(&str, &str)] = &[
    ("self.notifier.", "engine/notify.rs"),
    ("self.deliver_", "engine/deliver.rs"),
    // Closing a cancelled task's ticket (create-ticket's stream records, poll-status's queue).
    ("self.close_cancelled(", "engine/ticket_close.rs"),
    // Reopen window: remembered when a group ticket closes, reopened when the group's alert opens.
    ("self.try_reopen(", "engine/reopen.rs"),
    ("self.remember_closed_group(", "engine/reopen.rs"),
    ("self.forget_closed_group(", "engine/reopen.rs"),
    // Recording a status read (a poll run's, a webhook's).
    (".apply_status(", "engine/status_apply.rs"),
];

/// Store methods reached through helpers in `store/mod.rs` rather than a direct `store.x(` call.
#[rustfmt::skip]
const STORE_HELPERS: &[(&str, &[&str])] = &[
    // store::claim(): version-checked update of the claimed task.
    ("claim(", &["update_task"]),
    // Store::claim_for_creation default: due query, then claim each task.
    ("claim_for_creation(", &["due_for_creation", "update_task"]),
];

/// DynamoDB client calls of the store source and the IAM actions they need. Calls listed with no
/// action only create test tables (never issued by the functions).
#[rustfmt::skip]
const SDK_CALL_ACTIONS: &[(&str, &[&str])] = &[
    (".get_item()", &["dynamodb:GetItem"]),
    (".put_item()", &["dynamodb:PutItem"]),
    (".update_item()", &["dynamodb:UpdateItem"]),
    (".delete_item()", &["dynamodb:DeleteItem"]),
    (".query()", &["dynamodb:Query"]),
    (".transact_write_items()", &["dynamodb:PutItem"]),
    (".create_table()", &[]),
    (".describe_table()", &[]),
    (".update_time_to_live()", &[]),
];

/// `client.x()` calls in the store that are not DynamoDB operations.
const NOT_OPERATIONS: &[&str] = &["clone", "config"];

/// Environment variables the code reads that the template must NOT set, with the reason.
#[rustfmt::skip]
const ENV_NOT_FROM_TEMPLATE: &[(&str, &str)] = &[
    (
        "AWS_ACCESS_KEY_ID",
        "provided by the Lambda runtime (reserved)",
    ),
    ("AWS_REGION", "provided by the Lambda runtime (reserved)"),
    (
        "AWS_DEFAULT_REGION",
        "provided by the Lambda runtime (reserved)",
    ),
    (
        "TB_AWS_ENDPOINT",
        "local AWS endpoint for tests; must stay unset in AWS",
    ),
    (
        "AWS_LAMBDA_LOG_FORMAT",
        "set by Lambda from the function's LoggingConfig (reserved)",
    ),
    (
        "AWS_LAMBDA_LOG_LEVEL",
        "set by Lambda from LoggingConfig.ApplicationLogLevel (reserved)",
    ),
    (
        "RUST_LOG",
        "optional log level for local runs; LoggingConfig.ApplicationLogLevel is the deployed knob",
    ),
];

/// `TICKET_BRIDGE__…` overrides every function needs (read through `std::env::vars()`).
const REQUIRED_OVERRIDES: &[&str] =
    &["TICKET_BRIDGE__SETTINGS__STORE", "TICKET_BRIDGE__SETTINGS__TABLE_NAME", "TICKET_BRIDGE__SETTINGS__SECRETS"];

/// Routes the code serves that API Gateway deliberately does not expose.
const UNEXPOSED_ROUTES: &[(&str, &str, &str)] = &[("GET", "/healthz", "local runner probe")];

// ───────────────────────────── template loading ─────────────────────────────

fn resources(t: &Value) -> &Map<String, Value> {
    t["Resources"].as_object().expect("Resources")
}

fn of_type<'a>(t: &'a Value, ty: &str) -> Vec<(&'a str, &'a Value)> {
    resources(t).iter().filter(|(_, r)| r["Type"] == ty).map(|(k, v)| (k.as_str(), v)).collect()
}

/// Function logical id → crate name (from CodeUri).
fn functions(t: &Value) -> BTreeMap<String, (String, Value)> {
    of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, r)| {
            let uri = r["Properties"]["CodeUri"].as_str().unwrap_or_else(|| panic!("{id}: CodeUri must be a path"));
            let name = uri.rsplit('/').next().unwrap().to_string();
            (name, (id.to_string(), r.clone()))
        })
        .collect()
}

fn fn_named<'a>(fns: &'a BTreeMap<String, (String, Value)>, name: &str) -> &'a (String, Value) {
    fns.get(name).unwrap_or_else(|| panic!("no function deploys functions/{name}"))
}

/// A function property, falling back to `Globals.Function`.
fn prop<'a>(t: &'a Value, f: &'a Value, key: &str) -> &'a Value {
    let own = &f["Properties"][key];
    if own.is_null() { &t["Globals"]["Function"][key] } else { own }
}

/// Environment variable names a function gets (Globals merged with its own).
fn env_keys(t: &Value, f: &Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for vars in [&t["Globals"]["Function"]["Environment"]["Variables"], &f["Properties"]["Environment"]["Variables"]] {
        if let Some(m) = vars.as_object() {
            keys.extend(m.keys().cloned());
        }
    }
    keys
}

// ───────────────────────────── source scanning ─────────────────────────────

/// Every `.rs` file under `dir` (relative to the root), with `#[cfg(test)]` modules cut off.
fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join(dir), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, strip_tests(&text))
        })
        .collect()
}

fn strip_tests(text: &str) -> String {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// `pub const NAME: &str = "value";` definitions in `text`.
fn str_consts(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line
            .strip_prefix("pub const ")
            .or_else(|| line.strip_prefix("const "))
            .or_else(|| line.strip_prefix("pub(crate) const "))
            .or_else(|| line.strip_prefix("pub(super) const "))
        else {
            continue;
        };
        let Some((name, rest)) = rest.split_once(": &str = \"") else {
            continue;
        };
        let Some((value, _)) = rest.split_once("\";") else {
            continue;
        };
        out.insert(name.trim().to_string(), value.to_string());
    }
    out
}

/// The arguments of every `needle` call: the text up to the matching `)`.
fn call_args<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(needle) {
        let after = &rest[i + needle.len()..];
        let end = after.find(')').unwrap_or(after.len());
        out.push(after[..end].trim());
        rest = after;
    }
    out
}

/// Environment variable names the functions and the library read.
fn env_vars_read() -> BTreeSet<String> {
    let mut files = sources("shared/src");
    files.extend(sources("functions"));
    let consts: BTreeMap<String, String> = files.iter().flat_map(|(_, t)| str_consts(t)).collect();
    let mut names = BTreeSet::new();
    for (path, text) in &files {
        for needle in ["env::var(", "env::var_os("] {
            for arg in call_args(text, needle) {
                let name = match arg.strip_prefix('"') {
                    Some(lit) => lit.trim_end_matches('"').to_string(),
                    None => {
                        let ident = arg.rsplit("::").next().unwrap();
                        consts.get(ident).cloned().unwrap_or_else(|| {
                            panic!("{}: env var name `{arg}` is neither a literal nor a known const", path.display())
                        })
                    }
                };
                names.insert(name);
            }
        }
    }
    names
}

/// `(file, text)` of the engine files a function runs, includes resolved.
fn function_sources(function: &str) -> Vec<(String, String)> {
    let files = FUNCTION_ENGINE_FILES.iter().find(|(f, _)| *f == function).unwrap().1;
    let mut out: Vec<(String, String)> =
        files.iter().map(|f| (f.to_string(), strip_tests(&read(&format!("shared/src/{f}"))))).collect();
    for (_, dir) in FUNCTION_CRATE_DIRS.iter().filter(|(f, _)| *f == function) {
        out.extend(sources(dir).into_iter().map(|(p, text)| (p.to_string_lossy().into_owned(), text)));
    }
    // Until nothing new is pulled in: an included file may reach further includes.
    loop {
        let before = out.len();
        for (marker, file) in INCLUDES {
            if out.iter().any(|(_, t)| t.contains(marker)) && !out.iter().any(|(f, _)| f == file) {
                out.push((file.to_string(), strip_tests(&read(&format!("shared/src/{file}")))));
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// Store method names called as `store.<name>(` in `text`, plus those reached through helpers.
fn store_methods_called(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("store.") {
        let after = &rest[i + "store.".len()..];
        let ident: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let helper = STORE_HELPERS.iter().any(|(m, _)| m.trim_end_matches('(') == ident);
        if after[ident.len()..].starts_with('(') && !helper && ident != "as_ref" && ident != "clone" {
            out.insert(ident);
        }
        rest = after;
    }
    for (marker, methods) in STORE_HELPERS {
        if text.contains(marker) {
            out.extend(methods.iter().map(|m| m.to_string()));
        }
    }
    out
}

/// All non-test source of a function crate (entry point and handler library).
fn function_code(name: &str) -> String {
    sources(&format!("functions/{name}/src")).into_iter().map(|(_, text)| text).collect::<Vec<_>>().join("\n")
}

type Grants = BTreeSet<(String, String)>;

/// Names of the `Connector` trait's async methods.
fn connector_methods() -> Vec<String> {
    let text = read("shared/src/connectors/mod.rs");
    let body = &text[text.find("pub trait Connector").expect("Connector trait")..];
    let body = &body[..body.find("\n}\n").unwrap()];
    call_args(body, "async fn ").iter().map(|s| s.split(['(', '<']).next().unwrap().to_string()).collect()
}

/// Whether connector code (or the shared HTTP/token layer it uses) writes secrets.
fn connectors_store_tokens() -> bool {
    let mut files = sources("shared/src/connectors");
    if root().join("shared/src/http").is_dir() {
        files.extend(sources("shared/src/http"));
    }
    files.iter().any(|(_, t)| t.contains("secrets.put("))
}

/// The grants a function's code needs: `(action, resource label)`.
fn code_grants(function: &str) -> Grants {
    let mut g = Grants::new();
    for (file, text) in function_sources(function) {
        for m in store_methods_called(&text) {
            let actions = STORE_METHOD_ACTIONS
                .iter()
                .find(|(name, _)| *name == m)
                .unwrap_or_else(|| panic!("{file} calls store.{m}(), which STORE_METHOD_ACTIONS does not list"))
                .1;
            g.extend(actions.iter().map(|(a, r)| (a.to_string(), r.to_string())));
        }
        if text.contains("secrets.get(") {
            g.insert(("secretsmanager:GetSecretValue".into(), "secrets".into()));
        }
        if text.contains("secrets.put(") {
            g.insert(("secretsmanager:PutSecretValue".into(), "secrets".into()));
        }
        if text.contains("events.publish(") {
            g.insert(("events:PutEvents".into(), "bus".into()));
        }
        // Connectors read their connection's secret and, where they hold renewable tokens, store
        // every token they obtain (login, refresh, rotated refresh token) right away.
        if connector_methods().iter().any(|m| text.contains(&format!("connector.{m}("))) {
            g.insert(("secretsmanager:GetSecretValue".into(), "secrets".into()));
            if connectors_store_tokens() {
                g.insert(("secretsmanager:PutSecretValue".into(), "secrets".into()));
            }
        }
    }
    g
}

/// Grants the platform needs for the wiring in the template itself (logs, stream, DLQ).
fn platform_grants(f: &Value) -> Grants {
    let mut g: Grants = [("logs:CreateLogStream", "log-group"), ("logs:PutLogEvents", "log-group")]
        .iter()
        .map(|(a, r)| (a.to_string(), r.to_string()))
        .collect();
    for ev in f["Properties"]["Events"].as_object().into_iter().flat_map(|m| m.values()) {
        if ev["Type"] == "DynamoDB" {
            for a in
                ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"]
            {
                g.insert((a.into(), "table/stream".into()));
            }
            if !ev["Properties"]["DestinationConfig"]["OnFailure"]["Destination"].is_null() {
                g.insert(("sqs:SendMessage".into(), "dlq".into()));
            }
        }
    }
    g
}

/// A policy `Resource` expression as a label; panics on anything it does not recognize
/// (wildcards, foreign ARNs), so every grant is scoped.
fn resource_label(r: &Value, own_log_group: &str) -> String {
    if let Some([res, attr]) = r["Fn::GetAtt"].as_array().map(Vec::as_slice) {
        match (res.as_str().unwrap(), attr.as_str().unwrap()) {
            ("Table", "Arn") => return "table".into(),
            ("Table", "StreamArn") => return "table/stream".into(),
            ("StreamDeadLetterQueue", "Arn") => return "dlq".into(),
            (lg, "Arn") if lg == own_log_group => return "log-group".into(),
            _ => {}
        }
    }
    if let Some(s) = r["Fn::Sub"].as_str() {
        if let Some(idx) = s.strip_prefix("${Table.Arn}/index/") {
            return format!("index/{idx}");
        }
        if s == "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretNamePrefix}*" {
            return "secrets".into();
        }
        if s == "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}" {
            return "bus".into();
        }
    }
    panic!("unrecognized or unscoped policy resource {r}")
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

/// What the template grants a function's role.
fn granted(t: &Value, f: &Value) -> Grants {
    assert!(f["Properties"]["Policies"].is_null(), "use the function's own role, not SAM Policies");
    let role_id = f["Properties"]["Role"]["Fn::GetAtt"][0].as_str().expect("Role: !GetAtt <Role>.Arn");
    let role = &resources(t)[role_id];
    assert_eq!(role["Type"], "AWS::IAM::Role");
    assert!(role["Properties"]["ManagedPolicyArns"].is_null(), "{role_id}: no managed policies");
    let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"];
    assert_eq!(
        trust,
        &json!([{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}])
    );
    let log_group =
        f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"].as_str().expect("LoggingConfig.LogGroup: !Ref <LogGroup>");
    let mut g = Grants::new();
    for policy in role["Properties"]["Policies"].as_array().expect("inline Policies") {
        for st in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
            assert_eq!(st["Effect"], "Allow", "{role_id}: only Allow statements");
            for a in as_list(&st["Action"]) {
                for r in as_list(&st["Resource"]) {
                    g.insert((a.as_str().unwrap().to_string(), resource_label(&r, log_group)));
                }
            }
        }
    }
    g
}

fn store_consts() -> BTreeMap<String, String> {
    sources("shared/src/store")
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().contains("dynamo"))
        .flat_map(|(_, t)| str_consts(&t))
        .collect()
}

// ───────────────────────────── tests ─────────────────────────────

#[test]
fn every_function_crate_is_deployed_from_its_own_directory() {
    let t = template();
    let fns = functions(&t);
    let cargo: toml::Table = read("Cargo.toml").parse().unwrap();
    let members: BTreeSet<String> =
        cargo["workspace"]["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect();
    let mut on_disk = BTreeSet::new();
    for e in std::fs::read_dir(root().join("functions")).unwrap().flatten() {
        if e.path().join("Cargo.toml").is_file() {
            on_disk.insert(e.file_name().to_string_lossy().into_owned());
        }
    }
    assert_eq!(fns.keys().cloned().collect::<BTreeSet<_>>(), on_disk, "deployed functions vs functions/*");
    for (name, (id, f)) in &fns {
        let uri = f["Properties"]["CodeUri"].as_str().unwrap();
        assert_eq!(uri, format!("../functions/{name}"), "{id}: CodeUri is relative to infra/");
        let dir = root().join("infra").join(uri);
        let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap().parse().unwrap();
        assert_eq!(manifest["package"]["name"].as_str(), Some(name.as_str()), "{id}: package name = directory");
        assert!(members.contains(&format!("functions/{name}")), "{id}: functions/{name} is not a workspace member");
        let has_bin = dir.join("src/main.rs").is_file() || manifest.contains_key("bin");
        assert!(has_bin, "{id}: functions/{name} has no bin target");
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{id}");
        assert_eq!(prop(&t, f, "Runtime"), "provided.al2023", "{id}");
        assert_eq!(prop(&t, f, "Handler"), "bootstrap", "{id}");
        assert_eq!(prop(&t, f, "Architectures"), &json!(["arm64"]), "{id}");
        let timeout = prop(&t, f, "Timeout").as_i64().unwrap_or_else(|| panic!("{id}: Timeout"));
        let memory = prop(&t, f, "MemorySize").as_i64().unwrap_or_else(|| panic!("{id}: MemorySize"));
        assert!((1..=900).contains(&timeout) && (128..=10240).contains(&memory), "{id}");
    }
}

#[test]
fn template_sets_every_environment_variable_the_code_reads() {
    let t = template();
    let read_vars = env_vars_read();
    assert!(read_vars.contains("TICKET_BRIDGE_EVENT_BUS"), "scanner found {read_vars:?}");
    for (name, (id, f)) in functions(&t) {
        let keys = env_keys(&t, &f);
        for var in &read_vars {
            match ENV_NOT_FROM_TEMPLATE.iter().find(|(n, _)| n == var) {
                Some((_, why)) => assert!(!keys.contains(var), "{id} ({name}) must not set {var}: {why}"),
                None => assert!(keys.contains(var), "{id} ({name}) does not set {var}, which the code reads"),
            }
        }
        for var in REQUIRED_OVERRIDES {
            assert!(keys.contains(*var), "{id} ({name}) does not set {var}");
        }
        for var in &keys {
            let own = FUNCTION_OVERRIDES.iter().any(|(f, v, _)| *f == name && v == var);
            let known = read_vars.contains(var) || REQUIRED_OVERRIDES.contains(&var.as_str()) || own;
            assert!(known, "{id} sets {var}, which no code reads");
        }
        for (_, var, why) in FUNCTION_OVERRIDES.iter().filter(|(f, _, _)| *f == name) {
            assert!(f["Properties"]["Environment"]["Variables"].get(*var).is_some(), "{id} must set {var}: {why}");
        }
    }
}

#[test]
fn environment_selects_dynamodb_and_secrets_manager_through_the_real_config_loader() {
    let t = template();
    for layer in [false, true] {
        let conditions = BTreeMap::from([("UseConfigLayer", layer)]);
        let refs = BTreeMap::from([("Table", "drift-table".to_string())]);
        let vars = t["Globals"]["Function"]["Environment"]["Variables"].as_object().unwrap();
        let env: BTreeMap<String, String> =
            vars.iter().filter_map(|(k, v)| eval(v, &t, &conditions, &refs).map(|v| (k.clone(), v))).collect();
        // Config::from_process_env: inline TOML when TICKET_BRIDGE_CONFIG_TOML is present, else the file.
        assert_eq!(env.contains_key("TICKET_BRIDGE_CONFIG_TOML"), !layer, "inline TOML only without the layer");
        assert_eq!(env.get("TICKET_BRIDGE_CONFIG").map(String::as_str), layer.then_some("/opt/ticket-bridge.toml"));
        let toml = env.get("TICKET_BRIDGE_CONFIG_TOML").cloned().unwrap_or_default();
        let config =
            bridge::config::Config::from_toml_with_env(&toml, env.clone()).expect("template env is a valid config");
        assert_eq!(config.settings.store, bridge::config::StoreKind::Dynamodb);
        assert_eq!(config.settings.secrets, bridge::config::SecretsKind::Aws);
        assert_eq!(config.settings.table_name, "drift-table");
    }
}

#[test]
fn iam_grants_equal_what_each_function_calls() {
    let t = template();
    let fns = functions(&t);
    let mut problems = Vec::new();
    for (function, _) in FUNCTION_ENGINE_FILES {
        let (id, f) = fn_named(&fns, function);
        let mut want = code_grants(function);
        want.extend(platform_grants(f));
        let have = granted(&t, f);
        let extra: Vec<_> = have.difference(&want).collect();
        let missing: Vec<_> = want.difference(&have).collect();
        if !extra.is_empty() || !missing.is_empty() {
            problems.push(format!(
                "{id} ({function}): template grants more than the code calls: {extra:?}; \
                 the code calls but the template does not grant: {missing:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn store_method_table_covers_every_dynamodb_call_in_the_store() {
    let mut called = BTreeSet::new();
    for (path, text) in sources("shared/src/store") {
        if !path.to_string_lossy().contains("dynamo") {
            continue;
        }
        let mut rest = text.as_str();
        while let Some(i) = rest.find("client") {
            rest = &rest[i + "client".len()..];
            let call = rest.trim_start();
            if let Some(call) = call.strip_prefix('.') {
                let ident: String = call.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if call[ident.len()..].starts_with("()") && !NOT_OPERATIONS.contains(&ident.as_str()) {
                    called.insert(format!(".{ident}()"));
                }
            }
        }
    }
    assert!(!called.is_empty(), "found no DynamoDB client calls in the store");
    // Transactions are authorized per item: Puts need PutItem (listed), anything else would
    // need another action (ConditionCheckItem, UpdateItem, DeleteItem).
    for (path, text) in sources("shared/src/store") {
        for other in
            ["condition_check(", "TransactWriteItem::builder().update(", "TransactWriteItem::builder().delete("]
        {
            assert!(
                !text.contains(other),
                "{}: transaction item `{other}` needs IAM actions SDK_CALL_ACTIONS does not map",
                path.display()
            );
        }
    }
    let mut actions_in_code = BTreeSet::new();
    for call in &called {
        let actions = SDK_CALL_ACTIONS
            .iter()
            .find(|(c, _)| c == call)
            .unwrap_or_else(|| panic!("the DynamoDB store calls {call}, which SDK_CALL_ACTIONS does not list"))
            .1;
        actions_in_code.extend(actions.iter().map(|a| a.to_string()));
    }
    let in_table: BTreeSet<String> =
        STORE_METHOD_ACTIONS.iter().flat_map(|(_, a)| a.iter().map(|(x, _)| x.to_string())).collect();
    assert_eq!(in_table, actions_in_code, "STORE_METHOD_ACTIONS vs the operations the store issues");
    // Every Store trait method is in the table.
    let store_mod = read("shared/src/store/mod.rs");
    let trait_body = &store_mod[store_mod.find("pub trait Store").unwrap()..];
    let trait_body = &trait_body[..trait_body.find("\n}\n").unwrap()];
    for method in call_args(trait_body, "async fn ").iter().map(|s| s.split('(').next().unwrap()) {
        if method == "claim_for_creation" {
            continue; // default method over due_for_creation + update_task (STORE_HELPERS)
        }
        assert!(
            STORE_METHOD_ACTIONS.iter().any(|(m, _)| *m == method),
            "Store::{method} is missing from STORE_METHOD_ACTIONS"
        );
    }
}

#[test]
fn table_matches_the_store_layout() {
    let t = template();
    let c = store_consts();
    let get = |k: &str| c.get(k).unwrap_or_else(|| panic!("store const {k} not found")).clone();
    let tables = of_type(&t, "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1);
    let p = &tables[0].1["Properties"];
    assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        p["KeySchema"],
        json!([{"AttributeName": get("PK"), "KeyType": "HASH"}, {"AttributeName": get("SK"), "KeyType": "RANGE"}])
    );
    let defs: BTreeSet<(String, String)> = p["AttributeDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["AttributeName"].as_str().unwrap().to_string(), d["AttributeType"].as_str().unwrap().to_string()))
        .collect();
    let want: BTreeSet<(String, String)> =
        ["PK", "SK", "DUE_PK", "DUE_AT", "STATE_PK", "STATE_AT"].iter().map(|k| (get(k), "S".to_string())).collect();
    assert_eq!(defs, want);
    let gsis = p["GlobalSecondaryIndexes"].as_array().unwrap();
    assert_eq!(gsis.len(), 2);
    for (idx, pk, sk) in [("DUE_INDEX", "DUE_PK", "DUE_AT"), ("STATE_INDEX", "STATE_PK", "STATE_AT")] {
        let g = gsis.iter().find(|g| g["IndexName"] == get(idx)).unwrap_or_else(|| panic!("GSI {}", get(idx)));
        assert_eq!(
            g["KeySchema"],
            json!([{"AttributeName": get(pk), "KeyType": "HASH"}, {"AttributeName": get(sk), "KeyType": "RANGE"}])
        );
        assert_eq!(g["Projection"], json!({"ProjectionType": "ALL"}));
    }
    assert_eq!(p["TimeToLiveSpecification"], json!({"AttributeName": get("TTL_ATTRIBUTE"), "Enabled": true}));
    assert_eq!(p["StreamSpecification"], json!({"StreamViewType": "NEW_IMAGE"}));
    assert_eq!(p["PointInTimeRecoverySpecification"], json!({"PointInTimeRecoveryEnabled": true}));
    assert_eq!(p["SSESpecification"]["SSEEnabled"], true);
    assert_eq!(tables[0].1["DeletionPolicy"], "Retain");
}

#[test]
fn stream_feeds_create_ticket_only_with_tasks_waiting_for_a_ticket() {
    let t = template();
    let fns = functions(&t);
    let c = store_consts();
    let (id, f) = fn_named(&fns, "create-ticket");
    let streams: Vec<&Value> =
        f["Properties"]["Events"].as_object().unwrap().values().filter(|e| e["Type"] == "DynamoDB").collect();
    assert_eq!(streams.len(), 1, "{id}: one stream event");
    let p = &streams[0]["Properties"];
    assert_eq!(p["Stream"], json!({"Fn::GetAtt": ["Table", "StreamArn"]}));
    assert_eq!(p["FunctionResponseTypes"], json!(["ReportBatchItemFailures"]));
    assert_eq!(p["BisectBatchOnFunctionError"], true);
    assert!(p["MaximumRetryAttempts"].as_i64().is_some_and(|n| (0..=10).contains(&n)));
    assert_eq!(
        p["DestinationConfig"]["OnFailure"]["Destination"],
        json!({"Fn::GetAtt": ["StreamDeadLetterQueue", "Arn"]})
    );
    // The handler answers partial batch failures by sequence number.
    let main = function_code("create-ticket");
    assert!(main.contains("batchItemFailures") && main.contains("SequenceNumber"));
    // The filter passes task items whose state attribute says `received`, as the store writes them.
    let filters = p["FilterCriteria"]["Filters"].as_array().unwrap();
    assert_eq!(filters.len(), 2, "tasks waiting for a ticket; cancelled tasks closing their ticket");
    // The second passes cancelled tasks still in the poll queue (their ticket is to be closed).
    let closing: Value = serde_json::from_str(filters[1]["Pattern"].as_str().unwrap()).expect("filter is JSON");
    let closing = &closing["dynamodb"]["NewImage"];
    let state_attr = c.get("STATE_PK").unwrap();
    assert_eq!(closing[state_attr]["S"][0], json!(format!("STATE#{}", bridge::domain::TaskState::Cancelled.as_str())));
    let due_attr = c.get("DUE_PK").unwrap();
    let due_prefix = closing[due_attr]["S"][0]["prefix"].as_str().expect("due_pk prefix filter");
    let store_items = read("shared/src/store/dynamo/items.rs");
    assert!(store_items.contains(&format!("\"{due_prefix}{{}}")), "the store writes poll due keys as {due_prefix}…");
    assert!(main.contains("create_one"), "the stream handler runs create_one, which closes cancelled tasks' tickets");
    let pattern: Value = serde_json::from_str(filters[0]["Pattern"].as_str().unwrap()).expect("filter is JSON");
    let image = &pattern["dynamodb"]["NewImage"];
    let pk = c.get("PK").unwrap();
    let task_prefix = image[pk]["S"][0]["prefix"].as_str().expect("PK prefix filter");
    assert!(main.contains(&format!("strip_prefix(\"{task_prefix}\")")), "handler parses {task_prefix} task keys");
    let state_attr = c.get("STATE_PK").unwrap();
    let state_value = image[state_attr]["S"][0].as_str().expect("state filter");
    let (prefix, state) = state_value.rsplit_once('#').expect("STATE#<state>");
    assert_eq!(state, bridge::domain::TaskState::Received.as_str());
    let items = sources("shared/src/store")
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().contains("dynamo"))
        .map(|(_, t)| t)
        .collect::<String>();
    assert!(items.contains(&format!("\"{task_prefix}{{")), "the store writes task keys as {task_prefix}<id>");
    assert!(items.contains(&format!("\"{prefix}#{{")), "the store writes {state_attr} as {prefix}#<state>");
}

#[test]
fn api_routes_match_the_intake_router() {
    let t = template();
    let fns = functions(&t);
    let (id, f) = fn_named(&fns, "intake");
    let routed: BTreeSet<(String, String)> = f["Properties"]["Events"]
        .as_object()
        .unwrap()
        .values()
        .filter(|e| e["Type"] == "HttpApi")
        .map(|e| {
            assert_eq!(e["Properties"]["ApiId"], json!({"Ref": "HttpApi"}), "{id}");
            (
                e["Properties"]["Method"].as_str().unwrap().to_string(),
                e["Properties"]["Path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Match arms like `("POST", ["v1", "tasks", id, "replay"]) =>` in the router (block or one-line).
    let api = strip_tests(&read("shared/src/engine/api.rs"));
    let mut served = BTreeSet::new();
    for arm in api.lines().map(str::trim).filter(|l| l.starts_with("(\"") && l.contains("\", [") && l.contains("=>")) {
        let method = &arm[2..2 + arm[2..].find('"').unwrap()];
        let segs = &arm[arm.find('[').unwrap() + 1..arm.find(']').unwrap()];
        let path: String = segs
            .split(',')
            .map(str::trim)
            .map(|s| match s.strip_prefix('"') {
                Some(lit) => lit.trim_end_matches('"').to_string(),
                None => format!("{{{s}}}"),
            })
            .map(|s| format!("/{s}"))
            .collect();
        if !UNEXPOSED_ROUTES.iter().any(|(m, p, _)| *m == method && *p == path) {
            served.insert((method.to_string(), path));
        }
    }
    assert!(served.len() >= 5, "router parse found {served:?}");
    // Path parameters are compared by position, not by name (`{connection}` = `{conn}`).
    let by_position = |routes: BTreeSet<(String, String)>| -> BTreeSet<(String, String)> {
        routes
            .into_iter()
            .map(|(m, p)| {
                let p = p.split('/').map(|seg| if seg.starts_with('{') { "{}" } else { seg }).collect::<Vec<_>>();
                (m, p.join("/"))
            })
            .collect()
    };
    assert_eq!(by_position(routed), by_position(served), "API Gateway routes vs the routes engine::api serves");
    let apis = of_type(&t, "AWS::Serverless::HttpApi");
    assert_eq!(apis.len(), 1);
    let p = &apis[0].1["Properties"];
    assert!(p["Auth"].is_null(), "intake authenticates callers itself; no API Gateway authorizer");
    assert!(!p["DefaultRouteSettings"]["ThrottlingRateLimit"].is_null());
    assert!(!p["DefaultRouteSettings"]["ThrottlingBurstLimit"].is_null());
    assert_eq!(p["AccessLogSettings"]["DestinationArn"], json!({"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}));
}

#[test]
fn alarms_watch_metrics_the_code_emits() {
    let t = template();
    let fns = functions(&t);
    let alarms = of_type(&t, "AWS::CloudWatch::Alarm");
    // Custom metrics: namespace and Function dimension as the functions emit them, metric names the
    // engine counts in the files that function runs.
    let mut custom = BTreeSet::new();
    for (id, a) in &alarms {
        let p = &a["Properties"];
        if p["Namespace"] == "AWS/Lambda" {
            let fid = p["Dimensions"][0]["Value"]["Ref"].as_str().unwrap();
            assert!(fns.values().any(|(i, _)| i == fid), "{id}: unknown function {fid}");
            continue;
        }
        if p["Namespace"] != "TicketBridge" {
            continue;
        }
        let metric = p["MetricName"].as_str().unwrap();
        assert_eq!(p["Dimensions"][0]["Name"], "Function", "{id}");
        let function = p["Dimensions"][0]["Value"].as_str().unwrap();
        let main = function_code(function);
        assert!(
            main.contains(&format!("to_emf(\"TicketBridge\", \"{function}\"")),
            "{id}: {function} does not emit TicketBridge metrics as Function={function}"
        );
        let counted = function_sources(function).iter().any(|(_, text)| text.contains(&format!("incr(\"{metric}\"")));
        assert!(counted, "{id}: {function} never counts {metric}");
        custom.insert((metric.to_string(), function.to_string()));
    }
    for want in
        [("DeadLetters", "create-ticket"), ("TokenRefreshFailures", "refresh-token"), ("PatExpiring", "refresh-token")]
    {
        assert!(custom.contains(&(want.0.to_string(), want.1.to_string())), "no alarm on {want:?}");
    }
    for (id, _) in fns.values() {
        let has = alarms.iter().any(|(_, a)| {
            a["Properties"]["MetricName"] == "Errors" && a["Properties"]["Dimensions"][0]["Value"]["Ref"] == id.as_str()
        });
        assert!(has, "no Errors alarm for {id}");
    }
    let dlq = alarms.iter().any(|(_, a)| {
        a["Properties"]["Namespace"] == "AWS/SQS"
            && a["Properties"]["Dimensions"][0]["Value"]
                == json!({"Fn::GetAtt": ["StreamDeadLetterQueue", "QueueName"]})
    });
    assert!(dlq, "no alarm on the stream dead-letter queue depth");
}

#[test]
fn timeouts_and_concurrency_fit_the_leases_the_code_takes() {
    let t = template();
    let fns = functions(&t);
    let timeout = |name: &str| fn_named(&fns, name).1["Properties"]["Timeout"].as_i64().unwrap();
    let settings = bridge::config::Settings::default();
    assert!(timeout("intake") < 30, "HTTP API integrations time out after 30 s");
    assert!(
        u64::try_from(timeout("create-ticket")).unwrap() < settings.claim_secs,
        "create-ticket must finish before its task claims (settings.claim_secs) expire"
    );
    let tokens = read("shared/src/engine/tokens.rs");
    assert!(tokens.contains("Duration::minutes(2)"), "refresh lease length changed; revisit refresh-token's Timeout");
    assert!(timeout("refresh-token") < 120, "refresh-token must finish before its 2-minute lease expires");
    let (id, rt) = fn_named(&fns, "refresh-token");
    assert_eq!(rt["Properties"]["ReservedConcurrentExecutions"], 1, "{id}: one refresher at a time");
    let outputs = t["Outputs"].as_object().unwrap();
    for o in ["ApiUrl", "TableName", "DlqUrl"] {
        assert!(outputs.contains_key(o), "output {o}");
    }
}

/// Routes the console answers outside its page router (sign-in and sign-out, in `handle`).
const CONSOLE_SESSION_ROUTES: &[(&str, &str)] = &[("GET", "/login"), ("POST", "/login"), ("POST", "/logout")];

#[test]
fn console_routes_match_the_console_router() {
    let t = template();
    let fns = functions(&t);
    let (id, f) = fn_named(&fns, "web-console");
    let routed: BTreeSet<(String, String)> = f["Properties"]["Events"]
        .as_object()
        .unwrap()
        .values()
        .map(|e| {
            assert_eq!(e["Type"], "HttpApi", "{id}: only HTTP API routes");
            assert_eq!(e["Properties"]["ApiId"], json!({"Ref": "HttpApi"}), "{id}: the same API as intake");
            (
                e["Properties"]["Method"].as_str().unwrap().to_string(),
                e["Properties"]["Path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Arms like `("POST", ["tasks", id, op @ ("replay" | "cancel")]) =>` of the page router; arms
    // guarded by `if ctx.console.local` are the pages hidden on AWS.
    let lib = strip_tests(&read("console/src/lib.rs"));
    let router = &lib[lib.find("async fn route(").expect("console router")..];
    let router = &router[..router.find("\n}\n").unwrap()];
    let mut served: BTreeSet<(String, String)> = BTreeSet::new();
    let mut local_only = 0;
    for arm in router.lines().map(str::trim).filter(|l| l.starts_with("(\"") && l.contains("\", [")) {
        if arm.contains("if ctx.console.local") {
            local_only += 1;
            continue;
        }
        let method = &arm[2..2 + arm[2..].find('"').unwrap()];
        let segs = &arm[arm.find('[').unwrap() + 1..arm.find(']').unwrap()];
        let path: String = segs
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.strip_prefix('"') {
                Some(lit) => format!("/{}", lit.trim_end_matches('"')),
                None => format!("/{{{}}}", s.split(" @").next().unwrap().trim()),
            })
            .collect();
        served.insert((method.to_string(), if path.is_empty() { "/".to_string() } else { path }));
    }
    assert!(served.len() >= 8 && local_only >= 3, "router parse found {served:?} and {local_only} local-only arms");
    for (method, path) in CONSOLE_SESSION_ROUTES {
        assert!(lib.contains(&format!("req.path == \"{path}\"")), "console handle() no longer answers {path}");
        served.insert((method.to_string(), path.to_string()));
    }
    assert_eq!(routed, served, "API Gateway routes vs the pages the console serves on AWS");
    // No console route shadows an API route of intake.
    let (_, intake) = fn_named(&fns, "intake");
    for e in intake["Properties"]["Events"].as_object().unwrap().values() {
        let p = e["Properties"]["Path"].as_str().unwrap();
        assert!(!routed.iter().any(|(_, r)| r == p), "{p} is routed to both intake and the console");
    }
}

#[test]
fn console_function_reads_the_generated_session_secret() {
    let t = template();
    let fns = functions(&t);
    let (id, f) = fn_named(&fns, "web-console");
    let secret = &resources(&t)["ConsoleSessionSecret"];
    assert_eq!(secret["Type"], "AWS::SecretsManager::Secret");
    let name = &secret["Properties"]["Name"];
    let var = &f["Properties"]["Environment"]["Variables"]["TICKET_BRIDGE__AUTH__CONSOLE_SECRET"];
    assert_eq!(var, name, "{id} names the secret the stack generates");
    assert!(
        name["Fn::Sub"].as_str().is_some_and(|s| s.starts_with("${SecretNamePrefix}")),
        "under SecretNamePrefix, so the ReadSecrets grant covers it"
    );
    assert_eq!(f["DependsOn"], "ConsoleSessionSecret", "{id} reads it at cold start");
    let generate = &secret["Properties"]["GenerateSecretString"];
    let code = function_code("web-console");
    let field = generate["GenerateStringKey"].as_str().unwrap();
    assert!(code.contains(&format!("SESSION_KEY_FIELD: &str = \"{field}\"")), "the function reads field {field}");
    assert!(generate["PasswordLength"].as_i64().is_some_and(|n| n >= 32), "at least the 32 characters it requires");
    // The override reaches auth.console_secret through the real config loader.
    let env = [("TICKET_BRIDGE__AUTH__CONSOLE_SECRET".to_string(), "ticket-bridge/console-session".to_string())];
    let config = bridge::config::Config::from_toml_with_env("", env).expect("a valid config");
    assert_eq!(config.auth.console_secret.as_deref(), Some("ticket-bridge/console-session"));
}
