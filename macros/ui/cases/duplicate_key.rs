// `table` given twice: the second is reported, not silently preferred.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(table = "gnomad_constraint", table = "gnomad")]
fn fetch(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
