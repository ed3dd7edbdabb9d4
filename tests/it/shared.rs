//! The shared store with real processes on a real PostgreSQL server: several workers running
//! one pipeline against one catalog and data root compute every table once; a worker killed
//! while it computes is taken over by another; a batched step resumes on another worker.
//!
//! Needs `USHER_TEST_POSTGRES` (`.ci/postgres start DIR` prints it); without it these tests
//! print why and pass, unless `USHER_REQUIRE_POSTGRES` is set (CI), which makes them fail.
//! `USHER_SHARED_KILLS=100 cargo test --all-features --test it shared:: -- --nocapture` runs
//! more kills than CI's 30 and prints the takeover times.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    CheckpointStore, Error, JudgedLoad, Pipeline, ProvenanceTracker, SharedStore, checkpointed,
    data_version,
};

use common::runs::{count_run, runs_of};
use common::shared::{Shared, walk, with_schema};

/// The store and run directory a worker was started with.
fn worker_env() -> Option<(SharedStore, PathBuf)> {
    let url = std::env::var("USHER_TEST_STORE").ok()?;
    let root = PathBuf::from(std::env::var_os("USHER_TEST_ROOT")?);
    let runs = PathBuf::from(std::env::var_os("USHER_TEST_RUNS")?);
    std::fs::create_dir_all(&runs).unwrap();
    Some((SharedStore::open(&url, root).unwrap(), runs))
}

/// Prints a line for the parent. A worker's first line shares libtest's `test name ... `
/// line, so workers say `ready` first.
fn say(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
    std::io::stdout().flush().unwrap();
}

/// Waits for a line starting with `prefix`, up to `timeout`.
fn wait_for(rx: &mpsc::Receiver<String>, prefix: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// A provenance tracker for a run of the test pipeline.
fn tracker() -> ProvenanceTracker {
    let config = usher_pipeline::PipelineConfig::from_yaml_str(
        "data_dir: data\ncache_dir: cache\nduckdb_path: unused.duckdb\nversions:\n  ensembl_release: 113\napi: {}\nscoring: {}\n",
        "shared-test.yaml",
    )
    .unwrap();
    ProvenanceTracker::new("shared-test", &config)
}

// --- eight workers, twenty steps --------------------------------------------------------

thread_local! {
    static RUNS: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// The frame of `table` for `seed`, with the row count of the step it was made from.
fn step_frame(table: &str, seed: i64, upstream_rows: usize) -> DataFrame {
    let n = 50 + (seed as usize % 7) * 10 + upstream_rows % 3;
    let ids: Vec<i64> = (0..n as i64).collect();
    let labels: Vec<String> = ids.iter().map(|i| format!("{table}-{i}")).collect();
    df!("id" => ids, "label" => labels).unwrap()
}

fn body(ctx: &Pipeline<SharedStore>, table: &str, seed: i64, upstream: Option<usize>) -> DataFrame {
    RUNS.with(|r| count_run(r.borrow().as_ref().expect("a worker"), table));
    // Long enough for the other workers to arrive while it runs.
    std::thread::sleep(Duration::from_millis(40));
    let _ = ctx;
    step_frame(table, seed, upstream.unwrap_or(0))
}

macro_rules! steps {
    ($($name:ident = $table:literal, $upstream:expr;)*) => {
        $(
            #[checkpointed(table = $table)]
            fn $name(ctx: &Pipeline<SharedStore>, seed: i64) -> Result<DataFrame, Error> {
                let upstream: Option<fn(&Pipeline<SharedStore>, i64) -> Result<DataFrame, Error>> = $upstream;
                // Some steps compute an upstream step inside their body: nested locks, taken
                // in one direction only.
                let rows = match upstream {
                    Some(step) => Some(step(ctx, seed)?.height()),
                    None => None,
                };
                Ok(body(ctx, $table, seed, rows))
            }
        )*
        const STEPS: &[(&str, fn(&Pipeline<SharedStore>, i64) -> Result<DataFrame, Error>)] =
            &[$(($table, $name)),*];
    };
}

steps! {
    s00 = "s00", None;
    s01 = "s01", Some(s00);
    s02 = "s02", Some(s01);
    s03 = "s03", None;
    s04 = "s04", Some(s03);
    s05 = "s05", None;
    s06 = "s06", Some(s05);
    s07 = "s07", Some(s06);
    s08 = "s08", None;
    s09 = "s09", Some(s08);
    s10 = "s10", None;
    s11 = "s11", Some(s10);
    s12 = "s12", Some(s11);
    s13 = "s13", Some(s12);
    s14 = "s14", None;
    s15 = "s15", Some(s14);
    s16 = "s16", None;
    s17 = "s17", Some(s16);
    s18 = "s18", None;
    s19 = "s19", Some(s18);
}

const WORKERS: usize = 8;

/// Worker: runs all twenty steps, starting at step `USHER_TEST_WORKER * 5` so the workers
/// meet on different tables, and prints each frame's data version.
#[test]
#[ignore = "a worker of eight_workers_compute_each_step_once"]
fn worker_runs_the_pipeline() {
    let Some((store, runs)) = worker_env() else {
        return;
    };
    RUNS.with(|r| *r.borrow_mut() = Some(runs));
    let worker: usize = std::env::var("USHER_TEST_WORKER").unwrap().parse().unwrap();
    let pipeline = Pipeline::new(store, tracker());
    say("ready");
    for i in 0..STEPS.len() {
        let (table, step) = STEPS[(worker * 5 + i) % STEPS.len()];
        let frame = step(&pipeline, 7).unwrap();
        say(format!(
            "version {table} {}",
            data_version(&frame).unwrap().to_hex()
        ));
    }
    say("done");
}

#[test]
fn eight_workers_compute_each_step_once() {
    let Some(shared) = Shared::new("eight") else {
        return;
    };
    // The catalog exists before the workers start racing for tables (its own creation is
    // raced in catalog_creation_is_serialised).
    drop(shared.store());
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            shared.spawn(
                &common::test_name!(worker_runs_the_pipeline),
                &[("USHER_TEST_WORKER", w.to_string())],
            )
        })
        .collect();
    let mut versions: Vec<BTreeMap<String, String>> = Vec::new();
    for (mut child, rx) in workers {
        let mut seen = BTreeMap::new();
        let mut done = false;
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) {
            if let Some(rest) = line.strip_prefix("version ") {
                let (table, version) = rest.split_once(' ').unwrap();
                seen.insert(table.to_owned(), version.to_owned());
            }
            if line == "done" {
                done = true;
                break;
            }
        }
        let status = child.wait().unwrap();
        assert!(done && status.success(), "a worker failed: {status}");
        versions.push(seen);
    }
    let elapsed = started.elapsed();
    // Every body ran exactly once, across all eight workers.
    let runs = runs_of(&shared.runs());
    assert_eq!(runs.len(), STEPS.len(), "bodies that ran: {runs:?}");
    assert!(
        runs.values().all(|&n| n == 1),
        "bodies that ran more than once: {runs:?}"
    );
    // Every worker ended with the same frames.
    assert_eq!(versions[0].len(), STEPS.len());
    for v in &versions[1..] {
        assert_eq!(v, &versions[0], "workers ended with different frames");
    }
    // One registered file per table, nothing else on disk.
    let store = shared.store();
    let list = store.list_checkpoints().unwrap();
    assert_eq!(list.len(), STEPS.len());
    let report = store.gc().unwrap();
    assert_eq!(
        report.files_removed, 0,
        "files left beside the registered ones: {report:?}"
    );
    eprintln!(
        "{WORKERS} workers x {} steps: every body once, in {:.2} s",
        STEPS.len(),
        elapsed.as_secs_f64()
    );
}

