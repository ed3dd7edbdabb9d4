// No `table`: the checkpoint has nowhere to go.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(version = "1")]
fn fetch(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
