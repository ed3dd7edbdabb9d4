//! The table-name rule of [usher-pipeline](https://docs.rs/usher-pipeline), in one place.
//!
//! `#[checkpointed(table = "...")]` applies it at compile time and every store at run time,
//! with the same words. A crate of its own because a proc-macro crate can export nothing but
//! macros, and the library depends on the macro crate, not the other way round.
//!
//! Names are plain identifiers so they can always be quoted the same way and read by the
//! Python pipeline; tables written through the library are lowercase (DuckDB's catalog is
//! case-insensitive while `_checkpoints` is not) and never begin with `_`, which marks the
//! store's own tables (`_checkpoints`, `_provenance`, ...).

#![warn(missing_docs)]

use std::fmt;

/// The longest table name accepted, in bytes.
pub const MAX_LEN: usize = 128;

/// What is wrong with a table name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_LEN`] bytes.
    TooLong,
    /// The name has characters other than ASCII letters, digits and `_`, or starts with a digit.
    NotIdentifier,
    /// As [`NotIdentifier`](Self::NotIdentifier), for a name to be written (lowercase only).
    NotLowercaseIdentifier,
    /// A name to be written has uppercase letters.
    Uppercase,
    /// A name to be written begins with `_`.
    Reserved,
}

impl NameProblem {
    /// Why the name is refused, without the name.
    pub fn reason(self) -> &'static str {
        match self {
            NameProblem::Empty => "the name is empty",
            NameProblem::TooLong => "the name is longer than 128 characters",
            NameProblem::NotIdentifier => {
                "not a plain identifier (ASCII letters, digits and `_`, not starting with a digit)"
            }
            NameProblem::NotLowercaseIdentifier => {
                "not a plain lowercase identifier (letters a-z, digits and `_`, not starting with a digit)"
            }
            NameProblem::Uppercase => {
                "not a plain lowercase identifier: DuckDB's table names are case-insensitive, so `Genes` and `genes` would be one table with two checkpoints"
            }
            NameProblem::Reserved => "names beginning with `_` belong to the store's own tables",
        }
    }

    /// The whole message for `name`, as the attribute and the stores print it.
    pub fn message(self, name: &str) -> String {
        match self {
            NameProblem::Reserved => format!("table name {name:?} is reserved: {}", self.reason()),
            _ => format!("invalid table name {name:?}: {}", self.reason()),
        }
    }
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

fn check(name: &str, lowercase: bool) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > MAX_LEN {
        return Err(NameProblem::TooLong);
    }
    let identifier = !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !identifier {
        return Err(if lowercase {
            NameProblem::NotLowercaseIdentifier
        } else {
            NameProblem::NotIdentifier
        });
    }
    Ok(())
}

/// Checks a name to read: a plain identifier (the store's own tables and tables the Python
/// pipeline wrote with uppercase letters included).
pub fn check_readable(name: &str) -> Result<(), NameProblem> {
    check(name, false)
}

/// Checks a name to write: a plain lowercase identifier that does not begin with `_`.
pub fn check_writable(name: &str) -> Result<(), NameProblem> {
    check(name, true)?;
    if name.starts_with('_') {
        return Err(NameProblem::Reserved);
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(NameProblem::Uppercase);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name with the outcome it must get, read and written.
    #[test]
    fn the_rule() {
        let long = "a".repeat(128);
        let too_long = "a".repeat(129);
        use NameProblem::*;
        type Outcome = Result<(), NameProblem>;
        let cases: &[(&str, Outcome, Outcome)] = &[
            ("genes", Ok(()), Ok(())),
            ("gnomad_constraint_2", Ok(()), Ok(())),
            (&long, Ok(()), Ok(())),
            ("", Err(Empty), Err(Empty)),
            (&too_long, Err(TooLong), Err(TooLong)),
            ("1genes", Err(NotIdentifier), Err(NotLowercaseIdentifier)),
            ("a-b", Err(NotIdentifier), Err(NotLowercaseIdentifier)),
            ("gène", Err(NotIdentifier), Err(NotLowercaseIdentifier)),
            ("a\"b", Err(NotIdentifier), Err(NotLowercaseIdentifier)),
            ("_a-b", Err(NotIdentifier), Err(NotLowercaseIdentifier)),
            ("_checkpoints", Ok(()), Err(Reserved)),
            ("_Genes", Ok(()), Err(Reserved)),
            ("Genes", Ok(()), Err(Uppercase)),
        ];
        for (name, read, write) in cases {
            assert_eq!(check_readable(name), *read, "read {name:?}");
            assert_eq!(check_writable(name), *write, "write {name:?}");
        }
    }

    #[test]
    fn messages_name_the_table() {
        assert_eq!(
            NameProblem::Reserved.message("_x"),
            "table name \"_x\" is reserved: names beginning with `_` belong to the store's own tables"
        );
        assert_eq!(
            NameProblem::Empty.message(""),
            "invalid table name \"\": the name is empty"
        );
    }
}
