//! ProvenanceTracker: the seed's five provenance tests in Rust form, plus the formats.

use serde::Serialize;
use serde_json::{Map, Value, json};
use usher_pipeline::CheckpointStore;
use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    Config, Error, Pipeline, PipelineConfig, PipelineStore, ProvenanceTracker, checkpointed,
};

/// A config whose directories live in a temporary directory (the seed's test fixture).
fn config(dir: &std::path::Path) -> PipelineConfig {
    let yaml = crate::common::config_yaml(dir, &dir.join("test.duckdb"));
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    PipelineConfig::load(&path).unwrap()
}

#[test]
fn provenance_metadata_structure() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    assert!(
        dir.path().join("data").is_dir() && dir.path().join("cache").is_dir(),
        "load creates the directories"
    );
    let tracker = ProvenanceTracker::new("0.1.0", &config);
    let value = serde_json::to_value(tracker.create_metadata()).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "pipeline_version",
        "data_source_versions",
        "config_hash",
        "created_at",
        "processing_steps",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert_eq!(value["pipeline_version"], "0.1.0");
    assert_eq!(
        value["data_source_versions"],
        json!({"ensembl_release": 113, "gnomad_version": "v4.1", "gtex_version": "v8", "hpa_version": "23.0"})
    );
    let created = value["created_at"].as_str().unwrap();
    assert!(
        created.ends_with("+00:00"),
        "UTC with offset, as Python's isoformat(): {created}"
    );
    assert_eq!(value["processing_steps"], json!([]));
}

#[test]
fn provenance_records_steps_with_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = ProvenanceTracker::new("0.1.0", &config(dir.path()));
    let details = json!({"rows": 20000, "source": "gnomAD"})
        .as_object()
        .unwrap()
        .clone();
    tracker.record_step("download_genes", None);
    tracker.record_step("filter_protein_coding", Some(details.clone()));
    tracker.record_step("empty_details", Some(serde_json::Map::new()));
    let steps = tracker.create_metadata().processing_steps;
    assert_eq!(steps.len(), 3);
    assert_eq!(
        (steps[0].name.as_str(), steps[0].step_name.as_str()),
        ("download_genes", "download_genes")
    );
    assert_eq!(steps[0].details, None);
    assert_eq!(steps[1].details.as_ref(), Some(&details));
    assert_eq!(
        steps[2].details, None,
        "empty details are left out, as Python's `if details:`"
    );
    assert!(steps[0].timestamp <= steps[1].timestamp && steps[1].timestamp <= steps[2].timestamp);
    let text = serde_json::to_string(&steps[0]).unwrap();
    assert!(!text.contains("details"), "{text}");
}

#[test]
fn provenance_sidecar_roundtrip_and_python_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = ProvenanceTracker::new("0.1.0", &config(dir.path()));
    tracker.record_step(
        "score",
        Some(
            json!({"weight": 0.1, "note": "ü", "tiny": 1e-7})
                .as_object()
                .unwrap()
                .clone(),
        ),
    );
    let output = dir.path().join("results/candidates.parquet");
    let sidecar = tracker.save_sidecar(&output).unwrap();
    assert_eq!(
        sidecar,
        dir.path().join("results/candidates.provenance.json")
    );
    let loaded = ProvenanceTracker::load_sidecar(&sidecar).unwrap();
    assert_eq!(loaded, tracker.create_metadata());
    let text = std::fs::read_to_string(&sidecar).unwrap();
    assert!(text.starts_with("{\n  \"pipeline_version\": \"0.1.0\",\n  \"data_source_versions\": {\n    \"ensembl_release\": 113,"), "{text}");
    assert!(
        text.contains("\"note\": \"\\u00fc\"") && text.contains("\"tiny\": 1e-07"),
        "Python's escapes and float repr: {text}"
    );
    assert!(
        !text.ends_with('\n'),
        "json.dump writes no trailing newline"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary file left behind: {leftovers:?}"
    );
}

#[test]
fn provenance_config_hash_included() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let tracker = ProvenanceTracker::from_config(&config, None);
    assert_eq!(tracker.create_metadata().config_hash, config.config_hash());
    assert_eq!(tracker.config_hash().len(), 64);
    assert_eq!(tracker.pipeline_version(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn provenance_save_to_store_appends_flattened_rows() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let store = PipelineStore::from_config(&config).unwrap();
    let tracker = ProvenanceTracker::new("0.1.0", &config);
    tracker.record_step("a", Some(json!({"n": 1}).as_object().unwrap().clone()));
    tracker.save_to_store(&store).unwrap();
    tracker.save_to_store(&store).unwrap();
    let rows = store
        .query(
            "SELECT version, config_hash, created_at, steps_json FROM _provenance",
            &[],
        )
        .unwrap();
    assert_eq!(rows.height(), 2);
    assert_eq!(
        rows.column("version").unwrap().str().unwrap().get(0),
        Some("0.1.0")
    );
    assert_eq!(
        rows.column("config_hash").unwrap().str().unwrap().get(0),
        Some(config.config_hash().as_str())
    );
    let steps = rows
        .column("steps_json")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_owned();
    assert!(
        steps.starts_with("[{\"name\": \"a\", \"step_name\": \"a\", \"timestamp\": \""),
        "Python's json.dumps: {steps}"
    );
    assert!(steps.ends_with("\"details\": {\"n\": 1}}]"), "{steps}");
}

#[test]
fn broken_sidecars_are_typed_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.provenance.json");
    std::fs::write(&path, "{\"pipeline_version\": ").unwrap();
    let err = ProvenanceTracker::load_sidecar(&path).unwrap_err();
    assert!(matches!(err, Error::Sidecar { .. }), "{err}");
    assert!(err.to_string().contains("bad.provenance.json"), "{err}");
    let missing = ProvenanceTracker::load_sidecar(dir.path().join("none.json")).unwrap_err();
    assert!(
        matches!(missing, Error::Io { .. }) && missing.to_string().contains("none.json"),
        "{missing}"
    );
}

