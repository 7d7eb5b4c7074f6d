//! What the VSA simulator adds for the continuous sync: agents (`GET /api/v1.0/assetmgmt/agents`,
//! `$top` / `$skip` paging with `TotalRecords`, like `GET /api/v1.0/system/orgs`). Path from
//! `Kaseya-Automation-Team` `VSAModule/public/Get-VSAAgent.ps1` @ `200e165c`; row fields from
//! `zalexan1996/PsKaseya` `Types/KaseyaDefinitions.cs` class `KAgent` @ `489a49a8`. **Assumed**: rows
//! in a stable order (agent id) across pages.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::{St, Vsa, authorize, ok, paging};

/// A VSA agent (managed machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimAgent {
    pub id: u64,
    pub org_id: String,
    pub computer_name: String,
}

fn lock(st: &St) -> std::sync::MutexGuard<'_, Vec<SimAgent>> {
    st.agents.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Vsa {
    /// Adds an agent of an organization; returns its id (VSA agent ids are large numbers).
    pub fn add_agent(&self, org_id: &str, computer_name: &str) -> u64 {
        let mut agents = lock(&self.st);
        let id = 481_516_234_200 + agents.len() as u64;
        agents.push(SimAgent { id, org_id: org_id.into(), computer_name: computer_name.into() });
        id
    }
}

/// `GET /api/v1.0/assetmgmt/agents`.
pub(super) async fn agents(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let (top, skip) = match paging(&st, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all = lock(&st).clone();
    let rows: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(top)
        .map(|a| {
            json!({"AgentId": a.id, "AgentName": format!("{}.{}", a.computer_name.to_ascii_lowercase(), "root.kserver"),
                "ComputerName": a.computer_name, "OrgId": a.org_id, "MachineGroup": "root", "Online": 1})
        })
        .collect();
    ok(Value::Array(rows), Some(all.len()))
}
