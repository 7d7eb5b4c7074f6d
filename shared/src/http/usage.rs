//! What a connection's local rate limiter let through and refused in the last hour, and how many
//! requests it would let through back to back right now (its headroom), for the console.
//!
//! The limiter is a token bucket (GCRA): `rate_limit_per_hour` refills it, `rate_burst` is its
//! size. After each allowed request the limiter reports how many more it would allow at once;
//! the headroom now is that figure plus what refilled since, capped at the burst.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Minutes the "last hour" counts cover (one bucket per minute).
const MINUTES: usize = 60;

/// A read-only view of one connection's rate limiting in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateUsage {
    /// The configured refill rate (`rate_limit_per_hour`).
    pub limit_per_hour: u32,
    /// The bucket size (`options.http.rate_burst`).
    pub burst: u32,
    /// Requests the limiter let through in the last 60 minutes.
    pub used_last_hour: u64,
    /// Requests refused locally in the last 60 minutes (the wait would have exceeded `max_rate_wait`).
    pub refused_last_hour: u64,
    /// Requests that may go out back to back now without waiting.
    pub available_now: u32,
}

impl RateUsage {
    /// What is left of the hourly rate after the last hour's requests (0 when it was exceeded
    /// through the burst).
    pub fn left_this_hour(&self) -> u64 {
        u64::from(self.limit_per_hour).saturating_sub(self.used_last_hour)
    }
}

#[derive(Clone, Copy, Default)]
struct Minute {
    /// Minutes since the meter started; a bucket whose index is older than an hour is stale.
    index: u64,
    used: u64,
    refused: u64,
}

struct State {
    minutes: [Minute; MINUTES],
    /// The last allowed request: when, and the burst capacity left right after it.
    last: Option<(Instant, u32)>,
}

/// Counts one connection's rate-limiter decisions.
pub struct RateMeter {
    limit_per_hour: u32,
    burst: u32,
    started: Instant,
    state: Mutex<State>,
}

impl RateMeter {
    pub fn new(limit_per_hour: u32, burst: u32, now: Instant) -> Self {
        let state = State { minutes: [Minute::default(); MINUTES], last: None };
        Self { limit_per_hour: limit_per_hour.max(1), burst: burst.max(1), started: now, state: Mutex::new(state) }
    }

    /// A request was let through; `remaining` is the limiter's burst capacity left after it.
    pub fn allowed(&self, now: Instant, remaining: u32) {
        self.count(now, |m| m.used += 1, Some(remaining));
    }

    /// A request was refused locally.
    pub fn refused(&self, now: Instant) {
        self.count(now, |m| m.refused += 1, None);
    }

    fn count(&self, now: Instant, f: impl FnOnce(&mut Minute), remaining: Option<u32>) {
        let index = self.minute(now);
        if let Ok(mut s) = self.state.lock() {
            let slot = &mut s.minutes[(index % MINUTES as u64) as usize];
            if slot.index != index {
                *slot = Minute { index, ..Minute::default() };
            }
            f(slot);
            if let Some(r) = remaining {
                s.last = Some((now, r));
            }
        }
    }

    fn minute(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_secs() / 60
    }

    /// The view at `now`.
    pub fn snapshot(&self, now: Instant) -> RateUsage {
        let current = self.minute(now);
        let (mut used, mut refused, mut last) = (0, 0, None);
        if let Ok(s) = self.state.lock() {
            for m in s.minutes.iter().filter(|m| m.index + (MINUTES as u64) > current && m.index <= current) {
                used += m.used;
                refused += m.refused;
            }
            last = s.last;
        }
        let available_now = match last {
            None => self.burst,
            Some((at, remaining)) => {
                let per = Duration::from_secs(3600).as_nanos() / u128::from(self.limit_per_hour);
                let refilled = now.saturating_duration_since(at).as_nanos() / per.max(1);
                u32::try_from(u128::from(remaining) + refilled).unwrap_or(u32::MAX).min(self.burst)
            }
        };
        RateUsage {
            limit_per_hour: self.limit_per_hour,
            burst: self.burst,
            used_last_hour: used,
            refused_last_hour: refused,
            available_now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_meter_has_the_whole_burst_and_nothing_used() {
        let t0 = Instant::now();
        let u = RateMeter::new(3600, 10, t0).snapshot(t0);
        assert_eq!(
            u,
            RateUsage { limit_per_hour: 3600, burst: 10, used_last_hour: 0, refused_last_hour: 0, available_now: 10 }
        );
        assert_eq!(u.left_this_hour(), 3600);
    }

    #[test]
    fn headroom_refills_at_the_hourly_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let m = RateMeter::new(3600, 10, t0); // one request per second
        for left in (7..10).rev() {
            m.allowed(t0, left);
        }
        let u = m.snapshot(t0);
        assert_eq!((u.used_last_hour, u.available_now, u.left_this_hour()), (3, 7, 3597));
        assert_eq!(m.snapshot(t0 + Duration::from_millis(2500)).available_now, 9);
        assert_eq!(m.snapshot(t0 + Duration::from_secs(60)).available_now, 10, "capped at the burst");
    }

    #[test]
    fn counts_leave_the_window_after_an_hour() {
        let t0 = Instant::now();
        let m = RateMeter::new(60, 5, t0);
        m.allowed(t0, 4);
        m.refused(t0 + Duration::from_secs(61));
        m.allowed(t0 + Duration::from_secs(30 * 60), 4);
        let u = m.snapshot(t0 + Duration::from_secs(59 * 60 + 59));
        assert_eq!((u.used_last_hour, u.refused_last_hour), (2, 1));
        let u = m.snapshot(t0 + Duration::from_secs(60 * 60));
        assert_eq!((u.used_last_hour, u.refused_last_hour), (1, 1), "minute 0 dropped out");
        let u = m.snapshot(t0 + Duration::from_secs(61 * 60));
        assert_eq!((u.used_last_hour, u.refused_last_hour), (1, 0));
        assert_eq!(u.left_this_hour(), 59);
    }

    #[test]
    fn a_bucket_reused_an_hour_later_starts_from_zero() {
        let t0 = Instant::now();
        let m = RateMeter::new(60, 5, t0);
        m.allowed(t0, 4);
        m.allowed(t0 + Duration::from_secs(3600), 4);
        assert_eq!(m.snapshot(t0 + Duration::from_secs(3600)).used_last_hour, 1);
    }
}
