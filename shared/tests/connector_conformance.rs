//! One conformance suite over the `Connector` trait, run against every connector and its
//! simulator. To add a connector: write a factory in `support/mod.rs` returning a `Harness`,
//! and add one line to the `conformance!` invocation at the bottom.

mod support;

use std::time::{Duration, Instant};

use bridge::connectors::{ConnectorError, NoteRequest, TicketRequest};
use sandbox::Fault;
use support::{Harness, Opts};

fn request(key: &str, title: &str) -> TicketRequest {
    TicketRequest {
        correlation_key: key.to_string(),
        title: title.to_string(),
        body: "Line one\nLine \"two\" {{ not a template }} \\ end".to_string(),
        contact_email: Some("alice@example.com".into()),
        fields: serde_json::json!({"user": {"email": "alice@example.com"}}),
        ..TicketRequest::default()
    }
}

fn key() -> String {
    format!("tb-{}", ulid::Ulid::new())
}

/// Creates and returns `n` tickets' ids.
async fn create_n(h: &Harness, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(h.connector.create_ticket(&request(&key(), &format!("Ticket {i}"))).await.unwrap().id);
    }
    ids
}

/// Warms the connector (credentials loaded, token obtained) and forgets the traffic.
async fn warm(h: &Harness) {
    h.connector.check().await.unwrap();
    h.sim.reset_requests();
}

pub async fn lifecycle(h: Harness) {
    let report = h.connector.check().await.unwrap();
    assert!(report.ok && !report.steps.is_empty(), "{report:?}");
    let k = key();
    let t = h.connector.create_ticket(&request(&k, "Create account for alice in App X")).await.unwrap();
    let stored = h.state().tickets().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id.to_string(), t.id);
    // VSA appends its correlation marker to the summary (its list model has no description).
    assert!(stored[0].title.starts_with("Create account for alice in App X"), "{}", stored[0].title);
    assert_eq!(stored[0].correlation_key.as_deref(), Some(k.as_str()));
    assert!(stored[0].body.contains("{{ not a template }}"), "{}", stored[0].body);
    // Crash recovery finds it; an unknown key finds nothing.
    let found = h.connector.find_by_correlation(&k).await.unwrap().expect("found by correlation");
    assert_eq!(found.id, t.id);
    assert_eq!(h.connector.find_by_correlation(&key()).await.unwrap(), None);
    // Note.
    let note = NoteRequest { correlation_key: key(), title: "Another alert".into(), body: "second alert body".into() };
    h.connector.add_note(&t, &note).await.unwrap();
    let notes = h.state().ticket(t.id.parse().unwrap()).await.unwrap().notes;
    assert_eq!(notes.len(), 1);
    assert!(notes[0].body.contains("second alert body"));
    assert!(notes[0].internal);
    // Status batch including a closed and a rejected ticket.
    let more = create_n(&h, 2).await;
    h.state().close(&more[0], h.done_status).await.unwrap();
    h.state().close(&more[1], h.rejected_status).await.unwrap();
    let ids = [t.id.clone(), more[0].clone(), more[1].clone()];
    h.sim.reset_requests();
    let mut got = Vec::new();
    for chunk in ids.chunks(h.connector.batch_size()) {
        got.extend(h.connector.statuses(chunk).await.unwrap());
    }
    assert_eq!(got.len(), 3, "{got:?}");
    let by_id =
        |id: &str| got.iter().find(|s| s.ticket_id == id).unwrap_or_else(|| panic!("no status for {id}: {got:?}"));
    assert!(by_id(&more[0]).name.eq_ignore_ascii_case(h.done_status), "{got:?}");
    assert!(by_id(&more[1]).name.eq_ignore_ascii_case(h.rejected_status), "{got:?}");
    assert_ne!(by_id(&t.id).name, by_id(&more[0]).name);
    if h.done_category.is_some() {
        assert_eq!(by_id(&more[0]).category, h.done_category);
        assert_eq!(by_id(&more[1]).category, h.rejected_category);
        assert_ne!(by_id(&t.id).category, h.done_category);
    }
    let expected_requests = ids.len().div_ceil(h.connector.batch_size());
    assert_eq!(h.sim.requests(h.status_route), expected_requests, "{:?}", h.sim.request_counts());
    // Credentials.
    assert_eq!(h.connector.token_state().await.unwrap().kind, h.token_kind);
}

