//! # usher-pipeline
//!
//! Restartable, traceable data-pipeline steps: polars frames checkpointed in a file-backed
//! DuckDB store, provenance for every output, and a validated YAML config whose hash names the
//! settings that made it. The on-disk formats are the Python usher pipeline's, so a store
//! written by either opens in the other.
//!
//! ```no_run
//! use usher_pipeline::{PipelineConfig, PipelineStore, ProvenanceTracker};
//! use usher_pipeline::polars::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PipelineConfig::load("config/default.yaml")?;
//! let store = PipelineStore::from_config(&config)?;
//! let provenance = ProvenanceTracker::from_config(&config, None);
//!
//! if !store.has_checkpoint("gnomad_constraint")? {
//!     let frame = df!("gene_id" => ["ENSG00000042781"], "loeuf" => [0.31])?;
//!     store.save_dataframe("gnomad_constraint", &frame, "gnomAD v4.1 constraint")?;
//!     provenance.record_step("fetch_gnomad_constraint", None);
//! }
//! let constraint = store.load_dataframe("gnomad_constraint")?.expect("saved above");
//! store.export_parquet("gnomad_constraint", "out/gnomad_constraint.parquet")?;
//! provenance.save_sidecar("out/gnomad_constraint.parquet")?;
//! # Ok(()) }
//! ```

pub use usher_pipeline_core::*;
pub use usher_pipeline_runtime::*;

/// The context of a pipeline run over the DuckDB [`PipelineStore`]: what `#[checkpointed]`
/// functions take as `&Pipeline`. See [`usher_pipeline_core::Pipeline`] for its methods.
pub type Pipeline = usher_pipeline_core::Pipeline<PipelineStore>;
