//! `Pipeline`: the context a `#[checkpointed]` function takes (store, provenance, config,
//! force settings), and the decisions the attribute's expansion hands over to it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::NaiveDateTime;

use crate::config::{Config, PipelineConfig};
use crate::error::Result;
use crate::model::CheckpointInfo;
use crate::progress::{PROGRESS_MIN_ROWS, Progress, ProgressEvent};
use crate::provenance::ProvenanceTracker;
use crate::settings::{DEFAULT_KEEP, Settings};
pub(crate) use crate::settings::{Force, UnkeyedPolicy};
use crate::status::{CheckpointStatus, Judge, status_with};
use crate::store::CheckpointStore;

mod batches;
pub(crate) mod call;
pub(crate) mod key;
pub(crate) mod lineage;
#[cfg(test)]
mod tests;

pub use batches::Batches;

/// The store a [`Pipeline`] runs over when none is named: [`AnyStore`](crate::AnyStore), which
/// holds the DuckDB file, the shared store `USHER_STORE` names, or a
/// [`MemoryStore`](crate::MemoryStore). The same type with every feature set, so code naming
/// `Pipeline` compiles whichever stores a build has.
pub type DefaultStore = crate::store::any::AnyStore;

/// The context of a pipeline run: the store, the provenance tracker, the config and the force
/// settings. `#[checkpointed]` functions take it as `&Pipeline`; it is `Sync` (when its config
/// is), so one context serves every thread of a run.
///
/// `Pipeline` alone is this type over the [`DefaultStore`] (the DuckDB file or the shared store)
/// with the usher pipeline's [`PipelineConfig`]; `Pipeline<MemoryStore>` keeps checkpoints in
/// memory (tests, dry runs). The second parameter is the config type, any [`Config`]:
/// `Pipeline<DefaultStore, LabConfig>` runs a pipeline with settings of its own, and
/// `config(model.threshold)` in its `#[checkpointed]` functions is checked against `LabConfig`
/// (see [`Config`] for an example).
///
/// [`MemoryStore`]: crate::MemoryStore
pub struct Pipeline<S = DefaultStore, C = PipelineConfig> {
    store: S,
    provenance: ProvenanceTracker,
    config: Option<C>,
    force: Force,
    unkeyed: UnkeyedPolicy,
    /// How many versions of each table to keep, unless its function says (`keep = N`).
    keep: usize,
    /// Forced tables already recomputed by this pipeline.
    forced_done: Mutex<HashSet<String>>,
    /// When the pipeline was made (UTC, by its clock): a forced table whose keyed checkpoint
    /// was saved since counts as recomputed for this run.
    started_at: NaiveDateTime,
    /// One lock per table, so two calls (threads, or `async` calls awaited together) asking
    /// for the same missing table run its body once.
    table_locks: Mutex<HashMap<String, Arc<async_lock::Mutex<()>>>>,
    /// What time it is, for `max_age` (the system clock unless a test sets one).
    clock: Option<Clock>,
    /// Where long work reports its progress, if anywhere.
    progress: Option<Arc<dyn Progress>>,
}

/// A clock for [`Pipeline::with_clock`]: the current time in UTC.
pub type Clock = Arc<dyn Fn() -> NaiveDateTime + Send + Sync>;

impl<S, C> Pipeline<S, C> {
    /// Sends `event` to the pipeline's [`Progress`], if it has one.
    pub(crate) fn report(&self, event: ProgressEvent<'_>) {
        if let Some(progress) = &self.progress {
            progress.report(event);
        }
    }
}

impl<S, C> std::fmt::Debug for Pipeline<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("provenance", &self.provenance)
            .field("force", &self.force)
            .field("unkeyed", &self.unkeyed)
            .finish_non_exhaustive()
    }
}

/// `new` is for the default config type only, as `HashMap::new` is for the default hasher: a
/// call names no config, so its type must not be left for the caller to annotate.
impl<S: CheckpointStore> Pipeline<S> {
    /// A context over `store` recording into `provenance`, with no config, nothing forced and
    /// unkeyed checkpoints refused. The environment is not read (see [`with_env`](Self::with_env)).
    ///
    /// `store` is anything that converts into the pipeline's store: for `Pipeline` (over
    /// [`AnyStore`](crate::AnyStore)), a `PipelineStore`, `SharedStore` or [`MemoryStore`](crate::MemoryStore)
    /// as it is.
    pub fn new(store: impl Into<S>, provenance: ProvenanceTracker) -> Self {
        Self::with_parts(store.into(), provenance, None)
    }
}

