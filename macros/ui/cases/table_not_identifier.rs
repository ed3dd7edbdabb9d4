// A table name that is not a plain lowercase identifier, refused by the stores' own rule.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(table = "gnomad-constraint")]
fn fetch(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
