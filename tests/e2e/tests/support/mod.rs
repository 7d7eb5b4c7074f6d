//! Test harness: an engine over a real store (SQLite file or DynamoDB on moto) and real secrets
//! (private file or Secrets Manager on moto), talking to the sandbox desk simulator.

#![allow(dead_code)]

use bridge::config::{Config, ConnectionConfig};
use bridge::domain::{Grouping, Task};
use bridge::engine::{BridgeEvent, Engine, EventSink};
use bridge::secrets::{Secret, Secrets};
use bridge::store::Store;
use chrono::{DateTime, Utc};
use sandbox::targets::{SpawnedTarget, Target};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub const CONN: &str = "desk";
pub const CALLBACK_KEY: &str = "cbk-test-key";
/// HTTP requests one engine attempt makes against a failing create route (1 + max_retries).
pub const REQUESTS_PER_ATTEMPT: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Dynamo,
}

/// Events published by the engine, captured for assertions.
#[derive(Default)]
pub struct CapturedEvents(pub Mutex<Vec<BridgeEvent>>);

#[async_trait::async_trait]
impl EventSink for CapturedEvents {
    async fn publish(&self, event: &BridgeEvent) -> Result<(), String> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

pub struct Harness {
    pub engine: Engine,
    pub target: SpawnedTarget,
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn Secrets>,
    pub events: Arc<CapturedEvents>,
    _dir: tempfile::TempDir,
}

fn endpoint() -> String {
    std::env::var(bridge::aws::ENDPOINT_ENV)
        .expect("TB_AWS_ENDPOINT is not set: run the tests with `cargo xtask test` (it starts moto_server)")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// The connection to a spawned target as a user would configure it.
pub fn connection_for(t: &SpawnedTarget, secret: &str, grouping: Grouping) -> ConnectionConfig {
    let grouping = match grouping {
        Grouping::None => "none",
        Grouping::User => "user",
        Grouping::UserAlert => "user_alert",
    };
    let table = t.connection_table(secret, grouping);
    serde::Deserialize::deserialize(toml::Value::Table(table)).unwrap_or_else(|e| panic!("bad connection config: {e}"))
}

impl Harness {
    pub async fn new(backend: Backend, grouping: Grouping) -> Self {
        Self::with(backend, grouping, |_| {}).await
    }

    pub async fn with(backend: Backend, grouping: Grouping, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::for_target(Target::Sandbox, backend, grouping, tweak).await
    }

    /// An engine with one connection, `CONN`, to a freshly spawned `target`.
    pub async fn for_target(
        target: Target,
        backend: Backend,
        grouping: Grouping,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let target = sandbox::targets::spawn(target).await.unwrap();
        let (store, secrets): (Arc<dyn Store>, Arc<dyn Secrets>) = match backend {
            Backend::Sqlite => (
                Arc::new(bridge::store::sqlite::SqliteStore::open(dir.path().join("tb.db")).unwrap()),
                Arc::new(bridge::secrets::file::FileSecrets::open(dir.path().join("secrets.json")).unwrap()),
            ),
            Backend::Dynamo => {
                let sdk = bridge::aws::sdk_config(Some(&endpoint())).await;
                let client = aws_sdk_dynamodb::Client::new(&sdk);
                let table = unique("e2e");
                bridge::store::dynamo::create_table(&client, &table).await.unwrap();
                (
                    Arc::new(bridge::store::dynamo::DynamoStore::new(client, table)),
                    Arc::new(bridge::secrets::aws::AwsSecrets::new(
                        aws_sdk_secretsmanager::Client::new(&sdk),
                        std::time::Duration::from_secs(60),
                    )),
                )
            }
        };
        let secret_name = unique("tb/desk");
        let mut s = Secret::new();
        for (k, v) in &target.secret {
            s.set(k.clone(), v.clone());
        }
        s.set("callback_key", CALLBACK_KEY);
        secrets.put(&secret_name, &s).await.unwrap();
        let mut config = Config::default();
        config.settings.allow_private_callbacks = true;
        config.settings.retry_base_secs = 1;
        config.settings.retry_max_secs = 2;
        config.settings.max_attempts = 3;
        config.connections.insert(CONN.into(), connection_for(&target, &secret_name, grouping));
        tweak(&mut config);
        config.validate().unwrap();
        let mut connectors = BTreeMap::new();
        for (name, cfg) in &config.connections {
            connectors.insert(name.clone(), bridge::connectors::build(name, cfg, secrets.clone()).unwrap());
        }
        let events = Arc::new(CapturedEvents::default());
        let mut engine = Engine::new(Arc::new(config), store.clone(), secrets.clone(), connectors, events.clone());
        engine.notifier.retry_delays = vec![std::time::Duration::from_millis(10); 2];
        Self { engine, target, store, secrets, events, _dir: dir }
    }

    /// A second engine over the same store and secrets, with cold connectors of its own, as a
    /// second Lambda instance would be.
    pub fn twin(&self) -> Engine {
        let cfg = self.engine.config.clone();
        let mut connectors = BTreeMap::new();
        for (name, c) in &cfg.connections {
            connectors.insert(name.clone(), bridge::connectors::build(name, c, self.secrets.clone()).unwrap());
        }
        Engine::new(cfg, self.store.clone(), self.secrets.clone(), connectors, Arc::new(bridge::engine::LogEvents))
    }

    /// The SQLite database file of a `Backend::Sqlite` harness (for raw fault injection).
    pub fn sqlite_file(&self) -> std::path::PathBuf {
        self._dir.path().join("tb.db")
    }

    /// The target's simulator state and technician controls.
    pub fn sim(&self) -> &sandbox::Sim {
        &self.target.sim
    }

    /// Submits a JSON body through the public API handler, as a loopback caller.
    pub async fn submit(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call("POST", "/v1/tasks", Some(body)).await
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
        self.call_as(None, method, path, body).await
    }

    /// Like [`Harness::call`], with `Authorization: Bearer <key>` when a key is given.
    pub async fn call_as(
        &self,
        key: Option<&str>,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        if let Some(k) = key {
            headers.insert("authorization", format!("Bearer {k}").parse().unwrap());
        }
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let (p, q) = path.split_once('?').map(|(p, q)| (p, Some(q))).unwrap_or((path, None));
        let req = bridge::engine::api::ApiRequest {
            method,
            path: p,
            query: q,
            headers: &headers,
            body: &bytes,
            peer_loopback: true,
        };
        let res = bridge::engine::api::handle(&self.engine, req, Utc::now()).await;
        (res.status, res.body)
    }

    pub async fn task(&self, id: &str) -> Task {
        self.engine.get(id).await.unwrap()
    }

    /// Runs the creation step for one task as the stream would.
    pub async fn create(&self, id: &str) {
        let tid = bridge::domain::TaskId::parse(id).unwrap();
        self.engine.create_one(&tid, Utc::now()).await.unwrap();
    }

    pub async fn poll(&self) -> bridge::engine::PollReport {
        self.engine.poll_connection(CONN, Utc::now(), false).await
    }

    pub async fn poll_at(&self, now: DateTime<Utc>) -> bridge::engine::PollReport {
        self.engine.poll_connection(CONN, now, false).await
    }

    pub fn event_types(&self) -> Vec<String> {
        self.events.0.lock().unwrap().iter().map(|e| e.detail_type.clone()).collect()
    }

    /// Each published event as (detail-type, the `result` in its detail).
    pub fn event_results(&self) -> Vec<(String, String)> {
        let events = self.events.0.lock().unwrap();
        events.iter().map(|e| (e.detail_type.clone(), e.detail["result"].as_str().unwrap_or("").to_string())).collect()
    }
}

pub fn access_task(external_id: &str) -> serde_json::Value {
    serde_json::json!({"source":"saviynt","external_id":external_id,"kind":"access","action":"add_access",
        "user":{"id":"u-17","name":"Ada Lovelace","email":"ada@example.com"},"application":"Payroll",
        "entitlements":["payroll-admin"],"requester":{"name":"Grace Hopper","email":"grace@example.com"},
        "justification":"new role"})
}

pub fn alert(external_id: &str, user: &str, alert_type: &str) -> serde_json::Value {
    serde_json::json!({"source":"saas-alerts","external_id":external_id,"kind":"alert",
        "organization":{"id":"org-1","name":"Acme Corp"},"user_email":user,
        "alert_type":alert_type,"severity":"high","details":{"files": 512}})
}

/// Runs one test body against both stores.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::support::Backend::Sqlite).await })*
        }
        mod dynamo {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::support::Backend::Dynamo).await })*
        }
    };
}

/// What a callback receiver got: headers and raw body per request.
pub type Received = Arc<Mutex<Vec<(http::HeaderMap, Vec<u8>)>>>;

/// A local callback receiver; returns its URL and what it received.
pub async fn callback_receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push((headers, body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/hook"), got)
}
