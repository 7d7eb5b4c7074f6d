//! The single-table definition shared by the store, infrastructure and tests.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
};

use crate::store::StoreError;

/// Partition key attribute of the table.
pub const PK: &str = "PK";
/// Sort key attribute of the table.
pub const SK: &str = "SK";
/// Sparse GSI of work that is due (creation retries and status polls).
pub const DUE_INDEX: &str = "due";
/// `due` partition key: `CREATE#<shard>` or `POLL#<conn>#<shard>`.
pub const DUE_PK: &str = "due_pk";
/// `due` sort key: fixed-width RFC 3339 due time, `#`, task id (string order = time order).
pub const DUE_AT: &str = "due_at";
/// GSI listing tasks per state, newest update first.
pub const STATE_INDEX: &str = "by_state";
/// `by_state` partition key: `STATE#<state>`.
pub const STATE_PK: &str = "state_pk";
/// `by_state` sort key: fixed-width updated-at time, `#`, task id.
pub const STATE_AT: &str = "state_at";
/// TTL attribute (Number, epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// Number of shards of each due queue partition.
pub const DUE_SHARDS: u32 = 4;

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("invalid table definition: {e}"))
}

fn sdk_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    e: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> StoreError {
    StoreError::Backend(format!("{what}: {}", DisplayErrorContext(&e)))
}

fn key(attr: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder().attribute_name(attr).key_type(kind).build().map_err(build_err)
}

fn string_attr(attr: &str) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(attr)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(build_err)
}

fn gsi(name: &str, pk: &str, sk: &str) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(pk, KeyType::Hash)?)
        .key_schema(key(sk, KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(build_err)
}

/// Creates the table as infrastructure does (on-demand, PK/SK, GSIs `due` and `by_state` with all
/// attributes projected, NEW_IMAGE stream), waits until it and its indexes are active, and enables
/// TTL on [`TTL_ATTRIBUTE`].
pub async fn create_table(client: &Client, name: &str) -> Result<(), StoreError> {
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(gsi(DUE_INDEX, DUE_PK, DUE_AT)?)
        .global_secondary_indexes(gsi(STATE_INDEX, STATE_PK, STATE_AT)?)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .map_err(build_err)?,
        );
    for attr in [PK, SK, DUE_PK, DUE_AT, STATE_PK, STATE_AT] {
        req = req.attribute_definitions(string_attr(attr)?);
    }
    req.send().await.map_err(|e| sdk_err("create table", e))?;
    wait_active(client, name).await?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()
                .map_err(build_err)?,
        )
        .send()
        .await
        .map_err(|e| sdk_err("enable TTL", e))?;
    Ok(())
}

/// Polls `DescribeTable` until the table and all its GSIs are active (at most about a minute).
async fn wait_active(client: &Client, name: &str) -> Result<(), StoreError> {
    for _ in 0..300 {
        let out = client.describe_table().table_name(name).send().await.map_err(|e| sdk_err("describe table", e))?;
        if let Some(t) = out.table() {
            let indexes_ready =
                t.global_secondary_indexes().iter().all(|i| i.index_status() == Some(&IndexStatus::Active));
            if t.table_status() == Some(&TableStatus::Active) && indexes_ready {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Err(StoreError::Backend(format!("table {name} did not become active")))
}
