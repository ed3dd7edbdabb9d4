//! `SharedStore`: the checkpoints of several machines in one place. The catalog (checkpoint
//! rows, keys and lineage, batch progress, provenance) and the compute locks live in
//! PostgreSQL; each frame is a Parquet file under a data root that every worker mounts.
//!
//! One worker computes a missing table: [`CheckpointStore::lock_table`] takes a per-table
//! advisory lock on the process's session connection (`locks.rs`), the pipeline checks the
//! catalog again under it, and the body's result is registered on that same connection before
//! the lock is released. A worker whose session ended therefore cannot register what it
//! computed after losing the lock ([`Error::LockLost`]); the file it wrote is an orphan that
//! [`SharedStore::gc`] removes. Workers waiting on the lock hold no connection; they wake on
//! the release's notice and load the registered result.
//!
//! Every write of a table's files happens under its lock (a hand-made save takes it for the
//! duration), which is what lets `gc` tell an orphan from a file being written: it only
//! collects tables whose lock it can take.

mod catalog;
mod conn;
mod files;
mod history;
mod lake;
mod locks;
mod passfile;
mod tls;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use chrono::NaiveDateTime;
use polars::prelude::DataFrame;
use postgres::Client;
// The hot lookups (a hit reads a checkpoint row and its file) name their parameters' types, so
// each is one round trip instead of three (prepare, execute, close).
use postgres::types::Type;

use crate::atomic_file::{copy_atomically, replace_atomically};
use crate::error::{Error, Result};
use crate::model::{CheckpointInfo, CheckpointKey, HistoryVersion, Lineage, ProvenanceRecord};
use crate::names::{validate_table_name, validate_writable_table_name};
use crate::settings::{DATA_ROOT_ENV, STORE_ENV, Settings};
use crate::store::Param;
use crate::store::sql::{checkpoint_row, quote_ident};
use crate::store::time::{now_local, to_micros};
use crate::store::{
    CheckpointStore, JudgedLoad, LockFuture, PendingBatches, ReleaseFuture, TableLock,
    newest_first, validate_columns,
};
use catalog::Catalog;
use conn::off_runtime;
use files::{DataRoot, Kind, duck_error};
use locks::Locks;

pub use catalog::{CATALOG_SCHEMA_VERSION, DEFAULT_CONNECTIONS, RECONNECT_LIMIT};

/// The file in the data root that names the catalog it belongs to.
const STORE_ID_FILE: &str = ".usher-store";
/// [`STORE_ID_FILE`] while the store is being created: renamed to it once the catalog has
/// recorded the id, so a root never names a store its catalog does not have.
const PENDING_ID_FILE: &str = ".usher-store.creating";

/// How to open a [`SharedStore`].
#[derive(Debug, Clone, Default)]
pub struct SharedStoreOptions {
    /// DuckDB threads for reading and writing Parquet files; `None` uses every core.
    pub threads: Option<usize>,
    /// Open only a store that exists (the catalog's tables in the database, the data root
    /// with its marker) and never make a new one: for looking at a store, where a mistyped URL
    /// or path must not leave an empty store behind.
    pub must_exist: bool,
    /// The most connections to the catalog this store opens at once (at least 1): one session
    /// connection, which holds every compute lock of the process and runs every registration,
    /// and reading connections beside it. `None` is [`DEFAULT_CONNECTIONS`]. Calls waiting for
    /// another worker's table hold none.
    pub connections: Option<usize>,
}

/// Checkpoints shared by several machines: catalog and locks on a PostgreSQL server, frames as
/// Parquet files under a data root every worker mounts. Runs the same `#[checkpointed]`
/// functions, [`Pipeline`](crate::Pipeline)s and [`Batches`](crate::Batches) as the DuckDB
/// file store, and each missing table is computed by one worker of all those sharing it.
///
/// Cheap to clone (the clones share connections and locks) and shareable across threads by
/// `&`. Every call works from any thread, async ones included: called on a thread of a tokio
/// runtime (either flavour, `#[tokio::main]`'s too), the client's work moves to a thread of
/// its own for the call's duration, and the async lock of an `async` step waits for another
/// worker without holding up the caller's executor; no runtime is required. The password of
/// the connection URL is kept in the client's settings only: errors, logs, provenance and
/// [`name`](Self::name) show the catalog as `postgres://user@host:port/db`.
#[derive(Clone)]
pub struct SharedStore {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Arc<Catalog>,
    files: DataRoot,
    /// The compute locks, on the catalog's session connection: the writes of a table whose
    /// lock this process holds go through it.
    locks: Locks,
    /// Whether the catalog is also a DuckLake (every store created since 0.2.0): saves and
    /// deletes are then snapshots of the lake too, and a table's earlier files stay, for the
    /// lake's history.
    lake: AtomicBool,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore")
            .field("catalog", &self.inner.catalog.name())
            .field("data_root", &self.inner.files.root())
            .finish()
    }
}

/// The catalog's tables as one row per checkpoint, columns in the order
/// [`checkpoint_row`] decodes, then the data file; with `lake`, one row for every table of
/// the catalog or the lake, followed by whether the catalog has it and what the lake holds
/// under its name (see [`decode`]).
fn checkpoints_sql(one_table: bool, lake: bool) -> String {
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
        "k.max_age_seconds::text",
    ]
    .map(when)
    .join(", ");
    let (inner_filter, outer_filter) = match (one_table, lake) {
        (false, _) => ("", ""),
        (true, true) => (" WHERE table_name = $1", ""),
        (true, false) => ("", " WHERE c.table_name = $1"),
    };
    let (names, name, held, held_join) = match lake {
        false => (
            "_checkpoints c".to_owned(),
            "c.table_name",
            String::new(),
            String::new(),
        ),
        true => {
            let (columns, join) = lake::held_sql("n.table_name", "f.path");
            (
                format!(
                    "(SELECT table_name FROM _checkpoints{inner_filter} UNION {}) n \
                     LEFT JOIN _checkpoints c ON c.table_name = n.table_name",
                    lake::tables_sql(one_table)
                ),
                "n.table_name",
                format!(", c.table_name IS NOT NULL, {columns}"),
                format!(" {join}"),
            )
        }
    };
    format!(
        "SELECT {name}, to_char(c.created_at, 'YYYY-MM-DD HH24:MI:SS.US'), \
         c.row_count::text, c.description, k.key, k.function, k.code, k.arguments, {lineage}, \
         f.path{held} FROM {names} \
         LEFT JOIN _checkpoint_keys k ON {} \
         LEFT JOIN _checkpoint_files f ON f.table_name = {name}{held_join}{outer_filter}",
        key_of_checkpoint!(),
    )
}

/// What [`SharedStore::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedGcReport {
    /// Data files no catalog row names (left by killed workers or superseded saves).
    pub files_removed: usize,
    /// Their size in bytes.
    pub bytes_removed: u64,
    /// Tables skipped because a worker holds their lock (computing them now).
    pub tables_busy: Vec<String>,
    /// `_checkpoint_keys` rows of checkpoints saved since without a key.
    pub orphaned_keys: usize,
}

/// What [`SharedStore::expire_snapshots`] removed from the lake's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiredSnapshots {
    /// Snapshots removed (never the latest).
    pub snapshots: u64,
    /// Data files no remaining snapshot reads any more: the store's own are removed by the
    /// next [`gc`](SharedStore::gc); those a DuckDB client wrote are scheduled for its
    /// `ducklake_cleanup_old_files`.
    pub files: usize,
}

impl SharedStore {
    /// Opens the store whose catalog is at `url` and whose files are under `data_root`
    /// (created if missing). The first open creates the catalog's tables and ties the data
    /// root to the catalog (`<data_root>/.usher-store`); later opens check that they match.
    pub fn open(url: &str, data_root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(url, data_root, &SharedStoreOptions::default())
    }

    /// [`open`](Self::open) with `options`.
    pub fn open_with(
        url: &str,
        data_root: impl AsRef<Path>,
        options: &SharedStoreOptions,
    ) -> Result<Self> {
        let data_root = data_root.as_ref();
        let open = || {
            let connections = options.connections.unwrap_or(DEFAULT_CONNECTIONS);
            let catalog = Arc::new(Catalog::open(url, !options.must_exist, connections)?);
            let files = DataRoot::open(data_root, options.threads, !options.must_exist)?;
            let store = SharedStore {
                inner: Arc::new(Inner {
                    locks: Locks::new(Arc::clone(&catalog)),
                    catalog,
                    files,
                    lake: AtomicBool::new(false),
                }),
            };
            store.check_data_root(!options.must_exist)?;
            Ok(store)
        };
        off_runtime(open).map_err(|source| Error::Io {
            action: "start a thread for the PostgreSQL client of",
            path: catalog::redact(url).into(),
            source,
        })?
    }

