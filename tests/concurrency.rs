//! One `Pipeline` shared by many threads: N threads x M checkpointed calls over distinct and
//! shared tables. Every body run is counted per table.
// These tests need the DuckDB store: without the `duckdb` feature they compile to nothing.
#![cfg(feature = "duckdb")]

use std::collections::HashMap;
use std::sync::Mutex;
use usher_pipeline::CheckpointStore;

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{Error, Pipeline, PipelineStore, ProvenanceTracker, checkpointed};

const THREADS: usize = 8;
const CALLS: usize = 30;

/// Body runs per table.
static RUNS: Mutex<Option<HashMap<&'static str, usize>>> = Mutex::new(None);

fn frame_for(table: &'static str, n: i64) -> DataFrame {
    *RUNS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(table)
        .or_default() += 1;
    // A little work, so threads overlap inside bodies.
    std::thread::sleep(std::time::Duration::from_millis(20));
    df!("table" => vec![table; 100], "n" => (0..100).map(|i| i * n).collect::<Vec<i64>>()).unwrap()
}

macro_rules! fetchers {
    ($($name:ident => $table:tt),* $(,)?) => {
        $(
            #[checkpointed(table = $table)]
            fn $name(ctx: &Pipeline, n: i64) -> Result<DataFrame, Error> {
                Ok(frame_for($table, n))
            }
        )*
        /// Calls fetcher `i` (a distinct table per thread for 0..8, shared tables beyond).
        fn call(ctx: &Pipeline, i: usize) -> Result<DataFrame, Error> {
            let fetchers: [fn(&Pipeline, i64) -> Result<DataFrame, Error>; 11] = [$($name),*];
            fetchers[i](ctx, 7)
        }
    };
}

fetchers! {
    own0 => "own_0", own1 => "own_1", own2 => "own_2", own3 => "own_3",
    own4 => "own_4", own5 => "own_5", own6 => "own_6", own7 => "own_7",
    shared0 => "shared_0", shared1 => "shared_1", shared2 => "shared_2",
}

#[test]
fn threads_share_one_pipeline_without_loss_duplication_or_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let config = usher_pipeline::PipelineConfig::from_yaml_str(
        "data_dir: d\ncache_dir: d/c\nduckdb_path: d/p.duckdb\nversions:\n  ensembl_release: 113\napi: {}\nscoring: {}\n",
        dir.path().join("c.yaml"),
    )
    .unwrap();
    let p: Pipeline = Pipeline::new(
        PipelineStore::open(dir.path().join("p.duckdb")).unwrap(),
        ProvenanceTracker::from_config(&config, None),
    );
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let p = &p;
            s.spawn(move || {
                for c in 0..CALLS {
                    // Alternate between this thread's own table and the shared ones.
                    let i = if c % 2 == 0 { t } else { 8 + (c + t) % 3 };
                    let df = call(p, i).unwrap();
                    assert_eq!(df.height(), 100);
                    let expected = if i < 8 {
                        format!("own_{i}")
                    } else {
                        format!("shared_{}", i - 8)
                    };
                    assert_eq!(
                        df.column("table").unwrap().str().unwrap().get(0),
                        Some(expected.as_str())
                    );
                }
            });
        }
    });
    let runs = RUNS.lock().unwrap().clone().unwrap();
    assert_eq!(runs.len(), 11, "{runs:?}");
    assert!(
        runs.values().all(|&n| n == 1),
        "each body ran once: {runs:?}"
    );
    let checkpoints = p.store().list_checkpoints().unwrap();
    assert_eq!(checkpoints.len(), 11);
    assert!(checkpoints.iter().all(|c| c.row_count == Some(100)));
    let steps = p.provenance().steps();
    assert_eq!(steps.len(), THREADS * CALLS, "one provenance step per call");
    let misses = steps
        .iter()
        .filter(|s| s.details.as_ref().unwrap()["outcome"] == "miss")
        .count();
    assert_eq!(misses, 11);
    eprintln!(
        "{THREADS} threads x {CALLS} calls: 11 bodies run, {} hits",
        steps.len() - misses
    );
}