pub async fn status_paging_and_unknown_ids(h: Harness) {
    warm(&h).await;
    let ids = create_n(&h, 30).await;
    h.sim.reset_requests();
    let mut asked = ids.clone();
    asked.push("987654321".into());
    let mut got = Vec::new();
    let mut expected = 0;
    for chunk in asked.chunks(h.connector.batch_size()) {
        got.extend(h.connector.statuses(chunk).await.unwrap());
        expected += match h.status_page_size {
            Some(p) => chunk.len().div_ceil(p).max(1),
            None => 1,
        };
    }
    let mut got_ids: Vec<String> = got.iter().map(|s| s.ticket_id.clone()).collect();
    got_ids.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got_ids, want, "unknown ids are omitted, known ones all present");
    // Paging follows the target's pages; never more requests than needed.
    assert!(h.sim.requests(h.status_route) <= expected, "{:?} > {expected}", h.sim.request_counts());
    assert!(h.sim.requests(h.status_route) >= asked.len().div_ceil(h.connector.batch_size()));
}

pub async fn burst_of_5xx_then_success(h: Harness) {
    warm(&h).await;
    // Creates: 503 twice, then success; exactly one ticket.
    h.sim.faults().inject_on(h.create_route, Fault::Status { status: 503 }, 2);
    let k = key();
    let t = h.connector.create_ticket(&request(&k, "burst")).await.unwrap();
    assert_eq!(h.state().tickets().await.len(), 1);
    assert_eq!(h.state().tickets().await[0].id.to_string(), t.id);
    assert_eq!(h.sim.requests(h.create_route), 3);
    // Status reads: retried transparently.
    h.sim.faults().inject_on(h.status_route, Fault::Status { status: 502 }, 2);
    let got = h.connector.statuses(std::slice::from_ref(&t.id)).await.unwrap();
    assert_eq!(got.len(), 1);
}

pub async fn lost_create_response_is_recovered(h: Harness) {
    warm(&h).await;
    // The target creates the ticket but the response is lost (500): the correlation search
    // finds it instead of creating a second one.
    h.sim.faults().inject_on(h.create_route, Fault::LoseResponse, 1);
    let k = key();
    let t = h.connector.create_ticket(&request(&k, "lost")).await.unwrap();
    assert_eq!(h.state().tickets().await.len(), 1, "no duplicate");
    assert_eq!(h.state().tickets().await[0].id.to_string(), t.id);
    assert_eq!(h.sim.requests(h.create_route), 1);
    // Same with a 200 carrying an error body: the create is retried only after a search.
    h.sim.faults().inject_on(h.create_route, Fault::ErrorBody, 1);
    let t2 = h.connector.create_ticket(&request(&key(), "error body")).await.unwrap();
    assert_eq!(h.state().tickets().await.len(), 2);
    assert_ne!(t2.id, t.id);
}

pub async fn retry_after_is_honoured(h: Harness) {
    warm(&h).await;
    let ids = create_n(&h, 1).await;
    h.sim.faults().inject_on(h.status_route, Fault::RateLimited { retry_after_secs: 1 }, 1);
    let started = Instant::now();
    let got = h.connector.statuses(&ids).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited only {:?}", started.elapsed());
    // Creates are retried after a 429 too (the target did not act).
    h.sim.faults().inject_on(h.create_route, Fault::RateLimited { retry_after_secs: 1 }, 1);
    let started = Instant::now();
    h.connector.create_ticket(&request(&key(), "after 429")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(h.state().tickets().await.len(), 2);
}

pub async fn hang_past_timeout_is_a_timeout(h: Harness) {
    warm(&h).await;
    let ids = create_n(&h, 1).await;
    h.sim.faults().inject_on(h.status_route, Fault::hang(Duration::from_millis(2_500)), 10);
    let started = Instant::now();
    let err = h.connector.statuses(&ids).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Timeout(_)), "{err:?}");
    // Bounded by the retry budget (1 s timeout, 1 retry), not by the hang.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    h.sim.faults().clear();
    // A create that hangs once is not duplicated.
    h.sim.faults().inject_on(h.create_route, Fault::hang(Duration::from_millis(1_500)), 1);
    h.connector.create_ticket(&request(&key(), "after hang")).await.unwrap();
    assert_eq!(h.state().tickets().await.len(), 2);
}

