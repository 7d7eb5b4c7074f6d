//! What the continuous sync's records add to a ticket: the location of the user's contact and the
//! asset an alert names (`asset` or `device` in its details).

use crate::domain::{PsaRecord, RecordKind, TaskPayload};
use crate::store::Store;

/// The location and asset a ticket links, from live (matched or created) sync records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketLinks {
    pub location_id: Option<String>,
    pub asset_id: Option<String>,
}

/// The device an alert names: `asset`, else `device` in its details (a string, or an object's
/// `name`).
pub fn named_device(payload: &TaskPayload) -> Option<String> {
    let TaskPayload::Alert(a) = payload else { return None };
    ["asset", "device"].iter().find_map(|k| {
        let v = a.details.get(*k)?;
        let name = v.as_str().or_else(|| v.get("name").and_then(|n| n.as_str()))?;
        Some(name.trim().to_string()).filter(|n| !n.is_empty())
    })
}

/// Looks the links up for a ticket of `customer_id` with contact `contact_id`. A record of
/// another customer is never used; a store error leaves the ticket without the link (logged).
pub async fn ticket_links(
    store: &dyn Store,
    connection: &str,
    customer_id: Option<&str>,
    contact_id: Option<&str>,
    payload: &TaskPayload,
) -> TicketLinks {
    let Some(customer) = customer_id else { return TicketLinks::default() };
    let mut links = TicketLinks::default();
    if let Some(contact) = contact_id {
        let key = PsaRecord::key(RecordKind::Contacts, contact, None, "");
        match store.get_psa_record(connection, &key).await {
            Ok(Some(r)) if r.state.is_live() && r.customer_id.as_deref() == Some(customer) => {
                links.location_id = r.location_id;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(connection, error = %e, "could not read the contact's location"),
        }
    }
    if let Some(device) = named_device(payload) {
        match store.get_psa_record(connection, &PsaRecord::asset_key(customer, &device)).await {
            Ok(Some(r)) if r.state.is_live() => {
                // The device's own location (NinjaOne devices have one) when the contact gave none.
                if links.location_id.is_none() {
                    links.location_id = r.location_id;
                }
                links.asset_id = Some(r.id);
            }
            Ok(_) => tracing::info!(connection, device = %device, "the alert's device is not a mapped asset"),
            Err(e) => tracing::warn!(connection, error = %e, "could not read the alert's asset"),
        }
    }
    links
}
