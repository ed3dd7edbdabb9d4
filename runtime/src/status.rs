//! Why a checkpoint would be recomputed, in one place: the rule a `#[checkpointed]` call
//! applies before it loads, and [`status`], which applies it to every checkpoint of a store
//! without running anything (what the inspection command line prints).

use std::fmt;

use chrono::NaiveDateTime;

use crate::error::Result;
use crate::model::{CheckpointInfo, CheckpointVersion};
use crate::store::{CheckpointStore, PendingBatches};

/// Why a checkpoint whose key still matches is stale all the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleReason {
    /// Older than its `max_age`.
    Expired {
        /// Seconds since it was saved.
        age_seconds: u64,
        /// Its `max_age`, in seconds.
        max_age_seconds: u64,
    },
    /// It has a `max_age` but no save time to measure it from.
    NoSaveTime,
    /// A table it was made from has no checkpoint any more.
    InputMissing {
        /// The input table.
        input: String,
    },
    /// A table it was made from has changed since.
    InputChanged {
        /// The input table.
        input: String,
        /// The input's version when this checkpoint was made.
        recorded: CheckpointVersion,
        /// The input's version now.
        current: CheckpointVersion,
    },
    /// Its function now declares an input (`reads(...)`) it was not made from.
    InputNotRecorded {
        /// The declared input table.
        input: String,
    },
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleReason::Expired {
                age_seconds,
                max_age_seconds,
            } => write!(
                f,
                "expired: saved {} ago, max_age {}",
                duration_text(*age_seconds),
                duration_text(*max_age_seconds)
            ),
            StaleReason::NoSaveTime => f.write_str("expired: the checkpoint has no save time"),
            StaleReason::InputMissing { input } => write!(f, "input `{input}` is missing"),
            StaleReason::InputChanged {
                input,
                recorded,
                current,
            } => write!(
                f,
                "input `{input}` changed ({} -> {})",
                recorded.short(),
                current.short(),
            ),
            StaleReason::InputNotRecorded { input } => {
                write!(f, "input `{input}` was not read when it was saved")
            }
        }
    }
}

