//! `[connections.<name>.sync]`: the continuous PSA sync of one connection.

use serde::{Deserialize, Serialize};

use crate::domain::RecordKind;

/// What the scheduled sync reads and what it takes over without an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSettings {
    /// Whether scheduled runs (the `sync-mappings` function, the `serve` lane) sync this connection.
    pub enabled: bool,
    /// Kinds read from the PSA, in this order.
    pub kinds: Vec<RecordKind>,
    /// Kinds whose new entries are taken over (state `created`) when no rule matches them; the
    /// others wait as `pending` for `ticket-bridge mappings records apply`.
    pub auto_create: Vec<RecordKind>,
    /// Pages one invocation reads before it stops and leaves the cursor for the next (0 = all);
    /// keeps a Lambda run inside its timeout.
    pub max_pages_per_run: u32,
    /// Minutes between scheduled runs of the local `serve` lane.
    pub interval_minutes: u32,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            kinds: RecordKind::ALL.to_vec(),
            auto_create: Vec::new(),
            max_pages_per_run: 0,
            interval_minutes: 60,
        }
    }
}

impl SyncSettings {
    /// Whether new entries of `kind` are taken over automatically.
    pub fn auto_creates(&self, kind: RecordKind) -> bool {
        self.auto_create.contains(&kind)
    }
}
