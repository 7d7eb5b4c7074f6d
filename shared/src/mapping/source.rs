//! Upstream organization and user lists, from CSV (with a header row) or JSON.
//!
//! Organizations: `id, name[, contact_name, contact_email, user_count]`.
//! Users: `email[, name, org_id]`.
//! JSON is an array of objects with those fields, or `{"organizations": [...]}` /
//! `{"users": [...]}`. Errors name the line (CSV) or element (JSON) and the field.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// A list entry that could not be read, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{location}: {message}")]
pub struct SourceError {
    /// `line 4, column 'name'` / `organizations[3].user_count` / `header`.
    pub location: String,
    pub message: String,
}

impl SourceError {
    fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self { location: location.into(), message: message.into() }
    }
}

/// How a list is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    /// JSON when the text starts (after whitespace / BOM) with `[` or `{`, else CSV.
    pub fn sniff(text: &str) -> Self {
        match text.trim_start_matches('\u{feff}').trim_start().chars().next() {
            Some('[' | '{') => Self::Json,
            _ => Self::Csv,
        }
    }

    /// From a file name's extension, falling back to [`Format::sniff`].
    pub fn for_file(path: &std::path::Path, text: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("json") => Self::Json,
            Some("csv") => Self::Csv,
            _ => Self::sniff(text),
        }
    }
}

/// An upstream organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamOrg {
    pub id: String,
    pub name: String,
    /// Name of the customer's default ticket contact (looked up, or created with the customer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_email: Option<String>,
    /// Users the organization has (the billed quantity of its contract service line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_count: Option<u64>,
}

/// An upstream user (matched to a contact by e-mail address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamUser {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
}

const ORG_FIELDS: [&str; 5] = ["id", "name", "contact_name", "contact_email", "user_count"];
const USER_FIELDS: [&str; 3] = ["email", "name", "org_id"];

/// One entry's fields by name, and where it came from.
struct Row {
    location: Box<dyn Fn(&str) -> String>,
    fields: HashMap<String, String>,
}

impl Row {
    fn opt(&self, field: &str) -> Option<String> {
        self.fields.get(field).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn required(&self, field: &str) -> Result<String, SourceError> {
        self.opt(field).ok_or_else(|| SourceError::new((self.location)(field), "must not be empty"))
    }

    fn count(&self, field: &str) -> Result<Option<u64>, SourceError> {
        match self.opt(field) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| SourceError::new((self.location)(field), format!("'{}' is not a whole number", clip(&v)))),
        }
    }

    fn email(&self, field: &str, required: bool) -> Result<Option<String>, SourceError> {
        let v = if required { Some(self.required(field)?) } else { self.opt(field) };
        match v {
            Some(e) if !plausible_email(&e) => {
                Err(SourceError::new((self.location)(field), format!("'{}' is not an e-mail address", clip(&e))))
            }
            other => Ok(other),
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// `local@domain` with no whitespace.
fn plausible_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((l, d)) => !l.is_empty() && !d.is_empty() && !d.contains('@') && !e.chars().any(char::is_whitespace),
        None => false,
    }
}

/// Parses an organization list.
pub fn parse_orgs(text: &str, format: Format) -> Result<Vec<UpstreamOrg>, SourceError> {
    let rows = rows(text, format, &ORG_FIELDS, &["id", "name"], "organizations")?;
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let org = UpstreamOrg {
            id: row.required("id")?,
            name: row.required("name")?,
            contact_name: row.opt("contact_name"),
            contact_email: row.email("contact_email", false)?,
            user_count: row.count("user_count")?,
        };
        let here = (row.location)("id");
        if let Some(first) = seen.insert(org.id.clone(), here.clone()) {
            return Err(SourceError::new(here, format!("duplicate id '{}' (first at {first})", clip(&org.id))));
        }
        out.push(org);
    }
    Ok(out)
}

