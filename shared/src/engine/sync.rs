//! The scheduled PSA sync: per connection with `sync.enabled`, under a lease, one
//! [`PsaSync`] run (or the rest of an interrupted one); counts to the log and to metrics.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

use super::Engine;
use crate::domain::{RecordKind, SyncCounts};
use crate::mapping::sync::{PsaSync, SyncProgress};

/// How long one connection's sync lease lasts (a Lambda invocation's maximum).
const SYNC_LEASE_MINUTES: i64 = 15;

/// What happened to one connection's sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SyncOutcomeKind {
    /// The run read everything.
    Finished { resumed: bool, pages: u64, counts: BTreeMap<RecordKind, SyncCounts> },
    /// The page budget ran out; the next invocation continues from the stored cursor.
    Partial { resumed: bool, pages: u64, counts: BTreeMap<RecordKind, SyncCounts> },
    /// Another runner holds the connection's sync lease.
    Busy,
    /// The run stopped (the cursor stays on the failed page).
    Failed { error: String },
}

/// Per-connection outcomes of one scheduled invocation.
pub type SyncReport = BTreeMap<String, SyncOutcomeKind>;

impl Engine {
    /// Syncs every connection with `sync.enabled`.
    pub async fn sync_mappings(&self, now: DateTime<Utc>, progress: &dyn SyncProgress) -> SyncReport {
        let mut report = SyncReport::new();
        for (name, cfg) in &self.config.connections {
            if cfg.sync.enabled {
                report.insert(name.clone(), self.sync_connection(name, now, progress).await);
            }
        }
        report
    }

    /// Syncs one connection (whether or not scheduled runs are enabled for it).
    pub async fn sync_connection(
        &self,
        name: &str,
        now: DateTime<Utc>,
        progress: &dyn SyncProgress,
    ) -> SyncOutcomeKind {
        let (Some(cfg), Some(connector)) = (self.config.connections.get(name), self.connector(name).cloned()) else {
            return SyncOutcomeKind::Failed { error: format!("no connection '{name}'") };
        };
        let owner = ulid::Ulid::new().to_string();
        let lease = match self
            .store
            .acquire_lease(&format!("sync#{name}"), &owner, now, Duration::minutes(SYNC_LEASE_MINUTES))
            .await
        {
            Ok(Some(l)) => l,
            Ok(None) => return SyncOutcomeKind::Busy,
            Err(e) => return SyncOutcomeKind::Failed { error: format!("lease: {e}") },
        };
        let sync = PsaSync {
            connection: name,
            store: self.store.as_ref(),
            connector: connector.as_ref(),
            settings: &cfg.sync,
            mapping: &cfg.mapping,
        };
        let result = sync.run(now, progress).await;
        if let Err(e) = self.store.release_lease(&lease).await {
            tracing::warn!(connection = name, error = %e, "sync lease release failed (it expires by itself)");
        }
        match result {
            Ok(out) => {
                let t = out.total();
                self.metrics.incr("SyncRead", t.read);
                self.metrics.incr("SyncMatched", t.matched);
                self.metrics.incr("SyncCreated", t.created);
                self.metrics.incr("SyncExcluded", t.excluded);
                self.metrics.incr("SyncPending", t.pending);
                self.metrics.incr("SyncFailed", t.failed);
                tracing::info!(
                    connection = name,
                    finished = out.finished,
                    resumed = out.resumed,
                    pages = out.pages,
                    read = t.read,
                    matched = t.matched,
                    created = t.created,
                    excluded = t.excluded,
                    pending = t.pending,
                    failed = t.failed,
                    "sync run"
                );
                let counts: BTreeMap<RecordKind, SyncCounts> = out.counts.into_iter().collect();
                if out.finished {
                    SyncOutcomeKind::Finished { resumed: out.resumed, pages: out.pages, counts }
                } else {
                    SyncOutcomeKind::Partial { resumed: out.resumed, pages: out.pages, counts }
                }
            }
            Err(e) => {
                self.metrics.incr("SyncFailures", 1);
                tracing::warn!(connection = name, error = %e, "sync run stopped; the next run resumes it");
                SyncOutcomeKind::Failed { error: e.to_string() }
            }
        }
    }
}
