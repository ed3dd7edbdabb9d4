// A misspelt field of a pipeline's own config type (not usher's `PipelineConfig`) in
// `config(...)`: a compile error at that field, with the fields the user's type has.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, MemoryStore, Pipeline};

struct LabConfig {
    model: Model,
}

struct Model {
    threshold: f64,
}

#[checkpointed(table = "variant_hits", config(model.treshold))]
fn fetch(ctx: &Pipeline<MemoryStore, LabConfig>) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
