//! A real PostgreSQL server for the shared store's tests: `USHER_TEST_POSTGRES` (`.ci/postgres
//! start DIR` prints it), and a schema and data root per test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use usher_pipeline::SharedStore;

/// The test server, or `None` (printed) on a machine without one; CI requires it.
pub fn server() -> Option<String> {
    match std::env::var("USHER_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("USHER_REQUIRE_POSTGRES").is_none(),
                "USHER_REQUIRE_POSTGRES is set but USHER_TEST_POSTGRES is not: start a server with `.ci/postgres start DIR`"
            );
            eprintln!(
                "SKIPPED: no PostgreSQL server (set USHER_TEST_POSTGRES; `.ci/postgres start DIR` prints one)"
            );
            None
        }
    }
}

/// The root the test server's TLS certificate is signed with: `USHER_TEST_POSTGRES_CA`
/// (`.ci/test` sets it to `.ci/postgres`'s `DIR/tls/ca.crt`), or `None` (printed) when it is
/// not set; required where the server is.
pub fn server_ca() -> Option<PathBuf> {
    match std::env::var_os("USHER_TEST_POSTGRES_CA") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            assert!(
                std::env::var_os("USHER_REQUIRE_POSTGRES").is_none(),
                "USHER_REQUIRE_POSTGRES is set but USHER_TEST_POSTGRES_CA is not: set it to the \
                 server's DIR/tls/ca.crt (`.ci/test` does)"
            );
            eprintln!(
                "SKIPPED: no USHER_TEST_POSTGRES_CA (the test server's DIR/tls/ca.crt, which \
                 `.ci/test` sets)"
            );
            None
        }
    }
}

/// `url` with `schema` as its search path.
pub fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A schema and a data root of the test's own; the schema is dropped at the end.
pub struct Shared {
    pub admin: String,
    pub schema: String,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Shared {
    pub fn new(name: &str) -> Option<Self> {
        Some(Self::on(&server()?, name))
    }

    /// As [`new`](Self::new), on the server `admin` names (one a test started for itself)
    /// rather than the test server.
    pub fn on(admin: &str, name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let admin = admin.to_owned();
        let schema = format!(
            "{name}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap()
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
        Shared {
            url: with_schema(&admin, &schema),
            admin,
            schema,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn runs(&self) -> PathBuf {
        self.dir.path().join("runs")
    }

    pub fn store(&self) -> SharedStore {
        SharedStore::open(&self.url, self.root()).unwrap()
    }

    /// A worker: this test binary running the ignored test `name` (its full name, from
    /// [`test_name!`](super::test_name)) on this store.
    pub fn spawn(&self, name: &str, extra: &[(&str, String)]) -> (Child, mpsc::Receiver<String>) {
        super::spawn_with_lines(&mut self.command(name, extra))
    }

    /// The command of [`spawn`](Self::spawn), not started.
    pub fn command(&self, name: &str, extra: &[(&str, String)]) -> Command {
        let mut command = super::child_test(name);
        command
            .env("USHER_TEST_STORE", &self.url)
            .env("USHER_TEST_ROOT", self.root())
            .env("USHER_TEST_RUNS", self.runs());
        for (k, v) in extra {
            command.env(k, v);
        }
        command
    }

    /// Lets `roles` (comma-separated) use the test's schema.
    pub fn grant(&self, roles: &str) {
        self.sql()
            .batch_execute(&format!("GRANT ALL ON SCHEMA {} TO {roles}", self.schema))
            .unwrap();
    }

    pub fn sql(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema));
        }
    }
}

/// Every file under `dir`, at any depth (none if it does not exist).
pub fn walk(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.insert(path);
        }
    }
    out
}
