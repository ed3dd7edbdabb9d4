//! One `Pipeline` shared by many threads: N threads x M checkpointed calls over distinct and
//! shared tables. Every body run is counted per table. And reads beside a write in progress.

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    CheckpointKey, CheckpointStore, Error, Lineage, Param, Pipeline, PipelineStore,
    ProvenanceRecord, ProvenanceTracker, checkpointed,
};

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

// --- Reads beside a write ------------------------------------------------------------------------

static HIT_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[checkpointed(table = "hit_me")]
fn hit_me(ctx: &Pipeline<Arc<PipelineStore>>) -> Result<DataFrame, Error> {
    HIT_RUNS.fetch_add(1, SeqCst);
    Ok(df!("gene" => ["USH2A", "MYO7A"], "score" => [0.9, 0.7])?)
}

fn numbers(n: i64) -> DataFrame {
    df!("n" => (0..n).collect::<Vec<i64>>()).unwrap()
}

/// A save inside its transaction (its table written, its lineage being made) holds the store's
/// writing connection for as long as it likes. Every read of another thread goes on meanwhile,
/// and sees the last committed state: the old version of the table being saved, never a part of
/// the new one. With one connection for every thread, the reads would wait for the save, which
/// waits for them: the deadline below turns that into a failure instead of a hang.
#[test]
fn reads_go_on_while_another_thread_is_inside_a_save() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(PipelineStore::open(dir.path().join("p.duckdb")).unwrap());
    let config = usher_pipeline::PipelineConfig::from_yaml_str(
        "data_dir: d\ncache_dir: d/c\nduckdb_path: d/p.duckdb\nversions:\n  ensembl_release: 113\napi: {}\nscoring: {}\n",
        dir.path().join("c.yaml"),
    )
    .unwrap();
    let pipeline: Pipeline<Arc<PipelineStore>> = Pipeline::new(
        Arc::clone(&store),
        ProvenanceTracker::from_config(&config, None),
    );
    let made = hit_me(&pipeline).unwrap();
    store.save_dataframe("big", &numbers(3), "v1").unwrap();
    let export = dir.path().join("out/big.parquet");

    let (inside_tx, inside_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (read_tx, read_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let writer_store = &store;
        let writer = s.spawn(move || {
            let store = writer_store;
            let key = CheckpointKey::new("big", "test:v2", Default::default(), Default::default())
                .unwrap();
            let record = ProvenanceRecord {
                version: "test".into(),
                config_hash: "h".into(),
                created_at: chrono::Utc::now().naive_utc(),
                steps_json: "[]".into(),
            };
            let saved_at = chrono::Utc::now().naive_utc();
            store.save_checkpoint_with("big", &numbers(5), "v2", &key, saved_at, &mut || {
                inside_tx.send(()).unwrap();
                // Holds the transaction open until the reads are done (or given up on).
                release_rx.recv().unwrap();
                Ok((Lineage::default(), record.clone()))
            })
        });
        inside_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the save reached its transaction");
        let (store, pipeline, export) = (&store, &pipeline, &export);
        s.spawn(move || {
            let info = store.checkpoint("big").unwrap().unwrap();
            let count = |sql: &str, params: &[Param]| {
                let frame = store.query(sql, params).unwrap();
                frame.column("n").unwrap().i64().unwrap().get(0).unwrap()
            };
            let loaded = store.load_dataframe("big").unwrap().unwrap();
            let head = store.head("big", 10).unwrap().unwrap();
            let counted = count("SELECT count(*) AS n FROM big", &[]);
            store.export_parquet("big", export).unwrap();
            let exported = count(
                "SELECT count(*) AS n FROM read_parquet(?)",
                &[export.to_string_lossy().as_ref().into()],
            );
            let listed = store.list_checkpoints().unwrap().len();
            let hit = hit_me(pipeline).unwrap();
            read_tx
                .send((info, loaded, head, counted, exported, listed, hit))
                .unwrap();
        });
        let reads = read_rx.recv_timeout(Duration::from_secs(30));
        release_tx.send(()).unwrap();
        writer.join().unwrap().unwrap();
        let (info, loaded, head, counted, exported, listed, hit) =
            reads.expect("the reads finished while the save held its transaction open");
        assert_eq!(info.description.as_deref(), Some("v1"), "the committed row");
        assert_eq!(
            loaded,
            numbers(3),
            "the committed version, not a part of the new one"
        );
        assert_eq!(head, numbers(3));
        assert_eq!((counted, exported, listed), (3, 3, 2));
        assert_eq!(hit, made, "a hit served beside the save");
        assert_eq!(
            HIT_RUNS.load(SeqCst),
            1,
            "the body ran once: the second call was a hit"
        );
    });
    // The save is committed whole.
    assert_eq!(store.load_dataframe("big").unwrap().unwrap(), numbers(5));
    let info = store.checkpoint("big").unwrap().unwrap();
    assert_eq!(
        (
            info.description.as_deref(),
            info.row_count,
            info.key.is_some()
        ),
        (Some("v2"), Some(5), true)
    );
}
