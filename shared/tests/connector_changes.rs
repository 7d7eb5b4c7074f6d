//! `Connector::changed_since` against the targets that have a change filter (RT TicketSQL
//! `LastUpdated >`, Znuny TicketSearch `TicketChangeTimeNewerDate`, BMS tickets/search
//! `Filter.LastActivityUpdateFrom`): the simulators, and the real RT under `cargo xtask peer rt`
//! (`TB_RT_URL` / `TB_RT_TOKEN`).

mod support;

use std::collections::HashSet;

use bridge::connectors::TicketRequest;
use chrono::{Duration, Utc};
use support::{Harness, Opts};

fn request(i: usize) -> TicketRequest {
    TicketRequest {
        correlation_key: format!("tb-{}", ulid::Ulid::new()),
        title: format!("Changes {i}"),
        body: "changed_since".into(),
        contact_email: Some("alice@example.com".into()),
        ..TicketRequest::default()
    }
}

/// Tickets stamped after `since` come back with their status and the newest stamp; tickets
/// stamped at or before it (whole seconds) do not.
async fn reads_what_changed_after(h: Harness, strict_after: bool) {
    assert!(h.connector.change_filter().is_some());
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(h.connector.create_ticket(&request(i)).await.unwrap().id);
    }
    let all = h.connector.changed_since(Utc::now() - Duration::hours(1)).await.unwrap();
    let seen: HashSet<&str> = all.statuses.iter().map(|s| s.ticket_id.as_str()).collect();
    assert!(ids.iter().all(|id| seen.contains(id.as_str())), "{ids:?} not all in {seen:?}");
    let latest = all.latest.expect("the target stamps its tickets");
    assert!(all.requests >= 1);
    // Let the target's clock pass the newest stamp's second (its resolution), then change one.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while Utc::now() < latest + Duration::milliseconds(1100) {
        assert!(std::time::Instant::now() < until, "clock never passed {latest}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    h.state().close(&ids[1], h.done_status).await.unwrap();
    let changed = h.connector.changed_since(latest).await.unwrap();
    let got: Vec<&str> = changed.statuses.iter().map(|s| s.ticket_id.as_str()).collect();
    assert!(got.contains(&ids[1].as_str()), "{got:?}");
    let closed = changed.statuses.iter().find(|s| s.ticket_id == ids[1]).unwrap();
    assert_eq!(closed.category, h.done_category, "{closed:?}");
    assert!(changed.latest.is_some_and(|l| l > latest), "{:?} vs {latest}", changed.latest);
    if strict_after {
        // RT: `>` on whole seconds; the unchanged tickets were stamped at or before `latest`.
        assert!(!got.contains(&ids[0].as_str()) && !got.contains(&ids[2].as_str()), "{got:?}");
    } else {
        // Znuny, BMS: `>=`; the unchanged tickets are back only if stamped in `latest`'s second.
        assert!(changed.statuses.len() <= all.statuses.len(), "{got:?}");
    }
    // A time after every change: nothing.
    let none = h.connector.changed_since(Utc::now() + Duration::hours(1)).await.unwrap();
    assert!(none.statuses.is_empty() && none.latest.is_none(), "{none:?}");
}

mod rt {
    use super::*;
    #[tokio::test]
    async fn reads_what_changed_after() {
        super::reads_what_changed_after(support::rt_harness(Opts::default()).await, true).await
    }
}

mod bms {
    use super::*;
    #[tokio::test]
    async fn reads_what_changed_after() {
        super::reads_what_changed_after(support::psa::bms_harness(Opts::default()).await, false).await
    }
}

mod otrs {
    use super::*;
    #[tokio::test]
    async fn reads_what_changed_after() {
        super::reads_what_changed_after(support::psa::otrs_harness(Opts::default()).await, false).await
    }
}

/// Connectors without a change filter say so (polling keeps the batched full read).
#[tokio::test]
async fn targets_without_a_filter_say_so() {
    for h in [
        support::psa::vsa_harness(Opts::default()).await,
        support::psa::ninjaone_harness(Opts::default()).await,
        support::generic_harness(Opts::default()).await,
    ] {
        assert!(h.connector.change_filter().is_none());
        let e = h.connector.changed_since(Utc::now()).await.unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
    }
}