/// Parses a user list (addresses are kept as given; matching normalizes them).
pub fn parse_users(text: &str, format: Format) -> Result<Vec<UpstreamUser>, SourceError> {
    let rows = rows(text, format, &USER_FIELDS, &["email"], "users")?;
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let email = row.email("email", true)?.unwrap_or_default();
        let here = (row.location)("email");
        if let Some(first) = seen.insert(crate::domain::UserMapping::key(&email), here.clone()) {
            return Err(SourceError::new(here, format!("duplicate address '{}' (first at {first})", clip(&email))));
        }
        out.push(UpstreamUser { email, name: row.opt("name"), org_id: row.opt("org_id") });
    }
    Ok(out)
}

fn rows(text: &str, format: Format, known: &[&str], required: &[&str], list: &str) -> Result<Vec<Row>, SourceError> {
    let text = text.trim_start_matches('\u{feff}');
    match format {
        Format::Csv => csv_rows(text, known, required),
        Format::Json => json_rows(text, known, list),
    }
}

fn csv_rows(text: &str, known: &[&str], required: &[&str]) -> Result<Vec<Row>, SourceError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(false).from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| SourceError::new("header", csv_message(&e)))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for (i, h) in headers.iter().enumerate() {
        if !known.contains(&h.as_str()) {
            return Err(SourceError::new(
                format!("header, column {}", i + 1),
                format!("unknown column '{}' (expected: {})", clip(h), known.join(", ")),
            ));
        }
        if headers[..i].contains(h) {
            return Err(SourceError::new(format!("header, column {}", i + 1), format!("column '{h}' appears twice")));
        }
    }
    for r in required {
        if !headers.iter().any(|h| h == r) {
            return Err(SourceError::new("header", format!("missing column '{r}' (found: {})", headers.join(", "))));
        }
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            SourceError::new(format!("line {line}"), csv_message(&e))
        })?;
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let fields = headers.iter().cloned().zip(record.iter().map(str::to_string)).collect();
        out.push(Row { location: Box::new(move |f| format!("line {line}, column '{f}'")), fields });
    }
    Ok(out)
}

fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => e.to_string(),
    }
}