    /// The shared store [`STORE_ENV`] and [`DATA_ROOT_ENV`] name, `None` when neither is set:
    /// [`from_settings`](Self::from_settings) with [`Settings::from_env`].
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_settings(&Settings::from_env()?)
    }

    /// The shared store `settings.store` and `settings.data_root` name, `None` when neither is
    /// set; one without the other is an [`Error::Setting`] naming the missing one.
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>> {
        match (&settings.store, &settings.data_root) {
            (None, None) => Ok(None),
            (Some(url), Some(root)) => {
                let options = SharedStoreOptions {
                    connections: settings.store_connections,
                    ..SharedStoreOptions::default()
                };
                Self::open_with(url, root, &options).map(Some)
            }
            (Some(url), None) => Err(Error::Setting {
                setting: DATA_ROOT_ENV,
                value: String::new(),
                message: format!(
                    "{STORE_ENV}={} names a shared store, which also needs the directory of its data files",
                    catalog::redact(url)
                ),
            }),
            (None, Some(root)) => Err(Error::Setting {
                setting: STORE_ENV,
                value: String::new(),
                message: format!(
                    "{DATA_ROOT_ENV}={} is set, but no PostgreSQL catalog to go with it",
                    root.display()
                ),
            }),
        }
    }

    /// The catalog, as `postgres://user@host:port/dbname` (never with a password).
    pub fn name(&self) -> &str {
        self.inner.catalog.name()
    }

    /// The data root.
    pub fn data_root(&self) -> &Path {
        self.inner.files.root()
    }

    fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Runs `work`, which uses the catalog's client, where the client may block: see
    /// [`off_runtime`]. Every public call of the store goes through here (or through a call
    /// that does), so the store works from any thread, async runtimes' included.
    fn off<R: Send>(&self, work: impl FnOnce() -> Result<R> + Send) -> Result<R> {
        off_runtime(work).map_err(|source| Error::Io {
            action: "start a thread for the PostgreSQL client of",
            path: self.name().into(),
            source,
        })?
    }

    fn pg(&self, context: impl Into<String>) -> impl FnOnce(postgres::Error) -> Error + '_ {
        self.catalog().error(context)
    }

    /// Ties the data root to the catalog: the catalog's store id (made by the first open) is
    /// written to `.usher-store` in the root, and must match it there on every later open, so
    /// a worker given another store's directory (or an unmounted path) stops at once. Makes a
    /// new store only when `create`.
    ///
    /// A creation is all or nothing across kills and lost connections: the id is written to
    /// `.usher-store.creating` first, the catalog's transaction records it, and only then is
    /// the file renamed to `.usher-store`. Whatever a creation that died left, the next open
    /// (under the same lock) finishes it, if the catalog got the id, or starts over.
    fn check_data_root(&self, create: bool) -> Result<()> {
        let context = "checking the data root";
        let mut client = self.catalog().client(context)?;
        let mut tx = client.transaction().map_err(self.pg(context))?;
        // Every open of this catalog in turn: a creator holds it until its id is committed.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&self.catalog().lock_key("")],
        )
        .map_err(self.pg(context))?;
        let recorded: Option<String> = tx
            .query_opt(
                "SELECT value FROM _usher_schema WHERE name = 'store_id'",
                &[],
            )
            .map_err(self.pg(context))?
            .and_then(|row| row.get(0));
        let format = lake::format(&mut tx).map_err(self.pg(context))?;
        if let Some(found) = &format
            && found != lake::LAKE_FORMAT
        {
            return Err(Error::Postgres {
                store: self.name().to_owned(),
                context: "opening the store's DuckLake catalog".to_owned(),
                code: None,
                message: format!(
                    "the catalog is DuckLake {found} (migrated by a newer DuckDB?); this release \
                     reads and writes DuckLake {} only",
                    lake::LAKE_FORMAT
                ),
            });
        }
        self.inner.lake.store(format.is_some(), Ordering::SeqCst);
        let marker = self.data_root().join(STORE_ID_FILE);
        let pending = self.data_root().join(PENDING_ID_FILE);
        let on_disk = read_marker(&marker)?;
        match (recorded, on_disk) {
            (Some(id), Some(found)) if id == found => {
                // A store made before the lake: upgraded once, by the first open that may
                // write (a look never changes the store).
                if create
                    && format.is_none()
                    && let Some(data_path) = self.lake_data_path()
                    && self.upgrade_to_lake(&mut tx, &data_path)?
                {
                    tx.commit().map_err(self.pg(context))?;
                    self.inner.lake.store(true, Ordering::SeqCst);
                }
                Ok(())
            }
            (Some(id), Some(found)) => Err(self.wrong_root(format!(
                "it holds the files of store {found}, the catalog is store {id}"
            ))),
            // Recorded, and killed before the rename: the creation is finished here.
            (Some(id), None) if read_marker(&pending)?.as_deref() == Some(id.as_str()) => {
                self.finish_creation(&id)
            }
            // A store's root has its marker from its creation on: a root without it is
            // another directory (the share not mounted here).
            (Some(id), None) => Err(self.wrong_root(format!(
                "no {STORE_ID_FILE} there, but the catalog is store {id}: is the shared directory \
                 mounted on this machine? (If this is the store's directory and the file was \
                 deleted, write `{id}` into {STORE_ID_FILE} there.)"
            ))),
            (None, Some(found)) => Err(self.wrong_root(format!(
                "it holds the files of store {found}, and this catalog has none: the URL names \
                 another catalog than the one these files belong to (check the database and \
                 the schema in its search_path), or that catalog was emptied or dropped. To \
                 start a new store in this directory, remove {STORE_ID_FILE} from it, and the \
                 tables/ and batches/ directories, whose files no catalog names any more."
            ))),
            (None, None) if !create => Err(self.wrong_root(
                "no store was ever completed in this catalog: a worker's open (without \
                 must_exist) creates it"
                    .to_owned(),
            )),
            (None, None) => {
                // A pending id under this lock is one no catalog ever got: its creator died or
                // lost its connection before its commit (else this open would still be
                // waiting for the lock).
                remove_if_there(&pending)?;
                let id = new_store_id();
                write_marker(&pending, &id)?;
                crash_point("marker-written");
                tx.execute(
                    "INSERT INTO _usher_schema (name, value) VALUES ('store_id', $1)",
                    &[&id],
                )
                .map_err(self.pg(context))?;
                if let Some(data_path) = self.lake_data_path() {
                    let created_by = format!("usher-pipeline {}", env!("CARGO_PKG_VERSION"));
                    // A catalog whose store id was removed to start over keeps its lake (and
                    // its history); its files are now under this root.
                    match &format {
                        None => lake::create(&mut tx, &data_path, &created_by),
                        Some(_) => lake::set_data_path(&mut tx, &data_path),
                    }
                    .map_err(self.pg(context))?;
                    self.inner.lake.store(true, Ordering::SeqCst);
                }
                // A commit whose answer was lost may or may not have happened: the pending id
                // is left for the next open, which tells which from the catalog.
                tx.commit().map_err(self.pg(context))?;
                crash_point("committed");
                self.finish_creation(&id)
            }
        }
    }

    /// The data root as the lake records it (absolute, ending in `/`), `None` when it has no
    /// absolute UTF-8 name (the store is then made without a lake).
    fn lake_data_path(&self) -> Option<String> {
        let absolute = std::fs::canonicalize(self.data_root()).ok()?;
        let text = absolute.to_str()?;
        Some(if text.ends_with('/') {
            text.to_owned()
        } else {
            format!("{text}/")
        })
    }

    /// Makes the catalog of a store created before the lake a DuckLake, in the open's
    /// transaction: each checkpoint's current file is registered as it is (no data copied),
    /// its columns matched by name (files of then have no field ids), one snapshot per table;
    /// a table whose types the lake cannot hold is left out. The store then records catalog
    /// version 2, which earlier releases refuse. Under every table's compute lock (taken for
    /// the transaction), so no save is half way meanwhile; `false` (nothing done) when a worker
    /// holds one: a later open upgrades.
    fn upgrade_to_lake(&self, tx: &mut postgres::Transaction<'_>, data_path: &str) -> Result<bool> {
        let context = "making the catalog a DuckLake";
        let tables: Vec<String> = tx
            .query("SELECT table_name FROM _checkpoint_files", &[])
            .map_err(self.pg(context))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for table in &tables {
            let free: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock($1)",
                    &[&self.catalog().lock_key(table)],
                )
                .map_err(self.pg(context))?
                .get(0);
            if !free {
                tracing::info!(
                    table,
                    "a worker computes the table: the lake is made at a later open"
                );
                return Ok(false);
            }
        }
        let created_by = format!("usher-pipeline {} (upgrade)", env!("CARGO_PKG_VERSION"));
        lake::create(tx, data_path, &created_by).map_err(self.pg(context))?;
        let registered: Vec<(String, String, i32)> = tx
            .query(
                "SELECT f.table_name, f.path, c.row_count FROM _checkpoint_files f \
                 JOIN _checkpoints c ON c.table_name = f.table_name ORDER BY f.table_name",
                &[],
            )
            .map_err(self.pg(context))?
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    row.get(1),
                    row.get::<_, Option<i32>>(2).unwrap_or(-1),
                )
            })
            .collect();
        let files = &self.inner.files;
        for (table, path, rows) in registered {
            let prefix = format!("{}/{table}/", Kind::Table.dir());
            let Some(name) = path.strip_prefix(&prefix) else {
                continue;
            };
            let Some(described) = files.describe(&path, &table)? else {
                tracing::warn!(table, "a type the upgrade cannot map: left out of the lake");
                continue;
            };
            if i64::from(rows) != described.rows {
                tracing::warn!(
                    table,
                    "the file's row count is not the catalog's: left out of the lake"
                );
                continue;
            }
            let file = lake::LakeFile {
                name,
                columns: &described.columns,
                rows: described.rows,
                bytes: described.bytes,
                footer: described.footer,
                by_name: true,
            };
            lake::replace(tx, self.lake_lock_key(), &table, Some(&file))
                .map_err(self.pg(context))?;
        }
        tx.execute(
            "UPDATE _usher_schema SET value = $1 WHERE name = 'schema_version'",
            &[&CATALOG_SCHEMA_VERSION.to_string()],
        )
        .map_err(self.pg(context))?;
        Ok(true)
    }

    /// Whether the catalog is a DuckLake now: another worker's open may have made it one since
    /// this process opened the store. Asked (one round trip) only while it is not: saves and
    /// deletes ask under the table's compute lock, which such an upgrade takes too; reads ask
    /// so that no lookup misses what another writer did through a lake made meanwhile.
    fn lake_now(&self) -> Result<bool> {
        if self.has_lake() {
            return Ok(true);
        }
        let lake: bool = self
            .catalog()
            .read("looking for the store's DuckLake", |client| {
                client.query_one("SELECT to_regclass('ducklake_metadata') IS NOT NULL", &[])
            })?
            .get(0);
        if lake {
            self.inner.lake.store(true, Ordering::SeqCst);
        }
        Ok(lake)
    }

    /// Whether the catalog is also a DuckLake.
    fn has_lake(&self) -> bool {
        self.inner.lake.load(Ordering::SeqCst)
    }

    /// The transaction lock under which this store's writers take the lake's snapshot ids one
    /// at a time (a name no table has: table names cannot hold control characters).
    fn lake_lock_key(&self) -> i64 {
        self.catalog().lock_key("\u{1}ducklake")
    }

    /// Renames the pending marker holding `id` to the store's marker, once the catalog has
    /// `id`. Another open may have done it first (this one runs after its own commit, without
    /// the lock).
    fn finish_creation(&self, id: &str) -> Result<()> {
        let marker = self.data_root().join(STORE_ID_FILE);
        let pending = self.data_root().join(PENDING_ID_FILE);
        let renamed = match read_marker(&pending)? {
            Some(found) if found == id => std::fs::rename(&pending, &marker),
            _ => Err(std::io::ErrorKind::NotFound.into()),
        };
        if let Err(source) = renamed {
            return match read_marker(&marker)? {
                Some(found) if found == id => Ok(()),
                Some(found) => Err(self.wrong_root(format!(
                    "it holds the files of store {found}, the catalog is store {id} (was \
                     another store created in this directory at the same time?)"
                ))),
                None => Err(Error::Io {
                    action: "finish the creation of the store by renaming",
                    path: pending,
                    source,
                }),
            };
        }
        // The rename itself is durable once the directory is; best effort, as for every
        // atomic file (some filesystems refuse to sync a directory).
        let _ = std::fs::File::open(self.data_root()).and_then(|d| d.sync_all());
        Ok(())
    }

    /// The error of a data root that is not this catalog's.
    fn wrong_root(&self, message: String) -> Error {
        Error::DataRoot {
            store: self.name().to_owned(),
            path: self.data_root().to_owned(),
            message,
        }
    }

    /// Runs `work` on the session connection holding `table`'s compute lock: taken for the
    /// duration of `work` unless this process holds it (a body computing the table).
    fn locked<T>(
        &self,
        table: &str,
        context: &str,
        work: impl FnOnce(&mut Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let _taken = self.lock_unless_held(table)?;
        self.inner.locks.on_lock(table, context, work)
    }

    /// The data files `sql` (one `$1` for `table`) names; `doing` says what for in errors
    /// ("loading the batches of").
    fn paths_of(&self, table: &str, sql: &str, doing: &str) -> Result<Vec<String>> {
        let context = format!("{doing} {table:?}");
        self.catalog().read(&context, |client| {
            Ok(client
                .query(sql, &[&table])?
                .iter()
                .map(|row| row.get(0))
                .collect())
        })
    }

    /// The checkpoint of `table` with its key and lineage, and where its rows are, in one
    /// query (the lake's version when another writer changed it there: see [`decode`]).
    fn checkpoint_and_file(&self, table: &str) -> Result<Option<(CheckpointInfo, Option<Data>)>> {
        validate_table_name(table)?;
        let context = format!("reading the checkpoint of {table:?}");
        // Every hit's lookup: prepared once per connection, since with the lake its planning
        // would cost more than its run.
        static WITH_LAKE: LazyLock<String> = LazyLock::new(|| checkpoints_sql(true, true));
        static WITHOUT_LAKE: LazyLock<String> = LazyLock::new(|| checkpoints_sql(true, false));
        // Looked for again while missing: another worker may have upgraded the store since.
        let lake = self.lake_now()?;
        let sql = if lake { &WITH_LAKE } else { &WITHOUT_LAKE };
        let row = self.catalog().read(&context, |client| {
            let statement = client.prepared(sql.as_str(), &[Type::TEXT])?;
            client.query_opt(&statement, &[&table])
        })?;
        Ok(row.map(|row| decode(&row, lake)).transpose()?.flatten())
    }

    /// The file holding `table`'s rows now (`None`: no such checkpoint, or one without data);
    /// a lake table this store does not read is an [`Error::LakeTable`].
    fn current_file(&self, table: &str) -> Result<Option<String>> {
        match self.checkpoint_and_file(table)?.and_then(|(_, data)| data) {
            None => Ok(None),
            Some(Data::File(file)) => Ok(Some(file)),
            Some(Data::Unreadable(reason)) => Err(Error::LakeTable {
                table: table.to_owned(),
                reason,
            }),
        }
    }

    /// The data file the catalog registers for `table`.
    fn registered_file(&self, table: &str) -> Result<Option<String>> {
        let context = format!("reading the data file of {table:?}");
        self.catalog().read(&context, |client| {
            Ok(client
                .query_typed_opt(
                    "SELECT path FROM _checkpoint_files WHERE table_name = $1",
                    &[(&table, Type::TEXT)],
                )?
                .map(|row| row.get(0)))
        })
    }

    /// Writes `frame` as `table`'s new data file and registers it with the `_checkpoints` row
    /// (and, for a `#[checkpointed]` save, its key, lineage and provenance row) in one
    /// transaction on the lock's connection; then removes the files it supersedes.
    fn save(
        &self,
        table: &str,
        frame: &DataFrame,
        description: &str,
        created_at: NaiveDateTime,
        key: Option<(&CheckpointKey, &Lineage, &ProvenanceRecord)>,
        keep: usize,
    ) -> Result<()> {
        self.off(|| {
            validate_writable_table_name(table)?;
            validate_columns(table, frame)?;
            let rows = i32::try_from(frame.height()).map_err(|_| {
                Error::Format(format!(
                    "cannot save table {table:?}: {} rows do not fit the INTEGER row_count column of _checkpoints",
                    frame.height()
                ))
            })?;
            // Every write of a table's files happens under its lock (see `gc`).
            let _taken = self.lock_unless_held(table)?;
            let files = &self.inner.files;
            let file = files.new_file(Kind::Table, table);
            let (bytes, written) = if self.lake_now()? {
                let written = files.write_table(&file, table, frame)?;
                (written.bytes, Some(written))
            } else {
                (files.write(&file, table, frame)?, None)
            };
            let lake_file = written.as_ref().and_then(|written| {
                Some(lake::LakeFile {
                    name: file.rsplit('/').next().unwrap_or(&file),
                    columns: written.columns.as_deref()?,
                    rows: i64::from(rows),
                    bytes: i64::try_from(written.bytes).unwrap_or(i64::MAX),
                    footer: written.footer,
                    by_name: false,
                })
            });
            let lake = written.as_ref().map(|_| LakeSave {
                lock_key: self.lake_lock_key(),
                file: lake_file,
            });
            let context = format!("registering table {table:?}");
            let row = CheckpointRow {
                table,
                rows,
                description,
                created_at,
                keep,
            };
            let registered = self.inner.locks.on_lock(table, &context, |client| {
                register(client, &row, &file, bytes, key, lake.as_ref())
            });
            match registered {
                Ok(superseded) => {
                    for old in superseded {
                        files.remove(&old);
                    }
                    Ok(())
                }
                Err(e) => {
                    // Removed only when surely not registered (a commit whose answer was lost
                    // may have gone through); otherwise gc decides.
                    if let Ok(current) = self.registered_file(table)
                        && current.as_deref() != Some(file.as_str())
                    {
                        files.remove(&file);
                    }
                    Err(e)
                }
            }
        })
    }

    /// Every checkpoint (the catalog's, and with a lake the tables other writers made there)
    /// and where its rows are, in one query.
    fn checkpoints_and_files(&self) -> Result<Vec<(CheckpointInfo, Option<Data>)>> {
        let lake = self.lake_now()?;
        let sql = checkpoints_sql(false, lake);
        let rows = self
            .catalog()
            .read("listing checkpoints", |client| client.query(&sql, &[]))?;
        let mut list = Vec::new();
        for row in &rows {
            let Some((info, data)) = decode(row, lake)? else {
                continue;
            };
            // A lake table under a name no checkpoint can have is not the store's business.
            if validate_table_name(&info.table_name).is_ok() {
                list.push((info, data));
            }
        }
        Ok(list)
    }

    /// Removes data files no catalog row names: those of workers killed between writing and
    /// registering, and superseded files a worker could not remove. A table whose lock is
    /// held (a worker computing it now) is skipped and reported; so is nothing else, since
    /// every write of a table's files happens under its lock. Also removes key rows of
    /// checkpoints re-saved without a key.
    pub fn gc(&self) -> Result<SharedGcReport> {
        self.off(|| {
            let mut report = SharedGcReport::default();
            let mut tables = BTreeSet::new();
            for kind in [Kind::Table, Kind::Batch] {
                tables.extend(self.inner.files.tables(kind)?);
            }
            for table in tables {
                if validate_writable_table_name(&table).is_err() {
                    continue;
                }
                let Some(_lock) = self.inner.locks.try_lock(&table)? else {
                    report.tables_busy.push(table);
                    continue;
                };
                let mut registered: BTreeSet<String> = self
                    .paths_of(
                        &table,
                        "SELECT path FROM _checkpoint_files WHERE table_name = $1 \
                         UNION SELECT path FROM _checkpoint_batch_files WHERE table_name = $1 \
                         UNION SELECT path FROM _checkpoint_history WHERE table_name = $1",
                        "collecting the data files of",
                    )?
                    .into_iter()
                    .collect();
                if self.lake_now()? {
                    let context = format!("collecting the lake's files of {table:?}");
                    registered.extend(
                        self.catalog()
                            .read(&context, |client| lake::files_of(client, &table))?,
                    );
                }
                for kind in [Kind::Table, Kind::Batch] {
                    for file in self.inner.files.files(kind, &table)? {
                        // A DuckDB client's file (`ducklake-<uuid>.parquet`) may be one it
                        // is writing now, under no lock of ours: its own cleanup removes it.
                        let foreign = file
                            .relative
                            .rsplit('/')
                            .next()
                            .is_some_and(|name| name.starts_with("ducklake-"));
                        if !foreign && !registered.contains(&file.relative) {
                            self.inner.files.remove(&file.relative);
                            report.files_removed += 1;
                            report.bytes_removed += file.bytes;
                        }
                    }
                }
            }
            let context = "removing orphaned key rows";
            let mut client = self.catalog().client(context)?;
            report.orphaned_keys = client
                .execute(
                    concat!(
                        "DELETE FROM _checkpoint_keys k WHERE NOT EXISTS (SELECT 1 FROM _checkpoints c WHERE ",
                        key_of_checkpoint!(),
                        ")"
                    ),
                    &[],
                )
                .map_err(self.pg(context))? as usize;
            Ok(report)
        })
    }

    /// Removes the lake's snapshots taken before `before` (never the latest, which is every
    /// table's current version), by the rule of the ducklake extension's
    /// `ducklake_expire_snapshots`: with them goes every earlier version no remaining
    /// snapshot reads, and `AT (VERSION => n)` of a removed snapshot fails from then on. The
    /// files of those versions are removed by the next [`gc`](Self::gc); until this is run,
    /// every earlier version stays readable and its file stays on disk. A store without the
    /// lake has nothing to expire.
    ///
    /// ```no_run
    /// # fn main() -> usher_pipeline::Result<()> {
    /// use chrono::{Duration, Utc};
    /// let store = usher_pipeline::SharedStore::open("postgres://usher@db.lab/usher", "/shared/usher-data")?;
    /// let expired = store.expire_snapshots(Utc::now() - Duration::days(30))?;
    /// let gc = store.gc()?;
    /// println!("{} snapshots expired, {} bytes returned", expired.snapshots, gc.bytes_removed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn expire_snapshots(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<ExpiredSnapshots> {
        self.off(|| {
            if !self.lake_now()? {
                return Ok(ExpiredSnapshots::default());
            }
            let context = "expiring the lake's snapshots";
            let lock_key = self.lake_lock_key();
            let mut client = self.catalog().client(context)?;
            let expired = lake::retrying(true, || {
                let mut tx = client.transaction()?;
                let expired = lake::expire(&mut tx, lock_key, before)?;
                tx.commit()?;
                Ok(expired)
            })
            .map_err(self.pg(context))?;
            tracing::info!(
                snapshots = expired.snapshots,
                files = expired.files.len(),
                "lake snapshots expired"
            );
            Ok(ExpiredSnapshots {
                snapshots: expired.snapshots,
                files: expired.files.len(),
            })
        })
    }

    /// See [`CheckpointStore::restore_version`]: under the table's lock, the version's file
    /// linked under a new name, then one transaction (retried when a DuckDB client took the
    /// lake's snapshot id): the current keyed checkpoint into the history, the version's rows
    /// current again with the new file, a lake snapshot naming it, the history pruned to
    /// `keep`. Files no longer named (without the lake) are removed after the commit.
    fn restore(&self, judged: &HistoryVersion, keep: usize) -> Result<Option<CheckpointInfo>> {
        let table = judged.checkpoint.table_name.as_str();
        validate_writable_table_name(table)?;
        if judged.current {
            return Ok(None);
        }
        let context = format!("restoring version {} of {table:?}", judged.version);
        let version = i64::try_from(judged.version)
            .map_err(|_| Error::Format(format!("{context}: no such version number")))?;
        let created = judged.checkpoint.created_at.map(timestamp_text);
        let _taken = self.lock_unless_held(table)?;
        let Some(old) = self.catalog().read(&context, |client| {
            history::file_of(&mut **client, table, version, created.as_deref())
        })?
        else {
            return Ok(None);
        };
        let files = &self.inner.files;
        let new = files.new_file(Kind::Table, table);
        let bytes = i64::try_from(files.link(&old, &new)?).unwrap_or(i64::MAX);
        let lake = self.lake_now()?;
        let described = match lake {
            true => files.describe(&new, table)?,
            false => None,
        };
        // Registered by name: a file written before the lake has no field ids.
        let lake_file = described.as_ref().map(|d| lake::LakeFile {
            name: new.rsplit('/').next().unwrap_or(&new),
            columns: &d.columns,
            rows: d.rows,
            bytes: d.bytes,
            footer: d.footer,
            by_name: true,
        });
        let lock_key = self.lake_lock_key();
        let restored = self.inner.locks.on_lock(table, &context, |client| {
            lake::retrying(lake, || {
                let mut tx = client.transaction()?;
                if history::file_of(&mut tx, table, version, created.as_deref())?.as_deref()
                    != Some(old.as_str())
                {
                    return Ok(None);
                }
                let current: Option<String> = tx
                    .query_opt(
                        "SELECT path FROM _checkpoint_files WHERE table_name = $1",
                        &[&table],
                    )?
                    .map(|row| row.get(0));
                let kept = history::keep_current(&mut tx, table)?;
                // The files no row names after this: an unkeyed current one's, the restored
                // version's old name, the pruned versions', the table's batches.
                let mut unnamed: Vec<String> = current
                    .into_iter()
                    .filter(|c| Some(c) != kept.as_ref())
                    .collect();
                history::make_current(&mut tx, table, version, &new, bytes)?;
                unnamed.push(old.clone());
                unnamed.extend(delete_batches(&mut tx, table)?);
                unnamed.extend(history::prune(&mut tx, table, keep)?);
                if lake {
                    lake::replace(&mut tx, lock_key, table, lake_file.as_ref())?;
                }
                tx.commit()?;
                Ok(Some(unnamed))
            })
        });
        match restored {
            Ok(Some(mut unnamed)) => {
                if lake {
                    // The lake's snapshots still read the tables' files: gc removes them once
                    // none does.
                    unnamed.retain(|file| !file.starts_with(Kind::Table.dir()));
                }
                for file in unnamed {
                    files.remove(&file);
                }
                self.checkpoint(table)
            }
            Ok(None) => {
                files.remove(&new);
                Ok(None)
            }
            Err(e) => {
                // Removed only when surely not registered (see `save`).
                if let Ok(current) = self.registered_file(table)
                    && current.as_deref() != Some(new.as_str())
                {
                    files.remove(&new);
                }
                Err(e)
            }
        }
    }

    /// `table`'s compute lock, unless this process holds it already (a body of the table
    /// deleting it, say), which waiting for would never end.
    fn lock_unless_held(&self, table: &str) -> Result<Option<TableLock>> {
        if self.inner.locks.held(table) {
            return Ok(None);
        }
        self.lock_table(table).map(Some)
    }
}

