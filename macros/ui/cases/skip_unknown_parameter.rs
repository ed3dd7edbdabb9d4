use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(table = "gnomad_constraint", skip(clinet))]
fn fetch(ctx: &Pipeline, client: &str) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
