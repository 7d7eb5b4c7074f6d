//! PSA entries read page by page by the continuous sync ([`super::Connector::read_records`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One customer, contact, location or asset as the PSA lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsaEntry {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub location_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// The PSA's change time, where its API returns one.
    #[serde(default)]
    pub changed_at: Option<DateTime<Utc>>,
}

/// One page of entries; `last` when no page follows.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RecordPage {
    pub entries: Vec<PsaEntry>,
    pub last: bool,
    /// Where the next page starts, for targets that page by cursor (passed back as `after` to
    /// [`super::Connector::read_records_after`]); `None` for numbered pages.
    #[serde(default)]
    pub next: Option<String>,
}
