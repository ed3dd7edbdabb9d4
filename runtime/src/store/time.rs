//! The clock of the stores: how save times are written (UTC for keyed checkpoints, local time
//! for unkeyed ones, as the Python pipeline writes them) and to what precision.

use chrono::NaiveDateTime;

/// Now in UTC, for the stores' own stamps (file names, saves made without a pipeline clock).
pub(crate) fn now_utc() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// `time` to the microsecond: what a `TIMESTAMP` column holds, so a save time read back
/// compares equal to the one written (adoption and judged loads compare them).
pub(crate) fn to_micros(time: NaiveDateTime) -> NaiveDateTime {
    chrono::DurationRound::duration_trunc(time, chrono::TimeDelta::microseconds(1)).unwrap_or(time)
}

/// This machine's local time, to the microsecond: how a checkpoint without a key is stamped
/// (as the Python pipeline's `CURRENT_TIMESTAMP` stamps it), so every unkeyed save time reads
/// by one rule ([`CheckpointInfo::saved_utc`](crate::CheckpointInfo::saved_utc)).
pub(crate) fn now_local() -> NaiveDateTime {
    to_micros(chrono::Local::now().naive_local())
}
