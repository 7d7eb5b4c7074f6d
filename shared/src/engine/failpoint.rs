//! Crash points at the step boundaries of a task, for the SIGKILL matrix of `serve`
//! (cli/tests/serve_kill_matrix.rs). The local runner arms one when `TB_FAILPOINT` names a step;
//! the process then aborts (no unwinding, no cleanup, as a SIGKILL would stop it) the first time it
//! reaches that boundary. Unarmed, a boundary costs one atomic load.

use std::sync::OnceLock;

/// The step boundaries, in the order a task passes them.
pub const STEPS: [&str; 7] =
    ["accepted", "claimed", "ticket_created", "recorded", "polled", "completed", "callback_sent"];

static ARMED: OnceLock<&'static str> = OnceLock::new();

/// Arms the crash point `step`; an unknown name is an error naming the valid ones.
pub fn arm(step: &str) -> Result<(), String> {
    let known = STEPS
        .iter()
        .find(|s| **s == step)
        .ok_or_else(|| format!("TB_FAILPOINT: unknown step '{step}'; expected one of {}", STEPS.join(", ")))?;
    ARMED.set(known).map_err(|_| "a failpoint is already armed".to_string())
}

/// Aborts the process if `step` is the armed crash point.
pub(crate) fn hit(step: &'static str) {
    if ARMED.get().is_some_and(|armed| *armed == step) {
        tracing::error!(step, "failpoint reached: aborting");
        std::process::abort();
    }
}
