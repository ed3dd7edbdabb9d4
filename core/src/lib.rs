//! DuckDB-free core of [usher-pipeline](https://docs.rs/usher-pipeline): the checkpoint logic
//! behind `#[checkpointed]` (generic over a [`CheckpointStore`]), the [`Pipeline`] context, the
//! [`ProvenanceTracker`] and the validated [`PipelineConfig`].
//!
//! Users depend on the `usher-pipeline` facade crate, which re-exports everything here and adds
//! the DuckDB `PipelineStore`. This crate exists so that code that only needs the model (and
//! the attribute's compile-fail tests) builds without DuckDB's C++.

#![warn(missing_docs)]

mod batches;
mod checkpoint;
mod config;
mod error;
mod memory;
mod names;
mod pipeline;
mod provenance;
pub mod pyjson;
mod yaml;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use batches::Batches;
pub use checkpoint::{
    Checkpoint, CheckpointKey, CheckpointStore, FetchError, FetchResult, KeyArg, ProvenanceRecord,
    StoredCheckpoint,
};
pub use config::{ApiConfig, DataSourceVersions, PipelineConfig, ScoringWeights, python_path_str};
pub use error::{ConfigError, Error, Problem, ProblemKind, Result};
pub use memory::MemoryStore;
pub use names::{validate_table_name, validate_writable_table_name};
pub use pipeline::{FORCE_ENV, Force, Pipeline, PipelineContext, UNKEYED_ENV, UnkeyedPolicy};
pub use provenance::{
    ProvenanceMetadata, ProvenanceStep, ProvenanceTracker, python_isoformat, sidecar_path,
};
pub use usher_pipeline_macros::checkpointed;

/// The polars version this crate is built against, re-exported so users name the same
/// `DataFrame` type.
pub use polars;
