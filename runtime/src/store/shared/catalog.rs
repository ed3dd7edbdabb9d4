//! The shared store's catalog on PostgreSQL: the connection settings (keepalives, the
//! password kept out of every message), the metadata tables and their creation, and the
//! connections a process opens, bounded: one session connection, which holds every compute
//! lock of the process (see `locks.rs`), and up to `limit - 1` reading connections beside it.
//!
//! A cluster of workers must fit the server's `max_connections`, whatever their number: a
//! connection the server refuses for lack of slots (SQLSTATE 53300) is waited for, with
//! backoff, rather than failing the worker, and a reading connection refused so falls back to
//! the session's. Once the catalog was reached, a server that goes away (restarted, say) is
//! waited for up to [`RECONNECT_LIMIT`]; a first connection that fails stops at once, so a
//! mistyped URL is not retried for a minute.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use postgres::{Client, Config};
use sha2::{Digest, Sha256};

use super::conn::{Conn, off_runtime};
use super::passfile;
use super::tls::{Tls, TlsSettings};
use crate::error::{Error, Result};

/// How long a connection may be silent before TCP keepalive probes start, how far apart they
/// are and how many may go unanswered, on both ends: a worker cut off by the network loses its
/// locks after about `IDLE + INTERVAL * COUNT` (16 s), not after the kernel's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_COUNT: u32 = 3;
/// How often the server checks, while a statement runs, that its client is still there
/// (`client_connection_check_interval`), so a killed worker's query does not hold its locks to
/// the end.
const CONNECTION_CHECK_MS: u32 = 1000;
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The connections a process opens to one store by default: the session connection and one
/// reading connection. A cluster of `N` worker processes needs at most `2 N` of the server's
/// slots, and runs with fewer (see the module's documentation).
pub const DEFAULT_CONNECTIONS: usize = 2;

/// How long a catalog that was reached before is waited for when it goes away (a server
/// restart takes seconds; a failover tens of them) before a call fails.
pub const RECONNECT_LIMIT: Duration = Duration::from_secs(60);

/// After the server refused a reading connection for lack of slots, how long reads stay on the
/// session connection before another reading connection is tried (each try costs the server a
/// process start).
const REFUSED_PAUSE: Duration = Duration::from_secs(10);

/// The first and the longest pause between two connection attempts (each pause is drawn
/// between half and all of it, so workers refused together do not come back together).
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often a wait for a connection slot says it is still waiting.
const SLOT_WAIT_REPORT: Duration = Duration::from_secs(60);

/// The catalog's tables. Text where the DuckDB store has VARCHAR, so one decoder reads both;
/// `_checkpoints` keeps the Python pipeline's four columns.
const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS _checkpoints (
        table_name TEXT PRIMARY KEY,
        created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        row_count INTEGER,
        description TEXT)",
    "CREATE TABLE IF NOT EXISTS _checkpoint_keys (
        table_name TEXT PRIMARY KEY,
        checkpoint_created_at TIMESTAMP,
        key TEXT,
        function TEXT,
        code TEXT,
        arguments TEXT,
        config TEXT,
        data_version TEXT,
        inputs TEXT,
        max_age_seconds BIGINT,
        lineage_created_at TIMESTAMP)",
    // Where each checkpoint's frame is: a Parquet file, relative to the data root (so each
    // machine may mount the root where it likes).
    "CREATE TABLE IF NOT EXISTS _checkpoint_files (
        table_name TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        bytes BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _checkpoint_batches (
        table_name TEXT NOT NULL,
        key TEXT NOT NULL,
        item TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS _checkpoint_batches_table ON _checkpoint_batches (table_name, key)",
    // The rows of finished batches, a Parquet file each, in the order they were saved.
    "CREATE TABLE IF NOT EXISTS _checkpoint_batch_files (
        seq BIGSERIAL PRIMARY KEY,
        table_name TEXT NOT NULL,
        key TEXT NOT NULL,
        path TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _checkpoint_batch_totals (
        table_name TEXT PRIMARY KEY,
        key TEXT,
        total_items BIGINT)",
    "CREATE TABLE IF NOT EXISTS _provenance (
        version TEXT,
        config_hash TEXT,
        created_at TIMESTAMP,
        steps_json TEXT)",
    "CREATE TABLE IF NOT EXISTS _usher_schema (
        name TEXT PRIMARY KEY,
        value TEXT)",
];

