//! `PipelineStore`: polars frames as tables of a file-backed DuckDB database, with the
//! Python pipeline's `_checkpoints` metadata table.
//!
//! `ffi/` is the only `unsafe` code of the crate (DuckDB's C API and the Arrow C Data
//! Interface, one owner type per raw handle); `meta.rs` keeps the checkpoint metadata of a file
//! in memory; `capi_shim.cpp` holds DuckDB's own C API calls with what the C API does not
//! expose (an Arrow batch size, error types, temporary scan views).

// The crate's only unsafe code: the crate root denies `unsafe_code` everywhere else.
#[allow(unsafe_code)]
pub(crate) mod ffi;
mod gc;
mod history;
mod meta;
pub(crate) mod readers;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::NaiveDateTime;
use polars::prelude::*;

pub use ffi::{Param, duckdb_version};
pub use gc::GcReport;

use crate::atomic_file::replace_atomically;
use crate::config::PipelineConfig;
use crate::error::DuckdbErrorKind;
use crate::error::{Error, Result, create_parent_dir};
use crate::model::{CheckpointInfo, CheckpointKey, HistoryVersion, Lineage, ProvenanceRecord};
use crate::names::{validate_table_name, validate_writable_table_name};
use crate::settings::Settings;
use crate::store::sql::{checkpoint_row, quote_ident};
use crate::store::time::{now_local, now_utc, to_micros};
use crate::store::{CheckpointStore, JudgedLoad, PendingBatches, newest_first, validate_columns};
use ffi::{Connection, Database, DuckError, FrameStream};
use meta::{Checkpoints, Metadata};
use readers::{Reader, Readers};

/// The seed's DDL for the checkpoint metadata table, verbatim, so both pipelines agree on it.
pub(crate) const CHECKPOINTS_DDL: &str = "CREATE TABLE IF NOT EXISTS _checkpoints (
    table_name VARCHAR PRIMARY KEY,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    row_count INTEGER,
    description VARCHAR
)";

/// The key and lineage of each checkpoint saved by `#[checkpointed]`. A separate table, so the
/// Python pipeline's `_checkpoints` keeps its exact columns; a row counts only while its
/// `checkpoint_created_at` equals the checkpoint's `created_at`, so a table the Python code
/// re-saves (new `created_at`) is never mistaken for a keyed checkpoint.
///
/// Schema version 1 (release 0.1.0) had the first six columns; [`LINEAGE_COLUMNS`] came with
/// version 2.
pub(crate) const KEYS_DDL: &str = "CREATE TABLE IF NOT EXISTS _checkpoint_keys (
    table_name VARCHAR PRIMARY KEY,
    checkpoint_created_at TIMESTAMP,
    key VARCHAR,
    function VARCHAR,
    code VARCHAR,
    arguments VARCHAR,
    config VARCHAR,
    data_version VARCHAR,
    inputs VARCHAR,
    max_age_seconds BIGINT,
    lineage_created_at TIMESTAMP
)";

/// The columns schema version 2 added to `_checkpoint_keys`: the key's config fields (JSON),
/// the frame's data version (32 hex digits), the inputs (JSON: table name to version), the
/// `max_age` in seconds, and the `checkpoint_created_at` they were written with. A release
/// that predates them (0.1.0) may still write to an upgraded store; it rewrites only the first
/// six columns, so its save leaves `lineage_created_at` behind `checkpoint_created_at`, and the
/// stale lineage is ignored rather than taken for the new data's.
///
/// Then, for the history of each table (see `history.rs`): the save's `version` number among
/// the table's keyed saves, and its provenance `step` (the `_provenance` row's `steps_json`).
/// They count only beside a current lineage, as the lineage does.
const LINEAGE_COLUMNS: [(&str, &str); 7] = [
    ("config", "VARCHAR"),
    ("data_version", "VARCHAR"),
    ("inputs", "VARCHAR"),
    ("max_age_seconds", "BIGINT"),
    ("lineage_created_at", "TIMESTAMP"),
    ("version", "BIGINT"),
    ("step", "VARCHAR"),
];

/// The version of this store's own metadata tables, as `_usher_schema` records it; a store
/// without the table but with `_checkpoint_keys` is version 1 (release 0.1.0).
pub const SCHEMA_VERSION: i64 = 2;

/// Where the schema version is recorded (a name-value table, so later versions can add rows).
const SCHEMA_DDL: &str = "CREATE TABLE IF NOT EXISTS _usher_schema (
    name VARCHAR PRIMARY KEY,
    value VARCHAR
)";

/// Items finished by the resumable batches of a `#[checkpointed]` body
/// ([`Batches`](crate::Batches)); their rows wait in `_partial_<table>` until the
/// final save replaces both.
pub(crate) const BATCHES_DDL: &str = "CREATE TABLE IF NOT EXISTS _checkpoint_batches (
    table_name VARCHAR,
    key VARCHAR,
    item VARCHAR
)";

/// How many items the resumable loop of a table has under a key (`Batches::pending` records
/// it), so a status can say "n of m"; removed with the batches.
pub(crate) const BATCH_TOTALS_DDL: &str = "CREATE TABLE IF NOT EXISTS _checkpoint_batch_totals (
    table_name VARCHAR PRIMARY KEY,
    key VARCHAR,
    total_items BIGINT
)";

/// The table holding the rows of `table`'s finished batches.
fn partial_table(table: &str) -> String {
    quote_ident(&format!("_partial_{table}"))
}

/// The DDL of the provenance table, as the Python pipeline creates it.
const PROVENANCE_DDL: &str = "CREATE TABLE IF NOT EXISTS _provenance (
    version VARCHAR,
    config_hash VARCHAR,
    created_at TIMESTAMP,
    steps_json VARCHAR
)";

/// The storage format new database files are written in. DuckDB 2.0 would otherwise write
/// storage version 69, which the Python pipeline on duckdb 1.x cannot open.
pub const DEFAULT_STORAGE_COMPATIBILITY: &str = "v1.0.0";

/// How to open a [`PipelineStore`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// DuckDB's `storage_compatibility_version` for newly created files. The default,
    /// [`DEFAULT_STORAGE_COMPATIBILITY`], keeps new stores readable by duckdb 1.x; `None`
    /// (or `"latest"`) opts into DuckDB 2.0's newer format, which 1.x cannot read.
    pub storage_compatibility_version: Option<String>,
    /// Open for inspection only: no writes, no `_checkpoints` creation, and other read-only
    /// openers are allowed at the same time.
    pub read_only: bool,
    /// DuckDB worker threads; `None` lets DuckDB use every core.
    pub threads: Option<usize>,
    /// Whether SQL may reach files and the network beyond the store (`COPY ... TO`,
    /// `read_parquet`, `INSTALL`); `false` confines a query to the store (DuckDB's
    /// `enable_external_access`). Exports need it.
    pub external_access: bool,
    /// How long to wait for a file another process holds before failing with
    /// [`Error::StoreInUse`]; `None` (the default) fails at once. `from_config` reads it from
    /// [`STORE_WAIT_ENV`](crate::STORE_WAIT_ENV).
    pub wait_if_busy: Option<std::time::Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            storage_compatibility_version: Some(DEFAULT_STORAGE_COMPATIBILITY.to_owned()),
            read_only: false,
            threads: None,
            external_access: true,
            wait_if_busy: None,
        }
    }
}

/// How [`PipelineStore::save`] treats an existing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveMode {
    /// Replace the table (the seed's `replace=True`).
    #[default]
    Replace,
    /// Append rows, matching columns by name; creates the table if it does not exist.
    Append,
}

