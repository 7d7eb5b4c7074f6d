//! The Connections page's rate-limit entry: the configured limit and, in `serve`, what the
//! connection's local limiter let through in the last hour and would let through now.

use super::Ctx;
use super::html::esc;

/// HTML for the "Rate limit" entry of connection `name`.
pub fn describe(ctx: &Ctx<'_>, name: &str, limit_per_hour: u32) -> String {
    let usage = ctx.engine().connectors.get(name).and_then(|c| c.rate_usage());
    match (ctx.console.local, usage) {
        (true, Some(u)) => {
            let used_pct = (u.used_last_hour.saturating_mul(100) / u64::from(u.limit_per_hour.max(1))).min(100);
            let class = if u.available_now == 0 || u.left_this_hour() == 0 {
                " class=\"notice err\""
            } else if used_pct >= 80 {
                " class=\"notice warn\""
            } else {
                ""
            };
            let refused = if u.refused_last_hour > 0 {
                format!("; <strong>{} refused</strong> locally (waited too long)", u.refused_last_hour)
            } else {
                String::new()
            };
            format!(
                "<span{class}><span data-rate=\"limit\">{limit}</span> requests/hour configured \
(bursts of up to <span data-rate=\"burst\">{burst}</span>); last 60 minutes: \
<span data-rate=\"used\">{used}</span> used, <span data-rate=\"left\">{left}</span> left{refused}; \
<span data-rate=\"now\">{now}</span> may go out back to back now</span><br>\
<meter min=\"0\" max=\"{limit}\" high=\"{high}\" value=\"{used}\" aria-label=\"{label}\">{used_pct}%</meter> \
<small>counted by this process's limiter since start-up</small>",
                limit = u.limit_per_hour,
                burst = u.burst,
                used = u.used_last_hour,
                left = u.left_this_hour(),
                now = u.available_now,
                high = u64::from(u.limit_per_hour) * 8 / 10,
                label = esc(&format!("{name}: share of the hourly rate used")),
            )
        }
        (true, None) => format!("<span data-rate=\"limit\">{limit_per_hour}</span> requests/hour configured"),
        (false, _) => format!(
            "<span data-rate=\"limit\">{limit_per_hour}</span> requests/hour configured. \
<small>Live headroom is not shown here: on AWS each function instance (create-ticket, poll-status, …) \
has its own limiter in memory, so there is no single figure to read.</small>"
        ),
    }
}
