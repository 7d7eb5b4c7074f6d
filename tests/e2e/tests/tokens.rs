//! Token upkeep end to end: concurrent refresh runs against NinjaOne's rotating refresh tokens,
//! and the warning for a VSA personal access token nearing expiry.

mod support;

use bridge::domain::{Grouping, TaskState};
use bridge::engine::TokenOutcome;
use chrono::Utc;
use sandbox::targets::Target;
use support::{Backend, CONN, Harness, access_task};

async fn concurrent_refresh_runs_never_replay_a_rotated_token(backend: Backend) {
    let h = Harness::for_target(Target::Ninjaone, backend, Grouping::None, |_| {}).await;
    let other = h.twin();
    let now = Utc::now();
    let (a, b) = tokio::join!(h.engine.refresh_tokens(now), other.refresh_tokens(now));
    let outcomes = [a[CONN].clone(), b[CONN].clone()];
    let refreshed = outcomes.iter().filter(|o| matches!(o, TokenOutcome::Refreshed { .. })).count();
    let busy = outcomes.iter().filter(|o| matches!(o, TokenOutcome::Busy)).count();
    assert_eq!((refreshed, busy), (1, 1), "one run refreshes, the other finds the lease taken: {outcomes:?}");
    // The rotated refresh token was stored; the next run (lease released) sees a fresh token.
    let again = other.refresh_tokens(Utc::now()).await;
    assert!(matches!(again[CONN], TokenOutcome::Fresh { .. }), "{again:?}");
    // The connection keeps working for both instances.
    let (_, t) = h.submit(access_task("TOK-1")).await;
    let id = t["id"].as_str().unwrap();
    other.create_one(&bridge::domain::TaskId::parse(id).unwrap(), Utc::now()).await.unwrap();
    assert_eq!(h.task(id).await.state, TaskState::TicketOpen);
    assert_eq!(h.poll().await.tickets, 1);
    let ninja = h.target.guard.downcast_ref::<sandbox::ninjaone::NinjaOne>().unwrap();
    let replays = ninja.refresh_replays();
    assert_eq!(replays, 0, "a rotated refresh token was used twice");
}

async fn expiring_personal_access_token_raises_a_warning(backend: Backend) {
    let h = Harness::for_target(Target::Vsa, backend, Grouping::None, |c| c.settings.pat_warn_days = 14).await;
    // The user recorded a PAT that lapses in 5 days.
    let name = h.engine.config.connections[CONN].secret.clone();
    let mut s = h.secrets.get(&name).await.unwrap();
    s.set("pat_expires_at", (Utc::now() + chrono::Duration::days(5)).format("%Y-%m-%d").to_string());
    h.secrets.put(&name, &s).await.unwrap();
    let fresh_engine = h.twin();
    let report = fresh_engine.refresh_tokens(Utc::now()).await;
    assert!(matches!(report[CONN], TokenOutcome::PatExpiring { .. }), "{report:?}");
    assert_eq!(fresh_engine.metrics.get("PatExpiring"), 1);
    // With 90 days left there is no warning.
    s.set("pat_expires_at", (Utc::now() + chrono::Duration::days(90)).format("%Y-%m-%d").to_string());
    h.secrets.put(&name, &s).await.unwrap();
    let report = h.twin().refresh_tokens(Utc::now()).await;
    assert!(matches!(report[CONN], TokenOutcome::Fresh { .. }), "{report:?}");
}

both_stores!(concurrent_refresh_runs_never_replay_a_rotated_token, expiring_personal_access_token_raises_a_warning);
