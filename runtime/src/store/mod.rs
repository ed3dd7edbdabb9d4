//! What a store must offer to hold checkpoints, and the stores: [`memory`] (in the process)
//! and, with the `duckdb` feature, [`duckdb`] (a file-backed DuckDB database).
//!
//! The trait is backend-neutral: how a store is opened (a path, a URL, a config) belongs to
//! each store, not to the trait, and every method takes `&self` so one store serves the
//! threads of a run. `conformance.rs` holds the behaviour every store must show, written once
//! and run against each.

/// Whether key row `k` belongs to checkpoint row `c`: the same table, saved at the same time
/// (a re-save by the Python pipeline changes the time). The one rule, for reading keys and for
/// collecting the orphans; a macro so SQL constants can be built with `concat!`.
#[cfg(feature = "duckdb")]
macro_rules! key_of_checkpoint {
    () => {
        "k.table_name = c.table_name AND k.checkpoint_created_at IS NOT DISTINCT FROM c.created_at"
    };
}

/// [`key_of_checkpoint!`] with the key's lineage written by that same save: a checkpoint whose
/// key, lineage and version number all describe it (what the history keeps and numbers).
#[cfg(feature = "duckdb")]
macro_rules! current_key_of_checkpoint {
    () => {
        concat!(
            key_of_checkpoint!(),
            " AND k.lineage_created_at IS NOT DISTINCT FROM k.checkpoint_created_at"
        )
    };
}

pub(crate) mod any;
#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
#[cfg(feature = "duckdb")]
pub(crate) mod duckdb;
pub(crate) mod memory;
pub(crate) mod param;
#[cfg(feature = "postgres")]
pub(crate) mod shared;
#[cfg(feature = "duckdb")]
pub(crate) mod sql;
pub(crate) mod time;

use std::path::Path;

use chrono::NaiveDateTime;
use polars::prelude::DataFrame;

use crate::error::{Error, Result};
use crate::model::{CheckpointInfo, CheckpointKey, HistoryVersion, Lineage, ProvenanceRecord};
pub use param::Param;

/// A checkpoint store: what a user does with one (save, load, list, delete, export, query),
/// and what a [`Pipeline`](crate::Pipeline) asks of it to run `#[checkpointed]` calls.
///
/// One trait, one set of names (the Python pipeline's: `save_dataframe`, `load_dataframe`,
/// `has_checkpoint`...), implemented once per backend: [`PipelineStore`](crate::PipelineStore)
/// (a DuckDB file), `SharedStore` (PostgreSQL and Parquet, `postgres` feature),
/// [`MemoryStore`](crate::MemoryStore) and [`AnyStore`](crate::AnyStore), which forwards to the one it holds.
/// Bring it into scope to call its methods: `use usher_pipeline::CheckpointStore;`.
///
/// Every method takes `&self`: a store is shared by the threads of a run. A new backend
/// implements the required methods and checks itself against the behaviour every store must
/// show (`store/conformance.rs`).
pub trait CheckpointStore: Send + Sync {
    // --- What a user calls ---

    /// Saves `frame` as `table` without a key, replacing any previous checkpoint of it (a
    /// hand-made checkpoint: a `#[checkpointed]` call asks what to do with it, see
    /// [`UnkeyedPolicy`](crate::UnkeyedPolicy)). Table and `_checkpoints` row are written
    /// together or not at all; the save is stamped in local time, as the Python pipeline
    /// stamps its own.
    fn save_dataframe(&self, table: &str, frame: &DataFrame, description: &str) -> Result<()>;

    /// The table's data, or `None` if there is no such table.
    fn load_dataframe(&self, table: &str) -> Result<Option<DataFrame>>;

    /// The first `rows` rows of `table`, or `None` if there is no such table. The default
    /// loads the table; a store that can read less overrides it.
    fn head(&self, table: &str, rows: usize) -> Result<Option<DataFrame>> {
        Ok(self
            .load_dataframe(table)?
            .map(|frame| frame.head(Some(rows))))
    }

    /// Whether the store has a checkpoint (a `_checkpoints` row) of `table`.
    fn has_checkpoint(&self, table: &str) -> Result<bool> {
        Ok(self.checkpoint(table)?.is_some())
    }

    /// Every checkpoint with its valid key and lineage, newest first (then by name).
    fn list_checkpoints(&self) -> Result<Vec<CheckpointInfo>>;

