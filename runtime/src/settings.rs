//! The settings of a run beside its config: every `USHER_*` environment variable the library
//! reads, named in one place and read in one place ([`Settings::from_env`]) into a value a user
//! can also build in code ([`Settings`]), and the values they hold ([`Force`],
//! [`UnkeyedPolicy`]). Layers above read their settings through here; nothing here imports them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::names::validate_table_name;

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
pub const STORE_ENV: &str = "USHER_STORE";

/// The environment variable naming a shared store's data root: a directory every worker mounts
/// (NFS, a cluster filesystem), where the Parquet files live.
pub const DATA_ROOT_ENV: &str = "USHER_DATA_ROOT";

/// The environment variable that bounds the connections each process opens to a shared store's
/// catalog: a whole number, at least 1 (default 2: the session connection, which holds the
/// process's compute locks, and one reading connection).
pub const STORE_CONNECTIONS_ENV: &str = "USHER_STORE_CONNECTIONS";

/// The environment variable that sets how many versions of each checkpoint table a store keeps:
/// the current one and the earlier ones a call restores, instead of computing, when its key and
/// inputs match one again. A whole number, at least 1 (`1` keeps no earlier version); default
/// [`DEFAULT_KEEP`]. A function's `#[checkpointed(keep = N)]` has the last word.
pub const KEEP_ENV: &str = "USHER_KEEP";

/// How many versions of each checkpoint table a store keeps unless told otherwise: the current
/// one and four earlier ones. A lab exploring a threshold goes back and forth between a few
/// values; each kept version costs its table's size again on disk.
pub const DEFAULT_KEEP: usize = 5;

/// The environment variable that lets `PipelineStore::from_config` wait for a store file
/// another process holds: seconds (`30`), or with a unit (`500ms`, `30s`, `10m`, `2h`).
pub const STORE_WAIT_ENV: &str = "USHER_STORE_WAIT";

/// The settings of a run beside its config: what to recompute, what to do with unkeyed
/// checkpoints, and where the checkpoints live. [`from_env`](Self::from_env) reads them from
/// the `USHER_*` variables (as the command line and `Pipeline::from_config` do); a program that
/// takes them from elsewhere builds one in code and hands it to
/// [`Pipeline::open`](crate::Pipeline::open) or [`Pipeline::with_settings`](crate::Pipeline::with_settings):
///
/// ```
/// use usher_pipeline::{Force, Settings, UnkeyedPolicy};
///
/// let mut settings = Settings::default(); // nothing forced, unkeyed refused, the config's file
/// settings.force = Force::tables(["gnomad_constraint"]);
/// settings.unkeyed = UnkeyedPolicy::Adopt;
/// assert!(settings.force.includes("gnomad_constraint"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Which tables to recompute even when valid ([`FORCE_ENV`]).
    pub force: Force,
    /// What to do with a checkpoint that has no key ([`UNKEYED_ENV`]).
    pub unkeyed: UnkeyedPolicy,
    /// The shared store's catalog ([`STORE_ENV`]): a PostgreSQL URL or `key=value` connection
    /// string; `None` for the config's DuckDB file. It may hold a password, so `Debug` does not
    /// show it.
    pub store: Option<String>,
    /// The shared store's data root ([`DATA_ROOT_ENV`]), needed with `store`.
    pub data_root: Option<PathBuf>,
    /// How long to wait for a DuckDB store file another process holds ([`STORE_WAIT_ENV`]);
    /// `None` fails at once.
    pub store_wait: Option<Duration>,
    /// The most connections each process opens to the shared store's catalog
    /// ([`STORE_CONNECTIONS_ENV`]); `None` for the default.
    pub store_connections: Option<usize>,
    /// How many versions of each checkpoint table to keep ([`KEEP_ENV`]); `None` for
    /// [`DEFAULT_KEEP`].
    pub keep: Option<usize>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("force", &self.force)
            .field("unkeyed", &self.unkeyed)
            .field("store", &self.store.as_ref().map(|_| "(set, not shown)"))
            .field("data_root", &self.data_root)
            .field("store_wait", &self.store_wait)
            .field("store_connections", &self.store_connections)
            .field("keep", &self.keep)
            .finish()
    }
}

impl Settings {
    /// Reads every `USHER_*` variable once: [`FORCE_ENV`], [`UNKEYED_ENV`], [`STORE_ENV`],
    /// [`DATA_ROOT_ENV`], [`STORE_WAIT_ENV`], [`STORE_CONNECTIONS_ENV`], [`KEEP_ENV`]. An unset or blank variable leaves the default; a
    /// value that cannot be parsed (or is not UTF-8) is an [`Error::Setting`] naming the
    /// variable and the value.
    pub fn from_env() -> Result<Self> {
        let mut settings = Settings::default();
        if let Some(value) = env_var(FORCE_ENV)? {
            settings.force = Force::parse(&value)?;
        }
        if let Some(value) = env_var(UNKEYED_ENV)? {
            settings.unkeyed = UnkeyedPolicy::parse(&value)?;
        }
        settings.store = env_var(STORE_ENV)?.filter(|v| !v.trim().is_empty());
        settings.data_root = std::env::var_os(DATA_ROOT_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if let Some(value) = env_var(STORE_WAIT_ENV)?.filter(|v| !v.trim().is_empty()) {
            settings.store_wait = Some(parse_wait(&value)?);
        }
        if let Some(value) = env_var(STORE_CONNECTIONS_ENV)?.filter(|v| !v.trim().is_empty()) {
            settings.store_connections = Some(parse_count(STORE_CONNECTIONS_ENV, &value)?);
        }
        if let Some(value) = env_var(KEEP_ENV)?.filter(|v| !v.trim().is_empty()) {
            settings.keep = Some(parse_count(KEEP_ENV, &value)?);
        }
        Ok(settings)
    }
}

/// The value of the environment variable `name`, `None` when unset; one that is not UTF-8 is an
/// [`Error::Setting`] naming it.
fn env_var(name: &'static str) -> Result<Option<String>> {
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

/// Parses a [`STORE_WAIT_ENV`] value: seconds (`30`), or with a unit (`500ms`, `30s`, `10m`,
/// `2h`).
fn parse_wait(value: &str) -> Result<Duration> {
    let text = value.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    let total = number.parse::<f64>().unwrap_or(f64::NAN) * seconds;
    Duration::try_from_secs_f64(total).map_err(|_| Error::Setting {
        setting: STORE_WAIT_ENV,
        value: value.to_owned(),
        message: "expected a duration: seconds (`30`) or with a unit (`500ms`, `30s`, `10m`, `2h`)"
            .to_owned(),
    })
}

/// Parses a [`STORE_CONNECTIONS_ENV`] value: a whole number, at least 1.
fn parse_count(setting: &'static str, value: &str) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(Error::Setting {
            setting,
            value: value.to_owned(),
            message: "expected a whole number, at least 1".to_owned(),
        }),
    }
}

