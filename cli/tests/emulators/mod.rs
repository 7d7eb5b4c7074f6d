//! Emulators of the identity platforms that call Ticket Bridge, driven by the recipe files in
//! `docs/integrations/` exactly as a user copies them (only the base URL and the API key change).
#![allow(dead_code)]

pub mod sailpoint;
pub mod saviynt;

use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The host the recipes use for Ticket Bridge; a user replaces it with their own URL.
pub const RECIPE_BASE: &str = "https://ticket-bridge.example.com";
/// The placeholder the recipes use for the API key.
pub const RECIPE_KEY: &str = "<api-key>";

/// A recipe file under `docs/integrations/`.
pub fn recipe_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/integrations").join(rel)
}

pub fn read_recipe(rel: &str) -> String {
    std::fs::read_to_string(recipe_path(rel)).unwrap_or_else(|e| panic!("recipe file {rel}: {e}"))
}

pub fn recipe_json(rel: &str) -> Value {
    serde_json::from_str(&read_recipe(rel)).unwrap_or_else(|e| panic!("recipe file {rel} is not JSON: {e}"))
}

/// The user's only edits: their Ticket Bridge URL and API key.
pub fn localize(text: &str, base: &str, key: &str) -> String {
    text.replace(RECIPE_BASE, base.trim_end_matches('/')).replace(RECIPE_KEY, key)
}

/// Requests an emulator sent and what it saw, in order; repeats of the same line are counted.
#[derive(Clone, Default)]
pub struct Transcript(Arc<Mutex<Vec<(String, u32)>>>);

impl Transcript {
    pub fn push(&self, line: impl Into<String>) {
        let line = line.into();
        let mut lines = self.0.lock().unwrap();
        match lines.last_mut() {
            Some((last, n)) if *last == line => *n += 1,
            _ => lines.push((line, 1)),
        }
    }

    pub fn text(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(l, n)| if *n > 1 { format!("{l}   (x{n})\n") } else { format!("{l}\n") })
            .collect()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.0.lock().unwrap().iter().any(|(l, _)| l.contains(needle))
    }
}

/// A dotted path with optional `[n]` indexes (`status.name`, `Ticket[0].State`), as Saviynt's
/// `ticketidPath` / `ticketStatusPath` and SailPoint's `$.a.b` response elements use.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            let n: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = cur.get(n)?;
        }
    }
    Some(cur)
}

/// A value as the text a caller compares (strings unquoted).
pub fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
