//! Sharded due-queue reads: one Query per shard of the sparse `due` GSI, merged in due order, with a
//! cursor holding each shard's position so paging continues exactly where the last page ended.

use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::items::{TASK_SK, body, get_s, id_of_time_id, key, s, task_pk};
use super::sdk_err;
use super::table::{DUE_AT, DUE_INDEX, DUE_PK, DUE_SHARDS};
use crate::domain::Task;
use crate::store::{Page, StoreError, decode_cursor, encode_cursor, sortable_time};

/// Where a shard's reading stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Pos {
    /// Nothing read yet.
    Start,
    /// Everything up to and including this `due_at` value was returned.
    After(String),
    /// Nothing due is left in this shard.
    Done,
}

fn decode(cursor: Option<&str>) -> Result<Vec<Pos>, StoreError> {
    let shards = DUE_SHARDS as usize;
    let Some(c) = cursor else { return Ok(vec![Pos::Start; shards]) };
    let pos: Vec<Pos> = serde_json::from_str(&decode_cursor(c)?).map_err(|_| StoreError::InvalidCursor)?;
    let valid = pos.len() == shards
        && pos.iter().all(|p| match p {
            Pos::After(at) => id_of_time_id(at).is_some(),
            _ => true,
        });
    if valid { Ok(pos) } else { Err(StoreError::InvalidCursor) }
}

/// Items of one shard in due order (`due_at` value, task) and whether the shard has more.
type ShardRead = (Vec<(String, Task)>, bool);

async fn read_shard(
    client: Client,
    table: String,
    due_pk: String,
    bound: String,
    pos: Pos,
    fetch: i32,
) -> Result<ShardRead, StoreError> {
    let mut q = client
        .query()
        .table_name(table)
        .index_name(DUE_INDEX)
        .key_condition_expression("#pk = :pk AND #at < :bound")
        .expression_attribute_names("#pk", DUE_PK)
        .expression_attribute_names("#at", DUE_AT)
        .expression_attribute_values(":pk", s(&due_pk))
        .expression_attribute_values(":bound", s(bound))
        .scan_index_forward(true)
        .limit(fetch);
    if let Pos::After(at) = &pos {
        let id = id_of_time_id(at).ok_or(StoreError::InvalidCursor)?;
        let mut start = key(task_pk(&id), TASK_SK);
        start.insert(DUE_PK.into(), s(due_pk));
        start.insert(DUE_AT.into(), s(at));
        q = q.set_exclusive_start_key(Some(start));
    }
    let out = q.send().await.map_err(|e| sdk_err("query due index", e))?;
    let items = out
        .items()
        .iter()
        .map(|item| {
            let at = get_s(item, DUE_AT)
                .ok_or_else(|| StoreError::Corrupt { key: "due index".into(), reason: "item without due_at".into() })?;
            Ok((at.to_string(), body::<Task>(item)?))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((items, out.last_evaluated_key().is_some()))
}

/// One page of the due queue whose shard partitions are `pk_of(0..DUE_SHARDS)`, items due at `now`
/// or earlier, oldest first.
pub(super) async fn due_page(
    client: &Client,
    table: &str,
    pk_of: impl Fn(u32) -> String,
    now: DateTime<Utc>,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<Task>, StoreError> {
    let limit = limit.max(1);
    let mut pos = decode(cursor)?;
    // `due_at` is "<time>#<id>": everything with time <= now sorts below "<now>$" ('$' > '#').
    let bound = format!("{}$", sortable_time(now));
    // One more than a page per shard, so "exhausted" is known exactly and no empty last page is needed.
    let fetch = i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX);

    let mut reads: Vec<Option<ShardRead>> = vec![None; pos.len()];
    let mut set = JoinSet::new();
    for (shard, p) in pos.iter().enumerate() {
        if *p == Pos::Done {
            continue;
        }
        let fut = read_shard(client.clone(), table.to_string(), pk_of(shard as u32), bound.clone(), p.clone(), fetch);
        set.spawn(async move { (shard, fut.await) });
    }
    while let Some(joined) = set.join_next().await {
        let (shard, read) = joined.map_err(|e| StoreError::Backend(format!("due query task failed: {e}")))?;
        reads[shard] = Some(read?);
    }

    // A shard that has more than it returned bounds what may be emitted: its unseen items all sort
    // after its last returned one.
    let horizon = reads
        .iter()
        .flatten()
        .filter(|(_, more)| *more)
        .filter_map(|(items, _)| items.last().map(|(k, _)| k.clone()))
        .min();
    let mut merged: Vec<(String, usize, Task)> = Vec::new();
    for (shard, read) in reads.iter_mut().enumerate() {
        if let Some((items, _)) = read {
            merged.extend(std::mem::take(items).into_iter().map(|(k, t)| (k, shard, t)));
        }
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));

    let mut consumed = vec![0usize; pos.len()];
    let mut fetched = vec![0usize; pos.len()];
    for (_, shard, _) in &merged {
        fetched[*shard] += 1;
    }
    let mut items = Vec::new();
    for (k, shard, task) in merged {
        if items.len() == limit || horizon.as_ref().is_some_and(|h| &k > h) {
            break;
        }
        consumed[shard] += 1;
        pos[shard] = Pos::After(k);
        items.push(task);
    }
    for (shard, read) in reads.iter().enumerate() {
        if let Some((_, more)) = read
            && !more
            && consumed[shard] == fetched[shard]
        {
            pos[shard] = Pos::Done;
        }
    }
    let cursor = if pos.iter().all(|p| *p == Pos::Done) {
        None
    } else {
        let raw = serde_json::to_string(&pos).map_err(|e| StoreError::Backend(format!("cursor: {e}")))?;
        Some(encode_cursor(&raw))
    };
    Ok(Page { items, cursor })
}
