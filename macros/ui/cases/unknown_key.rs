// A misspelt argument: reported with the nearest valid one.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(tabel = "gnomad_constraint")]
fn fetch(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
