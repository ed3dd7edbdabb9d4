//! Table-name rules shared by every store and checked by `#[checkpointed]` at compile time.

use crate::error::{Error, Result};

const MAX_TABLE_NAME: usize = 128;

/// Checks that `name` is a plain identifier that can be read: ASCII letters, digits and `_`,
/// not starting with a digit.
pub fn validate_table_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidTableName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("the name is empty");
    }
    if name.len() > MAX_TABLE_NAME {
        return invalid("the name is longer than 128 characters");
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return invalid("a table name must start with a letter or `_`");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return invalid("a table name may contain only ASCII letters, digits and `_`");
    }
    Ok(())
}

/// Checks that `name` may be written: a plain identifier, lowercase (DuckDB's catalog is
/// case-insensitive while `_checkpoints` is not, so `Genes` and `genes` would be one table with
/// two checkpoints), and not reserved.
pub fn validate_writable_table_name(name: &str) -> Result<()> {
    validate_table_name(name)?;
    if name.starts_with('_') {
        return Err(Error::ReservedTableName {
            name: name.to_owned(),
        });
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(Error::InvalidTableName {
            name: name.to_owned(),
            reason: "use lowercase: DuckDB table names are case-insensitive, so `Genes` and `genes` would collide",
        });
    }
    Ok(())
}