    /// Removes the checkpoints of `tables` (data, `_checkpoints` row, key, batches): all of
    /// them or, on an error, none.
    fn delete_checkpoints(&self, tables: &[&str]) -> Result<()>;

    /// Removes `table`'s checkpoint (data, `_checkpoints` row, key, batches).
    fn delete_checkpoint(&self, table: &str) -> Result<()> {
        self.delete_checkpoints(&[table])
    }

    /// Writes `table` as a Parquet file at `output_path` (parent directories created), whole
    /// or not at all: a killed export never leaves a truncated file where the output is
    /// expected. [`Error::TableNotFound`] when there is no such table.
    fn export_parquet(&self, table: &str, output_path: &Path) -> Result<()>;

    /// Runs one query (`SELECT`, `WITH ... SELECT`, `VALUES`, `FROM t`) over the store's
    /// tables, with `?` placeholders bound to `params` (values are bound, never pasted into
    /// the SQL text). Only queries run: a statement that writes is refused and changes
    /// nothing. The default is [`Error::Unsupported`], for stores without SQL (memory).
    fn query(&self, sql: &str, params: &[Param]) -> Result<DataFrame> {
        let _ = (sql, params);
        Err(Error::Unsupported {
            operation: "query",
            store: std::any::type_name::<Self>(),
        })
    }

    /// Every `_provenance` row, oldest first.
    fn provenance_rows(&self) -> Result<Vec<ProvenanceRecord>>;

    // --- What a pipeline calls ---

    /// The checkpoint of `table` (with its key, if it has a valid one), or `None`.
    fn checkpoint(&self, table: &str) -> Result<Option<CheckpointInfo>>;

    /// The data of exactly the checkpoint `judged` (as [`checkpoint`](Self::checkpoint)
    /// returned it), provided it is still the table's current one: a hit loads what it judged,
    /// never a checkpoint another thread or worker saved in between. A store overrides this to
    /// make the check and the read one consistent step; the default checks, then loads.
    fn load_judged(&self, judged: &CheckpointInfo) -> Result<JudgedLoad> {
        let table = judged.table_name.as_str();
        match self.checkpoint(table)? {
            Some(now) if now.same_checkpoint(judged) => {}
            _ => return Ok(JudgedLoad::Replaced),
        }
        Ok(match self.load_dataframe(table)? {
            Some(frame) => JudgedLoad::Loaded(frame),
            None => JudgedLoad::TableMissing,
        })
    }

    /// Saves `frame` as `table` with its `_checkpoints` row, `key`, its lineage and the
    /// `_provenance` row of the step that made it, and removes the table's partial batches, all
    /// or nothing. The save is stamped `saved_at` (UTC, by the saving pipeline's clock, so ages
    /// and `max_age` are measured by one clock); lineage and `_provenance` row are asked of
    /// `metadata` once, before the save commits (a store may ask after writing the frame, so a
    /// caller can still be computing them meanwhile). An error of `metadata` saves nothing and
    /// is returned as it is.
    fn save_checkpoint_with(
        &self,
        table: &str,
        frame: &DataFrame,
        description: &str,
        key: &CheckpointKey,
        saved_at: NaiveDateTime,
        metadata: &mut dyn FnMut() -> Result<(Lineage, ProvenanceRecord)>,
    ) -> Result<()>;

    /// [`save_checkpoint_with`](Self::save_checkpoint_with) stamped now, with `lineage` and
    /// `provenance` at hand.
    fn save_checkpoint(
        &self,
        table: &str,
        frame: &DataFrame,
        description: &str,
        key: &CheckpointKey,
        lineage: &Lineage,
        provenance: &ProvenanceRecord,
    ) -> Result<()> {
        let mut metadata = || Ok((lineage.clone(), provenance.clone()));
        let now = time::to_micros(time::now_utc());
        self.save_checkpoint_with(table, frame, description, key, now, &mut metadata)
    }

