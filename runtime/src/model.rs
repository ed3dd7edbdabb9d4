//! The checkpoint model every store shares: what a checkpoint was made from (its key), the one
//! typed row a store keeps per checkpoint, and a run's provenance row.

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDateTime;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fingerprint::DataVersion;
use crate::python::json as pyjson;

/// What a checkpoint was made from: the function, its code, its key arguments and the config
/// fields it names.
///
/// Stored next to the checkpoint (the DuckDB store keeps it in `_checkpoint_keys`), readable
/// as well as hashed, so a stale checkpoint can say what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointKey {
    /// SHA-256 (lowercase hex) of Python's
    /// `json.dumps({"arguments": ..., "code": ..., "config": ..., "function": ...}, sort_keys=True)`,
    /// `config` left out when empty (so keys of release 0.1.0 are unchanged).
    pub key: String,
    /// The name of the function that made the checkpoint.
    pub function: String,
    /// A hash of the function's source tokens, or the `version = "..."` that pins it.
    pub code: String,
    /// The key arguments, by parameter name. A `DataFrame` argument is its data version:
    /// `{"data_version": "<32 hex digits>"}`.
    pub arguments: Map<String, Value>,
    /// The config fields named by `config(...)`, by their path (`versions.gnomad_version`).
    pub config: Map<String, Value>,
}

impl CheckpointKey {
    /// The key of `function` with `code`, `arguments` and `config` fields.
    pub fn new(
        function: &str,
        code: &str,
        arguments: Map<String, Value>,
        config: Map<String, Value>,
    ) -> Result<Self> {
        /// What the key hashes, fields in sorted order.
        #[derive(serde::Serialize)]
        struct Whole<'a> {
            arguments: &'a Map<String, Value>,
            code: &'a str,
            #[serde(skip_serializing_if = "Map::is_empty")]
            config: &'a Map<String, Value>,
            function: &'a str,
        }
        let arguments = pyjson::sort_object(arguments);
        let config = pyjson::sort_object(config);
        let whole = Whole {
            arguments: &arguments,
            code,
            config: &config,
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
            config,
        })
    }

    /// This key with `code` in place of its own (what an older code hash keyed the same call as).
    pub fn with_code(&self, code: &str) -> Result<Self> {
        Self::new(
            &self.function,
            code,
            self.arguments.clone(),
            self.config.clone(),
        )
    }

    /// The arguments as Python's `json.dumps(arguments, sort_keys=True)` writes them: how they
    /// are stored (`_checkpoint_keys.arguments`) and quoted in messages.
    pub fn arguments_json(&self) -> String {
        python_json(&self.arguments)
    }

    /// The config fields as stored (`_checkpoint_keys.config`), or `None` when there are none.
    pub fn config_json(&self) -> Option<String> {
        (!self.config.is_empty()).then(|| python_json(&self.config))
    }

    /// Why a checkpoint made with `self` cannot stand in for `wanted`, or `None` if it can:
    /// each changed argument and config field by name.
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
        changed_entries("argument", &self.arguments, &wanted.arguments, &mut why);
        changed_entries("config", &self.config, &wanted.config, &mut why);
        if why.is_empty() {
            why.push(format!("key changed ({} -> {})", self.key, wanted.key));
        }
        Some(why.join("; "))
    }
}

/// `map` as Python's `json.dumps(map, sort_keys=True)`. A `Value` holds no non-finite float
/// and only string keys: Python-style JSON of it cannot fail; serde_json's own text is the
/// fallback all the same.
fn python_json(map: &Map<String, Value>) -> String {
    let sorted = pyjson::sort_object(map.clone());
    pyjson::to_string(&sorted, None)
        .unwrap_or_else(|_| serde_json::to_string(&sorted).unwrap_or_default())
}

/// "`what` `name` changed (old -> new)" for every entry that differs between `old` and `new`.
fn changed_entries(
    what: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    why: &mut Vec<String>,
) {
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        match (old.get(name), new.get(name)) {
            (Some(a), Some(b)) if a != b => why.push(format!(
                "{what} `{name}` changed ({} -> {})",
                quote_value(a),
                quote_value(b)
            )),
            (None, Some(b)) => why.push(format!("{what} `{name}` added ({})", quote_value(b))),
            (Some(a), None) => {
                why.push(format!("{what} `{name}` removed (was {})", quote_value(a)))
            }
            _ => {}
        }
    }
}

/// A key value as a reason quotes it: a frame's data version shortened, anything else as JSON.
fn quote_value(value: &Value) -> String {
    if let Value::Object(map) = value
        && map.len() == 1
        && let Some(version) = map
            .get(FRAME_KEY)
            .and_then(Value::as_str)
            .and_then(DataVersion::from_hex)
    {
        return CheckpointVersion::Data(version).short();
    }
    pyjson::to_string(value, None).unwrap_or_else(|_| value.to_string())
}

