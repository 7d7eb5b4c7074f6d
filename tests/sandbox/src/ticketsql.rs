//! A subset of RT's TicketSQL: `field op value` terms joined by AND / OR with parentheses.
//!
//! Fields: `id`, `Status`, `Subject`, `Queue`, `Requestor` / `Requestor.EmailAddress`,
//! `CF.{Name}` (also quoted `'CF.{Name}'`). Operators: `=`, `!=`, `<`, `>`, `LIKE`, `NOT LIKE`.
//! Values: numbers or quoted strings (`'…'` / `"…"`, backslash escapes). `Status = '__Active__'`
//! and `'__Inactive__'` match the default lifecycle's groups. AND binds tighter than OR.
//!
//! `LastUpdated` with `<`, `>`, `<=`, `>=`, `=` compares like RT's `_DateLimit`
//! (`lib/RT/Tickets.pm`): the value is a date read in the user's time zone (UTC here), the column
//! holds whole seconds, and `=` means the whole day. Only `YYYY-MM-DD HH:MM:SS` and `YYYY-MM-DD`
//! are accepted; RT would parse more (Time::ParseDate) and match everything on an unparseable
//! value, the simulator refuses it instead.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::sim::SimTicket;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(String),
    LParen,
    RParen,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Or(Vec<Query>),
    And(Vec<Query>),
    Term { field: String, op: String, value: String },
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '\'' | '"' => {
                let q = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string".into()),
                        Some('\\') => {
                            s.push(*chars.get(i + 1).ok_or("dangling escape")?);
                            i += 2;
                        }
                        Some(&ch) if ch == q => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            '=' | '!' | '<' | '>' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                if matches!(two.as_str(), "!=" | "<=" | ">=") {
                    out.push(Tok::Op(two));
                    i += 2;
                } else if c == '!' {
                    return Err("unexpected '!'".into());
                } else {
                    out.push(Tok::Op(c.to_string()));
                    i += 1;
                }
            }
            _ => {
                let mut s = String::new();
                let mut depth = 0;
                while let Some(&ch) = chars.get(i) {
                    if ch == '{' {
                        depth += 1;
                    } else if ch == '}' {
                        depth -= 1;
                    } else if depth == 0 && (ch.is_whitespace() || "()=!<>'\"".contains(ch)) {
                        break;
                    }
                    s.push(ch);
                    i += 1;
                }
                out.push(Tok::Word(s));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn or(&mut self) -> Result<Query, String> {
        let mut parts = vec![self.and()?];
        while self.peek_word("OR") {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Query::Or(parts) })
    }

    fn and(&mut self) -> Result<Query, String> {
        let mut parts = vec![self.atom()?];
        while self.peek_word("AND") {
            self.pos += 1;
            parts.push(self.atom()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Query::And(parts) })
    }

    fn atom(&mut self) -> Result<Query, String> {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::LParen) => {
                self.pos += 1;
                let q = self.or()?;
                if self.toks.get(self.pos) != Some(&Tok::RParen) {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                Ok(q)
            }
            Some(Tok::Word(field)) | Some(Tok::Str(field)) => {
                self.pos += 1;
                let op = match self.toks.get(self.pos).cloned() {
                    Some(Tok::Op(o)) => o,
                    Some(Tok::Word(w)) if w.eq_ignore_ascii_case("LIKE") => "LIKE".into(),
                    Some(Tok::Word(w)) if w.eq_ignore_ascii_case("NOT") => {
                        self.pos += 1;
                        if !self.peek_word("LIKE") {
                            return Err("expected LIKE after NOT".into());
                        }
                        "NOT LIKE".into()
                    }
                    other => return Err(format!("expected an operator after '{field}', got {other:?}")),
                };
                self.pos += 1;
                let value = match self.toks.get(self.pos).cloned() {
                    Some(Tok::Str(s)) | Some(Tok::Word(s)) => s,
                    other => return Err(format!("expected a value, got {other:?}")),
                };
                self.pos += 1;
                Ok(Query::Term { field, op, value })
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

/// Parses `src`; `known_cf` says whether a custom field exists.
pub fn parse(src: &str, known_cf: &dyn Fn(&str) -> bool) -> Result<Query, String> {
    let mut p = Parser { toks: lex(src)?, pos: 0 };
    if p.toks.is_empty() {
        return Err("empty query".into());
    }
    let q = p.or()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.pos]));
    }
    validate(&q, known_cf)?;
    Ok(q)
}

fn cf_name(field: &str) -> Option<&str> {
    let rest = field.strip_prefix("CF.").or_else(|| field.strip_prefix("cf."))?;
    Some(rest.trim_start_matches('{').trim_end_matches('}'))
}

fn validate(q: &Query, known_cf: &dyn Fn(&str) -> bool) -> Result<(), String> {
    match q {
        Query::Or(v) | Query::And(v) => v.iter().try_for_each(|q| validate(q, known_cf)),
        Query::Term { field, op, value } => {
            if let Some(cf) = cf_name(field) {
                return if known_cf(cf) { Ok(()) } else { Err(format!("unknown custom field '{cf}'")) };
            }
            match field.to_ascii_lowercase().as_str() {
                "id" => {
                    if op.contains("LIKE") || value.parse::<u64>().is_err() {
                        return Err(format!("invalid id condition '{op} {value}'"));
                    }
                    Ok(())
                }
                "lastupdated" => {
                    if !matches!(op.as_str(), "=" | "<" | ">" | "<=" | ">=") {
                        return Err(format!("Invalid Date Op: {op}"));
                    }
                    rt_date(value).map(|_| ())
                }
                "status" | "subject" | "queue" | "requestor" | "requestor.emailaddress" => Ok(()),
                _ => Err(format!("unknown field '{field}'")),
            }
        }
    }
}

