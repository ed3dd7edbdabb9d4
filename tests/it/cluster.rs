//! Many worker processes, one pipeline, a server with few connections (issue 23): the twelve
//! step chain of common/cluster.rs run at once by more workers than the server has
//! connections for; a server restart while workers compute and wait; a worker whose session
//! an administrator terminates while it computes.
//!
//! Each test starts a PostgreSQL server of its own with `.ci/postgres` (few connections, and
//! one it may restart), stopped at its end, also when it fails; they run one at a time. Without
//! a server they print why and pass, unless `USHER_REQUIRE_POSTGRES` is set (CI).
//! `USHER_CLUSTER_WORKERS=200 USHER_CLUSTER_MAX_CONNECTIONS=40 cargo test --all-features --test
//! it -- cluster::many --nocapture` runs the scale test at full size (CI: 40 workers, 20
//! connections) and prints its figures; `USHER_CLUSTER_RESTART_WORKERS` (12) sizes the restart
//! test. examples/bench_cluster.rs runs the same chain as a benchmark.
//!
//! What every test checks after its workers, through SQL and the files rather than the
//! store's own answers: a trigger on `_checkpoint_files` records each registration and the
//! `application_name` of the session that made it (the store names sessions `usher-pipeline
//! HOST pid PID`), so a registration overwritten later, or made by a worker that had lost its
//! lock, is seen; the data root holds exactly the registered files.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{CheckpointStore, CheckpointVersion, Error, Pipeline, SharedStore};

use common::cluster::{
    self, CONNECTIONS_ENV, DEFAULT_CONNECTIONS, Fleet, GO_ENV, Outcome, STEPS, Sampler, Server,
    Summary, WORKER_ENV,
};
use common::runs::{count_run, runs_of};
use common::shared::{Shared, walk, with_schema};

/// The `.ci/postgres` role that logs in with a password, and its password: no error may
/// show it.
const PASSWORD_ROLE: &str = "usher_pw";
const PASSWORD: &str = "s3cret-pw";