/// A file-backed DuckDB database holding polars frames as tables, with checkpoint metadata.
///
/// Shareable across threads by `&`: writes run one at a time on the store's writing connection;
/// reads (hits, loads, queries, exports) run on connections of their own and never wait for a
/// write of another thread, reading the last committed state. The database closes when the
/// store is dropped (or [`close`](Self::close)d).
pub struct PipelineStore {
    path: PathBuf,
    read_only: bool,
    /// The writing connection: saves, deletes, adoptions, batch bookkeeping.
    conn: Mutex<Connection>,
    /// The reading connections.
    readers: Readers,
    /// How the checkpoints are read: a read-only store written by Python may lack
    /// `_checkpoint_keys`, one written by release 0.1.0 its lineage columns.
    checkpoints_sql: String,
    /// Whether `_checkpoint_batches` and `_checkpoint_batch_totals` exist (a read-only store
    /// written by Python lacks both, one written by release 0.1.0 the second).
    batches_table: bool,
    totals_table: bool,
    /// The checkpoints, cached for every store on this file in the process.
    meta: Arc<Metadata>,
}

impl std::fmt::Debug for PipelineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineStore")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl PipelineStore {
    /// Opens or creates the store at `path` (parent directories created) with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &StoreOptions::default())
    }

    /// Opens the store at `config.duckdb_path`, waiting for another process that holds it for
    /// as long as [`STORE_WAIT_ENV`](crate::STORE_WAIT_ENV) says (not at all when it is unset).
    pub fn from_config(config: &PipelineConfig) -> Result<Self> {
        Self::open_waiting(config, Settings::from_env()?.store_wait)
    }

    /// Opens the store at `config.duckdb_path`, waiting up to `wait_if_busy` for another
    /// process that holds it.
    pub(crate) fn open_waiting(
        config: &PipelineConfig,
        wait_if_busy: Option<std::time::Duration>,
    ) -> Result<Self> {
        Self::open_with(
            &config.duckdb_path,
            &StoreOptions {
                wait_if_busy,
                ..StoreOptions::default()
            },
        )
    }

    /// Opens an existing store for inspection only. Several processes may do this at once,
    /// but not while one has it open for writing.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(
            path,
            &StoreOptions {
                read_only: true,
                ..StoreOptions::default()
            },
        )
    }

    /// Opens or creates the store at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Self> {
        let path = path.as_ref().to_owned();
        if options.read_only {
            if !path.is_file() {
                return Err(Error::Open {
                    path,
                    kind: DuckdbErrorKind::Io,
                    message: "no such database file (read-only open does not create one)"
                        .to_owned(),
                });
            }
        } else {
            create_parent_dir(&path)?;
        }
        let threads = options.threads.map(|t| t.to_string());
        // The bundled DuckDB would download an extension a query needs (JSON, say) from the
        // network, mid-pipeline; a store never reaches out on its own.
        let mut settings: Vec<(&str, &str)> = vec![("autoinstall_known_extensions", "false")];
        if options.read_only {
            settings.push(("access_mode", "READ_ONLY"));
        }
        if let Some(version) = options.storage_compatibility_version.as_deref() {
            settings.push(("storage_compatibility_version", version));
        }
        if let Some(t) = threads.as_deref() {
            settings.push(("threads", t));
        }
        if !options.external_access {
            settings.push(("enable_external_access", "false"));
        }
        let db = Arc::new(open_waiting(&path, &settings, options.wait_if_busy)?);
        let conn = Connection::connect(&db).map_err(|e| open_error(&path, e))?;
        let fail = |context: &str, e: DuckError| duckdb_error(&path, context, e);
        readers::configure(&conn).map_err(|m| fail("configuring the connection", m))?;
        let exists = |table: &str| {
            Ok::<_, Error>(
                !options.read_only
                    || !table_columns(&conn, table)
                        .map_err(|m| fail(&format!("looking for {table}"), m))?
                        .is_empty(),
            )
        };
        let batches_table = exists("_checkpoint_batches")?;
        let totals_table = exists("_checkpoint_batch_totals")?;
        let checkpoints_sql = if options.read_only {
            let columns = |table| {
                table_columns(&conn, table).map_err(|m| fail(&format!("looking for {table}"), m))
            };
            let keys = columns("_checkpoint_keys")?;
            if keys.is_empty() {
                checkpoints_sql(KeyColumns::None)
            } else if LINEAGE_COLUMNS
                .iter()
                .all(|(name, _)| keys.iter().any(|c| c == name))
            {
                checkpoints_sql(KeyColumns::Lineage)
            } else {
                checkpoints_sql(KeyColumns::Key)
            }
        } else {
            match conn.transaction(|| create_or_upgrade(&conn)) {
                Ok(Ok(())) => {}
                Ok(Err(found)) => {
                    return Err(Error::NewerStore {
                        path,
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Err(e) => return Err(fail("creating or upgrading the checkpoint tables", e)),
            }
            checkpoints_sql(KeyColumns::Lineage)
        };
        Ok(PipelineStore {
            meta: Metadata::for_file(&path),
            path,
            read_only: options.read_only,
            conn: Mutex::new(conn),
            readers: Readers::new(db),
            checkpoints_sql,
            batches_table,
            totals_table,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection to read with, beside any write in progress.
    fn reader(&self, context: impl FnOnce() -> String) -> Result<Reader<'_>> {
        self.readers
            .get()
            .map_err(|e| duckdb_error(&self.path, &context(), e))
    }

    /// The writing connection, once the write in progress (if any) is done.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: every operation either
        // commits or rolls back its own transaction.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Refuses a write to a store opened read-only (the only kind that may lack
    /// `_checkpoint_keys`), naming what was tried.
    fn check_writable(&self, context: &str) -> Result<()> {
        if self.read_only {
            return Err(self.duckdb_error(context)(DuckError::new(
                DuckdbErrorKind::InvalidInput,
                "the store is open read-only",
            )));
        }
        Ok(())
    }

    fn duckdb_error(&self, context: impl Into<String>) -> impl FnOnce(DuckError) -> Error + '_ {
        let context = context.into();
        move |e| duckdb_error(&self.path, &context, e)
    }

    /// Saves `df` as `table` per `mode`, and records the checkpoint (row count = rows in the
    /// table afterwards). Table and metadata are written in one transaction: a failure leaves
    /// the previous checkpoint as it was.
    pub fn save(
        &self,
        table: &str,
        df: &DataFrame,
        description: &str,
        mode: SaveMode,
    ) -> Result<()> {
        // Without a key: local time, as the Python pipeline stamps its saves.
        self.save_keyed(table, df, description, mode, now_local(), None, 0)
    }

    /// [`save`](Self::save), recording `key`, its lineage and the step's `_provenance` row for
    /// the checkpoint in the same transaction (or, with `None`, removing any previous key: the new
    /// data was not made by it). Lineage and provenance row are made by `metadata` after the
    /// table is written, so the caller can compute them meanwhile. With a key, at most `keep`
    /// versions of the table are kept (see `history.rs`); a save without one leaves the history
    /// as it is.
    #[allow(clippy::too_many_arguments)]
    fn save_keyed(
        &self,
        table: &str,
        df: &DataFrame,
        description: &str,
        mode: SaveMode,
        created_at: NaiveDateTime,
        key: Option<(&CheckpointKey, MakeLineage<'_>)>,
        keep: usize,
    ) -> Result<()> {
        validate_writable_table_name(table)?;
        let context = format!("saving table {table:?}");
        self.check_writable(&context)?;
        validate_columns(table, df)?;
        let stream = frame_stream(table, df)?;
        // An error of `metadata` (the crate's own, not DuckDB's) rolls the transaction back and
        // is returned as it is.
        let mut failed = None;
        let saved = self.writing(|conn| {
            let view = conn.scan(stream)?;
            let target = quote_ident(table);
            conn.transaction(|| {
                let versioned = key.is_some() && mode == SaveMode::Replace;
                if versioned && keep > 1 {
                    history::keep_current(conn, table)?;
                }
                let rows =
                    Self::write_table(conn, table, &target, view.source(), df.height(), mode)?;
                conn.query_cached(
                    "INSERT OR REPLACE INTO _checkpoints (table_name, row_count, description, created_at) VALUES (?, ?, ?, ?)",
                    &[table.into(), Param::Int(rows.into()), description.into(), Param::Timestamp(created_at)],
                )?;
                match key {
                    Some((key, metadata)) => match metadata() {
                        Ok((lineage, provenance)) => {
                            let version = history::number_new(conn, table)?;
                            write_key(
                                conn,
                                table,
                                Some(created_at),
                                key,
                                &lineage,
                                Some(version),
                                Some(&provenance.steps_json),
                            )?;
                            insert_provenance(conn, &provenance)?;
                            if versioned {
                                history::prune(conn, table, keep)?;
                            }
                        }
                        Err(e) => {
                            failed = Some(e);
                            return Err(DuckError::new(
                                DuckdbErrorKind::Other,
                                "the checkpoint's lineage could not be made",
                            ));
                        }
                    },
                    None => delete_key(conn, table)?,
                }
                delete_batches(conn, table)
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        saved.map_err(self.duckdb_error(context))
    }

    /// Writes the rows of `source` to `table` (`target`, quoted) per `mode` and returns the
    /// table's row count afterwards, inside the caller's transaction.
    fn write_table(
        conn: &Connection,
        table: &str,
        target: &str,
        source: &str,
        rows: usize,
        mode: SaveMode,
    ) -> std::result::Result<i32, DuckError> {
        let exists = mode == SaveMode::Append && table_exists(conn, table)?;
        let row_count = if exists {
            conn.execute(&format!(
                "INSERT INTO {target} BY NAME SELECT * FROM {source}"
            ))?;
            conn.query_i64_cached(&format!("SELECT count(*) FROM {target}"), &[])?
        } else {
            conn.execute(&format!(
                "CREATE OR REPLACE TABLE {target} AS SELECT * FROM {source}"
            ))?;
            rows as i64
        };
        Ok(i32::try_from(row_count).map_err(|_| {
            format!("{row_count} rows do not fit the INTEGER row_count column of _checkpoints")
        })?)
    }

    /// Every checkpoint with its valid key, from the cached metadata or read anew.
    fn checkpoints(&self, context: impl FnOnce() -> String) -> Result<Arc<Checkpoints>> {
        self.meta
            .checkpoints(|| {
                let rows = self
                    .readers
                    .get()?
                    .query_text_rows_cached(&self.checkpoints_sql, &[])?;
                rows.into_iter()
                    .map(|row| {
                        let row = checkpoint_row(row).map_err(DuckError::from)?;
                        Ok((row.table_name.clone(), row))
                    })
                    .collect::<std::result::Result<_, DuckError>>()
            })
            .map_err(|e| self.duckdb_error(context())(e))
    }

    /// Runs `write` on the connection, then marks the cached metadata stale, whatever the
    /// outcome (a failed statement may still have committed something).
    fn writing<T>(&self, write: impl FnOnce(&Connection) -> T) -> T {
        self.meta.writing();
        let outcome = write(&self.lock());
        self.meta.written();
        outcome
    }

    /// Runs one statement that writes tables (`INSERT`, `UPDATE`, `DELETE`, `MERGE INTO`,
    /// `CREATE`, `DROP`, `ALTER`, `COPY`) with `?` parameters bound to `params`, and returns
    /// the checkpoint tables it touched, by name.
    ///
    /// Lineage is kept true: every checkpoint table the statement names (or drops, by a
    /// cascade) is recorded as changed in the same transaction. An edited table keeps its
    /// `_checkpoints` row with a new save time but loses its key, so
    /// - what was made from it is stale (`input `b` changed`) and recomputes from the edit;
    /// - it is no longer taken as its function's checkpoint: the next call of that function
    ///   meets an unkeyed checkpoint ([`UnkeyedPolicy`](crate::UnkeyedPolicy): refused by
    ///   default, `adopt` keeps the edit, `recompute` replaces it).
    ///
    /// A checkpoint table the statement dropped loses its row, key and batches, so what was made
    /// from it is stale (`input `b` is missing`). Which tables a statement touches is decided
    /// from the words of its text, generously (a table named only in a string literal counts
    /// too), plus every checkpoint table missing afterwards. A statement that names the store's
    /// own tables (`_checkpoints`, `_checkpoint_keys`, ..., `_provenance`) or removes one is
    /// refused and changes nothing; so is any other kind of statement (read with
    /// [`query`](Self::query)).
    pub fn execute(&self, sql: &str, params: &[Param]) -> Result<Vec<String>> {
        let context = format!("running statement {sql:?}");
        self.check_writable(&context)?;
        let words = sql_words(sql);
        if let Some(own) = words.iter().find(|w| is_own_table(w)) {
            return Err(self.duckdb_error(context)(DuckError::new(
                DuckdbErrorKind::InvalidInput,
                format!(
                    "the statement names the store's own table `{own}`, which only the store writes"
                ),
            )));
        }
        let checkpoints = self.checkpoints(|| context.clone())?;
        let mut touched = self
            .writing(|conn| {
                conn.transaction(|| {
                    let mut own_tables = Vec::new();
                    for own in OWN_TABLES {
                        if table_exists(conn, own)? {
                            own_tables.push(own);
                        }
                    }
                    conn.execute_write(sql, params)?;
                    for own in own_tables {
                        if !table_exists(conn, own)? {
                            return Err(DuckError::new(
                                DuckdbErrorKind::InvalidInput,
                                format!("the statement removed the store's own table `{own}`"),
                            ));
                        }
                    }
                    let mut touched = Vec::new();
                    for table in checkpoints.keys() {
                        if !table_exists(conn, table)? {
                            conn.query_cached(
                                "DELETE FROM _checkpoints WHERE table_name = ?",
                                &[table.as_str().into()],
                            )?;
                            delete_key(conn, table)?;
                            delete_batches(conn, table)?;
                        } else if words.contains(&table.to_lowercase()) {
                            mark_edited(conn, table)?;
                        } else {
                            continue;
                        }
                        touched.push(table.clone());
                    }
                    Ok(touched)
                })
            })
            .map_err(self.duckdb_error(context))?;
        touched.sort();
        if !touched.is_empty() {
            tracing::info!(tables = ?touched, "checkpoint tables edited through SQL: recorded as changed");
        }
        Ok(touched)
    }

    /// Runs `f` with exclusive use of the connection (for the crate's own multi-statement work).
    pub(crate) fn with_connection<T>(
        &self,
        f: impl FnOnce(&Connection) -> std::result::Result<T, DuckError>,
        context: &str,
    ) -> Result<T> {
        self.writing(f).map_err(self.duckdb_error(context))
    }

    /// The table (quoted) holding version `version` of `table`: the table itself for the
    /// current version, its history table for an earlier one; `None` when there is no such
    /// version.
    fn version_source(&self, table: &str, version: u64) -> Result<Option<String>> {
        validate_table_name(table)?;
        let current = self
            .history(table)?
            .into_iter()
            .find(|v| v.version == version)
            .map(|v| v.current);
        Ok(current.map(|current| match current {
            true => quote_ident(table),
            false => history::storage(table, i64::try_from(version).unwrap_or(i64::MAX)),
        }))
    }

    /// Closes the database. Dropping the store does the same; this only makes it explicit.
    pub fn close(self) {}
}

/// Makes a checkpoint's lineage and `_provenance` row during its save (see
/// [`CheckpointStore::save_checkpoint_with`]).
type MakeLineage<'a> = &'a mut dyn FnMut() -> Result<(Lineage, ProvenanceRecord)>;

/// The store's own tables, which only the store writes: [`PipelineStore::execute`] refuses a
/// statement that names or removes them.
const OWN_TABLES: [&str; 6] = [
    "_checkpoints",
    "_checkpoint_keys",
    "_checkpoint_batches",
    "_checkpoint_batch_totals",
    "_checkpoint_history",
    "_provenance",
];

/// Whether `word` (lowercase) names one of the store's own tables, or a table of its kind.
fn is_own_table(word: &str) -> bool {
    word.starts_with("_checkpoint")
        || word.starts_with("_partial_")
        || word == "_provenance"
        || word.starts_with("__usher")
}

/// Every word of `sql` that could name a table, lowercase: runs of letters, digits and `_`
/// anywhere (comments and string literals too: counting too many only marks an extra table),
/// and the text of each `"quoted"` identifier.
fn sql_words(sql: &str) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    let mut chars = sql.chars().peekable();
    let mut word = String::new();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut quoted = String::new();
            while let Some(q) = chars.next() {
                if q == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        quoted.push('"');
                        continue;
                    }
                    break;
                }
                quoted.push(q);
            }
            words.insert(quoted.to_lowercase());
        } else if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            words.insert(std::mem::take(&mut word).to_lowercase());
        }
    }
    if !word.is_empty() {
        words.insert(word.to_lowercase());
    }
    words
}

/// Records that `table` was edited in place: a new save time and row count on its
/// `_checkpoints` row, and no key (it was not made by its function any more).
fn mark_edited(conn: &Connection, table: &str) -> std::result::Result<(), DuckError> {
    let rows =
        conn.query_i64_cached(&format!("SELECT count(*) FROM {}", quote_ident(table)), &[])?;
    let rows = i32::try_from(rows).map_err(|_| {
        format!("{rows} rows do not fit the INTEGER row_count column of _checkpoints")
    })?;
    conn.query_cached(
        "UPDATE _checkpoints SET created_at = ?, row_count = ? WHERE table_name = ?",
        &[
            Param::Timestamp(now_utc()),
            Param::Int(rows.into()),
            table.into(),
        ],
    )?;
    delete_key(conn, table)
}

/// Records `key` and `lineage` for the checkpoint of `table` created at `created_at`, with its
/// `version` number and provenance `step` when it has them.
fn write_key(
    conn: &Connection,
    table: &str,
    created_at: Option<NaiveDateTime>,
    key: &CheckpointKey,
    lineage: &Lineage,
    version: Option<i64>,
    step: Option<&str>,
) -> std::result::Result<(), DuckError> {
    let text = |value: Option<String>| value.map_or(Param::Null, |v| v.as_str().into());
    let max_age = lineage
        .max_age_seconds
        .map(i64::try_from)
        .transpose()
        .map_err(|_| "max_age does not fit a BIGINT of seconds")?;
    conn.query_cached(
        "INSERT OR REPLACE INTO _checkpoint_keys (table_name, checkpoint_created_at, key, function, code, arguments, config, data_version, inputs, max_age_seconds, lineage_created_at, version, step) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            table.into(),
            created_at.map_or(Param::Null, Param::Timestamp),
            key.key.as_str().into(),
            key.function.as_str().into(),
            key.code.as_str().into(),
            key.arguments_json().into(),
            text(key.config_json()),
            text(lineage.data_version.map(|v| v.to_hex())),
            text(lineage.inputs_json()),
            max_age.map_or(Param::Null, Param::Int),
            created_at.map_or(Param::Null, Param::Timestamp),
            version.map_or(Param::Null, Param::Int),
            step.map_or(Param::Null, Into::into),
        ],
    )
    .map(drop)
}

