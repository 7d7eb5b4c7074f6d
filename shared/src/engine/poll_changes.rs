//! Which read a poll cycle makes (only the tickets changed since the connection's high-water mark,
//! or the full batched read) and how the mark moves after a cycle that succeeded.

use chrono::{DateTime, Duration, Utc};

use super::Engine;
use crate::config::ConnectionConfig;
use crate::connectors::Connector;
use crate::store::PollMark;

/// The read one poll cycle makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReadPlan {
    /// Every due ticket, in batches. `mark` is the stored mark (kept as it is), `track` whether
    /// the cycle writes a mark at all (the target has a change filter and incremental reads are on).
    Full { mark: Option<PollMark>, track: bool },
    /// Only what the target changed after `since` (the mark minus the margin).
    Changes { mark: PollMark, since: DateTime<Utc> },
}

impl ReadPlan {
    /// The mark to store after a successful cycle: `incremental` says the changed-ticket read
    /// answered (else a full read ran), `latest` is the newest change time the target returned,
    /// `started` the bridge clock when the cycle began (the first mark only, before the target
    /// returned any timestamp). `None`: store nothing.
    pub(super) fn next_mark(
        &self,
        conn: &str,
        incremental: bool,
        latest: Option<DateTime<Utc>>,
        started: DateTime<Utc>,
    ) -> Option<PollMark> {
        let (mark, cycles) = match (self, incremental) {
            (Self::Changes { mark, .. }, true) => (Some(mark), mark.cycles_since_sweep.saturating_add(1)),
            (Self::Changes { mark, .. }, false) => (Some(mark), 0),
            (Self::Full { track: false, .. }, _) => return None,
            (Self::Full { mark, .. }, _) => (mark.as_ref(), 0),
        };
        // After a changed read the mark is the newest stamp the target returned: no later than the
        // target's clock when it answered, so every change after the read is stamped at or after
        // it (the margin covers a change committed in the same second), and any change before the
        // read was in the answer. It replaces the old mark even when older: a first mark taken
        // from the bridge's clock is then corrected by the target's own.
        // A full read proves nothing about changes after it started: the old mark stays (it is at
        // most the target's time of the last read, so every later change is after it).
        let target_latest = if incremental { latest } else { None };
        let (high_water, from_target) = match (mark, target_latest) {
            (Some(_), Some(l)) => (l, true),
            (Some(m), None) => (m.high_water, m.from_target),
            (None, _) => (started, false),
        };
        Some(PollMark {
            connection: conn.to_string(),
            high_water,
            from_target,
            cycles_since_sweep: cycles,
            updated_at: Utc::now(),
        })
    }
}

impl Engine {
    /// Decides the cycle's read from the connection's settings and stored mark.
    pub(super) async fn read_plan(&self, conn: &str, cfg: &ConnectionConfig, connector: &dyn Connector) -> ReadPlan {
        let track = cfg.polling.incremental && connector.change_filter().is_some();
        if !track {
            return ReadPlan::Full { mark: None, track: false };
        }
        let mark = match self.store.get_poll_mark(conn).await {
            Ok(m) => m,
            Err(e) => {
                // Without the mark the cycle cannot know what it may skip, nor may it overwrite it.
                tracing::warn!(connection = conn, error = %e, "reading the poll mark failed; full read");
                return ReadPlan::Full { mark: None, track: false };
            }
        };
        match mark {
            Some(mark) if mark.cycles_since_sweep.saturating_add(1) < cfg.polling.full_sweep_every => {
                let margin = Duration::seconds(i64::try_from(cfg.polling.change_margin_secs).unwrap_or(120));
                let since = mark.high_water - margin;
                ReadPlan::Changes { mark, since }
            }
            mark => ReadPlan::Full { mark, track: true },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(hw: DateTime<Utc>, cycles: u32) -> PollMark {
        PollMark {
            connection: "c".into(),
            high_water: hw,
            from_target: true,
            cycles_since_sweep: cycles,
            updated_at: hw,
        }
    }

    #[test]
    fn mark_moves_only_to_target_times_after_a_changed_read() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-30T14:00:00Z").unwrap().with_timezone(&Utc);
        let later = t0 + Duration::seconds(30);
        let plan = ReadPlan::Changes { mark: mark(t0, 3), since: t0 - Duration::seconds(120) };
        let next = plan.next_mark("c", true, Some(later), t0 + Duration::hours(1)).unwrap();
        assert_eq!((next.high_water, next.cycles_since_sweep), (later, 4));
        // Nothing changed: the mark stays; never the bridge clock.
        let next = plan.next_mark("c", true, None, t0 + Duration::hours(1)).unwrap();
        assert_eq!(next.high_water, t0);
        // The target's time replaces a mark ahead of it (a first mark from a faster bridge clock).
        let next = plan.next_mark("c", true, Some(t0 - Duration::seconds(5)), later).unwrap();
        assert_eq!((next.high_water, next.from_target), (t0 - Duration::seconds(5), true));
        // The changed read failed and a full read ran: cycle count restarts, mark stays.
        let next = plan.next_mark("c", false, Some(later), later).unwrap();
        assert_eq!((next.high_water, next.cycles_since_sweep), (t0, 0));
        // First sweep: the bridge clock at its start, marked as such.
        let first = ReadPlan::Full { mark: None, track: true }.next_mark("c", false, None, later).unwrap();
        assert_eq!((first.high_water, first.from_target), (later, false));
        assert!(ReadPlan::Full { mark: None, track: false }.next_mark("c", false, None, later).is_none());
    }
}
