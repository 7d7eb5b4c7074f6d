//! The continuous PSA sync: one run per connection reads the PSA's customers, contacts, locations
//! and assets page by page (only what changed since the last finished run where the API can
//! filter), records each entry ([`PsaRecord`]), links new entries by the mapping rules and, per
//! kind, takes the rest over when that kind's auto-create toggle is on.
//!
//! A run is resumable: after every page the [`SyncCheckpoint`] cursor (kind, next page, counts so
//! far) is written, so a crash or a Lambda timeout continues where it stopped. Records are keyed
//! ([`PsaRecord::key`]) and written only when new or changed, so a page read twice creates nothing
//! twice.
//!
//! Rules for a new entry, in order:
//! - **excluded**: its customer's organization mapping is excluded;
//! - **matched**: customers: an upstream organization with no customer yet and the same name
//!   (the connection's match mode), or one already mapped to it; contacts: an upstream user with
//!   the same address (its mapping gets the contact when it had none);
//! - **created**: the kind is in `sync.auto_create` (a new contact also gets a user mapping, so
//!   tickets of that address use it);
//! - **pending**: otherwise, until an operator applies it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::MappingError;
use crate::config::{MappingSettings, SyncSettings};
use crate::connectors::{Connector, ConnectorError, PsaEntry, RecordPage};
use crate::domain::{
    OrgMapping, PsaRecord, RecordKind, RecordState, SyncCheckpoint, SyncCounts, SyncCursor, SyncRun, UserMapping,
};
use crate::store::Store;

/// Told after every page of a run (progress of long runs).
pub trait SyncProgress: Send + Sync {
    fn page(&self, connection: &str, kind: RecordKind, page: u32, counts: &SyncCounts);
}

/// Progress to the log.
pub struct LogProgress;

impl SyncProgress for LogProgress {
    fn page(&self, connection: &str, kind: RecordKind, page: u32, c: &SyncCounts) {
        tracing::info!(
            connection,
            kind = kind.as_str(),
            page,
            read = c.read,
            matched = c.matched,
            created = c.created,
            excluded = c.excluded,
            pending = c.pending,
            failed = c.failed,
            "sync page done"
        );
    }
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The run read everything (else the cursor waits for the next invocation).
    pub finished: bool,
    /// It continued an interrupted run.
    pub resumed: bool,
    /// Pages read by this invocation.
    pub pages: u64,
    /// Counts of the whole run so far, per kind.
    pub counts: Vec<(RecordKind, SyncCounts)>,
}

impl SyncOutcome {
    /// The counts of all kinds together.
    pub fn total(&self) -> SyncCounts {
        total(&self.counts)
    }
}

/// Sums per-kind counts.
pub fn total(counts: &[(RecordKind, SyncCounts)]) -> SyncCounts {
    let mut t = SyncCounts::default();
    for (_, c) in counts {
        t.add(c);
    }
    t
}

/// One connection's sync.
pub struct PsaSync<'a> {
    pub connection: &'a str,
    pub store: &'a dyn Store,
    pub connector: &'a dyn Connector,
    pub settings: &'a SyncSettings,
    pub mapping: &'a MappingSettings,
}

/// What the rules know about the upstream side, read once per invocation.
struct Upstream {
    orgs: Vec<OrgMapping>,
    users: HashMap<String, UserMapping>,
}