/// Creates the metadata tables of a new store, or brings those of an older one up to
/// [`SCHEMA_VERSION`] (inside the caller's transaction, so an upgrade is all or nothing).
/// `Ok(Err(found))` for a store written by a newer release, left as it is.
fn create_or_upgrade(
    conn: &Connection,
) -> std::result::Result<std::result::Result<(), i64>, DuckError> {
    let existing_keys = table_exists(conn, "_checkpoint_keys")?;
    for ddl in [
        CHECKPOINTS_DDL,
        KEYS_DDL,
        BATCHES_DDL,
        BATCH_TOTALS_DDL,
        PROVENANCE_DDL,
        SCHEMA_DDL,
        history::HISTORY_DDL,
    ] {
        conn.execute(ddl)?;
    }
    let recorded = conn
        .query_text_rows_cached(
            "SELECT value FROM _usher_schema WHERE name = 'schema_version'",
            &[],
        )?
        .into_iter()
        .next()
        .and_then(|mut row| row.pop().flatten());
    let found = match &recorded {
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| format!("_usher_schema holds schema_version {text:?}, not a number"))?,
        None if existing_keys => 1,
        None => SCHEMA_VERSION,
    };
    if found > SCHEMA_VERSION {
        return Ok(Err(found));
    }
    if found < SCHEMA_VERSION {
        tracing::info!(
            from = found,
            to = SCHEMA_VERSION,
            "upgrading the store's checkpoint metadata"
        );
    }
    // Every column of this version, whatever the store records (a store written while the
    // version was being developed may lack one); nothing is altered when all are there.
    let existing = table_columns(conn, "_checkpoint_keys")?;
    for (name, ty) in LINEAGE_COLUMNS {
        if !existing.iter().any(|c| c == name) {
            conn.execute(&format!(
                "ALTER TABLE _checkpoint_keys ADD COLUMN {name} {ty}"
            ))?;
        }
    }
    if found != SCHEMA_VERSION || recorded.is_none() {
        conn.query_cached(
            "INSERT OR REPLACE INTO _usher_schema (name, value) VALUES ('schema_version', ?)",
            &[SCHEMA_VERSION.to_string().as_str().into()],
        )?;
    }
    Ok(Ok(()))
}

