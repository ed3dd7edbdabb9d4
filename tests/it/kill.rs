//! Processes really killed (SIGKILL) in the middle of saves and of a resumable loop; after every
//! kill the store is reopened and checked.
//!
//! The number of kills defaults to a CI-sized count; `USHER_KILLS=120 cargo test --test it kill::
//! -- --nocapture` runs the full 100+ and prints the figures.

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use usher_pipeline::CheckpointStore;

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    Error, Param, Pipeline, PipelineConfig, PipelineStore, ProvenanceTracker, checkpointed,
};

/// Kills per test: `USHER_KILLS`, else 25.
fn kills() -> usize {
    std::env::var("USHER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

fn config(dir: &Path) -> PipelineConfig {
    PipelineConfig::from_yaml_str(
        &crate::common::config_yaml(dir, &dir.join("k.duckdb")),
        dir.join("config.yaml"),
    )
    .unwrap()
}

fn pipeline(dir: &Path) -> Pipeline {
    let config = config(dir);
    Pipeline::new(
        PipelineStore::from_config(&config).unwrap(),
        ProvenanceTracker::from_config(&config, Some("kill-test")),
    )
}

/// Starts this test binary as a child running the ignored test `name` (its full name, from
/// `common::test_name!`) on `dir`, with stdout piped into a channel of lines.
fn spawn_child(name: &str, dir: &Path) -> (Child, mpsc::Receiver<String>) {
    common::spawn_with_lines(common::child_test(name).env("USHER_TEST_DIR", dir))
}

fn test_dir() -> Option<PathBuf> {
    std::env::var_os("USHER_TEST_DIR").map(PathBuf::from)
}

// --- atomic checkpoints -----------------------------------------------------------------

const BIG_ROWS: i64 = 400_000;

/// The frame of save number `version`: every value derives from it, so a table mixing two
/// saves, or a damaged one, shows in its sums.
fn big_frame(version: i64) -> DataFrame {
    let ids: Vec<i64> = (0..BIG_ROWS).collect();
    let values: Vec<f64> = ids.iter().map(|i| (i * version) as f64 * 0.5).collect();
    let labels: Vec<String> = ids.iter().map(|i| format!("v{version}-{i}")).collect();
    df!("id" => ids, "version" => vec![version; BIG_ROWS as usize], "value" => values, "label" => labels)
        .unwrap()
}

#[checkpointed(table = "big")]
fn save_version(ctx: &Pipeline, version: i64) -> Result<DataFrame, Error> {
    Ok(big_frame(version))
}

/// Child: saves ever newer versions of `big` until killed, printing each step.
#[test]
#[ignore = "a child process of sigkill_during_saves_leaves_the_previous_or_the_new_checkpoint"]
fn child_saves_in_a_loop() {
    let Some(dir) = test_dir() else { return };
    let p = pipeline(&dir);
    let mut version = current_version(p.store().as_file().unwrap()).unwrap_or(0);
    loop {
        version += 1;
        println!("saving {version}");
        std::io::stdout().flush().unwrap();
        save_version(&p, version).unwrap();
        println!("saved {version}");
        std::io::stdout().flush().unwrap();
    }
}

fn one_i64(store: &PipelineStore, sql: &str, params: &[Param]) -> Option<i64> {
    let df = store.query(sql, params).unwrap();
    df.column(df.get_column_names()[0].as_str())
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap()
        .i64()
        .unwrap()
        .get(0)
}

fn current_version(store: &PipelineStore) -> Option<i64> {
    store
        .has_checkpoint("big")
        .ok()?
        .then(|| one_i64(store, "SELECT max(version) FROM big", &[]).unwrap())
}

/// Every invariant of a store after a kill; returns the checkpoint's version and the number
/// of invariants checked.
fn check_store(store: &PipelineStore, previous: i64) -> (i64, usize) {
    let checkpoints = store.list_checkpoints().unwrap();
    let Some(info) = checkpoints.iter().find(|c| c.table_name == "big") else {
        // Only before the first commit: then there is no table either.
        assert_eq!(previous, 0, "the checkpoint disappeared");
        assert!(
            store.load_dataframe("big").unwrap().is_none(),
            "a table without metadata"
        );
        return (0, 2);
    };
    let rows = one_i64(store, "SELECT count(*) FROM big", &[]).expect("metadata without a table");
    assert_eq!(
        Some(rows),
        info.row_count,
        "row count disagrees with _checkpoints"
    );
    let (lo, hi) = (
        one_i64(store, "SELECT min(version) FROM big", &[]).unwrap(),
        one_i64(store, "SELECT max(version) FROM big", &[]).unwrap(),
    );
    assert_eq!(lo, hi, "rows of two saves mixed in one table");
    assert!(
        hi >= previous,
        "checkpoint went back from {previous} to {hi}"
    );
    // The values are exactly that version's.
    let expected = big_frame(hi);
    let stored = store.load_dataframe("big").unwrap().unwrap();
    common::assert_frames_equal(&stored, &expected);
    // The key describes this very table.
    let keyed = one_i64(
        store,
        "SELECT count(*) FROM _checkpoint_keys k JOIN _checkpoints c USING (table_name) \
         WHERE table_name = 'big' AND k.checkpoint_created_at = c.created_at AND k.arguments = ?",
        &[Param::from(format!("{{\"version\": {hi}}}"))],
    );
    assert_eq!(keyed, Some(1), "the key row does not match the checkpoint");
    // Each committed save left exactly its provenance row: versions 1..=hi, once each (a
    // killed save's version is saved again by the next child).
    let provenance = one_i64(store, "SELECT count(*) FROM _provenance", &[]);
    assert_eq!(
        provenance,
        Some(hi),
        "one _provenance row per committed save"
    );
    let this_one = one_i64(
        store,
        "SELECT count(*) FROM _provenance WHERE steps_json LIKE ?",
        &[Param::from(format!(
            "%\"arguments\": {{\"version\": {hi}}}%"
        ))],
    );
    assert_eq!(this_one, Some(1), "the checkpoint's own provenance row");
    (hi, 8)
}

#[test]
fn sigkill_during_saves_leaves_the_previous_or_the_new_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::Rng::new();
    let (mut version, mut checked, mut mid_save, mut survived) = (0, 0, 0, 0);
    let started = Instant::now();
    for round in 0..kills() {
        let (mut child, lines) =
            spawn_child(&common::test_name!(child_saves_in_a_loop), dir.path());
        // Wait for the first save to begin, then kill at a random moment of the saves. Every
        // fifth round waits for a save to commit first, so new versions land however slow the
        // machine is (a loaded one takes longer than the random delay for a save).
        let awaited = if round % 5 == 4 { "saved" } else { "saving" };
        let mut saving = false;
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) {
            if line.contains(awaited) {
                saving = true;
                break;
            }
        }
        assert!(saving, "the child never started saving");
        std::thread::sleep(Duration::from_millis(rng.below(700)));
        child.kill().unwrap();
        child.wait().unwrap();
        // Was the kill inside a save (the last line printed is a "saving")?
        let last = lines.try_iter().last();
        if last.is_none_or(|l| l.contains("saving")) {
            mid_save += 1;
        }
        let store = PipelineStore::open(dir.path().join("k.duckdb")).unwrap();
        let (v, n) = check_store(&store, version);
        version = v;
        checked += n;
        survived += 1;
    }
    eprintln!(
        "kills survived: {survived} ({mid_save} inside a save), invariants checked: {checked}, \
         last version {version}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(version > 0, "no save ever committed");
}

// --- restores ------------------------------------------------------------------------------

/// The table whose two versions a child restores back and forth until killed.
#[checkpointed(table = "flip")]
fn flip(ctx: &Pipeline, version: i64) -> Result<DataFrame, Error> {
    // Both versions are made before the children start: a body running here is a failure.
    println!("computed {version}");
    std::io::stdout().flush().unwrap();
    Ok(big_frame(version))
}

/// The version `flip`'s current table holds.
fn flip_version(store: &PipelineStore) -> i64 {
    one_i64(store, "SELECT max(version) FROM flip", &[]).expect("the current table")
}

/// Child: restores the other version of `flip`, over and over, printing each step.
#[test]
#[ignore = "a child process of sigkill_during_restores_leaves_one_version_or_the_other"]
fn child_restores_in_a_loop() {
    let Some(dir) = test_dir() else { return };
    loop {
        let p = pipeline(&dir);
        let next = 3 - flip_version(p.store().as_file().unwrap());
        println!("restoring {next}");
        std::io::stdout().flush().unwrap();
        flip(&p, next).unwrap();
        println!("restored {next}");
        std::io::stdout().flush().unwrap();
    }
}

/// A restore is all or nothing, as a save is: killed at any moment of restores (a swap of two
/// 400,000-row tables and their rows of metadata), the store holds one version as current,
/// whole, with its own key, and the other in the history, whole, with its own; never a body run.
#[test]
fn sigkill_during_restores_leaves_one_version_or_the_other() {
    let dir = tempfile::tempdir().unwrap();
    {
        let p = pipeline(dir.path());
        flip(&p, 1).unwrap();
        flip(&p, 2).unwrap();
    }
    let mut rng = common::Rng::new();
    let (mut flips, mut mid_restore) = (0, 0);
    for round in 0..kills() {
        let (mut child, lines) =
            spawn_child(&common::test_name!(child_restores_in_a_loop), dir.path());
        let awaited = if round % 5 == 4 {
            "restored"
        } else {
            "restoring"
        };
        let mut started = false;
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) {
            assert!(!line.starts_with("computed"), "a body ran: {line}");
            if line.contains(awaited) {
                started = true;
                break;
            }
        }
        assert!(started, "the child never started restoring");
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        child.kill().unwrap();
        child.wait().unwrap();
        let printed: Vec<String> = lines.try_iter().collect();
        assert!(
            printed.iter().all(|l| !l.starts_with("computed")),
            "a body ran: {printed:?}"
        );
        flips += printed.iter().filter(|l| l.starts_with("restored")).count();
        if printed.last().is_none_or(|l| l.starts_with("restoring")) {
            mid_restore += 1;
        }
        let store = PipelineStore::open(dir.path().join("k.duckdb")).unwrap();
        let current = flip_version(&store);
        let stored = store.load_dataframe("flip").unwrap().unwrap();
        common::assert_frames_equal(&stored, &big_frame(current));
        let history = store.history("flip").unwrap();
        let versions: Vec<(bool, i64)> = history
            .iter()
            .map(|v| {
                let arguments = &v.checkpoint.key.as_ref().unwrap().arguments;
                (v.current, arguments["version"].as_i64().unwrap())
            })
            .collect();
        assert_eq!(
            versions.len(),
            2,
            "both versions, one current: {versions:?}"
        );
        assert!(versions.contains(&(true, current)), "{versions:?}");
        assert!(versions.contains(&(false, 3 - current)), "{versions:?}");
        // Each version's rows are its own, under its own number.
        for version in &history {
            let arguments = &version.checkpoint.key.as_ref().unwrap().arguments;
            let made_of = arguments["version"].as_i64().unwrap();
            assert_eq!(version.version as i64, made_of, "numbered in save order");
            let rows = store
                .load_version("flip", version.version)
                .unwrap()
                .unwrap();
            common::assert_frames_equal(&rows, &big_frame(made_of));
            assert_eq!(version.checkpoint.row_count, Some(BIG_ROWS));
        }
    }
    eprintln!(
        "restore kills survived: {} ({mid_restore} inside a restore), restores committed: {flips}",
        kills()
    );
    assert!(flips > 0, "no restore ever committed");
}