/// Which checkpoints to recompute even when they are valid.
///
/// Forcing a table also recomputes what was made from it, however the pipeline reaches it: a
/// checkpoint whose input is forced and not yet recomputed in this run is stale (``input `c` is
/// stale: it is forced in this run``), so its body runs and calls the forced step.
///
/// A forced table is recomputed once per run: a second call of the same [`Pipeline`](crate::Pipeline) loads what
/// the first one saved, and a table whose checkpoint was saved (with a key) after the pipeline
/// was made counts as recomputed, so workers of a shared store all started with
/// `USHER_FORCE=t` recompute `t` once between them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Force {
    /// Use valid checkpoints (the default).
    #[default]
    None,
    /// Recompute every table.
    All,
    /// Recompute these tables.
    Tables(BTreeSet<String>),
}

impl Force {
    /// Forces the given tables.
    pub fn tables<I: IntoIterator<Item = T>, T: Into<String>>(tables: I) -> Self {
        Force::Tables(tables.into_iter().map(Into::into).collect())
    }

    /// Whether `table` is forced.
    pub fn includes(&self, table: &str) -> bool {
        match self {
            Force::None => false,
            Force::All => true,
            Force::Tables(tables) => tables.contains(table),
        }
    }

    /// Parses a [`FORCE_ENV`] value: empty, `0`, `false` or `none` force nothing; `all`, `1`
    /// or `true` force everything; anything else is a comma-separated list of table names.
    pub fn parse(value: &str) -> Result<Self> {
        let trimmed = value.trim();
        match trimmed.to_ascii_lowercase().as_str() {
            "" | "0" | "false" | "none" => return Ok(Force::None),
            "1" | "true" | "all" => return Ok(Force::All),
            _ => {}
        }
        let mut tables = BTreeSet::new();
        for name in trimmed.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            validate_table_name(name).map_err(|e| Error::Setting {
                setting: FORCE_ENV,
                value: value.to_owned(),
                message: e.to_string(),
            })?;
            tables.insert(name.to_owned());
        }
        Ok(Force::Tables(tables))
    }
}

/// What to do with a checkpoint that has no key: one written by the Python pipeline, saved by
/// hand through the store, or re-saved since its key was recorded.
///
/// Such a table may hold hours of fetched data, so it is neither thrown away nor trusted
/// without a decision: by default the call fails with [`Error::UnkeyedCheckpoint`], whose
/// message says how to choose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnkeyedPolicy {
    /// Fail with [`Error::UnkeyedCheckpoint`] (the default).
    #[default]
    Refuse,
    /// Trust the checkpoint: record the current key for it and load it. The provenance step
    /// says `adopted`.
    Adopt,
    /// Recompute and replace it; the provenance step says why.
    Recompute,
}

impl UnkeyedPolicy {
    /// Parses a [`UNKEYED_ENV`] value: `refuse`, `adopt` or `recompute`.
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "refuse" => Ok(UnkeyedPolicy::Refuse),
            "adopt" => Ok(UnkeyedPolicy::Adopt),
            "recompute" => Ok(UnkeyedPolicy::Recompute),
            _ => Err(Error::Setting {
                setting: UNKEYED_ENV,
                value: value.to_owned(),
                message: "expected `refuse`, `adopt` or `recompute`".to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_waits_are_parsed() {
        assert_eq!(parse_wait("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_wait("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_wait("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_wait(" 10m ").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_wait("2h").unwrap(), Duration::from_secs(7200));
        for bad in ["", "soon", "-1", "5 days", "1e400"] {
            let e = parse_wait(bad).unwrap_err();
            assert!(e.to_string().contains("USHER_STORE_WAIT"), "{e}");
        }
    }

    #[test]
    fn counts_are_whole_numbers_from_one() {
        for setting in [STORE_CONNECTIONS_ENV, KEEP_ENV] {
            assert_eq!(parse_count(setting, "1").unwrap(), 1);
            assert_eq!(parse_count(setting, " 4 ").unwrap(), 4);
            for bad in ["0", "-1", "two", "1.5", ""] {
                let e = parse_count(setting, bad).unwrap_err();
                assert!(e.to_string().contains(setting), "{e}");
            }
        }
    }

    #[test]
    fn debug_never_shows_the_catalog_which_may_hold_a_password() {
        let settings = Settings {
            store: Some("postgres://usher:s3cret@db/usher".into()),
            ..Settings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("(set, not shown)"), "{shown}");
    }
}
