//! Interop with the Python pipeline, both ways, against real Python duckdb + polars
//! (`.ci/python-env`: py1 = duckdb 1.5.6, the version the seed code runs on; py2 = duckdb 2.0.1).
//!
//! - A store, Parquet export and sidecar written by the seed code open here with the same
//!   tables, metadata and values; what this library then writes into that 1.x store stays
//!   readable by duckdb 1.x.
//! - A store created here (default storage compatibility) opens in the seed code on duckdb 1.x
//!   and in duckdb 2.x with the same values; the sidecar is byte-identical to Python's
//!   `json.dump(indent=2)` of the same record.

use crate::common;

use std::path::Path;
use usher_pipeline::CheckpointStore;

use common::{assert_frames_equal, genes, python, run_python};
use serde_json::json;
use usher_pipeline::{PipelineConfig, PipelineStore, ProvenanceTracker};

fn write_config(dir: &Path) -> PipelineConfig {
    let yaml = format!(
        "data_dir: {d}/data\ncache_dir: {d}/data/cache\nduckdb_path: {d}/pipeline.duckdb\nversions:\n  ensembl_release: 113\n  gnomad_version: v4.1\napi: {{}}\nscoring: {{}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    PipelineConfig::load(dir.join("config.yaml")).unwrap()
}

#[test]
fn python_seed_store_opens_here_and_stays_readable_by_duckdb_1x() {
    let Some(py1) = python("py1") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write_config(d);
    let out = run_python(&py1, "interop.py", &["write", d.to_str().unwrap()]);
    let reported: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        reported["config_hash"],
        config.config_hash(),
        "config_hash agrees with Python's for the same file"
    );

    let store = PipelineStore::open(d.join("py.duckdb")).unwrap();
    let list = store.list_checkpoints().unwrap();
    let mut rows: Vec<(String, Option<i64>, Option<String>)> = list
        .iter()
        .map(|c| (c.table_name.clone(), c.row_count, c.description.clone()))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("empty_genes".into(), Some(0), Some("".into())),
            (
                "genes".into(),
                Some(5),
                Some("written by the Python seed".into())
            )
        ]
    );
    assert!(list.iter().all(|c| c.created_at.is_some()));
    assert_frames_equal(&store.load_dataframe("genes").unwrap().unwrap(), &genes());
    assert_frames_equal(
        &store.load_dataframe("empty_genes").unwrap().unwrap(),
        &genes().head(Some(0)),
    );
    let parquet = store
        .query(
            "SELECT * FROM read_parquet(?)",
            &[d.join("out/genes.parquet").to_str().unwrap().into()],
        )
        .unwrap();
    assert_frames_equal(&parquet, &genes());

    let prov = store
        .query(
            "SELECT version, config_hash, created_at, steps_json FROM _provenance",
            &[],
        )
        .unwrap();
    assert_eq!(prov.height(), 1);
    assert_eq!(
        prov.column("version").unwrap().str().unwrap().get(0),
        Some("0.9.0-python")
    );
    assert_eq!(
        prov.column("config_hash").unwrap().str().unwrap().get(0),
        Some(config.config_hash().as_str())
    );
    let steps: serde_json::Value = serde_json::from_str(
        prov.column("steps_json")
            .unwrap()
            .str()
            .unwrap()
            .get(0)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(steps[0]["details"]["rows"], 5);

    let meta = ProvenanceTracker::load_sidecar(d.join("out/genes.provenance.json")).unwrap();
    assert_eq!(meta.pipeline_version, "0.9.0-python");
    assert_eq!(meta.config_hash, config.config_hash());
    assert_eq!(
        serde_json::Value::Object(meta.data_source_versions.clone()),
        json!({"ensembl_release": 113, "gnomad_version": "v4.1", "gtex_version": "v8", "hpa_version": "23.0"})
    );
    assert_eq!(meta.processing_steps.len(), 2);
    assert_eq!(
        meta.processing_steps[0].details.as_ref().unwrap()["source"],
        "gnomAD"
    );
    assert_eq!(meta.processing_steps[1].details, None);
    assert_eq!(meta.created_at.offset().local_minus_utc(), 0);

    // This library writes into the Python-made (duckdb 1.x) store...
    store
        .save_dataframe("from_rust", &genes().head(Some(3)), "Rust wrote here")
        .unwrap();
    drop(store);
    // ...and duckdb 1.x still reads all of it.
    run_python(&py1, "interop.py", &["reread", d.to_str().unwrap()]);
}

