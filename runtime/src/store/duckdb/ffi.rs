//! The raw DuckDB C API and the Arrow C Data Interface, fenced in one module.
//!
//! Everything `unsafe` in the crate is here. The rest of the crate sees a small safe surface:
//! [`Database`], [`Connection`] (SQL, bound parameters, Arrow results, Arrow scans) and the
//! conversions between polars frames and Arrow C structs.
//!
//! Why not duckdb-rs: its `Connection` hides the raw `duckdb_connection`, and the fast save
//! path (DuckDB's own parallel Arrow scan, the path Python's `CREATE TABLE t AS SELECT * FROM
//! df` takes) needs it on the same connection as the transaction that writes the metadata.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{CStr, CString, c_char, c_void};
use std::path::Path;
use std::ptr;
use std::sync::{Arc, Mutex, OnceLock};

use libduckdb_sys as sys;
use polars::prelude::*;
use polars_arrow::array::{Array, StructArray};
use polars_arrow::datatypes::{ArrowDataType, Field as ArrowField};
use polars_arrow::ffi as pa_ffi;

/// A bound parameter value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Param {
    /// SQL `NULL`.
    Null,
    /// `BOOLEAN`.
    Bool(bool),
    /// `BIGINT`.
    Int(i64),
    /// `DOUBLE`.
    Float(f64),
    /// `VARCHAR`.
    Text(String),
    /// `DATE`.
    Date(chrono::NaiveDate),
    /// `TIMESTAMP` (no time zone), microsecond precision.
    Timestamp(chrono::NaiveDateTime),
}

macro_rules! param_from {
    ($($t:ty => $variant:ident $(as $cast:ty)?),* $(,)?) => {$(
        impl From<$t> for Param {
            fn from(v: $t) -> Self { Param::$variant(v $(as $cast)?.into()) }
        }
    )*};
}
param_from!(bool => Bool, i64 => Int, i32 => Int, u32 => Int, i16 => Int, u16 => Int, f64 => Float, f32 => Float,
    String => Text, &str => Text, &String => Text, chrono::NaiveDate => Date, chrono::NaiveDateTime => Timestamp);

