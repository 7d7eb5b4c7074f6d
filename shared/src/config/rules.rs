//! `[[rules]]`: ordered routing and ticket rules. The first rule whose `when` matches a task picks
//! its connection (unless the task names one) and overrides that connection's ticket defaults.
//!
//! ```toml
//! [[rules]]
//! name = "payroll removals"
//! connection = "otrs-main"
//! when = { source = "saviynt", application = ["Payroll", "HR"], action = "remove_account" }
//! ticket = { queue = "Access::Urgent", priority = "{{ '1 very high' if task.user.email else '3 normal' }}" }
//! ```
//!
//! Every string in `ticket` (and every string value of `ticket.custom_fields`) is a template
//! rendered like the connection's title and body; a value that renders empty keeps the default.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

use super::ConfigError;
use crate::domain::{AccessAction, NewTask, Organization, Severity, Task, TaskPayload};

/// What rules look at: the task's source, payload and organization (submitted or stored task).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub source: &'a str,
    pub payload: &'a TaskPayload,
    pub organization: Option<&'a Organization>,
}

impl<'a> From<&'a Task> for Subject<'a> {
    fn from(t: &'a Task) -> Self {
        Self { source: &t.source, payload: &t.payload, organization: t.organization.as_ref() }
    }
}

impl<'a> From<&'a NewTask> for Subject<'a> {
    fn from(t: &'a NewTask) -> Self {
        Self { source: &t.source, payload: &t.payload, organization: t.organization.as_ref() }
    }
}

/// One rule: conditions, the connection it routes to, and the ticket fields it sets.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Shown by `ticket-bridge rules test` and in logs.
    #[serde(default)]
    pub name: Option<String>,
    /// Conditions; all given ones must hold (an empty `when` matches every task).
    #[serde(default)]
    pub when: RuleMatch,
    /// Connection the matching tasks go to (a task that names its connection keeps it, and only
    /// rules without `connection` or with that same connection apply to it).
    #[serde(default)]
    pub connection: Option<String>,
    /// Ticket fields set on matching tasks' tickets.
    #[serde(default)]
    pub ticket: TicketOverrides,
}

/// Conditions of a rule. Each is one value or a list (any of them); names compare ignoring case
/// and surrounding blanks.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    #[serde(default, deserialize_with = "one_or_many")]
    pub source: Vec<String>,
    /// `access` or `alert`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub kind: Vec<String>,
    /// Access action (`create_account`, `add_access`…); only access tasks match.
    #[serde(default, deserialize_with = "one_or_many")]
    pub action: Vec<String>,
    /// Application of an access task.
    #[serde(default, deserialize_with = "one_or_many")]
    pub application: Vec<String>,
    /// Organization id or name.
    #[serde(default, deserialize_with = "one_or_many")]
    pub organization: Vec<String>,
    /// Alert type; only alerts match.
    #[serde(default, deserialize_with = "one_or_many")]
    pub alert_type: Vec<String>,
    /// Alert severity (`low`…`critical`); only alerts match.
    #[serde(default, deserialize_with = "one_or_many")]
    pub severity: Vec<String>,
}

/// Ticket fields a rule sets (templates; empty output keeps the connection default).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketOverrides {
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub ticket_type: Option<String>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub issue_type: Option<String>,
    #[serde(default)]
    pub sub_issue_type: Option<String>,
    /// Agent / owner the ticket is assigned to (see docs/psa-connectors.md per target).
    #[serde(default)]
    pub assignee: Option<String>,
    /// Secondary responsible agent (OTRS/Znuny `Responsible`; ignored elsewhere).
    #[serde(default)]
    pub responsible: Option<String>,
    /// Target custom fields by name (OTRS dynamic fields, RT custom fields, NinjaOne attributes…).
    #[serde(default)]
    pub custom_fields: BTreeMap<String, serde_json::Value>,
    /// Title template replacing the connection's `template.title`.
    #[serde(default)]
    pub title: Option<String>,
    /// Body template replacing the connection's `template.body`.
    #[serde(default)]
    pub body: Option<String>,
}

