// A `check` must be a `fn(&DataFrame) -> Result<(), E>`: one that returns a count is reported
// at its path, in a sentence.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

fn count_rows(frame: &DataFrame) -> usize {
    frame.height()
}

#[checkpointed(table = "hpa_expression", check = count_rows)]
fn fetch(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
