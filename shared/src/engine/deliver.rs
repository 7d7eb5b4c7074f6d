//! Sending outbox entries (see [`crate::domain::Delivery`]): one attempt at one entry, claimed by a
//! version-checked write first so two senders never send it at once, the result recorded after.
//! A sender that dies between claim and record leaves the entry due again when the claim ends:
//! receivers see each entry at least once, always with the same id.

use chrono::{DateTime, Duration, Utc};

use super::notify::{BridgeEvent, Notifier};
use super::{Engine, task_json};
use crate::domain::{Delivery, DeliveryKind, DeliveryState, Task, TaskState};
use crate::store::StoreError;

/// `detail-type` of the notice a dead-lettered task owes.
const FAILED: &str = "TaskFailed";

/// Why one attempt failed, and whether another could succeed.
struct Failure {
    message: String,
    permanent: bool,
}

impl Failure {
    fn retry(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: false }
    }
}

impl Engine {
    /// The entries a finished task owes: its bridge event, and its callback when it has a
    /// `callback_url`. Stored with the state change through [`crate::store::Store::update_task_with_deliveries`].
    pub(crate) fn completion_deliveries(&self, task: &Task, now: DateTime<Utc>) -> Vec<Delivery> {
        let detail_type = match task.state {
            TaskState::Completed if task.outcome == Some(crate::domain::Outcome::Abandoned) => "TaskAbandoned",
            TaskState::Completed => "TaskCompleted",
            TaskState::Cancelled => "TaskCancelled",
            _ => FAILED,
        };
        let body = task_json(task);
        let mut out = vec![Delivery::new(
            DeliveryKind::Event,
            task.id.clone(),
            &task.connection,
            detail_type,
            None,
            body.clone(),
            now,
        )];
        if let Some(url) = &task.callback_url {
            out.push(Delivery::new(
                DeliveryKind::Callback,
                task.id.clone(),
                &task.connection,
                detail_type,
                Some(url.clone()),
                body,
                now,
            ));
        }
        out
    }

    /// One immediate attempt at entries just stored (callbacks along `notifier`'s retry ladder);
    /// what fails stays pending for [`Engine::deliver_due`].
    pub(crate) async fn deliver_stored(&self, deliveries: Vec<Delivery>, notifier: &Notifier, now: DateTime<Utc>) {
        for d in deliveries {
            self.deliver_entry(d, notifier, now).await;
        }
    }

    /// Claims `entry`, makes one attempt and records the result; the recorded state, or `None` when
    /// another sender had it or the store failed.
    pub(crate) async fn deliver_entry(
        &self,
        entry: Delivery,
        notifier: &Notifier,
        now: DateTime<Utc>,
    ) -> Option<DeliveryState> {
        let s = &self.config.settings;
        let mut claim = entry;
        claim.next_attempt_at = Some(now + Duration::seconds(i64::try_from(s.delivery_claim_secs).unwrap_or(60)));
        let claimed = match self.store.update_delivery(&claim).await {
            Ok(c) => c,
            Err(StoreError::Conflict(_)) => return None,
            Err(e) => {
                tracing::warn!(delivery = %claim.id, error = %e, "claiming a delivery failed");
                return None;
            }
        };
        let retain = now + Duration::days(i64::from(s.retention_days));
        if let Some(reason) = self.no_longer_true(&claimed).await {
            let mut done = claimed;
            tracing::info!(delivery = %done.id, task = %done.task_id, kind = done.kind.as_str(), reason = %reason, "delivery superseded");
            done.superseded(reason, now, retain);
            self.metrics.incr("DeliveriesSuperseded", 1);
            return match self.store.update_delivery(&done).await {
                Ok(saved) => Some(saved.state),
                Err(e) => {
                    tracing::warn!(delivery = %done.id, error = %e, "recording a superseded delivery failed");
                    None
                }
            };
        }
        let result = self.send(&claimed, notifier).await;
        if result.is_ok() && claimed.kind == DeliveryKind::Callback {
            super::failpoint::hit("callback_sent");
        }
        let mut done = claimed;
        match result {
            Ok(()) => done.delivered(now, retain),
            Err(f) => {
                let last = f.permanent || done.attempts + 1 >= s.delivery_max_attempts.max(1);
                let retry_at = (!last).then(|| now + self.delivery_backoff(done.attempts));
                tracing::warn!(delivery = %done.id, task = %done.task_id, kind = done.kind.as_str(), error = %f.message,
                    attempts = done.attempts + 1, dead = last, "delivery attempt failed");
                done.failed(f.message, retry_at, now, retain);
            }
        }
        let metric = match (done.kind, done.state) {
            (DeliveryKind::Callback, DeliveryState::Delivered) => "CallbacksDelivered",
            (DeliveryKind::Callback, _) => "CallbacksFailed",
            (DeliveryKind::Event, DeliveryState::Delivered) => "EventsDelivered",
            (DeliveryKind::Event, _) => "EventsFailed",
        };
        self.metrics.incr(metric, 1);
        if done.state == DeliveryState::Dead {
            self.metrics.incr("DeliveriesDead", 1);
        }
        match self.store.update_delivery(&done).await {
            Ok(saved) => Some(saved.state),
            Err(e) => {
                // The claim ends and the entry is sent again (same id): at least once, never lost.
                tracing::warn!(delivery = %done.id, error = %e, "recording a delivery attempt failed");
                None
            }
        }
    }