/// The one field of a `DataFrame` argument's key value.
pub(crate) const FRAME_KEY: &str = "data_version";

/// One version of a checkpoint table in its history: the current one, or an earlier one a store
/// keeps so that a call whose key and inputs match it again restores it instead of computing
/// (see [`CheckpointStore::history`](crate::CheckpointStore::history)).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryVersion {
    /// Its number: a table's keyed saves are numbered from 1 in the order they were made, and
    /// a version keeps its number when it is restored.
    pub version: u64,
    /// Whether it is the table's current checkpoint.
    pub current: bool,
    /// The checkpoint it is: save time, rows, description, key and lineage as they were.
    pub checkpoint: CheckpointInfo,
    /// When it stopped being current (UTC); `None` for the current one.
    pub replaced_at: Option<NaiveDateTime>,
    /// The provenance step of the call that saved it (the JSON list of `_provenance`'s
    /// `steps_json`), where the store recorded it.
    pub step: Option<String>,
    /// The size of its data in bytes, where the store knows it (the shared store's files).
    pub bytes: Option<u64>,
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
    /// Its data version and inputs, recorded with the key (empty without one).
    pub lineage: Lineage,
}

impl CheckpointInfo {
    /// The version of this checkpoint as the checkpoints made from it record it: its data
    /// version, or, for a checkpoint saved without one (by the Python pipeline, by hand, by
    /// release 0.1.0, or adopted), when it was saved: any re-save changes that too.
    pub fn version(&self) -> CheckpointVersion {
        match (&self.key, self.lineage.data_version) {
            (Some(_), Some(version)) => CheckpointVersion::Data(version),
            _ => CheckpointVersion::Saved(self.created_at),
        }
    }

    /// When it was saved, in UTC. The one rule for reading `created_at`: a checkpoint with a
    /// key was saved (or adopted) by this library, in UTC; one without a key was written by the
    /// Python pipeline (its `CURRENT_TIMESTAMP`), by hand, or edited through SQL, in the
    /// writer's local time, read as this machine's local time.
    pub fn saved_utc(&self) -> Option<NaiveDateTime> {
        match self.key {
            Some(_) => self.created_at,
            None => self.created_at.map(local_to_utc),
        }
    }

    /// Whether `other` describes the same saved checkpoint as `self`: the same table, save
    /// time, key and lineage (an adoption or a re-save changes one of them).
    pub fn same_checkpoint(&self, other: &CheckpointInfo) -> bool {
        self.table_name == other.table_name
            && self.created_at == other.created_at
            && self.key.as_ref().map(|k| &k.key) == other.key.as_ref().map(|k| &k.key)
            && self.lineage == other.lineage
    }
}

/// A local time of this machine as UTC (the earlier reading of a time the clocks passed twice;
/// a time skipped by a clock change is taken as it is).
pub(crate) fn local_to_utc(local: NaiveDateTime) -> NaiveDateTime {
    use chrono::TimeZone;
    chrono::Local
        .from_local_datetime(&local)
        .earliest()
        .map_or(local, |t| t.naive_utc())
}

/// What a keyed checkpoint holds and what it was made from besides its key, recorded when it is
/// saved, so a later call can tell whether anything upstream moved on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// The saved frame's [data version](crate::data_version); `None` for a checkpoint saved
    /// before data versions existed (release 0.1.0) or adopted.
    pub data_version: Option<DataVersion>,
    /// The checkpoints it was made from (its declared `reads(...)` and the checkpointed calls
    /// made in its body), each with the version it had then.
    pub inputs: BTreeMap<String, CheckpointVersion>,
    /// The `max_age` it was saved under, in seconds.
    pub max_age_seconds: Option<u64>,
}

impl Lineage {
    /// The inputs as stored: a JSON object of table name to [`CheckpointVersion`] text, or
    /// `None` when there are none.
    pub fn inputs_json(&self) -> Option<String> {
        (!self.inputs.is_empty()).then(|| Value::Object(self.inputs_map()).to_string())
    }

    /// The inputs as a JSON object of table name to [`CheckpointVersion`] text (how they are
    /// stored and shown in provenance steps).
    pub fn inputs_map(&self) -> Map<String, Value> {
        self.inputs
            .iter()
            .map(|(table, version)| (table.clone(), Value::String(version.to_string())))
            .collect()
    }

    /// Parses what [`inputs_json`](Self::inputs_json) writes.
    pub fn parse_inputs(
        json: &str,
    ) -> std::result::Result<BTreeMap<String, CheckpointVersion>, String> {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) else {
            return Err(format!("inputs are not a JSON object: {json:?}"));
        };
        map.into_iter()
            .map(
                |(table, version)| match version.as_str().and_then(CheckpointVersion::parse) {
                    Some(version) => Ok((table, version)),
                    None => Err(format!("input {table:?} has no version: {version}")),
                },
            )
            .collect()
    }
}