fn insert_provenance(
    conn: &Connection,
    record: &ProvenanceRecord,
) -> std::result::Result<(), DuckError> {
    conn.query_cached(
        "INSERT INTO _provenance (version, config_hash, created_at, steps_json) VALUES (?, ?, ?, ?)",
        &[
            record.version.as_str().into(),
            record.config_hash.as_str().into(),
            Param::Timestamp(record.created_at),
            record.steps_json.as_str().into(),
        ],
    )
    .map(drop)
}

/// Removes the partial batches of `table` (inside the caller's transaction).
fn delete_batches(conn: &Connection, table: &str) -> std::result::Result<(), DuckError> {
    conn.execute(&format!("DROP TABLE IF EXISTS {}", partial_table(table)))?;
    conn.query_cached(
        "DELETE FROM _checkpoint_batch_totals WHERE table_name = ?",
        &[table.into()],
    )?;
    conn.query_cached(
        "DELETE FROM _checkpoint_batches WHERE table_name = ?",
        &[table.into()],
    )
    .map(drop)
}

fn delete_key(conn: &Connection, table: &str) -> std::result::Result<(), DuckError> {
    conn.query_cached(
        "DELETE FROM _checkpoint_keys WHERE table_name = ?",
        &[table.into()],
    )
    .map(drop)
}

/// Which key columns a store's `_checkpoint_keys` has.
#[derive(Debug, Clone, Copy)]
enum KeyColumns {
    /// No `_checkpoint_keys` (a read-only store written by the Python pipeline).
    None,
    /// The key only (schema version 1, read-only).
    Key,
    /// Key and lineage (schema version 2).
    Lineage,
}

