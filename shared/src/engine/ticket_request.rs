//! The ticket a task asks for: the connection's defaults and templates, overridden by the first
//! matching `[[rules]]` entry. Pure (no I/O), so `ticket-bridge rules test` shows exactly what
//! creation sends, minus the customer and contact resolved at send time.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::config::rules::Matched;
use crate::connectors::TicketRequest;
use crate::domain::{Task, TaskPayload};
use crate::render::render;

/// The request for `task`'s ticket on its connection and the rule applied (index, rule).
/// Customer, contact and contract are left for the engine to resolve.
pub fn ticket_request<'a>(
    config: &'a Config,
    task: &Task,
    view: &serde_json::Value,
) -> Result<(TicketRequest, Matched<'a>), String> {
    let conn = &task.connection;
    let cfg = config.connections.get(conn).ok_or_else(|| format!("connection '{conn}' is not configured"))?;
    let rule = config.rule_for(task);
    let o = rule.map(|(_, r)| r.ticket.clone()).unwrap_or_default();
    let at = |key: &str| match rule {
        Some((i, _)) => format!("rules[{i}].ticket.{key}"),
        None => format!("connections.{conn}.template.{key}"),
    };
    // A rule's value rendered; blank output keeps the default.
    let pick = |key: &str, tpl: &Option<String>, default: &Option<String>| -> Result<Option<String>, String> {
        match tpl {
            Some(t) => {
                let out = render(t, view, conn).map_err(|e| format!("{}: {e}", at(key)))?;
                Ok(if out.is_empty() { default.clone() } else { Some(out) })
            }
            None => Ok(default.clone()),
        }
    };
    let d = &cfg.defaults;
    let alert_type = match &task.payload {
        TaskPayload::Alert(a) => Some(a.alert_type.as_str()),
        TaskPayload::Access(_) => None,
    };
    let issue = d.issue_for(alert_type);
    let title_tpl = o.title.as_deref().unwrap_or(&cfg.template.title);
    let body_tpl = o.body.as_deref().unwrap_or(&cfg.template.body);
    let mut custom_fields = BTreeMap::new();
    for (name, value) in &o.custom_fields {
        let value = match value.as_str() {
            Some(t) => {
                let out =
                    render(t, view, conn).map_err(|e| format!("{}: {e}", at(&format!("custom_fields.{name}"))))?;
                if out.is_empty() {
                    continue;
                }
                serde_json::Value::String(out)
            }
            None => value.clone(),
        };
        custom_fields.insert(name.clone(), value);
    }
    let req = TicketRequest {
        correlation_key: task.id.to_string(),
        title: render(title_tpl, view, conn).map_err(|e| format!("{}: {e}", at("title")))?,
        body: render(body_tpl, view, conn).map_err(|e| format!("{}: {e}", at("body")))?,
        customer_id: None,
        contact_id: None,
        contact_email: task.payload.user_email().map(str::to_string),
        contract_id: d.contract.clone(),
        ticket_type: pick("ticket_type", &o.ticket_type, &d.ticket_type)?,
        source: pick("source", &o.source, &d.source)?,
        status: pick("status", &o.status, &d.status)?,
        queue: pick("queue", &o.queue, &d.queue)?,
        priority: pick("priority", &o.priority, &d.priority)?,
        issue_type: pick("issue_type", &o.issue_type, &issue.issue_type)?,
        sub_issue_type: pick("sub_issue_type", &o.sub_issue_type, &issue.sub_issue_type)?,
        fields: view.clone(),
        assignee: pick("assignee", &o.assignee, &None)?,
        responsible: pick("responsible", &o.responsible, &None)?,
        custom_fields,
        // Filled from the continuous sync's records by the creator (engine/create.rs).
        location_id: None,
        asset_id: None,
    };
    Ok((req, rule))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NewTask;
    use chrono::Utc;

    const CONFIG: &str = r#"
[connections.a]
kind = "sandbox"
base_url = "http://localhost:1"
secret = "s"
[connections.a.defaults]
queue = "Default"
priority = "normal"

[[rules]]
name = "payroll"
when = { application = "Payroll" }
[rules.ticket]
queue = "Payroll"
priority = "{{ 'high' if task.action == 'remove_account' else '' }}"
assignee = "payroll-team"
title = "Payroll: {{ task.user.email }}"
custom_fields = { Application = "{{ task.application }}", Risk = 3, Empty = "{{ '' }}" }
"#;

    fn task(json: serde_json::Value) -> Task {
        let new: NewTask = crate::engine::intake::parse_task(json.to_string().as_bytes()).unwrap();
        Task::new(new, "a".into(), Utc::now())
    }

    #[test]
    fn a_matching_rule_overrides_defaults_and_renders_templates() {
        let config = Config::from_toml_with_env(CONFIG, Vec::new()).unwrap();
        let t =
            task(serde_json::json!({"source":"saviynt","external_id":"1","kind":"access","action":"remove_account",
            "user":{"email":"ada@example.com"},"application":"Payroll"}));
        let view = crate::engine::task_json(&t);
        let (req, rule) = ticket_request(&config, &t, &view).unwrap();
        assert_eq!(rule.map(|(i, _)| i), Some(0));
        assert_eq!(req.queue.as_deref(), Some("Payroll"));
        assert_eq!(req.priority.as_deref(), Some("high"));
        assert_eq!(req.assignee.as_deref(), Some("payroll-team"));
        assert_eq!(req.title, "Payroll: ada@example.com");
        assert_eq!(req.custom_fields.get("Application"), Some(&serde_json::json!("Payroll")));
        assert_eq!(req.custom_fields.get("Risk"), Some(&serde_json::json!(3)));
        assert!(!req.custom_fields.contains_key("Empty"), "blank output sets nothing");
        // The ternary renders blank for other actions: the connection default stays.
        let t =
            task(serde_json::json!({"source":"saviynt","external_id":"2","kind":"access","action":"create_account",
            "user":{"email":"ada@example.com"},"application":"Payroll"}));
        let (req, _) = ticket_request(&config, &t, &crate::engine::task_json(&t)).unwrap();
        assert_eq!(req.priority.as_deref(), Some("normal"));
        // No rule: defaults and the connection's templates.
        let t =
            task(serde_json::json!({"source":"saviynt","external_id":"3","kind":"access","action":"create_account",
            "user":{"email":"ada@example.com"},"application":"CRM"}));
        let (req, rule) = ticket_request(&config, &t, &crate::engine::task_json(&t)).unwrap();
        assert!(rule.is_none());
        assert_eq!((req.queue.as_deref(), req.assignee.as_deref()), (Some("Default"), None));
        assert_eq!(req.title, "Create Account: ada@example.com in CRM");
        assert!(req.custom_fields.is_empty());
    }
}
