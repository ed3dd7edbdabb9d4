//! A pipeline's config: the [`Config`] trait, all the generic core asks of a config type (its
//! hash and its data-source versions, for provenance), and the usher pipeline's own schema,
//! [`PipelineConfig`], the default (`usher.rs`).
//!
//! The core reads no field of a config: `config(a.b)` in `#[checkpointed]` names fields that
//! the compiler checks against the pipeline's config type, and provenance asks the trait. So a
//! pipeline with settings of its own brings its own type rather than pretending to be usher's.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::python::json as pyjson;

mod usher;

pub use usher::{ApiConfig, DataSourceVersions, PipelineConfig, ScoringWeights};

/// A pipeline's config: the settings a run is made with, identified in provenance by a hash
/// and by the versions of the data sources it names.
///
/// A [`Pipeline`](crate::Pipeline) is generic over its config type (`Pipeline<S, C>`, with
/// [`PipelineConfig`] the default), so `config(a.b)` in `#[checkpointed]` is checked by the
/// compiler against *your* type, and a [`ProvenanceTracker`](crate::ProvenanceTracker) records
/// your type's hash. A type that implements `serde::Serialize` needs one line,
/// `impl Config for LabConfig {}`: its hash is taken of its
/// [canonical JSON](Config::canonical_json), and it names no data-source versions.
///
/// ```
/// use serde::Serialize;
/// use usher_pipeline::polars::prelude::*;
/// use usher_pipeline::{Config, MemoryStore, Pipeline, checkpointed};
///
/// /// A lab's own settings: nothing of usher's schema.
/// #[derive(Clone, Serialize)]
/// struct LabConfig {
///     model: Model,
///     /// Left out of the hash: where the output goes does not change what it is.
///     #[serde(skip)]
///     out_dir: String,
/// }
///
/// #[derive(Clone, Serialize)]
/// struct Model {
///     threshold: f64,
///     name: String,
/// }
///
/// impl Config for LabConfig {}
///
/// /// Rerun when `model.threshold` changes, not when anything else in the config does.
/// #[checkpointed(table = "variant_hits", config(model.threshold))]
/// fn fetch_hits(ctx: &Pipeline<MemoryStore, LabConfig>) -> Result<DataFrame, usher_pipeline::Error> {
///     let threshold = ctx.config().map_or(0.0, |c| c.model.threshold);
///     Ok(df!("gene" => ["USH2A"], "score" => [threshold])?)
/// }
///
/// # fn main() -> Result<(), usher_pipeline::Error> {
/// let config = LabConfig {
///     model: Model { threshold: 0.8, name: "splice-v2".into() },
///     out_dir: "out".into(),
/// };
/// let pipeline = Pipeline::with_config(MemoryStore::new(), &config)?;
/// let hits = fetch_hits(&pipeline)?;
/// assert_eq!(hits.height(), 1);
/// assert_eq!(
///     config.canonical_json(),
///     r#"{"model": {"name": "splice-v2", "threshold": 0.8}}"#
/// );
/// assert_eq!(pipeline.provenance().config_hash(), config.config_hash());
/// assert!(pipeline.provenance().create_metadata().data_source_versions.is_empty());
/// # Ok(()) }
/// ```
///
/// Override [`data_source_versions`](Config::data_source_versions) to record the releases your
/// inputs come from (as [`PipelineConfig`] records its `versions:` section), and
/// [`config_hash`](Config::config_hash) only when the hash is defined elsewhere (another
/// program's, say). To leave a field out of the hash, leave it out of serde's form
/// (`#[serde(skip)]`, as above).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a pipeline config",
    label = "not a pipeline config",
    note = "a type that derives `serde::Serialize` becomes one with `impl usher_pipeline::Config for {Self} {{}}`"
)]
pub trait Config: Serialize {
    /// The text the hash is taken of: this value as Python's
    /// `json.dumps(value, sort_keys=True)` writes the same data.
    ///
    /// Exactly: the value is converted by serde into a JSON value as
    /// [`serde_json::to_value`] does (structs and maps become objects, `None` and `()` become
    /// `null`, enums are externally tagged, a non-finite float becomes `null`), then written
    /// with the keys of every object sorted by code point, `", "` and `": "` as separators, every
    /// character outside printable ASCII escaped as `\uXXXX`, and floats in Python's `repr` form
    /// (`0.2`, `1e-07`, `3.0`); see [`python::json`](crate::python::json). For
    /// [`PipelineConfig`] this is the Python pipeline's canonical JSON, byte for byte.
    ///
    /// # Panics
    /// When serde cannot convert the value into JSON: a map whose keys are not strings or
    /// numbers, or a `Serialize` implementation that fails. That is a bug of the type, found the
    /// first time a tracker or pipeline is made from it.
    fn canonical_json(&self) -> String {
        canonical_json(self)
    }

