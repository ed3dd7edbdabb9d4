//! The connections a DuckDB store reads with, beside the one it writes with.
//!
//! DuckDB serves several connections to one database in a process, and each statement reads
//! the last committed state (MVCC): a read on a connection of its own never waits for a save
//! running on the writer's, and never sees half of it. So hits, loads, queries and exports take
//! a reader from this pool; saves, deletes and the batch bookkeeping stay on the one writer
//! connection, whose mutex keeps a transaction's statements together.

use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

use super::ffi::{Connection, Database, DuckError};

/// Idle readers kept for the next read; a burst of more concurrent reads opens more and closes
/// the extra ones when done. A connection costs a few hundred kilobytes and about 0.1 ms to
/// open.
const IDLE_READERS: usize = 8;

/// Every connection of a store, reader or writer, is set up the same way: strings come back
/// as Utf8View, which polars takes without a copy.
pub(super) fn configure(conn: &Connection) -> Result<(), DuckError> {
    conn.execute("SET arrow_output_version = '1.4'; SET produce_arrow_string_view = true;")
}

/// The pool of reading connections of one store.
pub(super) struct Readers {
    db: Arc<Database>,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// A pool over `db`, empty until the first read.
    pub(super) fn new(db: Arc<Database>) -> Self {
        Readers {
            db,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A connection for one read, idle or new; back to the pool when dropped.
    pub(super) fn get(&self) -> Result<Reader<'_>, DuckError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = Connection::connect(&self.db)?;
                configure(&conn)?;
                conn
            }
        };
        Ok(Reader {
            conn: Some(conn),
            pool: self,
        })
    }
}

/// A reading connection lent by [`Readers::get`].
pub(super) struct Reader<'a> {
    conn: Option<Connection>,
    pool: &'a Readers,
}

impl Deref for Reader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a lent reader holds its connection until dropped")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        // A read is one auto-committed statement: whatever happened (an error, a panic of the
        // caller), the connection has no transaction open and can serve the next read.
        if let Some(conn) = self.conn.take() {
            let mut idle = self
                .pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
    }
}
