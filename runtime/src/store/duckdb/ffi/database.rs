//! [`Database`]: the owner of a `duckdb_database`, opened through the process's instance cache.

use std::ffi::{CString, c_char};
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;

use libduckdb_sys as sys;

use super::error::{DuckError, DuckdbErrorKind, kind_of};
use super::{message, usher_open_from_cache};

/// An open DuckDB database (the instance, shared by its connections).
pub(crate) struct Database {
    raw: sys::duckdb_database,
}

// SAFETY: a DuckDB database instance is internally synchronised; the C API documents opening
// several connections to one database from different threads.
unsafe impl Send for Database {}
// SAFETY: as for Send; `&Database` only ever reads `raw` to connect.
unsafe impl Sync for Database {}

/// The process's DuckDB instance cache. Without it, two opens of one file in one process would
/// start two DuckDB instances on it (file locks are per process, so DuckDB would not refuse),
/// each unaware of the other's writes. With it they share one instance; the instance closes
/// when its last handle does.
struct InstanceCache(sys::duckdb_instance_cache);

// SAFETY: DuckDB's instance cache guards its map with a mutex; the handle is only passed to the
// open call and never destroyed (it lives as long as the process).
unsafe impl Send for InstanceCache {}
// SAFETY: as for Send.
unsafe impl Sync for InstanceCache {}

fn instance_cache() -> sys::duckdb_instance_cache {
    static CACHE: OnceLock<InstanceCache> = OnceLock::new();
    CACHE
        // SAFETY: creating the cache has no preconditions.
        .get_or_init(|| InstanceCache(unsafe { sys::duckdb_create_instance_cache() }))
        .0
}

/// The owner of a `duckdb_config` while the options are set.
struct Config(sys::duckdb_config);

impl Drop for Config {
    fn drop(&mut self) {
        // SAFETY: created by duckdb_create_config, destroyed once (null is allowed).
        unsafe { sys::duckdb_destroy_config(&mut self.0) }
    }
}

impl Database {
    /// Opens (or creates) the database file with the given start-up options, sharing the
    /// instance with any other open handle on the same file in this process. A file another
    /// process holds fails with [`DuckdbErrorKind::LockConflict`].
    pub fn open(path: &Path, options: &[(&str, &str)]) -> Result<Self, DuckError> {
        let invalid = |m: String| DuckError::new(DuckdbErrorKind::InvalidInput, m);
        let c_path = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| invalid("the path contains a NUL byte".to_owned()))?;
        let mut config = Config(ptr::null_mut());
        // SAFETY: an out-pointer to a local; the config is owned (and destroyed) by `Config`.
        if unsafe { sys::duckdb_create_config(&mut config.0) } != sys::DuckDBSuccess {
            return Err(DuckError::new(
                DuckdbErrorKind::OutOfMemory,
                "cannot allocate a DuckDB config",
            ));
        }
        for (name, value) in options {
            let (n, v) = (
                CString::new(*name).map_err(|_| invalid(format!("option {name:?}")))?,
                CString::new(*value).map_err(|_| invalid(format!("value {value:?}")))?,
            );
            // SAFETY: the config is live; both strings are NUL-terminated and outlive the call.
            if unsafe { sys::duckdb_set_config(config.0, n.as_ptr(), v.as_ptr()) }
                != sys::DuckDBSuccess
            {
                return Err(invalid(format!("invalid DuckDB option {name} = {value:?}")));
            }
        }
        let mut raw: sys::duckdb_database = ptr::null_mut();
        let mut error: *mut c_char = ptr::null_mut();
        let mut error_type = sys::duckdb_error_type_DUCKDB_ERROR_INVALID;
        // SAFETY: the cache lives as long as the process, the path and config are live, and the
        // out-pointers are locals. DuckDB copies the config, so it may be destroyed afterwards.
        let state = unsafe {
            usher_open_from_cache(
                instance_cache(),
                c_path.as_ptr(),
                &mut raw,
                config.0,
                &mut error,
                &mut error_type,
            )
        };
        if state == sys::DuckDBSuccess {
            return Ok(Database { raw });
        }
        // SAFETY: on failure the shim sets `error` to a strdup'ed message (or leaves it null),
        // which is copied and then freed once.
        let text = unsafe {
            let text = message(error, "unknown error");
            if !error.is_null() {
                sys::duckdb_free(error.cast());
            }
            text
        };
        let mut kind = kind_of(error_type);
        let read_only = options.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("access_mode") && v.eq_ignore_ascii_case("read_only")
        });
        if kind == DuckdbErrorKind::Io && lock::held_by_another_process(path, !read_only) {
            kind = DuckdbErrorKind::LockConflict;
        }
        Err(DuckError::new(kind, text))
    }

    /// The raw handle, for [`Connection::connect`](super::Connection::connect) only.
    pub(super) fn raw(&self) -> sys::duckdb_database {
        self.raw
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // SAFETY: `raw` came from the open call; every Connection holds an Arc to this Database,
        // so none is left when this handle closes.
        unsafe { sys::duckdb_close(&mut self.raw) }
    }
}

/// Whether another process holds a lock on a file: what DuckDB's own lock attempt ran into.
///
/// Read from the kernel's lock table (`/proc/locks`) rather than by probing with `fcntl`:
/// closing any descriptor of a file drops every POSIX lock this process holds on it, so opening
/// the store file to probe it could release a lock DuckDB holds for this very process.
mod lock {
    use std::path::Path;

    #[cfg(target_os = "linux")]
    pub(super) fn held_by_another_process(path: &Path, write: bool) -> bool {
        use std::os::unix::fs::MetadataExt;
        let (Ok(meta), Ok(table)) = (
            std::fs::metadata(path),
            std::fs::read_to_string("/proc/locks"),
        ) else {
            return false;
        };
        let dev = meta.dev();
        // glibc's gnu_dev_major / gnu_dev_minor: the numbers the kernel prints.
        let (major, minor) = (
            ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
            (dev & 0xff) | ((dev >> 12) & !0xff),
        );
        let file = format!("{major:02x}:{minor:02x}:{}", meta.ino());
        let me = std::process::id().to_string();
        // `1: POSIX  ADVISORY  WRITE 12345 08:01:1234 0 EOF`; waiting requests have `->`.
        table.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, kind, _, mode, pid, id, ..] if *kind != "->" => {
                    *id == file && *pid != me && (write || *mode == "WRITE")
                }
                _ => false,
            }
        })
    }

    /// Elsewhere no lock is recognised: the failure stays an I/O error.
    #[cfg(not(target_os = "linux"))]
    pub(super) fn held_by_another_process(_path: &Path, _write: bool) -> bool {
        false
    }
}
