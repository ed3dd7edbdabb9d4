// `context = app` names a parameter whose type lends no Pipeline: said at that type.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error};

struct App;

#[checkpointed(table = "gnomad_constraint", context = app)]
fn fetch(app: &App) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