// --- resumable batches --------------------------------------------------------------------

const BATCH: usize = 20;

/// The items of the resumable test: enough batches for the kills asked for.
fn item_count() -> usize {
    BATCH * (kills() / 3).max(8) * 6
}

fn items() -> Vec<String> {
    (0..item_count()).map(|i| format!("GENE{i:05}")).collect()
}

/// What the "remote service" answers for a batch: deterministic, so runs compare.
fn answer(batch: &[String]) -> DataFrame {
    let pubs: Vec<i64> = batch
        .iter()
        .map(|g| g[4..].parse::<i64>().unwrap() * 3)
        .collect();
    df!("gene" => batch, "publications" => pubs).unwrap()
}

#[checkpointed(table = "literature", skip(genes, log), batches = done)]
fn fetch_literature(ctx: &Pipeline, genes: &[String], log: &Path) -> Result<DataFrame, Error> {
    for batch in done.pending(genes, BATCH)? {
        std::thread::sleep(Duration::from_millis(25));
        let rows = answer(&batch);
        // One append per batch: the batch counts as fetched once this line is written.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .unwrap();
        f.write_all(format!("{}\n", batch.join(" ")).as_bytes())
            .unwrap();
        done.save(&batch, &rows)?;
    }
    done.finish()
}

/// Child: runs the resumable fetch to the end (unless killed).
#[test]
#[ignore = "a child process of sigkill_mid_loop_resumes_without_refetching"]
fn child_fetches_in_batches() {
    let Some(dir) = test_dir() else { return };
    let p = pipeline(&dir);
    println!("started");
    let df = fetch_literature(&p, &items(), &dir.join("fetched.log")).unwrap();
    println!("done {}", df.height());
}

