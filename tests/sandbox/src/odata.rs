//! A small OData v3 `$filter` evaluator (the subset VSA clients use): `Field eq|ne|gt|ge|lt|le
//! literal`, `substringof('text',Field)`, `and`, `or`, `not`, parentheses. Literals: numbers,
//! `'strings'` (`''` escapes a quote), `true`/`false`, `null`, `datetime'…'`.
//!
//! Numeric literals follow Microsoft.Data.OData (the OData v3 library behind VSA's REST API): the
//! suffix picks the type (`L` Int64, `M` Decimal, `d` Double, `f` Single) and an unsuffixed integer
//! is `Edm.Int32`, so one that overflows Int32 is refused with "Unrecognized 'Edm.Int32' literal
//! '…' at '<offset>' in '<filter>'." (text as reported in OData/odata.net issue #1515).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// A numeric literal already typed by its suffix.
    Num(Value),
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
            let suffix = c.get(i).copied().filter(|x| "LlMmDdFf".contains(*x));
            if suffix.is_some() {
                i += 1;
            }
            out.push(Tok::Num(number(&text, suffix, start, s)?));
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

/// Types a numeric literal the way Microsoft.Data.OData (OData v3) does.
fn number(text: &str, suffix: Option<char>, at: usize, filter: &str) -> Result<Value, String> {
    let unrecognized = |edm: &str| format!("Unrecognized '{edm}' literal '{text}' at '{at}' in '{filter}'.");
    let float = |edm: &str| {
        text.parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| unrecognized(edm))
    };
    match suffix.map(|x| x.to_ascii_uppercase()) {
        None if text.contains('.') => float("Edm.Double"),
        None => text.parse::<i32>().map(|n| Value::from(i64::from(n))).map_err(|_| unrecognized("Edm.Int32")),
        Some('L') if text.contains('.') => Err(unrecognized("Edm.Int64")),
        Some('L') => text.parse::<i64>().map(Value::from).map_err(|_| unrecognized("Edm.Int64")),
        Some('M') => {
            // Edm.Decimal holds 28-29 significant digits; integral values are kept exact.
            let digits = text.trim_start_matches('-').replace('.', "");
            if digits.is_empty() || digits.len() > 29 {
                return Err(unrecognized("Edm.Decimal"));
            }
            match (text.parse::<i64>(), text.parse::<u64>()) {
                (Ok(n), _) => Ok(Value::from(n)),
                (_, Ok(n)) => Ok(Value::from(n)),
                _ => float("Edm.Decimal"),
            }
        }
        Some('D') => float("Edm.Double"),
        _ => float("Edm.Single"),
    }
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
                    Some(Tok::Num(n)) => n,
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

impl Expr {
    /// Every field name the expression refers to, as written.
    pub fn fields(&self) -> Vec<&str> {
        match self {
            Expr::Or(a, b) | Expr::And(a, b) => {
                let mut v = a.fields();
                v.extend(b.fields());
                v
            }
            Expr::Not(a) => a.fields(),
            Expr::Cmp { field, .. } | Expr::Substring { field, .. } => vec![field.as_str()],
        }
    }
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

fn as_i128(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    if let (Some(x), Some(y)) = (as_i128(a), as_i128(b)) {
        return Some(x.cmp(&y));
    }
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
            ("ServiceDeskTicketId eq 979000000000012M", true),
            ("ServiceDeskTicketId eq 979000000000012L", true),
            ("ServiceDeskTicketId eq 1M or ServiceDeskTicketId eq 979000000000012M", true),
            ("ServiceDeskTicketId eq 979000000000013M", false),
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

    #[test]
    fn numeric_literals_are_typed_like_odata_v3() {
        let e = parse("ServiceDeskTicketId eq 979000000000012").unwrap_err();
        assert_eq!(
            e,
            "Unrecognized 'Edm.Int32' literal '979000000000012' at '23' in 'ServiceDeskTicketId eq 979000000000012'."
        );
        assert!(parse("X eq 2147483647").is_ok());
        assert!(parse("X eq 2147483648").unwrap_err().contains("'Edm.Int32' literal '2147483648'"));
        assert!(parse("X eq 99999999999999999999L").unwrap_err().contains("'Edm.Int64'"));
        assert!(parse("X eq 12345678901234567890123456M").is_ok(), "26-digit VSA ids fit Edm.Decimal");
        assert!(parse("X eq 123456789012345678901234567890M").is_err());
        assert_eq!(parse("A eq 1 and (substringof('x',B) or not C eq 'y')").unwrap().fields(), vec!["A", "B", "C"]);
    }
}