impl<S: CheckpointStore, C> Pipeline<S, C> {
    /// A context over `store` recording into `provenance`, with `config` (if any), nothing
    /// forced and unkeyed checkpoints refused.
    fn with_parts(store: S, provenance: ProvenanceTracker, config: Option<C>) -> Self {
        Self {
            store,
            provenance,
            config,
            force: Force::None,
            unkeyed: UnkeyedPolicy::default(),
            keep: DEFAULT_KEEP,
            forced_done: Mutex::new(HashSet::new()),
            started_at: chrono::Utc::now().naive_utc(),
            table_locks: Mutex::new(HashMap::new()),
            clock: None,
            progress: None,
        }
    }

    /// A context over `store` (anything that converts into the pipeline's store, as for
    /// [`new`](Pipeline::new)) for a run of `config`, of any [`Config`] type: a provenance
    /// tracker for it (its hash and data-source versions, this library's version), the config
    /// kept for `config(...)` fields, and the command-line settings of the environment
    /// ([`FORCE_ENV`](crate::FORCE_ENV), [`UNKEYED_ENV`](crate::UNKEYED_ENV)) applied. `Pipeline::from_config` opens the store a
    /// [`PipelineConfig`] names.
    ///
    /// # Panics
    /// When the config cannot be written as JSON (see [`Config::canonical_json`]).
    pub fn with_config(store: impl Into<S>, config: &C) -> Result<Self>
    where
        C: Config + Clone,
    {
        let provenance = ProvenanceTracker::from_config(config, None);
        Self::with_parts(store.into(), provenance, Some(config.clone())).with_env()
    }

    /// Sets which tables to recompute.
    pub fn with_force(mut self, force: Force) -> Self {
        self.force = force;
        self
    }

    /// Sets what to do with checkpoints that have no key.
    pub fn with_unkeyed(mut self, policy: UnkeyedPolicy) -> Self {
        self.unkeyed = policy;
        self
    }

    /// Sets how many versions of each checkpoint table to keep (default [`DEFAULT_KEEP`]): the
    /// current one and `keep - 1` earlier ones, which a call whose key and inputs match one of
    /// them again restores instead of computing. `1` keeps none (`0` counts as 1). A function's
    /// `#[checkpointed(keep = N)]` has the last word.
    pub fn with_keep(mut self, keep: usize) -> Self {
        self.keep = keep.max(1);
        self
    }

