//! The shared store's compute locks: a session-level advisory lock per table, so one worker of
//! all those sharing the store computes a missing table.
//!
//! Every lock a process holds is taken on its one session connection (`Catalog::session`), so
//! a process holds one connection however many tables it computes, and the result computed
//! under a lock is registered on that same connection: a worker whose session ended (the
//! server restarted, the session was terminated, the network failed) lost its locks with it,
//! and finds out when it registers (the session's epoch moved on, or the statement fails)
//! instead of registering over another worker's result.
//!
//! A call waiting for another worker's table holds no connection of its own: it tries the lock
//! again whenever a release notice arrives (`LISTEN`/`NOTIFY` on the session connection, which
//! listens while any call of the process waits) or another thread of the process releases it,
//! and at least every [`POLL`], which covers a holder that died without a notice.
//! Advisory locks are re-entrant within a session, so the process itself keeps two of its
//! threads from holding one table: [`Locks`] knows which tables it holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;

use super::catalog::{Catalog, SessionGuard, connection_lost};
use crate::error::{Error, Result};
use crate::store::TableLock;

/// How often a waiting call tries the lock without a notice: a holder killed (or cut off) ends
/// its session without one, so this is how soon a killed worker's table is taken over. One
/// `pg_try_advisory_lock` per waiting call and poll: 200 waiting workers ask 800 times a
/// second, a few percent of one server core.
pub(super) const POLL: Duration = Duration::from_millis(250);

/// How long a waiting call listens on the session connection at a time: other calls of the
/// process wait at most this long to use it.
const LISTEN_SLICE: Duration = Duration::from_millis(10);

/// The compute locks of one store in this process. Cheap to clone: clones share the locks.
#[derive(Clone)]
pub(crate) struct Locks {
    shared: Arc<Shared>,
}

struct Shared {
    catalog: Arc<Catalog>,
    /// The tables this process holds the lock of, with the lock's key and the session epoch it
    /// was taken in.
    held: Mutex<HashMap<String, Held>>,
    /// Release notices seen, per lock key: a waiting call tries again when its key's count
    /// moved on.
    notices: Mutex<HashMap<i64, u64>>,
    /// Woken on every notice.
    noticed: Condvar,
    /// Calls of this process waiting for a lock; the session listens while there are any.
    waiters: AtomicUsize,
    /// The notice channel of this catalog's schema.
    channel: String,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    key: i64,
    epoch: u64,
}

