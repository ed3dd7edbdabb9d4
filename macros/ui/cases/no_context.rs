// No pipeline-context parameter at all: said at the parameter list.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error};

#[checkpointed(table = "gnomad_constraint")]
fn fetch(min_depth: u32) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