// --- the catalog's own creation ----------------------------------------------------------

/// Worker: opens the store (creating the catalog if it is first) and says so.
#[test]
#[ignore = "a worker of catalog_creation_is_serialised"]
fn worker_opens_the_store() {
    // The first line shares libtest's `test ... ` line.
    say("ready");
    if worker_env().is_some() {
        say("opened");
    }
}

#[test]
fn catalog_creation_is_serialised() {
    let Some(shared) = Shared::new("create") else {
        return;
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| shared.spawn(&common::test_name!(worker_opens_the_store), &[]))
        .collect();
    for (mut child, rx) in workers {
        let opened = wait_for(&rx, "opened", Duration::from_secs(60));
        assert!(
            child.wait().unwrap().success() && opened.is_some(),
            "an open failed"
        );
    }
    let id = std::fs::read_to_string(shared.root().join(".usher-store")).unwrap();
    let recorded: String = shared
        .sql()
        .query_one(
            "SELECT value FROM _usher_schema WHERE name = 'store_id'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        id.trim(),
        recorded,
        "one store id, on disk and in the catalog"
    );
}

// --- a worker killed while it computes ---------------------------------------------------

const KILL_ROWS: i64 = 200_000;

/// The frame of the kill test's round `round`: each value derives from it.
fn kill_frame(round: i64) -> DataFrame {
    let ids: Vec<i64> = (0..KILL_ROWS).collect();
    let values: Vec<i64> = ids.iter().map(|i| i * round).collect();
    df!("id" => ids, "round" => vec![round; KILL_ROWS as usize], "value" => values).unwrap()
}

#[checkpointed(table = "slow")]
fn slow(ctx: &Pipeline<SharedStore>, round: i64) -> Result<DataFrame, Error> {
    say(format!("computing {round} {}", std::process::id()));
    let _ = ctx;
    std::thread::sleep(Duration::from_millis(150));
    Ok(kill_frame(round))
}

/// Worker: computes (or loads) round `USHER_TEST_ROUND` of `slow`.
#[test]
#[ignore = "a worker of a_killed_worker_is_taken_over"]
fn worker_computes_slow() {
    let Some((store, _)) = worker_env() else {
        return;
    };
    let round: i64 = std::env::var("USHER_TEST_ROUND").unwrap().parse().unwrap();
    let pipeline = Pipeline::new(store, tracker());
    say("ready");
    let frame = slow(&pipeline, round).unwrap();
    say(format!("loaded {}", frame.height()));
}

