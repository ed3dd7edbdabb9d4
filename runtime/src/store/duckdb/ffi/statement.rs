//! `Statement` (the owner of a `duckdb_prepared_statement`) and `Materialized` (the owner of a
//! row-wise `duckdb_result`).

use std::ffi::CStr;
use std::ptr;

use libduckdb_sys as sys;

use super::arrow::ArrowResult;
use super::error::{DuckError, DuckdbErrorKind, kind_of};
use super::{c_string, message, usher_execute_prepared_arrow_batched, usher_prepare_error_type};
use crate::store::param::Param;

/// Rows per Arrow array of a result: one DuckDB row group. The C API's 2,048 makes DuckDB slower
/// and needs a merging copy afterwards (peak memory 3.4x the frame); 1,000,000 (Python's choice)
/// leaves one thread building each array. Measured with examples/bench_store: 122,880 loads
/// fastest and its arrays are good polars chunks as they are.
pub(super) const RESULT_BATCH_ROWS: sys::idx_t = 122_880;

/// A prepared statement.
pub(super) struct Statement {
    raw: sys::duckdb_prepared_statement,
}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: created by duckdb_prepare (even a failed prepare must be destroyed), once.
        unsafe { sys::duckdb_destroy_prepare(&mut self.raw) }
    }
}

impl Statement {
    /// Prepares `sql` on `connection`.
    pub(super) fn prepare(
        connection: sys::duckdb_connection,
        sql: &str,
    ) -> Result<Self, DuckError> {
        let sql = c_string(sql)?;
        let mut statement = Statement {
            raw: ptr::null_mut(),
        };
        // SAFETY: the connection is open (its owner calls this); the statement is destroyed by
        // Statement's Drop even when preparing failed, as the C API requires.
        unsafe {
            if sys::duckdb_prepare(connection, sql.as_ptr(), &mut statement.raw)
                != sys::DuckDBSuccess
            {
                return Err(DuckError::new(
                    kind_of(usher_prepare_error_type(statement.raw)),
                    message(
                        sys::duckdb_prepare_error(statement.raw),
                        "cannot prepare statement",
                    ),
                ));
            }
        }
        Ok(statement)
    }

    /// Whether the statement writes tables of the database and nothing beyond them: `INSERT`,
    /// `UPDATE`, `DELETE`, `MERGE INTO`, `CREATE`, `DROP`, `ALTER`, `COPY`. Not `ATTACH`,
    /// `SET`, `PRAGMA`, `CALL`, transactions or extensions, which change the session or more.
    pub(super) fn is_table_write(&self) -> bool {
        // SAFETY: the statement was prepared successfully (prepare returned it) and is alive.
        let kind = unsafe { sys::duckdb_prepared_statement_type(self.raw) };
        [
            sys::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_INSERT,
            sys::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_UPDATE,
            sys::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_DELETE,
            sys::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_MERGE_INTO,
            sys::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_CREATE,
            sys::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_DROP,
            sys::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_ALTER,
            sys::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_COPY,
        ]
        .contains(&kind)
    }

    /// Whether the statement is a query (`SELECT`, `WITH ... SELECT`, `VALUES`, `FROM t`): one
    /// that reads and changes nothing, not even files.
    pub(super) fn is_select(&self) -> bool {
        // SAFETY: the statement was prepared successfully (prepare returned it) and is alive.
        let kind = unsafe { sys::duckdb_prepared_statement_type(self.raw) };
        kind == sys::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_SELECT
    }

    /// Binds every parameter, after checking their number.
    fn bind_all(&self, params: &[Param]) -> Result<(), DuckError> {
        // SAFETY: `raw` is a successfully prepared statement (`prepare` returns no other).
        let expected = unsafe { sys::duckdb_nparams(self.raw) } as usize;
        if expected != params.len() {
            return Err(DuckError::new(
                DuckdbErrorKind::InvalidInput,
                format!(
                    "the statement has {expected} parameter(s) but {} were given",
                    params.len()
                ),
            ));
        }
        // SAFETY: as above.
        unsafe { sys::duckdb_clear_bindings(self.raw) };
        for (i, param) in params.iter().enumerate() {
            self.bind(i as u64 + 1, param)?;
        }
        Ok(())
    }

    /// Binds `param` at `index`, which `bind_all` has checked against the parameter count.
    fn bind(&self, index: u64, param: &Param) -> Result<(), DuckError> {
        use chrono::{Datelike, NaiveDate};
        let stmt = self.raw;
        // SAFETY: a prepared statement and an index within its parameter count; a text value is
        // passed with its length and copied by DuckDB during the call.
        let state = unsafe {
            match param {
                Param::Null => sys::duckdb_bind_null(stmt, index),
                Param::Bool(v) => sys::duckdb_bind_boolean(stmt, index, *v),
                Param::Int(v) => sys::duckdb_bind_int64(stmt, index, *v),
                Param::Float(v) => sys::duckdb_bind_double(stmt, index, *v),
                Param::Text(v) => {
                    sys::duckdb_bind_varchar_length(stmt, index, v.as_ptr().cast(), v.len() as u64)
                }
                Param::Date(d) => {
                    // NaiveDate's default is the Unix epoch, DuckDB's day 0.
                    let days = d.signed_duration_since(NaiveDate::default()).num_days();
                    let days = i32::try_from(days).map_err(|_| {
                        DuckError::new(
                            DuckdbErrorKind::InvalidInput,
                            format!("date {d} is out of DuckDB's range (year {})", d.year()),
                        )
                    })?;
                    sys::duckdb_bind_date(stmt, index, sys::duckdb_date { days })
                }
                Param::Timestamp(t) => {
                    let micros = t.and_utc().timestamp_micros();
                    sys::duckdb_bind_timestamp(stmt, index, sys::duckdb_timestamp { micros })
                }
            }
        };
        if state == sys::DuckDBSuccess {
            Ok(())
        } else {
            Err(DuckError::new(
                DuckdbErrorKind::InvalidInput,
                format!("cannot bind parameter {index} ({param:?})"),
            ))
        }
    }

