//! The sync lane of `ticket-bridge serve`: every connection with `sync.enabled` is synced every
//! `sync.interval_minutes` (first run at start-up); an interrupted run continues on the next tick.

use std::sync::Arc;
use std::time::Duration;

use bridge::engine::Engine;
use bridge::mapping::sync::LogProgress;

/// Spawns one loop per connection with the sync enabled.
pub fn spawn(engine: Arc<Engine>) {
    for (name, cfg) in engine.config.connections.iter().filter(|(_, c)| c.sync.enabled) {
        let (engine, name) = (engine.clone(), name.clone());
        let every = Duration::from_secs(u64::from(cfg.sync.interval_minutes.max(1)) * 60);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let outcome = engine.sync_connection(&name, chrono::Utc::now(), &LogProgress).await;
                tracing::info!(connection = %name, ?outcome, "sync lane");
            }
        });
    }
}