/// The version of the catalog's tables, recorded in `_usher_schema` as `schema_version` when
/// a store is created. 2 since 0.2.0, whose stores are also DuckLake catalogs: a 0.1 release,
/// which would save without a lake snapshot (leaving the lake's current version stale) and
/// delete the files its history reads, refuses them. Stores created at 1 keep it.
pub const CATALOG_SCHEMA_VERSION: i64 = 2;

/// A PostgreSQL catalog: how to connect, the name it is shown by, and this process's
/// connections to it.
pub(crate) struct Catalog {
    config: Config,
    /// `postgres://user@host:port/dbname`: what errors and logs name.
    name: String,
    /// The password's text, to scrub from any message that might quote it.
    password: Option<String>,
    /// The schema the tables live in (`current_schema()` of a connection), part of each lock's
    /// identity so two stores in one database never share locks.
    schema: String,
    /// The most connections open at once: the session's and `limit - 1` reading ones.
    limit: usize,
    session: Mutex<Session>,
    readers: Mutex<Readers>,
    /// How the connections do TLS (`sslmode`, `sslrootcert`: see `tls.rs`).
    tls: Tls,
}

/// The session connection, which holds every compute lock of this process, and what rides on
/// it.
pub(crate) struct Session {
    /// `None` once the connection was found lost, until the next use makes a new one.
    conn: Option<Conn>,
    /// How many connections were made: the locks taken on one are gone with it, so a lock
    /// remembers the epoch it was taken in and is known lost when the epoch moved on.
    pub epoch: u64,
    /// Whether the connection listens for other workers' release notices.
    pub listening: bool,
}

/// The reading connections.
#[derive(Default)]
struct Readers {
    idle: Vec<Conn>,
    /// Reading connections open, idle or in use.
    open: usize,
    /// No new reading connection before then: the server refused the last one for lack of
    /// slots.
    paused_until: Option<Instant>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("name", &self.name)
            .field("schema", &self.schema)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// Why a connection was refused or lost, when it is worth trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The server has no free connection slot (SQLSTATE 53300): wait as long as it takes, as
    /// for a lock.
    NoSlot,
    /// The server is not there or closed the connection (restarting, shutting down, the
    /// network): wait up to [`RECONNECT_LIMIT`] for a server reached before.
    Away,
}

impl Catalog {
    /// Parses `url` (a `postgres://` URL or a `key=value` string), connects once, and creates
    /// or checks the catalog's tables, serialised against other workers doing the same. The
    /// process opens at most `limit` connections to it (at least one).
    pub fn open(url: &str, create: bool, limit: usize) -> Result<Self> {
        let shown = redact(url);
        let password = password_of(url);
        let scrub = |message: String| scrub(message, password.as_deref());
        // The client's parser refuses libpq's TLS settings: they are read apart.
        let (url, tls) = TlsSettings::read(url, &|name| std::env::var_os(name));
        let mut config: Config = url.parse().map_err(|e: postgres::Error| Error::Postgres {
            store: shown.clone(),
            context: "reading the connection URL".to_owned(),
            code: None,
            message: scrub(e.to_string()),
        })?;
        // No password in the URL: where libpq would look (PGPASSWORD, the password file).
        if config.get_password().is_none()
            && let Some(found) = passfile::password(&config, &|name| std::env::var_os(name))
        {
            config.password(found);
        }
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .or(password);
        let name = display_name(&config);
        let tls = tls.apply(&mut config, &name)?;
        configure(&mut config);
        let mut catalog = Catalog {
            config,
            name,
            password,
            schema: String::new(),
            limit: limit.max(1),
            session: Mutex::new(Session {
                conn: None,
                epoch: 0,
                listening: false,
            }),
            readers: Mutex::new(Readers::default()),
            tls,
        };
        // The first connection does not wait for a server that is not there (a mistyped URL
        // fails at once), only for a free slot.
        let mut client = catalog.connect("connecting", false)?;
        catalog.schema = client
            .query_one("SELECT current_schema()::text", &[])
            .map_err(catalog.error("reading the current schema"))?
            .get::<_, Option<String>>(0)
            .ok_or_else(|| Error::Postgres {
                store: catalog.name.clone(),
                context: "reading the current schema".to_owned(),
                code: None,
                message: "the connection has no current schema (check search_path)".to_owned(),
            })?;
        if !create {
            let context = "opening the catalog";
            let exists: bool = client
                .query_one("SELECT to_regclass('_usher_schema') IS NOT NULL", &[])
                .map_err(catalog.error(context))?
                .get(0);
            if !exists {
                return Err(Error::Postgres {
                    store: catalog.name.clone(),
                    context: context.to_owned(),
                    code: None,
                    message: format!(
                        "no usher-pipeline catalog in schema {:?}: nothing was ever stored here",
                        catalog.schema
                    ),
                });
            }
        }
        catalog.create_tables(&mut client)?;
        let session = catalog
            .session
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        session.conn = Some(client);
        session.epoch = 1;
        Ok(catalog)
    }

