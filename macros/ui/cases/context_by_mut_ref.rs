// The context is taken by `&mut`: the error says to take it by shared reference, at its type.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(table = "gnomad_constraint")]
fn fetch(ctx: &mut Pipeline, min_depth: u32) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
