//! Routing and ticket rules end to end, on both stores: a task submitted through the API is routed
//! by the first matching `[[rules]]` entry to that rule's connection, and its ticket arrives at the
//! desk with the rule's queue, priority, assignee, custom fields and title; a task matching no rule
//! goes to the default connection with that connection's defaults.

mod support;

use bridge::config::Rule;
use bridge::domain::{Grouping, TaskState};
use serde_json::json;
use support::{Backend, CONN, Harness, access_task, alert};

const ROUTED: &str = "routed";

fn rules() -> Vec<Rule> {
    #[derive(serde::Deserialize)]
    struct R {
        rules: Vec<Rule>,
    }
    let text = format!(
        r#"
[[rules]]
name = "acme critical"
connection = "{ROUTED}"
when = {{ kind = "alert", organization = "Acme", severity = ["high", "critical"] }}
[rules.ticket]
queue = "Acme SOC"
priority = "{{{{ 'P1' if task.severity == 'critical' else 'P2' }}}}"
assignee = "soc-lead"
title = "SOC: {{{{ task.alert_type }}}}"
custom_fields = {{ AlertType = "{{{{ task.alert_type }}}}", Score = 9 }}

[[rules]]
name = "never reached for acme critical"
when = {{ kind = "alert" }}
ticket = {{ queue = "Alerts" }}
"#
    );
    toml::from_str::<R>(&text).unwrap().rules
}

async fn routed_task_reaches_the_rule_connection(backend: Backend) {
    let h = Harness::with(backend, Grouping::None, |c| {
        let mut routed = c.connections[CONN].clone();
        routed.defaults.queue = Some("Routed default".into());
        c.connections.insert(ROUTED.into(), routed);
        c.connections.get_mut(CONN).unwrap().defaults.queue = Some("Desk default".into());
        c.settings.default_connection = Some(CONN.into());
        c.rules = rules();
    })
    .await;
    let mut a = alert("R-1", "bob@acme.com", "Too Many Downloads");
    a["severity"] = json!("critical");
    a["organization"] = json!({"id": "org-9", "name": "ACME"});
    let (s, t) = h.submit(a).await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["connection"], ROUTED, "the rule picks the connection: {t}");
    let routed_id = t["id"].as_str().unwrap().to_string();

    let (s, t) = h.submit(access_task("R-2")).await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["connection"], CONN, "no rule matches: the default connection");
    let plain_id = t["id"].as_str().unwrap().to_string();

    h.create(&routed_id).await;
    h.create(&plain_id).await;
    let routed = h.task(&routed_id).await;
    assert_eq!(routed.state, TaskState::TicketOpen, "{:?}", routed.last_error);
    let plain = h.task(&plain_id).await;
    assert_eq!(plain.state, TaskState::TicketOpen, "{:?}", plain.last_error);

    let tickets = h.sim().tickets();
    assert_eq!(tickets.len(), 2);
    let by_key = |id: &str| tickets.iter().find(|t| t.correlation_key.as_deref() == Some(id)).unwrap();
    let rt = by_key(&routed_id);
    assert_eq!(rt.queue.as_deref(), Some("Acme SOC"));
    assert_eq!(rt.priority.as_deref(), Some("P1"));
    assert_eq!(rt.title, "SOC: Too Many Downloads");
    assert_eq!(rt.fields.get("assignee"), Some(&json!("soc-lead")));
    assert_eq!(rt.fields.get("custom_fields"), Some(&json!({"AlertType": "Too Many Downloads", "Score": 9})));
    let pt = by_key(&plain_id);
    assert_eq!(pt.queue.as_deref(), Some("Desk default"));
    assert_eq!(pt.fields.get("assignee"), None);
    assert_eq!(pt.fields.get("custom_fields"), None);
}

/// A task naming its connection keeps it; only rules for that connection (or for any) apply.
async fn a_named_connection_is_kept(backend: Backend) {
    let h = Harness::with(backend, Grouping::None, |c| {
        let routed = c.connections[CONN].clone();
        c.connections.insert(ROUTED.into(), routed);
        c.settings.default_connection = Some(CONN.into());
        c.rules = rules();
    })
    .await;
    let mut a = alert("R-3", "bob@acme.com", "Impossible Travel");
    a["severity"] = json!("high");
    a["organization"] = json!({"id": "org-9", "name": "Acme"});
    a["connection"] = json!(CONN);
    let (s, t) = h.submit(a).await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["connection"], CONN);
    let id = t["id"].as_str().unwrap().to_string();
    h.create(&id).await;
    let task = h.task(&id).await;
    assert_eq!(task.state, TaskState::TicketOpen, "{:?}", task.last_error);
    let tickets = h.sim().tickets();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].queue.as_deref(), Some("Alerts"), "the second rule (any connection) applies");
    assert_eq!(tickets[0].fields.get("assignee"), None);
}

both_stores!(routed_task_reaches_the_rule_connection, a_named_connection_is_kept);