    /// The catalog as errors name it, without a password.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One attempt at a new connection.
    fn attempt(&self) -> std::result::Result<Conn, postgres::Error> {
        self.tls.connect(&self.config).map(Conn::new)
    }

    /// A new connection, waiting (with backoff) while the server has no free slot, and, when
    /// `reached_before`, while it is away, up to [`RECONNECT_LIMIT`].
    fn connect(&self, context: &str, reached_before: bool) -> Result<Conn> {
        let started = Instant::now();
        let mut reported: Option<Instant> = None;
        let mut pause = RETRY_FIRST;
        loop {
            let e = match self.attempt() {
                Ok(conn) => return Ok(conn),
                Err(e) => e,
            };
            match refusal(&e) {
                Some(Refusal::NoSlot) => {
                    if reported.is_none_or(|at| at.elapsed() >= SLOT_WAIT_REPORT) {
                        tracing::info!(
                            store = self.name,
                            waited_s = started.elapsed().as_secs(),
                            "the server has no free connection slot: waiting for one"
                        );
                        reported = Some(Instant::now());
                    }
                }
                Some(Refusal::Away) if reached_before && started.elapsed() < RECONNECT_LIMIT => {
                    if reported.is_none() {
                        tracing::warn!(store = self.name, error = %self.error(context)(e),
                            "the catalog's server is away: reconnecting");
                        reported = Some(Instant::now());
                    }
                }
                _ => return Err(self.error(context)(e)),
            }
            std::thread::sleep(jittered(pause));
            pause = (pause * 3 / 2).min(RETRY_MAX);
        }
    }

