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

mod otrs {
    use super::*;
    use bridge::connectors::{Connector, ConnectorError};
    use sandbox::otrs::OtrsConfig;
    use support::Opts;
    use support::psa::{OTRS_SECRET, config, otrs_sim};

    async fn env() -> (sandbox::otrs::Otrs, std::sync::Arc<dyn Connector>) {
        let sim_config =
            OtrsConfig { dynamic_fields: vec!["TicketBridgeRef".into(), "RiskScore".into()], ..OtrsConfig::default() };
        let (sim, secrets) = otrs_sim(sim_config).await;
        let cfg = config("otrs", sim.base_url(), OTRS_SECRET, &Opts::default(), "", "queue = \"Service Desk\"", None);
        (sim, bridge::connectors::build("otrs-test", &cfg, secrets).unwrap())
    }

    fn otrs_request(key: &str, owner: Option<&str>, fields: &[(&str, Value)]) -> TicketRequest {
        TicketRequest { contact_email: Some("alice@acme.io".into()), ..request(key, owner, fields) }
    }

    #[tokio::test]
    async fn owner_responsible_and_dynamic_fields_arrive() {
        let (sim, conn) = env().await;
        let mut req = otrs_request("01OTA", Some("jane.tech"), &[("RiskScore", json!("9"))]);
        req.responsible = Some("bridge-agent".into());
        let t = conn.create_ticket(&req).await.unwrap();
        let ticket = sim.find_ticket(&t.id).unwrap();
        assert_eq!(ticket.fields.get("Owner"), Some(&json!("jane.tech")));
        assert_eq!(ticket.fields.get("Responsible"), Some(&json!("bridge-agent")));
        assert_eq!(ticket.fields.get("DynamicField_RiskScore"), Some(&json!("9")));
        assert_eq!(ticket.fields.get("DynamicField_TicketBridgeRef"), Some(&json!("01OTA")));
        assert_eq!(ticket.correlation_key.as_deref(), Some("01OTA"));
    }

    /// TicketCreate refuses an unknown agent or dynamic field before creating anything; the
    /// error names the value.
    #[tokio::test]
    async fn an_unknown_agent_or_field_is_refused_and_named() {
        let (sim, conn) = env().await;
        let err = conn.create_ticket(&otrs_request("01OTB", Some("ghost"), &[])).await.unwrap_err();
        assert!(matches!(err, ConnectorError::Rejected(_)), "{err:?}");
        assert!(err.to_string().contains("ghost") && err.to_string().contains("Owner"), "{err}");
        let err = conn.create_ticket(&otrs_request("01OTC", None, &[("NoSuchField", json!("x"))])).await.unwrap_err();
        assert!(matches!(err, ConnectorError::Config(_)), "{err:?}");
        assert!(err.to_string().contains("NoSuchField"), "{err}");
        let err = conn.create_ticket(&otrs_request("01OTD", None, &[("Bad-Name", json!("x"))])).await.unwrap_err();
        assert!(err.to_string().contains("Bad-Name"), "{err}");
        assert_eq!(sim.sim().tickets().len(), 0);
    }
}

mod ninjaone {
    use super::*;
    use bridge::connectors::ConnectorError;
    use sandbox::ninjaone::NinjaConfig;
    use support::Opts;
    use support::psa::{NINJA_SECRET, config, ninja_sim};

    #[tokio::test]
    async fn assigned_app_user_and_attributes_arrive_as_ids() {
        let (sim, secrets) = ninja_sim(NinjaConfig::default()).await;
        let cfg = config("ninjaone", sim.base_url(), NINJA_SECRET, &Opts::default(), "", "", Some("7"));
        let conn = bridge::connectors::build("ninja-test", &cfg, secrets).unwrap();
        let req = request("01NJA", Some("42"), &[("12", json!("high")), ("13", json!(5))]);
        let t = conn.create_ticket(&req).await.unwrap();
        let ticket = sim.find_ticket(&t.id).unwrap();
        assert_eq!(ticket.fields.get("assignedAppUserId"), Some(&json!(42)));
        assert_eq!(ticket.fields.get("attribute.12"), Some(&json!("high")));
        assert_eq!(ticket.fields.get("attribute.13"), Some(&json!("5")), "attribute values are strings");
        // Names are not ids: refused before anything is sent, naming the value.
        let err = conn.create_ticket(&request("01NJB", Some("jane"), &[])).await.unwrap_err();
        assert!(matches!(err, ConnectorError::Config(_)) && err.to_string().contains("'jane'"), "{err}");
        let err = conn.create_ticket(&request("01NJC", None, &[("Risk", json!("x"))])).await.unwrap_err();
        assert!(err.to_string().contains("'Risk'"), "{err}");
        assert_eq!(sim.sim().tickets().len(), 1);
    }
}