/// The version of a checkpoint, as a checkpoint made from it records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointVersion {
    /// Its data version.
    Data(DataVersion),
    /// It has no data version: when it was saved.
    Saved(Option<NaiveDateTime>),
}

impl CheckpointVersion {
    /// Parses the stored text: 32 hex digits, or `saved:` and a time (or `saved:unknown`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.strip_prefix("saved:") {
            Some("unknown") => Some(CheckpointVersion::Saved(None)),
            Some(time) => NaiveDateTime::parse_from_str(time, SAVED_FORMAT)
                .ok()
                .map(|t| CheckpointVersion::Saved(Some(t))),
            None => DataVersion::from_hex(text).map(CheckpointVersion::Data),
        }
    }

    /// How a reason quotes it: the first 12 hex digits of a data version, or the save time.
    pub fn short(&self) -> String {
        match self {
            CheckpointVersion::Data(v) => format!("data {}", &v.to_hex()[..12]),
            CheckpointVersion::Saved(Some(t)) => {
                format!("saved {}", t.format("%Y-%m-%d %H:%M:%S%.6f"))
            }
            CheckpointVersion::Saved(None) => "saved at an unknown time".to_owned(),
        }
    }
}

const SAVED_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f";

/// The stored text: 32 hex digits, or `saved:` and the save time.
impl fmt::Display for CheckpointVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointVersion::Data(v) => write!(f, "{v}"),
            CheckpointVersion::Saved(Some(t)) => write!(f, "saved:{}", t.format(SAVED_FORMAT)),
            CheckpointVersion::Saved(None) => f.write_str("saved:unknown"),
        }
    }
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
        CheckpointKey::new("fetch", "tokens:1", arguments, Map::new()).unwrap()
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
            Some("argument `min_depth` changed (30 -> 20)")
        );
    }

    /// Config fields join the hashed text only when there are some: keys without them are
    /// those of release 0.1.0.
    #[test]
    fn config_fields_are_hashed_after_code() {
        let config = serde_json::json!({"versions.gnomad_version": "v4.1"});
        let Value::Object(config) = config else {
            unreachable!()
        };
        let k = CheckpointKey::new("fetch", "tokens:1", Map::new(), config).unwrap();
        let text = r#"{"arguments": {}, "code": "tokens:1", "config": {"versions.gnomad_version": "v4.1"}, "function": "fetch"}"#;
        let hex: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(k.key, hex);
        assert_eq!(
            k.config_json().as_deref(),
            Some(r#"{"versions.gnomad_version": "v4.1"}"#)
        );
        assert_eq!(key(serde_json::json!({})).config_json(), None);
    }

    #[test]
    fn difference_names_each_argument_and_quotes_frames_by_version() {
        let frame = |hex: &str| serde_json::json!({ FRAME_KEY: hex });
        let a = key(serde_json::json!({"constraint": frame(&"3f2a".repeat(8)), "x": 1}));
        let b = key(serde_json::json!({"constraint": frame(&"9c1d".repeat(8)), "y": [2]}));
        assert_eq!(
            a.difference(&b).as_deref(),
            Some(
                "argument `constraint` changed (data 3f2a3f2a3f2a -> data 9c1d9c1d9c1d); \
                 argument `x` removed (was 1); argument `y` added ([2])"
            )
        );
    }

    #[test]
    fn versions_round_trip_through_their_text() {
        let saved = chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
            .unwrap()
            .and_hms_micro_opt(16, 1, 2, 345)
            .unwrap();
        let data = CheckpointVersion::Data(DataVersion::from_hex(&"ab".repeat(16)).unwrap());
        for version in [
            data,
            CheckpointVersion::Saved(Some(saved)),
            CheckpointVersion::Saved(None),
        ] {
            assert_eq!(
                CheckpointVersion::parse(&version.to_string()),
                Some(version)
            );
        }
        assert_eq!(
            CheckpointVersion::Saved(Some(saved)).to_string(),
            "saved:2026-11-25T16:01:02.000345"
        );
        assert_eq!(CheckpointVersion::parse("abc"), None);
        let lineage = Lineage {
            inputs: [("a".to_owned(), data)].into(),
            ..Lineage::default()
        };
        let json = lineage.inputs_json().unwrap();
        assert_eq!(Lineage::parse_inputs(&json).unwrap(), lineage.inputs);
        assert!(Lineage::parse_inputs("[1]").is_err());
        assert_eq!(Lineage::default().inputs_json(), None);
    }
}
