//! What the BMS simulator adds for the continuous sync: account change times
//! (`GET /v2/crm/accounts/summary` with `Filter.ModifiedOnFrom`, paged, `TotalRecords`), extra
//! account locations, contacts' locations, and hardware assets
//! (`GET /v2/servicedesk/hardwareasset/searchselect`, paged). Shapes from the BMS API 2.0 OpenAPI
//! (`AccountSummaryOutputDto`, `AccountLocationLookupOutputDto`, `ContactsSearchSelectOutputDto`,
//! `HardwareAssetsListSearchSelectOutputDto`). **Assumed**: adding a location to an account bumps
//! the account's `ModifiedOn` (the document does not say).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Bms, St, account_exists, authorize, fail, fmt_time, lock, ok, ok_paged, parse_time};
use crate::util;

/// An extra location of an account (every account also has its main location `id × 10 + 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimLocation {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
}

/// A hardware asset (configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimAsset {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub contact_id: Option<i64>,
    pub serial: String,
}

/// CRM data beyond the shared core's customers and contacts.
#[derive(Debug)]
pub(super) struct Crm {
    started: DateTime<Utc>,
    modified: HashMap<i64, DateTime<Utc>>,
    locations: Vec<SimLocation>,
    pub(super) contact_locations: HashMap<i64, i64>,
    assets: Vec<SimAsset>,
    next_location: i64,
    next_asset: i64,
}

impl Default for Crm {
    fn default() -> Self {
        Self {
            started: Utc::now(),
            modified: HashMap::new(),
            locations: Vec::new(),
            contact_locations: HashMap::new(),
            assets: Vec::new(),
            next_location: 900_001,
            next_asset: 50_001,
        }
    }
}

impl Crm {
    fn modified_on(&self, account: i64) -> DateTime<Utc> {
        self.modified.get(&account).copied().unwrap_or(self.started)
    }

    pub(super) fn touch(&mut self, account: i64) {
        self.modified.insert(account, Utc::now());
    }

    /// Whether `location` is one of `account`'s locations.
    pub(super) fn location_of(&self, account: i64, location: i64) -> bool {
        location == account * 10 + 1 || self.locations.iter().any(|l| l.id == location && l.account_id == account)
    }

    /// A contact's location (its account's main location unless set).
    pub(super) fn contact_location(&self, contact: i64, account: Option<i64>) -> Option<i64> {
        self.contact_locations.get(&contact).copied().or(account.map(|a| a * 10 + 1))
    }

    pub(super) fn location_name(&self, location: i64) -> String {
        self.locations.iter().find(|l| l.id == location).map(|l| l.name.clone()).unwrap_or_else(|| "Main Office".into())
    }

    /// Every location of an account, main first.
    pub(super) fn locations_json(&self, account: i64) -> Value {
        let mut rows =
            vec![json!({"Id": account * 10 + 1, "Name": "Main Office", "AccountId": account, "IsMain": true})];
        rows.extend(
            self.locations
                .iter()
                .filter(|l| l.account_id == account)
                .map(|l| json!({"Id": l.id, "Name": l.name, "AccountId": account, "IsMain": false})),
        );
        Value::Array(rows)
    }

    pub(super) fn asset_of(&self, account: i64, asset: i64) -> bool {
        self.assets.iter().any(|a| a.id == asset && a.account_id == account)
    }
}

impl Bms {
    /// Adds (or renames) an account and marks it modified now.
    pub fn add_account(&self, id: i64, name: &str) {
        self.st.sim.add_customer(&id.to_string(), name);
        lock(&self.st.crm).touch(id);
    }

    /// Adds a location to an account (bumps the account's `ModifiedOn`); returns its id.
    pub fn add_location(&self, account: i64, name: &str) -> i64 {
        let mut crm = lock(&self.st.crm);
        let id = crm.next_location;
        crm.next_location += 1;
        crm.locations.push(SimLocation { id, account_id: account, name: name.into() });
        crm.touch(account);
        id
    }