    /// [`save_checkpoint_with`](Self::save_checkpoint_with), keeping at most `keep` versions of
    /// `table`: the new one and the `keep - 1` newest earlier ones, which a later call whose key
    /// and inputs match one of them restores instead of computing (see
    /// [`history`](Self::history)); `keep = 1` keeps none. A keyed current checkpoint becomes an
    /// earlier version in the same transaction as the save. The default keeps none.
    #[allow(clippy::too_many_arguments)]
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
        let _ = keep;
        self.save_checkpoint_with(table, frame, description, key, saved_at, metadata)
    }

    /// Every version of `table` the store keeps, newest first: the current keyed checkpoint
    /// (flagged `current`) and the earlier versions. The default keeps no history: none.
    fn history(&self, table: &str) -> Result<Vec<HistoryVersion>> {
        let _ = table;
        Ok(Vec::new())
    }

    /// Makes the earlier version `judged` (as [`history`](Self::history) returned it) of its
    /// table current again, all or nothing, keeping at most `keep` versions: the current keyed
    /// checkpoint becomes an earlier version, and the restored one has its save time, key,
    /// lineage and data version as they were (so what was made from it matches it again).
    /// Returns the checkpoint as now current, or `None` when the version is no longer there
    /// as judged (pruned, or restored by another worker), and then nothing changed. The
    /// default keeps no history: `None`.
    fn restore_version(
        &self,
        judged: &HistoryVersion,
        keep: usize,
    ) -> Result<Option<CheckpointInfo>> {
        let _ = (judged, keep);
        Ok(None)
    }

    /// The rows of version `version` of `table` (current or earlier), `None` when the store
    /// has no such version.
    fn load_version(&self, table: &str, version: u64) -> Result<Option<DataFrame>> {
        let _ = (table, version);
        Ok(None)
    }

    /// Keeps at most `keep` versions of every table (the current one and `keep - 1` earlier
    /// ones), dropping the oldest others; returns how many it dropped. Saves keep each table's
    /// own `keep` as they go; this applies one bound to all (`usher-pipeline gc --keep N`). A
    /// table a worker is saving now is left as it is. The default keeps no history: 0.
    fn prune_history(&self, keep: usize) -> Result<usize> {
        let _ = keep;
        Ok(0)
    }

    /// Writes version `version` of `table` (current or earlier) to a Parquet file at
    /// `output_path`, whole or not at all, as [`export_parquet`](Self::export_parquet) writes
    /// the current one; [`Error::TableNotFound`](crate::Error::TableNotFound) when the store
    /// has no such version. The default exports the current version only.
    fn export_version_parquet(&self, table: &str, version: u64, output_path: &Path) -> Result<()> {
        match self.history(table)?.iter().find(|v| v.version == version) {
            Some(v) if v.current => self.export_parquet(table, output_path),
            _ => Err(crate::Error::TableNotFound {
                table: format!("{table} (version {version})"),
                path: output_path.to_owned(),
            }),
        }
    }

    /// Records `key` and `lineage` for the existing checkpoint of `table` (unkeyed, or keyed by
    /// an older code hash), provided it is still the one created at `created_at`, and stamps it
    /// `saved_at` (UTC: a keyed checkpoint's save time is UTC, an unkeyed one's local). Returns
    /// whether it was.
    fn adopt_checkpoint(
        &self,
        table: &str,
        created_at: Option<NaiveDateTime>,
        saved_at: Option<NaiveDateTime>,
        key: &CheckpointKey,
        lineage: &Lineage,
    ) -> Result<bool>;

    /// The items finished by earlier [`Batches`](crate::Batches) of `table` under `key`.
    /// Progress saved under another key (other arguments, other code) is discarded first.
    fn batch_progress(&self, table: &str, key: &str) -> Result<Vec<String>>;

    /// Discards every partial batch of `table`.
    fn discard_batches(&self, table: &str) -> Result<()>;

    /// Records that the resumable loop of `table` under `key` has `total` items, so a status
    /// can say "n of m". Kept until the batches are discarded or the checkpoint saved.
    fn record_batch_total(&self, table: &str, key: &str, total: usize) -> Result<()>;

    /// Saves one finished batch of `table`: `items` (JSON texts) marked done and `frame`'s rows
    /// kept (a frame without columns keeps no rows), all or nothing.
    fn save_batch(&self, table: &str, key: &str, items: &[String], frame: &DataFrame)
    -> Result<()>;

    /// Every row kept by the batches of `table`, or `None` if no batch kept any columns.
    fn load_batches(&self, table: &str) -> Result<Option<DataFrame>>;

    /// Appends a row to `_provenance`.
    fn append_provenance(&self, record: &ProvenanceRecord) -> Result<()>;

    /// The finished batches waiting in the store, per table (none for a store without batch
    /// progress, such as one written by the Python pipeline).
    fn pending_batches(&self) -> Result<Vec<PendingBatches>>;

    /// Takes the right to compute `table` for every process sharing this store, waiting while
    /// another process holds it; released when the returned lock is dropped. A pipeline takes
    /// it when a call must run its body, then looks at the checkpoint again: what the previous
    /// holder saved is loaded rather than computed twice.
    ///
    /// The default is [`TableLock::unshared`]: a store that one process writes (the DuckDB
    /// file, memory) needs nothing beyond the pipeline's own per-table lock.
    fn lock_table(&self, table: &str) -> Result<TableLock> {
        let _ = table;
        Ok(TableLock::unshared())
    }

    /// [`lock_table`](Self::lock_table) for an `async` call: waiting for another process
    /// must not block the caller's thread. The default takes `lock_table`'s answer at once,
    /// right for stores whose `lock_table` never waits.
    fn lock_table_async<'a>(&'a self, table: &'a str) -> LockFuture<'a> {
        Box::pin(std::future::ready(self.lock_table(table)))
    }

    /// `table`'s compute lock if no one else holds it now, else `None`, without waiting. A
    /// pipeline that finds it held waits with [`wait_for_release`](Self::wait_for_release)
    /// and looks at the checkpoint again before it tries once more, so the workers waiting for
    /// one table load what its holder saved side by side instead of taking the lock in turn.
    ///
    /// The default is [`lock_table`](Self::lock_table)'s answer, right for stores whose
    /// `lock_table` never waits.
    fn try_lock_table(&self, table: &str) -> Result<Option<TableLock>> {
        self.lock_table(table).map(Some)
    }

    /// Waits until the compute lock of `table` that [`try_lock_table`](Self::try_lock_table)
    /// found held is released, or a while passed (a holder that died may release it without a
    /// word): the caller looks at the checkpoint and tries the lock again either way. The
    /// default returns at once.
    fn wait_for_release(&self, table: &str) -> Result<()> {
        let _ = table;
        Ok(())
    }

    /// [`wait_for_release`](Self::wait_for_release) for an `async` call: the wait must not
    /// block the caller's thread. The default is ready at once.
    fn wait_for_release_async<'a>(&'a self, table: &'a str) -> ReleaseFuture<'a> {
        let _ = table;
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What [`CheckpointStore::load_judged`] found.
#[derive(Debug)]
pub enum JudgedLoad {
    /// The judged checkpoint's data.
    Loaded(DataFrame),
    /// The table has another checkpoint now (saved, adopted or deleted since it was judged):
    /// the caller judges again.
    Replaced,
    /// The checkpoint row is still the judged one, but its table (or data file) is gone.
    TableMissing,
}

/// What [`CheckpointStore::wait_for_release_async`] returns.
pub type ReleaseFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;

/// What [`CheckpointStore::lock_table_async`] returns.
pub type LockFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<TableLock>> + Send + 'a>>;

/// The right to compute one table across the processes sharing a store, from
/// [`CheckpointStore::lock_table`]; released when dropped.
#[must_use = "the lock is released as soon as it is dropped"]
pub struct TableLock {
    held: Option<Box<dyn Send + Sync>>,
}

impl TableLock {
    /// A lock that holds nothing, for a store written by one process only.
    pub fn unshared() -> Self {
        Self { held: None }
    }

    /// A lock that is released by dropping `guard`.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self {
            held: Some(Box::new(guard)),
        }
    }

    /// Whether another process could have saved the table while this one waited, so the
    /// checkpoint must be looked at again.
    pub fn is_shared(&self) -> bool {
        self.held.is_some()
    }
}