    /// Binds `params` and runs the statement to a materialised Arrow result.
    pub(super) fn execute_arrow(&self, params: &[Param]) -> Result<ArrowResult, DuckError> {
        self.bind_all(params)?;
        let mut result = ArrowResult::null();
        // SAFETY: all parameters are bound; the result is owned (and destroyed) by ArrowResult
        // even when execution failed, as the C API requires.
        let state = unsafe {
            usher_execute_prepared_arrow_batched(self.raw, RESULT_BATCH_ROWS, result.out())
        };
        if state != sys::DuckDBSuccess {
            return Err(result.error());
        }
        Ok(result)
    }

    /// Binds `params`, runs the statement to a materialised (row-wise) result and reads it.
    pub(super) fn execute_materialized<T>(
        &self,
        params: &[Param],
        read: impl FnOnce(&Materialized) -> Result<T, DuckError>,
    ) -> Result<T, DuckError> {
        self.bind_all(params)?;
        let mut result = Materialized {
            // SAFETY: an all-zero duckdb_result is the C API's "empty" value, which
            // duckdb_execute_prepared fills and duckdb_destroy_result accepts.
            raw: unsafe { std::mem::zeroed() },
        };
        // SAFETY: all parameters are bound; the result is destroyed by Materialized's Drop
        // whether execution succeeded or not.
        if unsafe { sys::duckdb_execute_prepared(self.raw, &mut result.raw) } != sys::DuckDBSuccess
        {
            return Err(result.error());
        }
        read(&result)
    }
}

/// A row-wise result, for the store's small metadata reads (the Arrow path costs more than the
/// query for a few rows).
pub(super) struct Materialized {
    raw: sys::duckdb_result,
}

impl Drop for Materialized {
    fn drop(&mut self) {
        // SAFETY: zeroed or filled by duckdb_execute_prepared; destroyed once.
        unsafe { sys::duckdb_destroy_result(&mut self.raw) }
    }
}

impl Materialized {
    fn error(&mut self) -> DuckError {
        // SAFETY: a result filled by a failed execution; the message is copied out before the
        // result is destroyed.
        unsafe {
            DuckError::new(
                kind_of(sys::duckdb_result_error_type(&mut self.raw)),
                message(sys::duckdb_result_error(&mut self.raw), "query failed"),
            )
        }
    }

    /// The value at (0, 0) as a BIGINT.
    pub(super) fn first_i64(&self) -> Result<i64, DuckError> {
        let raw = (&self.raw as *const sys::duckdb_result).cast_mut();
        // SAFETY: a successful result; (0, 0) is read only when it has a row. DuckDB's value
        // accessors take `*mut` but do not write through it.
        unsafe {
            if sys::duckdb_row_count(raw) == 0 {
                Err("the query returned no row".into())
            } else {
                Ok(sys::duckdb_value_int64(raw, 0, 0))
            }
        }
    }

    /// Every row with every value as text (`None` for NULL).
    pub(super) fn text_rows(&self) -> Vec<Vec<Option<String>>> {
        let raw = (&self.raw as *const sys::duckdb_result).cast_mut();
        // SAFETY: a successful result; rows and columns stay within its counts, columns of the
        // NULL type (a bare `NULL` in a select list), which the value accessors cannot read
        // (they crash), are never passed to them, and every string DuckDB allocates for a value
        // is copied and freed at once. The accessors take `*mut` but do not write through it.
        unsafe {
            let rows = sys::duckdb_row_count(raw);
            let columns = sys::duckdb_column_count(raw);
            let readable: Vec<bool> = (0..columns)
                .map(|col| {
                    !matches!(
                        sys::duckdb_column_type(raw, col),
                        sys::DUCKDB_TYPE_DUCKDB_TYPE_SQLNULL | sys::DUCKDB_TYPE_DUCKDB_TYPE_INVALID
                    )
                })
                .collect();
            let text = |col: sys::idx_t, row| {
                if !readable[col as usize] || sys::duckdb_value_is_null(raw, col, row) {
                    return None;
                }
                let value = sys::duckdb_value_varchar(raw, col, row);
                if value.is_null() {
                    return None;
                }
                let copied = CStr::from_ptr(value).to_string_lossy().into_owned();
                sys::duckdb_free(value.cast());
                Some(copied)
            };
            (0..rows)
                .map(|row| (0..columns).map(|col| text(col, row)).collect())
                .collect()
        }
    }
}
