//! `ArrowResult`: the owner of a `duckdb_arrow` (a query result in Arrow form, materialised by
//! DuckDB), imported into polars without copying the buffers.

use std::ptr;

use libduckdb_sys as sys;
use polars::prelude::*;
use polars_arrow::array::{Array, StructArray};
use polars_arrow::datatypes::{ArrowDataType, Field as ArrowField};
use polars_arrow::ffi as pa_ffi;

use super::error::{DuckError, DuckdbErrorKind, kind_of};
use super::{message, usher_arrow_error_type};

/// A query result in Arrow form.
pub(super) struct ArrowResult {
    raw: sys::duckdb_arrow,
}

impl Drop for ArrowResult {
    fn drop(&mut self) {
        // SAFETY: null, or created by one of the shims' Arrow queries; destroyed once (the C
        // API accepts a null result).
        unsafe { sys::duckdb_destroy_arrow(&mut self.raw) }
    }
}

fn conversion(message: impl ToString) -> DuckError {
    DuckError::new(DuckdbErrorKind::Conversion, message.to_string())
}

impl ArrowResult {
    /// An empty owner, for a query to fill through [`out`](Self::out).
    pub(super) fn null() -> Self {
        Self {
            raw: ptr::null_mut(),
        }
    }

    /// Where a query writes its result; the result is owned (and destroyed) by `self`.
    pub(super) fn out(&mut self) -> *mut sys::duckdb_arrow {
        &mut self.raw
    }

    /// The error of a failed query. The shims leave the result null when DuckDB threw before it
    /// made one.
    pub(super) fn error(&self) -> DuckError {
        if self.raw.is_null() {
            return DuckError::new(DuckdbErrorKind::Other, "query failed");
        }
        // SAFETY: a result from one of the shims; the message is copied out while it lives.
        unsafe {
            DuckError::new(
                kind_of(usher_arrow_error_type(self.raw)),
                message(sys::duckdb_query_arrow_error(self.raw), "query failed"),
            )
        }
    }

    /// Imports the whole result into one polars frame, one chunk per column.
    pub(super) fn into_frame(self) -> Result<DataFrame, DuckError> {
        let mut schema = pa_ffi::ArrowSchema::empty();
        // SAFETY: DuckDB writes a schema into our struct (layouts are identical: both follow
        // the Arrow C Data Interface); polars-arrow's ArrowSchema releases it on drop.
        let field = unsafe {
            let mut out =
                (&mut schema as *mut pa_ffi::ArrowSchema).cast::<sys::_duckdb_arrow_schema>();
            if sys::duckdb_query_arrow_schema(self.raw, &mut out) != sys::DuckDBSuccess {
                return Err("cannot read the result's Arrow schema".into());
            }
            pa_ffi::import_field_from_c(&schema).map_err(conversion)?
        };
        let ArrowDataType::Struct(fields) = field.dtype().clone() else {
            return Err(conversion(format!(
                "unexpected Arrow result type {:?}",
                field.dtype()
            )));
        };
        let mut columns: Vec<Vec<Box<dyn Array>>> = vec![Vec::new(); fields.len()];
        loop {
            let mut array = pa_ffi::ArrowArray::empty();
            // SAFETY: as for the schema; DuckDB moves one batch into `array`, or leaves it
            // untouched (release = None) at the end. The import takes ownership of the batch.
            let imported = unsafe {
                let mut out =
                    (&mut array as *mut pa_ffi::ArrowArray).cast::<sys::_duckdb_arrow_array>();
                if sys::duckdb_query_arrow_array(self.raw, &mut out) != sys::DuckDBSuccess {
                    return Err(self.error());
                }
                if array_is_released(&array) {
                    break;
                }
                pa_ffi::import_array_from_c(array, field.dtype().clone()).map_err(conversion)?
            };
            let batch = imported
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(|| conversion("DuckDB returned a batch that is not a struct array"))?;
            for (column, values) in columns.iter_mut().zip(batch.values()) {
                column.push(values.clone());
            }
        }
        frame_from_chunks(&fields, columns).map_err(conversion)
    }
}

fn array_is_released(array: &pa_ffi::ArrowArray) -> bool {
    // SAFETY: both types are #[repr(C)] Arrow C Data Interface arrays of identical layout;
    // polars-arrow keeps the release field private, libduckdb-sys exposes it.
    let view = unsafe { &*(array as *const pa_ffi::ArrowArray).cast::<sys::ArrowArray>() };
    view.release.is_none()
}

/// The kind of a result type that polars (built without its decimal and categorical features)
/// would panic on instead of refusing, searched through nested types.
fn unsupported(dtype: &ArrowDataType) -> Option<&'static str> {
    match dtype {
        ArrowDataType::Decimal(..)
        | ArrowDataType::Decimal32(..)
        | ArrowDataType::Decimal64(..)
        | ArrowDataType::Decimal256(..) => Some("DECIMAL (or HUGEINT, or the SUM of a BIGINT)"),
        ArrowDataType::Dictionary(..) => Some("an ENUM"),
        ArrowDataType::Map(..) => Some("a MAP"),
        ArrowDataType::List(f)
        | ArrowDataType::LargeList(f)
        | ArrowDataType::FixedSizeList(f, _) => unsupported(f.dtype()),
        ArrowDataType::Struct(fields) => fields.iter().find_map(|f| unsupported(f.dtype())),
        ArrowDataType::Extension(ext) => unsupported(&ext.inner),
        _ => None,
    }
}

/// A polars frame of one column per field, each from its chunks.
fn frame_from_chunks(
    fields: &[ArrowField],
    columns: Vec<Vec<Box<dyn Array>>>,
) -> Result<DataFrame, String> {
    let mut series = Vec::with_capacity(fields.len());
    for (field, chunks) in fields.iter().zip(columns) {
        let s = if chunks.is_empty() {
            let dtype = DataType::from_arrow_field(field);
            Series::new_empty(field.name.clone(), &dtype)
        } else {
            if let Some(kind) = unsupported(field.dtype()) {
                return Err(format!(
                    "column {:?} is {kind}, which this build of polars cannot hold: CAST it in \
                     SQL (to DOUBLE, BIGINT or VARCHAR)",
                    field.name.as_str()
                ));
            }
            // polars panics on some types a feature of it would support; a result must not
            // bring down the caller, whatever it holds.
            let name = field.name.clone();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Series::try_from((name, chunks))
            }))
            .map_err(|_| {
                format!(
                    "column {:?}: polars cannot import its type",
                    field.name.as_str()
                )
            })?
            .map_err(|e| format!("column {:?}: {e}", field.name.as_str()))?
        };
        series.push(s.into_column());
    }
    let height = series.first().map_or(0, |c| c.len());
    let mut df = DataFrame::new(height, series).map_err(|e| e.to_string())?;
    // Arrays arrive in up to 1M-row batches; only many small pieces are worth a merging copy.
    if df.first_col_n_chunks() > 1 && df.height() / df.first_col_n_chunks() < 65_536 {
        df.rechunk_mut_par();
    }
    Ok(df)
}
