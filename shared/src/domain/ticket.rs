//! Tickets in the target ITSM, ticket groups, and what connectors send and receive.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TaskId;

/// A ticket in the target system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRef {
    /// The target's internal id (used for API calls).
    pub id: String,
    /// The human-facing ticket number, where the target has one.
    #[serde(default)]
    pub number: Option<String>,
    /// Link for technicians and upstream users.
    #[serde(default)]
    pub url: Option<String>,
    /// Last status name seen in the target.
    #[serde(default)]
    pub remote_status: Option<String>,
}

impl TicketRef {
    /// Number if there is one, else id.
    pub fn display(&self) -> &str {
        self.number.as_deref().unwrap_or(&self.id)
    }
}

/// The open ticket that later alerts of a group are added to as notes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketGroup {
    pub connection: String,
    pub key: String,
    pub ticket: TicketRef,
    /// The task whose ticket this is.
    pub owner: TaskId,
    pub created_at: DateTime<Utc>,
}

/// A time-limited lock held by one worker (e.g. token refresh per connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub name: String,
    pub owner: String,
    pub expires_at: DateTime<Utc>,
}

/// Upstream organization → target customer/account, with its default contact and contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMapping {
    pub connection: String,
    pub org_id: String,
    #[serde(default)]
    pub org_name: Option<String>,
    /// `None` marks an excluded organization (tickets go to the catch-all).
    pub customer_id: Option<String>,
    #[serde(default)]
    pub customer_name: Option<String>,
    #[serde(default)]
    pub contact_id: Option<String>,
    #[serde(default)]
    pub contract_id: Option<String>,
    #[serde(default)]
    pub contract_service_id: Option<String>,
    #[serde(default)]
    pub excluded: bool,
    pub updated_at: DateTime<Utc>,
}

/// A cached e-mail → contact lookup result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactEntry {
    pub connection: String,
    pub email: String,
    /// `None` caches a miss ("no such contact").
    pub contact_id: Option<String>,
    pub expires_at: DateTime<Utc>,
}