/// Runs `wait` (for another worker, hours maybe) on a thread of its own, which completes the
/// returned future through a oneshot, so the caller's executor thread is free meanwhile.
/// Dropping the future sets the flag `wait` watches; `wait` answers `Ok(None)` when it saw it.
async fn wait_on_thread<T: Send + 'static>(
    locks: Locks,
    table: &str,
    wait: impl FnOnce(&Locks, &str, &AtomicBool) -> Result<Option<T>> + Send + 'static,
) -> Result<T> {
    let (done, answer) = futures_channel::oneshot::channel::<Result<T>>();
    let flag = Arc::new(AtomicBool::new(false));
    let (name, watched) = (table.to_owned(), Arc::clone(&flag));
    std::thread::Builder::new()
        .name(format!("usher-lock-{table}"))
        .spawn(move || {
            if let Some(result) = wait(&locks, &name, &watched).transpose() {
                // Refused when the future was dropped meanwhile: a lock got is dropped right
                // here, which releases it.
                let _ = done.send(result);
            }
        })
        .map_err(|source| Error::Io {
            action: "start a thread to wait for the lock of",
            path: PathBuf::from(table),
            source,
        })?;
    let give_up = GiveUp(flag);
    let answer = answer.await;
    // The thread ended its wait before answering: nothing left to give up.
    drop(give_up);
    answer.unwrap_or_else(|_| {
        Err(Error::Format(format!(
            "the thread waiting for the lock of {table:?} ended without an answer"
        )))
    })
}

