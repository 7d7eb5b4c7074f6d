//! Operators' view of the outbox: list entries by state, replay one (`/v1/deliveries`).

use chrono::{DateTime, Utc};

use super::{ApiError, Engine};
use crate::domain::{Delivery, DeliveryState};
use crate::store::{Page, StoreError};

impl Engine {
    pub async fn list_deliveries(
        &self,
        state: DeliveryState,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Delivery>, ApiError> {
        Ok(self.store.list_deliveries(state, limit.clamp(1, 500), cursor).await?)
    }

    /// Sends a delivered or dead entry again (same id, fresh attempts); 409 while it is pending.
    pub async fn replay_delivery(&self, id: &str, now: DateTime<Utc>) -> Result<Delivery, ApiError> {
        let unknown = || ApiError::not_found(format!("no delivery '{}'", id.chars().take(40).collect::<String>()));
        let id = Delivery::parse_id(id).ok_or_else(unknown)?;
        for _ in 0..5 {
            let mut d = self.store.get_delivery(&id).await?.ok_or_else(unknown)?;
            d.replay(now).map_err(|m| ApiError::conflict(format!("delivery {id}: {m}")))?;
            match self.store.update_delivery(&d).await {
                Ok(saved) => return Ok(saved),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict("the delivery kept changing concurrently; retry"))
    }
}

/// A delivery as the API shows it (the callback URL without its query string, which may carry a token).
pub fn delivery_json(d: &Delivery) -> serde_json::Value {
    let target = d.target.as_deref().map(|t| match url::Url::parse(t) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => String::new(),
    });
    serde_json::json!({
        "id": d.id,
        "task_id": d.task_id,
        "kind": d.kind.as_str(),
        "detail_type": d.detail_type,
        "target": target,
        "state": d.state.as_str(),
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at,
        "last_error": d.last_error,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    })
}
