//! `ProvenanceTracker`: which code, data versions and settings made an output.
//!
//! Formats are the Python pipeline's: the sidecar is `json.dump(metadata, indent=2)` next to
//! the output (`candidates.parquet` -> `candidates.provenance.json`), and `_provenance` holds
//! one flattened row per save (`version, config_hash, created_at, steps_json`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::atomic_file::replace_atomically;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::ProvenanceRecord;
use crate::python::{self, json as pyjson};
use crate::store::CheckpointStore;

/// One recorded processing step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceStep {
    /// The step's name (the Python pipeline writes it under both `name` and `step_name`).
    pub name: String,
    /// The step's name, again.
    pub step_name: String,
    /// When the step was recorded, UTC.
    #[serde(with = "iso")]
    pub timestamp: DateTime<FixedOffset>,
    /// Optional details; absent when empty, as in the Python pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Map<String, Value>>,
}

/// The full provenance record: what [`ProvenanceTracker::create_metadata`] returns and what a
/// sidecar holds. Field order is the Python pipeline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceMetadata {
    /// The pipeline's version.
    pub pipeline_version: String,
    /// The data-source versions of the config ([`Config::data_source_versions`]: the
    /// `versions:` section of a [`PipelineConfig`](crate::PipelineConfig)).
    pub data_source_versions: Map<String, Value>,
    /// The config's [`config_hash`](Config::config_hash).
    pub config_hash: String,
    /// When the tracker was created, UTC.
    #[serde(with = "iso")]
    pub created_at: DateTime<FixedOffset>,
    /// Every recorded step, in order.
    pub processing_steps: Vec<ProvenanceStep>,
}

/// Collects provenance for one pipeline run. Steps are recorded through `&self`, so one
/// tracker can be shared by the threads of a run.
#[derive(Debug)]
pub struct ProvenanceTracker {
    pipeline_version: String,
    config_hash: String,
    data_source_versions: Map<String, Value>,
    created_at: DateTime<FixedOffset>,
    steps: Mutex<Vec<ProvenanceStep>>,
}

fn now() -> DateTime<FixedOffset> {
    // Python's datetime has microsecond resolution; keep the same so values round-trip.
    let t = Utc::now();
    let t = t - chrono::Duration::nanoseconds(i64::from(t.timestamp_subsec_nanos() % 1000));
    t.fixed_offset()
}

mod iso {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        t: &DateTime<FixedOffset>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&python::isoformat(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<DateTime<FixedOffset>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map_err(|e| serde::de::Error::custom(format!("timestamp {text:?}: {e}")))
    }
}

/// A step named `name`, timestamped now; empty details are left out, as in Python.
pub(crate) fn new_step(name: String, details: Option<Map<String, Value>>) -> ProvenanceStep {
    ProvenanceStep {
        step_name: name.clone(),
        name,
        timestamp: now(),
        details: details.filter(|d| !d.is_empty()),
    }
}

/// Writes `metadata` as the sidecar of `output_path` (see [`sidecar_path`]), whole or not at
/// all, and returns its path.
pub fn save_sidecar(metadata: &ProvenanceMetadata, output_path: &Path) -> Result<PathBuf> {
    let path = sidecar_path(output_path)?;
    let text = pyjson::to_string(metadata, Some(2)).map_err(|e| Error::Format(e.to_string()))?;
    replace_atomically(&path, "write sidecar", |tmp| {
        std::fs::write(tmp, text).map_err(|source| Error::Io {
            action: "write sidecar",
            path: tmp.to_owned(),
            source,
        })
    })?;
    Ok(path)
}

/// The sidecar path for an output, as Python's `output_path.with_suffix('.provenance.json')`:
/// the last suffix is replaced (`candidates.parquet` -> `candidates.provenance.json`), a name
/// without one gets it appended.
pub fn sidecar_path(output_path: &Path) -> Result<PathBuf> {
    let name = output_path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            Error::Format(format!(
                "output path {} has no file name for a sidecar",
                output_path.display()
            ))
        })?;
    let stem = match name.rfind('.') {
        Some(i) if i > 0 && i < name.len() - 1 => &name[..i],
        _ => name,
    };
    Ok(output_path.with_file_name(format!("{stem}.provenance.json")))
}

