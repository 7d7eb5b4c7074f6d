//! The status-poll high-water mark of one connection: the target's own timestamp up to which every
//! change has been read, and how many incremental cycles ran since the last full sweep.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{MappingKind, MappingRecord};

/// Where a connection's incremental status reads stand. Written only after a cycle succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollMark {
    pub connection: String,
    /// Every change the target stamped at or before this time (its clock) has been read.
    pub high_water: DateTime<Utc>,
    /// Whether `high_water` came from the target's timestamps (`false`: the bridge's clock at the
    /// first full sweep, before the target returned any).
    #[serde(default)]
    pub from_target: bool,
    /// Incremental cycles since the last full sweep.
    #[serde(default)]
    pub cycles_since_sweep: u32,
    /// When the mark was written (bridge clock).
    pub updated_at: DateTime<Utc>,
}

/// The single record key of a connection's mark.
pub const POLL_MARK_KEY: &str = "status";

impl MappingRecord for PollMark {
    const KIND: MappingKind =
        MappingKind { what: "poll mark", table: "poll_marks", key_column: "mark", sort_prefix: "POLLMARK#" };
    fn connection(&self) -> &str {
        &self.connection
    }
    fn record_key(&self) -> &str {
        POLL_MARK_KEY
    }
}
