//! Why a checkpoint would be recomputed, in one place: the rule a `#[checkpointed]` call
//! applies before it loads, and [`status`], which applies it to every checkpoint of a store
//! without running anything (what the inspection command line prints).

use std::fmt;

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;

use crate::error::Result;
use crate::model::{CheckpointInfo, CheckpointVersion, HistoryVersion};
use crate::store::{CheckpointStore, PendingBatches};

/// Why a checkpoint whose key still matches is stale all the same.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// A table it was made from is unchanged but stale itself, so it will be recomputed (and
    /// what was made from it with it): `reason` says why, down the chain.
    InputStale {
        /// The input table.
        input: String,
        /// Why the input is stale (the first of its reasons).
        reason: Box<StaleReason>,
    },
    /// The table is forced in this run ([`Force`](crate::Force), `USHER_FORCE`) and has not
    /// been recomputed yet. Only said of an input: a forced call itself is `force`.
    Forced,
}

impl StaleReason {
    /// The reason as said of an input (`its input `b` changed`, `it is forced in this run`).
    fn fmt_nested(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleReason::InputMissing { .. }
            | StaleReason::InputChanged { .. }
            | StaleReason::InputNotRecorded { .. }
            | StaleReason::InputStale { .. } => write!(f, "its {self}"),
            StaleReason::Expired { .. } | StaleReason::NoSaveTime => write!(f, "it {self}"),
            StaleReason::Forced => f.write_str("it is forced in this run"),
        }
    }
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
            StaleReason::InputStale { input, reason } => {
                write!(f, "input `{input}` is stale: ")?;
                reason.fmt_nested(f)
            }
            StaleReason::Forced => f.write_str("forced in this run"),
        }
    }
}

/// The one stale rule, for calls and [`status`] alike: a checkpoint is stale when a declared
/// input (`reads`) was not recorded, when it is older than its `max_age`, or when any
/// recorded input is missing, changed, or stale itself (by the same rule, down the chain:
/// forced in this run and not recomputed yet, expired, or made from something stale).
///
/// An input's own staleness is judged from the store alone, by what was recorded with it; its
/// function's arguments and code are not known here (a call of that step notices those). Each
/// table is looked up and judged once per `Judge`, so a diamond costs one lookup per table and
/// a cycle in hand-edited lineage ends rather than loops.
pub(crate) struct Judge<'a, S: ?Sized> {
    store: &'a S,
    now: NaiveDateTime,
    /// Whether a checkpoint is forced in this run and not recomputed yet.
    forced: &'a dyn Fn(&CheckpointInfo) -> bool,
    /// Checkpoints looked up so far.
    seen: HashMap<String, Option<CheckpointInfo>>,
    /// Tables judged so far: the first reason each is stale, if it is.
    judged: HashMap<String, Option<StaleReason>>,
    /// Tables being judged (on the way down): met again, they are part of a cycle.
    visiting: HashSet<String>,
}

impl<'a, S: CheckpointStore + ?Sized> Judge<'a, S> {
    /// A judge of `store`'s checkpoints at `now`, with nothing forced.
    pub(crate) fn new(store: &'a S, now: NaiveDateTime) -> Self {
        Self::forcing(store, now, &|_| false)
    }

    /// A judge that takes the checkpoints `forced` says as forced in this run.
    pub(crate) fn forcing(
        store: &'a S,
        now: NaiveDateTime,
        forced: &'a dyn Fn(&CheckpointInfo) -> bool,
    ) -> Self {
        Self {
            store,
            now,
            forced,
            seen: HashMap::new(),
            judged: HashMap::new(),
            visiting: HashSet::new(),
        }
    }

    /// The checkpoint of `table`, looked up once.
    fn lookup(&mut self, table: &str) -> Result<Option<CheckpointInfo>> {
        if let Some(found) = self.seen.get(table) {
            return Ok(found.clone());
        }
        let found = self.store.checkpoint(table)?;
        self.seen.insert(table.to_owned(), found.clone());
        Ok(found)
    }

    /// Every reason `stored` is stale: declared inputs it was not made from (`reads`), expiry
    /// by `max_age_seconds`, and each recorded input missing, changed or stale.
    pub(crate) fn reasons(
        &mut self,
        stored: &CheckpointInfo,
        reads: &[&str],
        max_age_seconds: Option<u64>,
    ) -> Result<Vec<StaleReason>> {
        let mut why: Vec<StaleReason> = reads
            .iter()
            .filter(|read| !stored.lineage.inputs.contains_key(**read))
            .map(|read| StaleReason::InputNotRecorded {
                input: (*read).to_owned(),
            })
            .collect();
        why.extend(self.expiry(stored, max_age_seconds));
        self.visiting.insert(stored.table_name.clone());
        let inputs = self.inputs(stored);
        self.visiting.remove(&stored.table_name);
        why.extend(inputs?);
        Ok(why)
    }

    /// Whether `stored` is older than `max_age_seconds`, by its save time in UTC
    /// ([`CheckpointInfo::saved_utc`]: a Python-written save time is the writer's local time).
    fn expiry(&self, stored: &CheckpointInfo, max_age_seconds: Option<u64>) -> Option<StaleReason> {
        let max_age_seconds = max_age_seconds?;
        let Some(created) = stored.saved_utc() else {
            return Some(StaleReason::NoSaveTime);
        };
        let age = (self.now - created).num_seconds();
        (age > i64::try_from(max_age_seconds).unwrap_or(i64::MAX)).then(|| StaleReason::Expired {
            age_seconds: age.unsigned_abs(),
            max_age_seconds,
        })
    }

