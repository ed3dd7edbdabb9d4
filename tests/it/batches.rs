//! Resumable batches inside `#[checkpointed]` functions, interrupted in-process by a failing
//! batch (the real SIGKILL version is in `tests/it/kill.rs`). Every item fetched is counted.

use crate::common;

use std::collections::HashMap;
use std::sync::Mutex;
use usher_pipeline::CheckpointStore;

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{Error, Force, Pipeline, PipelineStore, ProvenanceTracker, checkpointed};

/// Counts how often each item was fetched, and fails at one chosen item.
#[derive(Default)]
struct Source {
    fetched: Mutex<HashMap<String, usize>>,
    fail_at: Mutex<Option<String>>,
}

impl Source {
    fn search(&self, genes: &[String], salt: i64) -> Result<DataFrame, Error> {
        if let Some(at) = self.fail_at.lock().unwrap().as_ref()
            && genes.contains(at)
        {
            return Err(Error::Format(format!("connection reset at {at}")));
        }
        let mut fetched = self.fetched.lock().unwrap();
        for g in genes {
            *fetched.entry(g.clone()).or_default() += 1;
        }
        let pubs: Vec<i64> = genes.iter().map(|g| g.len() as i64 * 10 + salt).collect();
        Ok(df!("gene" => genes, "publications" => pubs).unwrap())
    }
    fn total(&self) -> usize {
        self.fetched.lock().unwrap().values().sum()
    }
    fn max_per_item(&self) -> usize {
        self.fetched
            .lock()
            .unwrap()
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }
}

fn genes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("GENE{i:05}")).collect()
}

#[checkpointed(table = "literature", skip(genes, source), batches = done)]
fn fetch_literature(
    ctx: &Pipeline,
    genes: &[String],
    salt: i64,
    source: &Source,
) -> Result<DataFrame, Error> {
    for batch in done.pending(genes, 10)? {
        let rows = source.search(&batch, salt)?;
        done.save(&batch, &rows)?;
    }
    done.finish()
}

fn pipeline(dir: &tempfile::TempDir) -> Pipeline {
    let store = PipelineStore::open(dir.path().join("p.duckdb")).unwrap();
    let config = usher_pipeline::PipelineConfig::from_yaml_str(
        "data_dir: d\ncache_dir: d/c\nduckdb_path: d/p.duckdb\nversions:\n  ensembl_release: 113\napi: {}\nscoring: {}\n",
        dir.path().join("c.yaml"),
    )
    .unwrap();
    Pipeline::new(store, ProvenanceTracker::from_config(&config, Some("test")))
}

fn sorted(df: &DataFrame) -> DataFrame {
    df.sort(["gene"], SortMultipleOptions::default()).unwrap()
}

fn partial_rows(p: &Pipeline) -> i64 {
    let df = p
        .store()
        .query(
            "SELECT count(*)::BIGINT AS n FROM _checkpoint_batches WHERE table_name = 'literature'",
            &[],
        )
        .unwrap();
    df.column("n").unwrap().i64().unwrap().get(0).unwrap()
}

#[test]
fn an_interrupted_loop_resumes_and_fetches_each_item_once() {
    let all = genes(95);
    let reference = {
        let dir = tempfile::tempdir().unwrap();
        fetch_literature(&pipeline(&dir), &all, 1, &Source::default()).unwrap()
    };

    let dir = tempfile::tempdir().unwrap();
    let source = Source::default();
    *source.fail_at.lock().unwrap() = Some("GENE00042".into());
    let p = pipeline(&dir);
    let e = fetch_literature(&p, &all, 1, &source).unwrap_err();
    assert!(e.to_string().contains("connection reset"), "{e}");
    assert_eq!(
        source.total(),
        40,
        "four batches of ten finished before the failure"
    );
    assert!(!p.store().has_checkpoint("literature").unwrap());
    assert_eq!(partial_rows(&p), 40);

    // Restarted (a new pipeline, as a new process would): only the rest is fetched.
    *source.fail_at.lock().unwrap() = None;
    let p = pipeline(&dir);
    let df = fetch_literature(&p, &all, 1, &source).unwrap();
    assert_eq!(source.total(), 95);
    assert_eq!(source.max_per_item(), 1, "no item fetched twice");
    common::assert_frames_equal(&sorted(&df), &sorted(&reference));
    let stored = p.store().load_dataframe("literature").unwrap().unwrap();
    common::assert_frames_equal(&sorted(&stored), &sorted(&reference));
    assert_eq!(
        partial_rows(&p),
        0,
        "partial progress gone with the final save"
    );
    assert!(
        p.store()
            .load_dataframe("_partial_literature")
            .unwrap()
            .is_none()
    );
    // And the finished checkpoint is a plain hit.
    fetch_literature(&p, &all, 1, &source).unwrap();
    assert_eq!(source.total(), 95);
}

