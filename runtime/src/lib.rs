//! DuckDB runtime of [usher-pipeline](https://docs.rs/usher-pipeline): the file-backed
//! [`PipelineStore`], which implements the core's
//! [`CheckpointStore`](usher_pipeline_core::CheckpointStore).
//!
//! Users depend on the `usher-pipeline` facade crate, which re-exports everything here.
//! All on-disk formats (`_checkpoints`, `_provenance`) are the Python pipeline's, so stores
//! move freely between the two; `_checkpoint_keys` is this crate's addition, which the Python
//! code neither reads nor breaks.

#![warn(missing_docs)]

mod ffi;
mod meta;
mod store;

pub use ffi::{Param, duckdb_version};
pub use store::{
    CheckpointInfo, DEFAULT_STORAGE_COMPATIBILITY, PipelineStore, SaveMode, StoreOptions,
};
