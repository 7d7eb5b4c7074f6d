//! The outbox sender run on a schedule (`serve` loop, poll-status function): every pending entry
//! whose next attempt is due gets one attempt.

use chrono::{DateTime, Utc};

use super::Engine;
use crate::domain::DeliveryState;

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub attempted: u32,
    pub delivered: u32,
    pub retrying: u32,
    pub dead: u32,
    /// Entries no longer true when their turn came (not sent; see `DeliveryState::Superseded`).
    pub superseded: u32,
}

/// Entries one run takes at most.
pub const DELIVERIES_PER_RUN: usize = 500;

impl Engine {
    /// One attempt at each due entry (single-shot callbacks: the entry's own backoff paces retries).
    pub async fn deliver_due(&self, now: DateTime<Utc>) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let due = match self.store.due_deliveries(now, DELIVERIES_PER_RUN).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "reading due deliveries failed");
                return report;
            }
        };
        let notifier = self.notifier.quick();
        for entry in due {
            report.attempted += 1;
            match self.deliver_entry(entry, &notifier, now).await {
                Some(DeliveryState::Delivered) => report.delivered += 1,
                Some(DeliveryState::Pending) => report.retrying += 1,
                Some(DeliveryState::Dead) => report.dead += 1,
                Some(DeliveryState::Superseded) => report.superseded += 1,
                None => {}
            }
        }
        report
    }
}
