// `self` would silently become part of the key: it must be skipped.
use usher_pipeline::polars::prelude::DataFrame;
use usher_pipeline::{checkpointed, Error, Pipeline};

struct Fetcher;

impl Fetcher {
    #[checkpointed(table = "gnomad_constraint")]
    fn fetch(&self, ctx: &Pipeline) -> Result<DataFrame, Error> {
        Ok(DataFrame::empty())
    }
}

fn main() {}
