//! `AnyStore`: the store a run opens from its config and environment (the DuckDB file or the
//! shared store), or a memory store, so the same `fn step(ctx: &Pipeline)` runs on any of them.

#[cfg(feature = "duckdb")]
use crate::config::PipelineConfig;
#[cfg(all(feature = "duckdb", not(feature = "postgres")))]
use crate::error::Error;
#[cfg(feature = "duckdb")]
use crate::error::Result;
#[cfg(all(feature = "duckdb", not(feature = "postgres")))]
use crate::settings::STORE_ENV;
#[cfg(feature = "duckdb")]
use crate::settings::Settings;
#[cfg(feature = "duckdb")]
use crate::store::duckdb::PipelineStore;
use crate::store::memory::MemoryStore;
#[cfg(feature = "postgres")]
use crate::store::shared::SharedStore;
use crate::store::{CheckpointStore, forward_checkpoint_store};

/// The store of a [`Pipeline`](crate::Pipeline) by default (the
/// [`DefaultStore`](crate::DefaultStore)), so a `#[checkpointed]` function taking `&Pipeline`
/// runs unchanged on whichever store a run opened: the config's DuckDB file or the shared
/// store [`STORE_ENV`](crate::STORE_ENV) names ([`from_config`](Self::from_config)), or a
/// [`MemoryStore`] (tests, dry runs). The same type under every feature set; a feature adds a
/// variant.
///
/// Its [`CheckpointStore`] methods are those of the store it holds;
/// [`as_file`](Self::as_file) and `as_shared` reach the rest (`execute`, `gc`...).
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyStore {
    /// Checkpoints in the process's memory.
    Memory(MemoryStore),
    /// A DuckDB database file, written by one process at a time (`duckdb` feature).
    #[cfg(feature = "duckdb")]
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
            AnyStore::Memory($s) => $body,
            #[cfg(feature = "duckdb")]
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
    /// machines is a setting of the environment, not of the config: [`open`](Self::open) with
    /// [`Settings::from_env`].
    #[cfg(feature = "duckdb")]
    pub fn from_config(config: &PipelineConfig) -> Result<Self> {
        Self::open(config, &Settings::from_env()?)
    }

    /// The store `settings` name for a run of `config`: the shared store of `settings.store`
    /// (with `settings.data_root`), otherwise the DuckDB file at `config.duckdb_path`, waited
    /// for up to `settings.store_wait`. A shared store named in a build without the `postgres`
    /// feature is an [`Error::Setting`](crate::Error::Setting), never the local file (every worker would compute every
    /// table).
    #[cfg(feature = "duckdb")]
    pub fn open(config: &PipelineConfig, settings: &Settings) -> Result<Self> {
        #[cfg(feature = "postgres")]
        if let Some(shared) = SharedStore::from_settings(settings)? {
            return Ok(AnyStore::Shared(shared));
        }
        #[cfg(not(feature = "postgres"))]
        if settings.store.is_some() {
            return Err(Error::Setting {
                setting: STORE_ENV,
                value: String::new(),
                message: "names a shared store, but this build of usher-pipeline has none: \
                          enable its `postgres` feature"
                    .to_owned(),
            });
        }
        PipelineStore::open_waiting(config, settings.store_wait).map(AnyStore::File)
    }

    /// Where the store is, for messages: `memory`, the DuckDB file's path, or the catalog as
    /// `postgres://user@host:port/db` (never with a password).
    pub fn name(&self) -> String {
        match self {
            AnyStore::Memory(_) => "memory".to_owned(),
            #[cfg(feature = "duckdb")]
            AnyStore::File(s) => s.path().display().to_string(),
            #[cfg(feature = "postgres")]
            AnyStore::Shared(s) => s.name().to_owned(),
        }
    }

    /// The DuckDB file store, if this is one.
    #[cfg(feature = "duckdb")]
    pub fn as_file(&self) -> Option<&PipelineStore> {
        match self {
            AnyStore::File(s) => Some(s),
            _ => None,
        }
    }

    /// The shared store, if this is one.
    #[cfg(feature = "postgres")]
    pub fn as_shared(&self) -> Option<&SharedStore> {
        match self {
            AnyStore::Shared(s) => Some(s),
            _ => None,
        }
    }

    /// The memory store, if this is one.
    pub fn as_memory(&self) -> Option<&MemoryStore> {
        match self {
            AnyStore::Memory(s) => Some(s),
            #[allow(unreachable_patterns)] // without the store features, the only variant
            _ => None,
        }
    }
}

impl From<MemoryStore> for AnyStore {
    fn from(store: MemoryStore) -> Self {
        AnyStore::Memory(store)
    }
}

#[cfg(feature = "duckdb")]
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
    forward_checkpoint_store!(each);
}
