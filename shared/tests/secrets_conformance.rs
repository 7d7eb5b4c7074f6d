//! One behaviour suite for every `Secrets` backend: the local file and AWS Secrets Manager
//! (over the wire against `moto_server`; set `TB_AWS_ENDPOINT`, or run `cargo xtask test`).

use bridge::secrets::file::FileSecrets;
use bridge::secrets::{Secret, Secrets, SecretsError};
use std::sync::Arc;

const SENTINEL: &str = "SENTINEL-do-not-print-7f3a";

/// What a backend under test provides.
trait Harness: Sized {
    async fn setup() -> Self;
    /// The backend instance under test.
    fn secrets(&self) -> Arc<dyn Secrets>;
    /// A second, independent instance over the same storage (no shared cache).
    async fn reopen(&self) -> Arc<dyn Secrets>;
    /// A secret name unique to this test run.
    fn name(&self, base: &str) -> String;
    /// Stores `json` as the raw value of secret `name`, bypassing `Secret` validation.
    async fn put_raw(&self, name: &str, json: &str);
}

fn secret(pairs: &[(&str, &str)]) -> Secret {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn assert_not_leaking(err: &SecretsError) {
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains(SENTINEL), "error leaks a secret value: {shown}");
}

async fn get_missing_is_not_found<H: Harness>(h: H) {
    let name = h.name("missing");
    match h.secrets().get(&name).await {
        Err(SecretsError::NotFound(n)) => assert_eq!(n, name),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

async fn put_then_get_roundtrips<H: Harness>(h: H) {
    let name = h.name("roundtrip");
    let value = secret(&[
        ("username", "api-user@example.com"),
        ("password", "p\"a\\s s\nw0rd ünïcödé {}"),
        ("access_token_expires_at", "2030-01-01T00:00:00Z"),
    ]);
    h.secrets().put(&name, &value).await.unwrap();
    assert_eq!(h.secrets().get(&name).await.unwrap(), value);
    assert_eq!(h.reopen().await.get(&name).await.unwrap(), value, "not persisted");
}

async fn new_version_replaces_old<H: Harness>(h: H) {
    let name = h.name("versioned");
    let s = h.secrets();
    let v1 = secret(&[("access_token", "old-token"), ("refresh_token", "old-refresh")]);
    let v2 = secret(&[("access_token", "new-token"), ("scope", "tickets")]);
    s.put(&name, &v1).await.unwrap();
    assert_eq!(s.get(&name).await.unwrap(), v1); // warms any cache
    s.put(&name, &v2).await.unwrap();
    let got = s.get(&name).await.unwrap();
    assert_eq!(got, v2, "same instance must see its own write");
    assert_eq!(got.get("refresh_token"), None, "a new version replaces all fields");
    assert_eq!(h.reopen().await.get(&name).await.unwrap(), v2);
}

async fn secrets_are_independent<H: Harness>(h: H) {
    let (a, b) = (h.name("conn-a"), h.name("conn-b"));
    let s = h.secrets();
    let va = secret(&[("password", "alpha")]);
    let vb = secret(&[("password", "bravo")]);
    s.put(&a, &va).await.unwrap();
    s.put(&b, &vb).await.unwrap();
    let va2 = secret(&[("password", "alpha-2")]);
    s.put(&a, &va2).await.unwrap();
    assert_eq!(s.get(&a).await.unwrap(), va2);
    assert_eq!(s.get(&b).await.unwrap(), vb);
    let fresh = h.reopen().await;
    assert_eq!(fresh.get(&a).await.unwrap(), va2);
    assert_eq!(fresh.get(&b).await.unwrap(), vb);
}

async fn concurrent_puts_all_persist<H: Harness>(h: H) {
    let s = h.secrets();
    let names: Vec<String> = (0..12).map(|i| h.name(&format!("parallel-{i}"))).collect();
    let tasks: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (s, name) = (Arc::clone(&s), name.clone());
            tokio::spawn(async move { s.put(&name, &secret(&[("n", &i.to_string())])).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let fresh = h.reopen().await;
    for (i, name) in names.iter().enumerate() {
        assert_eq!(fresh.get(name).await.unwrap().get("n"), Some(i.to_string().as_str()), "{name} lost");
    }
}

async fn errors_never_show_values<H: Harness>(h: H) {
    let s = h.secrets();
    let good = h.name("good");
    s.put(&good, &secret(&[("password", SENTINEL)])).await.unwrap();
    let got = s.get(&good).await.unwrap();
    assert!(!format!("{got:?}").contains(SENTINEL), "Secret Debug leaks");
    let missing_field = got.require(&good, "token").unwrap_err();
    assert_not_leaking(&missing_field);

    let nested = h.name("nested");
    h.put_raw(&nested, &format!(r#"{{"user": "u", "password": {{"inner": "{SENTINEL}"}}}}"#)).await;
    let err = s.get(&nested).await.unwrap_err();
    assert!(matches!(err, SecretsError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("password"), "should name the bad field: {err}");
    assert_not_leaking(&err);

    let list = h.name("list");
    h.put_raw(&list, &format!(r#"{{"token": ["{SENTINEL}"]}}"#)).await;
    let err = s.get(&list).await.unwrap_err();
    assert!(matches!(err, SecretsError::Malformed { .. }), "{err:?}");
    assert_not_leaking(&err);

    let err = s.get(&h.name("absent")).await.unwrap_err();
    assert_not_leaking(&err);
}

/// Instantiates the shared suite for one backend.
macro_rules! conformance_suite {
    ($module:ident, $harness:ty) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn get_missing_is_not_found() {
                super::get_missing_is_not_found(<$harness>::setup().await).await;
            }
            #[tokio::test]
            async fn put_then_get_roundtrips() {
                super::put_then_get_roundtrips(<$harness>::setup().await).await;
            }
            #[tokio::test]
            async fn new_version_replaces_old() {
                super::new_version_replaces_old(<$harness>::setup().await).await;
            }
            #[tokio::test]
            async fn secrets_are_independent() {
                super::secrets_are_independent(<$harness>::setup().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_puts_all_persist() {
                super::concurrent_puts_all_persist(<$harness>::setup().await).await;
            }
            #[tokio::test]
            async fn errors_never_show_values() {
                super::errors_never_show_values(<$harness>::setup().await).await;
            }
        }
    };
}

// ---------------------------------------------------------------- local file

struct FileHarness {
    dir: tempfile::TempDir,
    secrets: Arc<FileSecrets>,
}

impl FileHarness {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("secrets.json")
    }
}

impl Harness for FileHarness {
    async fn setup() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Arc::new(FileSecrets::open(dir.path().join("secrets.json")).unwrap());
        Self { dir, secrets }
    }
    fn secrets(&self) -> Arc<dyn Secrets> {
        self.secrets.clone()
    }
    async fn reopen(&self) -> Arc<dyn Secrets> {
        Arc::new(FileSecrets::open(self.path()).unwrap())
    }
    fn name(&self, base: &str) -> String {
        format!("ticket-bridge/{base}")
    }
    async fn put_raw(&self, name: &str, json: &str) {
        let path = self.path();
        let mut all: serde_json::Map<String, serde_json::Value> = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap(),
            Err(_) => Default::default(),
        };
        all.insert(name.to_string(), serde_json::from_str(json).unwrap());
        write_file(&path, &serde_json::to_string(&all).unwrap(), 0o600);
    }
}

fn write_file(path: &std::path::Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

conformance_suite!(file, FileHarness);

mod file_only {
    use super::*;

    #[test]
    fn readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        write_file(&path, r#"{"conn": {"password": "x"}}"#, 0o644);
        let err = FileSecrets::open(&path).unwrap_err();
        assert!(matches!(err, SecretsError::InsecurePermissions { mode: 0o644, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    #[tokio::test]
    async fn permissions_are_checked_on_every_access() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let s = FileSecrets::open(&path).unwrap();
        s.put("conn", &secret(&[("password", "x")])).await.unwrap();
        for mode in [0o640, 0o604, 0o620, 0o601] {
            write_file(&path, r#"{"conn": {"password": "x"}}"#, mode);
            let err = s.get("conn").await.unwrap_err();
            assert!(matches!(err, SecretsError::InsecurePermissions { .. }), "mode {mode:o}: {err:?}");
            let err = s.put("other", &secret(&[("a", "b")])).await.unwrap_err();
            assert!(matches!(err, SecretsError::InsecurePermissions { .. }), "mode {mode:o}: {err:?}");
            assert_eq!(mode_of(&path), mode, "refused put must not touch the file");
        }
        write_file(&path, r#"{"conn": {"password": "x"}}"#, 0o400);
        assert_eq!(s.get("conn").await.unwrap().get("password"), Some("x"));
    }

    #[tokio::test]
    async fn created_file_is_private_and_no_temp_files_remain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("secrets.json");
        let s = FileSecrets::open(&path).unwrap();
        assert!(!path.exists(), "open must not create the file");
        assert!(matches!(s.get("conn").await, Err(SecretsError::NotFound(_))));
        s.put("conn", &secret(&[("password", "one")])).await.unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(path.parent().unwrap()) & 0o077, 0, "created directory is private");
        s.put("conn", &secret(&[("password", "two")])).await.unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(entries, vec!["secrets.json".to_string()]);
        let on_disk: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(on_disk, serde_json::json!({"conn": {"password": "two"}}));
    }

    #[tokio::test]
    async fn malformed_file_is_reported_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let broken = format!("{{\"conn\": {{\"password\": \"{SENTINEL}\"\n");
        write_file(&path, &broken, 0o600);
        let err = FileSecrets::open(&path).unwrap_err();
        assert!(matches!(err, SecretsError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        assert_not_leaking(&err);

        // A file that turns bad after start-up: get reports it, put refuses to overwrite it.
        write_file(&path, "{}", 0o600);
        let s = FileSecrets::open(&path).unwrap();
        write_file(&path, &broken, 0o600);
        let err = s.get("conn").await.unwrap_err();
        assert!(matches!(err, SecretsError::Malformed { .. }), "{err:?}");
        assert_not_leaking(&err);
        let err = s.put("other", &secret(&[("a", "b")])).await.unwrap_err();
        assert_not_leaking(&err);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), broken, "put must not clobber a broken file");

        write_file(&path, &format!("[\"{SENTINEL}\"]"), 0o600);
        let err = s.get("conn").await.unwrap_err();
        assert!(matches!(err, SecretsError::Malformed { .. }), "{err:?}");
        assert_not_leaking(&err);
    }

    #[tokio::test]
    async fn external_edits_are_seen_without_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let s = FileSecrets::open(&path).unwrap();
        s.put("conn", &secret(&[("password", "old")])).await.unwrap();
        write_file(&path, r#"{"conn": {"password": "rotated", "port": 8443}}"#, 0o600);
        let got = s.get("conn").await.unwrap();
        assert_eq!(got.get("password"), Some("rotated"));
        assert_eq!(got.get("port"), Some("8443"));
    }
}

// ---------------------------------------------------------------- AWS Secrets Manager (moto)

#[cfg(feature = "aws-secrets")]
mod aws_backend {
    use super::*;
    use bridge::secrets::aws::AwsSecrets;
    use std::time::Duration;

    pub async fn client() -> aws_sdk_secretsmanager::Client {
        let endpoint = std::env::var(bridge::aws::ENDPOINT_ENV).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
            panic!(
                "{} is not set: these tests need moto_server. Run `cargo xtask test`, or start \
                 `.venv/bin/moto_server -H 127.0.0.1 -p 5123` and export {}=http://127.0.0.1:5123",
                bridge::aws::ENDPOINT_ENV,
                bridge::aws::ENDPOINT_ENV
            )
        });
        aws_sdk_secretsmanager::Client::new(&bridge::aws::sdk_config(Some(&endpoint)).await)
    }

    pub struct AwsHarness {
        prefix: String,
        raw: aws_sdk_secretsmanager::Client,
        secrets: Arc<AwsSecrets>,
    }

    impl Harness for AwsHarness {
        async fn setup() -> Self {
            let raw = client().await;
            let secrets = Arc::new(AwsSecrets::new(raw.clone(), Duration::from_secs(60)));
            Self { prefix: format!("tb-test/{}", ulid::Ulid::new()), raw, secrets }
        }
        fn secrets(&self) -> Arc<dyn Secrets> {
            self.secrets.clone()
        }
        async fn reopen(&self) -> Arc<dyn Secrets> {
            Arc::new(AwsSecrets::new(client().await, Duration::from_secs(60)))
        }
        fn name(&self, base: &str) -> String {
            format!("{}/{base}", self.prefix)
        }
        async fn put_raw(&self, name: &str, json: &str) {
            self.raw.create_secret().name(name).secret_string(json).send().await.unwrap();
        }
    }

    conformance_suite!(aws, AwsHarness);

    /// A second instance without a cache, standing in for another Lambda environment.
    async fn other_writer() -> AwsSecrets {
        AwsSecrets::new(client().await, Duration::ZERO)
    }

    #[tokio::test]
    async fn cache_serves_repeated_gets_until_invalidated() {
        let h = AwsHarness::setup().await;
        let name = h.name("cached");
        let (v1, v2) = (secret(&[("access_token", "one")]), secret(&[("access_token", "two")]));
        h.secrets.put(&name, &v1).await.unwrap();
        assert_eq!(h.secrets.get(&name).await.unwrap(), v1);
        let other = other_writer().await;
        other.put(&name, &v2).await.unwrap();
        assert_eq!(other.get(&name).await.unwrap(), v2, "the remote value changed");
        // Served from the cache: a network read would have returned v2.
        assert_eq!(h.secrets.get(&name).await.unwrap(), v1);
        h.secrets.invalidate(&name);
        assert_eq!(h.secrets.get(&name).await.unwrap(), v2);
    }

    #[tokio::test]
    async fn cache_entries_expire_after_the_ttl() {
        let h = AwsHarness::setup().await;
        let name = h.name("expiring");
        let s = AwsSecrets::new(client().await, Duration::from_millis(300));
        s.put(&name, &secret(&[("v", "1")])).await.unwrap();
        other_writer().await.put(&name, &secret(&[("v", "2")])).await.unwrap();
        assert_eq!(s.get(&name).await.unwrap().get("v"), Some("1"), "cached after put");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(s.get(&name).await.unwrap().get("v"), Some("2"), "expired entry re-read");
    }

    #[tokio::test]
    async fn zero_ttl_disables_the_cache() {
        let h = AwsHarness::setup().await;
        let name = h.name("uncached");
        let s = AwsSecrets::new(client().await, Duration::ZERO);
        s.put(&name, &secret(&[("v", "1")])).await.unwrap();
        assert_eq!(s.get(&name).await.unwrap().get("v"), Some("1"));
        other_writer().await.put(&name, &secret(&[("v", "2")])).await.unwrap();
        assert_eq!(s.get(&name).await.unwrap().get("v"), Some("2"));
    }

    #[tokio::test]
    async fn binary_secret_is_malformed() {
        let h = AwsHarness::setup().await;
        let name = h.name("binary");
        h.raw
            .create_secret()
            .name(&name)
            .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(SENTINEL.as_bytes()))
            .send()
            .await
            .unwrap();
        let err = h.secrets.get(&name).await.unwrap_err();
        assert!(matches!(err, SecretsError::Malformed { .. }), "{err:?}");
        assert_not_leaking(&err);
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_a_backend_error_without_values() {
        // Port 1 on loopback refuses connections; no retries so the test stays fast.
        let conf =
            aws_sdk_secretsmanager::config::Builder::from(&bridge::aws::sdk_config(Some("http://127.0.0.1:1")).await)
                .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
                .build();
        let s = AwsSecrets::new(aws_sdk_secretsmanager::Client::from_conf(conf), Duration::from_secs(60));
        let err = s.get("conn").await.unwrap_err();
        match &err {
            SecretsError::Backend { name, reason } => {
                assert_eq!(name, "conn");
                assert!(reason.starts_with("GetSecretValue: dispatch failure"), "{reason}");
            }
            other => panic!("expected Backend, got {other:?}"),
        }
        let err = s.put("conn", &secret(&[("password", SENTINEL)])).await.unwrap_err();
        assert!(matches!(err, SecretsError::Backend { .. }), "{err:?}");
        assert_not_leaking(&err);
    }
}
