// `table` given as a path rather than a string literal.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(table = gnomad_constraint)]
fn fetch(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