#[test]
fn sigkill_mid_loop_resumes_without_refetching() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::Rng::new();
    let wanted = (kills() / 3).max(5);
    let mut killed = 0;
    let mut finished = false;
    for _ in 0..wanted + 50 {
        let (mut child, lines) =
            spawn_child(&common::test_name!(child_fetches_in_batches), dir.path());
        // Killed 0 to about 8 batches after the loop starts, until enough kills are done.
        let deadline = if killed < wanted {
            Some(Duration::from_millis(rng.below(200)))
        } else {
            None
        };
        let mut done = false;
        let mut started = Instant::now();
        let mut running = false;
        loop {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(2)) {
                if line.contains("done ") {
                    done = true;
                    break;
                }
                if line.contains("started") && !running {
                    running = true;
                    started = Instant::now();
                }
            }
            if !running {
                if started.elapsed() > Duration::from_secs(120) {
                    panic!("the child never started");
                }
                continue;
            }
            if let Some(d) = deadline
                && started.elapsed() >= d
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(120) {
                panic!("the child hangs");
            }
        }
        if done {
            child.wait().unwrap();
            finished = true;
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        killed += 1;
    }
    assert!(finished, "the fetch never finished");

    let log = std::fs::read_to_string(dir.path().join("fetched.log")).unwrap_or_default();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for item in log.split_whitespace() {
        *counts.entry(item).or_default() += 1;
    }
    let fetched: usize = counts.values().sum();
    let again = fetched - counts.len();
    eprintln!(
        "resumable: {killed} kills, {fetched} fetches for {} items ({again} again; at most {} allowed)",
        item_count(),
        killed * BATCH
    );
    assert!(
        killed >= wanted,
        "only {killed} kills landed before the fetch finished"
    );
    assert_eq!(counts.len(), item_count(), "every item fetched");
    assert!(
        again <= killed * BATCH,
        "{again} items fetched again after {killed} kills: more than one batch per kill"
    );

    // The final table equals an uninterrupted run's, and no partial data is left.
    let store = PipelineStore::open(dir.path().join("k.duckdb")).unwrap();
    let stored = store.load_dataframe("literature").unwrap().unwrap();
    let sort = |df: &DataFrame| df.sort(["gene"], SortMultipleOptions::default()).unwrap();
    common::assert_frames_equal(&sort(&stored), &sort(&answer(&items())));
    assert!(
        store
            .load_dataframe("_partial_literature")
            .unwrap()
            .is_none()
    );
    assert_eq!(
        one_i64(&store, "SELECT count(*) FROM _checkpoint_batches", &[]),
        Some(0)
    );
}

