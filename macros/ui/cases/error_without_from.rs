// An error type that cannot carry the store's errors: said at the return type, with the `From` to add.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Pipeline};

#[derive(Debug)]
enum FetchError {
    Http(u16),
}

#[checkpointed(table = "gnomad_constraint")]
fn fetch(ctx: &Pipeline) -> Result<DataFrame, FetchError> {
    Err(FetchError::Http(503))
}

fn main() {}