impl Locks {
    /// The locks of `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        // One channel per schema (the lock keys' namespace): workers of other stores in the
        // database are not woken by these releases.
        let channel = format!("usher_locks_{:016x}", catalog.lock_key("") as u64);
        Self {
            shared: Arc::new(Shared {
                catalog,
                held: Mutex::new(HashMap::new()),
                notices: Mutex::new(HashMap::new()),
                noticed: Condvar::new(),
                waiters: AtomicUsize::new(0),
                channel,
            }),
        }
    }

    /// Whether this process holds `table`'s lock.
    pub fn held(&self, table: &str) -> bool {
        self.shared.held_locks().contains_key(table)
    }

    /// `table`'s lock if no one holds it (in this process or another), else `None`.
    pub fn try_lock(&self, table: &str) -> Result<Option<TableLock>> {
        let key = self.shared.catalog.lock_key(table);
        self.attempt(table, key, &format!("locking table {table:?}"))
    }

    /// `table`'s lock, waiting while another worker (or thread) holds it. `Ok(None)` when
    /// `give_up` was set meanwhile (an async wait whose future was dropped).
    pub fn lock(&self, table: &str, give_up: Option<&AtomicBool>) -> Result<Option<TableLock>> {
        let shared = &self.shared;
        let key = shared.catalog.lock_key(table);
        let context = format!("locking table {table:?}");
        if let Some(lock) = self.attempt(table, key, &context)? {
            return Ok(Some(lock));
        }
        let _waiting = Waiting::begin(shared);
        if let Ok(Some(holder)) = shared.holder(key) {
            tracing::info!(
                table,
                holder,
                "waiting for another worker computing the table"
            );
        }
        loop {
            let seen = shared.notices_of(key);
            // Listening began before this attempt, so a release after it is noticed.
            if let Some(lock) = self.attempt(table, key, &context)? {
                return Ok(Some(lock));
            }
            if !shared.await_notice(key, seen, give_up) {
                return Ok(None);
            }
        }
    }

    /// Waits until `table`'s lock, found held, is released (a notice, or another thread of
    /// this process letting go) or [`POLL`] passed, without taking it: the caller looks at
    /// the checkpoint again, then tries the lock. Returns at once when `give_up` is set (an
    /// async wait whose future was dropped).
    pub fn wait_released(&self, table: &str, give_up: Option<&AtomicBool>) -> Result<()> {
        let shared = &self.shared;
        let key = shared.catalog.lock_key(table);
        let seen = shared.notices_of(key);
        let _waiting = Waiting::begin(shared);
        // Listening now: a release before this look would otherwise go unnoticed until the
        // poll.
        match shared.holder(key) {
            Ok(None) => return Ok(()),
            Ok(Some(holder)) => tracing::info!(
                table,
                holder,
                "waiting for another worker computing the table"
            ),
            // Waited for as if held: the poll bounds the wait.
            Err(e) => tracing::debug!(table, error = %e, "cannot tell who holds a lock"),
        }
        shared.await_notice(key, seen, give_up);
        Ok(())
    }

    /// One try at `table`'s lock on the session connection, made anew once if it was lost.
    fn attempt(&self, table: &str, key: i64, context: &str) -> Result<Option<TableLock>> {
        let shared = &self.shared;
        // Held while the server is asked, so two threads of this process never both get the
        // (re-entrant) lock.
        let mut held = shared.held_locks();
        if held.contains_key(table) {
            return Ok(None);
        }
        let mut retried = false;
        let (got, epoch) = loop {
            let mut session = shared.catalog.session(context)?;
            match session.query_one("SELECT pg_try_advisory_lock($1)", &[&key]) {
                Ok(row) => break (row.get::<_, bool>(0), session.epoch()),
                Err(e) if connection_lost(&e) && !retried => {
                    session.discard();
                    retried = true;
                }
                Err(e) => {
                    if connection_lost(&e) {
                        session.discard();
                    }
                    return Err(shared.catalog.error(context)(e));
                }
            }
        };
        if !got {
            return Ok(None);
        }
        held.insert(table.to_owned(), Held { key, epoch });
        Ok(Some(TableLock::new(HeldLock {
            shared: Arc::clone(shared),
            table: table.to_owned(),
            held: Held { key, epoch },
        })))
    }

    /// Runs `work` on the session connection, provided it still holds `table`'s lock (this
    /// process took it, and the session it was taken in has not ended): the registration of
    /// what was computed under the lock. Otherwise, or if the session ends during `work`,
    /// [`Error::LockLost`].
    pub fn on_lock<T>(
        &self,
        table: &str,
        context: &str,
        work: impl FnOnce(&mut Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let shared = &self.shared;
        let lost = |reason: String| Error::LockLost {
            store: shared.catalog.name().to_owned(),
            table: table.to_owned(),
            reason,
        };
        let Some(held) = shared.held_locks().get(table).copied() else {
            return Err(lost("this process does not hold it".to_owned()));
        };
        let Some(mut session) = shared.catalog.connected_session() else {
            return Err(lost("the session holding it ended".to_owned()));
        };
        if session.epoch() != held.epoch {
            return Err(lost(
                "the session holding it ended (a new one has been made since)".to_owned(),
            ));
        }
        match work(&mut session) {
            Ok(value) => Ok(value),
            Err(e) if connection_lost(&e) => {
                session.discard();
                let Error::Postgres { message, .. } = shared.catalog.error(context)(e) else {
                    unreachable!("Catalog::error makes Error::Postgres")
                };
                Err(lost(format!("the session holding it ended: {message}")))
            }
            Err(e) => Err(shared.catalog.error(context)(e)),
        }
    }
}

impl Shared {
    fn held_locks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notices_of(&self, key: i64) -> u64 {
        let notices = self.notices.lock().unwrap_or_else(PoisonError::into_inner);
        notices.get(&key).copied().unwrap_or(0)
    }

    /// Waits until a release of `key` is noticed after `seen` notices, or [`POLL`] passed;
    /// `false` when `give_up` was set meanwhile.
    fn await_notice(&self, key: i64, seen: u64, give_up: Option<&AtomicBool>) -> bool {
        let until = Instant::now() + POLL;
        while self.notices_of(key) == seen && Instant::now() < until {
            if give_up.is_some_and(|g| g.load(Ordering::SeqCst)) {
                return false;
            }
            self.listen(key, seen);
        }
        true
    }

    /// Records a release of `key` and wakes the calls waiting in this process.
    fn notice(&self, key: i64) {
        let mut notices = self.notices.lock().unwrap_or_else(PoisonError::into_inner);
        *notices.entry(key).or_default() += 1;
        self.noticed.notify_all();
    }

