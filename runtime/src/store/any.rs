//! `AnyStore`: the store a run opens from its config and environment, the DuckDB file or the
//! shared store, so the same `fn step(ctx: &Pipeline)` runs on either.

use std::path::Path;

use chrono::NaiveDateTime;
use polars::prelude::DataFrame;

use crate::config::PipelineConfig;
#[cfg(not(feature = "postgres"))]
use crate::error::Error;
use crate::error::Result;
use crate::model::{CheckpointInfo, CheckpointKey, Lineage, ProvenanceRecord};
#[cfg(not(feature = "postgres"))]
use crate::settings::{STORE_ENV, store_env};
use crate::store::duckdb::{Param, PipelineStore};
#[cfg(feature = "postgres")]
use crate::store::shared::SharedStore;
use crate::store::{CheckpointStore, JudgedLoad, LockFuture, PendingBatches, TableLock};

/// The store of a [`Pipeline`](crate::Pipeline) made by
/// [`Pipeline::from_config`](crate::Pipeline::from_config): the config's DuckDB file, or
/// the shared store [`STORE_ENV`](crate::STORE_ENV) names. It is the [`DefaultStore`](crate::DefaultStore), so a
/// `#[checkpointed]` function taking `&Pipeline` runs unchanged on either.
///
/// Offers what both stores offer (saving, loading, listing, deleting, exporting and querying
/// tables); [`as_file`](Self::as_file) and `as_shared` reach the rest.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyStore {
    /// A DuckDB database file, written by one process at a time.
    File(PipelineStore),
    /// Catalog and locks on PostgreSQL, Parquet files under a shared data root (`postgres`
    /// feature).
    #[cfg(feature = "postgres")]
    Shared(SharedStore),
}

/// Runs `$body` with `$s` bound to the store inside `$store`, whichever it is.
macro_rules! each {
    ($store:expr, $s:ident => $body:expr) => {
        match $store {
            AnyStore::File($s) => $body,
            #[cfg(feature = "postgres")]
            AnyStore::Shared($s) => $body,
        }
    };
}

impl AnyStore {
    /// The shared store when [`STORE_ENV`](crate::STORE_ENV) is set (with
    /// [`DATA_ROOT_ENV`](crate::DATA_ROOT_ENV)), otherwise the
    /// DuckDB file at `config.duckdb_path` (see [`PipelineStore::from_config`]). The YAML
    /// config keeps the Python pipeline's schema, so where the checkpoints live across
    /// machines is a setting of the environment, not of the config.
    pub fn from_config(config: &PipelineConfig) -> Result<Self> {
        #[cfg(feature = "postgres")]
        if let Some(shared) = SharedStore::from_env()? {
            return Ok(AnyStore::Shared(shared));
        }
        #[cfg(not(feature = "postgres"))]
        if store_env().is_some() {
            // Falling back to the local file would let every worker compute every table.
            return Err(Error::Setting {
                setting: STORE_ENV,
                value: String::new(),
                message: "names a shared store, but this build of usher-pipeline has none: \
                          enable its `postgres` feature"
                    .to_owned(),
            });
        }
        PipelineStore::from_config(config).map(AnyStore::File)
    }

    /// Where the store is, for messages: the DuckDB file's path, or the catalog as
    /// `postgres://user@host:port/db` (never with a password).
    pub fn name(&self) -> String {
        match self {
            AnyStore::File(s) => s.path().display().to_string(),
            #[cfg(feature = "postgres")]
            AnyStore::Shared(s) => s.name().to_owned(),
        }
    }

    /// The DuckDB file store, if this is one.
    pub fn as_file(&self) -> Option<&PipelineStore> {
        match self {
            AnyStore::File(s) => Some(s),
            #[cfg(feature = "postgres")]
            AnyStore::Shared(_) => None,
        }
    }

    /// The shared store, if this is one.
    #[cfg(feature = "postgres")]
    pub fn as_shared(&self) -> Option<&SharedStore> {
        match self {
            AnyStore::Shared(s) => Some(s),
            AnyStore::File(_) => None,
        }
    }

    /// Saves `df` as `table` without a key, replacing any previous one (a hand-made
    /// checkpoint: a `#[checkpointed]` call asks what to do with it, see
    /// [`UnkeyedPolicy`](crate::UnkeyedPolicy)).
    pub fn save_dataframe(&self, table: &str, df: &DataFrame, description: &str) -> Result<()> {
        each!(self, s => s.save_dataframe(table, df, description))
    }

    /// Loads `table`, or `Ok(None)` if there is no such checkpoint.
    pub fn load_dataframe(&self, table: &str) -> Result<Option<DataFrame>> {
        each!(self, s => s.load_dataframe(table))
    }

    /// The first `rows` rows of `table`, or `None` if there is no such table.
    pub fn head(&self, table: &str, rows: usize) -> Result<Option<DataFrame>> {
        each!(self, s => s.head(table, rows))
    }

