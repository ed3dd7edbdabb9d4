//! Traits that exist only to make misuse of `#[checkpointed]` read like a sentence at compile
//! time (`#[diagnostic::on_unimplemented]`). Reached through `__private` only, so none of their
//! names meets a user's own (`FetchError`, `Checkpoint`...).

use polars::prelude::DataFrame;
use serde_json::Value;

use crate::error::Error;

/// A value a `#[checkpointed]` function can return and have saved: a polars `DataFrame`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a checkpoint",
    label = "a `#[checkpointed]` function must return `Result<DataFrame, E>`",
    note = "checkpoints are polars `DataFrame`s, saved as DuckDB tables"
)]
pub trait CheckpointValue: Sized {
    /// The frame to save.
    fn as_frame(&self) -> &DataFrame;
    /// The value, from a loaded frame.
    fn from_frame(frame: DataFrame) -> Self;
}

impl CheckpointValue for DataFrame {
    fn as_frame(&self) -> &DataFrame {
        self
    }
    fn from_frame(frame: DataFrame) -> Self {
        frame
    }
}

/// The return type of a `#[checkpointed]` function: a `Result`.
#[diagnostic::on_unimplemented(
    message = "a `#[checkpointed]` function must return `Result<DataFrame, E>`, not `{Self}`",
    label = "not a `Result`"
)]
pub trait FetchResult {
    /// The `Ok` type.
    type Value;
    /// The `Err` type.
    type Error;
}

impl<T, E> FetchResult for Result<T, E> {
    type Value = T;
    type Error = E;
}

/// An error type a `#[checkpointed]` function can return: one that takes this library's
/// [`Error`], so store failures reach the caller through it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry usher-pipeline's errors",
    label = "the error type of a `#[checkpointed]` function",
    note = "store failures are returned through it: add `impl From<usher_pipeline::Error> for {Self}` (thiserror: a `#[from] usher_pipeline::Error` variant)"
)]
pub trait CarriesStoreErrors: From<Error> {}

impl<E: From<Error>> CarriesStoreErrors for E {}

/// A parameter that can be part of a checkpoint key: anything `serde::Serialize`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a checkpoint key",
    label = "this parameter is part of the checkpoint key",
    note = "key arguments are serialised with serde (a `DataFrame` is keyed by its data version): derive `serde::Serialize` for `{Self}`, or leave the parameter out of the key with `skip(...)` if it does not change the result"
)]
pub trait KeyArg {
    /// The argument as JSON.
    fn key_value(&self) -> std::result::Result<Value, String>;
}

impl<T: serde::Serialize + ?Sized> KeyArg for T {
    fn key_value(&self) -> std::result::Result<Value, String> {
        serde_json::to_value(self).map_err(|e| e.to_string())
    }
}

/// A function a `#[checkpointed]` frame must pass before it is saved (`check = path`): a
/// `fn(&DataFrame) -> Result<(), E>` whose error can be displayed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot check a checkpoint's frame",
    label = "`check = ...` takes a function `fn(&DataFrame) -> Result<(), E>` with `E: Display`",
    note = "a check sees the frame the body returned; its error is reported (and nothing saved) when it fails"
)]
pub trait CheckFn {
    /// Runs the check; its error as text.
    fn check(&self, frame: &DataFrame) -> std::result::Result<(), String>;
}

impl<F, E> CheckFn for F
where
    F: Fn(&DataFrame) -> std::result::Result<(), E>,
    E: std::fmt::Display,
{
    fn check(&self, frame: &DataFrame) -> std::result::Result<(), String> {
        self(frame).map_err(|e| e.to_string())
    }
}
