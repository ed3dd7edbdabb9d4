//! [`Connection`]: the owner of a `duckdb_connection`, with its cached statements; and
//! [`ScanView`], the owner of a view that scans a polars frame.

use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use libduckdb_sys as sys;
use polars::prelude::DataFrame;

use super::arrow::ArrowResult;
use super::database::Database;
use super::error::{DuckError, DuckdbErrorKind, kind_of};
use super::statement::{RESULT_BATCH_ROWS, Statement};
use super::stream::FrameStream;
use super::{c_string, message, usher_arrow_scan_temporary, usher_query_arrow_batched};
use crate::store::param::Param;

/// Most statements the cache holds; past it the cache starts over.
const STATEMENT_CACHE: usize = 64;

/// One connection. Not `Sync`: a DuckDB connection runs one statement at a time, so the store
/// keeps it behind a mutex.
pub(crate) struct Connection {
    /// Prepared statements of the store's own hot queries (checkpoint lookups, table loads):
    /// preparing costs about as much as running them. DuckDB re-binds a cached statement by
    /// itself when the tables it reads change. Declared before `raw` so it drops first.
    cache: RefCell<HashMap<String, Statement>>,
    raw: sys::duckdb_connection,
    _db: Arc<Database>,
}

// SAFETY: a connection may move between threads; it is never used from two at once (no Sync).
unsafe impl Send for Connection {}

impl Drop for Connection {
    fn drop(&mut self) {
        // The cached statements belong to this connection: destroyed before it.
        self.cache.get_mut().clear();
        // SAFETY: `raw` came from duckdb_connect and is disconnected once.
        unsafe { sys::duckdb_disconnect(&mut self.raw) }
    }
}

impl Connection {
    /// A new connection to `db`, which it keeps open.
    pub fn connect(db: &Arc<Database>) -> Result<Self, DuckError> {
        let mut raw: sys::duckdb_connection = ptr::null_mut();
        // SAFETY: the database is open for as long as the Arc lives; the connection keeps one.
        if unsafe { sys::duckdb_connect(db.raw(), &mut raw) } != sys::DuckDBSuccess {
            return Err(DuckError::new(
                DuckdbErrorKind::Other,
                "cannot connect to the database",
            ));
        }
        Ok(Connection {
            cache: RefCell::new(HashMap::new()),
            raw,
            _db: Arc::clone(db),
        })
    }

    /// Runs SQL that returns nothing of interest (several statements allowed).
    pub fn execute(&self, sql: &str) -> Result<(), DuckError> {
        let sql = c_string(sql)?;
        // SAFETY: an all-zero duckdb_result is the C API's empty value, which duckdb_query
        // fills; it is destroyed on both paths, after the error has been copied out.
        unsafe {
            let mut result: sys::duckdb_result = std::mem::zeroed();
            let state = sys::duckdb_query(self.raw, sql.as_ptr(), &mut result);
            let outcome = if state == sys::DuckDBSuccess {
                Ok(())
            } else {
                Err(DuckError::new(
                    kind_of(sys::duckdb_result_error_type(&mut result)),
                    message(sys::duckdb_result_error(&mut result), "query failed"),
                ))
            };
            sys::duckdb_destroy_result(&mut result);
            outcome
        }
    }

    /// Prepares `sql`, binds `params` and returns the result as a polars frame.
    pub fn query(&self, sql: &str, params: &[Param]) -> Result<DataFrame, DuckError> {
        Statement::prepare(self.raw, sql)?
            .execute_arrow(params)?
            .into_frame()
    }

    /// Prepares `sql`, one statement that writes tables (see `Statement::is_table_write`),
    /// binds `params` and runs it; any other kind of statement is refused before it runs.
    pub fn execute_write(&self, sql: &str, params: &[Param]) -> Result<(), DuckError> {
        let statement = Statement::prepare(self.raw, sql)?;
        if !statement.is_table_write() {
            return Err(DuckError::new(
                DuckdbErrorKind::InvalidInput,
                "only a statement that writes tables (INSERT, UPDATE, DELETE, MERGE INTO, CREATE, \
                 DROP, ALTER, COPY) can run here; read with `query`",
            ));
        }
        statement.execute_arrow(params).map(drop)
    }

    /// [`query`](Self::query) for a statement that only reads: anything but a `SELECT`
    /// (`COPY ... TO`, `CREATE`, `ATTACH`, `SET`, `EXPLAIN ANALYZE`...) is refused before it
    /// runs.
    pub fn query_select(&self, sql: &str, params: &[Param]) -> Result<DataFrame, DuckError> {
        let statement = Statement::prepare(self.raw, sql)?;
        if !statement.is_select() {
            return Err(DuckError::new(
                DuckdbErrorKind::InvalidInput,
                "only a SELECT statement can run here: the query reads the store and changes nothing",
            ));
        }
        statement.execute_arrow(params)?.into_frame()
    }

