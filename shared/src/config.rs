//! Typed configuration: a TOML file (or inline TOML), overridden by environment variables,
//! validated at start-up with errors that name the offending key.
//!
//! Environment overrides: `TICKET_BRIDGE__<SECTION>__<KEY>=value` sets `<section>.<key>`
//! (lower-cased; `__` separates levels, so `TICKET_BRIDGE__CONNECTIONS__BMS_MAIN__BASE_URL` is
//! `connections.bms_main.base_url`). Values are read as TOML when they parse, else as strings.

mod sync_settings;
pub use sync_settings::SyncSettings;
mod retry;
pub use retry::{RetryClass, RetryPolicy};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

use crate::domain::{ConnectorKind, Grouping, MatchMode, StatusMap, TicketDefaults};

pub mod rules;
pub use rules::{Rule, RuleMatch, TicketOverrides};

/// Environment prefix for overrides.
pub const ENV_PREFIX: &str = "TICKET_BRIDGE__";

/// A configuration problem, naming the key.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("config error at '{key}': {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

/// Which store backs the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    #[default]
    Sqlite,
    Dynamodb,
}

/// Which secrets backend holds connection credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SecretsKind {
    #[default]
    File,
    Aws,
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub store: StoreKind,
    /// SQLite database path (store = "sqlite").
    pub sqlite_path: PathBuf,
    /// DynamoDB table name (store = "dynamodb").
    pub table_name: String,
    pub secrets: SecretsKind,
    /// Local secrets file (secrets = "file"); must not be readable by others.
    pub secrets_file: PathBuf,
    /// Connection used when a task names none.
    pub default_connection: Option<String>,
    /// Days finished tasks are kept before TTL removes them.
    pub retention_days: u32,
    /// Ticket-creation attempts before a task is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt (with jitter) up to `retry_max_secs`.
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// How long a worker's claim on a task lasts.
    pub claim_secs: u64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Allow callback URLs on http:// and private / loopback / link-local addresses (tests, labs).
    pub allow_private_callbacks: bool,
    /// Refresh tokens that expire within this many seconds.
    pub token_refresh_window_secs: u64,
    /// Warn this many days before a personal access token expires.
    pub pat_warn_days: u32,
    /// Attempts at a callback or event before it is dead-lettered (`GET /v1/deliveries?state=dead`).
    pub delivery_max_attempts: u32,
    /// First delay between delivery attempts; doubles per attempt up to `retry_max_secs`.
    pub delivery_retry_base_secs: u64,
    /// How long a sender's claim on a delivery lasts; a sender that dies is replaced after this.
    pub delivery_claim_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            store: StoreKind::Sqlite,
            sqlite_path: PathBuf::from("ticket-bridge.db"),
            table_name: "ticket-bridge".into(),
            secrets: SecretsKind::File,
            secrets_file: PathBuf::from("secrets.json"),
            default_connection: None,
            retention_days: 30,
            max_attempts: 8,
            retry_base_secs: 30,
            retry_max_secs: 3600,
            claim_secs: 300,
            max_body_bytes: 64 * 1024,
            allow_private_callbacks: false,
            token_refresh_window_secs: 900,
            pat_warn_days: 14,
            delivery_max_attempts: 10,
            delivery_retry_base_secs: 10,
            delivery_claim_secs: 60,
        }
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Submit, read and cancel tasks.
    #[default]
    Tasks,
    /// Everything, including listing, replay and mappings.
    Admin,
}

/// A caller allowed to use the API. Only the SHA-256 of its key is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub name: String,
    /// Lower-case hex SHA-256 of the bearer key.
    pub sha256: String,
    #[serde(default)]
    pub scope: KeyScope,
    /// Sources (the tasks' `source`) a tasks-scoped key may submit for, read and cancel; empty:
    /// every source. Another source's task answers 404, as if it did not exist.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// Caller authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub api_keys: Vec<ApiKey>,
    /// Secret (in the secrets backend) holding field `hmac_key` for signed requests.
    pub hmac_secret: Option<String>,
    /// Secret (in the secrets backend) holding field `session_key`, which seals the web console's
    /// session cookies in the console Lambda function (`serve` keeps sessions in memory).
    #[serde(default)]
    pub console_secret: Option<String>,
}

/// Title and body templates (minijinja) for tickets and notes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TicketTemplate {
    pub title: String,
    pub body: String,
    pub note_title: String,
    pub note_body: String,
}

