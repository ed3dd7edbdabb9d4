//! The shared store called from async code: opened inside tokio runtimes of both flavours
//! (as under `#[tokio::main]`), `async` `#[checkpointed]` steps awaited on executor threads,
//! two calls for one missing table awaited together, a lock wait given up half way, and the
//! same under an executor that is not tokio's. The `postgres` client runs a runtime of its own
//! on the calling thread, which tokio forbids inside another runtime: before the store took
//! its calls off such threads, each of these panicked and then aborted the test process.
//!
//! Needs `USHER_TEST_POSTGRES` (`.ci/postgres start DIR` prints it); without it these tests
//! print why and pass, unless `USHER_REQUIRE_POSTGRES` is set (CI).

use crate::common;

use std::future::Future;
use std::path::Path;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    CheckpointStore, Error, Pipeline, ProvenanceTracker, SharedStore, checkpointed,
};

use common::shared::Shared;

fn tracker() -> ProvenanceTracker {
    let config = usher_pipeline::PipelineConfig::from_yaml_str(
        "data_dir: data\ncache_dir: cache\nduckdb_path: unused.duckdb\nversions:\n  ensembl_release: 113\napi: {}\nscoring: {}\n",
        "shared-async-test.yaml",
    )
    .unwrap();
    ProvenanceTracker::new("shared-async-test", &config)
}

fn genes(n: i64) -> DataFrame {
    df!("gene" => ["USH2A", "MYO7A", "CDH23"], "n" => [n, n + 1, n + 2]).unwrap()
}