#[test]
fn progress_made_with_other_arguments_or_forced_is_discarded() {
    let all = genes(50);
    let dir = tempfile::tempdir().unwrap();
    let source = Source::default();
    *source.fail_at.lock().unwrap() = Some("GENE00025".into());
    let p = pipeline(&dir);
    fetch_literature(&p, &all, 1, &source).unwrap_err();
    assert_eq!(source.total(), 20);

    // salt is part of the key: the 20 rows made with salt 1 must not be mixed in.
    *source.fail_at.lock().unwrap() = None;
    let df = fetch_literature(&pipeline(&dir), &all, 2, &source).unwrap();
    assert_eq!(source.total(), 70, "all 50 fetched again");
    assert_eq!(df.height(), 50);
    let salts: Vec<i64> = df
        .column("publications")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .map(|v| v % 10)
        .collect();
    assert!(salts.iter().all(|&s| s == 2), "{salts:?}");

    // A forced run starts from scratch even with the same key.
    *source.fail_at.lock().unwrap() = Some("GENE00035".into());
    let forced = || pipeline(&dir).with_force(Force::tables(["literature"]));
    fetch_literature(&forced(), &all, 2, &source).unwrap_err();
    assert_eq!(source.total(), 100);
    *source.fail_at.lock().unwrap() = None;
    fetch_literature(&forced(), &all, 2, &source).unwrap();
    assert_eq!(
        source.total(),
        150,
        "forced again: the 30 kept items are fetched again too"
    );
}

#[checkpointed(table = "sparse", skip(genes), batches = progress)]
fn fetch_sparse(ctx: &Pipeline, genes: &[String]) -> Result<DataFrame, Error> {
    for batch in progress.pending(genes, 4)? {
        // Most batches find nothing: they are still finished.
        let hits: Vec<&String> = batch.iter().filter(|g| g.ends_with('7')).collect();
        let rows = if hits.is_empty() {
            DataFrame::empty()
        } else {
            df!("gene" => hits.iter().map(|g| g.as_str()).collect::<Vec<_>>()).unwrap()
        };
        progress.save(&batch, &rows)?;
    }
    assert_eq!(progress.finished()?, genes.len());
    progress.finish()
}

#[test]
fn batches_without_rows_still_count_as_finished() {
    let dir = tempfile::tempdir().unwrap();
    let df = fetch_sparse(&pipeline(&dir), &genes(30)).unwrap();
    assert_eq!(df.height(), 3);
}

#[checkpointed(table = "literature_async", skip(genes, source), batches = done)]
async fn fetch_literature_async(
    ctx: &Pipeline,
    genes: &[String],
    source: &Source,
) -> Result<DataFrame, Error> {
    for batch in done.pending(genes, 10)? {
        tokio::task::yield_now().await;
        let rows = source.search(&batch, 0)?;
        done.save(&batch, &rows)?;
    }
    done.finish()
}

#[test]
fn async_functions_resume_too() {
    let all = genes(35);
    let dir = tempfile::tempdir().unwrap();
    let source = std::sync::Arc::new(Source::default());
    let p = std::sync::Arc::new(pipeline(&dir));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let run = || {
        let (p, source, all) = (p.clone(), source.clone(), all.clone());
        runtime
            .block_on(runtime.spawn(async move {
                fetch_literature_async(&p, &all, &source)
                    .await
                    .map(|d| d.height())
            }))
            .unwrap()
    };
    *source.fail_at.lock().unwrap() = Some("GENE00021".into());
    run().unwrap_err();
    assert_eq!(source.total(), 20);
    *source.fail_at.lock().unwrap() = None;
    assert_eq!(run().unwrap(), 35);
    assert_eq!(source.total(), 35);
    assert_eq!(source.max_per_item(), 1);
}
