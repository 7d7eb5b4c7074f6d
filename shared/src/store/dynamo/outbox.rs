//! The outbox in DynamoDB: one item per entry, `DELIVERY#<id>` / `DELIVERY`.
//!
//! Entries are separate items written with the task in one `TransactWriteItems` (the task `Put`
//! conditional on its version, each entry `Put` conditional on not existing), rather than a list
//! inside the task item: a task item already carries the task's own due index (creation/poll), an
//! entry needs its own due time and state listing, and a separate item lets the sender update one
//! entry without racing the task's optimistic lock. Transactions hold only `Put`s, so the grant is
//! `PutItem` as for task creation.
//!
//! The existing GSIs serve entries with their own partitions: `due` under `DELIVER#<shard>` while
//! pending (sort `<next attempt>#<id>`), `by_state` under `DELIVERIES#<state>` (sort
//! `<updated>#<id>`). Neither matches the stream filter (`TASK#` keys, `STATE#received`).

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::items::{Item, VERSION, body, esc, get_s, key, n, s, task_item, with_body};
use super::table::{DUE_AT, DUE_INDEX, DUE_PK, PK, STATE_AT, STATE_INDEX, STATE_PK, TTL_ATTRIBUTE};
use super::{DynamoStore, MAX_ATTEMPTS, backoff, build_err, sdk_err};
use crate::domain::{Delivery, DeliveryState, Task};
use crate::store::{Page, Store, StoreError, decode_cursor, encode_cursor, sortable_time, ttl_seconds};

const DELIVERY_SK: &str = "DELIVERY";
/// Partitions of the pending-entry queue in the `due` index.
const SHARDS: u32 = 4;

fn delivery_pk(id: &str) -> String {
    format!("DELIVERY#{}", esc(id))
}

fn due_pk(shard: u32) -> String {
    format!("DELIVER#{shard}")
}

fn state_pk(state: DeliveryState) -> String {
    format!("DELIVERIES#{}", state.as_str())
}

fn shard_of(id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % SHARDS
}

fn item(d: &Delivery) -> Result<Item, StoreError> {
    let mut item = with_body(key(delivery_pk(&d.id), DELIVERY_SK), d)?;
    item.insert(VERSION.into(), n(d.version));
    item.insert(STATE_PK.into(), s(state_pk(d.state)));
    item.insert(STATE_AT.into(), s(format!("{}#{}", sortable_time(d.updated_at), d.id)));
    if let Some(at) = d.due() {
        item.insert(DUE_PK.into(), s(due_pk(shard_of(&d.id))));
        item.insert(DUE_AT.into(), s(format!("{}#{}", sortable_time(at), d.id)));
    }
    if let Some(exp) = d.expires_at {
        item.insert(TTL_ATTRIBUTE.into(), n(ttl_seconds(exp)));
    }
    Ok(item)
}

impl DynamoStore {
    pub(super) async fn outbox_update_task(&self, task: &Task, deliveries: &[Delivery]) -> Result<Task, StoreError> {
        let mut next = task.clone();
        next.version = task.version + 1;
        let task_put = Put::builder()
            .table_name(self.table())
            .set_item(Some(task_item(&next)?))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":expected", n(task.version))
            .build()
            .map_err(build_err)?;
        let mut puts = vec![TransactWriteItem::builder().put(task_put).build()];
        for d in deliveries {
            let put = Put::builder()
                .table_name(self.table())
                .set_item(Some(item(d)?))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .build()
                .map_err(build_err)?;
            puts.push(TransactWriteItem::builder().put(put).build());
        }
        for attempt in 0..MAX_ATTEMPTS {
            let result = self.client.transact_write_items().set_transact_items(Some(puts.clone())).send().await;
            let err = match result {
                Ok(_) => return Ok(next),
                Err(e) => e,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) = err.as_service_error() else {
                return Err(sdk_err("update task with deliveries", err));
            };
            let codes: Vec<&str> = canceled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
            if codes.first() == Some(&"ConditionalCheckFailed") {
                return match self.get_task(&task.id).await? {
                    Some(cur) => Err(StoreError::Conflict(format!(
                        "task {} is at version {}, not {}",
                        task.id, cur.version, task.version
                    ))),
                    None => Err(StoreError::NotFound(format!("task {}", task.id))),
                };
            } else if codes.contains(&"ConditionalCheckFailed") {
                return Err(StoreError::Conflict(format!("a delivery of task {} already exists", task.id)));
            } else if codes.contains(&"TransactionConflict") {
                backoff(attempt).await;
            } else {
                return Err(sdk_err("update task with deliveries", err));
            }
        }
        Err(StoreError::Conflict(format!("update of task {} kept conflicting", task.id)))
    }

    pub(super) async fn outbox_get(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(delivery_pk(id), DELIVERY_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("get delivery", e))?;
        out.item.map(|i| body(&i)).transpose()
    }

    pub(super) async fn outbox_update(&self, d: &Delivery) -> Result<Delivery, StoreError> {
        let mut next = d.clone();
        next.version = d.version + 1;
        let stored = || async { Ok(self.outbox_get(&d.id).await?.map(|cur| cur.version)) };
        self.put_if_version(item(&next)?, d.version, ("delivery", d.id.as_str()), stored).await?;
        Ok(next)
    }

    pub(super) async fn outbox_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        // `due_at` is "<time>#<id>": everything with time <= now sorts below "<now>$" ('$' > '#').
        let bound = format!("{}$", sortable_time(now));
        let fetch = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
        let mut found: Vec<(String, Delivery)> = Vec::new();
        for shard in 0..SHARDS {
            let out = self
                .client
                .query()
                .table_name(self.table())
                .index_name(DUE_INDEX)
                .key_condition_expression("#pk = :pk AND #at < :bound")
                .expression_attribute_names("#pk", DUE_PK)
                .expression_attribute_names("#at", DUE_AT)
                .expression_attribute_values(":pk", s(due_pk(shard)))
                .expression_attribute_values(":bound", s(&bound))
                .scan_index_forward(true)
                .limit(fetch)
                .send()
                .await
                .map_err(|e| sdk_err("query due deliveries", e))?;
            for i in out.items() {
                found.push((get_s(i, DUE_AT).unwrap_or_default().to_string(), body(i)?));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found.into_iter().take(limit).map(|(_, d)| d).collect())
    }

    pub(super) async fn outbox_list(
        &self,
        state: DeliveryState,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Delivery>, StoreError> {
        let limit = limit.max(1);
        let mut q = self
            .client
            .query()
            .table_name(self.table())
            .index_name(STATE_INDEX)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", STATE_PK)
            .expression_attribute_values(":pk", s(state_pk(state)))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX));
        if let Some(c) = cursor {
            let at = decode_cursor(c)?;
            let id = at.rsplit_once('#').and_then(|(_, id)| Delivery::parse_id(id)).ok_or(StoreError::InvalidCursor)?;
            let mut start = key(delivery_pk(&id), DELIVERY_SK);
            start.insert(STATE_PK.into(), s(state_pk(state)));
            start.insert(STATE_AT.into(), s(at));
            q = q.set_exclusive_start_key(Some(start));
        }
        let out = q.send().await.map_err(|e| sdk_err("query deliveries by state", e))?;
        let more = out.items().len() > limit;
        let mut items = Vec::with_capacity(limit);
        let mut last = None;
        for i in out.items().iter().take(limit) {
            items.push(body::<Delivery>(i)?);
            last = get_s(i, STATE_AT).map(str::to_string);
        }
        Ok(Page { items, cursor: if more { last.map(|l| encode_cursor(&l)) } else { None } })
    }
}
