//! The checkpoint model every store shares: what a checkpoint was made from (its key), what a
//! store must offer to hold checkpoints, and the traits that turn misuse of `#[checkpointed]`
//! into a sentence at compile time.

use chrono::NaiveDateTime;
use polars::prelude::DataFrame;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::PipelineConfig;
use crate::error::{Error, Result};
use crate::pyjson;

/// What a checkpoint was made from: the function, its code and its key arguments.
///
/// Stored next to the checkpoint (the DuckDB store keeps it in `_checkpoint_keys`), readable
/// as well as hashed, so a stale checkpoint can say what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointKey {
    /// SHA-256 (lowercase hex) of Python's
    /// `json.dumps({"arguments": ..., "code": ..., "function": ...}, sort_keys=True)`.
    pub key: String,
    /// The name of the function that made the checkpoint.
    pub function: String,
    /// A hash of the function's source tokens, or the `version = "..."` that pins it.
    pub code: String,
    /// The key arguments as a JSON object with sorted keys (Python `json.dumps` form).
    pub arguments: String,
}

impl CheckpointKey {
    /// The key of `function` with `code` and `arguments` (a JSON object).
    pub fn new(function: &str, code: &str, arguments: Map<String, Value>) -> Result<Self> {
        let arguments = Value::Object(arguments);
        let text = |v: &Value| {
            pyjson::to_string(&pyjson::sort_keys(v.clone()), None)
                .map_err(|e| Error::Format(format!("checkpoint key of {function}: {e}")))
        };
        let mut whole = Map::new();
        whole.insert("arguments".into(), arguments.clone());
        whole.insert("code".into(), code.into());
        whole.insert("function".into(), function.into());
        let digest = Sha256::digest(text(&Value::Object(whole))?.as_bytes());
        Ok(Self {
            key: digest.iter().map(|b| format!("{b:02x}")).collect(),
            function: function.to_owned(),
            code: code.to_owned(),
            arguments: text(&arguments)?,
        })
    }

    /// The arguments as a JSON value (an object), for provenance details.
    pub fn arguments_value(&self) -> Value {
        serde_json::from_str(&self.arguments).unwrap_or(Value::Null)
    }

    /// Why a checkpoint made with `self` cannot stand in for `wanted`, or `None` if it can.
    pub fn difference(&self, wanted: &CheckpointKey) -> Option<String> {
        if self.key == wanted.key {
            return None;
        }
        let mut why = Vec::new();
        if self.function != wanted.function {
            why.push(format!(
                "made by `{}`, not `{}`",
                self.function, wanted.function
            ));
        }
        if self.code != wanted.code {
            why.push(format!("code changed ({} -> {})", self.code, wanted.code));
        }
        if self.arguments != wanted.arguments {
            why.push(format!(
                "arguments changed ({} -> {})",
                self.arguments, wanted.arguments
            ));
        }
        if why.is_empty() {
            why.push(format!("key changed ({} -> {})", self.key, wanted.key));
        }
        Some(why.join("; "))
    }
}

/// A table's checkpoint as a store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheckpoint {
    /// `_checkpoints.created_at` (UTC).
    pub created_at: Option<NaiveDateTime>,
    /// `_checkpoints.row_count`.
    pub row_count: Option<i64>,
    /// The key it was saved with, if it was saved with one *and* the table has not been
    /// re-saved since without one (by the Python pipeline, or by hand through the store).
    pub key: Option<CheckpointKey>,
}

/// One run's provenance as a `_provenance` row.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenanceRecord {
    /// The pipeline version.
    pub version: String,
    /// The config hash.
    pub config_hash: String,
    /// When the tracker was created (UTC).
    pub created_at: NaiveDateTime,
    /// The steps, as Python's `json.dumps(steps)`.
    pub steps_json: String,
}

/// What a store must offer to hold the checkpoints of `#[checkpointed]` functions.
///
/// `usher-pipeline`'s `PipelineStore` (DuckDB) implements it; so does [`MemoryStore`](crate::MemoryStore)
/// for tests. Every method takes `&self`: a store is shared by the threads of a run.
pub trait CheckpointStore: Send + Sync {
    /// Opens the store `config` names.
    fn from_config(config: &PipelineConfig) -> Result<Self>
    where
        Self: Sized;

    /// The checkpoint of `table`, or `None` if there is none.
    fn checkpoint(&self, table: &str) -> Result<Option<StoredCheckpoint>>;

    /// The table's data, or `None` if the table does not exist.
    fn load_checkpoint(&self, table: &str) -> Result<Option<DataFrame>>;

    /// Saves `frame` as `table` with its `_checkpoints` row, `key` and the `_provenance` row of
    /// the step that made it, and removes the table's partial batches, all or nothing.
    fn save_checkpoint(
        &self,
        table: &str,
        frame: &DataFrame,
        description: &str,
        key: &CheckpointKey,
        provenance: &ProvenanceRecord,
    ) -> Result<()>;

    /// Records `key` for the existing, unkeyed checkpoint of `table`, provided it is still the
    /// one created at `created_at`. Returns whether it was.
    fn adopt_checkpoint(
        &self,
        table: &str,
        created_at: Option<NaiveDateTime>,
        key: &CheckpointKey,
    ) -> Result<bool>;

    /// The items finished by earlier [`Batches`](crate::Batches) of `table` under `key`.
    /// Progress saved under another key (other arguments, other code) is discarded first.
    fn batch_progress(&self, table: &str, key: &str) -> Result<Vec<String>>;

    /// Discards every partial batch of `table`.
    fn discard_batches(&self, table: &str) -> Result<()>;

    /// Saves one finished batch of `table`: `items` (JSON texts) marked done and `frame`'s rows
    /// kept (a frame without columns keeps no rows), all or nothing.
    fn save_batch(&self, table: &str, key: &str, items: &[String], frame: &DataFrame)
    -> Result<()>;

    /// Every row kept by the batches of `table`, or `None` if no batch kept any columns.
    fn load_batches(&self, table: &str) -> Result<Option<DataFrame>>;

    /// Appends a row to `_provenance`.
    fn append_provenance(&self, record: &ProvenanceRecord) -> Result<()>;
}

/// A value a `#[checkpointed]` function can return and have saved: a polars `DataFrame`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a checkpoint",
    label = "a `#[checkpointed]` function must return `Result<DataFrame, E>`",
    note = "checkpoints are polars `DataFrame`s, saved as DuckDB tables"
)]
pub trait Checkpoint: Sized {
    /// The frame to save.
    fn as_frame(&self) -> &DataFrame;
    /// The value, from a loaded frame.
    fn from_frame(frame: DataFrame) -> Self;
}

impl Checkpoint for DataFrame {
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
pub trait FetchError: From<Error> {}

impl<E: From<Error>> FetchError for E {}

/// A parameter that can be part of a checkpoint key: anything `serde::Serialize`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a checkpoint key",
    label = "this parameter is part of the checkpoint key",
    note = "key arguments are serialised with serde: derive `serde::Serialize` for `{Self}`, or leave the parameter out of the key with `skip(...)` if it does not change the result"
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
