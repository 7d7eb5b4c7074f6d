//! What the NinjaOne simulator adds for the continuous sync: locations and devices
//! (`GET /v2/locations`, `GET /v2/devices`, cursor-paged with `pageSize` / `after` like
//! `GET /v2/organizations`), and the `locationId` / `nodeId` of new tickets. Shapes from the
//! NinjaOne Public API 2.0 OpenAPI (`imagenetmit/ninjapy` `.speakeasy/temp/registry_7b07b1.json`
//! @ `eddd4ab0`). **Assumed** (the document does not say): rows come in ascending id order (what
//! `after` = "last identifier from previous page" implies), and a ticket naming a location or
//! device that is not its organization's is refused.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{NinjaOne, St, api_error, authorize};

/// A location of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimLocation {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

/// A managed device (node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDevice {
    pub id: i64,
    pub organization_id: i64,
    pub location_id: i64,
    pub system_name: String,
    /// `approvalStatus` `APPROVED` (else `PENDING`).
    pub approved: bool,
}

/// Locations and devices.
#[derive(Debug)]
pub(super) struct Rmm {
    locations: Vec<SimLocation>,
    devices: Vec<SimDevice>,
    next_location: i64,
    next_device: i64,
}

impl Default for Rmm {
    fn default() -> Self {
        Self { locations: Vec::new(), devices: Vec::new(), next_location: 301, next_device: 5001 }
    }
}

impl Rmm {
    /// Why a new ticket's `locationId` / `nodeId` is refused for organization `client`, if it is.
    pub(super) fn ticket_refs_error(&self, client: i64, location: Option<i64>, node: Option<i64>) -> Option<String> {
        if let Some(l) = location
            && !self.locations.iter().any(|x| x.id == l && x.organization_id == client)
        {
            return Some(format!("location {l} does not exist in organization {client}"));
        }
        if let Some(n) = node
            && !self.devices.iter().any(|d| d.id == n && d.organization_id == client)
        {
            return Some(format!("device {n} does not exist in organization {client}"));
        }
        None
    }
}

fn lock(st: &St) -> std::sync::MutexGuard<'_, Rmm> {
    st.rmm.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl NinjaOne {
    /// Adds (or renames) an organization.
    pub fn add_organization(&self, id: i64, name: &str) {
        self.st.sim.add_customer(&id.to_string(), name);
    }

    /// Adds a location to an organization; returns its id.
    pub fn add_location(&self, organization: i64, name: &str) -> i64 {
        let mut rmm = lock(&self.st);
        let id = rmm.next_location;
        rmm.next_location += 1;
        rmm.locations.push(SimLocation { id, organization_id: organization, name: name.into() });
        id
    }

    /// Adds an approved device at a location; returns its id.
    pub fn add_device(&self, organization: i64, location: i64, system_name: &str) -> i64 {
        self.add_device_with(organization, location, system_name, true)
    }

    /// Adds a device, approved or waiting for approval; returns its id.
    pub fn add_device_with(&self, organization: i64, location: i64, system_name: &str, approved: bool) -> i64 {
        let mut rmm = lock(&self.st);
        let id = rmm.next_device;
        rmm.next_device += 1;
        rmm.devices.push(SimDevice {
            id,
            organization_id: organization,
            location_id: location,
            system_name: system_name.into(),
            approved,
        });
        id
    }

    /// All devices.
    pub fn devices(&self) -> Vec<SimDevice> {
        lock(&self.st).devices.clone()
    }
}

/// `pageSize` (default 100, at most the configured maximum) and `after` (exclusive id).
fn paging(st: &St, q: &HashMap<String, String>) -> Result<(usize, i64), Response> {
    let size = match q.get("pageSize") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "pageSize is invalid"))?,
    };
    let after = match q.get("after") {
        None => i64::MIN,
        Some(v) => {
            v.parse::<i64>().map_err(|_| api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "after is invalid"))?
        }
    };
    Ok((size.clamp(1, st.config.max_page_size), after))
}

fn page(mut rows: Vec<(i64, Value)>, size: usize, after: i64) -> Response {
    rows.retain(|(id, _)| *id > after);
    rows.sort_by_key(|(id, _)| *id);
    Json(Value::Array(rows.into_iter().take(size).map(|(_, v)| v).collect())).into_response()
}

/// `GET /v2/locations`: every organization's locations.
pub(super) async fn locations(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let (size, after) = match paging(&st, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let rows = lock(&st)
        .locations
        .iter()
        .map(|l| (l.id, json!({"id": l.id, "name": l.name, "organizationId": l.organization_id})))
        .collect();
    page(rows, size, after)
}

/// `GET /v2/devices`: basic node information. The device filter `df` is not simulated (refused).
pub(super) async fn devices(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    if q.contains_key("df") {
        return api_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "device filter (df) is not simulated");
    }
    let (size, after) = match paging(&st, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let rows = lock(&st)
        .devices
        .iter()
        .map(|d| {
            let row = json!({"id": d.id, "organizationId": d.organization_id, "locationId": d.location_id,
                "nodeClass": "WINDOWS_WORKSTATION", "approvalStatus": if d.approved { "APPROVED" } else { "PENDING" },
                "offline": false, "systemName": d.system_name, "displayName": d.system_name,
                "dnsName": format!("{}.corp.example", d.system_name.to_ascii_lowercase())});
            (d.id, row)
        })
        .collect();
    page(rows, size, after)
}
