// A value that is not a DataFrame cannot be saved as a checkpoint.
use usher_pipeline::{checkpointed, Error, Pipeline};

#[checkpointed(table = "gnomad_constraint")]
fn fetch(ctx: &Pipeline) -> Result<Vec<String>, Error> {
    Ok(Vec::new())
}

fn main() {}
