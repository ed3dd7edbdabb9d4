//! # usher-pipeline
//!
//! Restartable, traceable data-pipeline steps: polars frames checkpointed in a file-backed
//! DuckDB store, provenance for every output, and a validated YAML config whose hash names the
//! settings that made it. The on-disk formats are the Python usher pipeline's, so a store
//! written by either opens in the other.
//!
// The example opens the DuckDB store: compiled only with the `duckdb` feature.
#![cfg_attr(feature = "duckdb", doc = "```no_run")]
#![cfg_attr(not(feature = "duckdb"), doc = "```ignore")]
//! use usher_pipeline::polars::prelude::*;
//! use usher_pipeline::{checkpointed, CheckpointStore, Pipeline, PipelineConfig};
//!
//! /// gnomAD constraint of the genes covered at `min_depth` or more. A valid checkpoint of
//! /// this table, made with the same `min_depth` and code, skips the body.
//! #[checkpointed(table = "gnomad_constraint")]
//! fn fetch_constraint(ctx: &Pipeline, min_depth: u32) -> Result<DataFrame, usher_pipeline::Error> {
//!     Ok(df!("gene_id" => ["ENSG00000042781"], "loeuf" => [0.31])?) // hours of downloads
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PipelineConfig::load("examples/default.yaml")?;
//! let pipeline = Pipeline::from_config(&config)?; // store, provenance, USHER_FORCE
//! let constraint = fetch_constraint(&pipeline, 30)?;
//! let out = std::path::Path::new("out/gnomad_constraint.parquet");
//! pipeline.store().export_parquet("gnomad_constraint", out)?; // a CheckpointStore method
//! pipeline.provenance().save_sidecar(out)?;
//! pipeline.save_provenance()?;
//! # Ok(()) }
//! ```
//!
//! See [`checkpointed`] for what a call does (hit, miss, stale, force, unkeyed checkpoints),
//! [`Batches`] for loops that resume after a kill, and [`PipelineStore`] for the store used by
//! hand.
//!
//! The user's guide is the [`manual`], one chapter per module: what a call does, lineage,
//! choosing a store, several machines on one store, the command line, the formats shared with
//! the Python pipeline, benchmarks and known limits.
//!
//! # Features
//! Each adds, none changes what another gives ([`DefaultStore`] is [`AnyStore`] in every build):
//! - `duckdb` (default): the file-backed [`PipelineStore`], built from DuckDB's C++ sources.
//!   Without it, a [`Pipeline`] runs over a [`MemoryStore`] (or a store of your own).
//! - `postgres`: the shared store (`SharedStore`): catalog and locks on PostgreSQL, Parquet
//!   files on storage every worker mounts.
//! - `cli`: the `usher-pipeline` command line.
//! - `test-util`: the store conformance suite (`usher_pipeline::conformance`), for a backend of your own.

#![warn(missing_docs)]
// On docs.rs: every item behind a feature says which (`duckdb`, `postgres`, `test-util`).
#![cfg_attr(docsrs, feature(doc_cfg))]
// The unsafe fence as a check: DuckDB's C API and the Arrow C Data Interface are reached in
// `store/duckdb/ffi/` only (allowed there), and every unsafe block says why it is sound.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

// The attribute's expansion names `::usher_pipeline::__private`; this makes the path resolve in
// the crate's own tests too.
extern crate self as usher_pipeline;

