//! The upstream side as a source: organizations and users pushed in bulk (`PUT
//! /v1/mappings/{connection}/organizations|users`). Idempotent upserts: a new entry is stored
//! unmatched and linked at once to a PSA record the sync already read (same name / address, not
//! yet linked); an entry already there keeps its customer, contact and exclusion.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{MappingError, UpstreamOrg, UpstreamUser};
use crate::domain::{MatchMode, OrgMapping, PsaRecord, RecordKind, RecordState, UserMapping};
use crate::store::Store;

/// What one push did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PushReport {
    pub received: usize,
    /// Stored for the first time.
    pub new: usize,
    /// Known, with a changed name (or organization).
    pub updated: usize,
    pub unchanged: usize,
    /// Linked now to a PSA customer / contact the sync had read.
    pub matched: usize,
}

/// Unlinked, not excluded records of `kind` by their comparison key.
async fn unlinked(
    store: &dyn Store,
    connection: &str,
    kind: RecordKind,
    key: impl Fn(&PsaRecord) -> Option<String>,
) -> Result<HashMap<String, Vec<PsaRecord>>, MappingError> {
    let mut by: HashMap<String, Vec<PsaRecord>> = HashMap::new();
    for r in store.list_psa_records(connection, kind).await? {
        if r.upstream.is_none()
            && r.state != RecordState::Excluded
            && let Some(k) = key(&r)
        {
            by.entry(k).or_default().push(r);
        }
    }
    Ok(by)
}

/// Upserts organizations; a new (or still unmatched) one with exactly one unlinked PSA customer of
/// the same name (under `mode`) is mapped to it.
pub async fn push_orgs(
    store: &dyn Store,
    connection: &str,
    orgs: &[UpstreamOrg],
    mode: MatchMode,
    now: DateTime<Utc>,
) -> Result<PushReport, MappingError> {
    let existing: HashMap<String, OrgMapping> =
        store.list_mappings(connection).await?.into_iter().map(|m| (m.org_id.clone(), m)).collect();
    let mut customers = unlinked(store, connection, RecordKind::Customers, |r| mode.key(&r.name)).await?;
    let mut report = PushReport { received: orgs.len(), ..PushReport::default() };
    for org in orgs {
        let mut m = match existing.get(&org.id) {
            Some(old)
                if old.org_name.as_deref() == Some(org.name.as_str())
                    && (old.customer_id.is_some() || old.excluded) =>
            {
                report.unchanged += 1;
                continue;
            }
            Some(old) => {
                if old.org_name.as_deref() == Some(org.name.as_str()) {
                    report.unchanged += 1;
                } else {
                    report.updated += 1;
                }
                OrgMapping { org_name: Some(org.name.clone()), updated_at: now, ..old.clone() }
            }
            None => {
                report.new += 1;
                OrgMapping {
                    connection: connection.to_string(),
                    org_id: org.id.clone(),
                    org_name: Some(org.name.clone()),
                    customer_id: None,
                    customer_name: None,
                    contact_id: None,
                    contract_id: None,
                    contract_service_id: None,
                    excluded: false,
                    updated_at: now,
                }
            }
        };
        if m.customer_id.is_none()
            && !m.excluded
            && let Some(key) = mode.key(&org.name)
            && let Some(hits) = customers.get_mut(&key)
            && hits.len() == 1
        {
            let r = hits.remove(0);
            m.customer_id = Some(r.id.clone());
            m.customer_name = Some(r.name.clone());
            store
                .put_psa_record(&PsaRecord {
                    upstream: Some(org.id.clone()),
                    state: RecordState::Matched,
                    updated_at: now,
                    ..r
                })
                .await?;
            report.matched += 1;
        }
        store.put_mapping(&m).await?;
    }
    Ok(report)
}

/// Upserts users; a new (or still unmatched) one with exactly one unlinked PSA contact of the same
/// address gets that contact.
pub async fn push_users(
    store: &dyn Store,
    connection: &str,
    users: &[UpstreamUser],
    now: DateTime<Utc>,
) -> Result<PushReport, MappingError> {
    let existing: HashMap<String, UserMapping> =
        store.list_user_mappings(connection).await?.into_iter().map(|u| (u.email.clone(), u)).collect();
    let mut contacts =
        unlinked(store, connection, RecordKind::Contacts, |r| r.email.as_deref().map(UserMapping::key)).await?;
    let mut report = PushReport { received: users.len(), ..PushReport::default() };
    for user in users {
        let email = UserMapping::key(&user.email);
        let mut u = match existing.get(&email) {
            Some(old) => {
                let same = old.name == user.name && old.org_id == user.org_id;
                if same && (old.contact_id.is_some() || old.excluded) {
                    report.unchanged += 1;
                    continue;
                }
                if same {
                    report.unchanged += 1;
                } else {
                    report.updated += 1;
                }
                UserMapping { name: user.name.clone(), org_id: user.org_id.clone(), updated_at: now, ..old.clone() }
            }
            None => {
                report.new += 1;
                UserMapping {
                    connection: connection.to_string(),
                    email: email.clone(),
                    name: user.name.clone(),
                    org_id: user.org_id.clone(),
                    contact_id: None,
                    customer_id: None,
                    excluded: false,
                    updated_at: now,
                }
            }
        };
        if u.contact_id.is_none()
            && !u.excluded
            && let Some(hits) = contacts.get_mut(&email)
            && hits.len() == 1
        {
            let r = hits.remove(0);
            u.contact_id = Some(r.id.clone());
            u.customer_id = r.customer_id.clone();
            store
                .put_psa_record(&PsaRecord {
                    upstream: Some(email.clone()),
                    state: RecordState::Matched,
                    updated_at: now,
                    ..r
                })
                .await?;
            report.matched += 1;
        }
        store.put_user_mapping(&u).await?;
    }
    Ok(report)
}
