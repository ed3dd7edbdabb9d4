//! The table-name rule at run time: `usher-pipeline-names`' rule (the one `#[checkpointed]`
//! applies at compile time) with its problems as [`Error`]s.

pub use usher_pipeline_names::NameProblem;

use crate::error::{Error, Result};

fn refused(name: &str, problem: NameProblem) -> Error {
    match problem {
        NameProblem::Reserved => Error::ReservedTableName {
            name: name.to_owned(),
        },
        problem => Error::InvalidTableName {
            name: name.to_owned(),
            problem,
        },
    }
}

/// Checks that `name` is a plain identifier that can be read: ASCII letters, digits and `_`,
/// not starting with a digit, at most 128 bytes.
pub fn validate_table_name(name: &str) -> Result<()> {
    usher_pipeline_names::check_readable(name).map_err(|p| refused(name, p))
}

/// Checks that `name` may be written: a plain identifier, lowercase (DuckDB's catalog is
/// case-insensitive while `_checkpoints` is not, so `Genes` and `genes` would be one table with
/// two checkpoints), and not reserved (names beginning with `_` are the store's own tables).
pub fn validate_writable_table_name(name: &str) -> Result<()> {
    usher_pipeline_names::check_writable(name).map_err(|p| refused(name, p))
}