impl Default for TicketTemplate {
    fn default() -> Self {
        Self {
            title: crate::render::DEFAULT_TITLE.into(),
            body: crate::render::DEFAULT_BODY.into(),
            note_title: crate::render::DEFAULT_NOTE_TITLE.into(),
            note_body: crate::render::DEFAULT_BODY.into(),
        }
    }
}

/// Where unmapped organizations' tickets go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatchAll {
    pub customer_id: String,
    pub contact_id: Option<String>,
}

/// One ITSM/PSA tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    pub kind: ConnectorKind,
    /// API base URL (https, except for loopback sandboxes).
    pub base_url: String,
    /// Secret name holding this connection's credentials.
    pub secret: String,
    #[serde(default)]
    pub grouping: Grouping,
    #[serde(default)]
    pub defaults: TicketDefaults,
    #[serde(default)]
    pub status_map: StatusMap,
    #[serde(default)]
    pub template: TicketTemplate,
    #[serde(default)]
    pub catch_all: Option<CatchAll>,
    /// Seconds between status polls of one ticket.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: u64,
    /// Stop polling tasks open longer than this many days (outcome `abandoned`, result `failed`,
    /// event `TaskAbandoned`, callback); 0 = never (SailPoint: `provisioningMaxStatusCheckDays`).
    #[serde(default)]
    pub give_up_after_days: u32,
    /// Requests per hour this connection may make (BMS: 1,500 per endpoint).
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_hour: u32,
    /// Parallel status requests per poll run.
    #[serde(default = "default_concurrency")]
    pub poll_concurrency: usize,
    /// Secret (field `callback_key`) used to sign completion callbacks; defaults to `secret`.
    #[serde(default)]
    pub callback_secret: Option<String>,
    /// Connector-specific options (service desk id, web service name, request templates…).
    #[serde(default)]
    pub options: toml::Table,
    /// Organization / contact sync settings (`ticket-bridge mappings`).
    #[serde(default)]
    pub mapping: MappingSettings,
    /// Incremental status reads (`[connections.<name>.polling]`).
    #[serde(default)]
    pub polling: PollSettings,
    /// Continuous PSA sync (customers, contacts, locations, assets).
    #[serde(default)]
    pub sync: SyncSettings,
    /// Which failures are retried and how many attempts a task gets (`[connections.<name>.retry]`).
    #[serde(default)]
    pub retry: RetryPolicy,
    /// An alert whose group's ticket closed at most this many minutes ago reopens that ticket with
    /// a note instead of opening a new one (targets that can reopen); 0 = off.
    #[serde(default)]
    pub reopen_within_minutes: u32,
}

/// How status polls read a connection: only what changed since the high-water mark where the
/// target has a change filter, with a full sweep every `full_sweep_every` cycles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollSettings {
    /// Read only changed tickets where the connector supports it (off: always the full read).
    pub incremental: bool,
    /// Every this many cycles, one full batched read (1 = every cycle is a full read).
    pub full_sweep_every: u32,
    /// Seconds subtracted from the high-water mark when asking for changes (clock skew between
    /// the target's stamps and the bridge, changes committed late, whole-second resolution).
    pub change_margin_secs: u64,
    /// Secret (field `webhook_key`) that signs `POST /v1/hooks/<connection>`; none: hooks off.
    pub webhook_secret: Option<String>,
    /// Largest age (and clock skew) of a signed hook's `X-Bridge-Timestamp`, in seconds.
    pub webhook_window_secs: u64,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            incremental: true,
            full_sweep_every: 12,
            change_margin_secs: 120,
            webhook_secret: None,
            webhook_window_secs: 300,
        }
    }
}