impl TicketOverrides {
    /// The string templates with their keys (for validation).
    pub fn templates(&self) -> Vec<(String, &str)> {
        let named = [
            ("queue", &self.queue),
            ("ticket_type", &self.ticket_type),
            ("priority", &self.priority),
            ("status", &self.status),
            ("source", &self.source),
            ("issue_type", &self.issue_type),
            ("sub_issue_type", &self.sub_issue_type),
            ("assignee", &self.assignee),
            ("responsible", &self.responsible),
            ("title", &self.title),
            ("body", &self.body),
        ];
        let mut out: Vec<(String, &str)> =
            named.into_iter().filter_map(|(k, v)| v.as_deref().map(|v| (k.to_string(), v))).collect();
        for (k, v) in &self.custom_fields {
            if let Some(s) = v.as_str() {
                out.push((format!("custom_fields.{k}"), s));
            }
        }
        out
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) => Ok(vec![s]),
        Ok(OneOrMany::Many(v)) => Ok(v),
        Err(_) => Err(serde::de::Error::custom("expected a string or a list of strings")),
    }
}

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

fn any_of(wanted: &[String], value: Option<&str>) -> bool {
    wanted.is_empty() || value.is_some_and(|v| wanted.iter().any(|w| norm(w) == norm(v)))
}

impl RuleMatch {
    /// Whether every given condition holds for `task`.
    pub fn matches(&self, task: Subject<'_>) -> bool {
        let (action, application, alert_type, severity) = match task.payload {
            TaskPayload::Access(a) => (Some(a.action.as_str()), Some(a.application.as_str()), None, None),
            TaskPayload::Alert(a) => (None, None, Some(a.alert_type.as_str()), Some(a.severity.as_str())),
        };
        let org = task.organization;
        let org_ok = self.organization.is_empty()
            || org.is_some_and(|o| {
                any_of(&self.organization, Some(&o.id)) || any_of(&self.organization, o.name.as_deref())
            });
        any_of(&self.source, Some(task.source))
            && any_of(&self.kind, Some(task.payload.kind()))
            && any_of(&self.action, action)
            && any_of(&self.application, application)
            && org_ok
            && any_of(&self.alert_type, alert_type)
            && any_of(&self.severity, severity)
    }
}

/// The first rule matching `task` among those that may send to `connection` (any connection when
/// `None`), with its index.
pub fn first_match<'a>(rules: &'a [Rule], task: Subject<'_>, connection: Option<&str>) -> Option<(usize, &'a Rule)> {
    rules.iter().enumerate().find(|(_, r)| {
        let fits = match (connection, r.connection.as_deref()) {
            (Some(c), Some(rc)) => c == rc,
            _ => true,
        };
        fits && r.when.matches(task)
    })
}

/// The rule that applies to a task, with its index in `[[rules]]` (none: connection defaults).
pub type Matched<'a> = Option<(usize, &'a Rule)>;

impl super::Config {
    /// The connection for a task and the rule that applies to it: the connection the task names,
    /// else the first matching rule's, else the default (see [`super::Config::route`]).
    pub fn route_task(&self, task: Subject<'_>, requested: Option<&str>) -> Result<(&str, Matched<'_>), String> {
        let rule = first_match(&self.rules, task, requested);
        let wanted = requested.or_else(|| rule.and_then(|(_, r)| r.connection.as_deref()));
        let (name, _) = self.route(wanted)?;
        // A rule without a connection matched first; it also applies on the default connection.
        Ok((name, rule))
    }

    /// The rule applying to a task already routed to `connection`.
    pub fn rule_for(&self, task: &Task) -> Matched<'_> {
        first_match(&self.rules, task.into(), Some(&task.connection))
    }
}

