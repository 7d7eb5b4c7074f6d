//! A small OData `$filter` evaluator (the subset VSA clients use): `Field eq|ne|gt|ge|lt|le
//! literal`, `substringof('text',Field)`, `and`, `or`, `not`, parentheses. Literals: numbers,
//! `'strings'` (`''` escapes a quote), `true`/`false`, `null`, `datetime'…'`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    Comma,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp { field: String, op: String, value: Value },
    Substring { needle: String, field: String },
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '(' {
            out.push(Tok::LParen);
            i += 1;
        } else if ch == ')' {
            out.push(Tok::RParen);
            i += 1;
        } else if ch == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if ch == '\'' {
            let mut v = String::new();
            i += 1;
            loop {
                match c.get(i) {
                    None => return Err("unterminated string".into()),
                    Some('\'') if c.get(i + 1) == Some(&'\'') => {
                        v.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(x) => {
                        v.push(*x);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(v));
        } else if ch.is_ascii_digit() || (ch == '-' && c.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            i += 1;
            while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
                i += 1;
            }
            let text: String = c[start..i].iter().collect();
            out.push(Tok::Num(text.parse().map_err(|_| format!("bad number '{text}'"))?));
        } else if ch.is_ascii_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == '.') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            // datetime'...' literal
            if word.eq_ignore_ascii_case("datetime") && c.get(i) == Some(&'\'') {
                continue;
            }
            out.push(Tok::Ident(word));
        } else {
            return Err(format!("unexpected character '{ch}'"));
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
        matches!(self.toks.get(self.pos), Some(Tok::Ident(x)) if x.eq_ignore_ascii_case(w))
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: Tok) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            other => Err(format!("expected {t:?}, got {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.atom()?;
        while self.peek_word("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Expr, String> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.atom()?)));
        }
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                self.expect(Tok::RParen)?;
                Ok(e)
            }
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("substringof") => {
                self.expect(Tok::LParen)?;
                let Some(Tok::Str(needle)) = self.next() else { return Err("substringof needs a string first".into()) };
                self.expect(Tok::Comma)?;
                let Some(Tok::Ident(field)) = self.next() else {
                    return Err("substringof needs a field second".into());
                };
                self.expect(Tok::RParen)?;
                Ok(Expr::Substring { needle, field })
            }
            Some(Tok::Ident(field)) => {
                let Some(Tok::Ident(op)) = self.next() else {
                    return Err(format!("expected an operator after {field}"));
                };
                let op = op.to_ascii_lowercase();
                if !["eq", "ne", "gt", "ge", "lt", "le"].contains(&op.as_str()) {
                    return Err(format!("unsupported operator '{op}'"));
                }
                let value = match self.next() {
                    Some(Tok::Str(s)) => Value::String(s),
                    Some(Tok::Num(n)) => serde_json::Number::from_f64(n).map(Value::Number).unwrap_or(Value::Null),
                    Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
                    Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
                    Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
                    other => return Err(format!("expected a literal, got {other:?}")),
                };
                Ok(Expr::Cmp { field, op, value })
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

/// Parses a `$filter` expression.
pub fn parse(filter: &str) -> Result<Expr, String> {
    let mut p = Parser { toks: lex(filter)?, pos: 0 };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err("trailing tokens".into());
    }
    Ok(e)
}

fn field<'a>(row: &'a Value, name: &str) -> Option<&'a Value> {
    row.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    if let (Some(x), Some(y)) = (as_f64(a), as_f64(b)) {
        return x.partial_cmp(&y);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(std::cmp::Ordering::Equal),
        _ => None,
    }
}

impl Expr {
    /// Whether `row` (a JSON object) matches.
    pub fn matches(&self, row: &Value) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Expr::Or(a, b) => a.matches(row) || b.matches(row),
            Expr::And(a, b) => a.matches(row) && b.matches(row),
            Expr::Not(a) => !a.matches(row),
            Expr::Substring { needle, field: f } => {
                field(row, f).and_then(Value::as_str).is_some_and(|s| s.to_lowercase().contains(&needle.to_lowercase()))
            }
            Expr::Cmp { field: f, op, value } => {
                let v = field(row, f).unwrap_or(&Value::Null);
                let ord = compare(v, value);
                match op.as_str() {
                    "eq" => ord == Some(Equal),
                    "ne" => ord != Some(Equal),
                    "gt" => ord == Some(Greater),
                    "ge" => matches!(ord, Some(Greater | Equal)),
                    "lt" => ord == Some(Less),
                    "le" => matches!(ord, Some(Less | Equal)),
                    _ => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_evaluate() {
        let row = json!({"ServiceDeskTicketId": 979000000000012u64, "Status": "Open", "Description": "x Ticket Bridge reference: tb-K1", "CreatedDate": "2025-01-02T00:00:00"});
        for (f, want) in [
            ("ServiceDeskTicketId eq 979000000000012", true),
            ("ServiceDeskTicketId eq 1 or ServiceDeskTicketId eq 979000000000012", true),
            ("ServiceDeskTicketId eq 1 or ServiceDeskTicketId eq 2", false),
            ("substringof('tb-k1',Description)", true),
            ("substringof('it''s',Description)", false),
            ("Status eq 'open' and not (Status eq 'Closed')", true),
            ("CreatedDate ge DATETIME'2025-01-01T00:00:00'", true),
            ("CreatedDate lt datetime'2025-01-01T00:00:00'", false),
        ] {
            assert_eq!(parse(f).unwrap().matches(&row), want, "{f}");
        }
        for bad in ["Status", "Status like 'x'", "substringof(Description,'x')", "(Status eq 'x'", "Status eq 'x' junk"]
        {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