fn outcomes<S: CheckpointStore>(p: &Pipeline<S>) -> Vec<String> {
    p.provenance()
        .steps()
        .iter()
        .map(|s| {
            s.details.as_ref().unwrap()["outcome"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// A sleep that needs no runtime: a thread wakes the task when it is over, so the same body
/// runs under tokio and under the hand-made executor below.
fn sleep(length: Duration) -> impl Future<Output = ()> {
    let deadline = Instant::now() + length;
    let waker: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
    std::future::poll_fn(move |cx| {
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        let first = waker.lock().unwrap().replace(cx.waker().clone()).is_none();
        if first {
            let waker = Arc::clone(&waker);
            std::thread::spawn(move || {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                if let Some(w) = waker.lock().unwrap().take() {
                    w.wake();
                }
            });
        }
        Poll::Pending
    })
}

#[checkpointed(table = "async_genes", skip(calls))]
async fn async_genes(
    ctx: &Pipeline<SharedStore>,
    n: i64,
    calls: &AtomicUsize,
) -> Result<DataFrame, Error> {
    let _ = ctx;
    calls.fetch_add(1, Ordering::SeqCst);
    // Long enough for a concurrent call of the same table to reach the table's lock.
    sleep(Duration::from_millis(150)).await;
    Ok(genes(n))
}

/// Both of tokio's runtimes, as `#[tokio::main]` and `#[tokio::main(flavor =
/// "current_thread")]` build them.
fn runtimes() -> Vec<(&'static str, tokio::runtime::Runtime)> {
    vec![
        (
            "multi-thread",
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        ),
        (
            "current-thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
    ]
}

/// Runs `work` on a thread of its own and fails the test if it takes longer than `limit`: a
/// call that blocks the only executor thread while waiting for another task never ends.
fn within<T: Send + 'static>(limit: Duration, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("not finished after {limit:?}: an executor thread is blocked")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the work panicked (see above)"),
    }
}

/// Two futures polled in turn on one task until both are done.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}

/// The smallest executor that is not tokio: polls on the calling thread, parks it until woken.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}

// --- opening and using the store inside a runtime ------------------------------------------

/// `SharedStore::open` and every kind of call (catalog, files, lock, gc), with the last clone
/// dropped, on the thread that drives `block_on` (`#[tokio::main]`'s) and on an executor
/// thread (`spawn`).
#[test]
fn the_store_opens_and_works_inside_tokio_runtimes() {
    let Some(shared) = Shared::new("async_open") else {
        return;
    };
    for (flavour, runtime) in runtimes() {
        let (url, root) = (shared.url.clone(), shared.root());
        let work = move |table: String| {
            let (url, root) = (url.clone(), root.clone());
            async move {
                let store = SharedStore::open(&url, &root).unwrap();
                let frame = genes(table.len() as i64);
                store
                    .save_dataframe(&table, &frame, "made in a runtime")
                    .unwrap();
                let loaded = store.load_dataframe(&table).unwrap().unwrap();
                common::assert_frames_equal(&loaded, &frame);
                let judged = store.checkpoint(&table).unwrap().unwrap();
                assert_eq!(judged.row_count, Some(3));
                let listed = store.list_checkpoints().unwrap();
                assert!(listed.iter().any(|c| c.table_name == table), "{listed:?}");
                let lock = store.lock_table(&table).unwrap();
                assert!(lock.is_shared());
                drop(lock);
                let lock = store.lock_table_async(&table).await.unwrap();
                drop(lock);
                assert_eq!(store.gc().unwrap().files_removed, 0);
                // The last handle goes here, with its idle connections.
                drop(store);
                table
            }
        };
        let main_table = format!("main_{}", flavour.replace('-', "_"));
        let done = runtime.block_on(work(main_table.clone()));
        assert_eq!(done, main_table);
        let task_table = format!("task_{}", flavour.replace('-', "_"));
        let done = runtime
            .block_on(runtime.spawn(work(task_table.clone())))
            .unwrap();
        assert_eq!(done, task_table);
        let store = shared.store();
        for table in [main_table, task_table] {
            let info = store
                .checkpoint(&table)
                .unwrap()
                .expect("saved in the runtime");
            assert_eq!(info.description.as_deref(), Some("made in a runtime"));
        }
    }
}

/// An `async` step on a shared store awaited on an executor thread of each runtime: a miss
/// runs the body, the next call loads the same values, other arguments run it again.
#[test]
fn async_steps_miss_then_hit_on_tokio_runtimes() {
    let Some(shared) = Shared::new("async_steps") else {
        return;
    };
    for (flavour, runtime) in runtimes() {
        let store = shared.store();
        store.delete_checkpoint("async_genes").unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let pipeline = Arc::new(Pipeline::new(store, tracker()));
        let call = |n: i64| {
            let (p, calls) = (Arc::clone(&pipeline), Arc::clone(&calls));
            runtime.spawn(async move { async_genes(&p, n, &calls).await.unwrap() })
        };
        let first = runtime.block_on(call(30)).unwrap();
        let second = runtime.block_on(call(30)).unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "{flavour}: the body ran once"
        );
        common::assert_frames_equal(&first, &genes(30));
        common::assert_frames_equal(&second, &genes(30));
        let third = runtime.block_on(call(20)).unwrap();
        common::assert_frames_equal(&third, &genes(20));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{flavour}");
        assert_eq!(outcomes(&pipeline), ["miss", "hit", "stale"], "{flavour}");
        // The pipeline, and with it the store, dropped on an executor thread.
        let Ok(last) = Arc::try_unwrap(pipeline) else {
            panic!("{flavour}: the tasks are done, the pipeline has one owner")
        };
        runtime
            .block_on(runtime.spawn(async move { drop(last) }))
            .unwrap();
    }
}

/// Two calls for one missing table from two pipelines (two runs sharing the store), awaited
/// together: one computes, the other waits for the table's lock without holding up the
/// executor (on a current-thread runtime it would otherwise never end) and loads the result.
#[test]
fn concurrent_async_calls_compute_once_on_tokio_runtimes() {
    let Some(shared) = Shared::new("async_join") else {
        return;
    };
    drop(shared.store());
    for flavour in ["multi-thread", "current-thread"] {
        let (url, root) = (shared.url.clone(), shared.root());
        let (calls, first, second, outcomes) = within(Duration::from_secs(60), move || {
            let runtime = runtimes()
                .into_iter()
                .find(|(f, _)| *f == flavour)
                .unwrap()
                .1;
            runtime.block_on(async move {
                let store = SharedStore::open(&url, &root).unwrap();
                store.delete_checkpoint("async_genes").unwrap();
                let calls = AtomicUsize::new(0);
                let one = Pipeline::new(store.clone(), tracker());
                let two = Pipeline::new(store, tracker());
                let (a, b) =
                    join(async_genes(&one, 30, &calls), async_genes(&two, 30, &calls)).await;
                let mut o = outcomes(&one);
                o.extend(outcomes(&two));
                o.sort();
                (calls.into_inner(), a.unwrap(), b.unwrap(), o)
            })
        });
        assert_eq!(calls, 1, "{flavour}: the body ran once");
        common::assert_frames_equal(&first, &genes(30));
        common::assert_frames_equal(&second, &genes(30));
        assert_eq!(outcomes, ["hit", "miss"], "{flavour}");
    }
    // The same as tasks of a multi-thread runtime, each on an executor thread of its own.
    let store = shared.store();
    store.delete_checkpoint("async_genes").unwrap();
    let runtime = runtimes().remove(0).1;
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let p = Pipeline::new(store.clone(), tracker());
            let calls = Arc::clone(&calls);
            runtime.spawn(async move { async_genes(&p, 30, &calls).await.unwrap() })
        })
        .collect();
    for task in tasks {
        common::assert_frames_equal(&runtime.block_on(task).unwrap(), &genes(30));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "tasks: the body ran once");
}

