//! BMS entries for the continuous sync, page by page (BMS API 2.0 OpenAPI, `api-evangelist/kaseya`
//! `openapi/kaseya-bms-openapi-original.json` @ `c6f98c23`):
//!
//! | kind | request | change filter |
//! |---|---|---|
//! | customers | `GET /v2/crm/accounts/summary?Filter.ModifiedOnFrom&PageSize&PageNumber` (`AccountSummaryOutputDto`) | `ModifiedOn` |
//! | contacts | `GET /v2/crm/contacts/search?PageSize&PageNumber` (`ContactsSearchSelectOutputDto`, has `LocationId`) | none: all |
//! | locations | the changed accounts' `GET /v2/crm/accounts/{accountId}/locations/lookup` | the account's `ModifiedOn` |
//! | assets | `GET /v2/servicedesk/hardwareasset/searchselect?PageSize&PageNumber` (`HardwareAssetsListSearchSelectOutputDto`) | none: all |

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;

use super::BmsConnector;
use super::wire;
use crate::connectors::psa_util::{format_datetime, parse_datetime};
use crate::connectors::{ConnectorError, PsaEntry, RecordPage};
use crate::domain::RecordKind;

pub const ACCOUNTS_SUMMARY_PATH: &str = "/v2/crm/accounts/summary";
pub const HARDWARE_ASSETS_PATH: &str = "/v2/servicedesk/hardwareasset/searchselect";

/// `AccountSummaryOutputDto` (fields the sync reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AccountRow {
    id: i64,
    #[serde(default)]
    account_name: Option<String>,
    #[serde(default)]
    modified_on: Option<String>,
    #[serde(default)]
    created_on: Option<String>,
    #[serde(default)]
    is_active: Option<bool>,
}

/// `ContactsSearchSelectOutputDto` (fields the sync reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContactRow {
    id: i64,
    #[serde(default)]
    account_id: Option<i64>,
    #[serde(default)]
    location_id: Option<i64>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    email_address: Option<String>,
    #[serde(default)]
    is_active: Option<bool>,
}

/// `HardwareAssetsListSearchSelectOutputDto` (fields the sync reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssetRow {
    id: i64,
    #[serde(default)]
    asset_name: Option<String>,
    #[serde(default)]
    account_id: Option<i64>,
    #[serde(default)]
    is_active: Option<bool>,
}

fn join_name(parts: &[Option<&str>]) -> String {
    parts.iter().flatten().map(|s| s.trim()).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
}

impl BmsConnector {
    /// One page of `kind` for the sync.
    pub(super) async fn sync_page(
        &self,
        kind: RecordKind,
        since: Option<DateTime<Utc>>,
        page: u32,
    ) -> Result<RecordPage, ConnectorError> {
        let size = self.opts.page_size;
        let paging = [("PageNumber", page.to_string()), ("PageSize", size.to_string())];
        match kind {
            RecordKind::Customers => {
                let rows = self.changed_accounts(since, page).await?;
                let last = (rows.len() as u32) < size;
                let entries = rows
                    .into_iter()
                    .filter(|a| a.is_active != Some(false))
                    .map(|a| PsaEntry {
                        id: a.id.to_string(),
                        name: a.account_name.unwrap_or_default().trim().to_string(),
                        customer_id: Some(a.id.to_string()),
                        location_id: None,
                        email: None,
                        changed_at: a.modified_on.or(a.created_on).as_deref().and_then(parse_datetime),
                    })
                    .collect();
                Ok(RecordPage { entries, last, next: None })
            }
            RecordKind::Contacts => {
                let rows: Vec<ContactRow> =
                    self.call(Method::GET, wire::CONTACTS_SEARCH_PATH, &paging, None, true).await?.result;
                let last = (rows.len() as u32) < size;
                let entries = rows
                    .into_iter()
                    .filter(|c| c.is_active != Some(false))
                    .map(|c| PsaEntry {
                        id: c.id.to_string(),
                        name: join_name(&[c.first_name.as_deref(), c.last_name.as_deref()]),
                        customer_id: c.account_id.map(|a| a.to_string()),
                        location_id: c.location_id.filter(|l| *l > 0).map(|l| l.to_string()),
                        email: c.email_address.map(|e| e.trim().to_string()).filter(|e| !e.is_empty()),
                        changed_at: None,
                    })
                    .collect();
                Ok(RecordPage { entries, last, next: None })
            }
            RecordKind::Locations => {
                let accounts = self.changed_accounts(since, page).await?;
                let last = (accounts.len() as u32) < size;
                let mut entries = Vec::new();
                for a in accounts.iter().filter(|a| a.is_active != Some(false)) {
                    let rows: Vec<wire::Location> =
                        self.call(Method::GET, &wire::locations_path(a.id), &[], None, true).await?.result;
                    entries.extend(rows.into_iter().map(|l| PsaEntry {
                        id: l.id.to_string(),
                        name: l.name.unwrap_or_default().trim().to_string(),
                        customer_id: Some(a.id.to_string()),
                        location_id: Some(l.id.to_string()),
                        email: None,
                        changed_at: None,
                    }));
                }
                Ok(RecordPage { entries, last, next: None })
            }
            RecordKind::Assets => {
                let rows: Vec<AssetRow> =
                    self.call(Method::GET, HARDWARE_ASSETS_PATH, &paging, None, true).await?.result;
                let last = (rows.len() as u32) < size;
                let entries = rows
                    .into_iter()
                    .filter(|a| a.is_active != Some(false))
                    .map(|a| PsaEntry {
                        id: a.id.to_string(),
                        name: a.asset_name.unwrap_or_default().trim().to_string(),
                        customer_id: a.account_id.map(|x| x.to_string()),
                        location_id: None,
                        email: None,
                        changed_at: None,
                    })
                    .collect();
                Ok(RecordPage { entries, last, next: None })
            }
        }
    }

    /// Page `page` of the accounts modified since `since` (all accounts without it), by id.
    async fn changed_accounts(
        &self,
        since: Option<DateTime<Utc>>,
        page: u32,
    ) -> Result<Vec<AccountRow>, ConnectorError> {
        let mut query = vec![
            ("PageNumber", page.to_string()),
            ("PageSize", self.opts.page_size.to_string()),
            ("Sort", "Id".to_string()),
        ];
        if let Some(t) = since {
            query.push(("Filter.ModifiedOnFrom", format_datetime(t)));
        }
        Ok(self.call(Method::GET, ACCOUNTS_SUMMARY_PATH, &query, None, true).await?.result)
    }
}
