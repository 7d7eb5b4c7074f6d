//! The operator's side of the sync's records: preview the pending entries of a kind, apply them
//! (pending → created), exclude or include one entry.

use chrono::{DateTime, Utc};

use super::MappingError;
use crate::domain::{PsaRecord, RecordKind, RecordState};
use crate::store::Store;

/// The records of `kind` in `state` (all states when `None`), by key.
pub async fn list(
    store: &dyn Store,
    connection: &str,
    kind: RecordKind,
    state: Option<RecordState>,
) -> Result<Vec<PsaRecord>, MappingError> {
    let all = store.list_psa_records(connection, kind).await?;
    Ok(all.into_iter().filter(|r| state.is_none_or(|s| r.state == s)).collect())
}

/// Takes every pending record of `kind` over (state `created`); returns them. Applying twice
/// changes nothing the second time.
pub async fn apply_pending(
    store: &dyn Store,
    connection: &str,
    kind: RecordKind,
    now: DateTime<Utc>,
) -> Result<Vec<PsaRecord>, MappingError> {
    let mut done = Vec::new();
    for r in list(store, connection, kind, Some(RecordState::Pending)).await? {
        let r = PsaRecord { state: RecordState::Created, updated_at: now, ..r };
        store.put_psa_record(&r).await?;
        done.push(r);
    }
    Ok(done)
}

/// Sets the state of the record of `kind` with PSA id `id` (excluded records are never used for
/// tickets; including one makes it pending again).
pub async fn set_state(
    store: &dyn Store,
    connection: &str,
    kind: RecordKind,
    id: &str,
    state: RecordState,
    now: DateTime<Utc>,
) -> Result<PsaRecord, MappingError> {
    let found = list(store, connection, kind, None).await?.into_iter().find(|r| r.id == id);
    let Some(r) = found else {
        return Err(MappingError::NotFound(format!(
            "no {} record with id '{id}' (run `ticket-bridge mappings sync` first)",
            kind.as_str()
        )));
    };
    let r = PsaRecord { state, updated_at: now, ..r };
    store.put_psa_record(&r).await?;
    Ok(r)
}