fn kills() -> usize {
    std::env::var("USHER_SHARED_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

#[test]
fn a_killed_worker_is_taken_over() {
    let Some(shared) = Shared::new("kill") else {
        return;
    };
    let store = shared.store();
    let mut rng = common::Rng::new();
    let mut below = |n: u64| rng.below(n);
    let mut takeovers = Vec::new();
    let mut kills_done = 0;
    let mut round = 0i64;
    // Until the wanted number of workers has been killed while computing (a kill that comes
    // after the victim finished is a round without a kill).
    while kills_done < kills() {
        round += 1;
        assert!(
            round as usize <= kills() * 3,
            "too few kills landed: {kills_done}"
        );
        let round_env = [("USHER_TEST_ROUND", round.to_string())];
        let (mut first, first_rx) =
            shared.spawn(&common::test_name!(worker_computes_slow), &round_env);
        let (mut second, second_rx) =
            shared.spawn(&common::test_name!(worker_computes_slow), &round_env);
        // Whoever computes is killed at a random moment of its body or its save.
        let (victim, victim_rx, survivor, survivor_rx) = {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                assert!(Instant::now() < deadline, "round {round}: nobody computed");
                if let Ok(line) = first_rx.recv_timeout(Duration::from_millis(5))
                    && line.starts_with("computing")
                {
                    break (&mut first, first_rx, &mut second, second_rx);
                }
                if let Ok(line) = second_rx.recv_timeout(Duration::from_millis(5))
                    && line.starts_with("computing")
                {
                    break (&mut second, second_rx, &mut first, first_rx);
                }
            }
        };
        // The body sleeps 150 ms, the save of 200k rows takes about as long again.
        std::thread::sleep(Duration::from_millis(below(300)));
        let finished_first = victim_rx.try_iter().any(|l| l.starts_with("loaded"));
        victim.kill().unwrap();
        let killed_at = Instant::now();
        victim.wait().unwrap();
        if !finished_first {
            kills_done += 1;
        }
        // The survivor takes over (or loads what the victim registered before dying).
        let mut took_over = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut loaded = false;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match survivor_rx.recv_timeout(left) {
                Ok(line) if line.starts_with("computing") => {
                    took_over.get_or_insert(killed_at.elapsed());
                }
                Ok(line) if line.starts_with("loaded") => {
                    assert_eq!(line, format!("loaded {KILL_ROWS}"));
                    loaded = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        assert!(loaded, "round {round}: the survivor did not finish");
        assert!(survivor.wait().unwrap().success());
        if let Some(t) = took_over {
            takeovers.push(t);
        }
        // Exactly one checkpoint of this round, whole, registered once, its file there.
        let info = store.checkpoint("slow").unwrap().expect("a checkpoint");
        assert_eq!(info.row_count, Some(KILL_ROWS));
        assert_eq!(
            info.key.as_ref().unwrap().arguments.get("round"),
            Some(&serde_json::json!(round))
        );
        let frame = store.load_dataframe("slow").unwrap().unwrap();
        common::assert_frames_equal(&frame, &kill_frame(round));
        let files: i64 = shared
            .sql()
            .query_one("SELECT count(*) FROM _checkpoint_files", &[])
            .unwrap()
            .get(0);
        assert_eq!(files, 1, "round {round}: one registered file");
    }
    // What the killed workers wrote and never registered is collected; nothing registered
    // is touched.
    let report = store.gc().unwrap();
    assert!(report.tables_busy.is_empty());
    let on_disk: BTreeSet<PathBuf> = walk(&shared.root().join("tables"));
    // The registered versions the lake's snapshots name, each round's; nothing else.
    let lake: BTreeSet<PathBuf> = shared
        .sql()
        .query("SELECT DISTINCT path FROM ducklake_data_file", &[])
        .unwrap()
        .iter()
        .map(|row| {
            shared
                .root()
                .join("tables/slow")
                .join(row.get::<_, String>(0))
        })
        .collect();
    assert_eq!(
        on_disk, lake,
        "after gc, only the files of the lake's snapshots"
    );
    assert_eq!(lake.len(), round as usize, "one version per round");
    common::assert_frames_equal(
        &store.load_dataframe("slow").unwrap().unwrap(),
        &kill_frame(round),
    );
    takeovers.sort();
    let median = takeovers
        .get(takeovers.len() / 2)
        .copied()
        .unwrap_or_default();
    let max = takeovers.last().copied().unwrap_or_default();
    eprintln!(
        "{kills_done} workers killed while computing ({round} rounds): {} takeovers, median {:.0} ms, max {:.0} ms after the kill; gc removed {} orphaned files ({} bytes)",
        takeovers.len(),
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        report.files_removed,
        report.bytes_removed
    );
}

// --- a batched step resumes on another worker --------------------------------------------

const GENES: usize = 40;

#[checkpointed(table = "literature", batches = done)]
fn literature(ctx: &Pipeline<SharedStore>, genes: Vec<String>) -> Result<DataFrame, Error> {
    let _ = ctx;
    for batch in done.pending(&genes, 4)? {
        for gene in &batch {
            say(format!("fetch {gene}"));
        }
        std::thread::sleep(Duration::from_millis(60));
        let hits: Vec<i64> = batch.iter().map(|g| g.len() as i64).collect();
        done.save(&batch, &df!("gene" => batch.clone(), "hits" => hits)?)?;
        say("batch saved");
    }
    done.finish()
}

fn genes() -> Vec<String> {
    (0..GENES).map(|i| format!("GENE{i:02}")).collect()
}

/// Worker: runs the batched step to the end (unless killed).
#[test]
#[ignore = "a worker of a_batched_step_resumes_on_another_worker"]
fn worker_fetches_literature() {
    let Some((store, _)) = worker_env() else {
        return;
    };
    let pipeline = Pipeline::new(store, tracker());
    say("ready");
    let frame = literature(&pipeline, genes()).unwrap();
    say(format!("loaded {}", frame.height()));
}

#[test]
fn a_batched_step_resumes_on_another_worker() {
    let Some(shared) = Shared::new("batches") else {
        return;
    };
    let (mut first, first_rx) = shared.spawn(&common::test_name!(worker_fetches_literature), &[]);
    for _ in 0..3 {
        wait_for(&first_rx, "batch saved", Duration::from_secs(60)).expect("a batch");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let fetched_first: BTreeSet<String> = first_rx
        .try_iter()
        .filter_map(|l| l.strip_prefix("fetch ").map(str::to_owned))
        .collect();
    let (mut second, second_rx) = shared.spawn(&common::test_name!(worker_fetches_literature), &[]);
    let mut fetched_second = Vec::new();
    let mut loaded = None;
    while let Ok(line) = second_rx.recv_timeout(Duration::from_secs(60)) {
        if let Some(gene) = line.strip_prefix("fetch ") {
            fetched_second.push(gene.to_owned());
        }
        if let Some(n) = line.strip_prefix("loaded ") {
            loaded = Some(n.parse::<usize>().unwrap());
            break;
        }
    }
    assert!(second.wait().unwrap().success());
    assert_eq!(loaded, Some(GENES), "the second worker finished the step");
    // The second worker fetched what the first had not finished: at least three batches (12
    // genes) came from the first, at most the batch in flight is fetched again.
    assert!(
        fetched_second.len() <= GENES - 12,
        "the second worker fetched {} genes",
        fetched_second.len()
    );
    let again: Vec<&String> = fetched_second
        .iter()
        .filter(|g| fetched_first.contains(*g))
        .collect();
    assert!(again.len() <= 4, "fetched again: {again:?}");
    let frame = shared
        .store()
        .load_dataframe("literature")
        .unwrap()
        .unwrap();
    let column = frame.column("gene").unwrap().str().unwrap().clone();
    let mut got: Vec<String> = (0..column.len())
        .map(|i| column.get(i).unwrap().to_owned())
        .collect();
    got.sort();
    assert_eq!(got, genes(), "every gene once in the checkpoint");
}

// --- in one process ----------------------------------------------------------------------

#[checkpointed(table = "shared_once", skip(runs))]
fn shared_once(
    ctx: &Pipeline<SharedStore>,
    runs: &std::sync::atomic::AtomicUsize,
) -> Result<DataFrame, Error> {
    let _ = ctx;
    runs.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    Ok(df!("x" => [1i64, 2, 3])?)
}

/// Two pipelines of one process over one store (two runs, say): one computes, the other
/// waits on the table's lock and loads the result.
#[test]
fn two_pipelines_in_one_process_compute_once() {
    let Some(shared) = Shared::new("local") else {
        return;
    };
    let store = shared.store();
    let runs = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let store = store.clone();
            let runs = &runs;
            s.spawn(move || {
                let pipeline = Pipeline::new(store, tracker());
                let frame = shared_once(&pipeline, runs).unwrap();
                assert_eq!(frame.height(), 3);
            });
        }
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

// --- passwords -----------------------------------------------------------------------------

/// The `.ci/postgres` role that logs in with a password.
const PASSWORD: &str = "s3cret-pw";

/// The test server's URL for the password role, with `password`, in `schema`.
fn password_url(shared: &Shared, password: &str) -> Option<String> {
    let (scheme, rest) = shared.admin.split_once("://")?;
    let (_, host) = rest.split_once('@')?;
    Some(with_schema(
        &format!("{scheme}://usher_pw:{password}@{host}"),
        &shared.schema,
    ))
}

/// The password of the catalog's URL reaches neither errors (a refused login, a failed
/// statement), nor the store's name and `Debug`, nor provenance rows.
#[test]
fn passwords_never_reach_errors_names_or_provenance() {
    let Some(shared) = Shared::new("secret") else {
        return;
    };
    shared.grant("usher_pw");
    let wrong = "wr0ng-pw-31337";
    let refused = SharedStore::open(&password_url(&shared, wrong).unwrap(), shared.root())
        .expect_err("a wrong password is refused");
    eprintln!("a refused login reads: {refused}");
    let text = format!("{refused} {refused:?}");
    assert!(!text.contains(wrong), "{text}");
    assert!(
        text.contains("usher_pw@127.0.0.1"),
        "the store is named: {text}"
    );
    // Not a URL the client can parse: still no password in the message.
    let garbled = format!("postgres://usher_pw:{wrong}@127.0.0.1:notaport/db");
    let text = SharedStore::open(&garbled, shared.root())
        .unwrap_err()
        .to_string();
    assert!(!text.contains(wrong), "{text}");

    let store = SharedStore::open(&password_url(&shared, PASSWORD).unwrap(), shared.root())
        .expect("the right password is accepted");
    for shown in [store.name().to_owned(), format!("{store:?}")] {
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(shown.contains("usher_pw@"), "{shown}");
    }
    let failed = store.query("SELECT * FROM no_such_table", &[]).unwrap_err();
    assert!(!failed.to_string().contains(PASSWORD));
    let pipeline = Pipeline::new(store.clone(), tracker());
    let calls = std::sync::atomic::AtomicUsize::new(0);
    shared_once(&pipeline, &calls).unwrap();
    pipeline.save_provenance().unwrap();
    let rows = store.provenance_rows().unwrap();
    assert_eq!(rows.len(), 2, "the step's row and the run's");
    for row in rows {
        let all = format!("{row:?}");
        assert!(!all.contains(PASSWORD), "{all}");
    }
    // A connection string in key=value form too.
    let host_port = shared
        .admin
        .split_once('@')
        .unwrap()
        .1
        .split_once('/')
        .unwrap()
        .0;
    let (host, port) = host_port.split_once(':').unwrap();
    let kv = format!("host={host} port={port} user=usher_pw password={wrong} dbname=usher");
    let text = SharedStore::open(&kv, shared.root())
        .unwrap_err()
        .to_string();
    assert!(!text.contains(wrong), "{text}");
}

/// A worker whose `USHER_STORE` names no password finds it where libpq would: `PGPASSWORD`,
/// else the password file (`PGPASSFILE`, else `~/.pgpass`), whose first line matching the
/// store's host, port, database and user wins; a file others can read is ignored. Each case
/// is a child process with exactly that environment (the real server refuses `usher_pw`
/// without its password), and no output ever shows the password.
#[test]
fn the_password_comes_from_pgpassword_or_the_password_file() {
    let Some(shared) = Shared::new("passfile") else {
        return;
    };
    shared.grant("usher_pw");
    let url = password_url(&shared, "")
        .unwrap()
        .replace("usher_pw:@", "usher_pw@");
    let port = url
        .split_once("127.0.0.1:")
        .unwrap()
        .1
        .split_once('/')
        .unwrap()
        .0;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let file = |name: &str, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "# another port first: not this store's\n127.0.0.1:1:*:usher_pw:wrong-pw\n\
                 127.0.0.1:{port}:usher:usher_pw:{PASSWORD}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let private = file("pgpass", 0o600);
    let readable = file("pgpass-readable", 0o644);
    let run = |vars: &[(&str, &std::ffi::OsStr)], home: &Path| {
        let mut command = common::child_test(&common::test_name!(child_opens_the_store));
        command
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE")
            .env("HOME", home)
            .env("USHER_TEST_PW_URL", &url)
            .env("USHER_TEST_PW_ROOT", shared.root());
        for (name, value) in vars {
            command.env(name, value);
        }
        let out = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains(PASSWORD),
            "the password is never shown: {text}"
        );
        (
            out.status.success() && text.contains("opened and saved"),
            text,
        )
    };
    let (opened, text) = run(&[("PGPASSFILE", private.as_os_str())], &home);
    assert!(opened, "PGPASSFILE: {text}");
    let (opened, text) = run(&[("PGPASSWORD", std::ffi::OsStr::new(PASSWORD))], &home);
    assert!(opened, "PGPASSWORD: {text}");
    std::fs::copy(&private, home.join(".pgpass")).unwrap();
    let (opened, text) = run(&[], &home);
    assert!(opened, "~/.pgpass: {text}");
    let (opened, text) = run(&[("PGPASSFILE", readable.as_os_str())], dir.path());
    assert!(
        !opened,
        "a password file others can read is ignored: {text}"
    );
    assert!(
        text.contains("usher_pw@127.0.0.1"),
        "the refusal names the store: {text}"
    );
    let (opened, text) = run(&[], dir.path());
    assert!(!opened, "no password anywhere: refused: {text}");
}

#[test]
#[ignore = "a child process of the_password_comes_from_pgpassword_or_the_password_file"]
fn child_opens_the_store() {
    let url = std::env::var("USHER_TEST_PW_URL").unwrap();
    let root = std::env::var("USHER_TEST_PW_ROOT").unwrap();
    let store = SharedStore::open(&url, root).unwrap_or_else(|e| panic!("refused: {e}"));
    let frame = df!("gene" => ["USH2A"]).unwrap();
    store.save_dataframe("by_password", &frame, "").unwrap();
    assert_eq!(store.load_dataframe("by_password").unwrap(), Some(frame));
    println!("opened and saved");
}

/// A worker given a directory that is not the store's data root (the share not mounted, or
/// another store's files) stops at once with `Error::DataRoot`, before anything is written.
#[test]
fn a_wrong_data_root_is_refused() {
    let (Some(one), Some(other)) = (Shared::new("root_a"), Shared::new("root_b")) else {
        return;
    };
    drop(one.store());
    drop(other.store());
    let unmounted = one.dir.path().join("not-mounted");
    let err = SharedStore::open(&one.url, &unmounted).unwrap_err();
    assert!(matches!(err, Error::DataRoot { .. }), "{err}");
    assert!(err.to_string().contains("mounted"), "{err}");
    assert!(
        !unmounted.join("tables").exists(),
        "nothing written to the wrong root"
    );
    let err = SharedStore::open(&one.url, other.root()).unwrap_err();
    assert!(matches!(err, Error::DataRoot { .. }), "{err}");
    eprintln!("{err}");
    // The right root still opens.
    drop(one.store());
}

// --- the store chosen by the environment --------------------------------------------------

/// A step written for the single-file store (`&Pipeline`), unchanged.
#[checkpointed(table = "env_genes")]
fn env_genes(ctx: &Pipeline, n: i64) -> Result<DataFrame, Error> {
    count_run(
        Path::new(&std::env::var_os("USHER_TEST_RUNS").expect("a worker")),
        "env_genes",
    );
    Ok(df!("gene" => ["USH2A", "MYO7A", "CDH23"], "n" => [n, n + 1, n + 2])?)
}

/// The child half of `the_environment_picks_the_shared_store`: `Pipeline::from_config` with
/// whatever `USHER_STORE` and `USHER_DATA_ROOT` the parent set.
#[test]
#[ignore = "a child process of the_environment_picks_the_shared_store"]
fn child_from_config() {
    let Some(dir) = std::env::var_os("USHER_TEST_DIR") else {
        return;
    };
    let config =
        usher_pipeline::PipelineConfig::load(Path::new(&dir).join("pipeline.yaml")).unwrap();
    say("ready");
    match Pipeline::from_config(&config) {
        Ok(p) => {
            // Workers of one forced run: each made its pipeline before any computes.
            if let Some(go) = std::env::var_os("USHER_TEST_GO") {
                say("made");
                while !Path::new(&go).exists() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let frame = env_genes(&p, 7).unwrap();
            say(format!("store {}", p.store().name()));
            say(format!("rows {}", frame.height()));
        }
        Err(e) => say(format!("error {e}")),
    }
}

/// `Pipeline::from_config` opens the shared store when `USHER_STORE` names one: a function
/// taking `&Pipeline` computes once across two processes, and the config's DuckDB file is never
/// made. `USHER_STORE` without `USHER_DATA_ROOT` is a setting error, not the local file.
#[test]
fn the_environment_picks_the_shared_store() {
    let Some(shared) = Shared::new("env") else {
        return;
    };
    let d = shared.dir.path();
    std::fs::write(
        d.join("pipeline.yaml"),
        crate::common::config_yaml(d, &d.join("local.duckdb")),
    )
    .unwrap();
    let root = shared.root().to_string_lossy().into_owned();
    std::fs::create_dir_all(shared.runs()).unwrap();
    let child = |with_root: bool| -> Vec<String> {
        let mut command = common::child_test(&common::test_name!(child_from_config));
        command
            .env("USHER_TEST_DIR", d)
            .env("USHER_TEST_RUNS", shared.runs())
            .env("USHER_STORE", &shared.url)
            .env_remove("USHER_DATA_ROOT");
        if with_root {
            command.env("USHER_DATA_ROOT", &root);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                l.starts_with("store ") || l.starts_with("rows ") || l.starts_with("error ")
            })
            .map(str::to_owned)
            .collect()
    };
    for _ in 0..2 {
        let lines = child(true);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("store postgres://usher@"), "{lines:?}");
        assert_eq!(lines[1], "rows 3");
    }
    assert_eq!(
        runs_of(&shared.runs())["env_genes"],
        1,
        "the second run was a hit"
    );
    assert!(
        !d.join("local.duckdb").exists(),
        "the config's file store was not opened"
    );
    let stored = shared.store().load_dataframe("env_genes").unwrap().unwrap();
    common::assert_frames_equal(
        &stored,
        &df!("gene" => ["USH2A", "MYO7A", "CDH23"], "n" => [7i64, 8, 9]).unwrap(),
    );

    // Four workers of one run with USHER_FORCE=env_genes: one recomputes, the others load
    // what it saved since their pipelines were made.
    let go = d.join("go");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            shared.spawn(
                &common::test_name!(child_from_config),
                &[
                    ("USHER_TEST_DIR", d.to_string_lossy().into_owned()),
                    ("USHER_STORE", shared.url.clone()),
                    ("USHER_DATA_ROOT", root.clone()),
                    ("USHER_FORCE", "env_genes".to_owned()),
                    ("USHER_TEST_GO", go.to_string_lossy().into_owned()),
                ],
            )
        })
        .collect();
    for (_, lines) in &workers {
        assert!(wait_for(lines, "made", Duration::from_secs(60)).is_some());
    }
    std::fs::write(&go, b"").unwrap();
    for (mut child, lines) in workers {
        assert_eq!(
            wait_for(&lines, "rows", Duration::from_secs(60)).as_deref(),
            Some("rows 3")
        );
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(
        runs_of(&shared.runs())["env_genes"],
        2,
        "forced once across the four workers"
    );

    let lines = child(false);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("error ") && lines[0].contains("USHER_DATA_ROOT"),
        "{lines:?}"
    );
    assert!(
        !d.join("local.duckdb").exists(),
        "no fallback to the local file"
    );
}