/// Checks rules against the configured connections; errors name `rules[i].key`.
pub fn validate(rules: &[Rule], connections: &[&str]) -> Result<(), ConfigError> {
    for (i, r) in rules.iter().enumerate() {
        let key = |k: &str| format!("rules[{i}].{k}");
        if let Some(c) = &r.connection
            && !connections.contains(&c.as_str())
        {
            return Err(ConfigError::new(
                key("connection"),
                format!("names connection '{c}', which is not defined under [connections]"),
            ));
        }
        let w = &r.when;
        let check = |field: &str, values: &[String], allowed: &[&str]| -> Result<(), ConfigError> {
            if let Some(bad) = values.iter().find(|v| !allowed.contains(&norm(v).as_str())) {
                return Err(ConfigError::new(
                    key(&format!("when.{field}")),
                    format!("unknown {field} '{bad}'; expected one of {}", allowed.join(", ")),
                ));
            }
            Ok(())
        };
        check("kind", &w.kind, &["access", "alert"])?;
        check("action", &w.action, &AccessAction::ALL.map(|a| a.as_str()))?;
        check("severity", &w.severity, &Severity::ALL.map(|s| s.as_str()))?;
        for (field, values) in [
            ("source", &w.source),
            ("application", &w.application),
            ("organization", &w.organization),
            ("alert_type", &w.alert_type),
        ] {
            if values.iter().any(|v| v.trim().is_empty()) {
                return Err(ConfigError::new(key(&format!("when.{field}")), "must not contain an empty name"));
            }
        }
        let access_only = !w.action.is_empty() || !w.application.is_empty();
        let alert_only = !w.alert_type.is_empty() || !w.severity.is_empty();
        let kinds: Vec<String> = w.kind.iter().map(|k| norm(k)).collect();
        if access_only && alert_only {
            return Err(ConfigError::new(
                key("when"),
                "action/application only match access tasks and alert_type/severity only alerts: this rule can never match",
            ));
        }
        if (access_only && !kinds.is_empty() && !kinds.iter().any(|k| k == "access"))
            || (alert_only && !kinds.is_empty() && !kinds.iter().any(|k| k == "alert"))
        {
            return Err(ConfigError::new(
                key("when.kind"),
                "contradicts the other conditions: this rule can never match",
            ));
        }
        for (field, tpl) in r.ticket.templates() {
            crate::render::check_template(tpl).map_err(|e| ConfigError::new(key(&format!("ticket.{field}")), e))?;
        }
        if let Some(bad) = r.ticket.custom_fields.keys().find(|k| k.trim().is_empty()) {
            return Err(ConfigError::new(key("ticket.custom_fields"), format!("'{bad}' is not a field name (empty)")));
        }
    }
    Ok(())
}

