//! The layer rule of the `bridge` library: a module may use modules of its own layer or below,
//! never above. Checked by `cargo xtask lint` and by this module's tests.
//!
//! Each top-level module of `shared/src` belongs to one layer; every `crate::<module>` path in its
//! code (comments excluded, `use crate::{a::…, b::…}` groups included) must point at a layer at or
//! below its own.

use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first.
pub const LAYERS: &[&[&str]] = &[
    &["domain", "render"],
    &["config"],
    &["store", "secrets"],
    &["http"],
    &["connectors"],
    &["mapping"],
    &["engine"],
    &["aws"],
];

/// One upward import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub file: String,
    pub line: usize,
    pub from: String,
    pub to: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: `{}` uses `crate::{}`, a higher layer", self.file, self.line, self.from, self.to)
    }
}

/// The layer order as one line, e.g. `domain, render → config → …`.
pub fn order() -> String {
    LAYERS.iter().map(|l| l.join(", ")).collect::<Vec<_>>().join(" → ")
}

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Checks every `.rs` file under `src` (the library's `src` folder).
pub fn check_tree(src: &Path) -> Result<Vec<Violation>> {
    let mut files = Vec::new();
    collect(src, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(src).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        out.extend(check_file(&rel, &text)?);
    }
    Ok(out)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// Checks one file, `rel` being its path relative to `src` (its first component names its module).
/// A top-level module missing from [`LAYERS`] is an error, so a new module must be given a layer.
pub fn check_file(rel: &str, text: &str) -> Result<Vec<Violation>> {
    let first = rel.split('/').next().unwrap_or(rel);
    let module = first.strip_suffix(".rs").unwrap_or(first);
    if module == "lib" {
        return Ok(Vec::new());
    }
    let own = rank(module).with_context(|| {
        format!("shared/src/{rel}: module `{module}` has no layer; add it to LAYERS in xtask/src/layers.rs")
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for target in crate_paths(code) {
            let Some(r) = rank(&target) else { continue };
            if r > own {
                out.push(Violation { file: rel.to_string(), line: i + 1, from: module.to_string(), to: target });
            }
        }
    }
    // `use crate::{…}` groups may span lines: check them on the whole text too.
    for target in grouped_paths(&strip_comments(text)) {
        if rank(&target).is_some_and(|r| r > own) && !out.iter().any(|v| v.to == target) {
            out.push(Violation { file: rel.to_string(), line: 0, from: module.to_string(), to: target });
        }
    }
    Ok(out)
}

fn strip_comments(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Top-level modules named by `crate::<name>` paths on one line (groups excluded).
fn crate_paths(code: &str) -> Vec<String> {
    code.match_indices("crate::")
        .filter(|(i, _)| !preceded_by_ident(code, *i))
        .filter_map(|(i, m)| ident(&code[i + m.len()..]))
        .collect()
}

/// Top-level modules named inside `crate::{ … }` groups (first segment of each item).
fn grouped_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, m) in text.match_indices("crate::{") {
        if preceded_by_ident(text, i) {
            continue;
        }
        let body = &text[i + m.len()..];
        let (mut depth, mut item_start) = (0usize, true);
        for (j, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if item_start && !c.is_whitespace() => {
                    item_start = false;
                    if let Some(name) = ident(&body[j..]) {
                        out.push(name);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn preceded_by_ident(s: &str, i: usize) -> bool {
    s[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
}

fn ident(s: &str) -> Option<String> {
    let name: String = s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_has_no_upward_import() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/src");
        let found = check_tree(&src).unwrap();
        assert!(
            found.is_empty(),
            "upward imports:\n{}",
            found.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n")
        );
    }

    #[test]
    fn an_upward_use_is_found() {
        let v = check_file("http/token.rs", "use crate::connectors::{ConnectorError, TokenKind};\n").unwrap();
        assert_eq!(
            v,
            vec![Violation { file: "http/token.rs".into(), line: 1, from: "http".into(), to: "connectors".into() }]
        );
        let v = check_file("config.rs", "    pub mapping: crate::mapping::MappingSettings,\n").unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].to, "mapping");
    }

    #[test]
    fn grouped_and_multi_line_uses_are_found() {
        let text = "use crate::{\n    domain::Task,\n    engine::Engine,\n};\n";
        let v = check_file("store/sqlite.rs", text).unwrap();
        assert_eq!(v.iter().map(|v| v.to.as_str()).collect::<Vec<_>>(), ["engine"]);
    }

    #[test]
    fn downward_and_same_layer_uses_and_comments_pass() {
        let text = "use crate::domain::Task;\nuse crate::secrets::Secret;\n//! see [`crate::engine::Engine`]\nlet x = 1; // crate::aws\n";
        assert_eq!(check_file("store/mod.rs", text).unwrap(), vec![]);
        assert_eq!(
            check_file("engine/create.rs", "use crate::{config, connectors::Connector, store};").unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_module_without_a_layer_is_an_error() {
        let e = check_file("newthing/mod.rs", "").unwrap_err().to_string();
        assert!(e.contains("`newthing` has no layer"), "{e}");
    }

    #[test]
    fn order_reads_lowest_first() {
        assert!(order().starts_with("domain, render → config → store, secrets → http → connectors"));
    }
}