mod bms {
    use super::*;
    use bridge::connectors::ConnectorError;
    use sandbox::bms::BmsConfig;
    use support::Opts;
    use support::psa::{BMS_DEFAULTS, BMS_SECRET, bms_sim, config};

    #[tokio::test]
    async fn assignee_id_and_custom_fields_data_arrive_as_ids() {
        let (sim, secrets) = bms_sim(BmsConfig::default()).await;
        let cfg = config("bms", sim.base_url(), BMS_SECRET, &Opts::default(), "", BMS_DEFAULTS, Some("100"));
        let conn = bridge::connectors::build("bms-test", &cfg, secrets).unwrap();
        let req = request("01BMA", Some("77"), &[("31", json!("Payroll")), ("32", json!(true))]);
        let t = conn.create_ticket(&req).await.unwrap();
        let ticket = sim.find_ticket(&t.id).unwrap();
        assert_eq!(ticket.fields.get("AssigneeId"), Some(&json!(77)));
        assert_eq!(
            ticket.fields.get("CustomFieldsData"),
            Some(&json!([{"CustomFieldId": 31, "Data": "Payroll"}, {"CustomFieldId": 32, "Data": "true"}]))
        );
        let err = conn.create_ticket(&request("01BMB", Some("jane"), &[])).await.unwrap_err();
        assert!(matches!(err, ConnectorError::Config(_)) && err.to_string().contains("'jane'"), "{err}");
        assert_eq!(sim.sim().tickets().len(), 1);
    }
}

mod vsa {
    use super::*;
    use sandbox::vsa::VsaConfig;
    use support::Opts;
    use support::psa::{VSA_SECRET, config, vsa_sim};

    #[tokio::test]
    async fn assignee_and_attributes_arrive() {
        let (sim, secrets) = vsa_sim(VsaConfig::default()).await;
        let cfg = config(
            "vsa",
            sim.base_url(),
            VSA_SECRET,
            &Opts::default(),
            "service_desk_id = \"1001\"",
            "priority = \"Medium\"",
            None,
        );
        let conn = bridge::connectors::build("vsa-test", &cfg, secrets).unwrap();
        let req = request("01VSA", Some("jane.tech"), &[("Application", json!("Payroll")), ("Risk", json!(3))]);
        let t = conn.create_ticket(&req).await.unwrap();
        let ticket = sim.find_ticket(&t.id).unwrap();
        assert_eq!(ticket.fields.get("Assignee"), Some(&json!("jane.tech")));
        assert_eq!(ticket.fields.get("Attributes"), Some(&json!({"Application": "Payroll", "Risk": 3})));
    }
}

mod generic {
    use super::*;
    use support::{GENERIC_OPTIONS, MemSecrets, Opts, conn_config};

    /// The generic connector's create template sees `assignee` and `custom_fields`.
    #[tokio::test]
    async fn templates_carry_assignee_and_custom_fields() {
        let g = sandbox::generic::GenericSim::spawn(sandbox::generic::GenericConfig::default()).await.unwrap();
        let secrets =
            MemSecrets::with("tb/generic", &[("client_id", "tb-client"), ("client_secret", "tb-client-secret")]);
        let options = GENERIC_OPTIONS
            .replace(r#""extra": {{ fields }}}}"#, r#""labels": [{{ assignee }}], "extra": {{ custom_fields }}}}"#);
        assert_ne!(options, GENERIC_OPTIONS, "the create template was changed");
        let cfg = conn_config("generic", g.base_url(), "tb/generic", &Opts::default(), &options);
        let conn = bridge::connectors::build("generic", &cfg, secrets).unwrap();
        let req = request("01GNA", Some("jane.tech"), &[("Risk", json!(3)), ("App", json!("Payroll \"HR\""))]);
        let t = conn.create_ticket(&req).await.unwrap();
        let ticket = g.sim().tickets().into_iter().find(|x| x.id.to_string() == t.id).unwrap();
        assert_eq!(ticket.fields.get("labels"), Some(&json!(["jane.tech"])));
        assert_eq!(ticket.fields.get("extra"), Some(&json!({"Risk": 3, "App": "Payroll \"HR\""})));
    }
}
