//! `Batches`: resumable progress inside one checkpointed call, for loops that fetch for hours.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError};

use polars::prelude::DataFrame;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::CheckpointVersion;
use crate::pipeline::Pipeline;
use crate::pipeline::lineage::Recorder;
use crate::progress::{Progress, ProgressEvent};
use crate::store::CheckpointStore;

/// The finished batches of a `#[checkpointed(..., batches = name)]` function: each batch is
/// saved as it finishes, so a killed run resumes where it stopped and fetches at most the batch
/// that was in flight again.
///
/// ```ignore
/// // (compiled and run in the repository's tests/it/batches.rs)
/// # use usher_pipeline::polars::prelude::*;
/// # use usher_pipeline::{checkpointed, Pipeline, Error};
/// # fn search(genes: &[String]) -> Result<DataFrame, Error> { Ok(df!("gene" => genes)?) }
/// #[checkpointed(table = "literature", batches = done)]
/// fn fetch_literature(ctx: &Pipeline, genes: Vec<String>) -> Result<DataFrame, Error> {
///     for batch in done.pending(&genes, 500)? {
///         let hits = search(&batch)?;        // the slow part
///         done.save(&batch, &hits)?;         // kept, even if the run is killed later
///     }
///     done.finish()                          // every batch's rows, this run's and earlier ones'
/// }
/// ```
///
/// Progress belongs to the call's checkpoint key *and* to the versions of the inputs the body
/// has when the loop starts (its `reads(...)` and the checkpointed calls made before its first
/// batch): a run with other arguments or other code, or one whose inputs were recomputed to
/// other data since, discards it instead of mixing it in (the saving step's reason says so), and
/// so does a forced run. When the function returns,
/// its frame replaces the partial rows in the same transaction that saves the checkpoint.
/// Items are told apart by their JSON (serde) form.
pub struct Batches<'a, S> {
    /// The pipeline's store, where progress is kept.
    store: &'a S,
    /// The pipeline's progress display, if it has one. (The pipeline itself is not kept: its
    /// config type has no part in a loop.)
    progress: Option<&'a dyn Progress>,
    table: &'static str,
    /// The call's checkpoint key.
    key: String,
    /// The call's key under an older release's code hash of the same code, if it differs.
    legacy_key: Option<String>,
    /// Forced: progress is discarded on first use rather than resumed.
    fresh: bool,
    /// The body's inputs so far, and where a discard is noted for the saving step.
    recorder: Recorder,
    /// The key progress is saved under (the call's key and its inputs' versions) with the
    /// items finished so far; both settled on first use.
    done: Mutex<Option<(String, HashSet<String>)>>,
    /// How many items the loop has, once [`pending`](Self::pending) has seen them.
    total: Mutex<Option<usize>>,
}

impl<S> std::fmt::Debug for Batches<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("table", &self.table)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The JSON forms that tell `items` apart.
fn item_texts<T: Serialize>(table: &str, items: &[T]) -> Result<Vec<String>> {
    items
        .iter()
        .map(|item| {
            serde_json::to_value(item)
                .map(|v| v.to_string())
                .map_err(|e| {
                    Error::Format(format!("cannot identify a batch item of {table:?}: {e}"))
                })
        })
        .collect()
}

impl<'a, S: CheckpointStore> Batches<'a, S> {
    pub(crate) fn new<C>(
        pipeline: &'a Pipeline<S, C>,
        table: &'static str,
        (key, legacy_key): (String, Option<String>),
        fresh: bool,
        recorder: Recorder,
    ) -> Self {
        Self {
            store: pipeline.store(),
            progress: pipeline.progress.as_deref(),
            table,
            key,
            legacy_key,
            fresh,
            recorder,
            done: Mutex::new(None),
            total: Mutex::new(None),
        }
    }

    /// Runs `f` on the progress key and the finished items, settling both on first use: the
    /// key from the inputs recorded by then, the items from the store (progress under any other
    /// key discarded, and the discard noted for the saving step).
    fn with_done<T>(&self, f: impl FnOnce(&str, &mut HashSet<String>) -> T) -> Result<T> {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((key, done)) = done.as_mut() {
            return Ok(f(key, done));
        }
        let inputs = self.recorder.inputs();
        let mut key = progress_key(&self.key, &inputs);
        let store = self.store;
        let items = if self.fresh {
            store.discard_batches(self.table)?;
            Vec::new()
        } else {
            let pending = store
                .pending_batches()?
                .into_iter()
                .find(|p| p.table == self.table && p.key != key);
            let legacy = self.legacy_key.as_ref().map(|k| progress_key(k, &inputs));
            if let Some(pending) = &pending
                && legacy.as_ref() == Some(&pending.key)
            {
                key = pending.key.clone();
            } else if let Some(other) = pending {
                let call = |k: &str| k.split('+').next().map(str::to_owned);
                let why = if call(&other.key) == call(&key)
                    || call(&other.key) == self.legacy_key.as_deref().and_then(call)
                {
                    "made from other versions of its inputs"
                } else {
                    "made under another key"
                };
                tracing::info!(
                    table = self.table,
                    items = other.items,
                    why,
                    "earlier progress discarded"
                );
                self.recorder
                    .note(format!("{} finished items discarded: {why}", other.items));
            }
            store.batch_progress(self.table, &key)?
        };
        if !items.is_empty() {
            tracing::info!(
                table = self.table,
                items = items.len(),
                "resuming: finished batch items kept from an earlier run"
            );
        }
        let (key, done) = done.insert((key, items.into_iter().collect()));
        Ok(f(key, done))
    }

