// A bare DataFrame return: the error type is needed to carry the store's failures.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Pipeline};

#[checkpointed(table = "gnomad_constraint")]
fn fetch(ctx: &Pipeline) -> DataFrame {
    DataFrame::empty()
}

fn main() {}
