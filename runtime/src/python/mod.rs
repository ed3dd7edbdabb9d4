//! The Python pipeline's formats, reproduced byte for byte: JSON as `json.dumps` writes it
//! (config hash, provenance rows and sidecars, checkpoint keys) and YAML scalars as PyYAML
//! reads them (the config), paths as `str(PurePosixPath(...))` and times as
//! `datetime.isoformat()` write them. For code that must write what the Python pipeline
//! writes; the library's own formats use them already.

pub mod json;
pub(crate) mod yaml;

pub use crate::config::python_path_str as path_str;
pub use crate::provenance::python_isoformat as isoformat;
