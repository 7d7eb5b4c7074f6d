//! The template's function environment boots the real Lambda engine (`bridge::aws::engine_from_env`,
//! as every function's `main` does) against DynamoDB and Secrets Manager on moto_server
//! (`TB_AWS_ENDPOINT`): a task written through it lands in the table the template names, and the
//! connection secret is read from Secrets Manager. One test per process: it sets process env vars.

mod common;

use std::collections::BTreeMap;

use bridge::domain::TaskState;
use bridge::secrets::Secret;

const CONFIG: &str = r#"
[connections.desk]
kind = "sandbox"
base_url = "http://127.0.0.1:9"
secret = "ticket-bridge/desk"
"#;

#[test]
fn template_environment_boots_the_lambda_engine_on_dynamodb_and_secrets_manager() {
    let endpoint = std::env::var(bridge::aws::ENDPOINT_ENV).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        panic!(
            "{0} is not set: start moto_server (e.g. `cargo xtask moto`) and export \
             {0}=http://127.0.0.1:<port>, or run `cargo xtask test`",
            bridge::aws::ENDPOINT_ENV
        )
    });
    let t = common::template();
    let table = format!("boot-{}", ulid::Ulid::new().to_string().to_lowercase());
    let refs = BTreeMap::from([("Table", table.clone()), ("ConfigToml", CONFIG.to_string())]);
    let conditions = BTreeMap::from([("UseConfigLayer", false)]);
    let vars = t["Globals"]["Function"]["Environment"]["Variables"].as_object().unwrap();
    let env: BTreeMap<String, String> =
        vars.iter().filter_map(|(k, v)| common::eval(v, &t, &conditions, &refs).map(|v| (k.clone(), v))).collect();

    // Only the template's variables (plus the moto endpoint the test harness provides).
    for (k, _) in std::env::vars() {
        if k.starts_with("TICKET_BRIDGE") {
            // SAFETY: no other thread exists yet in this single-test process.
            unsafe { std::env::remove_var(k) };
        }
    }
    for (k, v) in &env {
        // SAFETY: as above; the runtime is started afterwards.
        unsafe { std::env::set_var(k, v) };
    }

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let sdk = bridge::aws::sdk_config(Some(&endpoint)).await;
        bridge::store::dynamo::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await.unwrap();

        let engine = bridge::aws::engine_from_env().await.expect("the template's environment boots the engine");
        assert_eq!(engine.config.settings.table_name, table);
        assert!(engine.connectors.contains_key("desk"));

        // Secrets Manager: a value stored under the connection's secret name reads back.
        let mut secret = Secret::new();
        secret.set("api_key", "boot-test-key");
        engine.secrets.put("ticket-bridge/desk", &secret).await.unwrap();
        assert_eq!(engine.secrets.get("ticket-bridge/desk").await.unwrap().get("api_key"), Some("boot-test-key"));

        // DynamoDB: the accepted task is in the table the template names.
        let body = br#"{"source":"boot-test","external_id":"ext-1","kind":"access","action":"add_access",
            "user":{"id":"u-1","name":"Ada","email":"ada@example.com"},"application":"Payroll",
            "entitlements":["payroll-admin"]}"#;
        let new = bridge::engine::intake::parse_task(body).unwrap();
        let accepted = engine.accept(new, chrono::Utc::now()).await.unwrap();
        assert!(accepted.new);
        let direct = bridge::store::dynamo::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table.clone());
        use bridge::store::Store;
        let stored = direct.get_task(&accepted.task.id).await.unwrap().expect("task is in the template's table");
        assert_eq!(stored.state, TaskState::Received);
        assert_eq!(stored.connection, "desk");
    });
}
