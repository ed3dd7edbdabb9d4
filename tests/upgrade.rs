//! Stores written by release 0.1.0 (checkpoint keys, no data versions, no schema version) keep
//! their hits under this release. `tests/fixtures/store-0.1.0.duckdb.gz` was written by
//! `make_fixture` below, run with the 0.1.0 code (commit 0a77a8a):
//!
//! ```sh
//! cargo test --test upgrade -- --ignored make_fixture
//! ```
//!
//! The functions must stay token for token as they were then: their code hash is part of the
//! keys the fixture holds.
#![cfg(feature = "duckdb")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    CheckpointStore, Error, Pipeline, PipelineConfig, PipelineStore, ProvenanceTracker,
    checkpointed,
};

static CONSTRAINT_RUNS: AtomicUsize = AtomicUsize::new(0);
static GO_RUNS: AtomicUsize = AtomicUsize::new(0);
static SEARCHED: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "gnomad_constraint")]
fn fetch_constraint(ctx: &Pipeline, min_depth: i64) -> Result<DataFrame, Error> {
    CONSTRAINT_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(df!(
        "gene_symbol" => ["USH2A", "MYO7A", "CDH23"],
        "loeuf" => [0.41, 0.12, 0.77],
        "min_depth" => [min_depth; 3],
    )?)
}

#[checkpointed(table = "go_annotation", version = "go-2024-01")]
fn fetch_go(ctx: &Pipeline) -> Result<DataFrame, Error> {
    GO_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(df!(
        "gene_symbol" => ["USH2A", "MYO7A"],
        "cilia_related" => [true, false],
    )?)
}

/// Fails after `stop_after` batches when given, leaving its finished batches behind.
#[checkpointed(table = "literature", skip(genes, stop_after), batches = done)]
fn fetch_literature(
    ctx: &Pipeline,
    genes: &[String],
    stop_after: Option<usize>,
) -> Result<DataFrame, Error> {
    for (n, batch) in done.pending(genes, 2)?.into_iter().enumerate() {
        if Some(n) == stop_after {
            return Err(Error::Format("interrupted".to_owned()));
        }
        SEARCHED.fetch_add(batch.len(), Ordering::SeqCst);
        let hits: Vec<i64> = batch.iter().map(|g| g.len() as i64).collect();
        let rows = df!("gene_symbol" => batch.as_slice(), "hits" => hits)?;
        done.save(&batch, &rows)?;
    }
    done.finish()
}

fn genes() -> Vec<String> {
    ["USH2A", "MYO7A", "CDH23", "PCDH15", "USH1C", "USH1G"]
        .map(String::from)
        .to_vec()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-0.1.0.duckdb.gz")
}

/// The fixture, unpacked into `dir`.
fn unpack(dir: &Path) -> PathBuf {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(fixture()).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    let path = dir.join("store.duckdb");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn pipeline(path: &Path) -> Pipeline {
    let dir = path.parent().unwrap();
    let yaml = format!(
        "data_dir: {d}/data\ncache_dir: {d}/cache\nduckdb_path: {p}\nversions:\n  ensembl_release: 113\napi: {{}}\nscoring: {{}}\n",
        d = dir.display(),
        p = path.display()
    );
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    let config = PipelineConfig::load(dir.join("config.yaml")).unwrap();
    Pipeline::new(
        PipelineStore::open(path).unwrap(),
        ProvenanceTracker::from_config(&config, Some("0.1.0")),
    )
}

/// Writes the fixture: two keyed checkpoints, an unkeyed table (as the Python pipeline saves
/// one), a batched step interrupted after two of three batches, and provenance.
#[test]
#[ignore = "writes tests/fixtures/store-0.1.0.duckdb.gz; run by hand with the 0.1.0 code"]
fn make_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.duckdb");
    {
        let p = pipeline(&path);
        fetch_constraint(&p, 20).unwrap();
        fetch_go(&p).unwrap();
        assert!(fetch_literature(&p, &genes(), Some(2)).is_err());
        p.store()
            .save_dataframe(
                "hpa_expression",
                &df!("gene_symbol" => ["USH2A"], "ntpm" => [3.5]).unwrap(),
                "saved by hand",
            )
            .unwrap();
        p.save_provenance().unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(fixture()).unwrap(),
        flate2::Compression::best(),
    );
    std::io::copy(&mut std::fs::File::open(&path).unwrap(), &mut gz).unwrap();
    gz.finish().unwrap();
}

#[test]
fn a_0_1_0_store_keeps_its_hits_and_resumes_its_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = unpack(dir.path());
    let p = pipeline(&path);
    let constraint = fetch_constraint(&p, 20).unwrap();
    fetch_go(&p).unwrap();
    assert_eq!(CONSTRAINT_RUNS.load(Ordering::SeqCst), 0, "a hit");
    assert_eq!(GO_RUNS.load(Ordering::SeqCst), 0, "a hit");
    assert_eq!(constraint.height(), 3);
    let literature = fetch_literature(&p, &genes(), None).unwrap();
    assert_eq!(
        SEARCHED.load(Ordering::SeqCst),
        2,
        "only the third batch ran"
    );
    assert_eq!(literature.height(), 6);
    // The table saved without a key is still refused, not trusted.
    assert!(matches!(
        p.store().checkpoint("hpa_expression"),
        Ok(Some(info)) if info.key.is_none()
    ));
    // Another argument still recomputes.
    fetch_constraint(&p, 30).unwrap();
    assert_eq!(CONSTRAINT_RUNS.load(Ordering::SeqCst), 1);
}