    /// The session connection, made anew (a new epoch) if it was lost. Waits while another
    /// thread of this process uses it.
    pub fn session(&self, context: &str) -> Result<SessionGuard<'_>> {
        let mut guard = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.conn.as_ref().is_none_or(Conn::is_closed) {
            guard.conn = None;
            guard.listening = false;
            guard.conn = Some(self.connect(context, true)?);
            guard.epoch += 1;
        }
        Ok(SessionGuard { guard })
    }

    /// The session connection if no other thread uses it and it is not known lost, else
    /// `None`, without waiting.
    pub fn try_session(&self) -> Option<SessionGuard<'_>> {
        let guard = match self.session.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        SessionGuard::connected(guard)
    }

    /// The session connection unless it is known lost (then `None`: no new one is made),
    /// waiting while another thread of this process uses it.
    pub fn connected_session(&self) -> Option<SessionGuard<'_>> {
        SessionGuard::connected(self.session.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A connection for a statement or a transaction that needs no lock: an idle reading
    /// connection, else the session's if no other thread uses it, else a new reading connection
    /// while fewer than `limit - 1` are open, else the session's once it is free. So a
    /// process opens reading connections only when its threads contend for the session: a
    /// worker running one step at a time takes one of the server's slots.
    pub fn client(&self, context: &str) -> Result<Pooled<'_>> {
        let reader = |conn| Pooled::Reader {
            catalog: self,
            conn: Some(conn),
        };
        if let Some(conn) = self.idle_reader() {
            return Ok(reader(conn));
        }
        if let Some(session) = self.try_session() {
            return Ok(Pooled::Session(session));
        }
        match self.new_reader(context)? {
            Some(conn) => Ok(reader(conn)),
            None => self.session(context).map(Pooled::Session),
        }
    }

    /// Runs `work` on a [`client`](Self::client), once more on a new connection when the
    /// connection turns out lost (a server restarted since it was last used): for reads, which
    /// may run twice.
    pub fn read<T>(
        &self,
        context: &str,
        mut work: impl FnMut(&mut Conn) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut client = self.client(context)?;
        match work(&mut client) {
            Ok(value) => Ok(value),
            Err(e) if connection_lost(&e) => {
                client.discard();
                self.forget_idle();
                let mut client = self.client(context)?;
                work(&mut client).map_err(self.error(context))
            }
            Err(e) => Err(self.error(context)(e)),
        }
    }

    /// An idle reading connection not known closed.
    fn idle_reader(&self) -> Option<Conn> {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(conn) = readers.idle.pop() {
            if !conn.is_closed() {
                return Some(conn);
            }
            readers.open -= 1;
        }
        None
    }

    /// A new reading connection, or `None` when the session's is to be used: `limit - 1` are
    /// open, or the server has no slot (or is away) now.
    fn new_reader(&self, context: &str) -> Result<Option<Conn>> {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.open + 1 >= self.limit
            || readers
                .paused_until
                .is_some_and(|until| Instant::now() < until)
        {
            return Ok(None);
        }
        readers.open += 1;
        drop(readers);
        let attempt = self.attempt();
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        match attempt {
            Ok(conn) => Ok(Some(conn)),
            Err(e) => {
                readers.open -= 1;
                match refusal(&e) {
                    Some(Refusal::NoSlot) => {
                        tracing::debug!(
                            store = self.name,
                            "no free slot for a reading connection: reading on the session's"
                        );
                        readers.paused_until = Some(Instant::now() + REFUSED_PAUSE);
                        Ok(None)
                    }
                    // The session's connection waits for the server.
                    Some(Refusal::Away) => Ok(None),
                    None => Err(self.error(context)(e)),
                }
            }
        }
    }

    /// Closes the idle reading connections: after one was found lost, the others most likely
    /// were too (a server restart ends them all).
    fn forget_idle(&self) {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = std::mem::take(&mut readers.idle);
        readers.open -= idle.len();
        drop(readers);
        drop(idle);
    }

    /// Keeps a reading connection for the next caller, unless it is closed.
    fn give_back(&self, conn: Conn) {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if conn.is_closed() {
            readers.open -= 1;
        } else {
            readers.idle.push(conn);
        }
    }

    /// Turns a client error into [`Error::Postgres`] naming the catalog and `context`, with
    /// the password scrubbed from the message.
    pub fn error(&self, context: impl Into<String>) -> impl FnOnce(postgres::Error) -> Error + '_ {
        let context = context.into();
        move |e| Error::Postgres {
            store: self.name.clone(),
            context,
            code: e.code().map(|c| c.code().to_owned()),
            message: scrub(error_text(&e), self.password.as_deref()),
        }
    }

    /// The advisory-lock key of `table` in this catalog's schema: 64 bits of a SHA-256, so two
    /// tables never share a lock (a shared lock could deadlock a body that computes one table
    /// through a nested call of the other). The schema-creation lock is the key of `""`, which
    /// no table is named.
    pub fn lock_key(&self, table: &str) -> i64 {
        let mut hasher = Sha256::new();
        hasher.update(b"usher-pipeline\0");
        hasher.update(self.schema.as_bytes());
        hasher.update(b"\0");
        hasher.update(table.as_bytes());
        let digest = hasher.finalize();
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(bytes)
    }

    /// Creates the tables, or checks their version, under a transaction-scoped advisory lock:
    /// concurrent `CREATE TABLE IF NOT EXISTS` of several workers is not safe in PostgreSQL
    /// (they race on the catalog's unique index of type names).
    fn create_tables(&self, client: &mut Client) -> Result<()> {
        let context = "creating or checking the catalog tables";
        let mut tx = client.transaction().map_err(self.error(context))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&self.lock_key("")])
            .map_err(self.error(context))?;
        for ddl in DDL.iter().chain([&super::history::HISTORY_DDL]) {
            tx.batch_execute(ddl).map_err(self.error(context))?;
        }
        // The history's columns, added where missing (looked for first: ALTER TABLE locks the
        // table even when there is nothing to add).
        for (column, ty) in super::history::KEY_COLUMNS {
            let there: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE \
                     table_schema = current_schema() AND table_name = '_checkpoint_keys' \
                     AND column_name = $1)",
                    &[&column],
                )
                .map_err(self.error(context))?
                .get(0);
            if !there {
                tx.batch_execute(&format!(
                    "ALTER TABLE _checkpoint_keys ADD COLUMN {column} {ty}"
                ))
                .map_err(self.error(context))?;
            }
        }
        let recorded: Option<String> = tx
            .query_opt(
                "SELECT value FROM _usher_schema WHERE name = 'schema_version'",
                &[],
            )
            .map_err(self.error(context))?
            .and_then(|row| row.get(0));
        match recorded {
            None => {
                tx.execute(
                    "INSERT INTO _usher_schema (name, value) VALUES ('schema_version', $1)",
                    &[&CATALOG_SCHEMA_VERSION.to_string()],
                )
                .map_err(self.error(context))?;
            }
            Some(text) => {
                let found: i64 = text.parse().map_err(|_| Error::Postgres {
                    store: self.name.clone(),
                    context: context.to_owned(),
                    code: None,
                    message: format!("_usher_schema holds schema_version {text:?}, not a number"),
                })?;
                if found > CATALOG_SCHEMA_VERSION {
                    return Err(Error::NewerStore {
                        path: self.name.clone().into(),
                        found,
                        supported: CATALOG_SCHEMA_VERSION,
                    });
                }
            }
        }
        tx.commit().map_err(self.error(context))
    }
}

