// A misspelt config field in `config(...)`: a compile error at that field, with the fields
// that exist.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(table = "gnomad_constraint", config(versions.gnomad_versoin))]
fn fetch(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
