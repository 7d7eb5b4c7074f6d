//! Records read from the PSA by the continuous sync (customers, contacts, locations, assets), their
//! mapping state, and the per-connection sync checkpoint (cursor, last run's counts).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What kind of PSA entry a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Customers,
    Contacts,
    Locations,
    /// Assets / configurations (BMS hardware assets, NinjaOne devices, VSA agents).
    Assets,
}

impl RecordKind {
    /// Every kind, in the order a sync run reads them (a location or asset names its customer).
    pub const ALL: [RecordKind; 4] = [Self::Customers, Self::Contacts, Self::Locations, Self::Assets];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customers => "customers",
            Self::Contacts => "contacts",
            Self::Locations => "locations",
            Self::Assets => "assets",
        }
    }

    /// Parses `customers`, `contacts`, `locations`, `assets` (also the singular forms).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().trim_end_matches('s') {
            "customer" => Some(Self::Customers),
            "contact" => Some(Self::Contacts),
            "location" => Some(Self::Locations),
            "asset" => Some(Self::Assets),
            _ => None,
        }
    }
}

/// Where a record stands in the mapping (the same states as organizations and users).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// Linked to an upstream organization / user by the matching rules (or by hand).
    Matched,
    /// Never used for tickets, never matched or created.
    Excluded,
    /// Taken over automatically by a sync run (the kind's auto-create toggle is on).
    Created,
    /// Read from the PSA, waiting for the preview → apply of an operator.
    Pending,
}

impl RecordState {
    /// Whether tickets may use the record.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Matched | Self::Created)
    }
}

/// One PSA entry as the sync last read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsaRecord {
    pub connection: String,
    /// Store key within the connection: [`PsaRecord::key`].
    pub key: String,
    pub kind: RecordKind,
    /// The PSA's id of the entry.
    pub id: String,
    pub name: String,
    /// The customer (account / organization) the entry belongs to.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// The entry's location (contacts and assets, where the PSA says).
    #[serde(default)]
    pub location_id: Option<String>,
    /// E-mail address (contacts).
    #[serde(default)]
    pub email: Option<String>,
    /// The upstream side it is linked to: organization id (customers) or normalized e-mail (contacts).
    #[serde(default)]
    pub upstream: Option<String>,
    pub state: RecordState,
    /// The PSA's own change time, where its API has one.
    #[serde(default)]
    pub changed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl PsaRecord {
    /// The store key of an entry: `<kind>#<id>`, except assets, which alerts name by device name
    /// within a customer: `assets#<customer id>#<normalized name>`.
    pub fn key(kind: RecordKind, id: &str, customer_id: Option<&str>, name: &str) -> String {
        match kind {
            RecordKind::Assets => Self::asset_key(customer_id.unwrap_or(""), name),
            _ => format!("{}#{id}", kind.as_str()),
        }
    }

    /// The key of the asset named `device` in customer `customer_id`.
    pub fn asset_key(customer_id: &str, device: &str) -> String {
        format!("assets#{customer_id}#{}", device_key(device))
    }
}

/// A device name as compared: trimmed, lower-cased, inner whitespace collapsed.
pub fn device_key(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// How many entries a sync run (or one page of it) read and what it did with them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCounts {
    pub read: u64,
    /// New entries linked by the matching rules.
    pub matched: u64,
    /// New entries taken over by auto-create.
    pub created: u64,
    /// Entries left alone because they are excluded.
    pub excluded: u64,
    /// New entries waiting for an operator (auto-create off, no match).
    pub pending: u64,
    /// Entries that could not be processed.
    pub failed: u64,
}

impl SyncCounts {
    pub fn add(&mut self, o: &SyncCounts) {
        self.read += o.read;
        self.matched += o.matched;
        self.created += o.created;
        self.excluded += o.excluded;
        self.pending += o.pending;
        self.failed += o.failed;
    }
}

/// Where an unfinished run stands: the kind being read and the next page to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCursor {
    pub started_at: DateTime<Utc>,
    pub kind: RecordKind,
    /// 1-based page number of the next page of `kind`.
    pub page: u32,
    /// Counts so far, per kind.
    pub counts: Vec<(RecordKind, SyncCounts)>,
    /// Pages read so far (progress).
    pub pages: u64,
    /// The target's own cursor for the next page of `kind` where it pages by cursor rather than
    /// by number (NinjaOne `after` = the last id read); `None` on a kind's first page.
    #[serde(default)]
    pub after: Option<String>,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub counts: Vec<(RecordKind, SyncCounts)>,
    /// Whether it resumed an interrupted run.
    pub resumed: bool,
}

/// The sync state of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCheckpoint {
    pub connection: String,
    /// Always `"sync"` (the store key).
    pub name: String,
    /// Start of the last finished run: the next run reads what changed since.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// The run in progress (or interrupted by a crash / timeout).
    #[serde(default)]
    pub cursor: Option<SyncCursor>,
    #[serde(default)]
    pub last_run: Option<SyncRun>,
    pub updated_at: DateTime<Utc>,
}

impl SyncCheckpoint {
    pub const NAME: &'static str = "sync";

    pub fn new(connection: &str, now: DateTime<Utc>) -> Self {
        Self {
            connection: connection.into(),
            name: Self::NAME.into(),
            since: None,
            cursor: None,
            last_run: None,
            updated_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_singular_and_plural() {
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::parse(k.as_str()), Some(k));
            assert_eq!(RecordKind::parse(k.as_str().trim_end_matches('s')), Some(k));
        }
        assert_eq!(RecordKind::parse("devices"), None);
    }

    #[test]
    fn asset_keys_ignore_case_and_spacing() {
        assert_eq!(PsaRecord::asset_key("7", "  Laptop   42 "), PsaRecord::asset_key("7", "LAPTOP 42"));
        assert_ne!(PsaRecord::asset_key("7", "Laptop 42"), PsaRecord::asset_key("8", "Laptop 42"));
        assert_eq!(PsaRecord::key(RecordKind::Contacts, "12", Some("7"), "Ada"), "contacts#12");
    }
}