fn text_match(have: &str, op: &str, want: &str) -> bool {
    let (h, w) = (have.to_lowercase(), want.to_lowercase());
    match op {
        "=" => h == w,
        "!=" => h != w,
        "LIKE" => h.contains(&w),
        "NOT LIKE" => !h.contains(&w),
        "<" => h < w,
        ">" => h > w,
        "<=" => h <= w,
        ">=" => h >= w,
        _ => false,
    }
}

/// A TicketSQL date value: `YYYY-MM-DD HH:MM:SS` (UTC) or a day `YYYY-MM-DD` (its midnight).
fn rt_date(value: &str) -> Result<(DateTime<Utc>, bool), String> {
    if let Ok(t) = NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S") {
        return Ok((t.and_utc(), false));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| (t.and_utc(), true))
        .ok_or_else(|| format!("unparseable date '{value}'"))
}

/// RT's `LastUpdated` column: whole seconds.
fn whole_seconds(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn date_match(have: DateTime<Utc>, op: &str, value: &str) -> bool {
    let Ok((want, _)) = rt_date(value) else { return false };
    let (h, w) = (whole_seconds(have), want.timestamp());
    match op {
        // `=` is the whole day (RT SetToMidnight, AddDay).
        "=" => {
            let day = want.date_naive().and_hms_opt(0, 0, 0).map(|d| d.and_utc().timestamp()).unwrap_or(w);
            h >= day && h < day + 86_400
        }
        "<" => h < w,
        ">" => h > w,
        "<=" => h <= w,
        ">=" => h >= w,
        _ => false,
    }
}

/// Whether ticket `t` matches.
pub fn matches(q: &Query, t: &SimTicket) -> bool {
    match q {
        Query::Or(v) => v.iter().any(|q| matches(q, t)),
        Query::And(v) => v.iter().all(|q| matches(q, t)),
        Query::Term { field, op, value } => {
            if let Some(cf) = cf_name(field) {
                let have = t.fields.get(&format!("CF.{cf}")).and_then(|v| v.as_str()).unwrap_or("");
                return text_match(have, op, value);
            }
            match field.to_ascii_lowercase().as_str() {
                "id" => {
                    let want = value.parse::<u64>().unwrap_or(0);
                    match op.as_str() {
                        "=" => t.id == want,
                        "!=" => t.id != want,
                        "<" => t.id < want,
                        ">" => t.id > want,
                        "<=" => t.id <= want,
                        ">=" => t.id >= want,
                        _ => false,
                    }
                }
                "status" => match value.as_str() {
                    "__Active__" => (op == "=") == ["new", "open", "stalled"].contains(&t.status.as_str()),
                    "__Inactive__" => (op == "=") == ["resolved", "rejected", "deleted"].contains(&t.status.as_str()),
                    _ => text_match(&t.status, op, value),
                },
                "lastupdated" => date_match(t.updated_at, op, value),
                "subject" => text_match(&t.title, op, value),
                "queue" => text_match(t.queue.as_deref().unwrap_or(""), op, value),
                _ => text_match(t.requester.as_deref().unwrap_or(""), op, value),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cf(name: &str) -> bool {
        name == "TicketBridgeKey"
    }

    #[test]
    fn parses_the_subset() {
        let q = parse("id = 1 OR id = 2 OR id = 30", &cf).unwrap();
        assert!(matches!(q, Query::Or(ref v) if v.len() == 3));
        let q =
            parse("Queue = 'General' AND (Status = '__Active__' OR 'CF.{TicketBridgeKey}' = 'it\\'s')", &cf).unwrap();
        let Query::And(parts) = q else { panic!() };
        assert!(matches!(&parts[1], Query::Or(v) if matches!(&v[1], Query::Term { value, .. } if value == "it's")));
        assert!(parse("Subject NOT LIKE '[tb:x]'", &cf).is_ok());
        assert!(parse("CF.{Nope} = 'x'", &cf).unwrap_err().contains("Nope"));
        assert!(parse("Bogus = 1", &cf).is_err());
        assert!(parse("id = 'abc'", &cf).is_err());
        assert!(parse("id = 1 OR", &cf).is_err());
        assert!(parse("(id = 1", &cf).is_err());
        assert!(parse("LastUpdated > '2026-11-30 14:00:00'", &cf).is_ok());
        assert!(parse("LastUpdated > 'yesterday'", &cf).unwrap_err().contains("yesterday"));
        assert!(parse("LastUpdated LIKE '2026-11-30'", &cf).is_err());
    }

    #[test]
    fn last_updated_compares_whole_seconds() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // Stamped at 14:00:05.900: RT stores 14:00:05, which is not after 14:00:05.
        let have = at("2026-11-30T14:00:05.900Z");
        assert!(!date_match(have, ">", "2026-11-30 14:00:05"));
        assert!(date_match(have, ">", "2026-11-30 14:00:04"));
        assert!(date_match(have, ">=", "2026-11-30 14:00:05"));
        assert!(date_match(have, "=", "2026-11-30"));
        assert!(!date_match(have, "=", "2026-11-29"));
    }
}
