//! The first open of a shared store, killed: a worker that dies (or loses its connection)
//! while it creates a new store leaves either no store or a whole one, and the next open
//! completes or replaces it; a pipeline then runs on it. The worker is this test binary again,
//! killed at the exact moments that matter through the debug builds' test hook
//! `USHER_TEST_ABORT_CREATING` (runtime/src/store/shared/mod.rs), and at random moments.
//!
//! Needs `USHER_TEST_POSTGRES` (`.ci/postgres start DIR` prints it); without it these tests
//! print why and pass, unless `USHER_REQUIRE_POSTGRES` is set (CI).

use crate::common;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use usher_pipeline::CheckpointStore;

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    Error, Pipeline, ProvenanceTracker, SharedStore, SharedStoreOptions, checkpointed,
};

use common::shared::Shared;

/// The points of a creation where the hook can kill the worker: the data root's marker
/// written, the catalog's transaction not yet committed; and committed, the creation not yet
/// finished on disk.
const POINTS: [&str; 2] = ["marker-written", "committed"];

fn say(line: &str) {
    println!("{line}");
    std::io::stdout().flush().unwrap();
}

/// Worker: opens (and so creates) the store the parent names, unless killed on the way.
#[test]
#[ignore = "a worker of the tests of this file"]
fn worker_creates_the_store() {
    let (Ok(url), Some(root)) = (
        std::env::var("USHER_TEST_STORE"),
        std::env::var_os("USHER_TEST_ROOT"),
    ) else {
        return;
    };
    // The first line shares libtest's `test ... ` line.
    say("ready");
    SharedStore::open(&url, PathBuf::from(root)).unwrap();
    say("opened");
}

fn tracker() -> ProvenanceTracker {
    let config = usher_pipeline::PipelineConfig::from_yaml_str(
        "data_dir: data\ncache_dir: cache\nduckdb_path: unused.duckdb\nversions:\n  ensembl_release: 113\napi: {}\nscoring: {}\n",
        "shared-create-test.yaml",
    )
    .unwrap();
    ProvenanceTracker::new("shared-create-test", &config)
}

fn genes(n: i64) -> DataFrame {
    df!("gene" => ["USH2A", "MYO7A", "CDH23"], "n" => [n, n + 1, n + 2]).unwrap()
}

#[checkpointed(table = "created_genes", skip(calls))]
fn created_genes(
    ctx: &Pipeline<SharedStore>,
    n: i64,
    calls: &AtomicUsize,
) -> Result<DataFrame, Error> {
    let _ = ctx;
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(genes(n))
}

/// The store opens (after whatever the killed worker left), is one store on disk and in the
/// catalog, and a pipeline computes a step once and loads it the second time.
fn assert_whole_store(shared: &Shared, what: &str) {
    let store = SharedStore::open(&shared.url, shared.root())
        .unwrap_or_else(|e| panic!("{what}: the next open failed: {e}"));
    let on_disk = std::fs::read_to_string(shared.root().join(".usher-store"))
        .unwrap_or_else(|e| panic!("{what}: no marker after the open: {e}"));
    let recorded: String = shared
        .sql()
        .query_one(
            "SELECT value FROM _usher_schema WHERE name = 'store_id'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(on_disk.trim(), recorded, "{what}: one store id");
    let leftovers: Vec<_> = std::fs::read_dir(shared.root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".usher-store") && n != ".usher-store")
        .collect();
    assert!(
        leftovers.is_empty(),
        "{what}: left in the root: {leftovers:?}"
    );
    let calls = AtomicUsize::new(0);
    let pipeline = Pipeline::new(store.clone(), tracker());
    let first = created_genes(&pipeline, 5, &calls).unwrap();
    let second = created_genes(&pipeline, 5, &calls).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{what}: computed once");
    common::assert_frames_equal(&first, &genes(5));
    common::assert_frames_equal(&second, &genes(5));
    // Another worker opening it now sees the same store.
    drop(pipeline);
    drop(store);
    let again = SharedStore::open(&shared.url, shared.root()).unwrap();
    common::assert_frames_equal(
        &again.load_dataframe("created_genes").unwrap().unwrap(),
        &genes(5),
    );
}

/// Runs the worker on `shared` with `env`; returns whether it said it opened the store and how
/// it ended.
fn run_worker(shared: &Shared, env: &[(&str, String)]) -> (bool, std::process::ExitStatus) {
    let (mut child, lines) = shared.spawn(&common::test_name!(worker_creates_the_store), env);
    let status = child.wait().unwrap();
    let opened = lines.iter().any(|l| l == "opened");
    (opened, status)
}

