//! The Python pipeline's formats, reproduced byte for byte: JSON as `json.dumps` writes it
//! (config hash, provenance rows and sidecars, checkpoint keys) and YAML scalars as PyYAML
//! reads them (the config).

pub mod json;
pub(crate) mod yaml;
