//! The checkpoint metadata of a store file, cached in the process.
//!
//! A checkpoint hit asks "is there a checkpoint, and with which key?" before it loads the table.
//! Asked of DuckDB, that is one more statement, and a DuckDB statement costs about as much as
//! loading a 1,000-row table. The answer can be kept in memory because nobody outside this
//! process can change it while the process has the file open: DuckDB lets one process at a time
//! open a file for writing, and none while another has it open at all. Inside the process, all
//! stores on one file share one [`Metadata`], and every operation that may write the metadata
//! tables (a save, a delete, an adoption, any [`query`](super::PipelineStore::query)) marks it
//! stale when it is done.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use crate::model::CheckpointInfo;

/// Every checkpoint of a store: `_checkpoints` with its valid keys, by table name.
pub(crate) type Checkpoints = HashMap<String, CheckpointInfo>;

/// The cached metadata of one store file, shared by the process's stores on that file.
#[derive(Default)]
pub(crate) struct Metadata {
    /// Bumped after every operation that may have written `_checkpoints` or `_checkpoint_keys`.
    generation: AtomicU64,
    /// Bumped before every such operation: with `generation`, tells a reader whether any write
    /// was in flight while it read (a sequence lock).
    started: AtomicU64,
    /// The checkpoints as read at a generation.
    snapshot: Mutex<Option<(u64, Arc<Checkpoints>)>>,
}

impl Metadata {
    /// The metadata shared by every store on `path` in this process. Keyed by the canonical
    /// path, so `./a.duckdb` and `dir/../a.duckdb` share it, as they share DuckDB's instance.
    pub(crate) fn for_file(path: &Path) -> Arc<Metadata> {
        static FILES: OnceLock<Mutex<HashMap<PathBuf, Weak<Metadata>>>> = OnceLock::new();
        let key = std::fs::canonicalize(path)
            .or_else(|_| std::path::absolute(path))
            .unwrap_or_else(|_| path.to_owned());
        let mut files = FILES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = files.get(&key).and_then(Weak::upgrade) {
            return shared;
        }
        // The last store on a file is gone: its entry may go too (the file may change now).
        files.retain(|_, weak| weak.strong_count() > 0);
        let shared = Arc::new(Metadata::default());
        files.insert(key, Arc::downgrade(&shared));
        shared
    }

    /// The checkpoints, from the snapshot if nothing was written since it was read, else read
    /// anew with `read`.
    pub(crate) fn checkpoints<E>(
        &self,
        read: impl FnOnce() -> Result<Checkpoints, E>,
    ) -> Result<Arc<Checkpoints>, E> {
        // Read the generation before the data: a write that commits in between bumps it
        // after, so the snapshot taken here is never mistaken for a newer one.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((at, checkpoints)) = &*self.lock()
            && *at == generation
        {
            return Ok(Arc::clone(checkpoints));
        }
        let checkpoints = Arc::new(read()?);
        *self.lock() = Some((generation, Arc::clone(&checkpoints)));
        Ok(checkpoints)
    }

    /// Notes that an operation that may write the metadata tables begins.
    pub(crate) fn writing(&self) {
        self.started.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks the snapshot stale: the metadata tables may have changed.
    pub(crate) fn written(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Runs `read`, and says whether it ran undisturbed: no write of the process (announced
    /// by [`writing`](Self::writing), finished by [`written`](Self::written)) was in flight
    /// when it began, and none began until it ended. What an undisturbed read saw of the file
    /// is one state of it, the one the snapshot describes.
    pub(crate) fn undisturbed<T>(&self, read: impl FnOnce() -> T) -> (T, bool) {
        let finished = self.generation.load(Ordering::Acquire);
        let started = self.started.load(Ordering::Acquire);
        let value = read();
        let quiet = started == finished && self.started.load(Ordering::Acquire) == started;
        (value, quiet)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, Arc<Checkpoints>)>> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(table: &str) -> Checkpoints {
        HashMap::from([(
            table.to_owned(),
            CheckpointInfo {
                table_name: table.to_owned(),
                created_at: None,
                row_count: Some(1),
                description: None,
                key: None,
                lineage: Default::default(),
            },
        )])
    }

    #[test]
    fn reads_again_only_after_a_write() {
        let meta = Metadata::default();
        let mut reads = 0;
        let mut read = |t: &str| {
            reads += 1;
            Ok::<_, ()>(one(t))
        };
        assert!(meta.checkpoints(|| read("a")).unwrap().contains_key("a"));
        assert!(meta.checkpoints(|| read("b")).unwrap().contains_key("a"));
        meta.written();
        assert!(meta.checkpoints(|| read("b")).unwrap().contains_key("b"));
        assert!(meta.checkpoints(|| read("c")).unwrap().contains_key("b"));
        assert_eq!(reads, 2);
    }

    #[test]
    fn a_read_is_undisturbed_only_without_a_write_in_flight_or_begun() {
        let meta = Metadata::default();
        assert!(meta.undisturbed(|| ()).1);
        assert!(
            !meta.undisturbed(|| meta.writing()).1,
            "a write began during the read"
        );
        assert!(!meta.undisturbed(|| ()).1, "a write is in flight");
        meta.written();
        assert!(meta.undisturbed(|| ()).1, "the write is over");
        assert!(
            !meta
                .undisturbed(|| {
                    meta.writing();
                    meta.written();
                })
                .1
        );
    }

    #[test]
    fn a_failed_read_is_not_cached() {
        let meta = Metadata::default();
        assert!(meta.checkpoints(|| Err::<Checkpoints, _>("boom")).is_err());
        assert!(
            meta.checkpoints(|| Ok::<_, ()>(one("a")))
                .unwrap()
                .contains_key("a")
        );
    }

    #[test]
    fn stores_on_one_file_share_it_until_the_last_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.duckdb");
        std::fs::write(&path, b"").unwrap();
        let a = Metadata::for_file(&path);
        std::fs::create_dir(dir.path().join("x")).unwrap();
        let b = Metadata::for_file(&dir.path().join("x/../s.duckdb"));
        assert!(Arc::ptr_eq(&a, &b));
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none());
        let c = Metadata::for_file(&path);
        assert_eq!(c.generation.load(Ordering::Acquire), 0);
    }
}