impl Drop for Catalog {
    fn drop(&mut self) {
        // The connections, closed together on one thread when this is a runtime's.
        let session = self
            .session
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .conn
            .take();
        let idle = std::mem::take(
            &mut self
                .readers
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .idle,
        );
        if session.is_some() || !idle.is_empty() {
            // Were no thread to start, each connection would see to itself (see `Conn`).
            let _ = off_runtime(move || drop((session, idle)));
        }
    }
}

/// The session connection, while this thread uses it. A connection found lost is dropped when
/// the guard is, so the next use makes a new one.
pub(crate) struct SessionGuard<'a> {
    guard: MutexGuard<'a, Session>,
}

impl<'a> SessionGuard<'a> {
    /// The guard of a session whose connection is not known lost.
    fn connected(guard: MutexGuard<'a, Session>) -> Option<Self> {
        guard
            .conn
            .as_ref()
            .is_some_and(|conn| !conn.is_closed())
            .then_some(SessionGuard { guard })
    }

    /// The session's state: its epoch, whether it listens.
    pub fn state(&mut self) -> &mut Session {
        &mut self.guard
    }

    /// The epoch of the connection (see [`Session::epoch`]).
    pub fn epoch(&self) -> u64 {
        self.guard.epoch
    }

    /// Drops the connection, which was lost (a statement on it failed so): the locks it held
    /// are gone with its session on the server.
    pub fn discard(&mut self) {
        self.guard.conn = None;
        self.guard.listening = false;
    }
}

impl std::ops::Deref for SessionGuard<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match &self.guard.conn {
            Some(conn) => conn,
            None => {
                unreachable!("a session guard is made with a connection, and discard ends its use")
            }
        }
    }
}