/// Every `_checkpoints` row joined with its key, where the key is for that very save, and its
/// lineage, where the lineage is for that very save too (see [`LINEAGE_COLUMNS`]); missing
/// columns read as NULL. Text columns: read without the Arrow path, which costs more than the
/// query for a few rows. [`checkpoint_row`] decodes the rows.
fn checkpoints_sql(columns: KeyColumns) -> String {
    const KEY: &str = "k.key, k.function, k.code, k.arguments";
    const NULLS: &str = "NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR";
    let (key, lineage, join) = match columns {
        KeyColumns::None => (NULLS, NULLS.to_owned(), ""),
        KeyColumns::Key => (KEY, NULLS.to_owned(), JOIN_KEYS),
        KeyColumns::Lineage => {
            let when = |column: &str| {
                format!(
                    "CASE WHEN k.lineage_created_at IS NOT DISTINCT FROM k.checkpoint_created_at \
                     THEN {column} END"
                )
            };
            let lineage = [
                "k.config",
                "k.data_version",
                "k.inputs",
                "CAST(k.max_age_seconds AS VARCHAR)",
            ]
            .map(when)
            .join(", ");
            (KEY, lineage, JOIN_KEYS)
        }
    };
    format!(
        "SELECT c.table_name, strftime(CAST(c.created_at AS TIMESTAMP), '%Y-%m-%d %H:%M:%S.%f'), \
         CAST(c.row_count AS VARCHAR), c.description, {key}, {lineage} FROM _checkpoints c {join}"
    )
}

/// A row of [`history::VERSIONS_SQL`] as the version it is.
fn history_version(row: Vec<Option<String>>) -> std::result::Result<HistoryVersion, String> {
    let mut rest = row;
    let tail = rest.split_off(12.min(rest.len()));
    let checkpoint = checkpoint_row(rest)?;
    let mut tail = tail.into_iter();
    let version = tail
        .next()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| format!("a version of {:?} without a number", checkpoint.table_name))?;
    let replaced_at = tail
        .next()
        .flatten()
        .map(|t| {
            NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|e| format!("replaced_at {t:?} of {:?}: {e}", checkpoint.table_name))
        })
        .transpose()?;
    let current = tail.next().flatten().as_deref() == Some("true");
    let step = tail.next().flatten();
    Ok(HistoryVersion {
        version,
        current,
        checkpoint,
        replaced_at,
        step,
        bytes: None,
    })
}

/// The join of a checkpoint with its key, valid only for the save it was written with.
const JOIN_KEYS: &str = concat!("LEFT JOIN _checkpoint_keys k ON ", key_of_checkpoint!());

impl CheckpointStore for PipelineStore {
    /// Saves `df` as `table`, replacing any existing table, and records the checkpoint.
    fn save_dataframe(&self, table: &str, df: &DataFrame, description: &str) -> Result<()> {
        self.save(table, df, description, SaveMode::Replace)
    }

    /// Loads `table` as a frame, or `Ok(None)` if there is no such table.
    fn load_dataframe(&self, table: &str) -> Result<Option<DataFrame>> {
        validate_table_name(table)?;
        let conn = self.reader(|| format!("loading table {table:?}"))?;
        // Unprepared: DuckDB builds the result on one thread for a prepared statement.
        match conn.query_unprepared(&format!("SELECT * FROM {}", quote_ident(table))) {
            Ok(df) => Ok(Some(df)),
            // Only on failure ask why, so the common path is one statement.
            Err(message) => match table_exists(&conn, table) {
                Ok(false) => Ok(None),
                _ => Err(self.duckdb_error(format!("loading table {table:?}"))(
                    message,
                )),
            },
        }
    }

    /// The first `rows` rows of `table`, or `None` if there is no such table.
    fn head(&self, table: &str, rows: usize) -> Result<Option<DataFrame>> {
        validate_table_name(table)?;
        let context = format!("reading the first rows of {table:?}");
        let conn = self.reader(|| context.clone())?;
        if !table_exists(&conn, table).map_err(self.duckdb_error(context.clone()))? {
            return Ok(None);
        }
        let limit = i64::try_from(rows).unwrap_or(i64::MAX);
        conn.query(
            &format!("SELECT * FROM {} LIMIT ?", quote_ident(table)),
            &[Param::Int(limit)],
        )
        .map(Some)
        .map_err(self.duckdb_error(context))
    }

    /// Every checkpoint with its valid key, newest first (then by name). Read from the
    /// metadata this process keeps of the file, as [`has_checkpoint`](Self::has_checkpoint).
    fn list_checkpoints(&self) -> Result<Vec<CheckpointInfo>> {
        let checkpoints = self.checkpoints(|| "listing checkpoints".to_owned())?;
        let mut list: Vec<CheckpointInfo> = checkpoints.values().cloned().collect();
        newest_first(&mut list);
        Ok(list)
    }

    /// Drops each of `tables` with its `_checkpoints` row, key, batches and partial rows, all in
    /// one transaction: all are deleted, or none.
    fn delete_checkpoints(&self, tables: &[&str]) -> Result<()> {
        for table in tables {
            validate_writable_table_name(table)?;
        }
        let context = format!("deleting checkpoints {tables:?}");
        self.check_writable(&context)?;
        self.writing(|conn| {
            conn.transaction(|| {
                for table in tables {
                    conn.execute(&format!("DROP TABLE IF EXISTS {}", quote_ident(table)))?;
                    conn.query(
                        "DELETE FROM _checkpoints WHERE table_name = ?",
                        &[(*table).into()],
                    )?;
                    delete_key(conn, table)?;
                    delete_batches(conn, table)?;
                    if table_exists(conn, "_checkpoint_history")? {
                        history::forget(conn, table)?;
                    }
                }
                Ok(())
            })
        })
        .map_err(self.duckdb_error(context))
    }

    /// Writes `table` to a Parquet file at `output_path` (parent directories created).
    /// The file appears whole or not at all: it is written under a temporary name beside it
    /// and renamed once complete, so a killed export never leaves a truncated Parquet file
    /// where a user expects the output (an existing file stays until the new one replaces it).
    fn export_parquet(&self, table: &str, output_path: &Path) -> Result<()> {
        validate_table_name(table)?;
        let conn = self.reader(|| format!("exporting table {table:?}"))?;
        if !table_exists(&conn, table)
            .map_err(self.duckdb_error(format!("exporting table {table:?}")))?
        {
            return Err(Error::TableNotFound {
                table: table.to_owned(),
                path: self.path.clone(),
            });
        }
        replace_atomically(output_path, "export parquet", |tmp| {
            conn.query(
                &format!("COPY {} TO ? (FORMAT PARQUET)", quote_ident(table)),
                &[tmp.to_string_lossy().as_ref().into()],
            )
            .map(drop)
            .map_err(self.duckdb_error(format!(
                "exporting table {table:?} to {}",
                output_path.display()
            )))
        })
    }

    /// Runs one query (`SELECT`, `WITH ... SELECT`, `VALUES`, `FROM t`) with `?` parameters
    /// bound to `params` and returns its result. Values are always bound, never pasted into the
    /// SQL text; several statements in one string are refused by DuckDB's prepare.
    ///
    /// Only queries run here: a statement that writes (`UPDATE`, `CREATE`, `COPY`...) is an
    /// [`Error::Duckdb`] of kind [`InvalidInput`](crate::DuckdbErrorKind::InvalidInput) and
    /// changes nothing. Writes go through [`execute`](Self::execute), which keeps lineage true.
    fn query(&self, sql: &str, params: &[Param]) -> Result<DataFrame> {
        let context = || format!("running query {sql:?}");
        self.reader(context)?
            .query_select(sql, params)
            .map_err(self.duckdb_error(context()))
    }