/// Gives up an async lock wait, if one is still in progress, when dropped (a future dropped
/// before its answer came): the waiting thread stops at its next look.
struct GiveUp(Arc<AtomicBool>);

impl Drop for GiveUp {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The `_checkpoints` row of a save.
struct CheckpointRow<'a> {
    table: &'a str,
    rows: i32,
    description: &'a str,
    created_at: NaiveDateTime,
    /// How many versions of the table a keyed save keeps (see `history.rs`); 0 for a save
    /// without a key, which leaves the history as it is.
    keep: usize,
}

/// Registers a save: the `_checkpoints` row, the key or its absence, the data file, the
/// provenance row, and with `lake` a snapshot of the lake; removes the table's batches.
/// Returns the files it supersedes (with a lake, not the table's previous file: the lake's
/// history still reads it). Tried again when a DuckDB client took the lake's next snapshot id
/// first.
fn register(
    client: &mut Client,
    row: &CheckpointRow<'_>,
    file: &str,
    bytes: u64,
    key: Option<(&CheckpointKey, &Lineage, &ProvenanceRecord)>,
    lake: Option<&LakeSave<'_>>,
) -> std::result::Result<Vec<String>, postgres::Error> {
    lake::retrying(lake.is_some(), || {
        register_once(client, row, file, bytes, key, lake)
    })
}

/// What a save records in the lake.
struct LakeSave<'a> {
    /// See `SharedStore::lake_lock_key`.
    lock_key: i64,
    /// The new version's file, `None` when the frame has a type the lake cannot hold (its
    /// previous version is dropped from the lake, so no reader takes it for current).
    file: Option<lake::LakeFile<'a>>,
}

/// One try of [`register`].
fn register_once(
    client: &mut Client,
    row: &CheckpointRow<'_>,
    file: &str,
    bytes: u64,
    key: Option<(&CheckpointKey, &Lineage, &ProvenanceRecord)>,
    lake: Option<&LakeSave<'_>>,
) -> std::result::Result<Vec<String>, postgres::Error> {
    let CheckpointRow {
        table,
        rows,
        description,
        created_at,
        keep,
    } = *row;
    let created_at = timestamp_text(created_at);
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    let mut tx = client.transaction()?;
    let mut superseded: Vec<String> = match lake {
        Some(_) => Vec::new(),
        None => tx
            .query_opt(
                "SELECT path FROM _checkpoint_files WHERE table_name = $1",
                &[&table],
            )?
            .map(|row| row.get(0))
            .into_iter()
            .collect(),
    };
    superseded.extend(delete_batches(&mut tx, table)?);
    // A keyed save keeps the keyed checkpoint it replaces, file and all.
    let versioned = key.is_some();
    if versioned
        && keep > 1
        && let Some(kept) = history::keep_current(&mut tx, table)?
    {
        superseded.retain(|file| *file != kept);
    }
    tx.execute(
        "INSERT INTO _checkpoints (table_name, created_at, row_count, description) \
         VALUES ($1, $2::text::timestamp, $3, $4) ON CONFLICT (table_name) DO UPDATE SET \
         created_at = excluded.created_at, row_count = excluded.row_count, \
         description = excluded.description",
        &[&table, &created_at, &rows, &description],
    )?;
    match key {
        Some((key, lineage, provenance)) => {
            let version = history::next_version(&mut tx, table)?;
            let made = Made {
                version,
                step: &provenance.steps_json,
            };
            write_key(&mut tx, table, Some(&created_at), key, lineage, Some(made))?;
            insert_provenance(&mut tx, provenance)?;
        }
        None => {
            tx.execute(
                "DELETE FROM _checkpoint_keys WHERE table_name = $1",
                &[&table],
            )?;
        }
    }
    tx.execute(REGISTER_FILE, &[&table, &file, &bytes])?;
    if versioned {
        let pruned = history::prune(&mut tx, table, keep)?;
        // With the lake, its snapshots still read them: gc removes them after expiry.
        if lake.is_none() {
            superseded.extend(pruned);
        }
    }
    if let Some(lake) = lake {
        lake::replace(&mut tx, lake.lock_key, table, lake.file.as_ref())?;
    }
    tx.commit()?;
    Ok(superseded)
}

/// Registers `$2` (`$3` bytes) as the data file of table `$1`.
const REGISTER_FILE: &str = "INSERT INTO _checkpoint_files (table_name, path, bytes) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (table_name) DO UPDATE SET path = excluded.path, bytes = excluded.bytes";

/// A save's number among its table's keyed saves, and its provenance step.
#[derive(Debug, Clone, Copy)]
struct Made<'a> {
    version: i64,
    step: &'a str,
}

/// Records `key` and `lineage` for the checkpoint of `table` created at `created_at` (text),
/// with its number and step when a save `made` it.
fn write_key(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    created_at: Option<&str>,
    key: &CheckpointKey,
    lineage: &Lineage,
    made: Option<Made<'_>>,
) -> std::result::Result<(), postgres::Error> {
    let max_age = lineage
        .max_age_seconds
        .map(|s| i64::try_from(s).unwrap_or(i64::MAX));
    tx.execute(
        "INSERT INTO _checkpoint_keys (table_name, checkpoint_created_at, key, function, code, \
         arguments, config, data_version, inputs, max_age_seconds, lineage_created_at, version, \
         step) \
         VALUES ($1, $2::text::timestamp, $3, $4, $5, $6, $7, $8, $9, $10, $2::text::timestamp, \
         $11, $12) \
         ON CONFLICT (table_name) DO UPDATE SET checkpoint_created_at = excluded.checkpoint_created_at, \
         key = excluded.key, function = excluded.function, code = excluded.code, \
         arguments = excluded.arguments, config = excluded.config, \
         data_version = excluded.data_version, inputs = excluded.inputs, \
         max_age_seconds = excluded.max_age_seconds, lineage_created_at = excluded.lineage_created_at, \
         version = excluded.version, step = excluded.step",
        &[
            &table,
            &created_at,
            &key.key,
            &key.function,
            &key.code,
            &key.arguments_json(),
            &key.config_json(),
            &lineage.data_version.map(|v| v.to_hex()),
            &lineage.inputs_json(),
            &max_age,
            &made.map(|m| m.version),
            &made.map(|m| m.step),
        ],
    )
    .map(drop)
}

fn insert_provenance(
    tx: &mut postgres::Transaction<'_>,
    record: &ProvenanceRecord,
) -> std::result::Result<(), postgres::Error> {
    tx.execute(
        "INSERT INTO _provenance (version, config_hash, created_at, steps_json) \
         VALUES ($1, $2, $3::text::timestamp, $4)",
        &[
            &record.version,
            &record.config_hash,
            &timestamp_text(record.created_at),
            &record.steps_json,
        ],
    )
    .map(drop)
}