    /// The config's identity in provenance (each `_provenance` row, every sidecar): SHA-256 of
    /// the UTF-8 bytes of [`canonical_json`](Config::canonical_json), as 64 lowercase hex
    /// digits. Two configs with the same serde form have the same hash; a change to any
    /// serialised field changes it.
    ///
    /// # Panics
    /// As [`canonical_json`](Config::canonical_json).
    fn config_hash(&self) -> String {
        sha256_hex(&self.canonical_json())
    }

    /// The versions of the external data sources the config names (releases, dataset dates),
    /// recorded as `data_source_versions` in provenance. None by default (an empty object).
    fn data_source_versions(&self) -> Map<String, Value> {
        Map::new()
    }
}

/// [`Config::canonical_json`]'s rule, for any serialisable value.
fn canonical_json<T: Serialize + ?Sized>(value: &T) -> String {
    let value = serde_json::to_value(value).unwrap_or_else(|e| {
        panic!(
            "the config of type `{}` cannot be written as JSON: {e}",
            std::any::type_name::<T>()
        )
    });
    pyjson::to_string(&pyjson::sort_keys(value), None)
        .expect("serialising a JSON value cannot fail")
}

/// SHA-256 of `text`, as 64 lowercase hex digits.
fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    /// A lab's config, its fields declared out of sorted order, with text Python escapes.
    #[derive(Serialize)]
    struct Lab {
        model: Model,
        cohort: String,
        samples: Option<u32>,
    }

    #[derive(Serialize)]
    struct Model {
        threshold: f64,
        epsilon: f64,
        name: String,
    }

    impl Config for Lab {}

    fn lab() -> Lab {
        Lab {
            model: Model {
                threshold: 0.25,
                epsilon: 1e-7,
                name: "splice-v2".to_owned(),
            },
            cohort: "Zürich".to_owned(),
            samples: None,
        }
    }

    /// The default rule is Python's: both values below are
    /// `hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()` for
    /// `d = {"model": {"threshold": 0.25, "epsilon": 1e-07, "name": "splice-v2"},
    /// "cohort": "Zürich", "samples": None}`, computed by Python 3.11.
    #[test]
    fn a_serialisable_type_hashes_as_python_dumps_it_with_sorted_keys() {
        let lab = lab();
        assert_eq!(
            lab.canonical_json(),
            r#"{"cohort": "Z\u00fcrich", "model": {"epsilon": 1e-07, "name": "splice-v2", "threshold": 0.25}, "samples": null}"#
        );
        assert_eq!(lab.config_hash(), PYTHON_HASH_OF_LAB);
        assert!(lab.data_source_versions().is_empty());
    }

    const PYTHON_HASH_OF_LAB: &str =
        "7f446b51450f92657687dc1cea55c1e685462ef8efb9ef9f4b887bcfb5544840";

    #[test]
    fn every_serialised_field_is_in_the_hash() {
        let base = lab().config_hash();
        let mut nested = lab();
        nested.model.threshold = 0.3;
        let mut unset = lab();
        unset.samples = Some(0);
        assert_ne!(nested.config_hash(), base);
        assert_ne!(unset.config_hash(), base);
        assert_ne!(nested.config_hash(), unset.config_hash());
        assert_eq!(
            lab().config_hash(),
            base,
            "the hash is a function of the value"
        );
    }

    #[test]
    fn a_map_config_hashes_by_its_sorted_keys() {
        #[derive(Serialize)]
        struct Weights(BTreeMap<String, f64>);
        impl Config for Weights {}
        let w = Weights(BTreeMap::from([
            ("b".to_owned(), 2.0),
            ("a".to_owned(), 0.5),
        ]));
        assert_eq!(w.canonical_json(), r#"{"a": 0.5, "b": 2.0}"#);
    }

    #[test]
    #[should_panic(expected = "cannot be written as JSON")]
    fn a_type_serde_cannot_write_as_json_is_a_bug_named_at_once() {
        #[derive(Serialize)]
        struct ByPair(BTreeMap<(u8, u8), u8>);
        impl Config for ByPair {}
        ByPair(BTreeMap::from([((1, 2), 3)])).config_hash();
    }

    #[test]
    fn overridden_methods_are_what_is_recorded() {
        #[derive(Serialize)]
        struct Pinned;
        impl Config for Pinned {
            fn config_hash(&self) -> String {
                "from-elsewhere".to_owned()
            }
            fn data_source_versions(&self) -> Map<String, Value> {
                let Value::Object(map) = json!({"clinvar": "2026-11"}) else {
                    unreachable!()
                };
                map
            }
        }
        assert_eq!(Pinned.config_hash(), "from-elsewhere");
        assert_eq!(Pinned.data_source_versions()["clinvar"], "2026-11");
        assert_eq!(Pinned.canonical_json(), "null");
    }
}