    /// Why `d` should not be sent any more, if so: a `TaskFailed` notice whose task was replayed
    /// since (it is no longer failed, and will send its own notice when it ends). Sent late, it
    /// could reach the receiver after the replayed task's completion and undo it there.
    async fn no_longer_true(&self, d: &Delivery) -> Option<String> {
        if d.detail_type != FAILED {
            return None;
        }
        match self.store.get_task(&d.task_id).await {
            Ok(Some(t)) if t.state != TaskState::Failed => Some(format!(
                "not sent: task {} was replayed after it failed and is now {}; it sends its own notice when it ends",
                t.id,
                t.state.as_str()
            )),
            // Still failed, gone (retention), or unreadable now: send it as recorded.
            _ => None,
        }
    }

    /// Capped exponential backoff between attempts, with jitter in the upper half.
    fn delivery_backoff(&self, attempts: u32) -> Duration {
        use rand::Rng;
        let s = &self.config.settings;
        let cap =
            s.delivery_retry_base_secs.max(1).saturating_mul(1u64 << attempts.min(20)).min(s.retry_max_secs.max(1));
        let secs = rand::rng().random_range(cap.div_ceil(2)..=cap);
        Duration::seconds(i64::try_from(secs).unwrap_or(3600))
    }

    async fn send(&self, d: &Delivery, notifier: &Notifier) -> Result<(), Failure> {
        match d.kind {
            DeliveryKind::Event => {
                let mut detail = d.payload.clone();
                if let Some(o) = detail.as_object_mut() {
                    o.insert("delivery_id".into(), d.id.clone().into());
                }
                let event = BridgeEvent { detail_type: d.detail_type.clone(), detail };
                self.events.publish(&event).await.map_err(Failure::retry)
            }
            DeliveryKind::Callback => {
                let Some(url) = d.target.as_deref() else {
                    return Err(Failure { message: "callback entry without a URL".into(), permanent: true });
                };
                let Some(conn) = self.config.connections.get(&d.connection) else {
                    return Err(Failure {
                        message: format!("connection '{}' is no longer configured", d.connection),
                        permanent: true,
                    });
                };
                let name = conn.callback_secret.clone().unwrap_or_else(|| conn.secret.clone());
                let secret = self
                    .secrets
                    .get(&name)
                    .await
                    .map_err(|e| Failure::retry(format!("callback key unavailable: {e}")))?;
                let Some(key) = secret.get("callback_key") else {
                    return Err(Failure {
                        message: "no callback_key in the connection's secret".into(),
                        permanent: true,
                    });
                };
                let body = serde_json::to_vec(&d.payload).unwrap_or_default();
                notifier
                    .deliver_as(url, key.as_bytes(), &body, &d.id)
                    .await
                    .map_err(|e| Failure { message: e.message, permanent: e.permanent })
            }
        }
    }
}