    /// The reasons of `stored`'s recorded inputs.
    fn inputs(&mut self, stored: &CheckpointInfo) -> Result<Vec<StaleReason>> {
        let mut why = Vec::new();
        for (input, recorded) in &stored.lineage.inputs {
            let Some(current) = self.lookup(input)? else {
                why.push(StaleReason::InputMissing {
                    input: input.clone(),
                });
                continue;
            };
            // A version without a save time cannot be compared: never taken as unchanged.
            if current.version() != *recorded || *recorded == CheckpointVersion::Saved(None) {
                why.push(StaleReason::InputChanged {
                    input: input.clone(),
                    recorded: *recorded,
                    current: current.version(),
                });
            } else if let Some(reason) = self.own(&current)? {
                why.push(StaleReason::InputStale {
                    input: input.clone(),
                    reason: Box::new(reason),
                });
            }
        }
        Ok(why)
    }

    /// Why the input checkpoint `info` is stale itself, judged once: forced in this run, or by
    /// what was recorded with it (its `max_age`, its inputs). An unkeyed input has nothing
    /// recorded; what was made from it compares its save time.
    fn own(&mut self, info: &CheckpointInfo) -> Result<Option<StaleReason>> {
        let table = &info.table_name;
        if let Some(done) = self.judged.get(table) {
            return Ok(done.clone());
        }
        if self.visiting.contains(table) {
            return Ok(None);
        }
        let reason = if (self.forced)(info) {
            Some(StaleReason::Forced)
        } else if info.key.is_none() {
            None
        } else {
            let max_age = info.lineage.max_age_seconds;
            self.reasons(info, &[], max_age)?.into_iter().next()
        };
        self.judged.insert(table.clone(), reason.clone());
        Ok(reason)
    }
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
    /// For a stale checkpoint: the earlier version kept in the table's history that a call
    /// with the checkpoint's key would restore instead of computing (its inputs unchanged, not
    /// expired), if there is one.
    pub restore: Option<u64>,
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
/// the checkpoint is checked (inputs, expiry), down the chain of inputs: a checkpoint made from
/// a stale one is stale too, by the same rule a call applies.
pub fn status<S: CheckpointStore + ?Sized>(
    store: &S,
    now: NaiveDateTime,
) -> Result<Vec<CheckpointStatus>> {
    status_with(Judge::new(store, now))
}

/// [`status`] by `judge` (which may know what this run forces).
pub(crate) fn status_with<S: CheckpointStore + ?Sized>(
    mut judge: Judge<'_, S>,
) -> Result<Vec<CheckpointStatus>> {
    let store = judge.store;
    let checkpoints = store.list_checkpoints()?;
    for info in &checkpoints {
        judge
            .seen
            .insert(info.table_name.clone(), Some(info.clone()));
    }
    let mut pending: std::collections::BTreeMap<String, PendingBatches> = store
        .pending_batches()?
        .into_iter()
        .map(|p| (p.table.clone(), p))
        .collect();
    let mut list = Vec::new();
    for info in checkpoints {
        let state = match &info.key {
            None => CheckpointState::Unkeyed,
            Some(_) => {
                let max_age = info.lineage.max_age_seconds;
                let mut why = judge.reasons(&info, &[], max_age)?;
                if (judge.forced)(&info) {
                    why.insert(0, StaleReason::Forced);
                }
                if why.is_empty() {
                    CheckpointState::Valid
                } else {
                    CheckpointState::Stale(why)
                }
            }
        };
        let restore = match (&state, &info.key) {
            (CheckpointState::Stale(_), Some(key)) => {
                let mut found = None;
                for version in store
                    .history(&info.table_name)?
                    .iter()
                    .filter(|v| !v.current)
                {
                    let same_key = version
                        .checkpoint
                        .key
                        .as_ref()
                        .is_some_and(|k| k.difference(key).is_none());
                    let max_age = version.checkpoint.lineage.max_age_seconds;
                    if same_key && judge.reasons(&version.checkpoint, &[], max_age)?.is_empty() {
                        found = Some(version.version);
                        break;
                    }
                }
                found
            }
            _ => None,
        };
        list.push(CheckpointStatus {
            table: info.table_name.clone(),
            state,
            pending: pending.remove(&info.table_name),
            checkpoint: Some(info),
            restore,
        });
    }
    list.extend(pending.into_values().map(|p| CheckpointStatus {
        table: p.table.clone(),
        state: CheckpointState::Partial,
        checkpoint: None,
        pending: Some(p),
        restore: None,
    }));
    list.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(list)
}

/// Why `version` (as [`CheckpointStore::history`] lists it) would not be restored at `now` by
/// a call with its own key, by the one stale rule: an input changed since, or is stale itself,
/// or it is older than its `max_age`. Empty when it would be. What `usher-pipeline restore`
/// checks before it restores by hand.
pub fn version_staleness<S: CheckpointStore + ?Sized>(
    store: &S,
    version: &HistoryVersion,
    now: NaiveDateTime,
) -> Result<Vec<StaleReason>> {
    let max_age = version.checkpoint.lineage.max_age_seconds;
    Judge::new(store, now).reasons(&version.checkpoint, &[], max_age)
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