    /// Every `_provenance` row, oldest first (none for a store without the table).
    fn provenance_rows(&self) -> Result<Vec<ProvenanceRecord>> {
        let context = "reading _provenance";
        let conn = self.reader(|| context.to_owned())?;
        if !table_exists(&conn, "_provenance").map_err(self.duckdb_error(context))? {
            return Ok(Vec::new());
        }
        let rows = conn
            .query_text_rows_cached(
                "SELECT version, config_hash, strftime(CAST(created_at AS TIMESTAMP), \
                 '%Y-%m-%d %H:%M:%S.%f'), steps_json FROM _provenance \
                 ORDER BY created_at, rowid",
                &[],
            )
            .map_err(self.duckdb_error(context))?;
        rows.into_iter()
            .map(|row| {
                let mut row = row.into_iter();
                let mut next = || row.next().flatten().unwrap_or_default();
                let (version, config_hash, created_at, steps_json) =
                    (next(), next(), next(), next());
                let created_at = NaiveDateTime::parse_from_str(&created_at, "%Y-%m-%d %H:%M:%S%.f")
                    .map_err(|e| {
                        Error::Format(format!(
                            "a _provenance row's created_at {created_at:?}: {e}"
                        ))
                    })?;
                Ok(ProvenanceRecord {
                    version,
                    config_hash,
                    created_at,
                    steps_json,
                })
            })
            .collect()
    }

    fn checkpoint(&self, table: &str) -> Result<Option<CheckpointInfo>> {
        validate_table_name(table)?;
        Ok(self
            .checkpoints(|| format!("reading the checkpoint of {table:?}"))?
            .get(table)
            .cloned())
    }

    /// Check, load, and make sure nothing replaced the checkpoint in between: when no write of
    /// the process ran meanwhile (the usual case: no statement beyond the load), the cached
    /// metadata says so; otherwise the checkpoint row is read again from the file after the
    /// load. Only this process writes the file, and a save changes the table and its row's
    /// save time in one transaction, so an unchanged row means the load read the judged data.
    fn load_judged(&self, judged: &CheckpointInfo) -> Result<JudgedLoad> {
        let table = judged.table_name.as_str();
        let current =
            |info: Option<&CheckpointInfo>| info.is_some_and(|i| i.same_checkpoint(judged));
        let (loaded, quiet) = self
            .meta
            .undisturbed(|| -> Result<Option<Option<DataFrame>>> {
                if !current(self.checkpoint(table)?.as_ref()) {
                    return Ok(None);
                }
                self.load_dataframe(table).map(Some)
            });
        let Some(frame) = loaded? else {
            return Ok(JudgedLoad::Replaced);
        };
        if !quiet {
            let context = || format!("loading the checkpoint of {table:?}");
            let rows = self
                .reader(context)?
                .query_text_rows_cached(&self.checkpoints_sql, &[])
                .map_err(|e| self.duckdb_error(context())(e))?;
            let mut still = false;
            for row in rows {
                let info =
                    checkpoint_row(row).map_err(|e| self.duckdb_error(context())(e.into()))?;
                if info.table_name == table {
                    still = current(Some(&info));
                }
            }
            if !still {
                return Ok(JudgedLoad::Replaced);
            }
        }
        Ok(match frame {
            Some(frame) => JudgedLoad::Loaded(frame),
            None => JudgedLoad::TableMissing,
        })
    }

    /// The table is written first, then `metadata` is asked for the lineage, in one
    /// transaction stamped `saved_at`. Keeps no earlier version.
    fn save_checkpoint_with(
        &self,
        table: &str,
        frame: &DataFrame,
        description: &str,
        key: &CheckpointKey,
        saved_at: NaiveDateTime,
        metadata: &mut dyn FnMut() -> Result<(Lineage, ProvenanceRecord)>,
    ) -> Result<()> {
        self.save_checkpoint_keeping(table, frame, description, key, saved_at, 1, metadata)
    }

    /// The current keyed checkpoint's table is renamed (not copied) into the history, in the
    /// save's transaction.
    fn save_checkpoint_keeping(
        &self,
        table: &str,
        frame: &DataFrame,
        description: &str,
        key: &CheckpointKey,
        saved_at: NaiveDateTime,
        keep: usize,
        metadata: &mut dyn FnMut() -> Result<(Lineage, ProvenanceRecord)>,
    ) -> Result<()> {
        self.save_keyed(
            table,
            frame,
            description,
            SaveMode::Replace,
            to_micros(saved_at),
            Some((key, metadata)),
            keep,
        )
    }

    fn history(&self, table: &str) -> Result<Vec<HistoryVersion>> {
        validate_table_name(table)?;
        let context = format!("reading the history of {table:?}");
        let conn = self.reader(|| context.clone())?;
        let error = self.duckdb_error(context.clone());
        if !table_exists(&conn, "_checkpoint_history")
            .map_err(self.duckdb_error(context.clone()))?
            || !table_columns(&conn, "_checkpoint_keys")
                .map_err(self.duckdb_error(context.clone()))?
                .iter()
                .any(|c| c == "version")
        {
            return Ok(Vec::new());
        }
        let rows = conn
            .query_text_rows_cached(history::VERSIONS_SQL, &[table.into(), table.into()])
            .map_err(error)?;
        rows.into_iter()
            .map(|row| history_version(row).map_err(Error::Format))
            .collect()
    }

    /// A swap inside one transaction: the current table renamed into the history, the
    /// version's table renamed back; no row is copied.
    fn restore_version(
        &self,
        judged: &HistoryVersion,
        keep: usize,
    ) -> Result<Option<CheckpointInfo>> {
        let table = judged.checkpoint.table_name.as_str();
        validate_writable_table_name(table)?;
        let context = format!("restoring version {} of {table:?}", judged.version);
        self.check_writable(&context)?;
        let version = i64::try_from(judged.version)
            .map_err(|_| Error::Format(format!("{context}: no such version number")))?;
        let restored = self
            .writing(|conn| {
                conn.transaction(|| {
                    if judged.current
                        || !history::restore(conn, table, version, judged.checkpoint.created_at)?
                    {
                        return Ok(false);
                    }
                    delete_batches(conn, table)?;
                    history::prune(conn, table, keep)?;
                    Ok(true)
                })
            })
            .map_err(self.duckdb_error(context))?;
        if !restored {
            return Ok(None);
        }
        self.checkpoint(table)
    }

    /// In one transaction: a save of this file waits for it.
    fn prune_history(&self, keep: usize) -> Result<usize> {
        let context = "pruning the history";
        self.check_writable(context)?;
        self.writing(|conn| {
            conn.transaction(|| {
                if !table_exists(conn, "_checkpoint_history")? {
                    return Ok(0);
                }
                let before =
                    conn.query_i64_cached("SELECT count(*) FROM _checkpoint_history", &[])?;
                let tables = conn.query_text_rows_cached(
                    "SELECT DISTINCT table_name FROM _checkpoint_history",
                    &[],
                )?;
                for table in tables.into_iter().filter_map(|mut row| row.pop().flatten()) {
                    history::prune(conn, &table, keep.max(1))?;
                }
                let after =
                    conn.query_i64_cached("SELECT count(*) FROM _checkpoint_history", &[])?;
                Ok(usize::try_from(before - after).unwrap_or(0))
            })
        })
        .map_err(self.duckdb_error(context))
    }

