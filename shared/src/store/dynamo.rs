//! DynamoDB store over the single table of the design (see [`table`] for names and keys).
//!
//! Tasks are stored as a JSON `body` plus key, index and TTL attributes. Every write that must not
//! race is conditional; reads of the GSIs are eventually consistent hints that callers act on with
//! version-checked updates. No operation ever scans the table.

mod counter;
mod due;
mod items;
mod outbox;
pub mod table;

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem};
use chrono::{DateTime, Duration, Utc};
use rand::Rng;

pub use counter::{CountOps, OpCounter, client_with_op_counter};
pub use table::create_table;

use items::{
    EXT_SK, GROUP_SK, Item, LEASE_SK, LEASE_UNTIL, OWNER, TASK_ID, TASK_SK, TICKET_ID, VERSION, body, contact_pk,
    create_due_pk, ext_pk, get_s, group_pk, id_of_time_id, key, lease_pk, map_pk, map_sk, n, poll_due_pk, s, state_pk,
    task_item, task_pk, with_body,
};
use table::{PK, SK, STATE_AT, STATE_INDEX, STATE_PK, TTL_ATTRIBUTE};

use super::{
    Created, LeaseTaken, MappingRecord, POLL_MARK_KEY, Page, PollMark, Store, StoreError, decode_cursor, encode_cursor,
    parse_sortable, sortable_time, ttl_seconds,
};
use crate::domain::{
    ContactEntry, Delivery, DeliveryState, Lease, OrgMapping, PsaRecord, RecordKind, SyncCheckpoint, Task, TaskId,
    TaskState, TicketGroup, UserMapping,
};

/// Attempts of a write that lost a race it may retry (transaction conflicts, vanished items).
const MAX_ATTEMPTS: u32 = 8;

pub(crate) fn sdk_err<E, R>(what: &str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Backend(format!("dynamodb {what}: {}", DisplayErrorContext(&e)))
}

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("dynamodb request: {e}"))
}

/// Whether a single-item write failed its condition.
fn condition_failed<E, R>(e: &SdkError<E, R>, check: impl Fn(&E) -> bool) -> bool {
    e.as_service_error().is_some_and(check)
}

async fn backoff(attempt: u32) {
    let ms = rand::rng().random_range(5..=20u64) * u64::from(attempt + 1);
    tokio::time::sleep(StdDuration::from_millis(ms)).await;
}

