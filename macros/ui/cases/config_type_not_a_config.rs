// A pipeline made with a config type that does not implement `usher_pipeline::Config`: said at
// the config, with the one line that makes a serialisable type one.
use usher_pipeline::{MemoryStore, Pipeline};

#[derive(Clone)]
struct LabConfig {
    threshold: f64,
}

fn main() {
    let config = LabConfig { threshold: 0.8 };
    let _pipeline = Pipeline::with_config(MemoryStore::new(), &config);
    let _ = config.threshold;
}