/// The same under an executor that is not tokio's: the store is runtime-agnostic.
#[test]
fn concurrent_async_calls_compute_once_without_tokio() {
    let Some(shared) = Shared::new("async_plain") else {
        return;
    };
    let store = shared.store();
    let calls = AtomicUsize::new(0);
    let one = Pipeline::new(store.clone(), tracker());
    let two = Pipeline::new(store.clone(), tracker());
    let (a, b) = block_on(join(
        async_genes(&one, 30, &calls),
        async_genes(&two, 30, &calls),
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the body ran once");
    common::assert_frames_equal(&a.unwrap(), &genes(30));
    common::assert_frames_equal(&b.unwrap(), &genes(30));
    assert_eq!(outcomes(&one), ["miss"]);
    assert_eq!(outcomes(&two), ["hit"]);
    let again = block_on(async_genes(&one, 30, &calls)).unwrap();
    common::assert_frames_equal(&again, &genes(30));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// --- a lock wait given up ------------------------------------------------------------------

/// How many connections wait for the compute lock of `table` in the test's schema (asked on a
/// thread of its own: the test's client may be called from a runtime's thread). The key
/// is the store's (runtime/src/store/shared/catalog.rs, `lock_key`): 64 bits of a SHA-256 of
/// the schema and the table, which PostgreSQL shows as two 32-bit halves.
/// How many sessions hold `table`'s compute lock.
fn lock_holders(shared: &Shared, table: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("usher-pipeline\0{}\0{table}", shared.schema));
    let key = u64::from_be_bytes(digest[..8].try_into().unwrap());
    let ask = || {
        shared
            .sql()
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::bigint = $1 AND objid::bigint = $2",
                &[&((key >> 32) as i64), &((key & 0xffff_ffff) as i64)],
            )
            .unwrap()
            .get(0)
    };
    std::thread::scope(|s| s.spawn(ask).join().unwrap())
}

/// A `lock_table_async` future dropped while it waits for another worker's lock (a
/// `select!` that timed out, say) gives up the wait, and a lock it got meanwhile is released:
/// the next worker gets the table.
#[test]
fn a_dropped_lock_wait_leaves_no_lock_behind() {
    let Some(shared) = Shared::new("async_drop") else {
        return;
    };
    let holder = shared.store();
    let waiter = shared.store();
    for (flavour, runtime) in runtimes() {
        let held = holder.lock_table("t").unwrap();
        assert_eq!(lock_holders(&shared, "t"), 1, "{flavour}");
        runtime.block_on(async {
            let mut wait = waiter.lock_table_async("t");
            // Polled for a while (its thread is waiting by then): pending, the lock being
            // another worker's.
            for _ in 0..10 {
                let polled = std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await;
                assert!(
                    polled.is_pending(),
                    "{flavour}: the lock is held by another"
                );
                sleep(Duration::from_millis(20)).await;
            }
            drop(wait);
        });
        drop(held);
        // The dropped wait neither keeps the lock nor takes it for no one: after its thread
        // had time to notice the release (a notice, or its poll every second), no session
        // holds it.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            lock_holders(&shared, "t"),
            0,
            "{flavour}: the dropped wait left the lock held"
        );
        // Nobody kept it: a third worker takes it at once.
        let third = shared.store();
        let got = within(Duration::from_secs(10), move || {
            third.lock_table("t").map(|l| l.is_shared())
        });
        assert!(got.unwrap(), "{flavour}");
    }
}

/// `wait_for_release_async` (what an async step awaits when another worker holds its table)
/// stays pending while the lock is held, without blocking the executor, and completes after
/// the release, on both tokio flavours; it takes nothing, so the lock is free afterwards.
#[test]
fn an_async_wait_for_release_completes_with_the_release() {
    let Some(shared) = Shared::new("async_release") else {
        return;
    };
    let holder = shared.store();
    let waiter = shared.store();
    for (flavour, runtime) in runtimes() {
        let held = holder.lock_table("t").unwrap();
        assert!(waiter.try_lock_table("t").unwrap().is_none(), "{flavour}");
        runtime.block_on(async {
            let mut wait = waiter.wait_for_release_async("t");
            for _ in 0..5 {
                let polled = std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await;
                assert!(
                    polled.is_pending(),
                    "{flavour}: done while the lock is held"
                );
                sleep(Duration::from_millis(20)).await;
            }
            drop(held);
            tokio::time::timeout(Duration::from_secs(10), wait)
                .await
                .unwrap_or_else(|_| panic!("{flavour}: not done after the release"))
                .unwrap();
        });
        assert_eq!(
            lock_holders(&shared, "t"),
            0,
            "{flavour}: the wait took the lock"
        );
        assert!(waiter.try_lock_table("t").unwrap().is_some(), "{flavour}");
    }
}

