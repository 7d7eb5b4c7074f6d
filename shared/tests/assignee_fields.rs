//! Assignee and custom fields reach each target as its API takes them (see
//! docs/psa-connectors.md, "Assignee and custom fields"): the simulators store them where the real
//! service does and drop or refuse what it drops or refuses. The `rt::` tests also run against a
//! real Request Tracker (`cargo xtask peer rt`).

mod support;

use std::collections::BTreeMap;

use bridge::connectors::TicketRequest;
use serde_json::{Value, json};

fn request(key: &str, assignee: Option<&str>, fields: &[(&str, Value)]) -> TicketRequest {
    TicketRequest {
        correlation_key: key.into(),
        title: format!("Assignee test {key}"),
        body: "body".into(),
        assignee: assignee.map(str::to_string),
        custom_fields: fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        ..TicketRequest::default()
    }
}

mod rt {
    use super::*;
    use support::{Opts, rt_harness};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn owner_and_custom_fields_arrive() {
        let h = rt_harness(Opts::default()).await;
        let key = format!("01RTA{}", ulid::Ulid::new());
        let req = request(&key, Some("root"), &[("Customer", json!("Acme")), ("NoSuchField", json!("x"))]);
        let t = h.connector.create_ticket(&req).await.unwrap();
        let ticket = h.state().ticket(t.id.parse().unwrap()).await.unwrap();
        assert_eq!(ticket.fields.get("Owner"), Some(&json!("root")), "{:?}", ticket.fields);
        assert_eq!(ticket.fields.get("CF.Customer"), Some(&json!("Acme")));
        assert!(!ticket.fields.contains_key("CF.NoSuchField"), "RT drops fields that do not apply");
        assert_eq!(ticket.correlation_key.as_deref(), Some(key.as_str()), "the bridge's own field is kept");
    }

    /// RT creates the ticket anyway and leaves it with Nobody (a non-fatal error).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_owner_leaves_nobody() {
        let h = rt_harness(Opts::default()).await;
        let key = format!("01RTB{}", ulid::Ulid::new());
        let t = h.connector.create_ticket(&request(&key, Some("no-such-agent"), &[])).await.unwrap();
        let ticket = h.state().ticket(t.id.parse().unwrap()).await.unwrap();
        assert_eq!(ticket.fields.get("Owner"), None, "{:?}", ticket.fields);
    }
}