    /// The items of `items` not finished yet, in order, in batches of at most `size`.
    pub fn pending<T: Serialize + Clone>(&self, items: &[T], size: usize) -> Result<Vec<Vec<T>>> {
        if size == 0 {
            return Err(Error::Format(format!(
                "the batch size of {:?} must be at least 1",
                self.table
            )));
        }
        let texts = item_texts(self.table, items)?;
        let (key, todo): (String, Vec<T>) = self.with_done(|key, done| {
            let todo = items
                .iter()
                .zip(&texts)
                .filter(|(_, text)| !done.contains(*text))
                .map(|(item, _)| item.clone())
                .collect();
            (key.to_owned(), todo)
        })?;
        let total = items.len();
        *self.total.lock().unwrap_or_else(PoisonError::into_inner) = Some(total);
        self.store.record_batch_total(self.table, &key, total)?;
        self.report(ProgressEvent::Batches {
            table: self.table,
            done: total - todo.len(),
            total,
        });
        Ok(todo.chunks(size).map(<[T]>::to_vec).collect())
    }

    /// How many items are finished (from this run and earlier ones).
    pub fn finished(&self) -> Result<usize> {
        self.with_done(|_, done| done.len())
    }

    /// Saves a finished batch: `items` are marked done and `rows` kept, in one transaction. A
    /// `rows` frame without columns (`DataFrame::empty()`) marks the items done and keeps
    /// nothing.
    pub fn save<T: Serialize>(&self, items: &[T], rows: &DataFrame) -> Result<()> {
        let texts = item_texts(self.table, items)?;
        // Load (or discard) earlier progress first, so this batch is not discarded with it.
        let key = self.with_done(|key, _| key.to_owned())?;
        self.store.save_batch(self.table, &key, &texts, rows)?;
        let finished = self.with_done(|_, done| {
            done.extend(texts);
            done.len()
        })?;
        if let Some(total) = *self.total.lock().unwrap_or_else(PoisonError::into_inner) {
            self.report(ProgressEvent::Batches {
                table: self.table,
                done: finished.min(total),
                total,
            });
        }
        tracing::debug!(
            table = self.table,
            items = items.len(),
            rows = rows.height(),
            "batch saved"
        );
        Ok(())
    }

    /// Every row the batches kept, this run's and earlier runs', as one frame: what the
    /// function returns. Without any kept columns, an empty frame (which the final save
    /// refuses).
    pub fn finish(self) -> Result<DataFrame> {
        self.with_done(|_, _| ())?;
        Ok(self.store.load_batches(self.table)?.unwrap_or_default())
    }
}

impl<S> Batches<'_, S> {
    /// Sends `event` to the pipeline's progress display, if it has one.
    fn report(&self, event: ProgressEvent<'_>) {
        if let Some(progress) = self.progress {
            progress.report(event);
        }
    }
}

/// The key a loop's progress is saved under: the call's checkpoint key, and a digest of its
/// inputs' versions when it has inputs (so progress of a call without inputs keeps the plain
/// key of earlier releases and resumes across an upgrade).
fn progress_key(key: &str, inputs: &BTreeMap<String, CheckpointVersion>) -> String {
    if inputs.is_empty() {
        return key.to_owned();
    }
    let mut digest = Sha256::new();
    for (table, version) in inputs {
        digest.update(table.as_bytes());
        digest.update(b"=");
        digest.update(version.to_string().as_bytes());
        digest.update(b"\n");
    }
    let hex: String = digest.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{key}+{hex}")
}

/// The loop is over, finished or not (a body that failed or returned early drops its
/// `Batches` too): its progress display, if it had one, is taken down.
impl<S> Drop for Batches<'_, S> {
    fn drop(&mut self) {
        let started = self
            .total
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        if started {
            self.report(ProgressEvent::BatchesFinished { table: self.table });
        }
    }
}