impl PsaSync<'_> {
    /// Runs (or resumes) the sync; stops after `settings.max_pages_per_run` pages when set.
    /// A failed page read leaves the cursor on that page and is returned as the error.
    pub async fn run(&self, now: DateTime<Utc>, progress: &dyn SyncProgress) -> Result<SyncOutcome, MappingError> {
        let conn = self.connection;
        let kinds: Vec<RecordKind> =
            if self.settings.kinds.is_empty() { RecordKind::ALL.to_vec() } else { self.settings.kinds.clone() };
        let mut cp = self.store.get_sync_checkpoint(conn).await?.unwrap_or_else(|| SyncCheckpoint::new(conn, now));
        let resumed = cp.cursor.is_some();
        let mut cursor = match cp.cursor.clone() {
            Some(c) => c,
            None => {
                let c =
                    SyncCursor { started_at: now, kind: kinds[0], page: 1, counts: Vec::new(), pages: 0, after: None };
                cp.cursor = Some(c.clone());
                cp.updated_at = now;
                self.store.put_sync_checkpoint(&cp).await?;
                c
            }
        };
        if resumed {
            tracing::info!(connection = conn, kind = cursor.kind.as_str(), page = cursor.page, "resuming sync run");
        }
        let mut upstream = Upstream {
            orgs: self.store.list_mappings(conn).await?,
            users: self.store.list_user_mappings(conn).await?.into_iter().map(|u| (u.email.clone(), u)).collect(),
        };
        let since = cp.since;
        let mut pages = 0u64;
        let mut unsupported: Vec<String> = Vec::new();
        let start = kinds.iter().position(|k| *k == cursor.kind).unwrap_or(0);
        for (i, kind) in kinds.iter().copied().enumerate().skip(start) {
            if i > start || cursor.kind != kind {
                cursor.kind = kind;
                cursor.page = 1;
                cursor.after = None;
            }
            let mut known: HashMap<String, PsaRecord> =
                self.store.list_psa_records(conn, kind).await?.into_iter().map(|r| (r.key.clone(), r)).collect();
            loop {
                if self.settings.max_pages_per_run > 0 && pages >= u64::from(self.settings.max_pages_per_run) {
                    return Ok(SyncOutcome { finished: false, resumed, pages, counts: cursor.counts });
                }
                let page =
                    match self.connector.read_records_after(kind, since, cursor.page, cursor.after.as_deref()).await {
                        // A kind the target's API does not have: nothing to read (said once per run).
                        Err(ConnectorError::Unsupported(why)) if cursor.page == 1 => {
                            tracing::info!(connection = conn, kind = kind.as_str(), "{why}; kind skipped");
                            unsupported.push(why);
                            RecordPage { entries: Vec::new(), last: true, next: None }
                        }
                        other => other?,
                    };
                let mut counts = counts_of(&cursor.counts, kind);
                for entry in &page.entries {
                    counts.read += 1;
                    match self.record(kind, entry, &mut known, &mut upstream, now).await {
                        Ok(Some(state)) => match state {
                            RecordState::Matched => counts.matched += 1,
                            RecordState::Created => counts.created += 1,
                            RecordState::Excluded => counts.excluded += 1,
                            RecordState::Pending => counts.pending += 1,
                        },
                        Ok(None) => {}
                        Err(e) => {
                            counts.failed += 1;
                            tracing::warn!(connection = conn, kind = kind.as_str(), id = %entry.id, error = %e, "sync entry failed");
                        }
                    }
                }
                set_counts(&mut cursor.counts, kind, counts);
                pages += 1;
                cursor.pages += 1;
                cursor.page += 1;
                cursor.after = page.next.clone();
                progress.page(conn, kind, cursor.page - 1, &counts);
                let done = page.last || page.entries.is_empty();
                if done && i + 1 == kinds.len() {
                    break;
                }
                if done {
                    cursor.kind = kinds[i + 1];
                    cursor.page = 1;
                    cursor.after = None;
                }
                cp.cursor = Some(cursor.clone());
                cp.updated_at = now;
                self.store.put_sync_checkpoint(&cp).await?;
                if done {
                    break;
                }
            }
        }
        // A target with none of the kinds cannot sync at all: an error, not an empty run.
        if unsupported.len() == kinds.len()
            && let Some(why) = unsupported.pop()
        {
            return Err(ConnectorError::Unsupported(why).into());
        }
        let run =
            SyncRun { started_at: cursor.started_at, finished_at: Utc::now(), counts: cursor.counts.clone(), resumed };
        cp.since = Some(cursor.started_at);
        cp.cursor = None;
        cp.last_run = Some(run);
        cp.updated_at = now;
        self.store.put_sync_checkpoint(&cp).await?;
        Ok(SyncOutcome { finished: true, resumed, pages, counts: cursor.counts })
    }

    /// Records one entry; the state when it is new (or newly excluded), `None` when known.
    async fn record(
        &self,
        kind: RecordKind,
        e: &PsaEntry,
        known: &mut HashMap<String, PsaRecord>,
        upstream: &mut Upstream,
        now: DateTime<Utc>,
    ) -> Result<Option<RecordState>, MappingError> {
        let key = PsaRecord::key(kind, &e.id, e.customer_id.as_deref(), &e.name);
        if let Some(old) = known.get(&key) {
            let same = old.id == e.id
                && old.name == e.name
                && old.customer_id == e.customer_id
                && old.location_id == e.location_id
                && old.email == e.email;
            if !same {
                let r = PsaRecord {
                    id: e.id.clone(),
                    name: e.name.clone(),
                    customer_id: e.customer_id.clone(),
                    location_id: e.location_id.clone(),
                    email: e.email.clone(),
                    changed_at: e.changed_at,
                    updated_at: now,
                    ..old.clone()
                };
                self.store.put_psa_record(&r).await?;
                known.insert(key, r);
            }
            return Ok(None);
        }
        let excluded_customer = e
            .customer_id
            .as_deref()
            .is_some_and(|c| upstream.orgs.iter().any(|m| m.excluded && m.customer_id.as_deref() == Some(c)));
        let (state, link) = if excluded_customer {
            (RecordState::Excluded, None)
        } else {
            match kind {
                RecordKind::Customers => self.match_customer(e, upstream, now).await?,
                RecordKind::Contacts => self.match_contact(e, upstream, now).await?,
                RecordKind::Locations | RecordKind::Assets => (self.unmatched(kind), None),
            }
        };
        let r = PsaRecord {
            connection: self.connection.to_string(),
            key: key.clone(),
            kind,
            id: e.id.clone(),
            name: e.name.clone(),
            customer_id: e.customer_id.clone(),
            location_id: e.location_id.clone(),
            email: e.email.clone(),
            upstream: link,
            state,
            changed_at: e.changed_at,
            updated_at: now,
        };
        self.store.put_psa_record(&r).await?;
        known.insert(key, r);
        Ok(Some(state))
    }

    fn unmatched(&self, kind: RecordKind) -> RecordState {
        if self.settings.auto_creates(kind) { RecordState::Created } else { RecordState::Pending }
    }

    async fn match_customer(
        &self,
        e: &PsaEntry,
        upstream: &mut Upstream,
        now: DateTime<Utc>,
    ) -> Result<(RecordState, Option<String>), MappingError> {
        if let Some(m) = upstream.orgs.iter().find(|m| m.customer_id.as_deref() == Some(e.id.as_str())) {
            return Ok((RecordState::Matched, Some(m.org_id.clone())));
        }
        let mode = self.mapping.match_mode;
        let Some(name) = mode.key(&e.name) else { return Ok((self.unmatched(RecordKind::Customers), None)) };
        let candidates: Vec<usize> = upstream
            .orgs
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.excluded && m.customer_id.is_none())
            .filter(|(_, m)| m.org_name.as_deref().and_then(|n| mode.key(n)).as_deref() == Some(name.as_str()))
            .map(|(i, _)| i)
            .collect();
        match candidates.as_slice() {
            [i] => {
                let m = &mut upstream.orgs[*i];
                m.customer_id = Some(e.id.clone());
                m.customer_name = Some(e.name.clone());
                m.updated_at = now;
                self.store.put_mapping(m).await?;
                Ok((RecordState::Matched, Some(m.org_id.clone())))
            }
            // Several organizations with one name: a collision, never guessed.
            [_, _, ..] => Ok((RecordState::Pending, None)),
            [] => Ok((self.unmatched(RecordKind::Customers), None)),
        }
    }

    async fn match_contact(
        &self,
        e: &PsaEntry,
        upstream: &mut Upstream,
        now: DateTime<Utc>,
    ) -> Result<(RecordState, Option<String>), MappingError> {
        let Some(email) = e.email.as_deref().map(UserMapping::key) else {
            return Ok((self.unmatched(RecordKind::Contacts), None));
        };
        if let Some(u) = upstream.users.get_mut(&email) {
            if u.excluded {
                return Ok((RecordState::Excluded, Some(email)));
            }
            return match u.contact_id.as_deref() {
                Some(c) if c == e.id => Ok((RecordState::Matched, Some(email))),
                // Mapped to another contact (by hand or an earlier match): left to the operator.
                Some(_) => Ok((RecordState::Pending, Some(email))),
                None => {
                    u.contact_id = Some(e.id.clone());
                    u.customer_id = e.customer_id.clone();
                    u.updated_at = now;
                    self.store.put_user_mapping(u).await?;
                    Ok((RecordState::Matched, Some(email)))
                }
            };
        }
        if !self.settings.auto_creates(RecordKind::Contacts) {
            return Ok((RecordState::Pending, None));
        }
        let u = UserMapping {
            connection: self.connection.to_string(),
            email: email.clone(),
            name: Some(e.name.clone()).filter(|n| !n.is_empty()),
            org_id: None,
            contact_id: Some(e.id.clone()),
            customer_id: e.customer_id.clone(),
            excluded: false,
            updated_at: now,
        };
        self.store.put_user_mapping(&u).await?;
        upstream.users.insert(email.clone(), u);
        Ok((RecordState::Created, Some(email)))
    }
}

fn counts_of(all: &[(RecordKind, SyncCounts)], kind: RecordKind) -> SyncCounts {
    all.iter().find(|(k, _)| *k == kind).map(|(_, c)| *c).unwrap_or_default()
}

fn set_counts(all: &mut Vec<(RecordKind, SyncCounts)>, kind: RecordKind, counts: SyncCounts) {
    match all.iter_mut().find(|(k, _)| *k == kind) {
        Some(slot) => slot.1 = counts,
        None => all.push((kind, counts)),
    }
}