impl ProvenanceTracker {
    /// A tracker for `pipeline_version` and `config`, of any [`Config`] type: its hash and
    /// data-source versions are what every record of the run carries.
    ///
    /// # Panics
    /// When the config cannot be written as JSON (see [`Config::canonical_json`]).
    pub fn new(pipeline_version: impl Into<String>, config: &impl Config) -> Self {
        Self {
            pipeline_version: pipeline_version.into(),
            config_hash: config.config_hash(),
            data_source_versions: config.data_source_versions(),
            created_at: now(),
            steps: Mutex::new(Vec::new()),
        }
    }

    /// A tracker for `config` (of any [`Config`] type), with this library's version unless
    /// `version` is given.
    ///
    /// # Panics
    /// As [`new`](Self::new).
    pub fn from_config(config: &impl Config, version: Option<&str>) -> Self {
        Self::new(version.unwrap_or(env!("CARGO_PKG_VERSION")), config)
    }

    /// The pipeline version.
    pub fn pipeline_version(&self) -> &str {
        &self.pipeline_version
    }

    /// The config hash.
    pub fn config_hash(&self) -> &str {
        &self.config_hash
    }

    /// Records a step, timestamped now. Empty details are left out, as in Python.
    pub fn record_step(&self, step_name: impl Into<String>, details: Option<Map<String, Value>>) {
        self.push_step(new_step(step_name.into(), details));
    }

    /// Appends a step made by [`new_step`].
    pub(crate) fn push_step(&self, step: ProvenanceStep) {
        self.steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(step);
    }

    /// A `_provenance` row of this run holding only `steps` (the row a checkpoint's save
    /// commits with it).
    pub(crate) fn record_of(&self, steps: &[ProvenanceStep]) -> Result<ProvenanceRecord> {
        Ok(ProvenanceRecord {
            version: self.pipeline_version.clone(),
            config_hash: self.config_hash.clone(),
            created_at: self.created_at.naive_utc(),
            steps_json: pyjson::to_string(&steps, None)
                .map_err(|e| Error::Format(e.to_string()))?,
        })
    }

    /// The steps recorded so far.
    pub fn steps(&self) -> Vec<ProvenanceStep> {
        self.steps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The full record.
    pub fn create_metadata(&self) -> ProvenanceMetadata {
        ProvenanceMetadata {
            pipeline_version: self.pipeline_version.clone(),
            data_source_versions: self.data_source_versions.clone(),
            config_hash: self.config_hash.clone(),
            created_at: self.created_at,
            processing_steps: self.steps(),
        }
    }

    /// Writes the sidecar for `output_path` (see [`sidecar_path`]) and returns its path. The
    /// file is written to a temporary name and renamed, so a crash never leaves half a sidecar.
    pub fn save_sidecar(&self, output_path: impl AsRef<Path>) -> Result<PathBuf> {
        save_sidecar(&self.create_metadata(), output_path.as_ref())
    }

    /// Reads a sidecar written by this library or by the Python pipeline.
    pub fn load_sidecar(sidecar_path: impl AsRef<Path>) -> Result<ProvenanceMetadata> {
        let path = sidecar_path.as_ref();
        let text = std::fs::read(path).map_err(|source| Error::Io {
            action: "read sidecar",
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| Error::Sidecar {
            path: path.to_owned(),
            source,
        })
    }

    /// This run's record as a `_provenance` row: the Python pipeline's columns, steps as
    /// `json.dumps(steps)`.
    pub fn store_record(&self) -> Result<ProvenanceRecord> {
        let metadata = self.create_metadata();
        let steps_json = pyjson::to_string(&metadata.processing_steps, None)
            .map_err(|e| Error::Format(e.to_string()))?;
        Ok(ProvenanceRecord {
            version: metadata.pipeline_version,
            config_hash: metadata.config_hash,
            created_at: metadata.created_at.naive_utc(),
            steps_json,
        })
    }

    /// Appends this run's record to the store's `_provenance` table (created if missing).
    pub fn save_to_store<S: CheckpointStore + ?Sized>(&self, store: &S) -> Result<()> {
        store.append_provenance(&self.store_record()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_paths_follow_python_with_suffix() {
        for (output, expected) in [
            ("out/candidates.parquet", "out/candidates.provenance.json"),
            ("out/candidates", "out/candidates.provenance.json"),
            ("a.tar.gz", "a.tar.provenance.json"),
            (".hidden", ".hidden.provenance.json"),
            ("a.", "a..provenance.json"),
        ] {
            assert_eq!(
                sidecar_path(Path::new(output)).unwrap(),
                PathBuf::from(expected),
                "{output}"
            );
        }
        assert!(sidecar_path(Path::new("/")).is_err());
    }
}
