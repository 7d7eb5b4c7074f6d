//! Item keys and the encoding of domain values as DynamoDB items.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::table::{DUE_AT, DUE_PK, DUE_SHARDS, PK, SK, STATE_AT, STATE_PK, TTL_ATTRIBUTE};
use crate::domain::{Due, Task, TaskId, TaskState};
use crate::store::{MappingKind, StoreError, sortable_time, ttl_seconds};

pub(super) type Item = HashMap<String, AttributeValue>;

/// JSON body attribute of every item that carries a domain value.
pub(super) const BODY: &str = "body";
pub(super) const VERSION: &str = "version";
pub(super) const TASK_ID: &str = "task_id";
pub(super) const TICKET_ID: &str = "ticket_id";
pub(super) const OWNER: &str = "owner";
pub(super) const LEASE_UNTIL: &str = "lease_until";

pub(super) const TASK_SK: &str = "TASK";
pub(super) const EXT_SK: &str = "EXT";
pub(super) const GROUP_SK: &str = "GROUP";
pub(super) const LEASE_SK: &str = "LEASE";

/// Escapes `%` and `#` so user-supplied key parts cannot collide across the `#` separators.
pub(super) fn esc(s: &str) -> String {
    s.replace('%', "%25").replace('#', "%23")
}

pub(super) fn task_pk(id: &TaskId) -> String {
    format!("TASK#{}", esc(id.as_str()))
}

pub(super) fn ext_pk(source: &str, external_id: &str) -> String {
    format!("EXT#{}#{}", esc(source), esc(external_id))
}

pub(super) fn group_pk(connection: &str, key: &str) -> String {
    format!("GROUP#{}#{}", esc(connection), esc(key))
}

pub(super) fn lease_pk(name: &str) -> String {
    format!("LEASE#{}", esc(name))
}

pub(super) fn map_pk(connection: &str) -> String {
    format!("MAP#{}", esc(connection))
}

/// `<kind's sort prefix><key>` under `MAP#<conn>` (`ORG#<org id>`, `USER#<normalized e-mail>`).
pub(super) fn map_sk(kind: MappingKind, key: &str) -> String {
    format!("{}{key}", kind.sort_prefix)
}

pub(super) fn contact_pk(connection: &str) -> String {
    format!("CONTACT#{}", esc(connection))
}

pub(super) fn create_due_pk(shard: u32) -> String {
    format!("CREATE#{shard}")
}

pub(super) fn poll_due_pk(connection: &str, shard: u32) -> String {
    format!("POLL#{}#{shard}", esc(connection))
}

/// Shard of a task in the due queues (FNV-1a of the id: stable across builds).
pub(super) fn shard_of(id: &TaskId) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.as_str().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % DUE_SHARDS
}

/// Sort key combining a time and the task id; unique, and string order = (time, id) order.
pub(super) fn time_id(at: chrono::DateTime<chrono::Utc>, id: &TaskId) -> String {
    format!("{}#{}", sortable_time(at), id.as_str())
}

/// The task id at the end of a [`time_id`] value.
pub(super) fn id_of_time_id(v: &str) -> Option<TaskId> {
    v.rsplit_once('#').and_then(|(_, id)| TaskId::parse(id))
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

pub(super) fn get_s<'a>(item: &'a Item, attr: &str) -> Option<&'a str> {
    item.get(attr).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn key_name(item: &Item) -> String {
    format!("{}/{}", get_s(item, PK).unwrap_or("?"), get_s(item, SK).unwrap_or("?"))
}

/// Puts `value` as JSON into the [`BODY`] attribute.
pub(super) fn with_body<T: Serialize>(mut item: Item, value: &T) -> Result<Item, StoreError> {
    let body = serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt { key: key_name(&item), reason: e.to_string() })?;
    item.insert(BODY.to_string(), s(body));
    Ok(item)
}

/// Decodes the [`BODY`] attribute.
pub(super) fn body<T: DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let raw = get_s(item, BODY)
        .ok_or_else(|| StoreError::Corrupt { key: key_name(item), reason: "no body attribute".into() })?;
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt { key: key_name(item), reason: e.to_string() })
}

pub(super) fn state_pk(state: TaskState) -> String {
    format!("STATE#{}", state.as_str())
}

/// The full item of a task: body, version, state index, sparse due index and TTL.
pub(super) fn task_item(task: &Task) -> Result<Item, StoreError> {
    let mut item = with_body(key(task_pk(&task.id), TASK_SK), task)?;
    item.insert(VERSION.into(), n(task.version));
    item.insert("state".into(), s(task.state.as_str()));
    item.insert("connection".into(), s(&task.connection));
    item.insert(STATE_PK.into(), s(state_pk(task.state)));
    item.insert(STATE_AT.into(), s(time_id(task.updated_at, &task.id)));
    let shard = shard_of(&task.id);
    let due = match task.due() {
        Some(Due::Create(at)) => Some((create_due_pk(shard), at)),
        Some(Due::Poll(at)) => Some((poll_due_pk(&task.connection, shard), at)),
        None => None,
    };
    if let Some((pk, at)) = due {
        item.insert(DUE_PK.into(), s(pk));
        item.insert(DUE_AT.into(), s(time_id(at, &task.id)));
    }
    if let Some(exp) = task.expires_at {
        item.insert(TTL_ATTRIBUTE.into(), n(ttl_seconds(exp)));
    }
    Ok(item)
}