/// A lab's own config type: its hash by the default rule, its data-source versions its own.
#[derive(Debug, Clone, Serialize)]
struct LabConfig {
    model: Model,
    cohort: String,
    clinvar_release: String,
}

#[derive(Debug, Clone, Serialize)]
struct Model {
    threshold: f64,
    name: String,
}

impl Config for LabConfig {
    fn data_source_versions(&self) -> Map<String, Value> {
        let mut versions = Map::new();
        versions.insert("clinvar".into(), self.clinvar_release.clone().into());
        versions
    }
}

fn lab_config() -> LabConfig {
    LabConfig {
        model: Model {
            threshold: 0.8,
            name: "splice-v2".to_owned(),
        },
        cohort: "retina-2026".to_owned(),
        clinvar_release: "2026-11".to_owned(),
    }
}

/// `hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()` for
/// `d = {"model": {"threshold": 0.8, "name": "splice-v2"}, "cohort": "retina-2026",
/// "clinvar_release": "2026-11"}`, computed by Python 3.11.
const LAB_HASH: &str = "bbea6a51c67168491b219979d10276d9dc21700e8a29bae4a3171ad2b6fbfa68";

#[checkpointed(table = "variant_hits", config(model.threshold))]
fn fetch_variant_hits(ctx: &Pipeline<PipelineStore, LabConfig>) -> Result<DataFrame, Error> {
    Ok(df!("gene_symbol" => ["USH2A"], "splice_score" => [0.91])?)
}

#[test]
fn a_users_config_type_is_what_provenance_records() {
    let lab = lab_config();
    assert_eq!(lab.config_hash(), LAB_HASH);
    let tracker = ProvenanceTracker::new("lab-pipeline 2.1", &lab);
    let metadata = tracker.create_metadata();
    assert_eq!(metadata.config_hash, LAB_HASH);
    assert_eq!(
        Value::Object(metadata.data_source_versions),
        json!({"clinvar": "2026-11"})
    );

    // Through a pipeline of the lab's type: every `_provenance` row and the sidecar carry it.
    let dir = tempfile::tempdir().unwrap();
    let store = PipelineStore::open(dir.path().join("lab.duckdb")).unwrap();
    let pipeline = Pipeline::with_config(store, &lab).unwrap();
    assert_eq!(pipeline.provenance().config_hash(), LAB_HASH);
    fetch_variant_hits(&pipeline).unwrap();
    pipeline.save_provenance().unwrap();
    let rows = pipeline
        .store()
        .query("SELECT config_hash FROM _provenance", &[])
        .unwrap();
    assert_eq!(rows.height(), 2, "the step's row and the run's");
    let hashes: Vec<Option<&str>> = rows
        .column("config_hash")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(hashes, [Some(LAB_HASH), Some(LAB_HASH)]);
    let sidecar = pipeline
        .provenance()
        .save_sidecar(dir.path().join("variant_hits.parquet"))
        .unwrap();
    let loaded = ProvenanceTracker::load_sidecar(&sidecar).unwrap();
    assert_eq!(loaded.config_hash, LAB_HASH);
    assert_eq!(
        Value::Object(loaded.data_source_versions),
        json!({"clinvar": "2026-11"})
    );
    assert_eq!(loaded.processing_steps.len(), 1);
}

#[test]
fn a_serialisable_type_without_versions_records_an_empty_object() {
    #[derive(Serialize)]
    struct Thresholds {
        min_depth: u32,
    }
    impl Config for Thresholds {}
    let metadata = ProvenanceTracker::new("1.0", &Thresholds { min_depth: 30 }).create_metadata();
    assert_eq!(
        metadata.config_hash,
        // `json.dumps({"min_depth": 30}, sort_keys=True)` hashed by Python 3.11.
        "3fda94dc5939cf9194077a02922284514b9f80cc8fb120042785c40802c83d40"
    );
    assert!(metadata.data_source_versions.is_empty());
    let text = serde_json::to_string(&metadata).unwrap();
    assert!(text.contains(r#""data_source_versions":{}"#), "{text}");
}
