//! Every version a step made stays addressable: switching arguments back restores the kept
//! version (and what was made from it) instead of running the bodies again, proven by body
//! counters and compared values; a version whose inputs changed since is never restored; a
//! forced table and `keep = 1` compute. Each run is a new `Pipeline` on the same store file,
//! as a lab's runs are.

use std::cell::Cell;

use serde_json::Value;
use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    CheckpointStore, DefaultStore, Error, Force, Pipeline, PipelineStore, ProvenanceTracker,
    checkpointed,
};

// Per thread: each test runs on a thread of its own, and the bodies run on the calling thread.
thread_local! {
    static CONSTRAINT: Cell<usize> = const { Cell::new(0) };
    static SCORES: Cell<usize> = const { Cell::new(0) };
    static ONCE: Cell<usize> = const { Cell::new(0) };
}

fn count(counter: &'static std::thread::LocalKey<Cell<usize>>) {
    counter.with(|c| c.set(c.get() + 1));
}

/// Stands in for the gnomAD download: the genes covered at `min_depth`, from the raw table.
#[checkpointed(table = "h_constraint", reads(h_raw))]
pub(crate) fn constraint(ctx: &Pipeline, min_depth: i64) -> Result<DataFrame, Error> {
    count(&CONSTRAINT);
    let raw = ctx.store().load_dataframe("h_raw")?.expect("the raw table");
    let depth = raw.column("depth")?.as_materialized_series().clone();
    let mask = depth.gt_eq(min_depth)?;
    Ok(raw.filter(&mask)?)
}

/// Stands in for the scoring step: reads the constraint table, so a restored constraint table
/// (its data version as it was) makes the scores made from it match again.
#[checkpointed(table = "h_scores", reads(h_constraint))]
pub(crate) fn scores(ctx: &Pipeline) -> Result<DataFrame, Error> {
    count(&SCORES);
    let constraint = ctx
        .store()
        .load_dataframe("h_constraint")?
        .expect("constraint");
    let n = constraint.height() as i64;
    Ok(df!("genes" => [n], "score" => [n as f64 / 10.0])?)
}

/// A step that keeps no history.
#[checkpointed(table = "h_once", keep = 1)]
fn once(_ctx: &Pipeline, n: i64) -> Result<DataFrame, Error> {
    count(&ONCE);
    Ok(df!("n" => [n])?)
}

pub(crate) fn raw(depths: &[i64]) -> DataFrame {
    let genes: Vec<String> = (0..depths.len()).map(|i| format!("G{i}")).collect();
    df!("gene" => genes, "depth" => depths).unwrap()
}

pub(crate) fn counts() -> [usize; 3] {
    [&CONSTRAINT, &SCORES, &ONCE].map(|c| c.with(Cell::get))
}

/// The run's config, for its provenance.
fn config(path: &std::path::Path) -> usher_pipeline::PipelineConfig {
    let dir = path.parent().unwrap();
    usher_pipeline::PipelineConfig::from_yaml_str(&crate::common::config_yaml(dir, path), "h.yaml")
        .unwrap()
}

/// A run: a new pipeline on the store file.
fn run(path: &std::path::Path) -> Pipeline {
    Pipeline::new(
        PipelineStore::open(path).unwrap(),
        ProvenanceTracker::new("history-test", &config(path)),
    )
}

/// `table`'s step of the run: its outcome and the version it restored, if any.
pub(crate) fn step(p: &Pipeline<DefaultStore>, table: &str) -> (String, Option<u64>) {
    let steps: Vec<_> = p
        .provenance()
        .steps()
        .into_iter()
        .filter_map(|s| s.details)
        .filter(|d| d.get("table").and_then(Value::as_str) == Some(table))
        .collect();
    assert_eq!(steps.len(), 1, "one step of {table}");
    let d = &steps[0];
    (
        d["outcome"].as_str().unwrap().to_owned(),
        d.get("restored_version").and_then(Value::as_u64),
    )
}