impl<T: Into<Param>> From<Option<T>> for Param {
    fn from(v: Option<T>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}

/// An open DuckDB database (the instance, shared by its connections).
pub(crate) struct Database {
    raw: sys::duckdb_database,
}

// SAFETY: a DuckDB database instance is internally synchronised; the C API documents
// opening several connections to one database from different threads.
unsafe impl Send for Database {}
unsafe impl Sync for Database {}

/// The process's DuckDB instance cache. Without it, two opens of one file in one process would
/// start two DuckDB instances on it (file locks are per process, so DuckDB would not refuse),
/// each unaware of the other's writes. With it they share one instance; the instance closes
/// when its last handle does.
struct InstanceCache(sys::duckdb_instance_cache);

// SAFETY: DuckDB's instance cache guards its map with a mutex; the handle is only passed to
// duckdb_get_or_create_from_cache and never destroyed (it lives as long as the process).
unsafe impl Send for InstanceCache {}
unsafe impl Sync for InstanceCache {}

fn instance_cache() -> sys::duckdb_instance_cache {
    static CACHE: OnceLock<InstanceCache> = OnceLock::new();
    // SAFETY: creating the cache has no preconditions.
    CACHE
        .get_or_init(|| InstanceCache(unsafe { sys::duckdb_create_instance_cache() }))
        .0
}

impl Database {
    /// Opens (or creates) the database file with the given start-up options, sharing the
    /// instance with any other open handle on the same file in this process.
    pub fn open(path: &Path, options: &[(&str, &str)]) -> Result<Self, String> {
        let c_path = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| "the path contains a NUL byte".to_owned())?;
        let mut config: sys::duckdb_config = ptr::null_mut();
        // SAFETY: out-pointers to locals; the config is destroyed on every path below.
        unsafe {
            if sys::duckdb_create_config(&mut config) != sys::DuckDBSuccess {
                sys::duckdb_destroy_config(&mut config);
                return Err("cannot allocate a DuckDB config".to_owned());
            }
            for (name, value) in options {
                let (n, v) = (
                    CString::new(*name).unwrap_or_default(),
                    CString::new(*value).unwrap_or_default(),
                );
                if sys::duckdb_set_config(config, n.as_ptr(), v.as_ptr()) != sys::DuckDBSuccess {
                    sys::duckdb_destroy_config(&mut config);
                    return Err(format!("invalid DuckDB option {name} = {value:?}"));
                }
            }
            let mut raw: sys::duckdb_database = ptr::null_mut();
            let mut error: *mut c_char = ptr::null_mut();
            let state = sys::duckdb_get_or_create_from_cache(
                instance_cache(),
                c_path.as_ptr(),
                &mut raw,
                config,
                &mut error,
            );
            sys::duckdb_destroy_config(&mut config);
            if state != sys::DuckDBSuccess {
                let message = if error.is_null() {
                    "unknown error".to_owned()
                } else {
                    let m = CStr::from_ptr(error).to_string_lossy().into_owned();
                    sys::duckdb_free(error.cast());
                    m
                };
                return Err(message);
            }
            Ok(Database { raw })
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // SAFETY: `raw` came from duckdb_get_or_create_from_cache; every Connection holds an Arc
        // to this Database, so none is left when this handle closes.
        unsafe { sys::duckdb_close(&mut self.raw) }
    }
}

/// One connection. Not `Sync`: a DuckDB connection runs one statement at a time, so the store
/// keeps it behind a mutex.
pub(crate) struct Connection {
    /// Prepared statements of the store's own hot queries (checkpoint lookups, table loads):
    /// preparing costs about as much as running them. DuckDB re-binds a cached statement by
    /// itself when the tables it reads change. Declared before `raw` so it drops first.
    cache: RefCell<HashMap<String, Prepared>>,
    raw: sys::duckdb_connection,
    _db: Arc<Database>,
}

/// Most statements the cache holds; past it the cache starts over.
const STATEMENT_CACHE: usize = 64;

// SAFETY: a connection may move between threads; it is never used from two at once (no Sync).
unsafe impl Send for Connection {}

/// A query result in Arrow form, materialised by DuckDB.
struct ArrowResult {
    raw: sys::duckdb_arrow,
}

impl Drop for ArrowResult {
    fn drop(&mut self) {
        // SAFETY: created by duckdb_query_arrow / duckdb_execute_prepared_arrow, destroyed once.
        unsafe { sys::duckdb_destroy_arrow(&mut self.raw) }
    }
}

struct Prepared {
    raw: sys::duckdb_prepared_statement,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // SAFETY: created by duckdb_prepare, destroyed once.
        unsafe { sys::duckdb_destroy_prepare(&mut self.raw) }
    }
}

fn c_string(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| "the SQL text contains a NUL byte".to_owned())
}

