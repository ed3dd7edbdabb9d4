// A key parameter whose type is not Serialize: named at the parameter's type, with `skip` offered.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

struct Client;

#[checkpointed(table = "gnomad_constraint")]
fn fetch(ctx: &Pipeline, client: &Client) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