mod atomic_file;
mod bounds;
pub mod checks;
mod config;
mod error;
mod fingerprint;
mod graph;
pub mod manual;
mod model;
mod names;
mod pipeline;
pub mod progress;
mod provenance;
pub mod python;
mod settings;
mod status;
mod store;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use config::{ApiConfig, Config, DataSourceVersions, PipelineConfig, ScoringWeights};
pub use error::{ConfigError, DuckdbErrorKind, Error, Problem, ProblemKind, Result};
pub use fingerprint::{DataVersion, data_version};
pub use graph::LineageGraph;
pub use model::{
    CheckpointInfo, CheckpointKey, CheckpointVersion, HistoryVersion, Lineage, ProvenanceRecord,
};
pub use names::{NameProblem, validate_table_name, validate_writable_table_name};
pub use pipeline::{Batches, Clock, DefaultStore, Pipeline, PipelineContext};
pub use progress::{PROGRESS_MIN_ROWS, Progress, ProgressEvent};
pub use provenance::{
    ProvenanceMetadata, ProvenanceStep, ProvenanceTracker, save_sidecar, sidecar_path,
};
pub use settings::{
    DATA_ROOT_ENV, DEFAULT_KEEP, FORCE_ENV, Force, KEEP_ENV, STORE_CONNECTIONS_ENV, STORE_ENV,
    STORE_WAIT_ENV, Settings, UNKEYED_ENV, UnkeyedPolicy,
};
pub use status::{CheckpointState, CheckpointStatus, StaleReason, status, version_staleness};
pub use store::any::AnyStore;
/// The behaviour every store must show, as test cases a new backend runs against itself
/// (`test-util` feature).
#[cfg(any(test, feature = "test-util"))]
pub use store::conformance;
#[cfg(feature = "duckdb")]
pub use store::duckdb::{
    DEFAULT_STORAGE_COMPATIBILITY, GcReport, PipelineStore, SCHEMA_VERSION, SaveMode, StoreOptions,
    duckdb_version,
};
pub use store::memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use store::shared::{
    CATALOG_SCHEMA_VERSION, DEFAULT_CONNECTIONS, ExpiredSnapshots, RECONNECT_LIMIT, SharedGcReport,
    SharedStore, SharedStoreOptions,
};
pub use store::{
    CheckpointStore, JudgedLoad, LockFuture, Param, PendingBatches, ReleaseFuture, TableLock,
};
/// Makes an expensive fetch function restartable and traced.
///
/// ```no_run
/// use usher_pipeline::polars::prelude::*;
/// use usher_pipeline::{checkpointed, Pipeline};
///
/// #[derive(Debug)]
/// enum FetchError {
///     Store(usher_pipeline::Error),
///     Http(String),
/// }
/// impl From<usher_pipeline::Error> for FetchError {
///     fn from(e: usher_pipeline::Error) -> Self {
///         FetchError::Store(e)
///     }
/// }
/// # struct Client;
/// # impl Client {
/// #     fn constraint(&self, min_depth: u32) -> Result<DataFrame, FetchError> {
/// #         df!("gene" => ["USH2A"], "min_depth" => [min_depth]).map_err(|e| FetchError::Http(e.to_string()))
/// #     }
/// # }
///
/// /// gnomAD constraint metrics for genes covered at `min_depth` or more.
/// #[checkpointed(table = "gnomad_constraint", skip(client))]
/// pub fn fetch_constraint(
///     ctx: &Pipeline,
///     min_depth: u32,
///     client: &Client,
/// ) -> Result<DataFrame, FetchError> {
///     client.constraint(min_depth) // hours of downloads
/// }
/// ```
///
/// Each call decides, before the body runs:
/// - **hit**: the store holds a checkpoint of `table` made by this function, with this code and
///   these key arguments, from inputs whose stored versions have not changed since: the body is
///   skipped and the table is loaded;
/// - **miss**: no checkpoint: the body runs, and its frame is saved as `table` with its
///   `_checkpoints` row, key and lineage (one transaction);
/// - **restored**: the current checkpoint would be stale, but an earlier version the store
///   kept (see `keep`) would be a hit: made current again as it was (its data version too, so
///   what was made from it matches it again), without running the body; the step names the
///   version (`restored_version`);
/// - **stale**: a checkpoint made from other arguments, other code or other config fields, from
///   an input that changed since, or older than its `max_age`: recomputed and replaced; the
///   reason names what changed (`argument `min_depth` changed (20 -> 30)`,
///   `input `gnomad_constraint` changed (data 3f2a1b2c4d5e -> data 9c1d0e7a6b5f)`);
/// - **force**: the table is forced ([`Force`], or `USHER_FORCE=all` / `USHER_FORCE=t1,t2`):
///   recomputed once per run (a checkpoint saved since the `Pipeline` was made, by this run or
///   by another worker of a shared store, counts);
/// - a checkpoint **without a key** (written by the Python pipeline or by hand): refused by
///   default, with a message saying how to choose `USHER_UNKEYED=adopt` or `recompute`
///   ([`UnkeyedPolicy`]).
///
/// Every outcome is a provenance step (table, outcome, reason, rows, duration, key, arguments,
/// code, data version, inputs) and a `tracing` event. The body's own error is returned
/// untouched and nothing is saved; store failures reach the caller through
/// `E: From<usher_pipeline::Error>`.
///
/// # Arguments
/// - `table = "name"` (required): the checkpoint's table, a lowercase identifier not starting
///   with `_`.
/// - `skip(a, b)`: parameters left out of the key (clients, caches, progress bars; `self`).
/// - `version = "..."`: pins the code part of the key. Without it, the key covers a hash of
///   the function's tokens, so any edit to the function recomputes.
/// - `context = name`: the pipeline-context parameter, when it is not a `&Pipeline` (its type
///   implements [`PipelineContext`]).
/// - `batches = name`: the body gets the call's resumable [`Batches`] under that name.
/// - `reads(t1, t2)`: stored tables the body reads (by SQL, say): their current data versions
///   become the checkpoint's inputs, so a change to either makes it stale. A declared table
///   without a checkpoint is [`Error::MissingInput`].
/// - `config(versions.gnomad_version, ...)`: fields of the pipeline's config in the key:
///   bumping the release in the YAML recomputes. The fields are those of the pipeline's config
///   type, [`PipelineConfig`] for `Pipeline`, your own for `Pipeline<S, YourConfig>` (see
///   [`Config`]). A misspelt field is a compile error at that field; a pipeline without a
///   config is [`Error::NoConfig`].
/// - `max_age = "30d"` (or `"12h"`): an older checkpoint is stale (the source moved on). Time
///   is the pipeline's clock ([`Pipeline::with_clock`] in tests). It also applies to a
///   checkpoint adopted with `USHER_UNKEYED=adopt`: an adopted table older than `max_age` is
///   recomputed instead.
/// - `check = path`, once per check: a `fn(&DataFrame) -> Result<(), E>` (`E: Display`) the
///   frame must pass before it is saved, such as [`checks::non_empty`]. A frame that fails is
///   [`Error::CheckFailed`] naming the table and the check, and nothing is saved, so the next
///   run fetches again.
/// - `keep = 5`: how many versions of the table the store keeps, the current one and earlier
///   ones a call restores when its key and inputs match one again (default: the pipeline's,
///   [`Pipeline::with_keep`], `USHER_KEEP`, else [`DEFAULT_KEEP`]); `keep = 1` keeps none. A
///   forced table is always computed.
///
/// Every other parameter is part of the key: a `DataFrame` or `&DataFrame` by its
/// [data version](data_version), anything else by its `serde::Serialize` JSON (sorted keys),
/// stored readable in `_checkpoint_keys` and in the provenance step. `async fn`s work the
/// same, and their future is `Send` when the body's is.
///
/// # Lineage
/// Every saved checkpoint records its frame's data version and its inputs: the declared
/// `reads(...)` and every checkpointed call made inside its body (sync, or awaited in an
/// `async` body), each with the version it returned. When an input is later recomputed to
/// *different* data, this checkpoint is stale; when it is recomputed to the *same* data (a
/// forced re-download that brings nothing new), its data version is unchanged and nothing
/// downstream recomputes.
///
/// Staleness is transitive: a checkpoint is also stale when an input is unchanged but stale
/// itself (missing or changed inputs of its own, expired, forced in this run, down the chain),
/// and the reason names the chain (``input `scores` is stale: its input `constraint`
/// changed``); the body then runs and its inner calls recompute. An input's own *arguments and
/// code* are not known from the store: an inner step whose arguments or code changed is noticed
/// when the pipeline calls that step itself, not through the outer hit. A hit loads exactly the
/// checkpoint it judged: one saved meanwhile makes the call judge again. A call inside the body
/// that is handed to another thread, a spawned task or a thread pool's job is not seen (declare
/// such inputs with `reads(...)`); a call of the table the body itself makes is
/// [`Error::Reentrant`]. `reads(...)` and `check = ...` are part of the function's code: adding
/// one recomputes once. [`status`] tells the same from the store alone, for every checkpoint.
///
/// # Expansion
/// The function keeps its signature, visibility, docs and attributes; its body is handed to
/// ordinary runtime code. The example above expands to:
///
/// ```text
/// /// gnomAD constraint metrics for genes covered at `min_depth` or more.
/// pub fn fetch_constraint(ctx: &Pipeline, min_depth: u32, client: &Client) -> Result<DataFrame, FetchError> {
///     ::usher_pipeline::__private::assert_fetch_result::<Result<DataFrame, FetchError>>();
///     let __usher_spec = ::usher_pipeline::__private::Spec {
///         table: "gnomad_constraint",
///         function: "fetch_constraint",
///         code: "tokens:73ee8f0913945698",
///         legacy_code: ::core::option::Option::Some("tokens:5d0c2b7e91a4f360"),
///         ..::usher_pipeline::__private::Spec::DEFAULT
///     };
///     let mut __usher_key = ::usher_pipeline::__private::KeyBuilder::new();
///     __usher_key.arg("min_depth", ::usher_pipeline::__private::key_arg(&min_depth));
///     ::usher_pipeline::__private::run(ctx, &__usher_spec, __usher_key, move || {
///         client.constraint(min_depth) // hours of downloads
///     })
/// }
/// ```
///
/// `reads`, `max_age` and `check` add fields to the spec; a frame parameter is
/// `__usher_key.frame("constraint", constraint)`; `config(...)` adds
/// `__usher_key.config("versions.gnomad_version", key_arg(&config.versions.gnomad_version))`.
///
/// Misuse (a missing or invalid `table`, an unknown argument, a parameter that cannot be part
/// of the key, a return type that is not `Result<DataFrame, E>`, an unknown config field, a
/// `max_age` that does not parse, a check of the wrong shape, ...) is a compile error at the
/// offending token; the cases are the `macros/ui/cases/*.rs` files of the repository.
///
/// [`Force`]: crate::Force
/// [`Batches`]: crate::Batches
/// [`Error::MissingInput`]: crate::Error::MissingInput
/// [`Error::Reentrant`]: crate::Error::Reentrant
/// [`Error::NoConfig`]: crate::Error::NoConfig
/// [`Error::CheckFailed`]: crate::Error::CheckFailed
/// [`PipelineConfig`]: crate::PipelineConfig
/// [`Config`]: crate::Config
/// [`Pipeline::with_clock`]: crate::Pipeline::with_clock
/// [`checks::non_empty`]: crate::checks::non_empty
/// [`status`]: crate::status()
/// [`UnkeyedPolicy`]: crate::UnkeyedPolicy
/// [`PipelineContext`]: crate::PipelineContext
pub use usher_pipeline_macros::checkpointed;

/// The polars version this crate is built against, re-exported so users name the same
/// `DataFrame` type.
pub use polars;