// --- a hit loads what it judged ------------------------------------------------------------

fn round_frame(round: i64) -> DataFrame {
    df!("round" => [round; 3], "gene" => ["USH2A", "MYO7A", "CDH23"]).unwrap()
}

/// The round a frame of `round_frame` was made for.
fn round_of(frame: &DataFrame) -> i64 {
    frame
        .column("round")
        .unwrap()
        .i64()
        .unwrap()
        .get(0)
        .unwrap()
}

/// A checkpoint judged by one worker and replaced by another before it is loaded is reported
/// as replaced (the caller judges again), never loaded: a load by the table's name reads the
/// other worker's data. A judged checkpoint still current whose file is gone is missing.
#[test]
fn a_judged_checkpoint_replaced_by_another_worker_is_not_loaded() {
    let Some(shared) = Shared::new("judged") else {
        return;
    };
    let store = shared.store();
    let other = shared.store();
    store
        .save_dataframe("t", &round_frame(1), "round 1")
        .unwrap();
    let judged = store.checkpoint("t").unwrap().unwrap();
    match store.load_judged(&judged).unwrap() {
        JudgedLoad::Loaded(frame) => common::assert_frames_equal(&frame, &round_frame(1)),
        other => panic!("the current checkpoint is loaded, not {other:?}"),
    }
    // Another worker (other arguments) registers its own result in between.
    other
        .save_dataframe("t", &round_frame(2), "round 2")
        .unwrap();
    match store.load_judged(&judged).unwrap() {
        JudgedLoad::Replaced => {}
        JudgedLoad::Loaded(frame) => panic!(
            "loaded round {} for a judged round 1: data it never judged",
            round_of(&frame)
        ),
        JudgedLoad::TableMissing => panic!("replaced, not missing"),
    }
    // What a load by name, the naive second step, would have returned instead.
    assert_eq!(round_of(&store.load_dataframe("t").unwrap().unwrap()), 2);

    // The current checkpoint, its file removed by hand: missing, not replaced.
    let judged = store.checkpoint("t").unwrap().unwrap();
    let file: String = shared
        .sql()
        .query_one(
            "SELECT path FROM _checkpoint_files WHERE table_name = 't'",
            &[],
        )
        .unwrap()
        .get(0);
    std::fs::remove_file(shared.root().join(file)).unwrap();
    assert!(matches!(
        store.load_judged(&judged).unwrap(),
        JudgedLoad::TableMissing
    ));
    // Deleted since it was judged: replaced (there is nothing to load, and nothing judged).
    other.delete_checkpoint("t").unwrap();
    assert!(matches!(
        store.load_judged(&judged).unwrap(),
        JudgedLoad::Replaced
    ));
}