/// A dropped wait whose lock arrives anyway (the holder lets go right as the wait is dropped)
/// hands it straight back, many times over.
#[test]
fn a_lock_granted_to_a_dropped_wait_is_released() {
    let Some(shared) = Shared::new("async_race") else {
        return;
    };
    let holder = shared.store();
    let waiter = shared.store();
    let runtime = runtimes().remove(1).1;
    for round in 0..20u64 {
        let held = holder.lock_table("t").unwrap();
        runtime.block_on(async {
            let mut wait = waiter.lock_table_async("t");
            let polled = std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
            // Released at varying moments around the drop of the wait.
            sleep(Duration::from_millis(round % 5)).await;
            drop(held);
            sleep(Duration::from_millis(round % 3)).await;
            drop(wait);
        });
        let other = shared.store();
        let got = within(Duration::from_secs(10), move || {
            other.lock_table("t").is_ok()
        });
        assert!(got, "round {round}");
    }
}

// --- Pipeline::from_config inside a runtime ------------------------------------------------

/// A step taking `&Pipeline`, as written for the single-file store.
#[checkpointed(table = "env_async")]
async fn env_async(ctx: &Pipeline, n: i64) -> Result<DataFrame, Error> {
    let _ = ctx;
    println!("computing");
    Ok(genes(n))
}

/// The child half of `from_config_opens_the_shared_store_inside_a_runtime`: the run of a
/// `#[tokio::main]` program, `USHER_STORE` naming the shared store.
#[test]
#[ignore = "a child process of from_config_opens_the_shared_store_inside_a_runtime"]
fn child_from_config_in_a_runtime() {
    let Some(dir) = std::env::var_os("USHER_TEST_DIR") else {
        return;
    };
    let flavour = std::env::var("USHER_TEST_FLAVOUR").unwrap();
    let runtime = runtimes()
        .into_iter()
        .find(|(f, _)| *f == flavour)
        .unwrap()
        .1;
    let config =
        usher_pipeline::PipelineConfig::load(Path::new(&dir).join("pipeline.yaml")).unwrap();
    // The first line shares libtest's `test ... ` line.
    println!("ready");
    let rows = runtime.block_on(async move {
        let pipeline = Pipeline::from_config(&config).unwrap();
        assert!(pipeline.store().as_shared().is_some());
        let frame = env_async(&pipeline, 7).await.unwrap();
        common::assert_frames_equal(&frame, &genes(7));
        frame.height()
    });
    println!("rows {rows}");
}

#[test]
fn from_config_opens_the_shared_store_inside_a_runtime() {
    let Some(shared) = Shared::new("async_env") else {
        return;
    };
    let d = shared.dir.path();
    std::fs::write(
        d.join("pipeline.yaml"),
        crate::common::config_yaml(d, &d.join("local.duckdb")),
    )
    .unwrap();
    let mut computed = 0;
    for flavour in ["multi-thread", "current-thread", "multi-thread"] {
        let out = common::child_test(&common::test_name!(child_from_config_in_a_runtime))
            .env("USHER_TEST_DIR", d)
            .env("USHER_TEST_FLAVOUR", flavour)
            .env("USHER_STORE", &shared.url)
            .env("USHER_DATA_ROOT", shared.root())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{flavour}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.lines().any(|l| l == "rows 3"), "{stdout}");
        computed += stdout.lines().filter(|l| *l == "computing").count();
    }
    assert_eq!(computed, 1, "the first run computed, the others loaded");
    assert!(
        !d.join("local.duckdb").exists(),
        "the file store was not opened"
    );
    let stored = shared.store().load_dataframe("env_async").unwrap().unwrap();
    common::assert_frames_equal(&stored, &genes(7));
}

/// `Pin<Box<dyn Future>>` of `lock_table_async` is `Send`: a task of a multi-thread runtime
/// may hold it across an await.
#[allow(dead_code)]
fn lock_futures_are_send(store: &SharedStore) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    Box::pin(async move {
        let _ = store.lock_table_async("t").await;
    })
}
