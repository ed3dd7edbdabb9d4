//! Keeping the PostgreSQL client off the threads of async runtimes.
//!
//! The sync `postgres` client makes each call, and its goodbye to the server when dropped,
//! with `block_on` on a current-thread tokio runtime of its own. Tokio refuses that on a
//! thread that runs a runtime already (an executor thread of any tokio runtime, the thread in
//! `Runtime::block_on` under `#[tokio::main]`, a `spawn_blocking` thread): it panics, and the
//! client dropped while that panic unwinds panics again, which aborts the process. The store
//! is meant for async pipelines too and must not tie its users to one runtime, so it moves
//! the client's work to a thread of its own whenever the caller's thread belongs to a runtime:
//! every public call goes through [`off_runtime`], and the one owner of a client, [`Conn`],
//! closes it the same way wherever it is dropped.

use std::collections::HashMap;
use std::mem::ManuallyDrop;

use postgres::types::Type;
use postgres::{Client, Statement};

/// Whether this thread belongs to a tokio runtime, where the client's own runtime cannot run.
pub(crate) fn on_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Runs `work` where the client may block on its own runtime: right here, unless this thread
/// belongs to a tokio runtime, else on a new thread, waited for.
///
/// The wait blocks the caller's thread for as long as `work` takes, as any sync call from
/// async code does; that is fine for a statement or a file read, and why the one wait that can
/// last hours (another worker's compute lock) is never made this way from async code (see
/// `lock_table_async`). Fails only when no thread can be started.
pub(crate) fn off_runtime<R: Send>(work: impl FnOnce() -> R + Send) -> std::io::Result<R> {
    if !on_runtime() {
        return Ok(work());
    }
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("usher-postgres".to_owned())
            .spawn_scoped(scope, work)?;
        match thread.join() {
            Ok(value) => Ok(value),
            // The work's own panic, passed on as if it had happened here.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The owner of every connection the store makes: a client that is closed off any runtime's
/// thread when dropped, so no path (an idle connection given back, a lock released by user
/// code on an executor thread, the last store handle dropped in a task) can forget to.
pub(crate) struct Conn {
    /// Always `Some` but while [`Drop`] hands the client to the thread that closes it.
    client: Option<Client>,
    /// Statements prepared on this connection, by their text (see [`Conn::prepared`]).
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    /// Takes ownership of `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client: Some(client),
            statements: HashMap::new(),
        }
    }

    /// `sql` prepared on this connection with parameters of `types`, once: for the statements
    /// of every lookup whose planning costs more than their run (a hit's judgement of the
    /// lake), so each later use is one round trip without planning.
    pub fn prepared(
        &mut self,
        sql: &'static str,
        types: &[Type],
    ) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client_mut().prepare_typed(sql, types)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    fn client(&self) -> &Client {
        match &self.client {
            Some(client) => client,
            None => unreachable!("a Conn's client is taken by its Drop only"),
        }
    }

    fn client_mut(&mut self) -> &mut Client {
        match &mut self.client {
            Some(client) => client,
            None => unreachable!("a Conn's client is taken by its Drop only"),
        }
    }

    /// Whether the connection is known to be closed (no call to the server).
    pub fn is_closed(&self) -> bool {
        self.client().is_closed()
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        debug_assert!(
            !on_runtime(),
            "a PostgreSQL client used on an async runtime's thread: the call must go through off_runtime"
        );
        self.client()
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        debug_assert!(
            !on_runtime(),
            "a PostgreSQL client used on an async runtime's thread: the call must go through off_runtime"
        );
        self.client_mut()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        // In a `ManuallyDrop` while it travels: if the thread cannot start, the closure is
        // dropped here without closing the client, which would panic on this thread; it stays
        // open until the process ends instead.
        let client = ManuallyDrop::new(client);
        if let Err(e) = off_runtime(move || drop(ManuallyDrop::into_inner(client))) {
            tracing::warn!(error = %e,
                "cannot start a thread to close a PostgreSQL connection: left open until the process ends");
        }
    }
}
