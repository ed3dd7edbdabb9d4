//! Progress of long work, for a display: resumable batch loops (n of m items) and saves or
//! loads of large checkpoints. Off by default: a [`Pipeline`](crate::Pipeline) reports only
//! to a [`Progress`] it is given with [`with_progress`](crate::Pipeline::with_progress). The
//! example and the command line draw it with indicatif, on a terminal only.

/// Saves and loads of at least this many rows are reported; smaller ones are too quick to
/// show.
pub const PROGRESS_MIN_ROWS: usize = 100_000;

/// One report of long work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent<'a> {
    /// A resumable loop of `table` (see [`Batches`](crate::Batches)): `done` of `total`
    /// items finished, earlier runs' included. Sent when the loop learns its items and after
    /// each saved batch.
    Batches {
        /// The table the loop makes.
        table: &'a str,
        /// Items finished.
        done: usize,
        /// Items in all.
        total: usize,
    },
    /// The loop of `table` returned its rows (its checkpoint is saved next).
    BatchesFinished {
        /// The table the loop made.
        table: &'a str,
    },
    /// A checkpoint of `rows` rows (at least [`PROGRESS_MIN_ROWS`]) is being saved.
    Saving {
        /// The table.
        table: &'a str,
        /// Its rows.
        rows: usize,
    },
    /// A checkpoint of `rows` rows (at least [`PROGRESS_MIN_ROWS`]) is being loaded.
    Loading {
        /// The table.
        table: &'a str,
        /// Its rows, as `_checkpoints` records them.
        rows: usize,
    },
    /// The save or load of `table` announced by `Saving` or `Loading` is over (done or
    /// failed).
    TransferFinished {
        /// The table.
        table: &'a str,
    },
}

/// Receives [`ProgressEvent`]s. Called from the threads doing the work, so it must be quick and
/// shareable.
pub trait Progress: Send + Sync {
    /// One event.
    fn report(&self, event: ProgressEvent<'_>);
}