fn default_poll_interval() -> u64 {
    300
}
fn default_rate_limit() -> u32 {
    1500
}
fn default_concurrency() -> usize {
    4
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub settings: Settings,
    pub auth: AuthConfig,
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// Ordered routing and ticket rules (`[[rules]]`, see [`rules`]); the first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl Config {
    /// Loads `path` (if given), applies environment overrides from `env`, and validates.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| ConfigError::new("(file)", format!("cannot read {}: {e}", p.display())))?,
            None => String::new(),
        };
        Self::from_toml_with_env(&text, env)
    }

    /// Loads from the process environment: inline TOML in `TICKET_BRIDGE_CONFIG_TOML`, else the file
    /// named by `TICKET_BRIDGE_CONFIG` (if set), then `TICKET_BRIDGE__…` overrides.
    pub fn from_process_env() -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        if let Ok(text) = std::env::var("TICKET_BRIDGE_CONFIG_TOML") {
            return Self::from_toml_with_env(&text, env);
        }
        let path = std::env::var_os("TICKET_BRIDGE_CONFIG").map(PathBuf::from);
        Self::load(path.as_deref(), env)
    }

    /// Parses TOML text, applies overrides, validates.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::new(span_key(text, e.span()), e.message().to_string()))?;
        apply_env(&mut table, env)?;
        rules::precheck(&table)?;
        let config: Config = Config::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
            // Re-parse from rendered text to get a span we can turn into a key path.
            let rendered = toml::to_string(&table).unwrap_or_default();
            match toml::from_str::<Config>(&rendered) {
                Err(e2) => ConfigError::new(span_key(&rendered, e2.span()), e2.message().to_string()),
                Ok(_) => ConfigError::new("(config)", e.to_string()),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Semantic checks serde cannot make.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        if s.max_attempts == 0 {
            return Err(ConfigError::new("settings.max_attempts", "must be at least 1"));
        }
        if s.retry_base_secs == 0 || s.retry_max_secs < s.retry_base_secs {
            return Err(ConfigError::new(
                "settings.retry_max_secs",
                "retry_base_secs must be > 0 and retry_max_secs >= retry_base_secs",
            ));
        }
        if s.claim_secs < 2 {
            // An attempt runs within four fifths of its claim and needs at least half a second.
            return Err(ConfigError::new("settings.claim_secs", "must be at least 2"));
        }
        if s.max_body_bytes < 1024 {
            return Err(ConfigError::new("settings.max_body_bytes", "must be at least 1024"));
        }
        if s.store == StoreKind::Dynamodb && s.table_name.trim().is_empty() {
            return Err(ConfigError::new("settings.table_name", "must not be empty with store = \"dynamodb\""));
        }
        if let Some(d) = &s.default_connection
            && !self.connections.contains_key(d)
        {
            return Err(ConfigError::new(
                "settings.default_connection",
                format!("names connection '{d}', which is not defined under [connections]"),
            ));
        }
        for (i, k) in self.auth.api_keys.iter().enumerate() {
            if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::new(
                    format!("auth.api_keys[{i}].sha256"),
                    "must be the 64-character hex SHA-256 of the key (e.g. `printf %s KEY | sha256sum`)",
                ));
            }
            if k.scope == KeyScope::Admin && !k.sources.is_empty() {
                return Err(ConfigError::new(
                    format!("auth.api_keys[{i}].sources"),
                    "an admin key sees every source; bind a key with scope = \"tasks\" instead",
                ));
            }
            if let Some(bad) = k.sources.iter().find(|s| s.trim().is_empty()) {
                return Err(ConfigError::new(
                    format!("auth.api_keys[{i}].sources"),
                    format!("'{bad}' is not a source name (empty)"),
                ));
            }
        }
        for (name, c) in &self.connections {
            let key = |field: &str| format!("connections.{name}.{field}");
            if !valid_name(name) {
                return Err(ConfigError::new(
                    format!("connections.{name}"),
                    "connection names must match [a-z0-9._-]{1,64}",
                ));
            }
            let url = url::Url::parse(&c.base_url)
                .map_err(|e| ConfigError::new(key("base_url"), format!("not a URL: {e}")))?;
            let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return Err(ConfigError::new(key("base_url"), "must use https:// (http:// only for localhost)"));
            }
            if c.secret.trim().is_empty() {
                return Err(ConfigError::new(key("secret"), "must name the secret holding the credentials"));
            }
            if c.poll_interval_secs < 10 {
                return Err(ConfigError::new(key("poll_interval_secs"), "must be at least 10"));
            }
            if c.rate_limit_per_hour == 0 {
                return Err(ConfigError::new(key("rate_limit_per_hour"), "must be at least 1"));
            }
            if let Some((field, m)) = c.retry.problem() {
                return Err(ConfigError::new(key(&format!("retry.{field}")), m));
            }
            if c.poll_concurrency == 0 || c.poll_concurrency > 64 {
                return Err(ConfigError::new(key("poll_concurrency"), "must be between 1 and 64"));
            }
            if c.polling.full_sweep_every == 0 {
                return Err(ConfigError::new(key("polling.full_sweep_every"), "must be at least 1"));
            }
            if c.polling.change_margin_secs < 2 || c.polling.change_margin_secs > 86_400 {
                return Err(ConfigError::new(
                    key("polling.change_margin_secs"),
                    "must be between 2 (targets stamp whole seconds) and 86400",
                ));
            }
            if c.polling.webhook_window_secs == 0 || c.polling.webhook_window_secs > 3600 {
                return Err(ConfigError::new(key("polling.webhook_window_secs"), "must be between 1 and 3600"));
            }
            if c.polling.webhook_secret.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return Err(ConfigError::new(key("polling.webhook_secret"), "must name a secret (or be left out)"));
            }
            for (field, tpl) in [
                ("template.title", &c.template.title),
                ("template.body", &c.template.body),
                ("template.note_title", &c.template.note_title),
                ("template.note_body", &c.template.note_body),
            ] {
                crate::render::check_template(tpl).map_err(|e| ConfigError::new(key(field), e))?;
            }
            let sm = &c.status_map;
            for a in &sm.fulfilled {
                if sm.rejected.iter().chain(&sm.pending).any(|b| a.eq_ignore_ascii_case(b)) {
                    return Err(ConfigError::new(key("status_map"), format!("status '{a}' is listed twice")));
                }
            }
            for a in &sm.rejected {
                if sm.pending.iter().any(|b| a.eq_ignore_ascii_case(b)) {
                    return Err(ConfigError::new(key("status_map"), format!("status '{a}' is listed twice")));
                }
            }
        }
        let names: Vec<&str> = self.connections.keys().map(String::as_str).collect();
        rules::validate(&self.rules, &names)?;
        Ok(())
    }

    /// The connection a task should use: the one it names, else the default, else the only one.
    pub fn route(&self, requested: Option<&str>) -> Result<(&str, &ConnectionConfig), String> {
        let name = match requested {
            Some(n) => n,
            None => match (&self.settings.default_connection, self.connections.len()) {
                (Some(d), _) => d.as_str(),
                (None, 1) => self.connections.keys().next().map(String::as_str).unwrap_or_default(),
                _ => return Err("no connection given and no settings.default_connection configured".into()),
            },
        };
        self.connections
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| format!("unknown connection '{name}'"))
    }
}

