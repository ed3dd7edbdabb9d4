//! Every `USHER_*` environment variable the library reads, named in one place, and the one
//! reader of them (an unset variable is `None`, one that is not UTF-8 an error naming it).
//! Layers above read their settings through here; nothing here imports them.

use crate::error::{Error, Result};

/// The environment variable that forces recomputation from the command line: `all` (or `1`,
/// `true`) for every table, or a comma-separated list of tables. Read by
/// [`Pipeline::with_env`](crate::Pipeline::with_env) and [`Pipeline::with_config`](crate::Pipeline::with_config).
pub const FORCE_ENV: &str = "USHER_FORCE";

/// The environment variable that sets the [`UnkeyedPolicy`](crate::UnkeyedPolicy): `refuse`, `adopt` or
/// `recompute`. Read by [`Pipeline::with_env`](crate::Pipeline::with_env) and `Pipeline::from_config`.
pub const UNKEYED_ENV: &str = "USHER_UNKEYED";

/// The environment variable naming a shared store's catalog: a PostgreSQL URL
/// (`postgres://user@host/dbname`) or `key=value` connection string. When it is set,
/// `AnyStore::from_config` (and so `Pipeline::from_config` and the command line's `--config`)
/// open the shared store it names, with [`DATA_ROOT_ENV`], instead of the config's DuckDB file.
#[cfg(feature = "duckdb")]
pub const STORE_ENV: &str = "USHER_STORE";

/// The environment variable naming a shared store's data root: a directory every worker mounts
/// (NFS, a cluster filesystem), where the Parquet files live.
#[cfg(feature = "duckdb")]
pub const DATA_ROOT_ENV: &str = "USHER_DATA_ROOT";

/// The catalog [`STORE_ENV`] names, `None` when it is unset or blank: the one rule for whether
/// the environment names a shared store.
#[cfg(feature = "duckdb")]
pub(crate) fn store_env() -> Option<String> {
    std::env::var(STORE_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The environment variable that lets `PipelineStore::from_config` wait for a store file
/// another process holds: seconds (`30`), or with a unit (`500ms`, `30s`, `10m`, `2h`).
#[cfg(feature = "duckdb")]
pub const STORE_WAIT_ENV: &str = "USHER_STORE_WAIT";

/// The value of the environment variable `name`, `None` when unset; one that is not UTF-8 is an
/// [`Error::Setting`] naming it.
pub(crate) fn env_var(name: &'static str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => Err(Error::Setting {
            setting: name,
            value: value.to_string_lossy().into_owned(),
            message: "not UTF-8".to_owned(),
        }),
    }
}
