//! Local secrets file for `ticket-bridge serve`: one private JSON file holding every secret,
//! `{ "<secret name>": { "<field>": "<value>", ... }, ... }`.
//!
//! The file must not be accessible to group or others (unix mode `0600` or stricter); it is
//! re-read on every `get`, so edits by an operator take effect without a restart. `put` replaces
//! the file atomically (temporary file in the same directory, `fsync`, `rename`) and keeps the
//! other secrets untouched.

use async_trait::async_trait;
use serde_json::{Map, Value};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Mutex;

use super::{Secret, Secrets, SecretsError};

/// Secrets stored in one local JSON file.
#[derive(Debug, Clone)]
pub struct FileSecrets {
    path: Arc<PathBuf>,
    /// Serializes read-modify-write cycles of `put` within this process.
    write_lock: Arc<Mutex<()>>,
}

impl FileSecrets {
    /// Uses the secrets file at `path`. If it exists it must be private and valid JSON; if it
    /// does not, `get` reports `NotFound` and the first `put` creates it with mode `0600`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SecretsError> {
        let path = path.into();
        read_file(&path)?;
        Ok(Self { path: Arc::new(path), write_lock: Arc::new(Mutex::new(())) })
    }

    /// The file this backend reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn blocking<T, F>(&self, name: &str, f: F) -> Result<T, SecretsError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, SecretsError> + Send + 'static,
    {
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || f(&path)).await.map_err(|e| SecretsError::Backend {
            name: name.to_string(),
            reason: format!("secrets file task failed: {e}"),
        })?
    }
}

#[async_trait]
impl Secrets for FileSecrets {
    async fn get(&self, name: &str) -> Result<Secret, SecretsError> {
        let owned = name.to_string();
        self.blocking(name, move |path| {
            let entries = read_file(path)?.unwrap_or_default();
            let entry = entries.get(&owned).ok_or_else(|| SecretsError::NotFound(owned.clone()))?;
            Secret::from_json(&owned, &entry.to_string())
        })
        .await
    }

    async fn put(&self, name: &str, value: &Secret) -> Result<(), SecretsError> {
        let _guard = self.write_lock.lock().await;
        let owned = name.to_string();
        let value = value.clone();
        self.blocking(name, move |path| {
            let mut entries = read_file(path)?.unwrap_or_default();
            let fields = serde_json::to_value(&value).map_err(|_| SecretsError::Backend {
                name: owned.clone(),
                reason: "cannot encode secret as JSON".into(),
            })?;
            entries.insert(owned.clone(), fields);
            write_atomically(path, &Value::Object(entries)).map_err(|e| SecretsError::Backend {
                name: owned,
                reason: format!("cannot write {}: {e}", path.display()),
            })
        })
        .await
    }
}

/// Reads and parses the file; `None` if it does not exist. Refuses files others may access.
fn read_file(path: &Path) -> Result<Option<Map<String, Value>>, SecretsError> {
    let shown = path.display().to_string();
    let io_err =
        |e: io::Error| SecretsError::Backend { name: shown.clone(), reason: format!("cannot read {shown}: {e}") };
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    check_private(path, &meta)?;
    let text = fs::read_to_string(path).map_err(io_err)?;
    let malformed = |reason: String| SecretsError::Malformed { name: shown.clone(), reason };
    if text.trim().is_empty() {
        return Ok(Some(Map::new()));
    }
    // Only the position of a syntax error is reported: serde's messages can quote the input.
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| malformed(format!("invalid JSON in secrets file at line {} column {}", e.line(), e.column())))?;
    match value {
        Value::Object(map) => Ok(Some(map)),
        _ => Err(malformed("secrets file must be a JSON object of secret name -> fields".into())),
    }
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), SecretsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::InsecurePermissions { path: path.display().to_string(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &fs::Metadata) -> Result<(), SecretsError> {
    Ok(())
}

/// Writes `value` to a private temporary file beside `path`, syncs it and renames it over `path`.
fn write_atomically(path: &Path, value: &Value) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        create_private_dir(&dir)?;
    }
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.{}.tmp", std::process::id(), rand::random::<u64>()));
    let mut body = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    body.push(b'\n');
    let result = (|| {
        let mut file = create_private_file(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(&dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    // The umask can only remove bits, but be explicit in case the file system ignores `mode`.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// Makes the rename durable (best effort: not every platform can fsync a directory).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}