    /// Whether the store has a checkpoint of `table`.
    pub fn has_checkpoint(&self, table: &str) -> Result<bool> {
        each!(self, s => s.has_checkpoint(table))
    }

    /// Every checkpoint with its valid key and lineage, newest first (then by name).
    pub fn list_checkpoints(&self) -> Result<Vec<CheckpointInfo>> {
        each!(self, s => s.list_checkpoints())
    }

    /// Removes `table`'s checkpoint (data, row, key, batches).
    pub fn delete_checkpoint(&self, table: &str) -> Result<()> {
        each!(self, s => s.delete_checkpoint(table))
    }

    /// Removes the checkpoints of `tables` in one transaction: all are deleted, or none.
    pub fn delete_checkpoints(&self, tables: &[&str]) -> Result<()> {
        each!(self, s => s.delete_checkpoints(tables))
    }

    /// Writes `table` as a Parquet file at `output_path`, whole or not at all.
    pub fn export_parquet(&self, table: &str, output_path: impl AsRef<Path>) -> Result<()> {
        each!(self, s => s.export_parquet(table, output_path))
    }

    /// Runs one SQL statement over the store's tables (in DuckDB, for both stores), `?`
    /// placeholders bound to `params`.
    pub fn query(&self, sql: &str, params: &[Param]) -> Result<DataFrame> {
        each!(self, s => s.query(sql, params))
    }

    /// Every `_provenance` row, oldest first.
    pub fn provenance_rows(&self) -> Result<Vec<ProvenanceRecord>> {
        each!(self, s => s.provenance_rows())
    }
}

impl From<PipelineStore> for AnyStore {
    fn from(store: PipelineStore) -> Self {
        AnyStore::File(store)
    }
}

#[cfg(feature = "postgres")]
impl From<SharedStore> for AnyStore {
    fn from(store: SharedStore) -> Self {
        AnyStore::Shared(store)
    }
}

impl CheckpointStore for AnyStore {
    fn checkpoint(&self, table: &str) -> Result<Option<CheckpointInfo>> {
        each!(self, s => s.checkpoint(table))
    }
    fn load_checkpoint(&self, table: &str) -> Result<Option<DataFrame>> {
        each!(self, s => s.load_checkpoint(table))
    }
    fn load_judged(&self, judged: &CheckpointInfo) -> Result<JudgedLoad> {
        each!(self, s => s.load_judged(judged))
    }
    fn save_checkpoint(
        &self,
        table: &str,
        frame: &DataFrame,
        description: &str,
        key: &CheckpointKey,
        lineage: &Lineage,
        provenance: &ProvenanceRecord,
    ) -> Result<()> {
        each!(self, s => s.save_checkpoint(table, frame, description, key, lineage, provenance))
    }
    fn save_checkpoint_with(
        &self,
        table: &str,
        frame: &DataFrame,
        description: &str,
        key: &CheckpointKey,
        saved_at: NaiveDateTime,
        metadata: &mut dyn FnMut() -> Result<(Lineage, ProvenanceRecord)>,
    ) -> Result<()> {
        each!(self, s => s.save_checkpoint_with(table, frame, description, key, saved_at, metadata))
    }
    fn adopt_checkpoint(
        &self,
        table: &str,
        created_at: Option<NaiveDateTime>,
        saved_at: Option<NaiveDateTime>,
        key: &CheckpointKey,
        lineage: &Lineage,
    ) -> Result<bool> {
        each!(self, s => s.adopt_checkpoint(table, created_at, saved_at, key, lineage))
    }
    fn batch_progress(&self, table: &str, key: &str) -> Result<Vec<String>> {
        each!(self, s => s.batch_progress(table, key))
    }
    fn discard_batches(&self, table: &str) -> Result<()> {
        each!(self, s => s.discard_batches(table))
    }
    fn record_batch_total(&self, table: &str, key: &str, total: usize) -> Result<()> {
        each!(self, s => s.record_batch_total(table, key, total))
    }
    fn save_batch(
        &self,
        table: &str,
        key: &str,
        items: &[String],
        frame: &DataFrame,
    ) -> Result<()> {
        each!(self, s => s.save_batch(table, key, items, frame))
    }
    fn load_batches(&self, table: &str) -> Result<Option<DataFrame>> {
        each!(self, s => s.load_batches(table))
    }
    fn append_provenance(&self, record: &ProvenanceRecord) -> Result<()> {
        each!(self, s => s.append_provenance(record))
    }
    fn list_checkpoints(&self) -> Result<Vec<CheckpointInfo>> {
        each!(self, s => CheckpointStore::list_checkpoints(s))
    }
    fn pending_batches(&self) -> Result<Vec<PendingBatches>> {
        each!(self, s => s.pending_batches())
    }
    fn lock_table(&self, table: &str) -> Result<TableLock> {
        each!(self, s => s.lock_table(table))
    }
    fn lock_table_async<'a>(&'a self, table: &'a str) -> LockFuture<'a> {
        each!(self, s => s.lock_table_async(table))
    }
}
