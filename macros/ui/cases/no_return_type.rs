// A function returning nothing cannot produce a checkpoint.
use usher_pipeline::{checkpointed, Pipeline};

#[checkpointed(table = "gnomad_constraint")]
fn fetch(ctx: &Pipeline) {}

fn main() {}