pub async fn malformed_json_is_malformed(h: Harness) {
    warm(&h).await;
    let ids = create_n(&h, 1).await;
    h.sim.faults().inject_on(h.status_route, Fault::MalformedJson, 1);
    let err = h.connector.statuses(&ids).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Malformed(_)), "{err:?}");
    assert_eq!(h.connector.statuses(&ids).await.unwrap().len(), 1);
}

pub async fn error_body_on_200_is_an_error(h: Harness) {
    warm(&h).await;
    let ids = create_n(&h, 1).await;
    h.sim.faults().inject_on(h.status_route, Fault::ErrorBody, 1);
    let err = h.connector.statuses(&ids).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Server(_) | ConnectorError::Malformed(_)), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(h.connector.statuses(&ids).await.unwrap().len(), 1);
}

pub async fn revoked_token(h: Harness) {
    warm(&h).await;
    let ids = create_n(&h, 1).await;
    if h.reauth {
        let logins = h.sim.tokens().issued(sandbox::TokenKind::Access);
        h.sim.revoke_tokens();
        assert_eq!(h.connector.statuses(&ids).await.unwrap().len(), 1);
        assert_eq!(h.sim.tokens().issued(sandbox::TokenKind::Access), logins + 1, "exactly one re-login");
        // The new token was stored for other workers.
        assert!(h.secrets.puts() >= 1);
        // Server-side expiry is handled the same way.
        h.sim.tokens().expire_access();
        assert_eq!(h.connector.statuses(&ids).await.unwrap().len(), 1);
        assert_eq!(h.sim.tokens().issued(sandbox::TokenKind::Access), logins + 2);
    } else {
        h.sim.revoke_all_credentials();
        h.sim.reset_requests();
        let err = h.connector.statuses(&ids).await.unwrap_err();
        assert!(matches!(err, ConnectorError::Unauthorized(_)), "{err:?}");
        assert_eq!(h.sim.request_count(), 1, "no retry loop on bad credentials");
    }
}

