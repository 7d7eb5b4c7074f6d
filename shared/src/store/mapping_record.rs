//! The kinds of mapping record the stores keep (organizations, users), described once so each store
//! has one table-parameterised implementation for all of them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::{OrgMapping, PsaRecord, SyncCheckpoint, UserMapping};

/// Where one kind of mapping is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingKind {
    /// What the records are called in errors ("mapping", "user mapping").
    pub what: &'static str,
    /// SQLite table (`connection`, `<key_column>`, `body`).
    pub table: &'static str,
    /// SQLite column of the record's key.
    pub key_column: &'static str,
    /// DynamoDB sort-key prefix under `MAP#<connection>`.
    pub sort_prefix: &'static str,
}

/// A mapping record: one per connection and key (organization id, normalized e-mail).
pub trait MappingRecord: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: MappingKind;
    fn connection(&self) -> &str;
    /// The record's key within its connection.
    fn record_key(&self) -> &str;
}

impl MappingRecord for OrgMapping {
    const KIND: MappingKind =
        MappingKind { what: "mapping", table: "mappings", key_column: "org_id", sort_prefix: "ORG#" };
    fn connection(&self) -> &str {
        &self.connection
    }
    fn record_key(&self) -> &str {
        &self.org_id
    }
}

impl MappingRecord for UserMapping {
    const KIND: MappingKind =
        MappingKind { what: "user mapping", table: "user_mappings", key_column: "email", sort_prefix: "USER#" };
    fn connection(&self) -> &str {
        &self.connection
    }
    fn record_key(&self) -> &str {
        &self.email
    }
}

impl MappingRecord for PsaRecord {
    const KIND: MappingKind =
        MappingKind { what: "PSA record", table: "psa_records", key_column: "record_key", sort_prefix: "REC#" };
    fn connection(&self) -> &str {
        &self.connection
    }
    fn record_key(&self) -> &str {
        &self.key
    }
}

impl MappingRecord for SyncCheckpoint {
    const KIND: MappingKind =
        MappingKind { what: "sync checkpoint", table: "sync_state", key_column: "name", sort_prefix: "SYNC#" };
    fn connection(&self) -> &str {
        &self.connection
    }
    fn record_key(&self) -> &str {
        &self.name
    }
}