/// One worker judges and loads `t` in a loop while another keeps replacing it: every load
/// returns exactly the round that was judged (the rounds are told apart by the description
/// saved with each), however the saves fall between the judgement, the lookup of the file and
/// its read. A check followed by a load by name returns the other worker's newer round.
#[test]
fn loads_of_judged_checkpoints_race_saves_of_another_worker() {
    let Some(shared) = Shared::new("judged_race") else {
        return;
    };
    let store = shared.store();
    store
        .save_dataframe("t", &round_frame(0), "round 0")
        .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mut loaded, mut replaced, mut wrong) = (0usize, 0usize, Vec::new());
    std::thread::scope(|s| {
        let other = shared.store();
        let stop = &stop;
        let saver = s.spawn(move || {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                other
                    .save_dataframe("t", &round_frame(round), &format!("round {round}"))
                    .unwrap();
            }
            round
        });
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            let judged = store.checkpoint("t").unwrap().unwrap();
            let round: i64 = judged
                .description
                .as_deref()
                .and_then(|d| d.strip_prefix("round "))
                .unwrap()
                .parse()
                .unwrap();
            match store.load_judged(&judged).unwrap() {
                JudgedLoad::Loaded(frame) => {
                    loaded += 1;
                    if round_of(&frame) != round {
                        wrong.push((round, round_of(&frame)));
                    }
                }
                JudgedLoad::Replaced => replaced += 1,
                JudgedLoad::TableMissing => panic!("round {round}: missing"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let saves = saver.join().unwrap();
        eprintln!("{saves} saves; {loaded} judged loads, {replaced} replaced meanwhile");
    });
    assert!(
        wrong.is_empty(),
        "{} of {loaded} loads returned data other than the judged (judged, loaded): {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert!(
        loaded > 0 && replaced > 0,
        "{loaded} loaded, {replaced} replaced"
    );
}