    /// An earlier version is copied from its own table, as `export_parquet` copies the current.
    fn export_version_parquet(&self, table: &str, version: u64, output_path: &Path) -> Result<()> {
        let Some(source) = self.version_source(table, version)? else {
            return Err(Error::TableNotFound {
                table: format!("{table} (version {version})"),
                path: self.path.clone(),
            });
        };
        let context = format!("exporting version {version} of {table:?}");
        let conn = self.reader(|| context.clone())?;
        replace_atomically(output_path, "export parquet", |tmp| {
            conn.query(
                &format!("COPY (SELECT * FROM {source}) TO ? (FORMAT PARQUET)"),
                &[tmp.to_string_lossy().as_ref().into()],
            )
            .map(drop)
            .map_err(self.duckdb_error(context.clone()))
        })
    }

    fn load_version(&self, table: &str, version: u64) -> Result<Option<DataFrame>> {
        let Some(source) = self.version_source(table, version)? else {
            return Ok(None);
        };
        let context = format!("loading version {version} of {table:?}");
        let conn = self.reader(|| context.clone())?;
        conn.query_unprepared(&format!("SELECT * FROM {source}"))
            .map(Some)
            .map_err(self.duckdb_error(context))
    }

    fn adopt_checkpoint(
        &self,
        table: &str,
        created_at: Option<NaiveDateTime>,
        saved_at: Option<NaiveDateTime>,
        key: &CheckpointKey,
        lineage: &Lineage,
    ) -> Result<bool> {
        validate_writable_table_name(table)?;
        let context = format!("adopting the checkpoint of {table:?}");
        self.check_writable(&context)?;
        let stamped = saved_at.map(to_micros).or(created_at);
        let adopted = self.writing(|conn| {
            conn.transaction(|| {
                let same = conn.query_i64_cached(
                    "SELECT count(*) FROM _checkpoints WHERE table_name = ? \
                 AND CAST(created_at AS TIMESTAMP) IS NOT DISTINCT FROM ?",
                    &[
                        table.into(),
                        created_at.map_or(Param::Null, Param::Timestamp),
                    ],
                )? == 1;
                if same {
                    if stamped != created_at {
                        conn.query_cached(
                            "UPDATE _checkpoints SET created_at = ? WHERE table_name = ?",
                            &[stamped.map_or(Param::Null, Param::Timestamp), table.into()],
                        )?;
                    }
                    write_key(conn, table, stamped, key, lineage, None, None)?;
                }
                Ok(same)
            })
        });
        adopted.map_err(self.duckdb_error(context))
    }

    fn batch_progress(&self, table: &str, key: &str) -> Result<Vec<String>> {
        validate_writable_table_name(table)?;
        let context = format!("reading the finished batches of {table:?}");
        let conn = self.lock();
        let read = (|| {
            let others = conn.query_i64_cached(
                "SELECT count(*) FROM _checkpoint_batches WHERE table_name = ? AND key <> ?",
                &[table.into(), key.into()],
            )?;
            if others > 0 {
                // Made from other arguments or code: not to be mixed in.
                conn.transaction(|| delete_batches(&conn, table))?;
                return Ok(Vec::new());
            }
            let rows = conn.query_text_rows_cached(
                "SELECT item FROM _checkpoint_batches WHERE table_name = ? AND key = ?",
                &[table.into(), key.into()],
            )?;
            Ok(rows
                .into_iter()
                .filter_map(|mut row| row.pop().flatten())
                .collect())
        })();
        read.map_err(self.duckdb_error(context))
    }

    fn discard_batches(&self, table: &str) -> Result<()> {
        validate_writable_table_name(table)?;
        let conn = self.lock();
        conn.transaction(|| delete_batches(&conn, table))
            .map_err(self.duckdb_error(format!("discarding the batches of {table:?}")))
    }

    fn record_batch_total(&self, table: &str, key: &str, total: usize) -> Result<()> {
        validate_writable_table_name(table)?;
        let context = format!("recording the item count of {table:?}");
        self.check_writable(&context)?;
        let total = i64::try_from(total).unwrap_or(i64::MAX);
        self.lock()
            .query_cached(
                "INSERT OR REPLACE INTO _checkpoint_batch_totals (table_name, key, total_items) \
                 VALUES (?, ?, ?)",
                &[table.into(), key.into(), Param::Int(total)],
            )
            .map(drop)
            .map_err(self.duckdb_error(context))
    }

    fn save_batch(
        &self,
        table: &str,
        key: &str,
        items: &[String],
        frame: &DataFrame,
    ) -> Result<()> {
        validate_writable_table_name(table)?;
        let context = format!("saving a batch of {table:?}");
        self.check_writable(&context)?;
        // JSON escapes every control character, so \x01 never occurs inside an item.
        let joined = items.join("\u{1}");
        let record_items = |conn: &Connection| {
            if items.is_empty() {
                return Ok(());
            }
            conn.query_cached(
                "INSERT INTO _checkpoint_batches SELECT ?, ?, unnest(string_split(?, chr(1)))",
                &[table.into(), key.into(), joined.as_str().into()],
            )
            .map(drop)
        };
        let conn = self.lock();
        if frame.width() == 0 {
            // Items that gave no rows: only their being done is recorded.
            return conn
                .transaction(|| record_items(&conn))
                .map_err(self.duckdb_error(context));
        }
        validate_columns(table, frame)?;
        let stream = frame_stream(table, frame)?;
        let partial = partial_table(table);
        let partial_name = format!("_partial_{table}");
        let saved = (|| {
            let view = conn.scan(stream)?;
            let source = view.source();
            conn.transaction(|| {
                if table_exists(&conn, &partial_name)? {
                    conn.execute(&format!(
                        "INSERT INTO {partial} BY NAME SELECT * FROM {source}"
                    ))?;
                } else {
                    conn.execute(&format!("CREATE TABLE {partial} AS SELECT * FROM {source}"))?;
                }
                record_items(&conn)
            })
        })();
        saved.map_err(self.duckdb_error(context))
    }

    fn load_batches(&self, table: &str) -> Result<Option<DataFrame>> {
        validate_writable_table_name(table)?;
        self.load_dataframe(&format!("_partial_{table}"))
    }

    fn pending_batches(&self) -> Result<Vec<PendingBatches>> {
        if !self.batches_table {
            return Ok(Vec::new());
        }
        let sql = if self.totals_table {
            "SELECT b.table_name, b.key, CAST(count(*) AS VARCHAR), CAST(any_value(t.total_items) AS VARCHAR) \
             FROM _checkpoint_batches b LEFT JOIN _checkpoint_batch_totals t \
             ON t.table_name = b.table_name AND t.key = b.key \
             GROUP BY b.table_name, b.key ORDER BY b.table_name"
        } else {
            "SELECT table_name, key, CAST(count(*) AS VARCHAR), NULL::VARCHAR FROM _checkpoint_batches \
             GROUP BY table_name, key ORDER BY table_name"
        };
        let context = "reading the pending batches";
        let rows = self
            .reader(|| context.to_owned())?
            .query_text_rows_cached(sql, &[])
            .map_err(self.duckdb_error(context))?;
        let count = |table: &str, n: &str| {
            n.parse::<usize>()
                .map_err(|_| Error::Format(format!("a batch count of {table:?} is {n:?}")))
        };
        rows.into_iter()
            .map(|row| match <[Option<String>; 4]>::try_from(row) {
                Ok([Some(table), Some(key), Some(items), total]) => Ok(PendingBatches {
                    items: count(&table, &items)?,
                    total: total.map(|n| count(&table, &n)).transpose()?,
                    table,
                    key,
                }),
                other => Err(Error::Format(format!(
                    "a _checkpoint_batches row without a table or key: {other:?}"
                ))),
            })
            .collect()
    }

    fn append_provenance(&self, record: &ProvenanceRecord) -> Result<()> {
        self.with_connection(
            |conn| {
                conn.execute(PROVENANCE_DDL)?;
                insert_provenance(conn, record)
            },
            "saving provenance to _provenance",
        )
    }
}