#[test]
fn rust_store_opens_in_python_duckdb_1x_and_2x() {
    let (Some(py1), Some(py2)) = (python("py1"), python("py2")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write_config(d);
    {
        let store = PipelineStore::open(d.join("rust.duckdb")).unwrap();
        store
            .save_dataframe("genes", &genes(), "written by Rust ü")
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        store
            .save_dataframe("empty_genes", &genes().head(Some(0)), "")
            .unwrap();
        store
            .export_parquet("genes", &d.join("out/genes.parquet"))
            .unwrap();
        let tracker = ProvenanceTracker::new("0.1.0-rust", &config);
        tracker.record_step(
            "fetch_genes",
            Some(
                json!({"rows": 5, "ratio": 0.1, "note": "ü"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        );
        tracker.record_step("no_details", None);
        tracker.save_to_store(&store).unwrap();
        tracker.save_sidecar(d.join("out/genes.parquet")).unwrap();
    }
    std::fs::write(
        d.join("expected.json"),
        json!({"config_hash": config.config_hash()}).to_string(),
    )
    .unwrap();
    run_python(&py2, "interop.py", &["read-v2", d.to_str().unwrap()]);
    run_python(&py1, "interop.py", &["read", d.to_str().unwrap()]);
    // The seed code wrote a table into the Rust-made store: it reads back here.
    let store = PipelineStore::open(d.join("rust.duckdb")).unwrap();
    assert_frames_equal(
        &store.load_dataframe("from_python").unwrap().unwrap(),
        &genes().head(Some(2)),
    );
    assert!(store.has_checkpoint("from_python").unwrap());
}

/// The default keeps new files readable by duckdb 1.x; opting out writes DuckDB 2.0's storage
/// format, which 1.x refuses and 2.x opens. Proves the default is what makes the test above pass.
#[test]
fn newer_storage_format_is_opt_in() {
    let (Some(py1), Some(py2)) = (python("py1"), python("py2")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (compat, newest) = (
        dir.path().join("compat.duckdb"),
        dir.path().join("newest.duckdb"),
    );
    let frame = genes();
    PipelineStore::open(&compat)
        .unwrap()
        .save_dataframe("genes", &frame, "")
        .unwrap();
    let options = usher_pipeline::StoreOptions {
        storage_compatibility_version: None,
        ..Default::default()
    };
    PipelineStore::open_with(&newest, &options)
        .unwrap()
        .save_dataframe("genes", &frame, "")
        .unwrap();
    let probe =
        |py: &Path, file: &Path| run_python(py, "interop.py", &["probe", file.to_str().unwrap()]);
    assert_eq!(probe(&py1, &compat).trim(), "opened");
    let refused = probe(&py1, &newest);
    assert!(
        refused.starts_with("refused:") && refused.contains("version"),
        "duckdb 1.x should refuse: {refused}"
    );
    assert_eq!(probe(&py2, &newest).trim(), "opened");
}

static KEYED_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[usher_pipeline::checkpointed(table = "genes")]
fn fetch_genes_keyed(
    ctx: &usher_pipeline::Pipeline,
    release: i64,
) -> Result<usher_pipeline::polars::prelude::DataFrame, usher_pipeline::Error> {
    KEYED_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(genes())
}

/// A `#[checkpointed]` table is an ordinary checkpoint to the seed code; when the seed code
/// saves it again, the key no longer vouches for it and the attribute does not trust it.
#[test]
fn python_resave_of_a_keyed_checkpoint_is_not_trusted() {
    use std::sync::atomic::Ordering::SeqCst;
    use usher_pipeline::{Error, Pipeline, UnkeyedPolicy};
    let Some(py1) = python("py1") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write_config(d);
    let open = || {
        Pipeline::new(
            PipelineStore::open(d.join("keyed.duckdb")).unwrap(),
            ProvenanceTracker::from_config(&config, None),
        )
    };
    {
        let p = open();
        fetch_genes_keyed(&p, 113).unwrap();
        fetch_genes_keyed(&p, 113).unwrap();
        assert_eq!(KEYED_CALLS.load(SeqCst), 1);
    }
    run_python(&py1, "interop.py", &["resave", d.to_str().unwrap()]);
    let p = open();
    assert!(matches!(
        fetch_genes_keyed(&p, 113),
        Err(Error::UnkeyedCheckpoint { .. })
    ));
    assert_eq!(KEYED_CALLS.load(SeqCst), 1);
    let adopted = open().with_unkeyed(UnkeyedPolicy::Adopt);
    let df = fetch_genes_keyed(&adopted, 113).unwrap();
    assert_eq!(KEYED_CALLS.load(SeqCst), 1, "adopted, not recomputed");
    assert_frames_equal(&df, &genes().head(Some(2)));
}

/// Adopts the Python-written `genes` of `USHER_TEST_STORE` under a one-hour `max_age` and prints
/// the outcome (the child half of `python_local_save_times_have_their_age_in_every_zone`, run
/// with the zone's `TZ`).
#[test]
#[ignore = "the child process of python_local_save_times_have_their_age_in_every_zone"]
fn child_adopts_a_python_table() {
    #[usher_pipeline::checkpointed(table = "genes", max_age = "1h")]
    fn fetch_genes_hourly(
        ctx: &usher_pipeline::Pipeline,
    ) -> Result<usher_pipeline::polars::prelude::DataFrame, usher_pipeline::Error> {
        Ok(genes())
    }
    let Some(path) = std::env::var_os("USHER_TEST_STORE") else {
        return;
    };
    let dir = Path::new(&path).parent().unwrap().to_owned();
    let config = write_config(&dir);
    let pipeline = || -> usher_pipeline::Pipeline {
        usher_pipeline::Pipeline::new(
            PipelineStore::open(&path).unwrap(),
            ProvenanceTracker::from_config(&config, None),
        )
        .with_unkeyed(usher_pipeline::UnkeyedPolicy::Adopt)
    };
    // Adopted now; then, by the pipeline's clock, half an hour and two hours later.
    let now = chrono::Utc::now().naive_utc();
    let mut outcomes = Vec::new();
    for later in [None, Some(30), Some(120)] {
        let p = match later {
            None => pipeline(),
            Some(minutes) => {
                pipeline().with_clock(move || now + chrono::TimeDelta::minutes(minutes))
            }
        };
        fetch_genes_hourly(&p).unwrap();
        let step = p.provenance().steps().pop().unwrap().details.unwrap();
        outcomes.push(format!(
            "{}{}",
            step["outcome"].as_str().unwrap(),
            step.get("reason")
                .and_then(|r| r.as_str())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    println!("OUTCOME {}", outcomes.join(", "));
}

/// The Python pipeline stamps `_checkpoints.created_at` with its local time; this library reads
/// such a save time as local time, so a table written a moment ago is a moment old (adopted
/// under a one-hour `max_age`), west of UTC as east of it, and once adopted (stamped anew in
/// UTC) it ages by the pipeline's clock: a hit half an hour later, expired two hours later.
/// Read as UTC, it was five hours old in New York.
#[test]
fn python_local_save_times_have_their_age_in_every_zone() {
    let Some(py1) = python("py1") else { return };
    for zone in ["America/New_York", "Asia/Tokyo", "UTC"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let out = std::process::Command::new(&py1)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/interop.py"))
            .args(["write-local", d.to_str().unwrap()])
            .env("TZ", zone)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let child = common::child_test(&common::test_name!(child_adopts_a_python_table))
            .env("USHER_TEST_STORE", d.join("local.duckdb"))
            .env("TZ", zone)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&child.stdout);
        let outcome = stdout
            .lines()
            .find_map(|l| l.split("OUTCOME ").nth(1))
            .unwrap_or_else(|| {
                panic!("{zone}: {stdout}{}", String::from_utf8_lossy(&child.stderr))
            });
        assert_eq!(
            outcome.trim(),
            "adopted, hit, stale (expired: saved 2h ago, max_age 1h)",
            "{zone}: python wrote {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
}