/// DynamoDB implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store over `table` (created by [`create_table`] or infrastructure).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get_item(&self, pk: String, sk: impl Into<String>) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("get item", e))?;
        Ok(out.item)
    }

    /// Puts `item` only if the stored one is still at version `expected` (optimistic concurrency).
    /// On a lost race, `stored_version` reads the version now stored for the error: `Conflict`
    /// naming both versions, or `NotFound` when the item is gone. `kind` and `id` name the item.
    async fn put_if_version<F, Fut>(
        &self,
        item: Item,
        expected: u64,
        (kind, id): (&str, &str),
        stored_version: F,
    ) -> Result<(), StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<u64>, StoreError>>,
    {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":expected", n(expected))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e, |e| e.is_conditional_check_failed_exception()) => {
                match stored_version().await? {
                    Some(cur) => Err(StoreError::Conflict(format!("{kind} {id} is at version {cur}, not {expected}"))),
                    None => Err(StoreError::NotFound(format!("{kind} {id}"))),
                }
            }
            Err(e) => Err(sdk_err(&format!("update {kind}"), e)),
        }
    }

    /// Every item of partition `pk` whose sort key starts with `prefix` (all pages, consistent).
    async fn query_prefix<T: serde::de::DeserializeOwned>(
        &self,
        pk: String,
        prefix: &str,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":prefix", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_err(what, e))?;
            for item in page.items() {
                out.push(body(item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    fn task_put(&self, task: &Task) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(task_item(task)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(build_err)
    }

    /// The idempotency item; `stale` names a task id the key may be taken over from (its task expired).
    fn ext_put(&self, task: &Task, stale: Option<&str>) -> Result<Put, StoreError> {
        let mut item = key(ext_pk(&task.source, &task.external_id), EXT_SK);
        item.insert(TASK_ID.into(), s(task.id.as_str()));
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item)).expression_attribute_names("#pk", PK);
        put = match stale {
            None => put.condition_expression("attribute_not_exists(#pk)"),
            Some(old) => put
                .condition_expression("attribute_not_exists(#pk) OR #tid = :stale")
                .expression_attribute_names("#tid", TASK_ID)
                .expression_attribute_values(":stale", s(old)),
        };
        put.build().map_err(build_err)
    }

    async fn list_page(&self, state: TaskState, limit: usize, cursor: Option<&str>) -> Result<Page<Task>, StoreError> {
        let limit = limit.max(1);
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(STATE_INDEX)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", STATE_PK)
            .expression_attribute_values(":pk", s(state_pk(state)))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX));
        if let Some(c) = cursor {
            let at = decode_cursor(c)?;
            let id = id_of_time_id(&at).ok_or(StoreError::InvalidCursor)?;
            let mut start = key(task_pk(&id), TASK_SK);
            start.insert(STATE_PK.into(), s(state_pk(state)));
            start.insert(STATE_AT.into(), s(at));
            q = q.set_exclusive_start_key(Some(start));
        }
        let out = q.send().await.map_err(|e| sdk_err("query state index", e))?;
        let more = out.items().len() > limit;
        let mut items = Vec::with_capacity(limit);
        let mut last = None;
        for item in out.items().iter().take(limit) {
            items.push(body::<Task>(item)?);
            last = get_s(item, STATE_AT).map(str::to_string);
        }
        Ok(Page { items, cursor: if more { last.map(|l| encode_cursor(&l)) } else { None } })
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn create_task(&self, task: &Task) -> Result<Created, StoreError> {
        let mut stale: Option<String> = None;
        for attempt in 0..MAX_ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(self.task_put(task)?).build())
                .transact_items(TransactWriteItem::builder().put(self.ext_put(task, stale.as_deref())?).build())
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Created::New(task.clone())),
                Err(e) => e,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) = err.as_service_error() else {
                return Err(sdk_err("create task", err));
            };
            let codes: Vec<&str> = canceled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
            if codes.get(1) == Some(&"ConditionalCheckFailed") {
                // The idempotency key exists: return its task, or take the key over if that task is gone.
                let ext = self.get_item(ext_pk(&task.source, &task.external_id), EXT_SK).await?;
                let Some(first_id) = ext.as_ref().and_then(|i| get_s(i, TASK_ID)).map(str::to_string) else {
                    continue;
                };
                let first = match TaskId::parse(&first_id) {
                    Some(id) => self.get_task(&id).await?,
                    None => None,
                };
                match first {
                    // Our own write, already applied by an earlier attempt the SDK retried after a lost
                    // answer: it is new for the caller, not a duplicate.
                    Some(t) if t.id == task.id => return Ok(Created::New(t)),
                    Some(t) => return Ok(Created::Existing(t)),
                    None => stale = Some(first_id),
                }
            } else if codes.first() == Some(&"ConditionalCheckFailed") {
                return Err(StoreError::Conflict(format!("task {} already exists", task.id)));
            } else if codes.contains(&"TransactionConflict") {
                backoff(attempt).await;
            } else {
                return Err(sdk_err("create task", err));
            }
        }
        Err(StoreError::Conflict(format!("create of {}/{} kept conflicting", task.source, task.external_id)))
    }

    async fn get_task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.get_item(task_pk(id), TASK_SK).await?.map(|item| body(&item)).transpose()
    }

    async fn update_task(&self, task: &Task) -> Result<Task, StoreError> {
        let mut next = task.clone();
        next.version = task.version + 1;
        let stored = || async { Ok(self.get_task(&task.id).await?.map(|t| t.version)) };
        self.put_if_version(task_item(&next)?, task.version, ("task", task.id.as_str()), stored).await?;
        Ok(next)
    }

    async fn due_for_creation(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Task>, StoreError> {
        due::due_page(&self.client, &self.table, create_due_pk, now, limit, cursor).await
    }

    async fn due_for_polling(
        &self,
        connection: &str,
        now: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Task>, StoreError> {
        due::due_page(&self.client, &self.table, |shard| poll_due_pk(connection, shard), now, limit, cursor).await
    }

    async fn list_tasks(&self, state: TaskState, limit: usize, cursor: Option<&str>) -> Result<Page<Task>, StoreError> {
        self.list_page(state, limit, cursor).await
    }

    async fn get_group(&self, connection: &str, key: &str) -> Result<Option<TicketGroup>, StoreError> {
        self.get_item(group_pk(connection, key), GROUP_SK).await?.map(|item| body(&item)).transpose()
    }

    async fn create_group(&self, group: &TicketGroup) -> Result<Option<TicketGroup>, StoreError> {
        let mut item = with_body(key(group_pk(&group.connection, &group.key), GROUP_SK), group)?;
        item.insert(TICKET_ID.into(), s(&group.ticket.id));
        for _ in 0..MAX_ATTEMPTS {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(None),
                Err(e) if condition_failed(&e, |e| e.is_conditional_check_failed_exception()) => {
                    if let Some(winner) = self.get_group(&group.connection, &group.key).await? {
                        return Ok(Some(winner));
                    }
                    // Released between our write and our read: try again.
                }
                Err(e) => return Err(sdk_err("create group", e)),
            }
        }
        Err(StoreError::Conflict(format!("group {} kept changing", group.key)))
    }

    async fn release_group(&self, connection: &str, key: &str, ticket_id: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(items::key(group_pk(connection, key), GROUP_SK)))
            .condition_expression("#t = :t")
            .expression_attribute_names("#t", TICKET_ID)
            .expression_attribute_values(":t", s(ticket_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e, |e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(sdk_err("release group", e)),
        }
    }

    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let lease = Lease { name: name.to_string(), owner: owner.to_string(), expires_at: now + ttl };
        let result = self.put_lease(&lease, now).send().await;
        match result {
            Ok(_) => Ok(Some(lease)),
            Err(e) if condition_failed(&e, |e| e.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(sdk_err("acquire lease", e)),
        }
    }

    async fn take_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<LeaseTaken>, StoreError> {
        let lease = Lease { name: name.to_string(), owner: owner.to_string(), expires_at: now + ttl };
        // The same conditional put as `acquire_lease`, returning the item it replaced.
        let result =
            self.put_lease(&lease, now).return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld).send().await;
        let old = match result {
            Ok(out) => out.attributes,
            Err(e) if condition_failed(&e, |e| e.is_conditional_check_failed_exception()) => return Ok(None),
            Err(e) => return Err(sdk_err("take lease", e)),
        };
        let previous = match old.as_ref().and_then(|o| Some((get_s(o, OWNER)?, get_s(o, LEASE_UNTIL)?))) {
            Some((o, until)) if o != owner => {
                Some(Lease { name: name.to_string(), owner: o.to_string(), expires_at: parse_sortable(until)? })
            }
            _ => None,
        };
        Ok(Some(LeaseTaken { lease, previous }))
    }

    async fn renew_lease(&self, lease: &Lease, now: DateTime<Utc>, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let renewed = Lease { expires_at: now + ttl, ..lease.clone() };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(lease_pk(&lease.name), LEASE_SK)))
            .update_expression("SET #until = :new")
            .condition_expression("#owner = :me AND #until > :now")
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":new", s(sortable_time(renewed.expires_at)))
            .expression_attribute_values(":me", s(&lease.owner))
            .expression_attribute_values(":now", s(sortable_time(now)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(renewed)),
            Err(e) if condition_failed(&e, |e| e.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(sdk_err("renew lease", e)),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(lease_pk(&lease.name), LEASE_SK)))
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":me", s(&lease.owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e, |e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(sdk_err("release lease", e)),
        }
    }

    async fn put_mapping(&self, mapping: &OrgMapping) -> Result<(), StoreError> {
        self.put_record(mapping).await
    }

    async fn get_mapping(&self, connection: &str, org_id: &str) -> Result<Option<OrgMapping>, StoreError> {
        self.get_record(connection, org_id).await
    }

    async fn list_mappings(&self, connection: &str) -> Result<Vec<OrgMapping>, StoreError> {
        self.list_records(connection).await
    }

    async fn delete_mapping(&self, connection: &str, org_id: &str) -> Result<bool, StoreError> {
        self.delete_record::<OrgMapping>(connection, org_id).await
    }

    async fn put_user_mapping(&self, mapping: &UserMapping) -> Result<(), StoreError> {
        self.put_record(mapping).await
    }

    async fn get_user_mapping(&self, connection: &str, email: &str) -> Result<Option<UserMapping>, StoreError> {
        self.get_record(connection, email).await
    }

    async fn list_user_mappings(&self, connection: &str) -> Result<Vec<UserMapping>, StoreError> {
        self.list_records(connection).await
    }

    async fn delete_user_mapping(&self, connection: &str, email: &str) -> Result<bool, StoreError> {
        self.delete_record::<UserMapping>(connection, email).await
    }

    async fn put_contact(&self, entry: &ContactEntry) -> Result<(), StoreError> {
        let mut item = with_body(key(contact_pk(&entry.connection), entry.email.clone()), entry)?;
        item.insert(TTL_ATTRIBUTE.into(), n(ttl_seconds(entry.expires_at)));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_err("put contact", e))?;
        Ok(())
    }

    async fn get_contact(
        &self,
        connection: &str,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ContactEntry>, StoreError> {
        // TTL deletion lags by up to days: expiry is decided here, not by the table.
        let entry: Option<ContactEntry> =
            self.get_item(contact_pk(connection), email).await?.map(|item| body(&item)).transpose()?;
        Ok(entry.filter(|e| e.expires_at > now))
    }

    async fn update_task_with_deliveries(&self, task: &Task, deliveries: &[Delivery]) -> Result<Task, StoreError> {
        self.outbox_update_task(task, deliveries).await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        self.outbox_get(id).await
    }

    async fn update_delivery(&self, delivery: &Delivery) -> Result<Delivery, StoreError> {
        self.outbox_update(delivery).await
    }

    async fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.outbox_due(now, limit).await
    }

    async fn list_deliveries(
        &self,
        state: DeliveryState,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Delivery>, StoreError> {
        self.outbox_list(state, limit, cursor).await
    }

    async fn get_poll_mark(&self, connection: &str) -> Result<Option<PollMark>, StoreError> {
        self.get_record(connection, POLL_MARK_KEY).await
    }

    async fn put_poll_mark(&self, mark: &PollMark) -> Result<(), StoreError> {
        self.put_record(mark).await
    }

    async fn put_psa_record(&self, record: &PsaRecord) -> Result<(), StoreError> {
        self.put_record(record).await
    }

    async fn get_psa_record(&self, connection: &str, key: &str) -> Result<Option<PsaRecord>, StoreError> {
        self.get_record(connection, key).await
    }

    async fn list_psa_records(&self, connection: &str, kind: RecordKind) -> Result<Vec<PsaRecord>, StoreError> {
        let prefix = format!("{}{}#", PsaRecord::KIND.sort_prefix, kind.as_str());
        self.query_prefix(map_pk(connection), &prefix, "list PSA records").await
    }

    async fn put_sync_checkpoint(&self, checkpoint: &SyncCheckpoint) -> Result<(), StoreError> {
        self.put_record(checkpoint).await
    }

    async fn get_sync_checkpoint(&self, connection: &str) -> Result<Option<SyncCheckpoint>, StoreError> {
        self.get_record(connection, SyncCheckpoint::NAME).await
    }
}