// --- atomic exports -----------------------------------------------------------------------

/// Child: exports `big` to `out/big.parquet` over and over until killed.
#[test]
#[ignore = "a child process of sigkill_during_exports_never_leaves_a_torn_parquet_file"]
fn child_exports_in_a_loop() {
    let Some(dir) = test_dir() else { return };
    let store = PipelineStore::open_read_only(dir.join("e.duckdb")).unwrap();
    loop {
        println!("exporting");
        std::io::stdout().flush().unwrap();
        store
            .export_parquet("big", &dir.join("out/big.parquet"))
            .unwrap();
        println!("exported");
        std::io::stdout().flush().unwrap();
    }
}

#[test]
fn sigkill_during_exports_never_leaves_a_torn_parquet_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = PipelineStore::open(dir.path().join("e.duckdb")).unwrap();
        store
            .save_dataframe("big", &big_frame(7), "export source")
            .unwrap();
    }
    // Parquet files are read back by a store of their own, not the one the child exports from.
    let checker = PipelineStore::open(dir.path().join("checker.duckdb")).unwrap();
    let output = dir.path().join("out/big.parquet");
    let mut rng = common::Rng::new();
    let (mut present, mut absent) = (0, 0);
    for round in 0..(kills() / 2).max(10) {
        // Every other round starts without the file: DuckDB itself writes beside an existing
        // file (`use_tmp_file`), but a first export went straight to the target.
        if round % 2 == 0 {
            let _ = std::fs::remove_file(&output);
        }
        let (mut child, lines) =
            spawn_child(&common::test_name!(child_exports_in_a_loop), dir.path());
        assert!(
            lines.iter().any(|l| l.contains("exporting")),
            "the child never started exporting"
        );
        // Every fifth round waits for one finished export first, so a loaded machine (where
        // the random kills all come before the first export ends) still kills mid-rewrite of an
        // existing file.
        if round % 5 == 4 {
            let finished = std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(120)).ok())
                .any(|l| l.contains("exported"));
            assert!(finished, "the child never finished an export");
        }
        std::thread::sleep(Duration::from_millis(rng.below(250)));
        child.kill().unwrap();
        child.wait().unwrap();
        if output.exists() {
            present += 1;
            let path = Param::from(output.to_string_lossy().into_owned());
            let rows = one_i64(
                &checker,
                "SELECT count(*) FROM read_parquet(?)",
                std::slice::from_ref(&path),
            );
            assert_eq!(rows, Some(BIG_ROWS), "a torn or partial Parquet file");
            let versions = one_i64(
                &checker,
                "SELECT count(*) FROM read_parquet(?) WHERE version <> 7",
                &[path],
            );
            assert_eq!(versions, Some(0));
        } else {
            absent += 1;
        }
    }
    let leftovers = std::fs::read_dir(dir.path().join("out"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref().is_ok_and(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(".big.parquet.tmp")
                })
            })
            .count()
        })
        .unwrap_or(0);
    eprintln!(
        "export kills: {} (the file complete after {present}, not yet written after {absent}); \
         temporary files left by killed exports: {leftovers}",
        present + absent
    );
    assert!(
        present > 0,
        "no export ever finished: the kills came too early to test anything"
    );
    assert!(
        leftovers <= 1,
        "each export removes the temporary files of killed ones: {leftovers} left"
    );
}