/// # Safety
/// `p` is null or a NUL-terminated string valid for the duration of the call.
unsafe fn message(p: *const c_char, fallback: &str) -> String {
    if p.is_null() {
        fallback.to_owned()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl Connection {
    pub fn connect(db: &Arc<Database>) -> Result<Self, String> {
        let mut raw: sys::duckdb_connection = ptr::null_mut();
        // SAFETY: db.raw is open for as long as the Arc lives; the connection keeps one.
        if unsafe { sys::duckdb_connect(db.raw, &mut raw) } != sys::DuckDBSuccess {
            return Err("cannot connect to the database".to_owned());
        }
        Ok(Connection {
            cache: RefCell::new(HashMap::new()),
            raw,
            _db: Arc::clone(db),
        })
    }

    /// Runs SQL that returns nothing of interest (several statements allowed).
    pub fn execute(&self, sql: &str) -> Result<(), String> {
        let sql = c_string(sql)?;
        // SAFETY: duckdb_result is a plain C struct that duckdb_query fills; it is destroyed
        // on both paths, after the error message has been copied out.
        unsafe {
            let mut result: sys::duckdb_result = std::mem::zeroed();
            let state = sys::duckdb_query(self.raw, sql.as_ptr(), &mut result);
            let outcome = if state == sys::DuckDBSuccess {
                Ok(())
            } else {
                Err(message(
                    sys::duckdb_result_error(&mut result),
                    "query failed",
                ))
            };
            sys::duckdb_destroy_result(&mut result);
            outcome
        }
    }

    fn prepare(&self, sql: &str) -> Result<Prepared, String> {
        let sql = c_string(sql)?;
        let mut prepared = Prepared {
            raw: ptr::null_mut(),
        };
        // SAFETY: the statement is destroyed by Prepared's Drop even when preparing failed, as
        // the C API requires.
        unsafe {
            if sys::duckdb_prepare(self.raw, sql.as_ptr(), &mut prepared.raw) != sys::DuckDBSuccess
            {
                return Err(message(
                    sys::duckdb_prepare_error(prepared.raw),
                    "cannot prepare statement",
                ));
            }
        }
        Ok(prepared)
    }

    /// Prepares `sql`, binds `params` and returns the result as a polars frame.
    pub fn query(&self, sql: &str, params: &[Param]) -> Result<DataFrame, String> {
        let prepared = self.prepare(sql)?;
        execute_arrow(&prepared, params)?.into_frame()
    }

    /// Runs `sql`, one statement of the crate's own making without parameters, unprepared, and
    /// returns the result as a polars frame. For large results: DuckDB builds the Arrow arrays
    /// of an unprepared query on every thread, those of a prepared one on a single thread.
    pub fn query_unprepared(&self, sql: &str) -> Result<DataFrame, String> {
        let sql = c_string(sql)?;
        let mut result = ArrowResult {
            raw: ptr::null_mut(),
        };
        // SAFETY: the connection is open; the result is owned (and destroyed) by ArrowResult
        // even when the query failed, as for the prepared path.
        unsafe {
            if usher_query_arrow_batched(self.raw, sql.as_ptr(), RESULT_BATCH_ROWS, &mut result.raw)
                != sys::DuckDBSuccess
            {
                return Err(arrow_error(result.raw));
            }
        }
        result.into_frame()
    }

    /// [`query`](Self::query) with the prepared statement kept for the next call.
    pub fn query_cached(&self, sql: &str, params: &[Param]) -> Result<DataFrame, String> {
        self.with_cached(sql, |prepared| {
            execute_arrow(prepared, params)?.into_frame()
        })
    }

    /// Runs `work` as one transaction: committed if it succeeds, rolled back if it or the commit
    /// fails, so a failed write never leaves a half-done change or an open transaction.
    pub fn transaction<T>(&self, work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        self.execute("BEGIN TRANSACTION")?;
        let outcome = work().and_then(|value| self.execute("COMMIT").map(|()| value));
        if outcome.is_err() {
            let _ = self.execute("ROLLBACK");
        }
        outcome
    }

    /// Runs a cached statement whose result is one BIGINT (a count) and returns it, without
    /// building an Arrow result.
    pub fn query_i64_cached(&self, sql: &str, params: &[Param]) -> Result<i64, String> {
        self.with_cached(sql, |prepared| {
            with_materialized(prepared, params, |result| {
                // SAFETY: `result` is a successful materialised result; (0, 0) is read only
                // when it has a row.
                unsafe {
                    if sys::duckdb_row_count(result) == 0 {
                        Err("the query returned no row".to_owned())
                    } else {
                        Ok(sys::duckdb_value_int64(result, 0, 0))
                    }
                }
            })
        })
    }

    /// Runs a cached statement and returns its rows with every value as text (`None` for
    /// NULL). For small metadata reads, which the Arrow path would make several times slower.
    pub fn query_text_rows_cached(
        &self,
        sql: &str,
        params: &[Param],
    ) -> Result<Vec<Vec<Option<String>>>, String> {
        self.with_cached(sql, |prepared| {
            with_materialized(prepared, params, |result| {
                // SAFETY: rows and columns are within the result's counts, and every string
                // DuckDB allocates for a value is copied and freed at once.
                unsafe {
                    let rows = sys::duckdb_row_count(result);
                    let columns = sys::duckdb_column_count(result);
                    let mut text = |col, row| {
                        if sys::duckdb_value_is_null(result, col, row) {
                            return None;
                        }
                        let raw = sys::duckdb_value_varchar(result, col, row);
                        if raw.is_null() {
                            return None;
                        }
                        let value = CStr::from_ptr(raw).to_string_lossy().into_owned();
                        sys::duckdb_free(raw.cast());
                        Some(value)
                    };
                    Ok((0..rows)
                        .map(|row| (0..columns).map(|col| text(col, row)).collect())
                        .collect())
                }
            })
        })
    }

    fn with_cached<T>(
        &self,
        sql: &str,
        run: impl FnOnce(&Prepared) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut cache = self.cache.borrow_mut();
        if !cache.contains_key(sql) {
            if cache.len() >= STATEMENT_CACHE {
                cache.clear();
            }
            let prepared = self.prepare(sql)?;
            cache.insert(sql.to_owned(), prepared);
        }
        let prepared = cache.get(sql).expect("inserted above");
        let outcome = run(prepared);
        if outcome.is_err() {
            // A failed statement (a dropped table...) is prepared afresh next time.
            cache.remove(sql);
        }
        outcome
    }

    /// Registers `stream` as a view `name` in the connection's current default catalog.
    /// DuckDB copies the stream struct; the caller keeps `stream` alive and unreleased until
    /// the view is dropped.
    pub fn arrow_scan(&self, name: &str, stream: &mut FrameStream) -> Result<(), String> {
        let name = c_string(name)?;
        // SAFETY: the stream is a valid ArrowArrayStream whose callbacks are thread-safe (see
        // FrameStream); DuckDB reads it only while the view is scanned, and the caller drops
        // the view before dropping the stream.
        let state = unsafe { sys::duckdb_arrow_scan(self.raw, name.as_ptr(), stream.as_raw()) };
        if state == sys::DuckDBSuccess {
            Ok(())
        } else {
            Err("DuckDB could not register the Arrow scan".to_owned())
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: raw came from duckdb_connect and is disconnected once.
        unsafe { sys::duckdb_disconnect(&mut self.raw) }
    }
}

/// Binds every parameter, after checking their number.
fn bind_all(prepared: &Prepared, params: &[Param]) -> Result<(), String> {
    // SAFETY: prepared.raw is a successfully prepared statement; indices are checked against
    // its parameter count before binding.
    unsafe {
        let expected = sys::duckdb_nparams(prepared.raw) as usize;
        if expected != params.len() {
            return Err(format!(
                "the statement has {expected} parameter(s) but {} were given",
                params.len()
            ));
        }
        sys::duckdb_clear_bindings(prepared.raw);
        for (i, param) in params.iter().enumerate() {
            bind(prepared.raw, i as u64 + 1, param)?;
        }
    }
    Ok(())
}

unsafe extern "C" {
    /// `cpp/arrow_batch.cpp`: `duckdb_execute_prepared_arrow` with a chosen batch size.
    fn usher_execute_prepared_arrow_batched(
        prepared: sys::duckdb_prepared_statement,
        batch_size: sys::idx_t,
        out_result: *mut sys::duckdb_arrow,
    ) -> sys::duckdb_state;

    /// `cpp/arrow_batch.cpp`: an unprepared query to an Arrow result with a chosen batch size.
    fn usher_query_arrow_batched(
        connection: sys::duckdb_connection,
        query: *const std::ffi::c_char,
        batch_size: sys::idx_t,
        out_result: *mut sys::duckdb_arrow,
    ) -> sys::duckdb_state;
}

/// Rows per Arrow array of a result: one DuckDB row group. The C API's 2,048 makes DuckDB slower
/// and needs a merging copy afterwards (peak memory 3.4x the frame); 1,000,000 (Python's choice)
/// leaves one thread building each array. Measured with examples/bench_store: 122,880 loads
/// fastest and its arrays are good polars chunks as they are.
const RESULT_BATCH_ROWS: sys::idx_t = 122_880;

/// Binds `params` and runs the statement to a materialised Arrow result.
fn execute_arrow(prepared: &Prepared, params: &[Param]) -> Result<ArrowResult, String> {
    bind_all(prepared, params)?;
    let mut result = ArrowResult {
        raw: ptr::null_mut(),
    };
    // SAFETY: all parameters are bound; the result is owned (and destroyed) by ArrowResult even
    // when execution failed, as the C API requires (the shim returns DuckDB's own result type).
    unsafe {
        if usher_execute_prepared_arrow_batched(prepared.raw, RESULT_BATCH_ROWS, &mut result.raw)
            != sys::DuckDBSuccess
        {
            return Err(arrow_error(result.raw));
        }
    }
    Ok(result)
}

/// Binds `params`, runs `prepared` to a materialised (row-wise) result, reads it with `read`
/// and destroys it on every path.
fn with_materialized<T>(
    prepared: &Prepared,
    params: &[Param],
    read: impl FnOnce(&mut sys::duckdb_result) -> Result<T, String>,
) -> Result<T, String> {
    bind_all(prepared, params)?;
    // SAFETY: a prepared statement with every parameter bound; DuckDB fills the zeroed result
    // struct, which is destroyed once, after `read`, whether execution succeeded or not.
    unsafe {
        let mut result: sys::duckdb_result = std::mem::zeroed();
        let outcome =
            if sys::duckdb_execute_prepared(prepared.raw, &mut result) != sys::DuckDBSuccess {
                Err(message(
                    sys::duckdb_result_error(&mut result),
                    "query failed",
                ))
            } else {
                read(&mut result)
            };
        sys::duckdb_destroy_result(&mut result);
        outcome
    }
}

/// The error of a failed Arrow query. The shims leave `raw` null when DuckDB threw before it
/// made a result.
///
/// # Safety
/// `raw` is null or a result from one of the shims.
unsafe fn arrow_error(raw: sys::duckdb_arrow) -> String {
    if raw.is_null() {
        return "query failed".to_owned();
    }
    unsafe { message(sys::duckdb_query_arrow_error(raw), "query failed") }
}

/// # Safety
/// `stmt` is a successfully prepared statement and `index` is within its parameter count.
unsafe fn bind(
    stmt: sys::duckdb_prepared_statement,
    index: u64,
    param: &Param,
) -> Result<(), String> {
    use chrono::{Datelike, NaiveDate};
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
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
                let days = d.signed_duration_since(epoch).num_days();
                let days = i32::try_from(days).map_err(|_| {
                    format!("date {d} is out of DuckDB's range (year {})", d.year())
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
        Err(format!("cannot bind parameter {index} ({param:?})"))
    }
}

impl ArrowResult {
    /// Imports the whole result into one polars frame, one chunk per column.
    fn into_frame(self) -> Result<DataFrame, String> {
        let mut schema = pa_ffi::ArrowSchema::empty();
        // SAFETY: DuckDB writes a schema into our struct (layouts are identical: both follow
        // the Arrow C Data Interface); polars-arrow's ArrowSchema releases it on drop.
        let field = unsafe {
            let mut out =
                (&mut schema as *mut pa_ffi::ArrowSchema).cast::<sys::_duckdb_arrow_schema>();
            if sys::duckdb_query_arrow_schema(self.raw, &mut out) != sys::DuckDBSuccess {
                return Err("cannot read the result's Arrow schema".to_owned());
            }
            pa_ffi::import_field_from_c(&schema).map_err(|e| e.to_string())?
        };
        let ArrowDataType::Struct(fields) = field.dtype().clone() else {
            return Err(format!("unexpected Arrow result type {:?}", field.dtype()));
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
                    return Err(message(
                        sys::duckdb_query_arrow_error(self.raw),
                        "cannot fetch the result",
                    ));
                }
                if array_is_released(&array) {
                    break;
                }
                pa_ffi::import_array_from_c(array, field.dtype().clone())
                    .map_err(|e| e.to_string())?
            };
            let batch = imported
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(|| "DuckDB returned a batch that is not a struct array".to_owned())?;
            for (column, values) in columns.iter_mut().zip(batch.values()) {
                column.push(values.clone());
            }
        }
        frame_from_chunks(&fields, columns)
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

/// A polars frame exported as an Arrow C stream for DuckDB's Arrow scan.
///
/// The frame is cut into batches up front (each at least DuckDB's row group, so the scan runs
/// in parallel without small-batch overhead) and each batch exported zero-copy. DuckDB calls
/// `get_next` from its worker threads, so the queue is behind a mutex; it calls `get_schema`
/// several times and never releases what it gets, so the schema is owned here and handed out
/// as a borrowed copy with a no-op release.
pub(crate) struct FrameStream {
    raw: Box<pa_ffi::ArrowArrayStream>,
}

struct StreamState {
    schema: pa_ffi::ArrowSchema,
    batches: Mutex<VecDeque<pa_ffi::ArrowArray>>,
}

/// Rows of one DuckDB row group; smaller Arrow batches nearly double the save time.
const MIN_BATCH_ROWS: usize = 122_880;

impl FrameStream {
    pub fn new(df: &DataFrame) -> Result<Self, String> {
        let compat = CompatLevel::newest();
        let arrow_fields: Vec<ArrowField> = df
            .columns()
            .iter()
            .map(|c| c.field().to_arrow(compat))
            .collect();
        let struct_type = ArrowDataType::Struct(arrow_fields.clone());
        let schema =
            pa_ffi::export_field_to_c(&ArrowField::new("".into(), struct_type.clone(), false));

        let height = df.height();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let batch_rows = height.div_ceil(threads).max(MIN_BATCH_ROWS);
        let mut batches = VecDeque::new();
        let mut offset = 0;
        while offset < height {
            let len = batch_rows.min(height - offset);
            let mut slice = df.slice(offset as i64, len);
            if slice.should_rechunk() {
                slice.rechunk_mut_par();
            }
            for batch in slice.iter_chunks(compat, false) {
                let (len, arrays) = (batch.height(), batch.into_arrays());
                let array = StructArray::new(struct_type.clone(), len, arrays, None);
                batches.push_back(pa_ffi::export_array_to_c(array.boxed()));
            }
            offset += len;
        }
        let state = Box::new(StreamState {
            schema,
            batches: Mutex::new(batches),
        });
        let raw = new_stream(Box::into_raw(state).cast());
        Ok(FrameStream { raw: Box::new(raw) })
    }

    fn as_raw(&mut self) -> sys::duckdb_arrow_stream {
        (&mut *self.raw as *mut pa_ffi::ArrowArrayStream).cast()
    }
}

/// The stream struct with our callbacks. polars-arrow keeps the fields private, so the struct
/// is written through libduckdb-sys's identical layout.
fn new_stream(private: *mut c_void) -> pa_ffi::ArrowArrayStream {
    let mut stream = pa_ffi::ArrowArrayStream::empty();
    // SAFETY: identical #[repr(C)] layouts (Arrow C stream interface); `empty()` has no
    // release, so overwriting its fields leaks nothing.
    unsafe {
        let raw = (&mut stream as *mut pa_ffi::ArrowArrayStream).cast::<RawStream>();
        (*raw).get_schema = Some(stream_get_schema);
        (*raw).get_next = Some(stream_get_next);
        (*raw).get_last_error = Some(stream_get_last_error);
        (*raw).release = Some(stream_release);
        (*raw).private_data = private;
    }
    stream
}

/// The Arrow C stream struct with public fields.
#[repr(C)]
struct RawStream {
    get_schema: Option<unsafe extern "C" fn(*mut RawStream, *mut sys::ArrowSchema) -> i32>,
    get_next: Option<unsafe extern "C" fn(*mut RawStream, *mut sys::ArrowArray) -> i32>,
    get_last_error: Option<unsafe extern "C" fn(*mut RawStream) -> *const c_char>,
    release: Option<unsafe extern "C" fn(*mut RawStream)>,
    private_data: *mut c_void,
}

unsafe extern "C" fn noop_schema_release(schema: *mut sys::ArrowSchema) {
    // SAFETY: called by the consumer on a schema we handed out; only the marker is cleared.
    unsafe { (*schema).release = None }
}

unsafe extern "C" fn stream_get_schema(stream: *mut RawStream, out: *mut sys::ArrowSchema) -> i32 {
    // SAFETY: private_data is the StreamState set in FrameStream::new, alive until release.
    unsafe {
        let state = &*((*stream).private_data as *const StreamState);
        let owned = (&state.schema as *const pa_ffi::ArrowSchema).cast::<sys::ArrowSchema>();
        ptr::copy_nonoverlapping(owned, out, 1);
        (*out).release = Some(noop_schema_release);
    }
    0
}

unsafe extern "C" fn stream_get_next(stream: *mut RawStream, out: *mut sys::ArrowArray) -> i32 {
    // SAFETY: as above; the popped array's ownership moves to the consumer through `out`.
    unsafe {
        let state = &*((*stream).private_data as *const StreamState);
        let next = match state.batches.lock() {
            Ok(mut queue) => queue.pop_front(),
            Err(_) => return 5, // EIO: a panic elsewhere poisoned the queue
        };
        match next {
            Some(array) => {
                let array = std::mem::ManuallyDrop::new(array);
                ptr::copy_nonoverlapping(
                    (&*array as *const pa_ffi::ArrowArray).cast::<sys::ArrowArray>(),
                    out,
                    1,
                );
            }
            None => ptr::write(out, sys::ArrowArray::empty()),
        }
    }
    0
}

unsafe extern "C" fn stream_get_last_error(_stream: *mut RawStream) -> *const c_char {
    ptr::null()
}

unsafe extern "C" fn stream_release(stream: *mut RawStream) {
    // SAFETY: private_data is the boxed StreamState; it is freed once and the stream marked
    // released. Dropping it releases the schema and any batches DuckDB did not consume.
    unsafe {
        if !(*stream).private_data.is_null() {
            drop(Box::from_raw((*stream).private_data.cast::<StreamState>()));
            (*stream).private_data = ptr::null_mut();
        }
        (*stream).release = None;
    }
}

/// The library version of the bundled DuckDB (`v2.0.0`).
pub fn duckdb_version() -> String {
    // SAFETY: returns a static NUL-terminated string.
    unsafe { message(sys::duckdb_library_version(), "unknown") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_layouts_agree() {
        assert_eq!(
            std::mem::size_of::<RawStream>(),
            std::mem::size_of::<pa_ffi::ArrowArrayStream>()
        );
        assert_eq!(
            std::mem::size_of::<sys::ArrowArray>(),
            std::mem::size_of::<pa_ffi::ArrowArray>()
        );
        assert_eq!(
            std::mem::size_of::<sys::ArrowSchema>(),
            std::mem::size_of::<pa_ffi::ArrowSchema>()
        );
    }
}