/// Mapping records, one implementation for every [`MappingRecord`] kind: items `MAP#<connection>` /
/// `<sort prefix><key>`.
impl DynamoStore {
    /// The conditional put behind `acquire_lease` and `take_lease`: writes `lease` if its name is
    /// free, expired at `now`, or already held by the same owner.
    fn put_lease(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
        let mut item = key(lease_pk(&lease.name), LEASE_SK);
        item.insert(OWNER.into(), s(&lease.owner));
        item.insert(LEASE_UNTIL.into(), s(sortable_time(lease.expires_at)));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #until <= :now OR #owner = :me")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":now", s(sortable_time(now)))
            .expression_attribute_values(":me", s(&lease.owner))
    }

    async fn put_record<T: MappingRecord>(&self, record: &T) -> Result<(), StoreError> {
        let k = T::KIND;
        let item = with_body(key(map_pk(record.connection()), map_sk(k, record.record_key())), record)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_err(&format!("put {}", k.what), e))?;
        Ok(())
    }

    async fn get_record<T: MappingRecord>(&self, connection: &str, key: &str) -> Result<Option<T>, StoreError> {
        self.get_item(map_pk(connection), map_sk(T::KIND, key)).await?.map(|item| body(&item)).transpose()
    }

    async fn list_records<T: MappingRecord>(&self, connection: &str) -> Result<Vec<T>, StoreError> {
        let k = T::KIND;
        self.query_prefix(map_pk(connection), k.sort_prefix, &format!("list {}s", k.what)).await
    }

    async fn delete_record<T: MappingRecord>(&self, connection: &str, key: &str) -> Result<bool, StoreError> {
        let k = T::KIND;
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(items::key(map_pk(connection), map_sk(k, key))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_err(&format!("delete {}", k.what), e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}
