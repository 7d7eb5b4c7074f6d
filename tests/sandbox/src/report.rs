//! Results of the reliability tests, one JSON file each under `<target dir>/reliability/`, where
//! `cargo xtask reliability-report` collects them into docs/reliability.md.

use std::path::PathBuf;

/// `$CARGO_TARGET_DIR/reliability`, or the workspace's `target/reliability`.
pub fn dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("reliability")
}

/// Writes `result` as `<name>.json` (characters other than ASCII letters, digits and `-` in
/// `name` become `_`). Panics on I/O errors: callers are tests.
pub fn write(name: &str, result: &serde_json::Value) {
    let dir = dir();
    std::fs::create_dir_all(&dir).expect("create the reliability results directory");
    let file: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    std::fs::write(dir.join(format!("{file}.json")), result.to_string()).expect("write a reliability result");
}