impl std::ops::DerefMut for SessionGuard<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        match &mut self.guard.conn {
            Some(conn) => conn,
            None => {
                unreachable!("a session guard is made with a connection, and discard ends its use")
            }
        }
    }
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        if self.guard.conn.as_ref().is_some_and(Conn::is_closed) {
            self.discard();
        }
    }
}

/// A connection for work that needs no compute lock: a reading connection, given back when
/// dropped, or the session's, while this thread uses it.
#[expect(
    clippy::large_enum_variant,
    reason = "a guard on the stack for one statement; boxing the client would allocate per read"
)]
pub(crate) enum Pooled<'a> {
    /// A reading connection.
    Reader {
        /// Where it goes back to.
        catalog: &'a Catalog,
        /// Always `Some` but while dropped.
        conn: Option<Conn>,
    },
    /// The session connection (no reading connection could be had).
    Session(SessionGuard<'a>),
}

impl Pooled<'_> {
    /// Drops the connection, which was lost, instead of keeping it.
    pub fn discard(mut self) {
        match &mut self {
            Pooled::Reader { catalog, conn } => {
                drop(conn.take());
                let mut readers = catalog
                    .readers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                readers.open -= 1;
            }
            Pooled::Session(guard) => guard.discard(),
        }
    }
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match self {
            Pooled::Reader {
                conn: Some(conn), ..
            } => conn,
            Pooled::Reader { conn: None, .. } => unreachable!("present until dropped"),
            Pooled::Session(guard) => guard,
        }
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        match self {
            Pooled::Reader {
                conn: Some(conn), ..
            } => conn,
            Pooled::Reader { conn: None, .. } => unreachable!("present until dropped"),
            Pooled::Session(guard) => guard,
        }
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Pooled::Reader { catalog, conn } = self
            && let Some(conn) = conn.take()
        {
            catalog.give_back(conn);
        }
    }
}

/// Whether `e` is worth another attempt, and how long (see [`Refusal`]); `None` for errors a
/// new attempt would meet again (a wrong password, a database that does not exist).
fn refusal(e: &postgres::Error) -> Option<Refusal> {
    if let Some(code) = e.code() {
        return match code.code() {
            "53300" => Some(Refusal::NoSlot),
            // admin_shutdown (a restart, pg_terminate_backend), crash_shutdown,
            // cannot_connect_now (starting up, shutting down), and connection exceptions.
            "57P01" | "57P02" | "57P03" => Some(Refusal::Away),
            other if other.starts_with("08") => Some(Refusal::Away),
            _ => None,
        };
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
                    | UnexpectedEof
            )
            .then_some(Refusal::Away);
        }
        source = cause.source();
    }
    e.is_closed().then_some(Refusal::Away)
}

/// Whether a statement failed because its connection is gone (its session, and the locks it
/// held, with it).
pub(crate) fn connection_lost(e: &postgres::Error) -> bool {
    e.is_closed() || refusal(e) == Some(Refusal::Away)
}

/// A pause between half of `pause` and all of it, drawn anew each time (the standard library's
/// randomly keyed hasher is the random source), so workers refused together spread out.
fn jittered(pause: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    let fraction = (hasher.finish() % 1000) as u32;
    pause / 2 + pause / 2 * fraction / 1000
}

/// The keepalive and liveness settings every connection gets, on the client's socket and
/// (through `options`) on the server's, and a name in `pg_stat_activity` that says which
/// machine and process holds a lock.
fn configure(config: &mut Config) {
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_COUNT);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name(&format!(
            "usher-pipeline {} pid {}",
            crate::atomic_file::host().unwrap_or_else(|| "host".to_owned()),
            std::process::id()
        ));
    }
    // A lock wait lasts as long as the other worker's body, and a lock holder's connection
    // sits idle while its body runs for hours: no timeout of the database's defaults may cut
    // either short (the user's own `options`, which come after these, still can).
    let ours = format!(
        "-c tcp_keepalives_idle={} -c tcp_keepalives_interval={} -c tcp_keepalives_count={} \
         -c client_connection_check_interval={CONNECTION_CHECK_MS} \
         -c statement_timeout=0 -c lock_timeout=0 -c idle_session_timeout=0",
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
        KEEPALIVE_COUNT
    );
    let options = match config.get_options() {
        Some(theirs) if !theirs.trim().is_empty() => format!("{ours} {theirs}"),
        _ => ours,
    };
    config.options(&options);
}