/// A worker killed at each moment that matters of a creation, several times over: the next
/// open completes or replaces what it left.
#[test]
fn a_worker_killed_while_creating_the_store_leaves_none_or_a_whole_one() {
    if !cfg!(debug_assertions) {
        eprintln!("SKIPPED: the kill hook is compiled into debug builds only");
        return;
    }
    for point in POINTS {
        for round in 0..3 {
            let Some(shared) = Shared::new("create_kill") else {
                return;
            };
            let (opened, status) =
                run_worker(&shared, &[("USHER_TEST_ABORT_CREATING", point.to_owned())]);
            assert!(
                !opened && !status.success(),
                "{point} #{round}: the worker was to be killed there, it ended with {status}"
            );
            if round == 0 {
                // Opening to look (must_exist) neither creates nor finishes anything.
                let looked = SharedStore::open_with(
                    &shared.url,
                    shared.root(),
                    &SharedStoreOptions {
                        must_exist: true,
                        ..Default::default()
                    },
                );
                match point {
                    "marker-written" => {
                        let err = looked.unwrap_err();
                        assert!(matches!(err, Error::DataRoot { .. }), "{err}");
                        assert!(err.to_string().contains("must_exist"), "{err}");
                    }
                    _ => drop(looked.unwrap()),
                }
            }
            assert_whole_store(&shared, &format!("killed at {point} #{round}"));
        }
    }
}

/// Two workers killed at the same moment one after the other (the second finishes what a
/// creation killed after its commit left), then several opening at once: every open succeeds
/// and they agree on one store.
#[test]
fn workers_racing_after_killed_creations_agree_on_one_store() {
    if !cfg!(debug_assertions) {
        eprintln!("SKIPPED: the kill hook is compiled into debug builds only");
        return;
    }
    for point in POINTS {
        let Some(shared) = Shared::new("create_race") else {
            return;
        };
        for attempt in 0..2 {
            let (opened, _) =
                run_worker(&shared, &[("USHER_TEST_ABORT_CREATING", point.to_owned())]);
            // A creation killed after its commit is finished by the next open, which
            // creates nothing and so never reaches the hook.
            let finishes = attempt == 1 && point == "committed";
            assert_eq!(opened, finishes, "{point}, attempt {attempt}");
        }
        let workers: Vec<_> = (0..4)
            .map(|_| shared.spawn(&common::test_name!(worker_creates_the_store), &[]))
            .collect();
        for (mut child, lines) in workers {
            let status = child.wait().unwrap();
            let opened = lines.iter().any(|l| l == "opened");
            assert!(
                opened && status.success(),
                "{point}: an open failed: {status}"
            );
        }
        assert_whole_store(&shared, &format!("raced after kills at {point}"));
    }
}

/// Workers killed at random moments of their first open (no hook): each next open succeeds.
#[test]
fn random_kills_of_a_first_open_leave_an_openable_store() {
    let rounds: usize = std::env::var("USHER_CREATE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut rng = common::Rng::new();
    let mut below = |n: u64| rng.below(n);
    let mut killed_before_opened = 0;
    for round in 0..rounds {
        let Some(shared) = Shared::new("create_random") else {
            return;
        };
        let (mut child, lines) = shared.spawn(&common::test_name!(worker_creates_the_store), &[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !lines.try_iter().any(|l| l.ends_with("ready")) {
            assert!(
                Instant::now() < deadline,
                "round {round}: the worker never started"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(below(120)));
        child.kill().unwrap();
        child.wait().unwrap();
        if !lines.iter().any(|l| l == "opened") {
            killed_before_opened += 1;
        }
        assert_whole_store(&shared, &format!("random kill, round {round}"));
    }
    eprintln!("{killed_before_opened} of {rounds} workers killed before their open finished");
}

/// A root whose marker names a store this catalog never recorded (what a creation killed
/// before this fix left, or another catalog's directory) is refused, and the error says how
/// to start over; done as it says, the store opens.
#[test]
fn a_root_of_a_store_the_catalog_lacks_is_refused_with_a_way_out() {
    let Some(shared) = Shared::new("create_orphan") else {
        return;
    };
    drop(shared.store());
    shared
        .sql()
        .batch_execute("DELETE FROM _usher_schema WHERE name = 'store_id'")
        .unwrap();
    let err = SharedStore::open(&shared.url, shared.root()).unwrap_err();
    assert!(matches!(err, Error::DataRoot { .. }), "{err}");
    let text = err.to_string();
    eprintln!("{text}");
    assert!(
        text.contains("this catalog has none") && text.contains("remove .usher-store"),
        "{text}"
    );
    std::fs::remove_file(shared.root().join(".usher-store")).unwrap();
    assert_whole_store(&shared, "after removing the marker");
}
