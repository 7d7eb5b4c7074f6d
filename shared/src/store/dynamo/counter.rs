//! Counts DynamoDB operations by name through an SDK interceptor (tests, benchmarks).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{ConfigBag, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// Operation counts keyed by operation name (`PutItem`, `Query`, `Scan`, ...).
#[derive(Debug, Default)]
pub struct OpCounter {
    counts: Mutex<BTreeMap<String, u64>>,
}

/// Operations that write to the table.
const WRITE_OPS: [&str; 5] = ["PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"];

impl OpCounter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn record(&self, op: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(op.to_string()).or_default() += 1;
    }

    /// How many times `op` was executed (retries of one call count once).
    pub fn count(&self, op: &str) -> u64 {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).get(op).copied().unwrap_or(0)
    }

    /// All operations executed.
    pub fn total(&self) -> u64 {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    /// Write operations executed (a transaction counts once).
    pub fn writes(&self) -> u64 {
        WRITE_OPS.iter().map(|op| self.count(op)).sum()
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset(&self) {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Interceptor feeding an [`OpCounter`] once per executed operation.
#[derive(Debug, Clone)]
pub struct CountOps(pub Arc<OpCounter>);

impl Intercept for CountOps {
    fn name(&self) -> &'static str {
        "CountDynamoOps"
    }

    // Client interceptors see `read_before_execution` before the operation's metadata is in the
    // config bag; serialization happens once per execution, after it is.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg.load::<Metadata>().map_or("unknown", Metadata::name);
        self.0.record(op);
        Ok(())
    }
}

/// A DynamoDB client built from `config` that counts every operation into `counter`.
pub fn client_with_op_counter(config: &aws_config::SdkConfig, counter: Arc<OpCounter>) -> Client {
    let conf = aws_sdk_dynamodb::config::Builder::from(config).interceptor(CountOps(counter)).build();
    Client::from_conf(conf)
}
