//! Runtime of [usher-pipeline](https://docs.rs/usher-pipeline): the DuckDB-backed
//! [`PipelineStore`], the [`ProvenanceTracker`] and the validated [`PipelineConfig`].
//!
//! Users depend on the `usher-pipeline` facade crate, which re-exports everything here.
//! All on-disk formats (`_checkpoints`, `_provenance`, `*.provenance.json`, `config_hash`)
//! are the Python pipeline's, so stores and sidecars move freely between the two.

#![warn(missing_docs)]

mod config;
mod error;
mod ffi;
mod provenance;
pub mod pyjson;
mod store;
mod yaml;

pub use config::{ApiConfig, DataSourceVersions, PipelineConfig, ScoringWeights, python_path_str};
pub use error::{ConfigError, Error, Problem, ProblemKind, Result};
pub use ffi::{Param, duckdb_version};
pub use provenance::{
    ProvenanceMetadata, ProvenanceStep, ProvenanceTracker, python_isoformat, sidecar_path,
};
pub use store::{
    CheckpointInfo, DEFAULT_STORAGE_COMPATIBILITY, PipelineStore, SaveMode, StoreOptions,
};

/// The polars version this crate is built against, re-exported so users name the same
/// `DataFrame` type.
pub use polars;