    /// Runs `sql`, one statement of the crate's own making without parameters, unprepared, and
    /// returns the result as a polars frame. For large results: DuckDB builds the Arrow arrays
    /// of an unprepared query on every thread, those of a prepared one on a single thread.
    pub fn query_unprepared(&self, sql: &str) -> Result<DataFrame, DuckError> {
        let sql = c_string(sql)?;
        let mut result = ArrowResult::null();
        // SAFETY: the connection is open and the SQL NUL-terminated; the result is owned (and
        // destroyed) by ArrowResult even when the query failed.
        let state = unsafe {
            usher_query_arrow_batched(self.raw, sql.as_ptr(), RESULT_BATCH_ROWS, result.out())
        };
        if state != sys::DuckDBSuccess {
            return Err(result.error());
        }
        result.into_frame()
    }

    /// [`query`](Self::query) with the prepared statement kept for the next call.
    pub fn query_cached(&self, sql: &str, params: &[Param]) -> Result<DataFrame, DuckError> {
        self.with_cached(sql, |statement| {
            statement.execute_arrow(params)?.into_frame()
        })
    }

    /// Runs a cached statement whose result is one BIGINT (a count) and returns it, without
    /// building an Arrow result.
    pub fn query_i64_cached(&self, sql: &str, params: &[Param]) -> Result<i64, DuckError> {
        self.with_cached(sql, |statement| {
            statement.execute_materialized(params, |result| result.first_i64())
        })
    }

    /// Runs a cached statement and returns its rows with every value as text (`None` for
    /// NULL). For small metadata reads, which the Arrow path would make several times slower.
    pub fn query_text_rows_cached(
        &self,
        sql: &str,
        params: &[Param],
    ) -> Result<Vec<Vec<Option<String>>>, DuckError> {
        self.with_cached(sql, |statement| {
            statement.execute_materialized(params, |result| Ok(result.text_rows()))
        })
    }

    fn with_cached<T>(
        &self,
        sql: &str,
        run: impl FnOnce(&Statement) -> Result<T, DuckError>,
    ) -> Result<T, DuckError> {
        let mut cache = self.cache.borrow_mut();
        let statement = match cache.get(sql) {
            Some(statement) => statement,
            None => {
                if cache.len() >= STATEMENT_CACHE {
                    cache.clear();
                }
                let statement = Statement::prepare(self.raw, sql)?;
                cache.entry(sql.to_owned()).or_insert(statement)
            }
        };
        let outcome = run(statement);
        if outcome.is_err() {
            // A failed statement (a dropped table...) is prepared afresh next time.
            cache.remove(sql);
        }
        outcome
    }

    /// Runs `work` as one transaction: committed if it succeeds, rolled back if it or the commit
    /// fails, or if it panics, so a failed write never leaves a half-done change or an open
    /// transaction behind on the connection.
    pub fn transaction<T>(
        &self,
        work: impl FnOnce() -> Result<T, DuckError>,
    ) -> Result<T, DuckError> {
        self.execute("BEGIN TRANSACTION")?;
        let open = OpenTransaction(self);
        let value = work()?;
        self.execute("COMMIT")?;
        std::mem::forget(open);
        Ok(value)
    }

    /// Registers `stream` as a temporary view of this connection and returns the guard that
    /// owns both: SQL reads the frame through [`ScanView::source`] until the guard drops.
    pub fn scan(&self, stream: FrameStream) -> Result<ScanView<'_>, DuckError> {
        /// Numbers the views, so two saves in one process never share a name.
        static VIEWS: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "__usher_scan_{}_{}",
            std::process::id(),
            VIEWS.fetch_add(1, Ordering::Relaxed)
        );
        let c_name = c_string(&name)?;
        let mut view = ScanView {
            connection: self,
            source: format!("temp.main.\"{name}\""),
            stream: ManuallyDrop::new(stream),
        };
        // SAFETY: the stream is a valid ArrowArrayStream whose callbacks are thread-safe (see
        // FrameStream); DuckDB reads it only while the view is scanned. The view's owner, the
        // guard, drops the view before it frees the stream, and leaks the stream when the view
        // cannot be dropped, so DuckDB never reads a freed stream.
        let state =
            unsafe { usher_arrow_scan_temporary(self.raw, c_name.as_ptr(), view.stream.as_raw()) };
        if state != sys::DuckDBSuccess {
            // No view was made (or a partial one, which the guard's drop removes).
            return Err(DuckError::new(
                DuckdbErrorKind::Other,
                "DuckDB could not register the Arrow scan",
            ));
        }
        Ok(view)
    }
}

/// A transaction begun and not yet committed: rolled back when dropped (on an error or a
/// panic); forgotten once it commits.
struct OpenTransaction<'c>(&'c Connection);

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        // Nothing more can be done about a failed rollback: DuckDB has aborted the transaction
        // already, and the next BEGIN reports it.
        let _ = self.0.execute("ROLLBACK");
    }
}

/// A temporary view scanning a polars frame: owns the exported stream, and in `Drop` drops
/// the view, then frees the stream. The view lives in the connection's temporary catalog (in
/// memory, invisible to other connections), so no catalog is switched around it.
pub(crate) struct ScanView<'c> {
    connection: &'c Connection,
    /// `temp.main."__usher_scan_..."`, for SQL.
    source: String,
    stream: ManuallyDrop<FrameStream>,
}

