//! Checks for `#[checkpointed(check = ...)]`: a frame that fails one is returned as
//! [`Error::CheckFailed`](crate::Error::CheckFailed) and not saved, so a bad fetch (an API
//! that hiccups and answers with nothing) is retried on the next run instead of cached.
//!
//! A check is any `fn(&DataFrame) -> Result<(), E>` with `E: Display`; these are the built-in
//! ones.

use polars::prelude::DataFrame;

/// Why [`non_empty`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the frame has no rows")]
pub struct EmptyFrame;

/// Refuses a frame without rows: `#[checkpointed(table = "genes", check = usher_pipeline::checks::non_empty)]`.
pub fn non_empty(frame: &DataFrame) -> Result<(), EmptyFrame> {
    if frame.height() == 0 {
        Err(EmptyFrame)
    } else {
        Ok(())
    }
}
