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

/// Upstream user (by e-mail address) → target contact. Keys are lower-cased, trimmed addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMapping {
    pub connection: String,
    /// Normalized address (see [`UserMapping::key`]).
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The upstream organization the user belongs to, if known.
    #[serde(default)]
    pub org_id: Option<String>,
    /// The contact tickets for this user carry; `None` while unmatched or excluded.
    #[serde(default)]
    pub contact_id: Option<String>,
    /// The customer the contact belongs to (a contact is only used for tickets of that customer).
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Excluded users get the customer's default contact and are never created.
    #[serde(default)]
    pub excluded: bool,
    pub updated_at: DateTime<Utc>,
}

impl UserMapping {
    /// The store key of an e-mail address: trimmed and lower-cased.
    pub fn key(email: &str) -> String {
        email.trim().to_lowercase()
    }
}
