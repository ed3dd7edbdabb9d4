// `keep` is how many versions to keep, a whole number of at least 1; anything else is reported
// at the value.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(table = "gnomad_constraint", keep = 0)]
fn fetch_constraint(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

#[checkpointed(table = "go_annotation", keep = "5")]
fn fetch_annotation(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
