// `max_age` is a whole number of days or hours; anything else is reported at the literal.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(table = "pubmed_counts", max_age = "30 days")]
fn fetch_pubmed(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

#[checkpointed(table = "ensembl_genes", max_age = "0d")]
fn fetch_ensembl(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(DataFrame::empty())
}

fn main() {}