    /// Sets the clock of the run (UTC), instead of the system's: saves are stamped by it, and
    /// ages, `max_age` and what counts as recomputed in this run are measured by it (for tests of
    /// expiry that do not sleep). A shared store's saves are stamped by the saving worker's
    /// pipeline clock too.
    pub fn with_clock(mut self, clock: impl Fn() -> NaiveDateTime + Send + Sync + 'static) -> Self {
        // One clock: the run starts, and its saves are stamped, by this clock too.
        self.started_at = clock();
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Reports long work (resumable loops, large saves and loads) to `progress`; without it,
    /// nothing is reported.
    pub fn with_progress(mut self, progress: impl Progress + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }

    /// Runs `transfer` (a save or load of `rows` rows of `table`), announced to the progress
    /// display when it is large.
    fn transferring<T>(
        &self,
        event: ProgressEvent<'_>,
        rows: usize,
        table: &str,
        transfer: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        if rows < PROGRESS_MIN_ROWS || self.progress.is_none() {
            return transfer();
        }
        self.report(event);
        let result = transfer();
        self.report(ProgressEvent::TransferFinished { table });
        result
    }

    /// The current time (UTC) by the pipeline's clock.
    pub fn now(&self) -> NaiveDateTime {
        match &self.clock {
            Some(clock) => clock(),
            None => chrono::Utc::now().naive_utc(),
        }
    }

    /// Applies [`FORCE_ENV`](crate::FORCE_ENV) and [`UNKEYED_ENV`](crate::UNKEYED_ENV) when they are set (see [`Settings::from_env`]);
    /// a value that cannot be parsed is an [`Error::Setting`](crate::Error::Setting) naming the variable.
    pub fn with_env(self) -> Result<Self> {
        Ok(self.with_settings(&Settings::from_env()?))
    }

    /// Applies the run's [`Settings`] that concern calls: which tables to force, what to do
    /// with unkeyed checkpoints, how many versions to keep. (The store settings are for opening a store: see
    /// [`AnyStore::open`](crate::AnyStore::open).)
    pub fn with_settings(mut self, settings: &Settings) -> Self {
        self.force = settings.force.clone();
        self.unkeyed = settings.unkeyed;
        self.keep = settings.keep.unwrap_or(DEFAULT_KEEP).max(1);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The provenance tracker every checkpointed call records into.
    pub fn provenance(&self) -> &ProvenanceTracker {
        &self.provenance
    }

    /// The config, when the pipeline was made from one.
    pub fn config(&self) -> Option<&C> {
        self.config.as_ref()
    }

    /// The force setting.
    pub fn force(&self) -> &Force {
        &self.force
    }

    /// The unkeyed-checkpoint policy.
    pub fn unkeyed_policy(&self) -> UnkeyedPolicy {
        self.unkeyed
    }

    /// How many versions of each checkpoint table are kept, unless a function says otherwise.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Appends this run's provenance to the store's `_provenance` table.
    pub fn save_provenance(&self) -> Result<()> {
        self.provenance.save_to_store(&self.store)
    }

    /// The lock of `table`, created on first use.
    pub(crate) fn table_lock(&self, table: &str) -> Arc<async_lock::Mutex<()>> {
        let mut locks = self
            .table_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(locks.entry(table.to_owned()).or_default())
    }

    /// This pipeline's identity for [`lineage`]: its address, fixed while a call borrows it.
    pub(crate) fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// Every checkpoint of the store with what its next call would do, by the pipeline's clock
    /// and with this run's forced tables (see [`status`](crate::status)): what was made from a
    /// forced table that this run has not recomputed yet is stale.
    pub fn status(&self) -> Result<Vec<CheckpointStatus>> {
        let forced = |info: &CheckpointInfo| self.forced_now(info);
        status_with(Judge::forcing(&self.store, self.now(), &forced))
    }
}

/// The run of a config, on the store the config and the settings name.
#[cfg(feature = "duckdb")]
impl Pipeline<crate::store::any::AnyStore> {
    /// Opens the store of `config` (the shared store [`STORE_ENV`](crate::STORE_ENV) names, or
    /// else the DuckDB file at `config.duckdb_path`; see
    /// [`AnyStore::from_config`](crate::AnyStore::from_config)), starts a provenance tracker for
    /// the config and applies the command-line settings of the environment ([`FORCE_ENV`](crate::FORCE_ENV),
    /// [`UNKEYED_ENV`](crate::UNKEYED_ENV)): [`open`](Self::open) with [`Settings::from_env`].
    pub fn from_config(config: &PipelineConfig) -> Result<Self> {
        Self::open(config, &Settings::from_env()?)
    }

    /// [`from_config`](Self::from_config) with `settings` given in code instead of read from
    /// the environment (which is not read at all): the store they name, the tables they force,
    /// the unkeyed policy.
    pub fn open(config: &PipelineConfig, settings: &Settings) -> Result<Self> {
        let store = crate::store::any::AnyStore::open(config, settings)?;
        let provenance = ProvenanceTracker::from_config(config, None);
        Ok(Self::with_parts(store, provenance, Some(config.clone())).with_settings(settings))
    }
}

/// A value that lends the [`Pipeline`] of a `#[checkpointed]` function: `Pipeline` itself, or
/// an application's own context that holds one (name its parameter with `context = ...`).
///
/// ```
/// use usher_pipeline::{MemoryStore, Pipeline, PipelineConfig, PipelineContext};
///
/// /// An application's context: the pipeline and what else its steps need.
/// struct App {
///     pipeline: Pipeline<MemoryStore>,
///     api_token: String,
/// }
///
/// impl PipelineContext for App {
///     type Store = MemoryStore;
///     type Config = PipelineConfig;
///     fn pipeline(&self) -> &Pipeline<MemoryStore> {
///         &self.pipeline
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a pipeline context",
    label = "the pipeline context of this `#[checkpointed]` function",
    note = "take `&Pipeline`, or implement `usher_pipeline::PipelineContext` for `{Self}` to lend the `Pipeline` it holds"
)]
pub trait PipelineContext {
    /// The store of the pipeline.
    type Store: CheckpointStore;
    /// The config type of the pipeline ([`PipelineConfig`] for `Pipeline<S>`): the type
    /// `config(a.b)` fields are read from and checked against.
    type Config;
    /// The pipeline.
    fn pipeline(&self) -> &Pipeline<Self::Store, Self::Config>;
}

impl<S: CheckpointStore, C> PipelineContext for Pipeline<S, C> {
    type Store = S;
    type Config = C;
    fn pipeline(&self) -> &Pipeline<S, C> {
        self
    }
}
