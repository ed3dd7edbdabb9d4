//! The connections a DuckDB instance reads with, beside the one it writes with: a pool, used
//! by the file store and by the shared store's data root alike.
//!
//! DuckDB serves several connections to one database in a process, and each statement reads
//! the last committed state (MVCC): a read on a connection of its own never waits for a save
//! running on the writer's, and never sees half of it. So hits, loads, queries and exports take
//! a reader from this pool; saves, deletes and the batch bookkeeping of the file store stay on
//! its one writer connection, whose mutex keeps a transaction's statements together.

use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

use super::ffi::{Connection, Database, DuckError};

/// Idle readers kept for the next read; a burst of more concurrent reads opens more and closes
/// the extra ones when done. A connection costs a few hundred kilobytes and about 0.1 ms to
/// open.
const IDLE_READERS: usize = 8;

/// Every connection of a store, reader or writer, is set up the same way: strings come back
/// as Utf8View, which polars takes without a copy.
pub(crate) fn configure(conn: &Connection) -> Result<(), DuckError> {
    conn.execute("SET arrow_output_version = '1.4'; SET produce_arrow_string_view = true;")
}

/// The pool of reading connections of one store.
pub(crate) struct Readers {
    db: Arc<Database>,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// A pool over `db`, empty until the first read.
    pub(crate) fn new(db: Arc<Database>) -> Self {
        Readers {
            db,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A new connection of the instance, set up as every reader is, for work that leaves
    /// something behind on it (views, settings) and so is not pooled.
    pub(crate) fn connect(&self) -> Result<Connection, DuckError> {
        let conn = Connection::connect(&self.db)?;
        configure(&conn)?;
        Ok(conn)
    }

    /// A connection for one read that leaves nothing behind on it, idle or new; back to the
    /// pool when dropped.
    pub(crate) fn get(&self) -> Result<Reader<'_>, DuckError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect()?,
        };
        Ok(Reader {
            conn: Some(conn),
            pool: self,
        })
    }
}

/// A reading connection lent by [`Readers::get`].
pub(crate) struct Reader<'a> {
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
