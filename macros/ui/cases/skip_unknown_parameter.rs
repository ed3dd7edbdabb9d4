// `skip` names a parameter that does not exist (a typo would otherwise key on `client`).
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(table = "gnomad_constraint", skip(clinet))]
fn fetch(ctx: &Pipeline, client: &str) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
