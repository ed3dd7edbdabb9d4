//! `Batches`: resumable progress inside one checkpointed call, for loops that fetch for hours.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use polars::prelude::DataFrame;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use crate::progress::ProgressEvent;
use crate::store::CheckpointStore;

/// The finished batches of a `#[checkpointed(..., batches = name)]` function: each batch is
/// saved as it finishes, so a killed run resumes where it stopped and fetches at most the batch
/// that was in flight again.
///
/// ```ignore
/// // (compiled and run in the repository's tests/batches.rs)
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
/// Progress belongs to the call's checkpoint key: a run with other arguments or other code
/// discards it instead of mixing it in, and so does a forced run. When the function returns,
/// its frame replaces the partial rows in the same transaction that saves the checkpoint.
/// Items are told apart by their JSON (serde) form.
pub struct Batches<'a, S> {
    pipeline: &'a Pipeline<S>,
    table: &'static str,
    key: String,
    /// Forced: progress is discarded on first use rather than resumed.
    fresh: bool,
    /// Items finished so far; loaded on first use.
    done: Mutex<Option<HashSet<String>>>,
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
    pub(crate) fn new(
        pipeline: &'a Pipeline<S>,
        table: &'static str,
        key: String,
        fresh: bool,
    ) -> Self {
        Self {
            pipeline,
            table,
            key,
            fresh,
            done: Mutex::new(None),
            total: Mutex::new(None),
        }
    }

    fn with_done<T>(&self, f: impl FnOnce(&mut HashSet<String>) -> T) -> Result<T> {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(done) = done.as_mut() {
            return Ok(f(done));
        }
        let store = self.pipeline.store();
        let items = if self.fresh {
            store.discard_batches(self.table)?;
            Vec::new()
        } else {
            store.batch_progress(self.table, &self.key)?
        };
        if !items.is_empty() {
            tracing::info!(
                table = self.table,
                items = items.len(),
                "resuming: finished batch items kept from an earlier run"
            );
        }
        Ok(f(done.insert(items.into_iter().collect())))
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
        let todo: Vec<T> = self.with_done(|done| {
            items
                .iter()
                .zip(&texts)
                .filter(|(_, text)| !done.contains(*text))
                .map(|(item, _)| item.clone())
                .collect()
        })?;
        let total = items.len();
        *self.total.lock().unwrap_or_else(PoisonError::into_inner) = Some(total);
        self.pipeline
            .store()
            .record_batch_total(self.table, &self.key, total)?;
        self.pipeline.report(ProgressEvent::Batches {
            table: self.table,
            done: total - todo.len(),
            total,
        });
        Ok(todo.chunks(size).map(<[T]>::to_vec).collect())
    }

    /// How many items are finished (from this run and earlier ones).
    pub fn finished(&self) -> Result<usize> {
        self.with_done(|done| done.len())
    }

    /// Saves a finished batch: `items` are marked done and `rows` kept, in one transaction. A
    /// `rows` frame without columns (`DataFrame::empty()`) marks the items done and keeps
    /// nothing.
    pub fn save<T: Serialize>(&self, items: &[T], rows: &DataFrame) -> Result<()> {
        let texts = item_texts(self.table, items)?;
        // Load (or discard) earlier progress first, so this batch is not discarded with it.
        self.with_done(|_| ())?;
        self.pipeline
            .store()
            .save_batch(self.table, &self.key, &texts, rows)?;
        let finished = self.with_done(|done| {
            done.extend(texts);
            done.len()
        })?;
        if let Some(total) = *self.total.lock().unwrap_or_else(PoisonError::into_inner) {
            self.pipeline.report(ProgressEvent::Batches {
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
        self.with_done(|_| ())?;
        Ok(self
            .pipeline
            .store()
            .load_batches(self.table)?
            .unwrap_or_default())
    }
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
            self.pipeline
                .report(ProgressEvent::BatchesFinished { table: self.table });
        }
    }
}