#[test]
fn switching_arguments_back_restores_the_step_and_what_was_made_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.duckdb");
    PipelineStore::open(&path)
        .unwrap()
        .save_dataframe("h_raw", &raw(&[10, 25, 40, 60]), "raw")
        .unwrap();
    let start = counts();
    let at = |n: [usize; 3]| [n[0] - start[0], n[1] - start[1], n[2] - start[2]];

    let first = run(&path);
    let c20 = constraint(&first, 20).unwrap();
    let s20 = scores(&first).unwrap();
    assert_eq!(c20.height(), 3);
    assert_eq!(at(counts()), [1, 1, 0]);

    let second = run(&path);
    let c30 = constraint(&second, 30).unwrap();
    let s30 = scores(&second).unwrap();
    assert_eq!(c30.height(), 2);
    assert_eq!(at(counts()), [2, 2, 0]);
    assert_eq!(step(&second, "h_scores").0, "stale");

    // Back to 20: both the constraint table and the scores made from it are restored, no body
    // runs, and the values are the first run's.
    let third = run(&path);
    assert_eq!(constraint(&third, 20).unwrap(), c20);
    assert_eq!(scores(&third).unwrap(), s20);
    assert_eq!(at(counts()), [2, 2, 0], "no body ran");
    assert_eq!(step(&third, "h_constraint"), ("restored".into(), Some(1)));
    assert_eq!(step(&third, "h_scores"), ("restored".into(), Some(1)));
    // The restored checkpoint is the first one as it was: a hit from now on.
    let fourth = run(&path);
    assert_eq!(constraint(&fourth, 20).unwrap(), c20);
    assert_eq!(scores(&fourth).unwrap(), s20);
    assert_eq!(step(&fourth, "h_constraint").0, "hit");
    assert_eq!(step(&fourth, "h_scores").0, "hit");
    // And forth again: 30 comes back from the history too.
    let fifth = run(&path);
    assert_eq!(constraint(&fifth, 30).unwrap(), c30);
    assert_eq!(scores(&fifth).unwrap(), s30);
    assert_eq!(at(counts()), [2, 2, 0]);
    assert_eq!(step(&fifth, "h_constraint"), ("restored".into(), Some(2)));

    // The history as the store tells it: both versions, each with its own arguments.
    let store = PipelineStore::open(&path).unwrap();
    let history = store.history("h_constraint").unwrap();
    let versions: Vec<(u64, bool, Value)> = history
        .iter()
        .map(|v| {
            (
                v.version,
                v.current,
                v.checkpoint.key.as_ref().unwrap().arguments["min_depth"].clone(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [(2, true, 30.into()), (1, false, 20.into())],
        "numbers kept across restores"
    );
    // The history is the store's own: no listed checkpoint, no `_checkpoints` row (what the
    // Python pipeline reads) names it.
    let listed: Vec<String> = store
        .list_checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.table_name)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(listed, ["h_constraint", "h_raw", "h_scores"]);
    let rows = store
        .query("SELECT count(*) AS n FROM _checkpoints", &[])
        .unwrap();
    assert_eq!(
        rows.column("n")
            .unwrap()
            .get(0)
            .unwrap()
            .try_extract::<i64>()
            .unwrap(),
        3
    );
}

#[test]
fn a_version_whose_inputs_changed_is_never_restored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.duckdb");
    let store = PipelineStore::open(&path).unwrap();
    store
        .save_dataframe("h_raw", &raw(&[10, 25, 40, 60]), "raw")
        .unwrap();
    drop(store);
    let start = counts()[0];
    let first = run(&path);
    constraint(&first, 20).unwrap();
    constraint(&run(&path), 30).unwrap();
    // The upstream table changes: the kept version for 20 was made from the old one.
    PipelineStore::open(&path)
        .unwrap()
        .save_dataframe("h_raw", &raw(&[21, 22, 23]), "raw, again")
        .unwrap();
    let later = run(&path);
    let c20 = constraint(&later, 20).unwrap();
    assert_eq!(c20.height(), 3, "computed from the new upstream");
    assert_eq!(counts()[0] - start, 3, "the body ran");
    assert_eq!(step(&later, "h_constraint").0, "stale");
}

#[test]
fn a_forced_table_and_keep_one_compute() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.duckdb");
    PipelineStore::open(&path)
        .unwrap()
        .save_dataframe("h_raw", &raw(&[10, 25]), "raw")
        .unwrap();
    let start = counts();
    constraint(&run(&path), 20).unwrap();
    constraint(&run(&path), 30).unwrap();
    let forced = run(&path).with_force(Force::tables(["h_constraint"]));
    constraint(&forced, 20).unwrap();
    assert_eq!(counts()[0] - start[0], 3, "forced: computed, not restored");
    assert_eq!(step(&forced, "h_constraint").0, "force");

    once(&run(&path), 1).unwrap();
    once(&run(&path), 2).unwrap();
    let p = run(&path);
    once(&p, 1).unwrap();
    assert_eq!(counts()[2] - start[2], 3, "keep = 1: nothing to restore");
    assert_eq!(
        PipelineStore::open(&path)
            .unwrap()
            .history("h_once")
            .unwrap()
            .len(),
        1
    );
    // The pipeline's own setting, keep 1 for every table: a version kept before is still
    // restored, and the restore keeps nothing else, so going back computes.
    let start = counts()[0];
    let p = run(&path).with_keep(1);
    constraint(&p, 30).unwrap();
    assert_eq!(step(&p, "h_constraint").0, "restored");
    let store = PipelineStore::open(&path).unwrap();
    assert_eq!(store.history("h_constraint").unwrap().len(), 1);
    drop(store);
    let p = run(&path).with_keep(1);
    constraint(&p, 20).unwrap();
    assert_eq!(step(&p, "h_constraint").0, "stale");
    assert_eq!(counts()[0] - start, 1);
}

