//! The README's quickstart, compiled: `tests/it/readme.rs` checks that the README's first code
//! block is this file (below this header). Run it with `cargo run --example quickstart`.

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{CheckpointStore, Pipeline, PipelineConfig, checkpointed};

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Store(#[from] usher_pipeline::Error), // store failures arrive through your error type
    #[error("gnomAD: {0}")]
    Gnomad(String),
}

/// Stands in for an HTTP client of gnomAD.
struct Client;

impl Client {
    fn constraint(&self, min_depth: u32) -> Result<DataFrame, FetchError> {
        df!("gene" => ["USH2A", "MYO7A"], "loeuf" => [0.31, 0.12], "min_depth" => [min_depth; 2])
            .map_err(|e| FetchError::Gnomad(e.to_string()))
    }
}

/// `min_depth` is part of the checkpoint key; `client` is not.
#[checkpointed(table = "gnomad_constraint", skip(client))]
fn fetch_gnomad_constraint(
    ctx: &Pipeline,
    min_depth: u32,
    client: &Client,
) -> Result<DataFrame, FetchError> {
    client.constraint(min_depth) // hours of downloads, run only when needed
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = PipelineConfig::load("examples/default.yaml")?; // dirs created, typed errors
    let pipeline = Pipeline::from_config(&config)?; // its DuckDB file; USHER_FORCE, USHER_UNKEYED
    let constraint = fetch_gnomad_constraint(&pipeline, 30, &Client)?; // a hit the second time
    println!("{constraint}");
    let out = std::path::Path::new("out/constraint.parquet");
    pipeline.store().export_parquet("gnomad_constraint", out)?;
    pipeline.provenance().save_sidecar(out)?; // out/constraint.provenance.json
    pipeline.save_provenance()?; // a _provenance row
    Ok(())
}
