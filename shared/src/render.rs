//! Ticket title and body rendering from per-connection minijinja templates.
//!
//! Templates see `task` (the stored task as JSON: `task.user.email`, `task.alert_type`,
//! `task.details`…) and `connection`. Output is plain text; connectors put it into request
//! bodies through serde, so task data can never break a request.

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// Default ticket title.
pub const DEFAULT_TITLE: &str = "{% if task.kind == 'alert' %}[{{ task.severity | upper }}] {{ task.alert_type }}: {{ task.user_email }}{% else %}{{ task.action | replace('_', ' ') | title }}: {{ task.user.name or task.user.email or task.user.id }} in {{ task.application }}{% endif %}";

/// Default ticket / note body.
pub const DEFAULT_BODY: &str = "\
{% if task.kind == 'alert' -%}
Alert: {{ task.alert_type }}
Severity: {{ task.severity }}
User: {{ task.user_email }}
{% if task.organization %}Organization: {{ task.organization.name or task.organization.id }}
{% endif %}{% if task.occurred_at %}Occurred at: {{ task.occurred_at }}
{% endif %}{% if task.details %}Details:
{% for k, v in task.details | items %}  {{ k }}: {{ v }}
{% endfor %}{% endif %}
{%- else -%}
Action: {{ task.action }}
User: {{ task.user.name or '' }} <{{ task.user.email or '' }}> {{ task.user.id or '' }}
Application: {{ task.application }}
{% if task.entitlements %}Entitlements: {{ task.entitlements | join(', ') }}
{% endif %}{% if task.requester %}Requested by: {{ task.requester.name or '' }} <{{ task.requester.email or '' }}>
{% endif %}{% if task.justification %}Justification: {{ task.justification }}
{% endif %}{% if task.due_at %}Due: {{ task.due_at }}
{% endif %}
{%- endif %}
Source: {{ task.source }} {{ task.external_id }}
Ticket Bridge task: {{ task.id }}";

/// Default note title (grouped alerts).
pub const DEFAULT_NOTE_TITLE: &str = "Another alert: {{ task.alert_type }} ({{ task.severity }})";

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Compiles a template; the error says where it is wrong.
pub fn check_template(source: &str) -> Result<(), String> {
    let env = env();
    env.template_from_str(source).map(|_| ()).map_err(|e| describe(&e))
}

/// Renders `source` with `task` (any serializable view) and `connection` in context.
pub fn render<T: Serialize>(source: &str, task: &T, connection: &str) -> Result<String, String> {
    let env = env();
    let tpl = env.template_from_str(source).map_err(|e| describe(&e))?;
    tpl.render(minijinja::context! { task => task, connection => connection })
        .map(|s| s.trim().to_string())
        .map_err(|e| describe(&e))
}

fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("{} (line {line})", e.detail().unwrap_or(&e.kind().to_string())),
        None => e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_templates_render_alerts_and_access_tasks() {
        let alert = json!({"id":"01J","source":"saas-alerts","external_id":"A-1","kind":"alert",
            "user_email":"bob@acme.com","alert_type":"Too Many Downloads","severity":"high",
            "details":{"files": 512}, "organization": {"id":"org-1","name":"Acme"}});
        assert_eq!(render(DEFAULT_TITLE, &alert, "c").unwrap(), "[HIGH] Too Many Downloads: bob@acme.com");
        let body = render(DEFAULT_BODY, &alert, "c").unwrap();
        assert!(body.contains("files: 512") && body.contains("Organization: Acme"), "{body}");
        let access = json!({"id":"01J","source":"saviynt","external_id":"T-1","kind":"access",
            "action":"add_access","user":{"name":"Ada Lovelace","email":"ada@example.com"},
            "application":"Payroll","entitlements":["payroll-admin","x"]});
        assert_eq!(render(DEFAULT_TITLE, &access, "c").unwrap(), "Add Access: Ada Lovelace in Payroll");
        assert!(render(DEFAULT_BODY, &access, "c").unwrap().contains("Entitlements: payroll-admin, x"));
    }

    #[test]
    fn template_syntax_in_task_data_is_not_evaluated() {
        let alert = json!({"kind":"alert","user_email":"{{ 7*7 }}","alert_type":"{% raw %}","severity":"low"});
        let out = render(DEFAULT_TITLE, &alert, "c").unwrap();
        assert!(out.contains("{{ 7*7 }}") && out.contains("{% raw %}"), "{out}");
    }

    #[test]
    fn broken_template_reports_line() {
        let err = check_template("ok\n{{ task.x ").unwrap_err();
        assert!(err.contains("line"), "{err}");
    }
}
