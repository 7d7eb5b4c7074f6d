//! Hostile task fields end to end: template syntax and JSON breakers in a task's fields reach every
//! target as plain text. For the generic connector (user-written JSON body templates) the rendered
//! body must stay valid JSON with the value as one string: no injected keys.

mod support;

use bridge::domain::{Grouping, TaskState};
use sandbox::targets::Target;
use serde_json::json;
use support::{Backend, Harness};

const HOSTILE: &[&str] = &[
    "{{ 7*7 }}",
    "{% raw %}{{ secret }}{% endraw %}",
    "{{ config }}{{ base_url }}{{ connection }}",
    "\", \"injected\": true, \"x\": \"",
    "\\\", \"injected\": 1} //",
    "}}]} {\"injected\": {{ fields }}",
    "{# c #}<script>alert(1)</script>",
    "' OR 1=1 --",
];

async fn hostile_fields_stay_data(target: Target) {
    let h = Harness::for_target(target, Backend::Sqlite, Grouping::None, |_| {}).await;
    for (i, s) in HOSTILE.iter().enumerate() {
        let body = json!({"source":"saviynt","external_id":format!("H-{i}"),"kind":"access","action":"add_access",
            "user":{"id":"u-1","name":format!("Eve {s}"),"email":"alice@acme.io"},"application":s,
            "entitlements":[s],"justification":s});
        let (st, task) = h.submit(body).await;
        assert_eq!(st, 201, "{target:?} {s}: {task}");
        let id = task["id"].as_str().unwrap().to_string();
        h.create(&id).await;
        let t = h.task(&id).await;
        assert_eq!(t.state, TaskState::TicketOpen, "{target:?} {s}: {:?}", t.last_error);
        let ticket = h.sim().tickets().into_iter().find(|x| x.correlation_key.as_deref() == Some(id.as_str())).unwrap();
        assert!(
            ticket.title.contains(s) || ticket.body.contains(s),
            "{target:?}: '{s}' not carried verbatim: {ticket:?}"
        );
        // VSA ends the summary with its correlation marker, whose random task id may hold "49".
        let title = ticket.title.split(" [tb-").next().unwrap_or_default();
        assert!(!title.contains("49") || s.contains("49"), "{target:?}: template in a field was evaluated");
        if target == Target::Generic {
            let req = &ticket.request;
            let fields = req["fields"].as_object().unwrap_or_else(|| panic!("{req}"));
            assert_eq!(fields.len(), 5, "injected keys in the rendered body: {req}");
            assert!(fields.get("injected").is_none() && req.get("injected").is_none(), "{req}");
            assert_eq!(fields["extra"]["application"], json!(s), "{req}");
            assert_eq!(fields["extra"]["entitlements"], json!([s]), "{req}");
        }
    }
    assert_eq!(h.sim().tickets().len(), HOSTILE.len(), "{target:?}: one ticket per task");
}

macro_rules! targets {
    ($($name:ident => $t:expr),* $(,)?) => {
        $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() { hostile_fields_stay_data($t).await })*
    };
}

targets!(
    desk => Target::Sandbox,
    rt => Target::Rt,
    generic => Target::Generic,
    bms => Target::Bms,
    vsa => Target::Vsa,
    ninjaone => Target::Ninjaone,
    otrs => Target::Otrs,
);
