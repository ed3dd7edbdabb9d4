// A pipeline made with a config type that does not implement `usher_pipeline::Config`: said at
// the config, with the one line that makes a serialisable type one.
use usher_pipeline::{Error, MemoryStore, Pipeline};

#[derive(Clone)]
struct LabConfig {
    threshold: f64,
}

fn main() -> Result<(), Error> {
    let config = LabConfig { threshold: 0.8 };
    let pipeline: Pipeline<MemoryStore, LabConfig> =
        Pipeline::with_config(MemoryStore::new(), &config)?;
    assert_eq!(pipeline.config().map(|c| c.threshold), Some(0.8));
    Ok(())
}