/// Opens the database, retrying while another process holds the file, up to `wait`.
fn open_waiting(
    path: &Path,
    settings: &[(&str, &str)],
    wait: Option<std::time::Duration>,
) -> Result<Database> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(20);
    let mut told = false;
    loop {
        match Database::open(path, settings) {
            Ok(db) => return Ok(db),
            Err(e) if e.kind == DuckdbErrorKind::LockConflict => {
                let Some(wait) = wait else {
                    return Err(open_error(path, e));
                };
                let waited = started.elapsed();
                if waited >= wait {
                    return Err(Error::StoreInUse {
                        path: path.to_owned(),
                        message: format!(
                            "still held after waiting {:.1} s: {}",
                            waited.as_secs_f64(),
                            e.message
                        ),
                    });
                }
                if !std::mem::replace(&mut told, true) {
                    tracing::info!(path = %path.display(), wait_s = wait.as_secs_f64(), "the store is in use by another process: waiting");
                }
                std::thread::sleep(pause.min(wait - waited));
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            Err(e) => return Err(open_error(path, e)),
        }
    }
}

/// A failure to open the store: another process holding it is [`Error::StoreInUse`].
fn open_error(path: &Path, e: DuckError) -> Error {
    if e.kind == DuckdbErrorKind::LockConflict {
        Error::StoreInUse {
            path: path.to_owned(),
            message: e.message,
        }
    } else {
        Error::Open {
            path: path.to_owned(),
            kind: e.kind,
            message: e.message,
        }
    }
}

/// A failed statement of the store at `path`, while doing `context`.
fn duckdb_error(path: &Path, context: &str, e: DuckError) -> Error {
    Error::Duckdb {
        path: path.to_owned(),
        context: context.to_owned(),
        kind: e.kind,
        message: e.message,
    }
}

/// `frame` exported for DuckDB's Arrow scan.
fn frame_stream(table: &str, frame: &DataFrame) -> Result<FrameStream> {
    FrameStream::new(frame).map_err(|message| Error::Arrow {
        what: format!("table {table:?}"),
        message,
    })
}

/// The column names of `table` in the store's schema, in order (none if there is no such table).
fn table_columns(conn: &Connection, table: &str) -> std::result::Result<Vec<String>, DuckError> {
    let rows = conn.query_text_rows_cached(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() \
         AND schema_name = current_schema() AND table_name = ? ORDER BY column_index",
        &[table.into()],
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|mut row| row.pop().flatten())
        .collect())
}

fn table_exists(conn: &Connection, table: &str) -> std::result::Result<bool, DuckError> {
    let n = conn.query_i64_cached(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() \
         AND schema_name = current_schema() AND lower(table_name) = lower(?)",
        &[table.into()],
    )?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CheckpointVersion;

    /// A store in a temporary directory of its own, removed once the store is closed (fields
    /// drop in order).
    pub(super) struct TempStore {
        store: PipelineStore,
        _dir: tempfile::TempDir,
    }

    impl std::ops::Deref for TempStore {
        type Target = PipelineStore;
        fn deref(&self) -> &PipelineStore {
            &self.store
        }
    }

    pub(super) fn temp_store() -> TempStore {
        let dir = tempfile::tempdir().unwrap();
        TempStore {
            store: PipelineStore::open(dir.path().join("conformance.duckdb")).unwrap(),
            _dir: dir,
        }
    }

    crate::conformance_suite!(temp_store());
    crate::history_suite!(temp_store());

    /// Release 0.1.0 writing to an upgraded store re-saves a checkpoint and rewrites only the
    /// six key columns it knows: the lineage left from the previous save is not taken for the
    /// new data's.
    #[test]
    fn lineage_left_behind_by_an_older_writer_is_ignored() {
        let store = temp_store();
        let frame = df!("gene_symbol" => ["USH2A"]).unwrap();
        let key = CheckpointKey::new("fetch", "version:1", Default::default(), Default::default())
            .unwrap();
        let lineage = Lineage {
            data_version: Some(crate::data_version(&frame).unwrap()),
            ..Lineage::default()
        };
        let record = ProvenanceRecord {
            version: "0.2.0".into(),
            config_hash: "abc".into(),
            created_at: now_utc(),
            steps_json: "[]".into(),
        };
        store
            .save_checkpoint("genes", &frame, "", &key, &lineage, &record)
            .unwrap();
        assert_eq!(store.checkpoint("genes").unwrap().unwrap().lineage, lineage);
        // What 0.1.0's save does to the metadata (its table write aside).
        store
            .with_connection(
                |c| {
                    c.execute(
                        "UPDATE _checkpoints SET created_at = TIMESTAMP '2030-01-01 00:00:00' WHERE table_name = 'genes'",
                    )?;
                    c.query(
                        "INSERT OR REPLACE INTO _checkpoint_keys (table_name, checkpoint_created_at, key, \
                         function, code, arguments) VALUES ('genes', TIMESTAMP '2030-01-01 00:00:00', ?, \
                         'fetch', 'version:1', '{}')",
                        &[key.key.as_str().into()],
                    )
                    .map(drop)
                },
                "writing as 0.1.0 does",
            )
            .unwrap();
        let info = store.checkpoint("genes").unwrap().unwrap();
        assert_eq!(info.key.as_ref().map(|k| &k.key), Some(&key.key));
        assert_eq!(info.lineage, Lineage::default());
        assert_eq!(info.version(), CheckpointVersion::Saved(info.created_at));
    }

    /// An upgrade that fails after adding its columns (here the schema row is refused) leaves
    /// the store at schema version 1: one transaction.
    #[test]
    fn a_failed_upgrade_rolls_back_every_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.duckdb");
        {
            let store = PipelineStore::open(&path).unwrap();
            store
                .with_connection(
                    |conn| {
                        for (name, _) in LINEAGE_COLUMNS {
                            conn.execute(&format!(
                                "ALTER TABLE _checkpoint_keys DROP COLUMN {name}"
                            ))?;
                        }
                        conn.execute("DROP TABLE _usher_schema")?;
                        conn.execute(
                            "CREATE TABLE _usher_schema (name VARCHAR PRIMARY KEY, \
                             value VARCHAR CHECK (value = 'never'))",
                        )
                    },
                    "going back to schema version 1",
                )
                .unwrap();
        }
        match PipelineStore::open(&path) {
            Err(Error::Duckdb { context, .. }) if context.contains("upgrading") => {}
            other => panic!("expected a failed upgrade, got {other:?}"),
        }
        let store = PipelineStore::open_read_only(&path).unwrap();
        let columns = store
            .with_connection(
                |conn| table_columns(conn, "_checkpoint_keys"),
                "reading columns",
            )
            .unwrap();
        assert_eq!(columns.len(), 6, "{columns:?}");
    }

    /// A store as the Python pipeline writes it (no `_checkpoint_keys`, no `_usher_schema`),
    /// opened read-only: its checkpoints read as unkeyed. The key columns then come from bare
    /// `NULL`s, a column type DuckDB's value accessors crash on.
    #[test]
    fn a_python_store_opened_read_only_lists_unkeyed_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("python.duckdb");
        {
            let store = PipelineStore::open(&path).unwrap();
            let frame = df!("gene_symbol" => ["USH2A"]).unwrap();
            store.save_dataframe("genes", &frame, "by hand").unwrap();
            store
                .with_connection(
                    |c| c.execute("DROP TABLE _checkpoint_keys; DROP TABLE _usher_schema"),
                    "making a Python store",
                )
                .unwrap();
        }
        let store = PipelineStore::open_read_only(&path).unwrap();
        let list = store.list_checkpoints().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].table_name, "genes");
        assert_eq!((list[0].key.as_ref(), list[0].row_count), (None, Some(1)));
    }
}