fn json_rows(text: &str, known: &[&str], list: &str) -> Result<Vec<Row>, SourceError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        SourceError::new(format!("line {}, column {}", e.line(), e.column()), format!("invalid JSON: {e}"))
    })?;
    let items = match value {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove(list) {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(SourceError::new(list, "must be an array")),
            None => {
                return Err(SourceError::new("(top level)", format!("expected an array or an object with '{list}'")));
            }
        },
        _ => {
            return Err(SourceError::new("(top level)", format!("expected an array or an object with '{list}'")));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(SourceError::new(format!("{list}[{i}]"), "must be an object"));
        };
        let mut fields = HashMap::new();
        for (k, v) in obj {
            let at = format!("{list}[{i}].{k}");
            if !known.contains(&k.as_str()) {
                return Err(SourceError::new(at, format!("unknown field (expected: {})", known.join(", "))));
            }
            let text = match v {
                Value::Null => continue,
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                _ => return Err(SourceError::new(at, "must be a string or a number")),
            };
            fields.insert(k, text);
        }
        let list = list.to_string();
        out.push(Row { location: Box::new(move |f| format!("{list}[{i}].{f}")), fields });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_all_columns_in_any_order() {
        let text = "\u{feff}name,id,user_count,contact_email,contact_name\n\"Acme, Inc.\",org-1,12,help@acme.io,Help Desk\n Globex ,org-2,,,\n\n";
        let orgs = parse_orgs(text, Format::sniff(text)).unwrap();
        assert_eq!(orgs.len(), 2);
        assert_eq!(orgs[0].name, "Acme, Inc.");
        assert_eq!(orgs[0].user_count, Some(12));
        assert_eq!(orgs[0].contact_email.as_deref(), Some("help@acme.io"));
        assert_eq!(orgs[0].contact_name.as_deref(), Some("Help Desk"));
        assert_eq!(
            orgs[1],
            UpstreamOrg {
                id: "org-2".into(),
                name: "Globex".into(),
                contact_name: None,
                contact_email: None,
                user_count: None
            }
        );
    }

    #[test]
    fn csv_errors_name_line_and_column() {
        let e = parse_orgs("id,name\norg-1,Acme\norg-2,\n", Format::Csv).unwrap_err();
        assert_eq!(e.location, "line 3, column 'name'");
        let e = parse_orgs("id,name,user_count\norg-1,Acme,many\n", Format::Csv).unwrap_err();
        assert_eq!(e.to_string(), "line 2, column 'user_count': 'many' is not a whole number");
        let e = parse_orgs("id,name\norg-1,Acme\norg-1,Other\n", Format::Csv).unwrap_err();
        assert_eq!(e.location, "line 3, column 'id'");
        assert!(e.message.contains("first at line 2"), "{e}");
        let e = parse_orgs("id,nmae\norg-1,Acme\n", Format::Csv).unwrap_err();
        assert!(e.location.starts_with("header") && e.message.contains("unknown column 'nmae'"), "{e}");
        let e = parse_orgs("id\norg-1\n", Format::Csv).unwrap_err();
        assert!(e.message.contains("missing column 'name'"), "{e}");
        let e = parse_orgs("id,name\norg-1,Acme,extra\n", Format::Csv).unwrap_err();
        assert_eq!(e.location, "line 2");
        assert!(e.message.contains("3 fields"), "{e}");
        let e = parse_orgs("id,name,contact_email\norg-1,Acme,not-an-address\n", Format::Csv).unwrap_err();
        assert_eq!(e.location, "line 2, column 'contact_email'");
    }

    #[test]
    fn json_array_or_wrapped_with_errors_naming_the_element() {
        let text = r#"{"organizations": [{"id": 7, "name": "Acme", "user_count": 3}, {"id": "b", "name": "Globex", "contact_name": null}]}"#;
        assert_eq!(Format::sniff(text), Format::Json);
        let orgs = parse_orgs(text, Format::Json).unwrap();
        assert_eq!(orgs[0].id, "7");
        assert_eq!(orgs[0].user_count, Some(3));
        assert_eq!(orgs[1].contact_name, None);
        let e = parse_orgs(r#"[{"id":"a","name":"A"},{"id":"b"}]"#, Format::Json).unwrap_err();
        assert_eq!(e.location, "organizations[1].name");
        let e = parse_orgs(r#"[{"id":"a","name":"A","color":"red"}]"#, Format::Json).unwrap_err();
        assert_eq!(e.location, "organizations[0].color");
        let e = parse_orgs(r#"[{"id":"a","name":["A"]}]"#, Format::Json).unwrap_err();
        assert_eq!(e.location, "organizations[0].name");
        let e = parse_orgs(r#"[{"id":"a","name":"A","user_count":-1}]"#, Format::Json).unwrap_err();
        assert_eq!(e.location, "organizations[0].user_count");
        let e = parse_orgs("[{\"id\":\"a\",\n \"name\": }]", Format::Json).unwrap_err();
        assert!(e.location.starts_with("line 2"), "{e}");
        let e = parse_orgs(r#"{"orgs": []}"#, Format::Json).unwrap_err();
        assert!(e.message.contains("'organizations'"), "{e}");
    }

    #[test]
    fn users_need_unique_plausible_addresses() {
        let users =
            parse_users("email,name,org_id\nAda@Example.com,Ada,org-1\nbob@example.com,,\n", Format::Csv).unwrap();
        assert_eq!(users[0].email, "Ada@Example.com");
        assert_eq!(users[1], UpstreamUser { email: "bob@example.com".into(), name: None, org_id: None });
        let e = parse_users("email\nada@example.com\nADA@example.com\n", Format::Csv).unwrap_err();
        assert_eq!(e.location, "line 3, column 'email'");
        let e = parse_users(r#"{"users":[{"email":"nobody"}]}"#, Format::Json).unwrap_err();
        assert_eq!(e.location, "users[0].email");
    }

    #[test]
    fn format_from_file_name() {
        assert_eq!(Format::for_file(std::path::Path::new("a.JSON"), "id,name"), Format::Json);
        assert_eq!(Format::for_file(std::path::Path::new("a.txt"), "  [ ]"), Format::Json);
        assert_eq!(Format::for_file(std::path::Path::new("orgs"), "id,name"), Format::Csv);
    }
}
