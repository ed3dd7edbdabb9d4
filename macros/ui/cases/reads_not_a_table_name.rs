// `reads(...)` takes table names as identifiers: a string, a path and the function's own
// table are each reported at their token.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(table = "scores", reads("gnomad_constraint", go.annotation, scores))]
fn score(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