/// The reasons `stored` is stale by its lineage: a declared input (`reads`) it was not made
/// from, expiry (by `max_age_seconds` at `now`), and each recorded input that is missing or
/// changed in `store`. The one rule, for calls and [`status`] alike.
pub(crate) fn stale_reasons<S: CheckpointStore + ?Sized>(
    store: &S,
    stored: &CheckpointInfo,
    reads: &[&str],
    max_age_seconds: Option<u64>,
    now: NaiveDateTime,
) -> Result<Vec<StaleReason>> {
    let mut why: Vec<StaleReason> = reads
        .iter()
        .filter(|read| !stored.lineage.inputs.contains_key(**read))
        .map(|read| StaleReason::InputNotRecorded {
            input: (*read).to_owned(),
        })
        .collect();
    if let Some(max_age_seconds) = max_age_seconds {
        match stored.created_at {
            Some(created) => {
                let age = (now - created).num_seconds();
                if age > i64::try_from(max_age_seconds).unwrap_or(i64::MAX) {
                    why.push(StaleReason::Expired {
                        age_seconds: age.unsigned_abs(),
                        max_age_seconds,
                    });
                }
            }
            None => why.push(StaleReason::NoSaveTime),
        }
    }
    for (input, recorded) in &stored.lineage.inputs {
        match store.checkpoint(input)? {
            None => why.push(StaleReason::InputMissing {
                input: input.clone(),
            }),
            // A version without a save time cannot be compared: never taken as unchanged.
            Some(current)
                if current.version() != *recorded
                    || *recorded == CheckpointVersion::Saved(None) =>
            {
                why.push(StaleReason::InputChanged {
                    input: input.clone(),
                    recorded: *recorded,
                    current: current.version(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(why)
}

/// What the next `#[checkpointed]` call of a table would do, as far as the store can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointState {
    /// Loaded, unless the call's arguments, code or config fields differ from its key.
    Valid,
    /// Recomputed, for these reasons.
    Stale(Vec<StaleReason>),
    /// Saved without a key (by the Python pipeline or by hand): refused, adopted or
    /// recomputed as the pipeline's [`UnkeyedPolicy`](crate::UnkeyedPolicy) says.
    Unkeyed,
    /// No checkpoint yet, but finished batches of an interrupted call, which the next call
    /// with the same key resumes from.
    Partial,
}

/// One table of [`status`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointStatus {
    /// The table.
    pub table: String,
    /// What the next call would do.
    pub state: CheckpointState,
    /// The checkpoint, if there is one.
    pub checkpoint: Option<CheckpointInfo>,
    /// Finished batches of an interrupted call, if any (with a checkpoint: of a recomputation
    /// that did not finish).
    pub pending: Option<PendingBatches>,
}

impl CheckpointStatus {
    /// Whether the checkpoint would be loaded (as far as the store can tell). Pending batches
    /// beside a valid checkpoint (of a call under other arguments) do not change that.
    pub fn is_valid(&self) -> bool {
        self.state == CheckpointState::Valid
    }
}

/// Every checkpoint of `store` (and every table with pending batches), by table name, with
/// what the next call would do at `now`, from the store alone: no body runs, no table is
/// loaded. The call's own arguments and code are not known here; everything recorded with
/// the checkpoint is checked (inputs, expiry).
pub fn status<S: CheckpointStore + ?Sized>(
    store: &S,
    now: NaiveDateTime,
) -> Result<Vec<CheckpointStatus>> {
    let mut pending: std::collections::BTreeMap<String, PendingBatches> = store
        .pending_batches()?
        .into_iter()
        .map(|p| (p.table.clone(), p))
        .collect();
    let mut list = Vec::new();
    for info in store.list_checkpoints()? {
        let state = match &info.key {
            None => CheckpointState::Unkeyed,
            Some(_) => {
                let why = stale_reasons(store, &info, &[], info.lineage.max_age_seconds, now)?;
                if why.is_empty() {
                    CheckpointState::Valid
                } else {
                    CheckpointState::Stale(why)
                }
            }
        };
        list.push(CheckpointStatus {
            table: info.table_name.clone(),
            state,
            pending: pending.remove(&info.table_name),
            checkpoint: Some(info),
        });
    }
    list.extend(pending.into_values().map(|p| CheckpointStatus {
        table: p.table.clone(),
        state: CheckpointState::Partial,
        checkpoint: None,
        pending: Some(p),
    }));
    list.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(list)
}

/// Seconds as the attribute's `max_age` writes them: whole days as `30d`, else whole hours
/// as `12h`, else days and hours, hours and minutes, or seconds.
pub(crate) fn duration_text(seconds: u64) -> String {
    if seconds.is_multiple_of(86_400) && seconds > 0 {
        format!("{}d", seconds / 86_400)
    } else if seconds >= 86_400 {
        format!("{}d {}h", seconds / 86_400, seconds % 86_400 / 3_600)
    } else if seconds.is_multiple_of(3_600) && seconds > 0 {
        format!("{}h", seconds / 3_600)
    } else if seconds >= 3_600 {
        format!("{}h {}m", seconds / 3_600, seconds % 3_600 / 60)
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::duration_text;

    #[test]
    fn durations_read_as_max_age_writes_them() {
        assert_eq!(duration_text(30 * 86_400), "30d");
        assert_eq!(duration_text(31 * 86_400 + 7_200), "31d 2h");
        assert_eq!(duration_text(12 * 3_600), "12h");
        assert_eq!(duration_text(3_600 + 120), "1h 2m");
        assert_eq!(duration_text(59), "59s");
        assert_eq!(duration_text(0), "0s");
    }
}
