//! The outbox in SQLite: table `deliveries`, written in the same transaction as the task update
//! that causes its entries.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{db, from_json, sql_limit, to_json, write_task_update};
use crate::domain::{Delivery, DeliveryState, Task};
use crate::store::{Page, StoreError, decode_cursor, encode_cursor, sortable_time, ttl_seconds};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
    id         TEXT PRIMARY KEY NOT NULL,
    task_id    TEXT NOT NULL,
    state      TEXT NOT NULL,
    due_at     TEXT,
    updated_at TEXT NOT NULL,
    version    INTEGER NOT NULL,
    expires_at INTEGER,
    body       TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, updated_at, id);
CREATE INDEX IF NOT EXISTS deliveries_expires ON deliveries (expires_at) WHERE expires_at IS NOT NULL;
";

fn insert(conn: &Connection, d: &Delivery) -> Result<(), StoreError> {
    let body = to_json(&d.id, d)?;
    conn.prepare_cached(
        "INSERT INTO deliveries (id, task_id, state, due_at, updated_at, version, expires_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut st| {
        st.execute(params![
            d.id,
            d.task_id.as_str(),
            d.state.as_str(),
            d.due().map(sortable_time),
            sortable_time(d.updated_at),
            i64::try_from(d.version).unwrap_or(i64::MAX),
            d.expires_at.map(ttl_seconds),
            body,
        ])
    })
    .map_err(db)?;
    Ok(())
}

/// Task update and new entries in one immediate transaction.
pub(super) fn update_task_with_deliveries(
    conn: &mut Connection,
    task: &Task,
    deliveries: &[Delivery],
) -> Result<Task, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
    let saved = write_task_update(&tx, task)?;
    for d in deliveries {
        insert(&tx, d)?;
    }
    tx.commit().map_err(db)?;
    Ok(saved)
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<Delivery>, StoreError> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM deliveries WHERE id = ?1")
        .and_then(|mut st| st.query_row([id], |r| r.get(0)))
        .optional()
        .map_err(db)?;
    body.map(|b| from_json(id, &b)).transpose()
}

pub(super) fn update(conn: &Connection, d: &Delivery) -> Result<Delivery, StoreError> {
    let mut next = d.clone();
    next.version = d.version + 1;
    let expected = i64::try_from(d.version).map_err(|_| StoreError::Conflict("version overflow".into()))?;
    let body = to_json(&next.id, &next)?;
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries SET state = ?1, due_at = ?2, updated_at = ?3, version = ?4, expires_at = ?5, body = ?6
             WHERE id = ?7 AND version = ?8",
        )
        .and_then(|mut st| {
            st.execute(params![
                next.state.as_str(),
                next.due().map(sortable_time),
                sortable_time(next.updated_at),
                expected + 1,
                next.expires_at.map(ttl_seconds),
                body,
                next.id,
                expected,
            ])
        })
        .map_err(db)?;
    if changed == 1 {
        return Ok(next);
    }
    match get(conn, &next.id)? {
        Some(cur) => {
            Err(StoreError::Conflict(format!("delivery {} is at version {}, not {expected}", next.id, cur.version)))
        }
        None => Err(StoreError::NotFound(format!("delivery {}", next.id))),
    }
}

fn bodies(conn: &Connection, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    stmt.query_map(params, |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)
}

pub(super) fn due(conn: &Connection, now: String, limit: usize) -> Result<Vec<Delivery>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    bodies(
        conn,
        "SELECT id, body FROM deliveries WHERE due_at IS NOT NULL AND due_at <= ?1 ORDER BY due_at, id LIMIT ?2",
        &[&now, &limit],
    )?
    .into_iter()
    .map(|(id, body)| from_json(&id, &body))
    .collect()
}

pub(super) fn list(
    conn: &Connection,
    state: DeliveryState,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<Delivery>, StoreError> {
    let rows = match cursor {
        None => bodies(
            conn,
            "SELECT id, body FROM deliveries WHERE state = ?1 ORDER BY updated_at DESC, id DESC LIMIT ?2",
            &[&state.as_str(), &sql_limit(limit)],
        )?,
        Some(c) => {
            let raw = decode_cursor(c)?;
            let (at, id) = raw.split_once('|').ok_or(StoreError::InvalidCursor)?;
            if Delivery::parse_id(id).is_none() {
                return Err(StoreError::InvalidCursor);
            }
            bodies(
                conn,
                "SELECT id, body FROM deliveries WHERE state = ?1 AND (updated_at, id) < (?2, ?3)
                 ORDER BY updated_at DESC, id DESC LIMIT ?4",
                &[&state.as_str(), &at, &id, &sql_limit(limit)],
            )?
        }
    };
    let more = rows.len() > limit;
    let mut items: Vec<Delivery> = Vec::with_capacity(limit.min(rows.len()));
    for (id, body) in rows.into_iter().take(limit) {
        items.push(from_json(&id, &body)?);
    }
    let cursor = if more {
        items.last().map(|d| encode_cursor(&format!("{}|{}", sortable_time(d.updated_at), d.id)))
    } else {
        None
    };
    Ok(Page { items, cursor })
}

/// Removes finished entries whose retention passed (`purge_expired`).
pub(super) fn purge(conn: &Connection, secs: i64) -> Result<usize, StoreError> {
    conn.execute("DELETE FROM deliveries WHERE expires_at IS NOT NULL AND expires_at <= ?1", [secs]).map_err(db)
}