impl std::fmt::Debug for TableLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableLock")
            .field("shared", &self.is_shared())
            .finish()
    }
}

/// Finished batches of a call that has not saved its checkpoint yet (see
/// [`Batches`](crate::Batches)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBatches {
    /// The table the call makes.
    pub table: String,
    /// The checkpoint key the batches were made under.
    pub key: String,
    /// How many items are finished.
    pub items: usize,
    /// How many items the loop has, when it recorded it.
    pub total: Option<usize>,
}

/// Newest first, checkpoints without a time last, then by name: as DuckDB's
/// `ORDER BY created_at DESC`, for every store.
pub(crate) fn newest_first(list: &mut [CheckpointInfo]) {
    list.sort_by(|a, b| {
        (b.created_at.is_some(), b.created_at)
            .cmp(&(a.created_at.is_some(), a.created_at))
            .then_with(|| a.table_name.cmp(&b.table_name))
    });
}

/// The frames every store refuses, for the DuckDB store's sake, so a frame that saves in one
/// store saves in all. DuckDB renames what it cannot take as a column name (an empty name becomes `v0`, the second
/// of `Gene` and `gene` becomes `gene_1`) without a word: refuse such frames instead, so a
/// loaded table always has the saved frame's column names.
pub(crate) fn validate_columns(table: &str, df: &DataFrame) -> Result<()> {
    if df.width() == 0 {
        return Err(Error::Format(format!(
            "cannot save table {table:?}: the frame has no columns"
        )));
    }
    let mut seen = std::collections::HashMap::new();
    for name in df.get_column_names() {
        if name.is_empty() {
            return Err(Error::Format(format!(
                "cannot save table {table:?}: a column has an empty name, which DuckDB would rename"
            )));
        }
        if let Some(previous) = seen.insert(name.to_lowercase(), name.as_str()) {
            return Err(Error::Format(format!(
                "cannot save table {table:?}: columns {previous:?} and {:?} differ only in case, \
                 and DuckDB's column names are case-insensitive",
                name.as_str()
            )));
        }
    }
    Ok(())
}