/// Removes `table`'s batch rows, item count and batch files' rows; returns the files.
fn delete_batches(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
) -> std::result::Result<Vec<String>, postgres::Error> {
    tx.execute(
        "DELETE FROM _checkpoint_batches WHERE table_name = $1",
        &[&table],
    )?;
    tx.execute(
        "DELETE FROM _checkpoint_batch_totals WHERE table_name = $1",
        &[&table],
    )?;
    Ok(tx
        .query(
            "DELETE FROM _checkpoint_batch_files WHERE table_name = $1 RETURNING path",
            &[&table],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Removes everything the catalog holds of `table`, batches included; returns the files to
/// remove once committed.
fn delete_table_rows(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
) -> std::result::Result<Vec<String>, postgres::Error> {
    let mut files: Vec<String> = tx
        .query(
            "DELETE FROM _checkpoint_files WHERE table_name = $1 RETURNING path",
            &[&table],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    tx.execute("DELETE FROM _checkpoints WHERE table_name = $1", &[&table])?;
    tx.execute(
        "DELETE FROM _checkpoint_keys WHERE table_name = $1",
        &[&table],
    )?;
    files.extend(delete_batches(tx, table)?);
    Ok(files)
}

/// A timestamp as PostgreSQL's `timestamp` reads it, to the microsecond (what both DuckDB and
/// PostgreSQL keep, so a time written and read back compares equal).
fn timestamp_text(time: NaiveDateTime) -> String {
    time.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Where a checkpoint's rows are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Data {
    /// In this Parquet file (relative to the data root).
    File(String),
    /// In a lake table another writer made or changed, in a form this store does not read
    /// (the reason).
    Unreadable(String),
}

/// A row of [`checkpoints_sql`] as the checkpoint it is and where its rows are: the catalog's
/// row and file, unless the lake says another writer changed the table (then the lake's
/// version, without a key) or dropped it (then `None`).
fn decode(row: &postgres::Row, lake: bool) -> Result<Option<(CheckpointInfo, Option<Data>)>> {
    let texts: Vec<Option<String>> = (0..12).map(|i| row.get(i)).collect();
    let path: Option<String> = row.get(12);
    if !lake {
        let info = checkpoint_row(texts).map_err(Error::Format)?;
        return Ok(Some((info, path.map(Data::File))));
    }
    let in_catalog: bool = row.get(13);
    let held = lake::Held::from_row(row, 14);
    match held.verdict(path.as_deref().filter(|_| in_catalog)) {
        lake::Verdict::Agrees if in_catalog => {
            let info = checkpoint_row(texts).map_err(Error::Format)?;
            Ok(Some((info, path.map(Data::File))))
        }
        lake::Verdict::Agrees | lake::Verdict::Dropped => Ok(None),
        lake::Verdict::Changed {
            file,
            changed,
            rows,
        } => {
            // Saved without a key, by another writer's clock: read as this machine's local
            // time, as every checkpoint without a key is (`CheckpointInfo::saved_utc`).
            let created_at = changed
                .map(|utc| {
                    NaiveDateTime::parse_from_str(&utc, "%Y-%m-%d %H:%M:%S%.f")
                        .map(|utc| timestamp_text(utc_to_local(utc)))
                        .map_err(|e| {
                            Error::Format(format!("the lake's snapshot time {utc:?}: {e}"))
                        })
                })
                .transpose()?;
            let description = match in_catalog {
                true => "changed in the lake by another writer",
                false => "written to the lake by another writer",
            };
            let mut texts = vec![
                texts[0].clone(),
                created_at,
                rows,
                Some(description.to_owned()),
            ];
            texts.resize(12, None);
            let info = checkpoint_row(texts).map_err(Error::Format)?;
            Ok(Some((
                info,
                Some(file.map_or_else(Data::Unreadable, Data::File)),
            )))
        }
    }
}

/// The lake's version of `table` that another writer made, when it is the one judged
/// (saved at `created_at`) and one plain file: the checkpoint it is and its file, read in
/// `tx` under the table's lock.
fn adoptable_lake_version(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    created_at: Option<NaiveDateTime>,
    lake: bool,
) -> std::result::Result<Option<(CheckpointInfo, String)>, postgres::Error> {
    if !lake {
        return Ok(None);
    }
    let sql = checkpoints_sql(true, true);
    let Some(row) = tx.query_typed_opt(&sql, &[(&table, Type::TEXT)])? else {
        return Ok(None);
    };
    // Undecodable here means not adoptable; the caller judges again and sees the error.
    Ok(match decode(&row, true) {
        Ok(Some((info, Some(Data::File(file)))))
            if info.key.is_none() && info.created_at == created_at =>
        {
            Some((info, file))
        }
        _ => None,
    })
}

/// A row of [`history::VERSIONS_SQL`] as the version it is.
fn decode_version(row: &postgres::Row) -> Result<HistoryVersion> {
    let texts: Vec<Option<String>> = (0..12).map(|i| row.get(i)).collect();
    let checkpoint = checkpoint_row(texts).map_err(Error::Format)?;
    let version: Option<i64> = row.get(12);
    let version = version.and_then(|v| u64::try_from(v).ok()).ok_or_else(|| {
        Error::Format(format!(
            "a version of {:?} without a number",
            checkpoint.table_name
        ))
    })?;
    let replaced_at = row
        .get::<_, Option<String>>(13)
        .map(|t| {
            NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|e| Error::Format(format!("replaced_at {t:?}: {e}")))
        })
        .transpose()?;
    Ok(HistoryVersion {
        version,
        current: row.get(14),
        checkpoint,
        replaced_at,
        step: row.get(15),
        bytes: row
            .get::<_, Option<i64>>(16)
            .and_then(|b| u64::try_from(b).ok()),
    })
}

/// `utc` as this machine's local time.
fn utc_to_local(utc: NaiveDateTime) -> NaiveDateTime {
    use chrono::TimeZone;
    chrono::Local.from_utc_datetime(&utc).naive_local()
}

/// The store id in the marker file `path`, if there is one.
fn read_marker(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            action: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Removes `path`; one already gone is no error.
fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            action: "remove",
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Writes the marker file `path` holding `id`, whole or not at all.
fn write_marker(path: &Path, id: &str) -> Result<()> {
    replace_atomically(path, "write the store id", |tmp| {
        std::fs::write(tmp, format!("{id}\n")).map_err(|source| Error::Io {
            action: "write",
            path: tmp.to_owned(),
            source,
        })
    })
}

/// The test hook of a store's creation: a debug build whose `USHER_TEST_ABORT_CREATING`
/// names `point` dies there, as a worker killed at that moment (tests/it/shared_create.rs).
/// Release builds have no such hook.
fn crash_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("USHER_TEST_ABORT_CREATING").is_ok_and(|p| p == point) {
        std::process::abort();
    }
    let _ = point;
}

/// A store id: unique enough to tell two stores' directories apart.
fn new_store_id() -> String {
    use sha2::{Digest, Sha256};
    let seed = format!(
        "{:?} {:?} {} {:?}",
        std::time::SystemTime::now(),
        std::time::Instant::now(),
        std::process::id(),
        crate::atomic_file::host()
    );
    Sha256::digest(seed.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl CheckpointStore for SharedStore {
    /// Saves `frame` as `table` without a key (a hand-made checkpoint, as the DuckDB store's
    /// `save_dataframe`), replacing any previous one.
    fn save_dataframe(&self, table: &str, frame: &DataFrame, description: &str) -> Result<()> {
        // Without a key: local time, as the Python pipeline stamps its saves.
        self.save(table, frame, description, now_local(), None, 0)
    }

    /// Loads `table`, or `Ok(None)` if the catalog has no such checkpoint.
    fn load_dataframe(&self, table: &str) -> Result<Option<DataFrame>> {
        self.off(|| {
            validate_table_name(table)?;
            // A save on another machine may replace the file between reading its name and
            // opening it: the old one is removed once the new one is registered. Then read the
            // catalog again.
            const ATTEMPTS: usize = 5;
            for attempt in 1..=ATTEMPTS {
                let Some(file) = self.current_file(table)? else {
                    return Ok(None);
                };
                match self.inner.files.read(std::slice::from_ref(&file)) {
                    Ok(frame) => return Ok(Some(frame)),
                    Err(e) => {
                        let replaced = self.current_file(table)?.as_deref() != Some(file.as_str());
                        if !replaced || attempt == ATTEMPTS {
                            return Err(duck_error(
                                &self.inner.files.absolute(&file),
                                &format!("loading table {table:?}"),
                                e,
                            ));
                        }
                    }
                }
            }
            Ok(None)
        })
    }

    /// The first `rows` rows of `table`, or `None` if the catalog has no such checkpoint.
    fn head(&self, table: &str, rows: usize) -> Result<Option<DataFrame>> {
        self.off(|| {
            validate_table_name(table)?;
            let Some(file) = self.current_file(table)? else {
                return Ok(None);
            };
            self.inner.files.head(&file, rows).map(Some).map_err(|e| {
                duck_error(
                    &self.inner.files.absolute(&file),
                    &format!("reading the first rows of {table:?}"),
                    e,
                )
            })
        })
    }

    /// Every checkpoint with its valid key and lineage, newest first (then by name).
    fn list_checkpoints(&self) -> Result<Vec<CheckpointInfo>> {
        self.off(|| {
            let mut list: Vec<CheckpointInfo> = self
                .checkpoints_and_files()?
                .into_iter()
                .map(|(info, _)| info)
                .collect();
            newest_first(&mut list);
            Ok(list)
        })
    }

    /// Removes the checkpoints of `tables` (rows, keys, batches) in one transaction, then
    /// their files.
    fn delete_checkpoints(&self, tables: &[&str]) -> Result<()> {
        self.off(|| {
            for table in tables {
                // The store's own tables (`_...`) are not deleted through here, as on every store.
                validate_writable_table_name(table)?;
            }
            // In name order, so two processes deleting overlapping sets cannot each hold a lock
            // the other waits for (locks on separate connections escape the server's deadlock
            // detection).
            let ordered: BTreeSet<&str> = tables.iter().copied().collect();
            let locks = ordered
                .iter()
                .map(|t| self.lock_unless_held(t))
                .collect::<Result<Vec<_>>>()?;
            let context = format!("deleting {tables:?}");
            let lake = self.lake_now()?.then(|| self.lake_lock_key());
            let mut client = self.catalog().client(&context)?;
            let delete = |client: &mut Client| {
                let mut tx = client.transaction()?;
                let mut files = Vec::new();
                for table in tables {
                    files.extend(delete_table_rows(&mut tx, table)?);
                    files.extend(history::prune(&mut tx, table, 1)?);
                    if let Some(lock_key) = lake {
                        lake::replace(&mut tx, lock_key, table, None)?;
                    }
                }
                tx.commit()?;
                Ok(files)
            };
            let mut files = lake::retrying(lake.is_some(), || delete(&mut client))
                .map_err(self.pg(&context))?;
            drop(client);
            if lake.is_some() {
                // The lake's history still reads the tables' last files; gc removes them once
                // no snapshot does.
                files.retain(|file| !file.starts_with(Kind::Table.dir()));
            }
            for file in files {
                self.inner.files.remove(&file);
            }
            drop(locks);
            Ok(())
        })
    }

    /// Copies `table`'s data file (Parquet, zstd) to `output_path`, whole or not at all.
    fn export_parquet(&self, table: &str, output_path: &Path) -> Result<()> {
        validate_table_name(table)?;
        let Some(file) = self.off(|| self.current_file(table))? else {
            return Err(Error::TableNotFound {
                table: table.to_owned(),
                path: self.name().into(),
            });
        };
        copy_atomically(
            &self.inner.files.absolute(&file),
            output_path,
            "export parquet",
        )
    }

    /// Runs one `SELECT` in DuckDB over the checkpoints' Parquet files, each visible as a view
    /// named after its table, with `?` parameters bound to `params`. Only queries run: the
    /// store changes through its own calls, whose writes hold the table's lock, so a statement
    /// that writes (`COPY ... TO`, `CREATE`, `ATTACH`...) is an [`Error::Duckdb`] of kind
    /// `InvalidInput`.
    fn query(&self, sql: &str, params: &[Param]) -> Result<DataFrame> {
        self.off(|| {
            let checkpoints: Vec<(String, String)> = self
                .checkpoints_and_files()?
                .into_iter()
                .filter_map(|(info, data)| match data {
                    Some(Data::File(file)) => Some((info.table_name, file)),
                    // No view: a query naming it fails on the missing table.
                    _ => None,
                })
                .collect();
            let root = self.data_root();
            let context = format!("running query {sql:?}");
            let conn = self
                .inner
                .files
                .connection()
                .map_err(|e| duck_error(root, &context, e))?;
            for (table, file) in &checkpoints {
                conn.execute(&format!(
                    "CREATE TEMP VIEW {} AS SELECT * FROM read_parquet({})",
                    quote_ident(table),
                    files::quote_literal(&self.inner.files.absolute(file).to_string_lossy())
                ))
                .map_err(|e| duck_error(root, &context, e))?;
            }
            conn.query_select(sql, params)
                .map_err(|e| duck_error(root, &context, e))
        })
    }

    /// Every `_provenance` row, oldest first (rows of one time in the order appended).
    fn provenance_rows(&self) -> Result<Vec<ProvenanceRecord>> {
        self.off(|| {
            let context = "reading _provenance";
            let rows = self.catalog().read(context, |client| {
                client.query(
                    "SELECT version, config_hash, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS.US'), \
                     steps_json FROM _provenance ORDER BY created_at, ctid",
                    &[],
                )
            })?;
            rows.iter()
                .map(|row| {
                    let created: Option<String> = row.get(2);
                    let created_at = created
                        .as_deref()
                        .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").ok())
                        .ok_or_else(|| {
                            Error::Format(format!("a _provenance row has created_at {created:?}"))
                        })?;
                    Ok(ProvenanceRecord {
                        version: row.get::<_, Option<String>>(0).unwrap_or_default(),
                        config_hash: row.get::<_, Option<String>>(1).unwrap_or_default(),
                        created_at,
                        steps_json: row.get::<_, Option<String>>(3).unwrap_or_default(),
                    })
                })
                .collect()
        })
    }

    fn checkpoint(&self, table: &str) -> Result<Option<CheckpointInfo>> {
        self.off(|| Ok(self.checkpoint_and_file(table)?.map(|(info, _)| info)))
    }

    /// The checkpoint row and its data file come from one query, and exactly that file is
    /// read: a worker that saves the table in between (with other arguments, say) registers
    /// a new file and leaves this one alone until it is registered, so what is loaded is
    /// always the judged data, or `Replaced` when the row moved on.
    fn load_judged(&self, judged: &CheckpointInfo) -> Result<JudgedLoad> {
        self.off(|| {
            let table = judged.table_name.as_str();
            let current = |found: &Option<(CheckpointInfo, Option<Data>)>| match found {
                Some((now, data)) if now.same_checkpoint(judged) => Some(data.clone()),
                _ => None,
            };
            let file = match current(&self.checkpoint_and_file(table)?) {
                None => return Ok(JudgedLoad::Replaced),
                Some(None) => return Ok(JudgedLoad::TableMissing),
                Some(Some(Data::Unreadable(reason))) => {
                    return Err(Error::LakeTable {
                        table: table.to_owned(),
                        reason,
                    });
                }
                Some(Some(Data::File(file))) => file,
            };
            let failed = match self.inner.files.read(std::slice::from_ref(&file)) {
                Ok(frame) => return Ok(JudgedLoad::Loaded(frame)),
                Err(e) => e,
            };
            // A save that replaced the checkpoint removes the superseded file once the new
            // one is registered, maybe between the query and the read: then it is judged
            // again. Only the judged row, still current, without its file is missing data.
            if current(&self.checkpoint_and_file(table)?).flatten()
                != Some(Data::File(file.clone()))
            {
                return Ok(JudgedLoad::Replaced);
            }
            let path = self.inner.files.absolute(&file);
            match std::fs::metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(JudgedLoad::TableMissing),
                _ => Err(duck_error(
                    &path,
                    &format!("loading table {table:?}"),
                    failed,
                )),
            }
        })
    }

    /// Stamped by the saving pipeline's clock (`saved_at`): on a shared store each worker
    /// stamps its saves by its own pipeline's clock (the system clock unless `with_clock`),
    /// so the workers' clocks must agree (NTP) for ages and `max_age` to read alike everywhere.
    /// The lineage is made before the Parquet file is written (the work runs off an async
    /// runtime's threads, where the caller's closure cannot go).
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

    /// The replaced keyed checkpoint's rows go to `_checkpoint_history` in the registering
    /// transaction; its file stays.
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
        let (lineage, provenance) = metadata()?;
        self.save(
            table,
            frame,
            description,
            to_micros(saved_at),
            Some((key, &lineage, &provenance)),
            keep.max(1),
        )
    }

    fn history(&self, table: &str) -> Result<Vec<HistoryVersion>> {
        self.off(|| {
            validate_table_name(table)?;
            let context = format!("reading the history of {table:?}");
            let rows = self.catalog().read(&context, |client| {
                client.query(history::VERSIONS_SQL, &[&table])
            })?;
            rows.iter().map(decode_version).collect()
        })
    }

    /// The version's file is registered again under a new name, a hard link to it (no byte
    /// copied; a copy only where the file system has no hard links), with a new snapshot of
    /// the lake naming it.
    fn restore_version(
        &self,
        judged: &HistoryVersion,
        keep: usize,
    ) -> Result<Option<CheckpointInfo>> {
        self.off(|| self.restore(judged, keep.max(1)))
    }

    /// Table by table, each under its lock (a table a worker computes now is skipped); the
    /// dropped versions' files are removed when no lake snapshot reads them, else by the gc
    /// after the snapshots' expiry.
    fn prune_history(&self, keep: usize) -> Result<usize> {
        self.off(|| {
            let context = "pruning the history";
            let tables: Vec<String> = self.catalog().read(context, |client| {
                Ok(client
                    .query("SELECT DISTINCT table_name FROM _checkpoint_history", &[])?
                    .iter()
                    .map(|row| row.get(0))
                    .collect())
            })?;
            let lake = self.lake_now()?;
            let mut dropped = 0;
            for table in tables {
                let Some(_lock) = self.inner.locks.try_lock(&table)? else {
                    continue;
                };
                let files = self.inner.locks.on_lock(&table, context, |client| {
                    let mut tx = client.transaction()?;
                    let files = history::prune(&mut tx, &table, keep.max(1))?;
                    tx.commit()?;
                    Ok(files)
                })?;
                dropped += files.len();
                if !lake {
                    for file in files {
                        self.inner.files.remove(&file);
                    }
                }
            }
            Ok(dropped)
        })
    }

    /// The version's Parquet file, copied whole.
    fn export_version_parquet(&self, table: &str, version: u64, output_path: &Path) -> Result<()> {
        validate_table_name(table)?;
        let context = format!("reading the file of version {version} of {table:?}");
        let number = i64::try_from(version).unwrap_or(i64::MAX);
        let file: Option<String> = self.off(|| {
            self.catalog().read(&context, |client| {
                Ok(client
                    .query_opt(history::VERSION_FILE_SQL, &[&table, &number])?
                    .map(|row| row.get(0)))
            })
        })?;
        let Some(file) = file else {
            return Err(Error::TableNotFound {
                table: format!("{table} (version {version})"),
                path: self.name().into(),
            });
        };
        copy_atomically(
            &self.inner.files.absolute(&file),
            output_path,
            "export parquet",
        )
    }

    fn load_version(&self, table: &str, version: u64) -> Result<Option<DataFrame>> {
        self.off(|| {
            validate_table_name(table)?;
            let context = format!("reading the file of version {version} of {table:?}");
            let number = i64::try_from(version).unwrap_or(i64::MAX);
            let file: Option<String> = self.catalog().read(&context, |client| {
                Ok(client
                    .query_opt(history::VERSION_FILE_SQL, &[&table, &number])?
                    .map(|row| row.get(0)))
            })?;
            let Some(file) = file else {
                return Ok(None);
            };
            self.inner
                .files
                .read(std::slice::from_ref(&file))
                .map(Some)
                .map_err(|e| {
                    duck_error(
                        &self.inner.files.absolute(&file),
                        &format!("loading version {version} of {table:?}"),
                        e,
                    )
                })
        })
    }

    fn adopt_checkpoint(
        &self,
        table: &str,
        created_at: Option<NaiveDateTime>,
        saved_at: Option<NaiveDateTime>,
        key: &CheckpointKey,
        lineage: &Lineage,
    ) -> Result<bool> {
        self.off(|| {
            validate_writable_table_name(table)?;
            let context = format!("adopting the checkpoint of {table:?}");
            let lake = self.lake_now()?;
            let files = &self.inner.files;
            self.locked(table, &context, |client| {
                let mut tx = client.transaction()?;
                let created = created_at.map(timestamp_text);
                let stamped = saved_at
                    .map(to_micros)
                    .map(timestamp_text)
                    .or(created.clone());
                let same: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM _checkpoints WHERE table_name = $1 \
                         AND created_at IS NOT DISTINCT FROM $2::text::timestamp",
                        &[&table, &created],
                    )?
                    .get(0);
                let lake_version = match same {
                    1 => None,
                    _ => adoptable_lake_version(&mut tx, table, created_at, lake)?,
                };
                if let Some((info, file)) = &lake_version {
                    let rows = info.row_count.and_then(|n| i32::try_from(n).ok());
                    // Another writer's version in the lake becomes the catalog's checkpoint,
                    // its file registered as it is (the lake then agrees with the catalog).
                    let bytes = files
                        .absolute(file)
                        .metadata()
                        .map_or(0, |m| i64::try_from(m.len()).unwrap_or(i64::MAX));
                    tx.execute(
                        "INSERT INTO _checkpoints (table_name, created_at, row_count, description) \
                         VALUES ($1, $2::text::timestamp, $3, $4) ON CONFLICT (table_name) DO UPDATE \
                         SET created_at = excluded.created_at, row_count = excluded.row_count, \
                         description = excluded.description",
                        &[&table, &stamped, &rows, &info.description],
                    )?;
                    tx.execute(
                        "INSERT INTO _checkpoint_files (table_name, path, bytes) VALUES ($1, $2, $3) \
                         ON CONFLICT (table_name) DO UPDATE SET path = excluded.path, bytes = excluded.bytes",
                        &[&table, file, &bytes],
                    )?;
                    write_key(&mut tx, table, stamped.as_deref(), key, lineage, None)?;
                } else if same == 1 {
                    if stamped != created {
                        tx.execute(
                            "UPDATE _checkpoints SET created_at = $2::text::timestamp \
                             WHERE table_name = $1",
                            &[&table, &stamped],
                        )?;
                    }
                    write_key(&mut tx, table, stamped.as_deref(), key, lineage, None)?;
                }
                tx.commit()?;
                Ok(same == 1 || lake_version.is_some())
            })
        })
    }

    fn lock_table(&self, table: &str) -> Result<TableLock> {
        self.off(|| {
            validate_table_name(table)?;
            self.inner.locks.lock(table, None)?.ok_or_else(|| {
                Error::Format(format!("the wait for the lock of {table:?} was given up"))
            })
        })
    }

    fn lock_table_async<'a>(&'a self, table: &'a str) -> LockFuture<'a> {
        Box::pin(async move {
            validate_table_name(table)?;
            if let Some(lock) = self.off(|| self.inner.locks.try_lock(table))? {
                return Ok(lock);
            }
            wait_on_thread(self.inner.locks.clone(), table, |locks, table, give_up| {
                locks.lock(table, Some(give_up))
            })
            .await
        })
    }

    fn try_lock_table(&self, table: &str) -> Result<Option<TableLock>> {
        self.off(|| {
            validate_table_name(table)?;
            self.inner.locks.try_lock(table)
        })
    }

    fn wait_for_release(&self, table: &str) -> Result<()> {
        self.off(|| {
            validate_table_name(table)?;
            self.inner.locks.wait_released(table, None)
        })
    }

    fn wait_for_release_async<'a>(&'a self, table: &'a str) -> ReleaseFuture<'a> {
        Box::pin(async move {
            validate_table_name(table)?;
            wait_on_thread(self.inner.locks.clone(), table, |locks, table, give_up| {
                locks.wait_released(table, Some(give_up)).map(Some)
            })
            .await
        })
    }

    fn batch_progress(&self, table: &str, key: &str) -> Result<Vec<String>> {
        self.off(|| {
            validate_writable_table_name(table)?;
            let context = format!("reading the finished batches of {table:?}");
            let superseded_and_items = self.locked(table, &context, |client| {
                let mut tx = client.transaction()?;
                let others: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM _checkpoint_batches WHERE table_name = $1 AND key <> $2",
                        &[&table, &key],
                    )?
                    .get(0);
                let others_files: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM _checkpoint_batch_files WHERE table_name = $1 AND key <> $2",
                        &[&table, &key],
                    )?
                    .get(0);
                if others + others_files > 0 {
                    // Made from other arguments or code: not to be mixed in.
                    let files = delete_batches(&mut tx, table)?;
                    tx.commit()?;
                    return Ok((files, Vec::new()));
                }
                let items = tx
                    .query(
                        "SELECT item FROM _checkpoint_batches WHERE table_name = $1 AND key = $2",
                        &[&table, &key],
                    )?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                tx.commit()?;
                Ok((Vec::new(), items))
            })?;
            let (superseded, items) = superseded_and_items;
            for file in superseded {
                self.inner.files.remove(&file);
            }
            Ok(items)
        })
    }

    fn discard_batches(&self, table: &str) -> Result<()> {
        self.off(|| {
            validate_writable_table_name(table)?;
            let context = format!("discarding the batches of {table:?}");
            let files = self.locked(table, &context, |client| {
                let mut tx = client.transaction()?;
                let files = delete_batches(&mut tx, table)?;
                tx.commit()?;
                Ok(files)
            })?;
            for file in files {
                self.inner.files.remove(&file);
            }
            Ok(())
        })
    }

    fn record_batch_total(&self, table: &str, key: &str, total: usize) -> Result<()> {
        self.off(|| {
            validate_writable_table_name(table)?;
            let context = format!("recording the item count of {table:?}");
            let total = i64::try_from(total).unwrap_or(i64::MAX);
            self.locked(table, &context, |client| {
                client
                    .execute(
                        "INSERT INTO _checkpoint_batch_totals (table_name, key, total_items) \
                         VALUES ($1, $2, $3) ON CONFLICT (table_name) DO UPDATE SET \
                         key = excluded.key, total_items = excluded.total_items",
                        &[&table, &key, &total],
                    )
                    .map(drop)
            })
        })
    }

    fn save_batch(
        &self,
        table: &str,
        key: &str,
        items: &[String],
        frame: &DataFrame,
    ) -> Result<()> {
        self.off(|| {
            validate_writable_table_name(table)?;
            if frame.width() > 0 {
                validate_columns(table, frame)?;
            }
            let context = format!("saving a batch of {table:?}");
            // Every write of a table's files happens under its lock (see `gc`).
            let _taken = self.lock_unless_held(table)?;
            let files = &self.inner.files;
            let file = if frame.width() > 0 {
                let file = files.new_file(Kind::Batch, table);
                files.write(&file, table, frame)?;
                Some(file)
            } else {
                None
            };
            self.inner
                .locks
                .on_lock(table, &context, |client| {
                    let mut tx = client.transaction()?;
                    if !items.is_empty() {
                        tx.execute(
                            "INSERT INTO _checkpoint_batches (table_name, key, item) \
                             SELECT $1, $2, unnest($3::text[])",
                            &[&table, &key, &items],
                        )?;
                    }
                    if let Some(file) = &file {
                        tx.execute(
                            "INSERT INTO _checkpoint_batch_files (table_name, key, path) VALUES ($1, $2, $3)",
                            &[&table, &key, file],
                        )?;
                    }
                    tx.commit()
                })
                .inspect_err(|_| {
                    if let Some(file) = &file {
                        files.remove(file);
                    }
                })
        })
    }

    fn load_batches(&self, table: &str) -> Result<Option<DataFrame>> {
        self.off(|| {
            validate_writable_table_name(table)?;
            let files = self.paths_of(
                table,
                "SELECT path FROM _checkpoint_batch_files WHERE table_name = $1 ORDER BY seq",
                "loading the batches of",
            )?;
            let context = format!("loading the batches of {table:?}");
            if files.is_empty() {
                return Ok(None);
            }
            self.inner
                .files
                .read(&files)
                .map(Some)
                .map_err(|e| duck_error(self.data_root(), &context, e))
        })
    }

    fn append_provenance(&self, record: &ProvenanceRecord) -> Result<()> {
        self.off(|| {
            let context = "saving provenance to _provenance";
            let mut client = self.catalog().client(context)?;
            let mut tx = client.transaction().map_err(self.pg(context))?;
            insert_provenance(&mut tx, record).map_err(self.pg(context))?;
            tx.commit().map_err(self.pg(context))
        })
    }

    fn pending_batches(&self) -> Result<Vec<PendingBatches>> {
        self.off(|| {
            let context = "reading the pending batches";
            let rows = self.catalog().read(context, |client| {
                client.query(
                    "SELECT b.table_name, b.key, count(*), max(t.total_items) \
                     FROM _checkpoint_batches b LEFT JOIN _checkpoint_batch_totals t \
                     ON t.table_name = b.table_name AND t.key = b.key \
                     GROUP BY b.table_name, b.key ORDER BY b.table_name",
                    &[],
                )
            })?;
            Ok(rows
                .iter()
                .map(|row| PendingBatches {
                    table: row.get(0),
                    key: row.get(1),
                    items: usize::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                    total: row
                        .get::<_, Option<i64>>(3)
                        .and_then(|n| usize::try_from(n).ok()),
                })
                .collect())
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An environment of `pairs` only, as the libpq-style readers take it (`passfile.rs`,
    /// `tls.rs`).
    pub(crate) fn env_of<V: AsRef<std::ffi::OsStr>>(
        pairs: &[(&str, V)],
    ) -> impl Fn(&str) -> Option<std::ffi::OsString> + use<V> {
        let pairs: Vec<(String, std::ffi::OsString)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_ref().to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    /// The test server's URL (`USHER_TEST_POSTGRES`, printed by `.ci/postgres start`), or
    /// `None` with the reason printed. With `USHER_REQUIRE_POSTGRES` set (CI), a missing
    /// server fails the test instead.
    pub(crate) fn test_server() -> Option<String> {
        match std::env::var("USHER_TEST_POSTGRES") {
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ => {
                assert!(
                    std::env::var_os("USHER_REQUIRE_POSTGRES").is_none(),
                    "USHER_REQUIRE_POSTGRES is set but USHER_TEST_POSTGRES is not: start a server with `.ci/postgres start DIR`"
                );
                eprintln!(
                    "skipped: no PostgreSQL server (set USHER_TEST_POSTGRES; `.ci/postgres start DIR` prints one)"
                );
                None
            }
        }
    }

    /// `url` with its tables in `schema` (through the connection's `search_path`).
    pub(crate) fn with_schema(url: &str, schema: &str) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20search_path%3D{schema}")
    }

    /// A store in a schema and data root of its own, both removed when dropped.
    pub(crate) struct TempShared {
        store: Option<SharedStore>,
        admin: String,
        schema: String,
        _dir: tempfile::TempDir,
    }

    impl std::ops::Deref for TempShared {
        type Target = SharedStore;
        fn deref(&self) -> &SharedStore {
            self.store.as_ref().expect("present until dropped")
        }
    }

    impl Drop for TempShared {
        fn drop(&mut self) {
            drop(self.store.take());
            if let Ok(mut admin) = postgres::Client::connect(&self.admin, postgres::NoTls) {
                let _ = admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema));
            }
        }
    }

    pub(crate) fn temp_shared() -> Option<TempShared> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let admin = test_server()?;
        let schema = format!(
            "unit_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = SharedStore::open(&with_schema(&admin, &schema), dir.path()).unwrap();
        Some(TempShared {
            store: Some(store),
            admin,
            schema,
            _dir: dir,
        })
    }

    impl TempShared {
        /// Another handle on the same store, as another process would open it (a catalog and
        /// a session of its own), named `application_name` in `pg_stat_activity`.
        fn another(&self, application_name: &str, connections: usize) -> SharedStore {
            let url = format!(
                "{}&application_name={application_name}",
                with_schema(&self.admin, &self.schema)
            );
            let options = SharedStoreOptions {
                connections: Some(connections),
                ..SharedStoreOptions::default()
            };
            SharedStore::open_with(&url, self._dir.path(), &options).unwrap()
        }

        fn admin(&self) -> postgres::Client {
            postgres::Client::connect(&self.admin, postgres::NoTls).unwrap()
        }

        /// The connections of the handles named `application_name`.
        fn connections_of(&self, application_name: &str) -> i64 {
            let mut admin = self.admin();
            admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[&application_name],
                )
                .unwrap()
                .get(0)
        }

        /// Ends the sessions of the handles named `application_name`, as `pg_terminate_backend`
        /// by an administrator (or a server restart) does.
        fn terminate(&self, application_name: &str) -> i64 {
            let mut admin = self.admin();
            admin
                .query_one(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE application_name = $1",
                    &[&application_name],
                )
                .unwrap()
                .get(0)
        }
    }

    fn frame(value: i64) -> DataFrame {
        polars::df!("value" => [value]).unwrap()
    }

    /// Sixteen calls of one process waiting for another worker's table hold none of the
    /// server's connections: the process has its session and at most its reading connection,
    /// whatever the number of waiters, and they all get the table, one after the other.
    #[test]
    fn waiting_calls_hold_no_connection_of_their_own() {
        let Some(store) = temp_shared() else { return };
        let name = format!("waiters_{}", std::process::id());
        let waiters = store.another(&name, 2);
        let held = store.lock_table("t").unwrap();
        let got = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..16 {
                scope.spawn(|| {
                    let lock = waiters.lock_table("t").unwrap();
                    got.fetch_add(1, Ordering::SeqCst);
                    drop(lock);
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
            assert_eq!(got.load(Ordering::SeqCst), 0, "a waiter got a held lock");
            let open = store.connections_of(&name);
            assert!(
                (1..=2).contains(&open),
                "16 waiting calls hold {open} connections"
            );
            drop(held);
        });
        assert_eq!(got.load(Ordering::SeqCst), 16);
    }

    /// How soon `wait`, started while `store` held the lock of "t", returned after the
    /// release, in each of `rounds` rounds, sorted; `wait` must not return while it is held.
    fn wakes_after_release(
        store: &SharedStore,
        rounds: usize,
        wait: impl Fn() + Sync,
    ) -> Vec<std::time::Duration> {
        let mut wakes: Vec<std::time::Duration> = (0..rounds)
            .map(|_| {
                let held = store.lock_table("t").unwrap();
                std::thread::scope(|scope| {
                    let waiting = scope.spawn(|| {
                        wait();
                        std::time::Instant::now()
                    });
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    assert!(!waiting.is_finished(), "returned while the lock was held");
                    let released = std::time::Instant::now();
                    drop(held);
                    waiting.join().unwrap().duration_since(released)
                })
            })
            .collect();
        wakes.sort();
        wakes
    }

    /// A release wakes a worker waiting in another process, by its notice, well before the
    /// waiter's next poll; and one waiting in another thread of the same process, whose
    /// session holds the lock already (advisory locks are re-entrant there).
    #[test]
    fn a_release_wakes_the_waiters_of_other_processes_and_threads() {
        let Some(store) = temp_shared() else { return };
        for waiter in [store.another("wake_other", 2), (*store).clone()] {
            let wakes = wakes_after_release(&store, 5, || drop(waiter.lock_table("t").unwrap()));
            // Not a speed target (see the benchmark): a median below a quarter of the poll
            // means the release itself woke the waiter (polls alone give about half the poll).
            assert!(
                wakes[2] < locks::POLL / 4,
                "woken {wakes:?} after the releases"
            );
        }
    }

    /// `try_lock_table` never waits, and `wait_for_release` waits for the holder's release
    /// (woken by it, not by the poll) without taking the lock: after it, the lock is free for
    /// whoever asks. Without a holder it returns at once.
    #[test]
    fn a_wait_for_release_returns_with_the_release_and_takes_nothing() {
        let Some(store) = temp_shared() else { return };
        let other = store.another("release_other", 2);
        let started = std::time::Instant::now();
        other.wait_for_release("t").unwrap();
        assert!(started.elapsed() < locks::POLL, "waited without a holder");
        let held = store.lock_table("t").unwrap();
        assert!(other.try_lock_table("t").unwrap().is_none());
        drop(held);
        let wakes = wakes_after_release(&store, 3, || {
            other.wait_for_release("t").unwrap();
            // The wait took nothing: the lock is there for the asking.
            assert!(other.try_lock_table("t").unwrap().is_some());
        });
        assert!(
            wakes[1] < locks::POLL / 4,
            "woken {wakes:?} after the releases"
        );
    }

    /// A worker whose session ended while it held a table's lock (an administrator's
    /// `pg_terminate_backend`, a restart) registers nothing: its save fails with
    /// [`Error::LockLost`] and leaves the catalog as it was, while another worker takes the
    /// table over at once; the store itself goes on working on a new session.
    #[test]
    fn a_worker_whose_session_ended_registers_nothing() {
        let Some(store) = temp_shared() else { return };
        store.save_dataframe("t", &frame(1), "first").unwrap();
        let name = format!("ended_{}", std::process::id());
        let worker = store.another(&name, 1);
        let lock = worker.lock_table("t").unwrap();
        assert!(store.inner.locks.try_lock("t").unwrap().is_none());
        assert_eq!(store.terminate(&name), 1);
        // Another worker gets the table as soon as the session is gone.
        let other = store.lock_table("t").unwrap();
        match worker.save_dataframe("t", &frame(2), "second") {
            Err(Error::LockLost {
                table, store: name, ..
            }) => {
                assert_eq!(table, "t");
                assert_eq!(name, worker.name());
            }
            other => panic!("expected LockLost, got {other:?}"),
        }
        drop(other);
        drop(lock);
        assert_frame_equal(&store.load_dataframe("t").unwrap().unwrap(), &frame(1));
        assert_eq!(
            store.list_checkpoints().unwrap()[0].description.as_deref(),
            Some("first")
        );
        // The worker goes on, on a new session, and its next save is registered.
        worker.save_dataframe("t", &frame(3), "third").unwrap();
        assert_frame_equal(&store.load_dataframe("t").unwrap().unwrap(), &frame(3));
        // Its unregistered file was removed when the registration failed.
        assert_eq!(store.gc().unwrap().files_removed, 0);
    }

    /// Reads retry once on a new connection when theirs turns out lost, and a waiting call
    /// whose session ends reconnects and goes on waiting: neither fails for a server that
    /// ended their sessions.
    #[test]
    fn reads_and_waits_outlive_their_sessions() {
        let Some(store) = temp_shared() else { return };
        store.save_dataframe("t", &frame(1), "first").unwrap();
        let name = format!("outlive_{}", std::process::id());
        let worker = store.another(&name, 2);
        assert_eq!(worker.list_checkpoints().unwrap().len(), 1);
        assert!(worker.load_dataframe("t").unwrap().is_some());
        assert!(store.terminate(&name) >= 1);
        assert_eq!(worker.list_checkpoints().unwrap().len(), 1);
        assert_frame_equal(&worker.load_dataframe("t").unwrap().unwrap(), &frame(1));

        let held = store.lock_table("t").unwrap();
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| worker.lock_table("t").map(drop));
            std::thread::sleep(std::time::Duration::from_millis(300));
            assert!(store.terminate(&name) >= 1);
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
            waiting.join().unwrap().unwrap();
        });
    }

    /// A new store is a DuckLake: a save is one snapshot that drops the table's previous
    /// version and creates the new one with its file (exact rows, size and footer; field ids
    /// its column ids), a changed schema included; a delete is a snapshot that drops it; the
    /// earlier files stay for the lake's history, and gc keeps them.
    #[test]
    fn saves_and_deletes_are_snapshots_of_the_lake() {
        let Some(store) = temp_shared() else { return };
        let first = polars::df!("a" => [1i64, 2], "b" => ["x", "y"]).unwrap();
        let second = polars::df!("a" => [3i64], "c" => [1.5f64]).unwrap();
        store.save_dataframe("t", &first, "one").unwrap();
        let first_file = store.registered_file("t").unwrap().unwrap();
        store.save_dataframe("t", &second, "two").unwrap();
        let second_file = store.registered_file("t").unwrap().unwrap();
        store.delete_checkpoint("t").unwrap();

        let mut lake =
            postgres::Client::connect(&with_schema(&store.admin, &store.schema), postgres::NoTls)
                .unwrap();
        let changes: Vec<(i64, String)> = lake
            .query(
                "SELECT snapshot_id, changes_made FROM ducklake_snapshot_changes ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(
            changes,
            [
                (0, "created_schema:\"main\"".to_owned()),
                (
                    1,
                    "created_table:\"main\".\"t\",inserted_into_table:1".to_owned()
                ),
                (
                    2,
                    "dropped_table:1,created_table:\"main\".\"t\",inserted_into_table:2".to_owned()
                ),
                (3, "dropped_table:2".to_owned()),
            ]
        );
        let versions: Vec<(i64, i64)> = lake
            .query(
                "SELECT snapshot_id, schema_version FROM ducklake_snapshot ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(versions, [(0, 0), (1, 1), (2, 2), (3, 3)]);
        let columns: Vec<(i64, i64, String, String)> = lake
            .query(
                "SELECT table_id, column_id, column_name, column_type FROM ducklake_column \
                 ORDER BY 1, 2",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let column = |t: i64, c: i64, n: &str, ty: &str| (t, c, n.to_owned(), ty.to_owned());
        assert_eq!(
            columns,
            [
                column(1, 1, "a", "int64"),
                column(1, 2, "b", "varchar"),
                column(2, 1, "a", "int64"),
                column(2, 2, "c", "float64"),
            ]
        );
        let files = lake
            .query(
                "SELECT table_id, begin_snapshot, end_snapshot, path, record_count, \
                 file_size_bytes, footer_size FROM ducklake_data_file ORDER BY 1",
                &[],
            )
            .unwrap();
        assert_eq!(files.len(), 2);
        for (row, (file, rows)) in files.iter().zip([(&first_file, 2i64), (&second_file, 1)]) {
            let path = store.inner.files.absolute(file);
            assert_eq!(format!("tables/t/{}", row.get::<_, String>(3)), *file);
            assert_eq!(row.get::<_, i64>(4), rows);
            assert_eq!(
                row.get::<_, i64>(5),
                std::fs::metadata(&path).unwrap().len() as i64
            );
            let bytes = std::fs::read(&path).unwrap();
            let n = bytes.len();
            assert_eq!(&bytes[n - 4..], b"PAR1");
            let footer = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap());
            assert_eq!(row.get::<_, Option<i64>>(6), Some(i64::from(footer)));
        }
        let ends: Vec<(i64, Option<i64>)> = files.iter().map(|r| (r.get(1), r.get(2))).collect();
        assert_eq!(ends, [(1, Some(2)), (2, Some(3))]);
        // Field ids are the column ids.
        let conn = store.inner.files.connection().unwrap();
        let ids = conn
            .query(
                "SELECT name, field_id FROM parquet_schema(?) WHERE field_id IS NOT NULL ORDER BY 2",
                &[store
                    .inner
                    .files
                    .absolute(&second_file)
                    .to_string_lossy()
                    .as_ref()
                    .into()],
            )
            .unwrap();
        assert_eq!(
            format!(
                "{:?}",
                ids.column("name")
                    .unwrap()
                    .str()
                    .unwrap()
                    .iter()
                    .collect::<Vec<_>>()
            ),
            r#"[Some("a"), Some("c")]"#
        );
        // The history's files stay, and gc keeps them.
        assert_eq!(store.gc().unwrap().files_removed, 0);
        assert!(store.inner.files.absolute(&first_file).exists());
        assert!(store.inner.files.absolute(&second_file).exists());
        // A lake a newer DuckDB migrated is refused, not written into.
        lake.execute(
            "UPDATE ducklake_metadata SET value = '1.1-dev1' WHERE key = 'version'",
            &[],
        )
        .unwrap();
        let err = SharedStore::open(&with_schema(&store.admin, &store.schema), store._dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("DuckLake 1.1-dev1"), "{err}");
    }

    fn assert_frame_equal(left: &DataFrame, right: &DataFrame) {
        assert!(left.equals_missing(right), "{left} != {right}");
    }

    crate::conformance_suite!(match temp_shared() {
        Some(store) => store,
        None => return,
    });
    crate::history_suite!(match temp_shared() {
        Some(store) => store,
        None => return,
    });

    /// A store as it was before the lake (its `ducklake_*` tables dropped, catalog version 1),
    /// opened as a look, which leaves it so: every store rule holds there too.
    fn temp_shared_without_lake() -> Option<TempShared> {
        let mut temp = temp_shared()?;
        drop(temp.store.take());
        let mut admin = postgres::Client::connect(&temp.admin, postgres::NoTls).unwrap();
        let tables: Vec<String> = admin
            .query(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'ducklake_%'",
                &[&temp.schema],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(tables.len(), 28);
        for table in tables {
            admin
                .batch_execute(&format!("DROP TABLE {}.{table}", temp.schema))
                .unwrap();
        }
        admin
            .batch_execute(&format!(
                "UPDATE {}._usher_schema SET value = '1' WHERE name = 'schema_version'",
                temp.schema
            ))
            .unwrap();
        let options = SharedStoreOptions {
            must_exist: true,
            ..Default::default()
        };
        let store = SharedStore::open_with(
            &with_schema(&temp.admin, &temp.schema),
            temp._dir.path(),
            &options,
        )
        .unwrap();
        assert!(!store.has_lake());
        temp.store = Some(store);
        Some(temp)
    }

    /// A handle opened before another worker's open made the store a lake judges by the lake
    /// from then on: a table another writer dropped there is gone for it too.
    #[test]
    fn a_handle_opened_before_the_upgrade_reads_by_the_lake() {
        let Some(old) = temp_shared_without_lake() else {
            return;
        };
        let upgrader = old.another("upgrader", 2);
        assert!(upgrader.has_lake() && !old.has_lake());
        upgrader.save_dataframe("t", &frame(1), "x").unwrap();
        assert!(old.checkpoint("t").unwrap().is_some());
        // Another writer drops it in the lake (the rows the extension's DROP TABLE writes).
        let mut admin =
            postgres::Client::connect(&with_schema(&old.admin, &old.schema), postgres::NoTls)
                .unwrap();
        let mut tx = admin.transaction().unwrap();
        lake::replace(&mut tx, old.lake_lock_key(), "t", None).unwrap();
        tx.commit().unwrap();
        assert!(old.checkpoint("t").unwrap().is_none());
        assert!(old.list_checkpoints().unwrap().is_empty());
        assert!(old.has_lake());
    }

    mod without_lake {
        use super::temp_shared_without_lake;

        crate::conformance_suite!(match temp_shared_without_lake() {
            Some(store) => store,
            None => return,
        });
        crate::history_suite!(match temp_shared_without_lake() {
            Some(store) => store,
            None => return,
        });
    }
}