/// `usher-pipeline ARGS --store PATH`, its exit code, stdout and stderr.
#[cfg(feature = "cli")]
fn cli(path: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_usher-pipeline"))
        .args(args)
        .arg("--store")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The command line knows the history: `history` lists the versions with their arguments,
/// `restore` makes one current (and `status` then says the step made from the other would be
/// restored, which the next call does without a body), and refuses a version whose inputs
/// changed since unless `--force`.
#[cfg(feature = "cli")]
#[test]
fn the_command_line_lists_restores_and_refuses_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.duckdb");
    PipelineStore::open(&path)
        .unwrap()
        .save_dataframe("h_raw", &raw(&[10, 25, 40, 60]), "raw")
        .unwrap();
    let first = run(&path);
    let c20 = constraint(&first, 20).unwrap();
    let s20 = scores(&first).unwrap();
    drop(first);
    let second = run(&path);
    constraint(&second, 30).unwrap();
    scores(&second).unwrap();
    drop(second);

    let (code, out, err) = cli(&path, &["history", "h_constraint", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let versions: Vec<(u64, bool, Value, i64)> = listed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["current"].as_bool().unwrap(),
                v["arguments"]["min_depth"].clone(),
                v["rows"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [(2, true, 30.into(), 2), (1, false, 20.into(), 3)]
    );
    let (code, text, _) = cli(&path, &["history", "h_constraint"]);
    assert_eq!(code, Some(0));
    assert!(
        text.contains("2 (current)") && text.contains("{\"min_depth\":20}"),
        "{text}"
    );

    // An earlier version shown: what made it, restorable, its rows.
    let (code, out, err) = cli(&path, &["show", "h_constraint", "--version", "1", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["current"], false);
    assert_eq!(shown["restorable"], true, "{shown}");
    assert_eq!(shown["key"]["arguments"]["min_depth"], 20);
    assert_eq!(shown["rows"], 3);
    assert_eq!(
        shown["head"]["rows"].as_array().unwrap().len(),
        3,
        "{shown}"
    );
    let (code, text, _) = cli(&path, &["show", "h_constraint", "--version", "1"]);
    assert_eq!(code, Some(0));
    assert!(
        text.starts_with("version      1 (kept: a call with its key restores it)"),
        "{text}"
    );

    // An earlier version exported, its sidecar naming the version and the step that made it.
    let parquet = dir.path().join("constraint-v1.parquet");
    let parquet_arg = parquet.to_str().unwrap();
    let (code, _, err) = cli(
        &path,
        &[
            "export",
            "h_constraint",
            "--version",
            "1",
            "--parquet",
            parquet_arg,
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let exported = PipelineStore::open(dir.path().join("reader.duckdb"))
        .unwrap()
        .query(
            "SELECT * FROM read_parquet(?)",
            &[usher_pipeline::Param::from(parquet_arg)],
        )
        .unwrap();
    assert_eq!(exported, c20);
    let sidecar: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("constraint-v1.provenance.json")).unwrap(),
    )
    .unwrap();
    let steps = sidecar["processing_steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{sidecar}");
    assert_eq!(
        steps[0]["details"]["arguments"]["min_depth"], 20,
        "{sidecar}"
    );
    assert_eq!(steps[1]["details"]["table_version"], 1, "{sidecar}");
    let (code, _, err) = cli(
        &path,
        &[
            "export",
            "h_constraint",
            "--version",
            "7",
            "--parquet",
            parquet_arg,
        ],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("has no version 7"), "{err}");

    let (code, out, err) = cli(&path, &["restore", "h_constraint", "--version", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("restored version 1 of h_constraint (3 rows)"),
        "{out}"
    );
    let store = PipelineStore::open(&path).unwrap();
    assert_eq!(store.load_dataframe("h_constraint").unwrap().unwrap(), c20);
    drop(store);
    // The scores were made from version 2: stale now, and their version 1 matches again.
    let (code, out, _) = cli(&path, &["status", "--json"]);
    assert_eq!(code, Some(3));
    let status: Value = serde_json::from_str(&out).unwrap();
    let scores_status = status["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["table"] == "h_scores")
        .unwrap()
        .clone();
    assert_eq!(scores_status["state"], "stale");
    assert_eq!(scores_status["restore"], 1, "{scores_status}");
    let (_, text, _) = cli(&path, &["status"]);
    assert!(text.contains("would restore version 1"), "{text}");
    let before = counts();
    let third = run(&path);
    assert_eq!(scores(&third).unwrap(), s20);
    assert_eq!(counts(), before, "restored, as status said");
    assert_eq!(step(&third, "h_scores"), ("restored".into(), Some(1)));
    drop(third);

    // An input changed since: refused, named; --force restores it all the same.
    PipelineStore::open(&path)
        .unwrap()
        .save_dataframe("h_raw", &raw(&[50, 70]), "raw, again")
        .unwrap();
    let (code, _, err) = cli(&path, &["restore", "h_constraint", "--version", "2"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("not restoring version 2 of \"h_constraint\": input `h_raw` changed"),
        "{err}"
    );
    assert_eq!(
        PipelineStore::open(&path)
            .unwrap()
            .load_dataframe("h_constraint")
            .unwrap()
            .unwrap(),
        c20,
        "nothing changed"
    );
    let (code, out, err) = cli(
        &path,
        &["restore", "h_constraint", "--version", "2", "--force"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("forced past its changed inputs"), "{out}");
    let (code, _, err) = cli(&path, &["restore", "h_constraint", "--version", "9"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("has no version 9"), "{err}");

    // gc --keep 1 drops every earlier version, keeping the current ones.
    let (code, out, err) = cli(&path, &["gc", "--keep", "1", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["versions_dropped"], 2, "{report}");
    let store = PipelineStore::open(&path).unwrap();
    for table in ["h_constraint", "h_scores"] {
        let history = store.history(table).unwrap();
        assert_eq!(history.len(), 1, "{table}");
        assert!(history[0].current);
    }
    drop(store);
    let (code, _, err) = cli(&path, &["gc", "--keep", "0"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("--keep"), "{err}");
}

/// The main example, run three times on its DuckDB file (`--min-depth 20`, `30`, `20`): the
/// third run restores the constraint table and the scoring made from it, downloads nothing,
/// and prints so.
#[test]
fn the_main_example_restores_both_steps_on_its_third_run() {
    let Some(example) = crate::common::example_pipeline() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let run = |min_depth: &str| crate::common::run_example(&example, work.path(), min_depth, &[]);
    run("20");
    let second = run("30");
    assert!(
        second.contains("downloading gnomAD constraint (min_depth 30)"),
        "{second}"
    );
    let third = run("20");
    for line in [
        "gnomad_constraint  restored version 1 from the history, body skipped  15 rows",
        "candidates         restored version 1 from the history, body skipped  13 rows",
    ] {
        assert!(third.contains(line), "{line:?} in {third}");
    }
    assert!(!third.contains("downloading"), "{third}");
}

static ASYNC_BODIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An `async` step: restored the same way, whichever thread of the runtime polls it.
#[checkpointed(table = "h_async")]
async fn fetch_async(_ctx: &Pipeline, min_depth: i64) -> Result<DataFrame, Error> {
    ASYNC_BODIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tokio::task::yield_now().await;
    Ok(df!("min_depth" => [min_depth])?)
}

/// `async` steps restore too, on tokio's multi-thread and current-thread runtimes alike: the
/// third call of 20, 30, 20 runs no body and returns the first call's frame.
#[test]
fn async_steps_restore_on_both_tokio_flavours() {
    for multi in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.duckdb");
        let runtime = crate::common::tokio_runtime(multi);
        let bodies = || ASYNC_BODIES.load(std::sync::atomic::Ordering::SeqCst);
        runtime.block_on(async {
            let start = bodies();
            let first = fetch_async(&run(&path), 20).await.unwrap();
            fetch_async(&run(&path), 30).await.unwrap();
            let p = run(&path);
            let third = fetch_async(&p, 20).await.unwrap();
            assert_eq!(third, first);
            assert_eq!(bodies() - start, 2, "multi-thread: {multi}");
            assert_eq!(step(&p, "h_async"), ("restored".into(), Some(1)));
        });
    }
}
