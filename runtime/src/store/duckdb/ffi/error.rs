//! DuckDB's failures with their kind.

use libduckdb_sys as sys;

pub(crate) use crate::error::DuckdbErrorKind;

/// The kind of DuckDB's `duckdb_error_type`.
pub(crate) fn kind_of(code: sys::duckdb_error_type) -> DuckdbErrorKind {
    use DuckdbErrorKind as K;
    match code {
        sys::duckdb_error_type_DUCKDB_ERROR_IO
        | sys::duckdb_error_type_DUCKDB_ERROR_PERMISSION
        | sys::duckdb_error_type_DUCKDB_ERROR_SERIALIZATION
        | sys::duckdb_error_type_DUCKDB_ERROR_DATA_CORRUPTION => K::Io,
        sys::duckdb_error_type_DUCKDB_ERROR_CATALOG
        | sys::duckdb_error_type_DUCKDB_ERROR_DEPENDENCY => K::Catalog,
        sys::duckdb_error_type_DUCKDB_ERROR_CONSTRAINT => K::Constraint,
        sys::duckdb_error_type_DUCKDB_ERROR_CONVERSION
        | sys::duckdb_error_type_DUCKDB_ERROR_OUT_OF_RANGE
        | sys::duckdb_error_type_DUCKDB_ERROR_MISMATCH_TYPE
        | sys::duckdb_error_type_DUCKDB_ERROR_DIVIDE_BY_ZERO
        | sys::duckdb_error_type_DUCKDB_ERROR_DECIMAL
        | sys::duckdb_error_type_DUCKDB_ERROR_INVALID_TYPE => K::Conversion,
        sys::duckdb_error_type_DUCKDB_ERROR_TRANSACTION => K::Transaction,
        sys::duckdb_error_type_DUCKDB_ERROR_PARSER
        | sys::duckdb_error_type_DUCKDB_ERROR_SYNTAX
        | sys::duckdb_error_type_DUCKDB_ERROR_BINDER
        | sys::duckdb_error_type_DUCKDB_ERROR_PLANNER
        | sys::duckdb_error_type_DUCKDB_ERROR_PARAMETER_NOT_RESOLVED
        | sys::duckdb_error_type_DUCKDB_ERROR_PARAMETER_NOT_ALLOWED => K::InvalidSql,
        sys::duckdb_error_type_DUCKDB_ERROR_INVALID_INPUT
        | sys::duckdb_error_type_DUCKDB_ERROR_SETTINGS => K::InvalidInput,
        sys::duckdb_error_type_DUCKDB_ERROR_OUT_OF_MEMORY => K::OutOfMemory,
        sys::duckdb_error_type_DUCKDB_ERROR_INTERRUPT => K::Interrupted,
        _ => K::Other,
    }
}

/// A DuckDB failure: its kind and DuckDB's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DuckError {
    pub kind: DuckdbErrorKind,
    pub message: String,
}

impl DuckError {
    pub(crate) fn new(kind: DuckdbErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The store's own checks inside a transaction (a row count that does not fit `INTEGER`, a
/// metadata row that cannot be read back) fail as input that does not fit.
impl From<String> for DuckError {
    fn from(message: String) -> Self {
        Self::new(DuckdbErrorKind::InvalidInput, message)
    }
}

impl From<&str> for DuckError {
    fn from(message: &str) -> Self {
        Self::new(DuckdbErrorKind::InvalidInput, message)
    }
}