/// `postgres://user@host:port/dbname` of a parsed config: everything but the password.
fn display_name(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(
            config
                .get_ports()
                .iter()
                .copied()
                .chain(std::iter::repeat(5432)),
        )
        .map(|(host, port)| match host {
            postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

/// The message of a client error with its cause (the client's `Display` leaves out what the
/// server said).
fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {detail}", db.message()),
            None => db.message().to_owned(),
        },
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                // A TLS error's text already holds its cause's: not twice.
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    }
}

/// `url` without its password, for messages about a URL that did not parse.
pub(crate) fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{user}@{hosts}")
            }
            None => authority.to_owned(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|kv| !is_secret(kv.split('=').next().unwrap_or("")))
                    .collect();
                if kept.is_empty() {
                    path.to_owned()
                } else {
                    format!("{path}?{}", kept.join("&"))
                }
            }
            None => tail.to_owned(),
        };
        format!("{scheme}://{authority}{tail}")
    } else {
        redact_key_values(url)
    }
}

/// A `key=value` connection string without its `password` (or `sslpassword`) pair.
fn redact_key_values(text: &str) -> String {
    key_values(text)
        .iter()
        .filter(|pair| !is_secret(pair.key))
        .map(|pair| format!("{}={}", pair.key, pair.raw))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a connection setting holds a secret (the password, a client key's passphrase).
fn is_secret(key: &str) -> bool {
    key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword")
}

/// One `key = value` pair of a connection string.
pub(super) struct KeyValue<'a> {
    /// The key as written.
    pub key: &'a str,
    /// The value as written: quotes and `\` escapes kept.
    pub raw: &'a str,
    /// The value with its quotes and escapes removed: what the client reads.
    pub value: String,
    /// Where the pair (key to value's end) is in the string, in bytes.
    pub span: std::ops::Range<usize>,
}

/// The pairs of a `key=value` connection string, split as the client splits them (values may
/// be quoted; `\` escapes the next character, quoted or not; spaces may surround the `=`).
/// The one reader of this form here, for redacting and for taking out the TLS settings. A key
/// without `=` is a pair with an empty value, so a malformed string is still redacted.
pub(super) fn key_values(text: &str) -> Vec<KeyValue<'_>> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    // The byte offset of the `i`th character (the end of the text past the last).
    let at = |i: usize| chars.get(i).map_or(text.len(), |&(byte, _)| byte);
    let is_space = |i: usize| chars.get(i).is_some_and(|&(_, c)| c.is_whitespace());
    let is = |i: usize, wanted: char| chars.get(i).is_some_and(|&(_, c)| c == wanted);
    let mut i = 0;
    let mut pairs = Vec::new();
    while i < chars.len() {
        while is_space(i) {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !is(i, '=') && !is_space(i) {
            i += 1;
        }
        let key = &text[at(start)..at(i)];
        while is_space(i) {
            i += 1;
        }
        if is(i, '=') {
            i += 1;
        }
        while is_space(i) {
            i += 1;
        }
        let value_start = i;
        let quoted = is(i, '\'');
        if quoted {
            i += 1;
        }
        let mut value = String::new();
        while i < chars.len() && !(if quoted { is(i, '\'') } else { is_space(i) }) {
            if is(i, '\\') {
                i += 1;
            }
            if let Some(&(_, c)) = chars.get(i) {
                value.push(c);
            }
            i += 1;
        }
        if quoted && is(i, '\'') {
            i += 1;
        }
        let end = at(i.min(chars.len()));
        if !key.is_empty() {
            pairs.push(KeyValue {
                key,
                raw: &text[at(value_start)..end],
                value,
                span: at(start)..end,
            });
        }
    }
    pairs
}

/// The password written in `url`, if one can be found without parsing it fully.
fn password_of(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

/// `message` with every occurrence of `password` (and its percent-decoded form) replaced.
fn scrub(message: String, password: Option<&str>) -> String {
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return message;
    };
    let mut message = message.replace(password, "***");
    let decoded = percent_decode(password);
    if !decoded.is_empty() && decoded != password {
        message = message.replace(&decoded, "***");
    }
    message
}

/// `text` with its `%XX` escapes decoded (invalid UTF-8 replaced).
pub(super) fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_passwords() {
        assert_eq!(
            redact("postgres://usher:s3cret@db.lab:5433/genes?sslmode=disable&password=x"),
            "postgres://usher@db.lab:5433/genes?sslmode=disable"
        );
        assert_eq!(
            redact("postgresql://usher:p%40ss@db/genes"),
            "postgresql://usher@db/genes"
        );
        assert_eq!(redact("postgres://db/genes"), "postgres://db/genes");
        assert_eq!(
            redact("host=db user=usher password=s3cret dbname=genes"),
            "host=db user=usher dbname=genes"
        );
        assert_eq!(
            redact("host=db password = s3cret dbname=genes"),
            "host=db dbname=genes"
        );
        assert_eq!(
            redact("host=db password='a \\' b' user=u"),
            "host=db user=u"
        );
        // A backslash escapes a space outside quotes too: the whole password goes.
        assert_eq!(
            redact("host=db password=se\\ cret user=u"),
            "host=db user=u"
        );
        // A client key's passphrase is a secret too.
        assert_eq!(
            redact("host=db sslpassword='k e y' sslmode=require"),
            "host=db sslmode=require"
        );
        assert_eq!(
            redact("postgres://u@db/g?sslpassword=key&sslmode=require"),
            "postgres://u@db/g?sslmode=require"
        );
    }

    #[test]
    fn key_value_pairs_are_split_as_the_client_splits_them() {
        let text = "host = db options='-c a=b' path=/a\\ b key=";
        let pairs = key_values(text);
        let read: Vec<(&str, &str, &str)> = pairs
            .iter()
            .map(|pair| (pair.key, pair.raw, pair.value.as_str()))
            .collect();
        assert_eq!(
            read,
            [
                ("host", "db", "db"),
                ("options", "'-c a=b'", "-c a=b"),
                ("path", "/a\\ b", "/a b"),
                ("key", "", ""),
            ]
        );
        assert_eq!(&text[pairs[1].span.clone()], "options='-c a=b'");
        assert_eq!(&text[pairs[0].span.clone()], "host = db");
    }

    #[test]
    fn passwords_are_scrubbed_from_messages() {
        assert_eq!(
            password_of("postgres://u:p%40ss@h/d").as_deref(),
            Some("p%40ss")
        );
        assert_eq!(
            scrub("auth failed for p@ss and p%40ss".to_owned(), Some("p%40ss")),
            "auth failed for *** and ***"
        );
        assert_eq!(scrub("nothing".to_owned(), None), "nothing");
    }

    #[test]
    fn a_parsed_config_is_named_without_its_password() {
        let config: Config = "postgres://usher:s3cret@db.lab:5433/genes".parse().unwrap();
        assert_eq!(display_name(&config), "postgres://usher@db.lab:5433/genes");
        let config: Config = "host=db user=u password=s3cret dbname=g".parse().unwrap();
        assert_eq!(display_name(&config), "postgres://u@db:5432/g");
    }

    #[test]
    fn our_options_come_before_the_users() {
        let mut config: Config = "postgres://u@h/d?options=-c%20search_path%3Dlab"
            .parse()
            .unwrap();
        configure(&mut config);
        let options = config.get_options().unwrap();
        assert!(
            options.starts_with("-c tcp_keepalives_idle=10"),
            "{options}"
        );
        assert!(options.ends_with("-c search_path=lab"), "{options}");
        assert!(config.get_keepalives());
    }
}
