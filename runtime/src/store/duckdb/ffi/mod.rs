//! The raw DuckDB C API and the Arrow C Data Interface, fenced in one module.
//!
//! Everything `unsafe` in the crate is here. Each raw handle has one owner type, which frees it
//! in `Drop` and is the only code that touches it:
//!
//! | raw handle | owner | file |
//! |---|---|---|
//! | `duckdb_database` (and the process's instance cache) | [`Database`] | `database.rs` |
//! | `duckdb_connection` | [`Connection`] | `connection.rs` |
//! | `duckdb_prepared_statement` | `Statement` | `statement.rs` |
//! | `duckdb_result` (materialised) | `Materialized` | `statement.rs` |
//! | `duckdb_arrow` (an Arrow result) | `ArrowResult` | `arrow.rs` |
//! | the `ArrowArrayStream` a frame is exported as | [`FrameStream`] | `stream.rs` |
//! | the view DuckDB scans that stream through | `ScanView` | `connection.rs` |
//!
//! The safe surface is what the store uses: [`Database::open`], [`Connection`] (SQL, bound
//! parameters, Arrow results, transactions, [`Connection::scan`]). No safe function leaves a
//! safety rule to its caller: the scan view ([`Connection::scan`]) owns the stream it reads.
//!
//! Failures carry DuckDB's own error type ([`DuckdbErrorKind`]), read from the C API (or, for a
//! lock, from the operating system), never parsed out of a message.
//!
//! Why not duckdb-rs: its `Connection` hides the raw `duckdb_connection`, and the fast save
//! path (DuckDB's own parallel Arrow scan, the path Python's `CREATE TABLE t AS SELECT * FROM
//! df` takes) needs it on the same connection as the transaction that writes the metadata.

mod arrow;
mod connection;
mod database;
mod error;
mod statement;
mod stream;

pub use crate::store::param::Param;
pub(crate) use connection::Connection;
pub(crate) use database::Database;
pub(crate) use error::DuckError;
use error::DuckdbErrorKind;
pub(crate) use stream::FrameStream;

use std::ffi::{CStr, c_char};

use libduckdb_sys as sys;

/// The library version of the bundled DuckDB (`v2.0.0`).
pub fn duckdb_version() -> String {
    // SAFETY: duckdb_library_version returns a static NUL-terminated string.
    unsafe { message(sys::duckdb_library_version(), "unknown") }
}

/// Copies a C string DuckDB owns.
///
/// # Safety
/// `p` is null or a NUL-terminated string valid for the duration of the call.
unsafe fn message(p: *const c_char, fallback: &str) -> String {
    if p.is_null() {
        fallback.to_owned()
    } else {
        // SAFETY: per the function's contract.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// SQL text (or a name) as a C string.
fn c_string(s: &str) -> Result<std::ffi::CString, DuckError> {
    std::ffi::CString::new(s).map_err(|_| {
        DuckError::new(
            DuckdbErrorKind::InvalidInput,
            "the SQL text contains a NUL byte",
        )
    })
}

unsafe extern "C" {
    /// `capi_shim.cpp`: `duckdb_execute_prepared_arrow` with a chosen batch size.
    fn usher_execute_prepared_arrow_batched(
        prepared: sys::duckdb_prepared_statement,
        batch_size: sys::idx_t,
        out_result: *mut sys::duckdb_arrow,
    ) -> sys::duckdb_state;

    /// `capi_shim.cpp`: an unprepared query to an Arrow result with a chosen batch size.
    fn usher_query_arrow_batched(
        connection: sys::duckdb_connection,
        query: *const c_char,
        batch_size: sys::idx_t,
        out_result: *mut sys::duckdb_arrow,
    ) -> sys::duckdb_state;

    /// `capi_shim.cpp`: the error type of a failed Arrow result.
    fn usher_arrow_error_type(result: sys::duckdb_arrow) -> sys::duckdb_error_type;

    /// `capi_shim.cpp`: the error type of a failed prepare.
    fn usher_prepare_error_type(prepared: sys::duckdb_prepared_statement)
    -> sys::duckdb_error_type;

    /// `capi_shim.cpp`: `duckdb_get_or_create_from_cache`, also giving the error's type.
    fn usher_open_from_cache(
        cache: sys::duckdb_instance_cache,
        path: *const c_char,
        out_database: *mut sys::duckdb_database,
        config: sys::duckdb_config,
        out_error: *mut *mut c_char,
        out_error_type: *mut sys::duckdb_error_type,
    ) -> sys::duckdb_state;

    /// `capi_shim.cpp`: `duckdb_arrow_scan` registering a temporary view.
    fn usher_arrow_scan_temporary(
        connection: sys::duckdb_connection,
        view_name: *const c_char,
        stream: sys::duckdb_arrow_stream,
    ) -> sys::duckdb_state;
}