/// Deserializes each rule of the raw `rules` array on its own, so a bad key or value is reported
/// as `rules[i]…` instead of somewhere in the file.
pub(super) fn precheck(table: &toml::Table) -> Result<(), ConfigError> {
    let Some(raw) = table.get("rules") else { return Ok(()) };
    let Some(list) = raw.as_array() else {
        return Err(ConfigError::new("rules", "must be an array of tables ([[rules]])"));
    };
    for (i, item) in list.iter().enumerate() {
        let t = item.as_table().ok_or_else(|| ConfigError::new(format!("rules[{i}]"), "must be a table"))?;
        for (part, known) in [
            ("", &["name", "when", "connection", "ticket"][..]),
            ("when.", &["source", "kind", "action", "application", "organization", "alert_type", "severity"][..]),
            (
                "ticket.",
                &[
                    "queue",
                    "ticket_type",
                    "priority",
                    "status",
                    "source",
                    "issue_type",
                    "sub_issue_type",
                    "assignee",
                    "responsible",
                    "custom_fields",
                    "title",
                    "body",
                ][..],
            ),
        ] {
            let sub = match part {
                "" => Some(t),
                p => t.get(p.trim_end_matches('.')).and_then(toml::Value::as_table),
            };
            if let Some(bad) = sub.and_then(|s| s.keys().find(|k| !known.contains(&k.as_str()))) {
                return Err(ConfigError::new(
                    format!("rules[{i}].{part}{bad}"),
                    format!("unknown key (allowed: {})", known.join(", ")),
                ));
            }
        }
        Rule::deserialize(item.clone())
            .map_err(|e| ConfigError::new(format!("rules[{i}]"), e.message().to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccessTask, Alert, NewTask, Organization, Person};
    use chrono::Utc;

    fn access(source: &str, action: AccessAction, app: &str) -> Task {
        let new = NewTask {
            source: source.into(),
            external_id: "T-1".into(),
            payload: TaskPayload::Access(AccessTask {
                action,
                user: Person { id: None, name: None, email: Some("ada@example.com".into()) },
                application: app.into(),
                entitlements: vec!["x".into()],
                requester: None,
                justification: None,
                due_at: None,
            }),
            organization: None,
            connection: None,
            callback_url: None,
        };
        Task::new(new, "c".into(), Utc::now())
    }

    fn alert(org: &str, alert_type: &str, severity: Severity) -> Task {
        let new = NewTask {
            source: "saas-alerts".into(),
            external_id: "A-1".into(),
            payload: TaskPayload::Alert(Alert {
                user_email: "bob@acme.com".into(),
                alert_type: alert_type.into(),
                severity,
                occurred_at: None,
                details: Default::default(),
            }),
            organization: Some(Organization { id: "org-1".into(), name: Some(org.into()) }),
            connection: None,
            callback_url: None,
        };
        Task::new(new, "c".into(), Utc::now())
    }

    fn m(r: &[Rule], t: &Task, connection: Option<&str>) -> Option<usize> {
        first_match(r, t.into(), connection).map(|(i, _)| i)
    }

    fn rules(text: &str) -> Vec<Rule> {
        #[derive(Deserialize)]
        struct R {
            rules: Vec<Rule>,
        }
        toml::from_str::<R>(text).unwrap().rules
    }

    #[test]
    fn first_matching_rule_wins_and_names_compare_ignoring_case() {
        let r = rules(
            r#"
[[rules]]
name = "payroll removals"
when = { source = "saviynt", application = ["payroll", "HR"], action = "remove_account" }
[[rules]]
name = "payroll"
when = { application = "Payroll" }
[[rules]]
name = "acme critical"
when = { organization = "ACME", severity = ["high", "critical"] }
"#,
        );
        let t = access("saviynt", AccessAction::RemoveAccount, " Payroll ");
        assert_eq!(m(&r, &t, None), Some(0));
        let t = access("saviynt", AccessAction::AddAccess, "Payroll");
        assert_eq!(m(&r, &t, None), Some(1));
        let t = access("other", AccessAction::RemoveAccount, "Payroll");
        assert_eq!(m(&r, &t, None), Some(1), "source condition fails rule 0");
        assert_eq!(m(&r, &access("saviynt", AccessAction::AddAccess, "CRM"), None), None);
        assert_eq!(m(&r, &alert("Acme", "Login", Severity::High), None), Some(2));
        let by_id = rules("[[rules]]\nwhen = { organization = \"ORG-1\" }\n");
        assert_eq!(m(&by_id, &alert("Globex", "Login", Severity::Low), None), Some(0));
        assert_eq!(m(&r, &alert("Acme", "Login", Severity::Low), None), None);
        assert_eq!(m(&r, &alert("Globex", "Login", Severity::High), None), None);
    }

    #[test]
    fn alert_conditions_never_match_access_tasks_and_back() {
        let r = rules("[[rules]]\nwhen = { severity = \"low\" }\n[[rules]]\nwhen = { action = \"add_access\" }\n");
        assert_eq!(m(&r, &access("s", AccessAction::AddAccess, "A"), None), Some(1));
        assert_eq!(m(&r, &alert("Acme", "X", Severity::Low), None), Some(0));
        assert_eq!(m(&r, &alert("Acme", "X", Severity::High), None), None);
    }

    #[test]
    fn a_named_connection_skips_rules_for_other_connections() {
        let r = rules(
            "[[rules]]\nconnection = \"a\"\nwhen = { source = \"s\" }\n[[rules]]\nconnection = \"b\"\n[[rules]]\nwhen = { source = \"s\" }\n",
        );
        let t = access("s", AccessAction::AddAccess, "A");
        assert_eq!(m(&r, &t, None), Some(0));
        assert_eq!(m(&r, &t, Some("b")), Some(1));
        assert_eq!(m(&r, &t, Some("c")), Some(2));
    }

    #[test]
    fn bad_rules_name_index_and_key() {
        let conns = ["a"];
        let err = validate(&rules("[[rules]]\n[[rules]]\nconnection = \"zz\"\n"), &conns).unwrap_err();
        assert_eq!(err.key, "rules[1].connection");
        let err = validate(&rules("[[rules]]\nwhen = { action = \"delete\" }\n"), &conns).unwrap_err();
        assert_eq!(err.key, "rules[0].when.action");
        assert!(err.message.contains("delete") && err.message.contains("remove_account"), "{err}");
        let err = validate(&rules("[[rules]]\nwhen = { severity = \"urgent\" }\n"), &conns).unwrap_err();
        assert_eq!(err.key, "rules[0].when.severity");
        let err =
            validate(&rules("[[rules]]\nwhen = { kind = \"alert\", application = \"X\" }\n"), &conns).unwrap_err();
        assert_eq!(err.key, "rules[0].when.kind");
        let err =
            validate(&rules("[[rules]]\nwhen = { severity = \"low\", application = \"X\" }\n"), &conns).unwrap_err();
        assert_eq!(err.key, "rules[0].when");
        let err = validate(&rules("[[rules]]\nticket = { priority = \"{{ task.x \" }\n"), &conns).unwrap_err();
        assert_eq!(err.key, "rules[0].ticket.priority");
        let err =
            validate(&rules("[[rules]]\nticket = { custom_fields = { Risk = \"{% if %}\" } }\n"), &conns).unwrap_err();
        assert_eq!(err.key, "rules[0].ticket.custom_fields.Risk");
    }

    #[test]
    fn config_file_errors_name_rule_index_and_key() {
        let base = "[connections.a]\nkind = \"sandbox\"\nbase_url = \"http://localhost:1\"\nsecret = \"s\"\n";
        let load = |rules: &str| super::super::Config::from_toml_with_env(&format!("{base}{rules}"), Vec::new());
        let ok = load(
            "[[rules]]\nconnection = \"a\"\nwhen = { source = \"x\" }\nticket = { custom_fields = { Risk = 3 } }\n",
        )
        .unwrap();
        assert_eq!(ok.rules[0].ticket.custom_fields["Risk"], serde_json::json!(3));
        assert_eq!(load("[[rules]]\n[[rules]]\nqueue = \"x\"\n").unwrap_err().key, "rules[1].queue");
        assert_eq!(load("[[rules]]\nwhen = { sorce = \"x\" }\n").unwrap_err().key, "rules[0].when.sorce");
        assert_eq!(load("[[rules]]\nticket = { queu = \"x\" }\n").unwrap_err().key, "rules[0].ticket.queu");
        let err = load("[[rules]]\nwhen = { source = 3 }\n").unwrap_err();
        assert_eq!(err.key, "rules[0]");
        assert!(err.message.contains("string or a list"), "{err}");
        assert_eq!(load("[[rules]]\nconnection = \"b\"\n").unwrap_err().key, "rules[0].connection");
    }

    /// The examples in docs/rules.md load as written and route as described.
    #[test]
    fn documented_examples_load_and_match() {
        let doc = include_str!("../../../docs/rules.md");
        let mut conns = String::new();
        for name in ["otrs-main", "bms-acme", "ninja-globex"] {
            conns.push_str(&format!(
                "[connections.{name}]\nkind = \"sandbox\"\nbase_url = \"http://localhost:1\"\nsecret = \"s\"\n"
            ));
        }
        let blocks: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .filter(|b| b.contains("[[rules]]"))
            .collect();
        assert_eq!(blocks.len(), 3, "the documented rule examples");
        let load = |block: &str| {
            let text = format!("[settings]\ndefault_connection = \"otrs-main\"\n{conns}{block}");
            super::super::Config::from_toml_with_env(&text, Vec::new()).unwrap_or_else(|e| panic!("{e}\n{block}"))
        };
        let saviynt = load(blocks[1]);
        let t = access("saviynt", AccessAction::RemoveAccess, "payroll");
        assert_eq!(saviynt.rule_for(&t).map(|(i, _)| i), Some(0));
        assert_eq!(saviynt.rule_for(&access("saviynt", AccessAction::AddAccess, "Payroll")).map(|(i, _)| i), Some(1));
        assert_eq!(saviynt.rule_for(&access("saviynt", AccessAction::AddAccess, "CRM")).map(|(i, _)| i), Some(2));
        let msp = load(blocks[2]);
        let route = |t: &Task| msp.route_task(t.into(), None).map(|(c, r)| (c.to_string(), r.map(|(i, _)| i)));
        assert_eq!(route(&alert("Acme Corp", "X", Severity::Critical)), Ok(("bms-acme".into(), Some(0))));
        assert_eq!(route(&alert("acme corp", "X", Severity::Low)), Ok(("bms-acme".into(), Some(1))));
        assert_eq!(route(&alert("Globex", "X", Severity::Low)), Ok(("ninja-globex".into(), Some(2))));
        assert_eq!(route(&alert("Initech", "X", Severity::Low)), Ok(("otrs-main".into(), None)));
        load(blocks[0]);
    }
}