impl ScanView<'_> {
    /// The view's qualified name, to read the frame in SQL (`SELECT * FROM {source}`).
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl Drop for ScanView<'_> {
    fn drop(&mut self) {
        if self
            .connection
            .execute(&format!("DROP VIEW IF EXISTS {}", self.source))
            .is_ok()
        {
            // SAFETY: the view is gone, so nothing reads the stream any more; taken once.
            unsafe { ManuallyDrop::drop(&mut self.stream) }
        }
        // Otherwise the view may still point at the stream: it is leaked (a bounded leak on a
        // path DuckDB never takes in practice) rather than freed under a live view.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    fn connect(dir: &tempfile::TempDir) -> Connection {
        let db = Database::open(&dir.path().join("ffi.duckdb"), &[]).unwrap();
        Connection::connect(&Arc::new(db)).unwrap()
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_i64_cached(sql, &[]).unwrap()
    }

    const TEMP_VIEWS: &str = "SELECT count(*) FROM duckdb_views() WHERE database_name = 'temp'";

    #[test]
    fn a_scan_view_reads_the_frame_and_is_gone_after_the_guard() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(&dir);
        let frame = df!("gene" => ["USH2A", "MYO7A"], "n" => [1i64, 2]).unwrap();
        {
            let view = conn.scan(FrameStream::new(&frame).unwrap()).unwrap();
            assert_eq!(count(&conn, TEMP_VIEWS), 1);
            conn.execute(&format!(
                "CREATE TABLE genes AS SELECT * FROM {}",
                view.source()
            ))
            .unwrap();
        }
        assert_eq!(count(&conn, TEMP_VIEWS), 0, "the guard dropped its view");
        let back = conn.query("SELECT * FROM genes ORDER BY n", &[]).unwrap();
        assert!(back.equals_missing(&frame));
    }

    /// A panic while a view is registered and a transaction is open leaves the connection as
    /// it was: the transaction rolled back, the view dropped, the stream freed after it.
    #[test]
    fn a_panic_mid_write_rolls_back_and_drops_the_view() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(&dir);
        conn.execute("CREATE TABLE kept (x BIGINT); INSERT INTO kept VALUES (1)")
            .unwrap();
        let frame = df!("x" => [10i64, 20]).unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let view = conn.scan(FrameStream::new(&frame).unwrap()).unwrap();
            let _ = conn.transaction(|| {
                conn.execute(&format!("INSERT INTO kept SELECT x FROM {}", view.source()))?;
                panic!("a bug in the middle of a save");
                #[allow(unreachable_code)]
                Ok(())
            });
        }));
        assert!(caught.is_err());
        assert_eq!(count(&conn, "SELECT count(*) FROM kept"), 1, "rolled back");
        assert_eq!(count(&conn, TEMP_VIEWS), 0, "the view is gone");
        // The connection is usable: a new transaction begins, in the file's own catalog.
        conn.transaction(|| conn.execute("INSERT INTO kept VALUES (2)"))
            .unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM kept"), 2);
        let catalog = conn
            .query_text_rows_cached("SELECT current_database()", &[])
            .unwrap();
        assert_eq!(catalog, [[Some("ffi".to_owned())]]);
    }

    #[test]
    fn failures_carry_duckdb_s_error_type() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(&dir);
        let kind = |sql: &str| conn.query(sql, &[]).unwrap_err().kind;
        assert_eq!(
            kind("SELECT * FROM missing_table"),
            DuckdbErrorKind::Catalog
        );
        assert_eq!(kind("SELEC 1"), DuckdbErrorKind::InvalidSql);
        assert_eq!(
            kind("SELECT nope FROM (SELECT 1 AS x)"),
            DuckdbErrorKind::InvalidSql
        );
        assert_eq!(
            kind("SELECT CAST('x' AS INTEGER)"),
            DuckdbErrorKind::Conversion
        );
        assert_eq!(
            conn.query("SELECT ?", &[]).unwrap_err().kind,
            DuckdbErrorKind::InvalidInput
        );
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1)")
            .unwrap();
        let e = conn.execute("INSERT INTO t VALUES (1)").unwrap_err();
        assert_eq!(e.kind, DuckdbErrorKind::Constraint, "{}", e.message);
        let e = conn.query_unprepared("SELECT * FROM nowhere").unwrap_err();
        assert_eq!(e.kind, DuckdbErrorKind::Catalog, "{}", e.message);
        let e = conn
            .query_i64_cached("SELECT CAST('x' AS INTEGER)", &[])
            .unwrap_err();
        assert_eq!(e.kind, DuckdbErrorKind::Conversion, "{}", e.message);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.duckdb");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let Err(e) = Database::open(&path, &[]) else {
            panic!("opened a file that is not a database")
        };
        assert_eq!(e.kind, DuckdbErrorKind::Io, "{}", e.message);
    }
}
