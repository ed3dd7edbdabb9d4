//! A pipeline's config: what the generic core asks of any config type, and the usher
//! pipeline's own schema.

mod usher;

pub use usher::{ApiConfig, DataSourceVersions, PipelineConfig, ScoringWeights, python_path_str};