/// Implements [`CheckpointStore`] for a type that holds another store, every method (the
/// overridable ones too, so the held store's own versions run) forwarded through `$via!`: a
/// macro `($store:expr, $s:ident => $body:expr)` that runs `$body` with `$s` bound to the held
/// store. The one list of the trait's methods outside the trait: a new method is forwarded
/// here, for `Arc` and [`AnyStore`](crate::AnyStore) alike.
macro_rules! forward_checkpoint_store {
    ($via:ident) => {
        fn save_dataframe(&self, table: &str, frame: &::polars::prelude::DataFrame, description: &str) -> $crate::Result<()> {
            $via!(self, s => s.save_dataframe(table, frame, description))
        }
        fn load_dataframe(&self, table: &str) -> $crate::Result<Option<::polars::prelude::DataFrame>> {
            $via!(self, s => s.load_dataframe(table))
        }
        fn head(&self, table: &str, rows: usize) -> $crate::Result<Option<::polars::prelude::DataFrame>> {
            $via!(self, s => s.head(table, rows))
        }
        fn has_checkpoint(&self, table: &str) -> $crate::Result<bool> {
            $via!(self, s => s.has_checkpoint(table))
        }
        fn list_checkpoints(&self) -> $crate::Result<Vec<$crate::CheckpointInfo>> {
            $via!(self, s => s.list_checkpoints())
        }
        fn delete_checkpoints(&self, tables: &[&str]) -> $crate::Result<()> {
            $via!(self, s => s.delete_checkpoints(tables))
        }
        fn delete_checkpoint(&self, table: &str) -> $crate::Result<()> {
            $via!(self, s => s.delete_checkpoint(table))
        }
        fn export_parquet(&self, table: &str, output_path: &::std::path::Path) -> $crate::Result<()> {
            $via!(self, s => s.export_parquet(table, output_path))
        }
        fn query(&self, sql: &str, params: &[$crate::store::Param]) -> $crate::Result<::polars::prelude::DataFrame> {
            $via!(self, s => s.query(sql, params))
        }
        fn provenance_rows(&self) -> $crate::Result<Vec<$crate::ProvenanceRecord>> {
            $via!(self, s => s.provenance_rows())
        }
        fn checkpoint(&self, table: &str) -> $crate::Result<Option<$crate::CheckpointInfo>> {
            $via!(self, s => s.checkpoint(table))
        }
        fn load_judged(&self, judged: &$crate::CheckpointInfo) -> $crate::Result<$crate::JudgedLoad> {
            $via!(self, s => s.load_judged(judged))
        }
        fn save_checkpoint(
            &self,
            table: &str,
            frame: &::polars::prelude::DataFrame,
            description: &str,
            key: &$crate::CheckpointKey,
            lineage: &$crate::Lineage,
            provenance: &$crate::ProvenanceRecord,
        ) -> $crate::Result<()> {
            $via!(self, s => s.save_checkpoint(table, frame, description, key, lineage, provenance))
        }
        fn save_checkpoint_with(
            &self,
            table: &str,
            frame: &::polars::prelude::DataFrame,
            description: &str,
            key: &$crate::CheckpointKey,
            saved_at: ::chrono::NaiveDateTime,
            metadata: &mut dyn FnMut() -> $crate::Result<($crate::Lineage, $crate::ProvenanceRecord)>,
        ) -> $crate::Result<()> {
            $via!(self, s => s.save_checkpoint_with(table, frame, description, key, saved_at, metadata))
        }
        fn save_checkpoint_keeping(
            &self,
            table: &str,
            frame: &::polars::prelude::DataFrame,
            description: &str,
            key: &$crate::CheckpointKey,
            saved_at: ::chrono::NaiveDateTime,
            keep: usize,
            metadata: &mut dyn FnMut() -> $crate::Result<($crate::Lineage, $crate::ProvenanceRecord)>,
        ) -> $crate::Result<()> {
            $via!(self, s => s.save_checkpoint_keeping(table, frame, description, key, saved_at, keep, metadata))
        }
        fn history(&self, table: &str) -> $crate::Result<Vec<$crate::HistoryVersion>> {
            $via!(self, s => s.history(table))
        }
        fn restore_version(
            &self,
            judged: &$crate::HistoryVersion,
            keep: usize,
        ) -> $crate::Result<Option<$crate::CheckpointInfo>> {
            $via!(self, s => s.restore_version(judged, keep))
        }
        fn load_version(
            &self,
            table: &str,
            version: u64,
        ) -> $crate::Result<Option<::polars::prelude::DataFrame>> {
            $via!(self, s => s.load_version(table, version))
        }
        fn prune_history(&self, keep: usize) -> $crate::Result<usize> {
            $via!(self, s => s.prune_history(keep))
        }
        fn export_version_parquet(
            &self,
            table: &str,
            version: u64,
            output_path: &::std::path::Path,
        ) -> $crate::Result<()> {
            $via!(self, s => s.export_version_parquet(table, version, output_path))
        }
        fn adopt_checkpoint(
            &self,
            table: &str,
            created_at: Option<::chrono::NaiveDateTime>,
            saved_at: Option<::chrono::NaiveDateTime>,
            key: &$crate::CheckpointKey,
            lineage: &$crate::Lineage,
        ) -> $crate::Result<bool> {
            $via!(self, s => s.adopt_checkpoint(table, created_at, saved_at, key, lineage))
        }
        fn batch_progress(&self, table: &str, key: &str) -> $crate::Result<Vec<String>> {
            $via!(self, s => s.batch_progress(table, key))
        }
        fn discard_batches(&self, table: &str) -> $crate::Result<()> {
            $via!(self, s => s.discard_batches(table))
        }
        fn record_batch_total(&self, table: &str, key: &str, total: usize) -> $crate::Result<()> {
            $via!(self, s => s.record_batch_total(table, key, total))
        }
        fn save_batch(
            &self,
            table: &str,
            key: &str,
            items: &[String],
            frame: &::polars::prelude::DataFrame,
        ) -> $crate::Result<()> {
            $via!(self, s => s.save_batch(table, key, items, frame))
        }
        fn load_batches(&self, table: &str) -> $crate::Result<Option<::polars::prelude::DataFrame>> {
            $via!(self, s => s.load_batches(table))
        }
        fn append_provenance(&self, record: &$crate::ProvenanceRecord) -> $crate::Result<()> {
            $via!(self, s => s.append_provenance(record))
        }
        fn pending_batches(&self) -> $crate::Result<Vec<$crate::PendingBatches>> {
            $via!(self, s => s.pending_batches())
        }
        fn lock_table(&self, table: &str) -> $crate::Result<$crate::TableLock> {
            $via!(self, s => s.lock_table(table))
        }
        fn lock_table_async<'a>(&'a self, table: &'a str) -> $crate::LockFuture<'a> {
            $via!(self, s => s.lock_table_async(table))
        }
        fn try_lock_table(&self, table: &str) -> $crate::Result<Option<$crate::TableLock>> {
            $via!(self, s => s.try_lock_table(table))
        }
        fn wait_for_release(&self, table: &str) -> $crate::Result<()> {
            $via!(self, s => s.wait_for_release(table))
        }
        fn wait_for_release_async<'a>(&'a self, table: &'a str) -> $crate::ReleaseFuture<'a> {
            $via!(self, s => s.wait_for_release_async(table))
        }
    };
}
pub(crate) use forward_checkpoint_store;

/// The store an `Arc` holds.
macro_rules! deref {
    ($store:expr, $s:ident => $body:expr) => {{
        let $s = &**$store;
        $body
    }};
}

/// A shared store is a store: several [`Pipeline`](crate::Pipeline)s (a run each, say) over
/// one store.
impl<S: CheckpointStore + ?Sized> CheckpointStore for std::sync::Arc<S> {
    forward_checkpoint_store!(deref);
}