/// The tests of this module, one at a time: each runs dozens of processes on two cores.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A server of the test's own allowing `max_connections`, or `None` (printed) where
/// `.ci/postgres` cannot start one; CI requires it.
fn own_server(max_connections: usize) -> Option<Server> {
    match Server::start(max_connections) {
        Ok(server) => Some(server),
        Err(why) => {
            assert!(
                std::env::var_os("USHER_REQUIRE_POSTGRES").is_none(),
                "USHER_REQUIRE_POSTGRES is set, but no server of the test's own: {why}"
            );
            eprintln!("SKIPPED: .ci/postgres cannot start a server here: {why}");
            None
        }
    }
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The store's name for a URL of `role` on `server`, as errors must show it.
fn store_name(server: &Server, role: &str) -> String {
    format!("postgres://{role}@127.0.0.1:{}/usher", server.port())
}

/// A trigger that records every registration of a data file (the row of `_checkpoint_files`
/// written in the registering transaction) with the `application_name` of its session.
fn audit_registrations(shared: &Shared) {
    let s = &shared.schema;
    shared
        .sql()
        .batch_execute(&format!(
            "CREATE TABLE {s}.cluster_audit (table_name text, path text, app text);
             CREATE FUNCTION {s}.cluster_audit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO {s}.cluster_audit
                 VALUES (NEW.table_name, NEW.path, current_setting('application_name'));
                 RETURN NEW;
             END $$;
             CREATE TRIGGER cluster_audit AFTER INSERT OR UPDATE ON {s}._checkpoint_files
             FOR EACH ROW EXECUTE FUNCTION {s}.cluster_audit();"
        ))
        .unwrap();
}

/// Every registration so far: table, file, application name.
fn registrations(shared: &Shared) -> Vec<(String, String, String)> {
    shared
        .sql()
        .query(
            &format!(
                "SELECT table_name, path, app FROM {}.cluster_audit",
                shared.schema
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// How many times each table was registered.
fn registered_counts(shared: &Shared) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (table, _, _) in registrations(shared) {
        *counts.entry(table).or_insert(0) += 1;
    }
    counts
}

/// The data files under the data root, relative to it (the store's markers left out).
fn files_on_disk(shared: &Shared) -> BTreeSet<String> {
    let root = shared.root();
    ["tables", "batches"]
        .iter()
        .flat_map(|kind| walk(&root.join(kind)))
        .map(|path| {
            path.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// The files the catalog registers, by table.
fn registered_files(shared: &Shared) -> BTreeMap<String, String> {
    shared
        .sql()
        .query("SELECT table_name, path FROM _checkpoint_files", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The catalog holds the chain and nothing else: twelve checkpoints saved with their key,
/// each step's lineage naming its upstream at the version it has, one registered file each,
/// every one readable and holding the expected values, and no other data file on disk.
fn assert_the_catalog_holds_the_chain(shared: &Shared) {
    let store = shared.store();
    let list = store.list_checkpoints().unwrap();
    let tables: BTreeSet<String> = list.iter().map(|c| c.table_name.clone()).collect();
    let chain: BTreeSet<String> = (0..STEPS).map(cluster::table).collect();
    assert_eq!(tables, chain, "the catalog's checkpoints");
    let by_table: BTreeMap<&str, _> = list.iter().map(|c| (c.table_name.as_str(), c)).collect();
    for k in 0..STEPS {
        let info = by_table[cluster::table(k).as_str()];
        assert!(
            info.key.is_some(),
            "{} was saved without its key",
            info.table_name
        );
        let inputs: Vec<&String> = info.lineage.inputs.keys().collect();
        if k == 0 {
            assert!(inputs.is_empty(), "c00 reads nothing: {inputs:?}");
        } else {
            let upstream = cluster::table(k - 1);
            assert_eq!(inputs, [&upstream], "{}'s lineage", info.table_name);
            assert_eq!(
                info.lineage.inputs[&upstream],
                by_table[upstream.as_str()].version(),
                "{} records the version of {upstream} it was made from",
                info.table_name
            );
            assert!(matches!(
                info.lineage.inputs[&upstream],
                CheckpointVersion::Data(_)
            ));
        }
        let frame = store
            .load_dataframe(&cluster::table(k))
            .unwrap()
            .unwrap_or_else(|| panic!("{} does not load", cluster::table(k)));
        common::assert_frames_equal(&frame, &cluster::expected(k));
    }
    let registered = registered_files(shared);
    assert_eq!(
        registered.keys().cloned().collect::<BTreeSet<_>>(),
        chain,
        "one registered file per step"
    );
    assert_eq!(
        files_on_disk(shared),
        registered.into_values().collect::<BTreeSet<_>>(),
        "the data root holds the registered files and no other"
    );
}

/// Every table registered exactly once, over all runs: never re-registered by a second
/// worker, never by one that lost its lock.
fn assert_each_step_registered_once(shared: &Shared) {
    let counts = registered_counts(shared);
    let once: BTreeMap<String, usize> = (0..STEPS).map(|k| (cluster::table(k), 1)).collect();
    assert_eq!(
        counts,
        once,
        "registrations per table (the audit trigger saw none: did the catalog's tables \
         change?): {:?}",
        registrations(shared)
    );
}

fn failures(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| !o.done())
        .map(Outcome::why)
        .collect()
}

/// The command of worker `n` of the chain.
fn chain_worker(
    shared: &Shared,
    n: usize,
    go: &Path,
    extra: &[(&str, String)],
) -> std::process::Command {
    let mut vars = vec![
        (WORKER_ENV, n.to_string()),
        (GO_ENV, go.to_string_lossy().into_owned()),
    ];
    vars.extend(extra.iter().cloned());
    shared.command(&common::test_name!(worker_runs_the_chain), &vars)
}

/// Worker of the chain (common/cluster.rs), started by the tests below.
#[test]
#[ignore = "a worker of the cluster tests"]
fn worker_runs_the_chain() {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    if let Err(e) = cluster::worker_main() {
        panic!("{e}");
    }
}

// --- more workers than connections ---------------------------------------------------------

/// `USHER_CLUSTER_WORKERS` workers (40) started together run the chain against a server of
/// `USHER_CLUSTER_MAX_CONNECTIONS` (20, 17 of them for the workers): not even one connection
/// each at once, let alone the store's bound of `USHER_STORE_CONNECTIONS` (2 when unset; every
/// fourth worker runs with 1, so the variable is seen to work). Every worker ends well with
/// the expected values, every body ran once and was registered once, and no process ever had
/// more connections than its bound. Prints the wall time, the handover latency (a waiting
/// worker's call returning after the computing worker's), the peaks.
#[test]
fn many_workers_share_a_few_connections() {
    let _one = one_at_a_time();
    let workers = setting("USHER_CLUSTER_WORKERS", 40);
    let max_connections = setting("USHER_CLUSTER_MAX_CONNECTIONS", 20);
    let bound = setting(CONNECTIONS_ENV, DEFAULT_CONNECTIONS);
    let bound_of = |n: usize| if n % 4 == 3 { 1 } else { bound };
    let Some(server) = own_server(max_connections) else {
        return;
    };
    let shared = Shared::on(server.url(), "scale");
    // The catalog exists before the workers race (its creation is raced elsewhere); the test's
    // own connections are closed before they start.
    drop(shared.store());
    audit_registrations(&shared);
    let sampler = Sampler::start(&server.superuser(), "usher");
    let go = shared.dir.path().join("go");
    let mut fleet = Fleet::new(&shared.dir.path().join("logs"));
    for n in 0..workers {
        let bound = [(CONNECTIONS_ENV, bound_of(n).to_string())];
        fleet.spawn(chain_worker(&shared, n, &go, &bound));
    }
    let timeout = Duration::from_secs(120 + 3 * workers as u64);
    let (outcomes, wall) = fleet.run(&go, timeout);
    let peaks = sampler.stop();
    eprintln!(
        "{workers} workers, max_connections {max_connections}, {CONNECTIONS_ENV} {bound} (1 for every fourth)\n{}\n{peaks}",
        Summary::of(&outcomes, wall)
    );

    let failed = failures(&outcomes);
    assert!(
        failed.is_empty(),
        "{} of {workers} workers failed; the first: {:#?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let runs = runs_of(&shared.runs());
    let once: BTreeMap<String, usize> = (0..STEPS).map(|k| (cluster::table(k), 1)).collect();
    assert_eq!(runs, once, "body runs per step");
    assert_each_step_registered_once(&shared);
    assert_the_catalog_holds_the_chain(&shared);
    assert!(peaks.samples > 0, "no connections counted");
    let over: Vec<String> = outcomes
        .iter()
        .filter(|o| peaks.of_pid(o.pid) > bound_of(o.worker))
        .map(|o| {
            format!(
                "worker {} (pid {}): {} connections, {CONNECTIONS_ENV}={}",
                o.worker,
                o.pid,
                peaks.of_pid(o.pid),
                bound_of(o.worker)
            )
        })
        .collect();
    assert!(
        over.is_empty(),
        "processes had more connections at once than {CONNECTIONS_ENV} allows: {over:#?}"
    );
}

// --- a server restart --------------------------------------------------------------------

/// The step that is slow in the restart test, and how slow: the restart comes while its body
/// runs and every other worker waits.
const SLOW_STEP: usize = 6;
const SLOW_MS: u64 = 6000;

/// The store's URL for the password role on `server`, in `shared`'s schema.
fn password_url(server: &Server, shared: &Shared) -> String {
    shared.grant(PASSWORD_ROLE);
    with_schema(
        &format!(
            "postgres://{PASSWORD_ROLE}:{PASSWORD}@127.0.0.1:{}/usher",
            server.port()
        ),
        &shared.schema,
    )
}

/// Workers run the chain; while one computes the slow step and the others wait for it, the
/// server restarts (every session cut, locks with them). A worker only waiting then carries
/// on and ends well; one holding a lock fails, never registering what it computed under the
/// lost lock. A worker that fails says so in an error naming the store (never its password).
/// A second run of all the workers completes the chain. In the end every table was registered
/// once, every body ran once but for those whose worker failed in it, and the data root holds
/// exactly the registered files, each with the expected values.
#[test]
fn workers_outlive_a_server_restart() {
    let _one = one_at_a_time();
    let workers = setting("USHER_CLUSTER_RESTART_WORKERS", 12);
    // Room for the bound of 2 per worker: this test is about the restart, not the limit.
    let Some(server) = own_server(2 * workers + 10) else {
        return;
    };
    let mut shared = Shared::on(server.url(), "restart");
    shared.url = password_url(&server, &shared);
    drop(shared.store());
    audit_registrations(&shared);
    let name = store_name(&server, PASSWORD_ROLE);

    let go = shared.dir.path().join("go");
    let mut fleet = Fleet::new(&shared.dir.path().join("logs"));
    let slow = [(cluster::SLOW_ENV, format!("{SLOW_STEP}:{SLOW_MS}"))];
    for n in 0..workers {
        fleet.spawn(chain_worker(&shared, n, &go, &slow));
    }
    let ready = fleet.wait_until(Duration::from_secs(120), |f| {
        (0..f.len()).all(|n| f.said(n, "ready"))
    });
    assert!(ready, "the workers did not start: {}", fleet.describe());
    std::fs::write(&go, b"").unwrap();
    let started = Instant::now();
    let slow_body = format!("body {SLOW_STEP} ");
    let computing = fleet.wait_until(Duration::from_secs(120), |f| {
        (0..f.len()).all(|n| f.said(n, "opened")) && (0..f.len()).any(|n| f.said(n, &slow_body))
    });
    assert!(
        computing,
        "no worker computes the slow step: {}",
        fleet.describe()
    );
    // The others call it meanwhile and wait.
    fleet.watch(Duration::from_millis(1500));
    // At the restart: a worker with a body open holds that step's lock; one whose last word,
    // a second ago or more, was that it calls a step waits for it. Any other is in between
    // (taking a lock, checking the catalog) and may go either way.
    let holding: Vec<Vec<usize>> = fleet
        .lines
        .iter()
        .map(|l| cluster::open_bodies(l))
        .collect();
    let waiting: Vec<bool> = (0..workers)
        .map(|n| {
            holding[n].is_empty()
                && fleet.quiet_for(n) >= Duration::from_secs(1)
                && fleet.lines[n]
                    .last()
                    .is_some_and(|l| l.starts_with("calling "))
        })
        .collect();
    let body_started: u64 = fleet
        .lines
        .iter()
        .flatten()
        .find_map(|l| l.strip_prefix(&slow_body)?.parse().ok())
        .unwrap();
    let took = server.restart().unwrap();
    let restarted = cluster::now_us();
    assert!(
        restarted < body_started + SLOW_MS * 1000,
        "the restart ended after the slow body: not while it ran"
    );
    let first = fleet.finish(Duration::from_secs(300));
    eprintln!(
        "restart took {:.2} s; first run:\n{}",
        took.as_secs_f64(),
        Summary::of(&first, started.elapsed())
    );

    assert!(
        waiting.contains(&true) && holding.iter().any(|h| h.contains(&SLOW_STEP)),
        "the restart came while a worker computed the slow step and others waited: locks \
         held {holding:?}, waiting {waiting:?}"
    );
    for outcome in &first {
        let n = outcome.worker;
        if outcome.done() {
            assert!(
                holding[n].is_empty(),
                "worker {n} held the locks of {:?} at the restart, which lost them, and still \
                 ended well: it registered without its lock (or, no error for a lost lock, \
                 loaded another's result)",
                holding[n]
            );
            continue;
        }
        assert!(
            !waiting[n],
            "worker {n} held no lock at the restart, only waited, and failed: {}",
            outcome.why()
        );
        let error = outcome
            .error()
            .unwrap_or_else(|| panic!("worker {n} failed without an error: {}", outcome.why()));
        assert!(
            error.contains(&name),
            "the error names the store {name}: {error}"
        );
        let all = format!("{}{}", outcome.lines.join("\n"), outcome.stderr);
        assert!(!all.contains(PASSWORD), "a password was shown: {all}");
    }

    // What the failures abandoned: the bodies they had started and not returned from.
    let mut abandoned: BTreeMap<String, usize> = BTreeMap::new();
    for outcome in first.iter().filter(|o| !o.done()) {
        for k in cluster::open_bodies(&outcome.lines) {
            *abandoned.entry(cluster::table(k)).or_insert(0) += 1;
        }
    }

    let go = shared.dir.path().join("go-again");
    let mut fleet = Fleet::new(&shared.dir.path().join("logs-again"));
    for n in 0..workers {
        fleet.spawn(chain_worker(&shared, n, &go, &[]));
    }
    let (second, wall) = fleet.run(&go, Duration::from_secs(300));
    eprintln!("second run:\n{}", Summary::of(&second, wall));
    let failed = failures(&second);
    assert!(failed.is_empty(), "the second run failed: {failed:#?}");

    assert_each_step_registered_once(&shared);
    for (table, runs) in runs_of(&shared.runs()) {
        let allowed = 1 + abandoned.get(&table).copied().unwrap_or(0);
        assert!(
            runs <= allowed,
            "{table}'s body ran {runs} times: once for its registration, {} for failed workers",
            allowed - 1
        );
    }
    // A failed registration may leave its file for gc, which takes nothing registered.
    let report = shared.store().gc().unwrap();
    let orphans: usize = abandoned.values().sum();
    assert!(
        report.files_removed <= orphans,
        "gc removed {} files, more than the {orphans} bodies abandoned could leave",
        report.files_removed
    );
    assert_the_catalog_holds_the_chain(&shared);
}

// --- a worker whose session is terminated --------------------------------------------------

/// Which worker runs a step of the terminate test (`USHER_CLUSTER_WORKER`).
fn me() -> i64 {
    std::env::var(WORKER_ENV).unwrap().parse().unwrap()
}

fn runs_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(cluster::RUNS_ENV).unwrap())
}

/// Waits for the file `env` names to exist (the parent's go-ahead).
fn wait_for_file(env: &str) {
    let file = PathBuf::from(std::env::var_os(env).unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    while !file.exists() {
        assert!(Instant::now() < deadline, "no {}", file.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The inner step: says who made it. Its body waits for the parent's go-ahead, which comes
/// after the parent terminated the first worker's sessions.
#[usher_pipeline::checkpointed(table = "term_a")]
fn term_a(ctx: &Pipeline<SharedStore>) -> Result<DataFrame, Error> {
    let _ = ctx;
    count_run(&runs_dir(), "term_a");
    cluster::say("body term_a");
    wait_for_file(GO_ENV);
    Ok(df!("made_by" => [me()])?)
}

/// The outer step: computes the inner one in its body, so its worker holds both locks.
#[usher_pipeline::checkpointed(table = "term_b")]
fn term_b(ctx: &Pipeline<SharedStore>) -> Result<DataFrame, Error> {
    count_run(&runs_dir(), "term_b");
    cluster::say("body term_b");
    let from = made_by(&term_a(ctx)?)[0];
    Ok(df!("made_by" => [me()], "from" => [from])?)
}

/// The `made_by` values of a frame of the terminate test.
fn made_by(frame: &DataFrame) -> Vec<i64> {
    frame
        .columns()
        .iter()
        .map(|c| c.i64().unwrap().get(0).unwrap())
        .collect()
}

/// The role's step (`USHER_CLUSTER_ROLE`: `a` or `b`).
const ROLE_ENV: &str = "USHER_CLUSTER_ROLE";
/// A file whose creation lets a failed worker call its step again.
const RETRY_ENV: &str = "USHER_CLUSTER_RETRY";

/// Worker of the terminate test: calls its step; if that fails, says why, waits for the
/// parent's go-ahead and calls it again.
#[test]
#[ignore = "a worker of a_terminated_session_never_registers"]
fn worker_of_the_terminate_test() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let url = std::env::var(cluster::STORE_ENV).unwrap();
    let root = std::env::var(cluster::ROOT_ENV).unwrap();
    std::fs::create_dir_all(runs_dir()).unwrap();
    cluster::say("");
    let store = SharedStore::open(&url, root).unwrap();
    let pipeline = Pipeline::new(store, cluster::tracker());
    cluster::say("opened");
    let step = match role.as_str() {
        "a" => term_a,
        _ => term_b,
    };
    let frame = match step(&pipeline) {
        Ok(frame) => frame,
        Err(e) => {
            cluster::say(format!("error {}", e.to_string().replace('\n', " ")));
            wait_for_file(RETRY_ENV);
            step(&pipeline).unwrap()
        }
    };
    cluster::say(format!("got {:?}", made_by(&frame)));
}

/// Worker 0 computes `term_b`, whose body computes `term_a`, whose body waits; workers 1
/// (`term_b`) and 2 (`term_a`) wait for it. An administrator terminates worker 0's sessions
/// (`pg_terminate_backend`, found by the `application_name` the store gives them), then lets
/// its body return: worker 0 must not register anything (its call fails, naming the store and
/// the table), and the waiting workers take over and register their own results once. Worker
/// 0, called again once they are done, loads theirs.
#[test]
fn a_terminated_session_never_registers() {
    let _one = one_at_a_time();
    let Some(server) = own_server(40) else {
        return;
    };
    let shared = Shared::on(server.url(), "terminate");
    drop(shared.store());
    audit_registrations(&shared);
    let go = shared.dir.path().join("go");
    let retry = shared.dir.path().join("retry");
    let mut fleet = Fleet::new(&shared.dir.path().join("logs"));
    let worker = |n: usize, role: &str| {
        shared.command(
            &common::test_name!(worker_of_the_terminate_test),
            &[
                (WORKER_ENV, n.to_string()),
                (ROLE_ENV, role.to_owned()),
                (GO_ENV, go.to_string_lossy().into_owned()),
                (RETRY_ENV, retry.to_string_lossy().into_owned()),
            ],
        )
    };
    let victim = fleet.spawn(worker(0, "b"));
    assert!(
        fleet.wait_until(Duration::from_secs(60), |f| f.said(victim, "body term_a")),
        "worker 0 did not compute: {}",
        fleet.describe()
    );
    let outer = fleet.spawn(worker(1, "b"));
    let inner = fleet.spawn(worker(2, "a"));
    assert!(
        fleet.wait_until(Duration::from_secs(60), |f| {
            f.said(outer, "opened") && f.said(inner, "opened")
        }),
        "{}",
        fleet.describe()
    );
    // They call their steps and wait on worker 0's locks.
    fleet.watch(Duration::from_millis(1500));
    assert_eq!(
        runs_of(&shared.runs()),
        BTreeMap::from([("term_a".to_owned(), 1), ("term_b".to_owned(), 1)]),
        "only worker 0 computes while it holds the locks"
    );

    let victim_pid = fleet.pid(victim);
    let mut admin = postgres::Client::connect(&server.superuser(), postgres::NoTls).unwrap();
    let sessions = format!("usher-pipeline % pid {victim_pid}");
    let terminated: Vec<i32> = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1 \
             AND pg_terminate_backend(pid)",
            &[&sessions],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        !terminated.is_empty(),
        "worker 0 holds its locks in sessions named {sessions:?}: none found"
    );
    let gone = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&terminated],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 0
    });
    assert!(gone, "the terminated sessions are still there");
    std::fs::write(&go, b"").unwrap();

    assert!(
        fleet.wait_until(Duration::from_secs(120), |f| {
            (f.said(victim, "error") || f.said(victim, "got"))
                && f.said(outer, "got")
                && f.said(inner, "got")
        }),
        "{}",
        fleet.describe()
    );
    assert!(
        fleet.said(victim, "error"),
        "worker 0's call succeeded though its session was terminated while it computed: {}",
        fleet.describe()
    );
    std::fs::write(&retry, b"").unwrap();
    let outcomes = fleet.finish(Duration::from_secs(120));
    for o in &outcomes {
        assert!(
            o.status.is_some_and(|s| s.success()),
            "worker {} failed: {}",
            o.worker,
            o.why()
        );
    }
    let error = outcomes[victim].error().unwrap();
    eprintln!("the terminated worker's error: {error}");
    let name = store_name(&server, "usher");
    assert!(
        error.contains(&name) && error.contains("term_a"),
        "the error names the store {name} and the table: {error}"
    );
    for o in &outcomes[outer..] {
        assert!(o.error().is_none(), "worker {}: {}", o.worker, o.why());
    }

    let sessions_of_victim = format!("pid {victim_pid}");
    let audit = registrations(&shared);
    assert!(
        audit
            .iter()
            .all(|(_, _, app)| !app.ends_with(&sessions_of_victim)),
        "worker 0 registered after its session was terminated: {audit:?}"
    );
    let counts = registered_counts(&shared);
    assert_eq!(
        counts,
        BTreeMap::from([("term_a".to_owned(), 1), ("term_b".to_owned(), 1)]),
        "each table registered once: {audit:?}"
    );
    let store = shared.store();
    let a = made_by(&store.load_dataframe("term_a").unwrap().unwrap());
    let b = made_by(&store.load_dataframe("term_b").unwrap().unwrap());
    assert!(
        a == [1] || a == [2],
        "term_a made by {a:?}, not by a waiting worker"
    );
    assert_eq!(
        b,
        [1, a[0]],
        "term_b made by worker 1 from the registered term_a"
    );
    let got = |n: usize| {
        outcomes[n]
            .lines
            .iter()
            .find_map(|l| l.strip_prefix("got "))
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        got(victim),
        format!("{b:?}"),
        "worker 0's second call loads theirs"
    );
    assert_eq!(got(outer), format!("{b:?}"));
    assert_eq!(got(inner), format!("{a:?}"));
    assert_eq!(
        runs_of(&shared.runs()),
        BTreeMap::from([("term_a".to_owned(), 2), ("term_b".to_owned(), 2)]),
        "once by worker 0, once by a taker-over; worker 0's second call computed nothing"
    );
    store.gc().unwrap();
    assert_eq!(
        files_on_disk(&shared),
        registered_files(&shared)
            .into_values()
            .collect::<BTreeSet<_>>(),
        "after gc, the registered files only"
    );
}
