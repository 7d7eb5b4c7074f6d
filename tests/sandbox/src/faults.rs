//! Programmable faults: the next N matching requests fail in a chosen way.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;

/// One way a request can fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Respond with this HTTP status (typically 500/502/503) without handling the request.
    Status { status: u16 },
    /// 429 with `Retry-After: <secs>`.
    RateLimited { retry_after_secs: u64 },
    /// Wait this long, then answer 504 without handling the request (a hung gateway).
    Hang { ms: u64 },
    /// 200 with a truncated JSON body.
    MalformedJson,
    /// The target's own "HTTP 200 with an error body" (e.g. OTRS `{"Error":…}`).
    ErrorBody,
    /// Handle the request (the ticket IS created), then answer 500: a lost response.
    LoseResponse,
    /// Handle the request (the ticket IS created), then wait this long before answering: the
    /// window in which a caller that dies has made a ticket it never recorded.
    SlowResponse { ms: u64 },
}

/// A fault armed for the next `times` requests matching `route` (`"METHOD /route/{template}"`,
/// `None` = any target route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(flatten)]
    pub fault: Fault,
    pub times: u32,
    #[serde(default)]
    pub route: Option<String>,
}

/// The armed faults of one simulator. Rules fire in the order they were added.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
}

impl Faults {
    /// Arms `fault` for the next `times` requests to any route.
    pub fn inject(&self, fault: Fault, times: u32) {
        self.add(FaultRule { fault, times, route: None });
    }

    /// Arms `fault` for the next `times` requests to `route` (e.g. `"POST /REST/2.0/ticket"`).
    pub fn inject_on(&self, route: &str, fault: Fault, times: u32) {
        self.add(FaultRule { fault, times, route: Some(route.to_string()) });
    }

    pub fn add(&self, rule: FaultRule) {
        if rule.times > 0 {
            self.lock().push(rule);
        }
    }

    /// Disarms everything.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Faults still armed (sum of remaining times).
    pub fn pending(&self) -> u32 {
        self.lock().iter().map(|r| r.times).sum()
    }

    /// The fault for this request, if one is armed (consumes one use).
    pub(crate) fn take(&self, route: &str) -> Option<Fault> {
        let mut rules = self.lock();
        let idx = rules.iter().position(|r| r.route.as_deref().is_none_or(|want| want == route))?;
        let rule = &mut rules[idx];
        rule.times -= 1;
        let fault = rule.fault.clone();
        if rule.times == 0 {
            rules.remove(idx);
        }
        Some(fault)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FaultRule>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Fault {
    /// A hang of `d`.
    pub fn hang(d: Duration) -> Self {
        Self::Hang { ms: d.as_millis() as u64 }
    }
}
