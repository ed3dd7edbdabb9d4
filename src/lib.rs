//! # usher-pipeline
//!
//! Restartable, traceable data-pipeline steps: polars frames checkpointed in a file-backed
//! DuckDB store, provenance for every output, and a validated YAML config whose hash names the
//! settings that made it. The on-disk formats are the Python usher pipeline's, so a store
//! written by either opens in the other.
//!
//! ```no_run
//! use usher_pipeline::polars::prelude::*;
//! use usher_pipeline::{checkpointed, Pipeline, PipelineConfig};
//!
//! /// gnomAD constraint of the genes covered at `min_depth` or more. A valid checkpoint of
//! /// this table, made with the same `min_depth` and code, skips the body.
//! #[checkpointed(table = "gnomad_constraint")]
//! fn fetch_constraint(ctx: &Pipeline, min_depth: u32) -> Result<DataFrame, usher_pipeline::Error> {
//!     Ok(df!("gene_id" => ["ENSG00000042781"], "loeuf" => [0.31])?) // hours of downloads
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PipelineConfig::load("config/default.yaml")?;
//! let pipeline = Pipeline::from_config(&config)?; // store, provenance, USHER_FORCE
//! let constraint = fetch_constraint(&pipeline, 30)?;
//! pipeline.store().export_parquet("gnomad_constraint", "out/gnomad_constraint.parquet")?;
//! pipeline.provenance().save_sidecar("out/gnomad_constraint.parquet")?;
//! pipeline.save_provenance()?;
//! # Ok(()) }
//! ```
//!
//! See [`checkpointed`] for what a call does (hit, miss, stale, force, unkeyed checkpoints),
//! [`Batches`] for loops that resume after a kill, and [`PipelineStore`] for the store used by
//! hand.

#![warn(missing_docs)]

pub use usher_pipeline_core::*;
pub use usher_pipeline_runtime::*;

/// The context of a pipeline run over the DuckDB [`PipelineStore`]: what `#[checkpointed]`
/// functions take as `&Pipeline`. See [`usher_pipeline_core::Pipeline`] for its methods.
pub type Pipeline = usher_pipeline_core::Pipeline<PipelineStore>;