pub async fn rate_limit_is_respected(h: Harness) {
    // 10 requests per second, burst of 2: within 150 ms at most 3 requests reach the target.
    let h = std::sync::Arc::new(h);
    let ids = {
        let ids = create_n(&h, 1).await;
        h.sim.reset_requests();
        ids
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (h, ids) = (h.clone(), ids.clone());
        tasks.push(tokio::spawn(async move { h.connector.statuses(&ids).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 1);
    }
    let total = h.sim.request_count();
    // Counted from the simulator's request log: arrivals within 150 ms of the start.
    let early =
        h.sim.request_log().iter().filter(|r| r.at.duration_since(started) < Duration::from_millis(150)).count();
    assert!(total >= 6, "{total}");
    assert!(early <= 3, "{early} requests in the first 150 ms");
    // The last requests had to wait for the bucket to refill.
    assert!(started.elapsed() >= Duration::from_millis(100 * (total as u64 - 3)), "{:?}", started.elapsed());
}

fn rate_opts() -> Opts {
    Opts { rate_limit_per_hour: 36_000, rate_burst: 2, ..Opts::default() }
}

fn hang_opts() -> Opts {
    Opts { timeout_ms: 1_000, max_retries: 1, ..Opts::default() }
}

/// `close_ticket` (cancel propagation): one note carrying the text, and a status the target counts
/// as closed, read back from the target (the simulator, or the real RT under `cargo xtask peer rt`).
/// Closing again keeps it closed.
pub async fn close_ticket_notes_and_closes(h: Harness) {
    let mut req = request(&key(), "Cancelled later");
    if h.connector.kind() == bridge::domain::ConnectorKind::Ninjaone {
        // NinjaOne's update API requires a requester.
        req.contact_id = Some("1fa74a18-a329-40d8-b5b7-0a22624f7800".into());
    }
    let t = h.connector.create_ticket(&req).await.unwrap();
    let note = NoteRequest {
        correlation_key: key(),
        title: "Cancelled by the requester".into(),
        body: "no longer needed".into(),
    };
    h.connector.close_ticket(&t, &note).await.unwrap();
    let stored = h.state().ticket(t.id.parse().unwrap()).await.unwrap();
    let with_text = stored.notes.iter().filter(|n| n.body.contains("no longer needed")).count();
    assert_eq!(with_text, 1, "{:?}", stored.notes);
    let status = h.connector.statuses(std::slice::from_ref(&t.id)).await.unwrap();
    assert_eq!(status.len(), 1, "{status:?}");
    assert!(
        matches!(status[0].category, Some(bridge::domain::MappedStatus::Closed(_)))
            || h.sim.is_closed_status(&stored.status),
        "{:?} / {}",
        status[0],
        stored.status
    );
    h.connector.close_ticket(&t, &note).await.unwrap();
    let again = h.state().ticket(t.id.parse().unwrap()).await.unwrap();
    assert_eq!(again.status, stored.status, "closing again keeps it closed");
    // Reopen window: back to an open status with the note, where the target can reopen.
    let reopen = NoteRequest { correlation_key: key(), title: "Reopened".into(), body: "alert again".into() };
    match h.connector.reopen_ticket(&t, &reopen).await {
        Ok(()) => {
            let status = h.connector.statuses(std::slice::from_ref(&t.id)).await.unwrap();
            assert!(!matches!(status[0].category, Some(bridge::domain::MappedStatus::Closed(_))), "{status:?}");
            let open = h.state().ticket(t.id.parse().unwrap()).await.unwrap();
            assert!(!h.sim.is_closed_status(&open.status), "{}", open.status);
            assert!(open.notes.iter().any(|n| n.body.contains("alert again")), "{:?}", open.notes);
        }
        Err(ConnectorError::Unsupported(_)) => {
            assert_eq!(h.connector.kind(), bridge::domain::ConnectorKind::Bms, "only BMS cannot reopen");
            let unchanged = h.state().ticket(t.id.parse().unwrap()).await.unwrap();
            assert_eq!(unchanged.notes.len(), again.notes.len(), "nothing written");
        }
        Err(e) => panic!("reopen failed: {e}"),
    }
}

macro_rules! conformance {
    ($($name:ident => $factory:path),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test]
            async fn lifecycle() { super::lifecycle($factory(Opts::default()).await).await }
            #[tokio::test]
            async fn status_paging_and_unknown_ids() { super::status_paging_and_unknown_ids($factory(Opts::default()).await).await }
            #[tokio::test]
            async fn burst_of_5xx_then_success() { super::burst_of_5xx_then_success($factory(Opts::default()).await).await }
            #[tokio::test]
            async fn lost_create_response_is_recovered() { super::lost_create_response_is_recovered($factory(Opts::default()).await).await }
            #[tokio::test]
            async fn retry_after_is_honoured() { super::retry_after_is_honoured($factory(Opts::default()).await).await }
            #[tokio::test]
            async fn hang_past_timeout_is_a_timeout() { super::hang_past_timeout_is_a_timeout($factory(hang_opts()).await).await }
            #[tokio::test]
            async fn malformed_json_is_malformed() { super::malformed_json_is_malformed($factory(Opts::default()).await).await }
            #[tokio::test]
            async fn error_body_on_200_is_an_error() { super::error_body_on_200_is_an_error($factory(Opts::default()).await).await }
            #[tokio::test]
            async fn revoked_token() { super::revoked_token($factory(Opts::default()).await).await }
            #[tokio::test]
            async fn rate_limit_is_respected() { super::rate_limit_is_respected($factory(rate_opts()).await).await }
            #[tokio::test]
            async fn close_ticket_notes_and_closes() { super::close_ticket_notes_and_closes($factory(Opts::default()).await).await }
        }
    )*};
}

conformance! {
    sandbox_desk => support::sandbox_harness,
    rt => support::rt_harness,
    generic => support::generic_harness,
    bms => support::psa::bms_harness,
    vsa => support::psa::vsa_harness,
    ninjaone => support::psa::ninjaone_harness,
    otrs => support::psa::otrs_harness,
}