/// `[a-z0-9._-]{1,64}` (source names, connection names).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    vars.sort();
    for (name, raw) in vars {
        let path: Vec<String> = name[ENV_PREFIX.len()..].split("__").map(|p| p.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::new(name, "malformed override name (empty segment)"));
        }
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw));
        let mut cur = &mut *table;
        let (last, parents) = path.split_last().ok_or_else(|| ConfigError::new(name.clone(), "empty"))?;
        for p in parents {
            let entry = cur.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cur = entry
                .as_table_mut()
                .ok_or_else(|| ConfigError::new(path.join("."), format!("'{p}' is not a table")))?;
        }
        cur.insert(last.clone(), value);
    }
    Ok(())
}

/// Turns a byte span in TOML text into the dotted key path at that position (best effort).
fn span_key(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else { return "(config)".into() };
    let upto = &text[..span.start.min(text.len())];
    let mut section = String::new();
    for line in upto.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            section = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    let line = text[span.start.min(text.len())..].lines().next().unwrap_or("");
    let start_of_line = upto.rsplit('\n').next().unwrap_or("");
    let full_line = format!("{start_of_line}{line}");
    let key = full_line.split('=').next().unwrap_or("").trim().trim_matches('"').to_string();
    match (section.is_empty(), key.is_empty() || full_line.trim_start().starts_with('[')) {
        (true, true) => "(config)".into(),
        (true, false) => key,
        (false, true) => section,
        (false, false) => format!("{section}.{key}"),
    }
}

/// `[connections.<name>.mapping]`: how organization sync matches and what it may create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingSettings {
    /// Create unmatched customers (with their default contact) and unmatched users on apply.
    pub auto_create: bool,
    /// `exact` (identical names) or `normalized` (ignoring case, whitespace and punctuation).
    #[serde(rename = "match")]
    pub match_mode: MatchMode,
    /// Name of the default ticket contact created in new customers (unless the organization
    /// list names one).
    pub default_contact_name: String,
    /// Catalog service (id or name) of the contract line that carries the user count.
    pub default_contract_service: Option<String>,
}

