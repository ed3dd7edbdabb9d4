// The attribute on something that is not a function.
use usher_pipeline::checkpointed;

#[checkpointed(table = "gnomad_constraint")]
struct Fetch;

fn main() {}