// --- TLS -------------------------------------------------------------------------------------

/// The test server for the TLS tests: a schema of the test's own that the TLS role
/// (`usher_tls`, which the server accepts only over TLS) and the password role may use, the CA
/// that signed the server's certificate (for 127.0.0.1 and localhost only), and its port.
struct TlsServer {
    shared: Shared,
    ca: PathBuf,
    port: String,
}

impl TlsServer {
    fn new(name: &str) -> Option<Self> {
        let shared = Shared::new(name)?;
        let ca = common::shared::server_ca()?;
        shared.grant("usher_tls, usher_pw");
        let port = shared
            .admin
            .split_once("127.0.0.1:")?
            .1
            .split_once('/')?
            .0
            .to_owned();
        Some(TlsServer { shared, ca, port })
    }

    /// A URL for `user` (`role` or `role:password`) at `host`, then `tls` (`&sslmode=...`).
    fn url(&self, user: &str, host: &str, tls: &str) -> String {
        format!(
            "postgres://{user}@{host}:{}/usher?options=-c%20search_path%3D{}{tls}",
            self.port, self.shared.schema
        )
    }

    /// A `key=value` string for `role` that connects to 127.0.0.1 but calls the server `host`
    /// (which the certificate is checked for), then `tls` (`sslmode=...`).
    fn key_values(&self, role: &str, host: &str, tls: &str) -> String {
        format!(
            "host={host} hostaddr=127.0.0.1 port={} user={role} dbname=usher \
             options='-c search_path={}' {tls}",
            self.port, self.shared.schema
        )
    }

