//! The Tasks page's time filter: "received since" / "received until", as typed into a
//! `datetime-local` field (taken as UTC), a date alone, or RFC 3339 with an offset.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Which end of a range a value bounds: a date alone means the start or the end of that day.
#[derive(Clone, Copy)]
pub enum Bound {
    Since,
    Until,
}

/// Parses the value of form field `field`; the error names the field and the accepted forms.
pub fn parse(field: &str, value: &str, bound: Bound) -> Result<DateTime<Utc>, String> {
    let v = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let t = match bound {
            Bound::Since => d.and_hms_opt(0, 0, 0),
            Bound::Until => d.and_hms_opt(23, 59, 59),
        };
        if let Some(t) = t {
            return Ok(t.and_utc());
        }
    }
    Err(format!("{field}: '{v}' is not a time; use YYYY-MM-DD, YYYY-MM-DDTHH:MM (UTC) or RFC 3339"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_a_browser_and_a_person_send() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(parse("since", "2026-11-30T16:05", Bound::Since).unwrap(), at("2026-11-30T16:05:00Z"));
        assert_eq!(parse("since", "2026-11-30", Bound::Since).unwrap(), at("2026-11-30T00:00:00Z"));
        assert_eq!(parse("until", "2026-11-30", Bound::Until).unwrap(), at("2026-11-30T23:59:59Z"));
        assert_eq!(parse("until", "2026-11-30T18:00:00+02:00", Bound::Until).unwrap(), at("2026-11-30T16:00:00Z"));
        let e = parse("until", "yesterday", Bound::Until).unwrap_err();
        assert!(e.starts_with("until:") && e.contains("yesterday"), "{e}");
    }
}
