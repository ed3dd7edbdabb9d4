//! Stores written by release 0.1.0 (checkpoint keys, no data versions, no schema version) keep
//! their hits under this release. `tests/fixtures/store-0.1.0.duckdb.gz` was written by
//! `make_fixture` below, run with the 0.1.0 code (commit 0a77a8a), when this file was a test
//! binary of its own, `tests/upgrade.rs`:
//!
//! ```sh
//! cargo test --test upgrade -- --ignored make_fixture
//! ```
//!
//! (Now a module of the one test binary: `cargo test --test it -- --ignored --exact
//! upgrade::make_fixture`.)
//!
//! The functions must stay token for token as they were then: their code hash is part of the
//! keys the fixture holds.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    CheckpointState, CheckpointStore, DuckdbErrorKind, Error, Lineage, Pipeline, PipelineConfig,
    PipelineStore, ProvenanceTracker, checkpointed,
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

/// Not in the fixture: a save by this release into an upgraded store. (The fixture's own
/// functions are left to the test that counts their runs.)
#[checkpointed(table = "hpa_tissues")]
fn fetch_tissues(ctx: &Pipeline, tissue: &str) -> Result<DataFrame, Error> {
    Ok(df!("gene_symbol" => ["USH2A"], "tissue" => [tissue])?)
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

fn config(dir: &Path) -> PipelineConfig {
    let path = dir.join("store.duckdb");
    let yaml = crate::common::config_yaml(dir, &path);
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    PipelineConfig::load(dir.join("config.yaml")).unwrap()
}

fn pipeline(path: &Path) -> Pipeline {
    let config = config(path.parent().unwrap());
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
    let code = |p: &Pipeline| {
        let info = p.store().checkpoint("gnomad_constraint").unwrap().unwrap();
        info.key.unwrap().code
    };
    // Keyed with 0.1.0's code hash (of the pretty-printed tokens): recognised once, hit, and
    // re-keyed with today's hash (of the canonical token walk).
    let old_code = code(&p);
    let constraint = fetch_constraint(&p, 20).unwrap();
    fetch_go(&p).unwrap();
    assert_eq!(CONSTRAINT_RUNS.load(Ordering::SeqCst), 0, "a hit");
    let new_code = code(&p);
    assert_ne!(old_code, new_code, "re-keyed");
    assert!(new_code.starts_with("tokens:"), "{new_code}");
    drop(p);
    let p = pipeline(&path);
    fetch_constraint(&p, 20).unwrap();
    assert_eq!(
        CONSTRAINT_RUNS.load(Ordering::SeqCst),
        0,
        "a hit under the new key"
    );
    assert_eq!(code(&p), new_code);
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

#[test]
fn the_upgrade_adds_lineage_in_place_and_records_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = unpack(dir.path());
    {
        // Read-only: nothing upgraded, the 0.1.0 keys still read.
        let store = PipelineStore::open_read_only(&path).unwrap();
        let info = store.checkpoint("gnomad_constraint").unwrap().unwrap();
        assert!(info.key.is_some());
        assert_eq!(info.lineage, Lineage::default());
        let err = store.query("SELECT * FROM _usher_schema", &[]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Duckdb {
                    kind: DuckdbErrorKind::Catalog,
                    ..
                }
            ),
            "{err}"
        );
        // Status reads it as it is.
        let status = usher_pipeline::status(&store, chrono::Utc::now().naive_utc()).unwrap();
        let states: Vec<_> = status
            .iter()
            .map(|s| (s.table.as_str(), s.state.clone()))
            .collect();
        assert_eq!(
            states,
            [
                ("gnomad_constraint", CheckpointState::Valid),
                ("go_annotation", CheckpointState::Valid),
                ("hpa_expression", CheckpointState::Unkeyed),
                ("literature", CheckpointState::Partial),
            ]
        );
        // 0.1.0 did not record the loop's item count.
        assert_eq!(
            status[3].pending.as_ref().map(|p| (p.items, p.total)),
            Some((4, None))
        );
    }
    {
        let store = PipelineStore::open(&path).unwrap();
        let schema = store
            .query(
                "SELECT value FROM _usher_schema WHERE name = 'schema_version'",
                &[],
            )
            .unwrap();
        assert_eq!(
            schema.column("value").unwrap().str().unwrap().get(0),
            Some("2")
        );
        assert_eq!(
            key_columns(&store),
            [
                "table_name",
                "checkpoint_created_at",
                "key",
                "function",
                "code",
                "arguments",
                "config",
                "data_version",
                "inputs",
                "max_age_seconds",
                "lineage_created_at",
                "version",
                "step"
            ]
        );
        // The Python pipeline's table is as it was.
        let python = store
            .query(
                "SELECT table_name FROM _checkpoints ORDER BY table_name",
                &[],
            )
            .unwrap();
        assert_eq!(python.height(), 3);
        // A new checkpoint gets a data version.
        let p: Pipeline = Pipeline::new(
            store,
            ProvenanceTracker::from_config(&config(dir.path()), None),
        );
        fetch_tissues(&p, "retina").unwrap();
        let info = p.store().checkpoint("hpa_tissues").unwrap().unwrap();
        assert!(info.lineage.data_version.is_some());
    }
    // Opening an upgraded store again changes nothing: same columns, same keys and lineage.
    let store = PipelineStore::open(&path).unwrap();
    assert_eq!(key_columns(&store).len(), 13);
    assert!(
        store
            .checkpoint("go_annotation")
            .unwrap()
            .unwrap()
            .key
            .is_some()
    );
    let tissues = store.checkpoint("hpa_tissues").unwrap().unwrap();
    assert!(tissues.lineage.data_version.is_some());
    // A store of the previous release starts with empty histories: its checkpoints have no
    // version number, and nothing earlier is kept.
    assert!(store.history("go_annotation").unwrap().is_empty());
    // A store marked by a newer release is refused for writing, readable for inspection.
    store
        .execute(
            "UPDATE _usher_schema SET value = '3' WHERE name = 'schema_version'",
            &[],
        )
        .unwrap();
    drop(store);
    match PipelineStore::open(&path) {
        Err(Error::NewerStore {
            found: 3,
            supported: 2,
            ..
        }) => {}
        other => panic!("expected NewerStore, got {other:?}"),
    }
    let read_only = PipelineStore::open_read_only(&path).unwrap();
    assert!(
        read_only
            .checkpoint("go_annotation")
            .unwrap()
            .unwrap()
            .key
            .is_some()
    );
}

/// The columns of `_checkpoint_keys`, in order.
fn key_columns(store: &PipelineStore) -> Vec<String> {
    let columns = store
        .query(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = '_checkpoint_keys' \
             ORDER BY column_index",
            &[],
        )
        .unwrap();
    columns
        .column("column_name")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect()
}