    /// Waits up to [`LISTEN_SLICE`] for a release notice: on the session connection when no
    /// other thread uses it (reading every notice that arrived, for every waiting call),
    /// else for another thread's word.
    fn listen(&self, key: i64, seen: u64) {
        let Some(mut session) = self.catalog.try_session() else {
            let notices = self.notices.lock().unwrap_or_else(PoisonError::into_inner);
            if notices.get(&key).copied().unwrap_or(0) == seen {
                let _ = self
                    .noticed
                    .wait_timeout(notices, LISTEN_SLICE)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            return;
        };
        if let Err(e) = self.keep_listening(&mut session) {
            tracing::debug!(error = %e, "cannot listen for lock releases: polling");
            if connection_lost(&e) {
                session.discard();
            }
            drop(session);
            std::thread::sleep(LISTEN_SLICE);
            return;
        }
        let mut keys = Vec::new();
        let mut read =
            |item: std::result::Result<Option<postgres::Notification>, postgres::Error>| match item
            {
                Ok(Some(note)) => {
                    if note.channel() == self.channel
                        && let Ok(key) = note.payload().parse::<i64>()
                    {
                        keys.push(key);
                    }
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    tracing::debug!(error = %e, "lost the connection listening for lock releases");
                    false
                }
            };
        {
            let mut notifications = session.notifications();
            let first = notifications.timeout_iter(LISTEN_SLICE).next();
            if read(first) {
                // Whatever else arrived with it, without waiting.
                let mut rest = notifications.iter();
                while read(rest.next()) {}
            }
        }
        // A connection that closed while listening is dropped with the guard.
        drop(session);
        for key in keys {
            self.notice(key);
        }
    }

    /// Makes the session listen while calls wait, and stop once none do, so an idle process
    /// is not sent every release of the cluster.
    fn keep_listening(
        &self,
        session: &mut SessionGuard<'_>,
    ) -> std::result::Result<(), postgres::Error> {
        let waiting = self.waiters.load(Ordering::SeqCst) > 0;
        if waiting == session.state().listening {
            return Ok(());
        }
        let statement = if waiting { "LISTEN" } else { "UNLISTEN" };
        // The channel is made of hex digits (see `Locks::new`): nothing to quote.
        session.batch_execute(&format!("{statement} {}", self.channel))?;
        session.state().listening = waiting;
        if !waiting {
            // Notices that arrived before the UNLISTEN: no one is waiting for them.
            let mut notifications = session.notifications();
            let mut pending = notifications.iter();
            while let Ok(Some(_)) = pending.next() {}
        }
        Ok(())
    }

    /// Who holds `key` (their `application_name`: host and process), `None` when no session
    /// does.
    fn holder(&self, key: i64) -> Result<Option<String>> {
        let bits = key as u64;
        let (class, object) = ((bits >> 32) as i64, (bits & 0xffff_ffff) as i64);
        self.catalog
            .read("finding who holds a lock", |client| {
                client.query_opt(
                    "SELECT coalesce(a.application_name || ' (' || \
                     coalesce(host(a.client_addr), 'local') || ')', 'another worker') \
                     FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                     AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.database = \
                     (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1",
                    &[&class, &object],
                )
            })
            .map(|row| row.map(|row| row.get::<_, Option<String>>(0).unwrap_or_default()))
    }
}

/// A call of this process waiting for a lock, counted while it lives: the first makes the
/// session listen, the last (when it next uses the session) makes it stop.
struct Waiting<'a> {
    shared: &'a Shared,
}

impl<'a> Waiting<'a> {
    fn begin(shared: &'a Shared) -> Self {
        shared.waiters.fetch_add(1, Ordering::SeqCst);
        // Listening now, before the attempt that follows, so no release is missed; if the
        // session cannot listen now, `listen` tries again and polling covers the gap.
        if let Ok(mut session) = shared.catalog.session("listening for lock releases")
            && let Err(e) = shared.keep_listening(&mut session)
            && connection_lost(&e)
        {
            session.discard();
        }
        Waiting { shared }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let shared = self.shared;
        if shared.waiters.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(mut session) = shared.catalog.connected_session()
            && let Err(e) = shared.keep_listening(&mut session)
            && connection_lost(&e)
        {
            session.discard();
        }
    }
}

/// A compute lock this process holds: released when dropped, with a notice to the waiting
/// workers. A session that ended has released it already.
struct HeldLock {
    shared: Arc<Shared>,
    table: String,
    held: Held,
}

impl HeldLock {
    fn release(&self) {
        let shared = &self.shared;
        let mut held = shared.held_locks();
        held.remove(&self.table);
        // Only on the session the lock was taken in: a new session holds none of the old one's
        // locks, and may hold this table's again, taken by another call since.
        if let Some(mut session) = shared.catalog.connected_session()
            && session.epoch() == self.held.epoch
        {
            // The notice is sent when the statement commits, after the unlock.
            let released = session.query_one(
                "SELECT pg_advisory_unlock($1), pg_notify($2, $3)",
                &[&self.held.key, &shared.channel, &self.held.key.to_string()],
            );
            match released {
                Ok(row) if row.get::<_, bool>(0) => {}
                Ok(_) => tracing::warn!(
                    table = self.table,
                    "a compute lock was not held when released"
                ),
                Err(e) => {
                    tracing::warn!(table = self.table, error = %e,
                        "cannot release a compute lock: closing the session, which releases it");
                    // A session that cannot unlock is not used for any other lock.
                    session.discard();
                }
            }
        }
        drop(held);
        shared.notice(self.held.key);
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Locks are dropped by user code, on an executor thread as often as not.
        if let Err(e) = super::conn::off_runtime(|| self.release()) {
            tracing::warn!(table = self.table, error = %e,
                "cannot start a thread to release a compute lock: it is released when the session ends");
        }
    }
}
