//! The checkpoint model every store shares: what a checkpoint was made from (its key), the one
//! typed row a store keeps per checkpoint, and a run's provenance row.

use chrono::NaiveDateTime;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::python::json as pyjson;

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
    /// The key arguments, by parameter name.
    pub arguments: Map<String, Value>,
}

impl CheckpointKey {
    /// The key of `function` with `code` and `arguments`.
    pub fn new(function: &str, code: &str, arguments: Map<String, Value>) -> Result<Self> {
        /// What the key hashes, fields in sorted order.
        #[derive(serde::Serialize)]
        struct Whole<'a> {
            arguments: &'a Map<String, Value>,
            code: &'a str,
            function: &'a str,
        }
        let arguments = pyjson::sort_object(arguments);
        let whole = Whole {
            arguments: &arguments,
            code,
            function,
        };
        let text = pyjson::to_string(&whole, None)
            .map_err(|e| Error::Format(format!("checkpoint key of {function}: {e}")))?;
        let digest = Sha256::digest(text.as_bytes());
        Ok(Self {
            key: digest.iter().map(|b| format!("{b:02x}")).collect(),
            function: function.to_owned(),
            code: code.to_owned(),
            arguments,
        })
    }

    /// The arguments as Python's `json.dumps(arguments, sort_keys=True)` writes them: how they
    /// are stored (`_checkpoint_keys.arguments`) and quoted in messages.
    pub fn arguments_json(&self) -> String {
        // A `Value` holds no non-finite float and only string keys: Python-style JSON of it
        // cannot fail; serde_json's own text is the fallback all the same.
        let sorted = pyjson::sort_object(self.arguments.clone());
        pyjson::to_string(&sorted, None)
            .unwrap_or_else(|_| serde_json::to_string(&sorted).unwrap_or_default())
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
                self.arguments_json(),
                wanted.arguments_json()
            ));
        }
        if why.is_empty() {
            why.push(format!("key changed ({} -> {})", self.key, wanted.key));
        }
        Some(why.join("; "))
    }
}

/// One checkpoint as a store holds it: its `_checkpoints` row (the Python pipeline's columns)
/// with the key it was saved with.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    /// The table the checkpoint is for.
    pub table_name: String,
    /// When it was saved (UTC; stores written by the Python pipeline hold DuckDB's
    /// `CURRENT_TIMESTAMP` in the writer's session time zone).
    pub created_at: Option<NaiveDateTime>,
    /// Rows in the table when it was saved.
    pub row_count: Option<i64>,
    /// Free-text description given at save time.
    pub description: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(arguments: Value) -> CheckpointKey {
        let Value::Object(arguments) = arguments else {
            panic!("an object")
        };
        CheckpointKey::new("fetch", "tokens:1", arguments).unwrap()
    }

    /// The key is Python's: `hashlib.sha256(json.dumps({...}, sort_keys=True).encode())`.
    #[test]
    fn key_is_the_hash_of_python_json() {
        let k = key(serde_json::json!({"min_depth": 30, "b": [1.5, null, "ü"]}));
        let text = r#"{"arguments": {"b": [1.5, null, "\u00fc"], "min_depth": 30}, "code": "tokens:1", "function": "fetch"}"#;
        let digest = Sha256::digest(text.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(k.key, hex);
        assert_eq!(
            k.arguments_json(),
            r#"{"b": [1.5, null, "\u00fc"], "min_depth": 30}"#
        );
    }

    #[test]
    fn difference_names_what_changed() {
        let a = key(serde_json::json!({"min_depth": 30}));
        let b = key(serde_json::json!({"min_depth": 20}));
        assert_eq!(a.difference(&a.clone()), None);
        assert_eq!(
            a.difference(&b).as_deref(),
            Some(r#"arguments changed ({"min_depth": 30} -> {"min_depth": 20})"#)
        );
    }
}