    fn open(&self, url: &str) -> Result<SharedStore, Error> {
        SharedStore::open(url, self.shared.root())
    }

    /// The TLS mode of the server's sessions whose `application_name` is `application`.
    fn encrypted(&self, application: &str) -> Vec<bool> {
        self.shared
            .sql()
            .query(
                "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
                 WHERE a.application_name = $1",
                &[&application],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

/// A root of another CA than the server's, made with openssl (as `.ci/postgres` makes the
/// server's) in `dir`.
fn other_ca(dir: &Path) -> PathBuf {
    let path = dir.join("other-ca.crt");
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=not-the-servers-ca", "-keyout"])
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl, which .ci/postgres needs too");
    assert!(status.success(), "openssl made no CA");
    path
}

/// What `opened` was refused with, and its message.
fn refused(opened: Result<SharedStore, Error>, what: &str) -> (Error, String) {
    let error = opened.expect_err(what);
    let text = error.to_string();
    eprintln!("{what}: {text}");
    (error, text)
}

/// A role the server accepts only over TLS opens the store with `sslmode=verify-full` and the
/// server's CA, as a URL at 127.0.0.1 (the certificate's IP address) and as `key=value` at
/// localhost (its DNS name): a checkpointed step computed through the first store is loaded,
/// not recomputed, through the second.
#[test]
fn tls_verify_full_with_the_servers_ca_computes_and_loads() {
    let Some(server) = TlsServer::new("tls_full") else {
        return;
    };
    let ca = server.ca.display();
    let by_url = server.url(
        "usher_tls",
        "127.0.0.1",
        &format!("&sslmode=verify-full&sslrootcert={ca}"),
    );
    let by_pairs = server.key_values(
        "usher_tls",
        "localhost",
        &format!("sslmode=verify-full sslrootcert='{ca}'"),
    );
    let runs = std::sync::atomic::AtomicUsize::new(0);
    for url in [by_url, by_pairs] {
        let store = server.open(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let pipeline = Pipeline::new(store.clone(), tracker());
        let frame = shared_once(&pipeline, &runs).unwrap();
        assert_eq!(frame.height(), 3);
        assert_eq!(store.load_dataframe("shared_once").unwrap(), Some(frame));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "computed once, then loaded");
}

/// `verify-full` refuses a server whose certificate is not for the name it was reached by
/// (`host=wrongname hostaddr=127.0.0.1`), saying so; `verify-ca`, which checks the chain only,
/// accepts it.
#[test]
fn tls_verify_full_refuses_a_name_the_certificate_is_not_for() {
    let Some(server) = TlsServer::new("tls_name") else {
        return;
    };
    let ca = server.ca.display();
    let full = server.key_values(
        "usher_tls",
        "wrongname",
        &format!("sslmode=verify-full sslrootcert='{ca}'"),
    );
    let (error, text) = refused(server.open(&full), "a wrong host name");
    assert!(matches!(error, Error::Postgres { .. }), "{error:?}");
    assert!(
        text.contains("certificate verify failed")
            && text.to_lowercase().contains("hostname mismatch"),
        "the message names the certificate problem: {text}"
    );
    assert!(
        text.contains("usher_tls@wrongname"),
        "the store is named: {text}"
    );
    let chain_only = server.key_values(
        "usher_tls",
        "wrongname",
        &format!("sslmode=verify-ca sslrootcert='{ca}'"),
    );
    let store = server
        .open(&chain_only)
        .expect("verify-ca does not check the name");
    let frame = df!("gene" => ["USH2A"]).unwrap();
    store.save_dataframe("by_ca", &frame, "").unwrap();
    assert_eq!(store.load_dataframe("by_ca").unwrap(), Some(frame));
}

/// A root of another CA is refused by every mode that checks the chain (`require` too, as
/// libpq's `require` checks when given a root), and the password of the URL never shows.
#[test]
fn tls_a_root_of_another_ca_is_refused() {
    let Some(server) = TlsServer::new("tls_other") else {
        return;
    };
    let other = other_ca(server.shared.dir.path());
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = server.url(
            &format!("usher_pw:{PASSWORD}"),
            "127.0.0.1",
            &format!("&sslmode={mode}&sslrootcert={}", other.display()),
        );
        let (error, text) = refused(server.open(&url), mode);
        assert!(matches!(error, Error::Postgres { .. }), "{error:?}");
        assert!(text.contains("certificate verify failed"), "{mode}: {text}");
        let all = format!("{text} {error:?}");
        assert!(!all.contains(PASSWORD), "{all}");
        assert!(all.contains("usher_pw@127.0.0.1"), "{all}");
    }
    // The right CA with the same password role: accepted.
    let url = server.url(
        &format!("usher_pw:{PASSWORD}"),
        "127.0.0.1",
        &format!("&sslmode=verify-full&sslrootcert={}", server.ca.display()),
    );
    server.open(&url).expect("the server's own CA");
}

/// `sslmode=disable` connects without TLS, which the server refuses for the TLS role (its
/// `pg_hba.conf`): the error says so, with the server's SQLSTATE.
#[test]
fn tls_disable_is_refused_for_a_role_that_needs_tls() {
    let Some(server) = TlsServer::new("tls_disable") else {
        return;
    };
    let url = server.url("usher_tls", "127.0.0.1", "&sslmode=disable");
    let (error, text) = refused(server.open(&url), "no TLS for usher_tls");
    match &error {
        Error::Postgres { code, message, .. } => {
            assert_eq!(code.as_deref(), Some("28000"), "{text}");
            assert!(
                message.contains("pg_hba.conf") && message.contains("no encryption"),
                "{text}"
            );
        }
        other => panic!("expected Error::Postgres, got {other:?}"),
    }
}

/// Without `sslmode`, connections are encrypted when the server offers TLS (libpq's
/// `prefer`), so the TLS role is accepted; `sslmode=disable` connections are not encrypted.
#[test]
fn tls_prefer_is_the_default_and_encrypts_when_the_server_offers_it() {
    let Some(server) = TlsServer::new("tls_prefer") else {
        return;
    };
    let application = format!("tls_prefer_{}", std::process::id());
    let store = server
        .open(&server.url(
            "usher",
            "127.0.0.1",
            &format!("&application_name={application}"),
        ))
        .unwrap();
    let sessions = server.encrypted(&application);
    assert!(
        !sessions.is_empty() && sessions.iter().all(|&ssl| ssl),
        "{sessions:?}"
    );
    drop(store);
    let plain = format!("tls_disable_{}", std::process::id());
    let _store = server
        .open(&server.url(
            "usher",
            "127.0.0.1",
            &format!("&application_name={plain}&sslmode=disable"),
        ))
        .unwrap();
    let sessions = server.encrypted(&plain);
    assert!(
        !sessions.is_empty() && sessions.iter().all(|&ssl| !ssl),
        "{sessions:?}"
    );
    // The TLS role in a schema of its own (a role may not alter another's catalog tables).
    let Some(server) = TlsServer::new("tls_prefer_role") else {
        return;
    };
    server
        .open(&server.url("usher_tls", "127.0.0.1", ""))
        .expect("the TLS role, by default");
}

/// TLS settings that cannot be used are refused before connecting with
/// `Error::PostgresTls`, naming the setting and the store but never the password.
#[test]
fn tls_settings_that_cannot_be_used_are_typed_errors() {
    let Some(server) = TlsServer::new("tls_bad") else {
        return;
    };
    let user = format!("usher_pw:{PASSWORD}");
    let missing = server.shared.dir.path().join("no-such-ca.crt");
    let cases = [
        ("&sslmode=verify-everything", "sslmode", "not a TLS mode"),
        (
            &*format!("&sslmode=verify-full&sslrootcert={}", missing.display()),
            "sslrootcert",
            "does not exist",
        ),
        (
            "&sslrootcert=system&sslmode=require",
            "sslmode",
            "sslrootcert=system",
        ),
        ("&sslcert=%2Ftmp%2Fme.crt", "sslcert", "client certificates"),
        (
            "&sslpassword=k3y-s3cret",
            "sslpassword",
            "client certificates",
        ),
    ];
    for (tls, wanted, says) in cases {
        let (error, text) = refused(server.open(&server.url(&user, "127.0.0.1", tls)), tls);
        match &error {
            Error::PostgresTls { store, setting, .. } => {
                assert_eq!(*setting, wanted, "{text}");
                assert!(
                    store.starts_with("postgres://usher_pw@127.0.0.1:"),
                    "{store}"
                );
            }
            other => panic!("{tls}: expected Error::PostgresTls, got {other:?}"),
        }
        assert!(text.contains(says), "{text}");
        let all = format!("{text} {error:?}");
        assert!(
            !all.contains(PASSWORD) && !all.contains("k3y-s3cret"),
            "{all}"
        );
    }
}

/// `PGSSLMODE` and `PGSSLROOTCERT` are read when the URL does not set them (each setting of
/// the URL wins over its variable), and libpq's default root `~/.postgresql/root.crt` is
/// used: for `verify-full` without `sslrootcert`, and by `require` (then checked as by
/// `verify-ca`); `require` with no root at all encrypts without checking. Each case is a child
/// process with exactly that environment and home.
#[test]
fn tls_settings_come_from_the_environment_and_the_default_root() {
    let Some(server) = TlsServer::new("tls_env") else {
        return;
    };
    let dir = server.shared.dir.path();
    let other = other_ca(dir);
    let home = |name: &str, root: Option<&Path>| {
        let home = dir.join(name);
        std::fs::create_dir_all(home.join(".postgresql")).unwrap();
        if let Some(root) = root {
            std::fs::copy(root, home.join(".postgresql/root.crt")).unwrap();
        }
        home
    };
    let empty = home("empty", None);
    let trusting = home("trusting", Some(&server.ca));
    let distrusting = home("distrusting", Some(&other));
    let ca = server.ca.to_str().unwrap();
    let plain = server.url("usher_tls", "127.0.0.1", "");
    let require = server.url("usher_tls", "127.0.0.1", "&sslmode=require");
    let full = server.url("usher_tls", "127.0.0.1", "&sslmode=verify-full");
    /// What it shows, the URL, the home directory, the variables, and what a refusal says
    /// (`None`: opened).
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a Path,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
    );
    let cases: [Case; 6] = [
        ("require, no root: no check", &require, &empty, &[], None),
        (
            "PGSSLMODE and PGSSLROOTCERT",
            &plain,
            &empty,
            &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca)],
            None,
        ),
        (
            "verify-full with ~/.postgresql/root.crt",
            &full,
            &trusting,
            &[],
            None,
        ),
        (
            "require checks against ~/.postgresql/root.crt",
            &require,
            &distrusting,
            &[],
            Some("certificate verify failed"),
        ),
        (
            "PGSSLMODE=disable",
            &plain,
            &empty,
            &[("PGSSLMODE", "disable")],
            Some("no encryption"),
        ),
        (
            "the URL's sslmode wins over PGSSLMODE",
            &require,
            &empty,
            &[("PGSSLMODE", "disable")],
            None,
        ),
    ];
    for (case, url, home, vars, refusal) in cases {
        let mut command = common::child_test(&common::test_name!(child_opens_the_store));
        for name in ["PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"] {
            command.env_remove(name);
        }
        command
            .env("HOME", home)
            .env("USHER_TEST_PW_URL", url)
            .env("USHER_TEST_PW_ROOT", server.shared.root())
            .envs(vars.iter().copied());
        let out = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let opened = out.status.success() && text.contains("opened and saved");
        match refusal {
            None => assert!(opened, "{case}: {text}"),
            Some(says) => {
                assert!(!opened, "{case}: opened: {text}");
                assert!(text.contains(says), "{case}: {text}");
            }
        }
    }
}