    /// Puts a contact at one of its account's locations.
    pub fn set_contact_location(&self, contact: i64, location: i64) {
        lock(&self.st.crm).contact_locations.insert(contact, location);
    }

    /// Adds a hardware asset; returns its id.
    pub fn add_asset(&self, account: i64, name: &str, contact: Option<i64>) -> i64 {
        let mut crm = lock(&self.st.crm);
        let id = crm.next_asset;
        crm.next_asset += 1;
        crm.assets.push(SimAsset {
            id,
            account_id: account,
            name: name.into(),
            contact_id: contact,
            serial: format!("SN{id}"),
        });
        id
    }

    /// All hardware assets.
    pub fn assets(&self) -> Vec<SimAsset> {
        lock(&self.st.crm).assets.clone()
    }
}

fn paging(st: &St, q: &HashMap<String, String>) -> Result<(usize, usize), Response> {
    let num = |k: &str, d: usize| match q.get(k) {
        None => Ok(d),
        Some(v) => v.parse::<usize>().map_err(|_| fail(StatusCode::BAD_REQUEST, 400, format!("{k} is invalid"))),
    };
    Ok((num("PageNumber", 1)?.max(1), num("PageSize", 50)?.clamp(1, st.config.max_page_size)))
}

/// `GET /v2/crm/accounts/summary`: by id, `Filter.ModifiedOnFrom` inclusive.
pub(super) async fn accounts_summary(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let (page, size) = match paging(&st, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let from = match q.get("Filter.ModifiedOnFrom") {
        None => None,
        Some(v) => match parse_time(v) {
            Some(t) => Some(t),
            None => return fail(StatusCode::BAD_REQUEST, 400, "Filter.ModifiedOnFrom is invalid"),
        },
    };
    let crm = lock(&st.crm);
    let mut accounts: Vec<(i64, String)> =
        st.sim.customers().into_iter().filter_map(|c| c.id.parse::<i64>().ok().map(|id| (id, c.name))).collect();
    accounts.sort_by_key(|(id, _)| *id);
    let all: Vec<Value> = accounts
        .into_iter()
        .filter(|(id, _)| from.is_none_or(|f| crm.modified_on(*id) >= f))
        .map(|(id, name)| {
            json!({"Id": id, "AccountName": name, "CreatedOn": fmt_time(crm.started.min(crm.modified_on(id))),
                   "ModifiedOn": fmt_time(crm.modified_on(id)), "IsActive": true})
        })
        .collect();
    let (rows, _) = util::page(&all, page, size);
    ok_paged(Value::Array(rows), all.len())
}

/// `GET /v2/servicedesk/hardwareasset/searchselect`: by id, `Filter.AccountId`, `Filter.AssetName`
/// (contains).
pub(super) async fn hardware_assets(
    State(st): State<Arc<St>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorize(&st, &headers) {
        return r;
    }
    let (page, size) = match paging(&st, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let account = q.get("Filter.AccountId").and_then(|a| a.parse::<i64>().ok());
    let name = q.get("Filter.AssetName").filter(|n| !n.is_empty());
    let names: HashMap<String, String> = st.sim.customers().into_iter().map(|c| (c.id, c.name)).collect();
    let crm = lock(&st.crm);
    let all: Vec<Value> = crm
        .assets
        .iter()
        .filter(|a| account.is_none_or(|x| x == a.account_id) && account_exists(&st, a.account_id))
        .filter(|a| name.is_none_or(|n| crate::psa::contains_ci(&a.name, n)))
        .map(|a| {
            let mut row = json!({"Id": a.id, "AssetName": a.name, "AccountId": a.account_id,
                "AccountName": names.get(&a.account_id.to_string()), "CategoryId": 1, "CategoryName": "Workstation",
                "LocationName": "Main Office", "SerialNumber": a.serial, "IsActive": true});
            if let (Some(c), Some(o)) = (a.contact_id, row.as_object_mut()) {
                o.insert("ContactId".into(), c.into());
            }
            row
        })
        .collect();
    let (rows, _) = util::page(&all, page, size);
    ok(Value::Array(rows))
}
