//! NinjaOne entries for the continuous sync, page by page (NinjaOne Public API 2.0 OpenAPI,
//! `imagenetmit/ninjapy` `.speakeasy/temp/registry_7b07b1.json` @ `eddd4ab0`):
//!
//! | kind | request | fields read |
//! |---|---|---|
//! | customers | `GET /v2/organizations?pageSize&after` (`getOrganizations`) | `id`, `name` |
//! | locations | `GET /v2/locations?pageSize&after` (all organizations' locations) | `id`, `name`, `organizationId` |
//! | assets | `GET /v2/devices?pageSize&after` | `id`, `systemName` (else `displayName`, `dnsName`), `organizationId`, `locationId`, `approvalStatus` |
//!
//! Paging is by cursor: `after` = the last id of the previous page (ids ascend). None of these
//! endpoints filters by change time, so every run reads them in full. Contacts: the document's
//! end users (`GET /v2/organization/{id}/end-users`) carry no `uid`, and a ticket's requester is a
//! `requesterUid`, so they are not read (unsupported; the run skips the kind).

use reqwest::Method;
use serde::Deserialize;

use super::NinjaOneConnector;
use crate::connectors::{ConnectorError, PsaEntry, RecordPage, unsupported};
use crate::domain::{ConnectorKind, RecordKind};

pub const LOCATIONS_PATH: &str = "/v2/locations";
pub const DEVICES_PATH: &str = "/v2/devices";

/// An organization row (`getOrganizations`, fields the sync reads).
#[derive(Debug, Clone, Deserialize)]
struct OrganizationRow {
    id: i64,
    #[serde(default)]
    name: Option<String>,
}

/// A location row (`GET /v2/locations`, fields the sync reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocationRow {
    id: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    organization_id: Option<i64>,
}

/// A device row (`GET /v2/devices`, fields the sync reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceRow {
    id: i64,
    #[serde(default)]
    organization_id: Option<i64>,
    #[serde(default)]
    location_id: Option<i64>,
    #[serde(default)]
    system_name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    dns_name: Option<String>,
    #[serde(default)]
    approval_status: Option<String>,
}

impl DeviceRow {
    /// The name an alert uses for the device: its system (host) name, else the display or DNS name.
    fn name(&self) -> String {
        [&self.system_name, &self.display_name, &self.dns_name]
            .into_iter()
            .flatten()
            .map(|s| s.trim())
            .find(|s| !s.is_empty())
            .unwrap_or_default()
            .to_string()
    }
}

fn text(s: Option<String>) -> String {
    s.unwrap_or_default().trim().to_string()
}

impl NinjaOneConnector {
    /// One page of `kind` after id `after` for the sync.
    pub(super) async fn sync_page(&self, kind: RecordKind, after: Option<&str>) -> Result<RecordPage, ConnectorError> {
        let path = match kind {
            RecordKind::Customers => super::wire::ORGANIZATIONS_PATH,
            RecordKind::Locations => LOCATIONS_PATH,
            RecordKind::Assets => DEVICES_PATH,
            RecordKind::Contacts => {
                return Err(unsupported(ConnectorKind::Ninjaone, "reading contacts (end users have no requester uid)"));
            }
        };
        let size = self.opts.page_size;
        let mut query = vec![("pageSize", size.to_string())];
        if let Some(a) = after {
            let a = a.trim().parse::<i64>().map_err(|_| {
                ConnectorError::Malformed(format!("sync cursor for NinjaOne {}: '{a}' is not an id", kind.as_str()))
            })?;
            query.push(("after", a.to_string()));
        }
        let (entries, ids): (Vec<PsaEntry>, Vec<i64>) = match kind {
            RecordKind::Customers => {
                let rows: Vec<OrganizationRow> = self.call(Method::GET, path, &query, None, true).await?;
                rows.into_iter()
                    .map(|o| {
                        let id = o.id.to_string();
                        (entry(&id, text(o.name), Some(id.clone()), None), o.id)
                    })
                    .unzip()
            }
            RecordKind::Locations => {
                let rows: Vec<LocationRow> = self.call(Method::GET, path, &query, None, true).await?;
                rows.into_iter()
                    .map(|l| {
                        let id = l.id.to_string();
                        let org = l.organization_id.map(|o| o.to_string());
                        (entry(&id, text(l.name), org, Some(id.clone())), l.id)
                    })
                    .unzip()
            }
            _ => {
                let rows: Vec<DeviceRow> = self.call(Method::GET, path, &query, None, true).await?;
                let ids: Vec<i64> = rows.iter().map(|d| d.id).collect();
                // Devices waiting for approval are not managed yet: not offered as assets.
                let entries = rows
                    .into_iter()
                    .filter(|d| d.approval_status.as_deref() != Some("PENDING"))
                    .map(|d| {
                        let (org, loc) =
                            (d.organization_id.map(|o| o.to_string()), d.location_id.map(|l| l.to_string()));
                        entry(&d.id.to_string(), d.name(), org, loc)
                    })
                    .collect();
                (entries, ids)
            }
        };
        let last = (ids.len() as u32) < size;
        let next = ids.iter().max().map(i64::to_string);
        Ok(RecordPage { entries, last: last || next.is_none(), next })
    }
}

fn entry(id: &str, name: String, customer_id: Option<String>, location_id: Option<String>) -> PsaEntry {
    PsaEntry { id: id.to_string(), name, customer_id, location_id, email: None, changed_at: None }
}