impl Default for MappingSettings {
    fn default() -> Self {
        Self {
            auto_create: false,
            match_mode: MatchMode::Exact,
            default_contact_name: "Ticket Contact".into(),
            default_contract_service: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[settings]
default_connection = "bms-main"

[connections.bms-main]
kind = "bms"
base_url = "https://api.bms.kaseya.com"
secret = "ticket-bridge/bms-main"
grouping = "user"
[connections.bms-main.status_map]
fulfilled = ["Completed"]
"#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, Vec::<(String, String)>::new())
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.settings.max_attempts, 8);
        assert_eq!(c.connections["bms-main"].grouping, Grouping::User);
        assert_eq!(c.route(None).unwrap().0, "bms-main");
        assert!(c.route(Some("nope")).is_err());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load(&GOOD.replace("grouping = \"user\"", "groupin = \"user\"")).unwrap_err();
        assert!(err.message.contains("groupin"), "{err}");
        assert!(err.key.contains("connections"), "{err}");
    }

    #[test]
    fn bad_enum_value_is_named() {
        let err = load(&GOOD.replace("grouping = \"user\"", "grouping = \"team\"")).unwrap_err();
        assert!(err.to_string().contains("grouping"), "{err}");
        assert!(err.message.contains("team"), "{err}");
    }

    #[test]
    fn plain_http_to_remote_host_is_refused() {
        let err = load(&GOOD.replace("https://api.bms", "http://api.bms")).unwrap_err();
        assert_eq!(err.key, "connections.bms-main.base_url");
    }

    #[test]
    fn default_connection_must_exist() {
        let err = load(&GOOD.replace("default_connection = \"bms-main\"", "default_connection = \"x\"")).unwrap_err();
        assert_eq!(err.key, "settings.default_connection");
    }

    #[test]
    fn env_overrides_apply_and_are_validated() {
        let env = vec![
            ("TICKET_BRIDGE__SETTINGS__MAX_ATTEMPTS".to_string(), "3".to_string()),
            ("TICKET_BRIDGE__SETTINGS__TABLE_NAME".to_string(), "tb-prod".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::from_toml_with_env(GOOD, env).unwrap();
        assert_eq!(c.settings.max_attempts, 3);
        assert_eq!(c.settings.table_name, "tb-prod");
        let env = vec![("TICKET_BRIDGE__SETTINGS__MAX_ATTEMPTS".to_string(), "0".to_string())];
        let err = Config::from_toml_with_env(GOOD, env).unwrap_err();
        assert_eq!(err.key, "settings.max_attempts");
        let env = vec![("TICKET_BRIDGE__SETTINGS__CLAIM_SECS".to_string(), "1".to_string())];
        let err = Config::from_toml_with_env(GOOD, env).unwrap_err();
        assert_eq!(err.key, "settings.claim_secs");
        let env = vec![("TICKET_BRIDGE__SETTINGS__MAX_ATTEMPTS".to_string(), "lots".to_string())];
        let err = Config::from_toml_with_env(GOOD, env).unwrap_err();
        assert!(err.to_string().contains("max_attempts"), "{err}");
    }

    #[test]
    fn bad_template_is_named() {
        let text = format!("{GOOD}\n[connections.bms-main.template]\ntitle = \"{{{{ task.user \"\n");
        let err = load(&text).unwrap_err();
        assert_eq!(err.key, "connections.bms-main.template.title");
    }

    #[test]
    fn only_tasks_keys_can_be_bound_to_sources() {
        let key = |scope: &str, sources: &str| {
            format!(
                "{GOOD}\n[[auth.api_keys]]\nname = \"k\"\nsha256 = \"{}\"\nscope = \"{scope}\"\nsources = {sources}\n",
                "a".repeat(64)
            )
        };
        let c = load(&key("tasks", "[\"saviynt\"]")).unwrap();
        assert_eq!(c.auth.api_keys[0].sources, ["saviynt"]);
        assert_eq!(load(&key("admin", "[\"saviynt\"]")).unwrap_err().key, "auth.api_keys[0].sources");
        assert_eq!(load(&key("tasks", "[\" \"]")).unwrap_err().key, "auth.api_keys[0].sources");
    }

    #[test]
    fn api_key_hash_must_be_hex_sha256() {
        let text = format!("{GOOD}\n[[auth.api_keys]]\nname = \"iga\"\nsha256 = \"abc\"\n");
        let err = load(&text).unwrap_err();
        assert_eq!(err.key, "auth.api_keys[0].sha256");
    }
}
