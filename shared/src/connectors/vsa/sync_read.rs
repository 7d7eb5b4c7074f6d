//! Kaseya VSA 9 entries for the continuous sync, page by page (`$top` / `$skip`, the VSA REST
//! envelope's `TotalRecords`):
//!
//! | kind | request | fields read | source |
//! |---|---|---|---|
//! | customers | `GET /api/v1.0/system/orgs` | `OrgId`, `OrgName` | `Kaseya-Automation-Team` `VSAModule/public/Get-VSAOrganization.ps1` @ `2817a758` |
//! | assets | `GET /api/v1.0/assetmgmt/agents` | `AgentId`, `ComputerName` (else `AgentName`), `OrgId` | `Kaseya-Automation-Team` `VSAModule/public/Get-VSAAgent.ps1` @ `200e165c`; fields from `zalexan1996/PsKaseya` `Types/KaseyaDefinitions.cs` (`KAgent`) @ `489a49a8` |
//!
//! Neither list filters by change time here: every run reads them in full. VSA has no contacts or
//! locations in these APIs (unsupported; the run skips the kinds).

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;

use super::VsaConnector;
use super::wire::{self, Payload};
use crate::connectors::{ConnectorError, PsaEntry, RecordPage, unsupported};
use crate::domain::{ConnectorKind, RecordKind};

pub const AGENTS_PATH: &str = "/api/v1.0/assetmgmt/agents";

/// An organization row (fields the sync reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OrgRow {
    org_id: serde_json::Value,
    #[serde(default)]
    org_name: Option<String>,
}

/// An agent row (`KAgent`, fields the sync reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentRow {
    agent_id: serde_json::Value,
    #[serde(default)]
    agent_name: Option<String>,
    #[serde(default)]
    computer_name: Option<String>,
    #[serde(default)]
    org_id: Option<serde_json::Value>,
}

fn clean(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

impl VsaConnector {
    /// Page `page` (1-based) of `kind` for the sync.
    pub(super) async fn sync_page(
        &self,
        kind: RecordKind,
        _since: Option<DateTime<Utc>>,
        page: u32,
    ) -> Result<RecordPage, ConnectorError> {
        let top = self.opts.page_size;
        let skip = u64::from(page.max(1) - 1) * u64::from(top);
        let q = vec![("$top".to_string(), top.to_string()), ("$skip".to_string(), skip.to_string())];
        let (entries, n, total) = match kind {
            RecordKind::Customers => {
                let p: Payload<Vec<OrgRow>> = self.call(Method::GET, wire::ORGS_PATH, &q, None, true).await?;
                let n = p.result.len();
                let entries = p
                    .result
                    .into_iter()
                    .filter_map(|o| {
                        let id = wire::id_text(&o.org_id)?;
                        Some(entry(&id, clean(o.org_name.as_deref()).unwrap_or_default(), Some(id.clone())))
                    })
                    .collect::<Vec<_>>();
                (entries, n, p.total_records)
            }
            RecordKind::Assets => {
                let p: Payload<Vec<AgentRow>> = self.call(Method::GET, AGENTS_PATH, &q, None, true).await?;
                let n = p.result.len();
                let entries = p
                    .result
                    .into_iter()
                    .filter_map(|a| {
                        let id = wire::id_text(&a.agent_id)?;
                        let name = clean(a.computer_name.as_deref()).or(clean(a.agent_name.as_deref()))?;
                        Some(entry(&id, name, a.org_id.as_ref().and_then(wire::id_text)))
                    })
                    .collect::<Vec<_>>();
                (entries, n, p.total_records)
            }
            RecordKind::Contacts | RecordKind::Locations => {
                return Err(unsupported(ConnectorKind::Vsa, &format!("reading {}", kind.as_str())));
            }
        };
        let read = skip + n as u64;
        let last = (n as u32) < top || total.is_some_and(|t| read >= t);
        Ok(RecordPage { entries, last, next: None })
    }
}

fn entry(id: &str, name: String, customer_id: Option<String>) -> PsaEntry {
    PsaEntry { id: id.to_string(), name, customer_id, location_id: None, email: None, changed_at: None }
}
