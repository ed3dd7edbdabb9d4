//! The decisions of a checkpointed call (hit, miss, stale with its reason, force once per
//! pipeline, unkeyed policies, batches resume and discard), on the in-memory store: no DuckDB
//! in the build, milliseconds per test. The DuckDB store shows the same behaviour through the
//! conformance suite and the integration tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use polars::prelude::*;
use serde_json::Value;

use crate::store::CheckpointStore;
use crate::{Error, Force, MemoryStore, Pipeline, ProvenanceTracker, UnkeyedPolicy};
use usher_pipeline_macros::checkpointed;

type Mem = Pipeline<Arc<MemoryStore>>;

/// A pipeline run over `store`.
fn run(store: &Arc<MemoryStore>) -> Mem {
    Pipeline::new(
        Arc::clone(store),
        ProvenanceTracker::new("0.1.0-test", &config()),
    )
}

fn config() -> crate::PipelineConfig {
    let yaml = include_str!("../../../examples/default.yaml");
    crate::PipelineConfig::from_yaml_str(yaml, "examples/default.yaml").unwrap()
}

/// (outcome, reason) of every step the pipeline recorded, in order.
fn outcomes(pipeline: &Mem) -> Vec<(String, Option<String>)> {
    pipeline
        .provenance()
        .steps()
        .into_iter()
        .map(|step| {
            let details = step.details.unwrap_or_default();
            let text = |k: &str| details.get(k).and_then(Value::as_str).map(str::to_owned);
            (text("outcome").unwrap_or_default(), text("reason"))
        })
        .collect()
}

fn outcome(o: &str) -> (String, Option<String>) {
    (o.to_owned(), None)
}

static GENES_RUNS: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "genes")]
fn fetch_genes(ctx: &Pipeline<Arc<MemoryStore>>, min_depth: u32) -> Result<DataFrame, Error> {
    GENES_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(df!("gene" => ["USH2A", "MYO7A"], "depth" => [min_depth, min_depth])?)
}

/// Bodies counted per test: each test has its own table and counter.
fn runs(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

#[test]
fn a_miss_runs_the_body_and_a_hit_skips_it() {
    let store = Arc::new(MemoryStore::new());
    let pipeline = run(&store);
    let before = runs(&GENES_RUNS);
    let first = fetch_genes(&pipeline, 30).unwrap();
    let second = fetch_genes(&pipeline, 30).unwrap();
    assert_eq!(runs(&GENES_RUNS) - before, 1, "the hit skipped the body");
    assert!(first.equals_missing(&second));
    assert_eq!(outcomes(&pipeline), [outcome("miss"), outcome("hit")]);
    // A new run over the same store loads too.
    let later = run(&store);
    fetch_genes(&later, 30).unwrap();
    assert_eq!(runs(&GENES_RUNS) - before, 1);
    assert_eq!(outcomes(&later), [outcome("hit")]);
}

static ARG_RUNS: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "constraint", version = "1")]
fn constraint_v1(ctx: &Pipeline<Arc<MemoryStore>>, min_depth: u32) -> Result<DataFrame, Error> {
    ARG_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(df!("min_depth" => [min_depth])?)
}

#[checkpointed(table = "constraint", version = "2")]
fn constraint_v2(ctx: &Pipeline<Arc<MemoryStore>>, min_depth: u32) -> Result<DataFrame, Error> {
    ARG_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(df!("min_depth" => [min_depth + 1000])?)
}

#[test]
fn other_arguments_or_code_are_stale_with_the_reason() {
    let store = Arc::new(MemoryStore::new());
    let pipeline = run(&store);
    let before = runs(&ARG_RUNS);
    constraint_v1(&pipeline, 20).unwrap();
    let frame = constraint_v1(&pipeline, 30).unwrap();
    assert_eq!(
        frame.column("min_depth").unwrap().u32().unwrap().get(0),
        Some(30)
    );
    // Same function name in the key? No: another function made it, with other code.
    let frame = constraint_v2(&pipeline, 30).unwrap();
    assert_eq!(
        frame.column("min_depth").unwrap().u32().unwrap().get(0),
        Some(1030)
    );
    assert_eq!(runs(&ARG_RUNS) - before, 3);
    let steps = outcomes(&pipeline);
    assert_eq!(steps[0], outcome("miss"));
    assert_eq!(
        steps[1],
        (
            "stale".to_owned(),
            Some("argument `min_depth` changed (20 -> 30)".to_owned())
        )
    );
    assert_eq!(
        steps[2],
        (
            "stale".to_owned(),
            Some("made by `constraint_v1`, not `constraint_v2`; code changed (version:1 -> version:2)".to_owned())
        )
    );
    assert_eq!(store.key("constraint").unwrap().function, "constraint_v2");
}

static FORCED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "forced")]
fn fetch_forced(ctx: &Pipeline<Arc<MemoryStore>>) -> Result<DataFrame, Error> {
    let n = FORCED_RUNS.fetch_add(1, Ordering::SeqCst) as i64;
    Ok(df!("run" => [n])?)
}

#[test]
fn a_forced_table_is_recomputed_once_per_pipeline() {
    let store = Arc::new(MemoryStore::new());
    let before = runs(&FORCED_RUNS);
    fetch_forced(&run(&store)).unwrap();
    let forced = run(&store).with_force(Force::tables(["forced"]));
    let first = fetch_forced(&forced).unwrap();
    let second = fetch_forced(&forced).unwrap();
    assert_eq!(runs(&FORCED_RUNS) - before, 2, "once unforced, once forced");
    assert!(
        first.equals_missing(&second),
        "the second call loads the forced result"
    );
    assert_eq!(
        outcomes(&forced),
        [
            ("force".to_owned(), Some("forced".to_owned())),
            outcome("hit")
        ]
    );
    // Forcing other tables leaves this one alone; `All` takes it.
    let others = run(&store).with_force(Force::tables(["genes"]));
    fetch_forced(&others).unwrap();
    let all = run(&store).with_force(Force::All);
    fetch_forced(&all).unwrap();
    assert_eq!(runs(&FORCED_RUNS) - before, 3);
}

static SHARED_FORCE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "forced_once")]
fn fetch_forced_once(ctx: &Pipeline<Arc<MemoryStore>>, n: i64) -> Result<DataFrame, Error> {
    SHARED_FORCE_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(df!("n" => [n])?)
}

/// Several workers forced at once (pipelines made before any recomputed the table) recompute
/// it once: a keyed checkpoint saved after a pipeline was made counts as this run's. A
/// pipeline made later forces again; a checkpoint of other arguments is still stale.
#[test]
fn a_forced_table_saved_since_the_pipeline_began_counts_as_recomputed() {
    let store = Arc::new(MemoryStore::new());
    let before = runs(&SHARED_FORCE_RUNS);
    fetch_forced_once(&run(&store), 1).unwrap();
    let force = || run(&store).with_force(Force::tables(["forced_once"]));
    let (a, b) = (force(), force());
    fetch_forced_once(&a, 1).unwrap();
    fetch_forced_once(&b, 1).unwrap();
    assert_eq!(
        runs(&SHARED_FORCE_RUNS) - before,
        2,
        "once before, once forced"
    );
    assert_eq!(outcomes(&b), [outcome("hit")]);
    fetch_forced_once(&b, 2).unwrap();
    assert_eq!(
        runs(&SHARED_FORCE_RUNS) - before,
        3,
        "other arguments: stale"
    );
    assert_eq!(outcomes(&b)[1].0, "stale");
    let later = force();
    fetch_forced_once(&later, 2).unwrap();
    assert_eq!(
        runs(&SHARED_FORCE_RUNS) - before,
        4,
        "a later run forces again"
    );
    // An unkeyed checkpoint saved since does not count: its time may be another clock's.
    let c = force();
    store
        .save_dataframe("forced_once", &df!("n" => [9i64]).unwrap(), "")
        .unwrap();
    fetch_forced_once(&c, 2).unwrap();
    assert_eq!(runs(&SHARED_FORCE_RUNS) - before, 5);
    assert_eq!(outcomes(&c)[0].0, "force");
}

static UNKEYED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "unkeyed")]
fn fetch_unkeyed(ctx: &Pipeline<Arc<MemoryStore>>) -> Result<DataFrame, Error> {
    UNKEYED_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(df!("source" => ["computed"])?)
}

#[test]
fn unkeyed_checkpoints_are_refused_adopted_or_recomputed() {
    let python_made = df!("source" => ["python"]).unwrap();
    let before = runs(&UNKEYED_RUNS);

    let store = Arc::new(MemoryStore::new());
    store.save_dataframe("unkeyed", &python_made, "").unwrap();
    match fetch_unkeyed(&run(&store)) {
        Err(Error::UnkeyedCheckpoint { table }) => assert_eq!(table, "unkeyed"),
        other => panic!("expected UnkeyedCheckpoint, got {other:?}"),
    }
    assert_eq!(runs(&UNKEYED_RUNS), before, "refused: the body did not run");

    let adopt = run(&store).with_unkeyed(UnkeyedPolicy::Adopt);
    assert!(fetch_unkeyed(&adopt).unwrap().equals_missing(&python_made));
    assert_eq!(outcomes(&adopt), [outcome("adopted")]);
    assert!(store.key("unkeyed").is_some(), "the key is recorded");
    let after = run(&store);
    assert!(fetch_unkeyed(&after).unwrap().equals_missing(&python_made));
    assert_eq!(outcomes(&after), [outcome("hit")]);
    assert_eq!(runs(&UNKEYED_RUNS), before, "adopted: the body never ran");

    let store = Arc::new(MemoryStore::new());
    store.save_dataframe("unkeyed", &python_made, "").unwrap();
    let recompute = run(&store).with_unkeyed(UnkeyedPolicy::Recompute);
    let frame = fetch_unkeyed(&recompute).unwrap();
    assert_eq!(
        frame.column("source").unwrap().str().unwrap().get(0),
        Some("computed")
    );
    assert_eq!(runs(&UNKEYED_RUNS), before + 1);
    assert_eq!(
        outcomes(&recompute),
        [(
            "stale".to_owned(),
            Some("the checkpoint has no key (saved without #[checkpointed])".to_owned())
        )]
    );
}

#[checkpointed(table = "failing")]
fn fetch_failing(ctx: &Pipeline<Arc<MemoryStore>>, fail: bool) -> Result<DataFrame, Error> {
    if fail {
        return Err(Error::Format("the API hiccuped".into()));
    }
    Ok(df!("x" => [1i64])?)
}

#[test]
fn a_failed_body_saves_nothing() {
    let store = Arc::new(MemoryStore::new());
    let pipeline = run(&store);
    match fetch_failing(&pipeline, true) {
        Err(Error::Format(message)) => assert_eq!(message, "the API hiccuped"),
        other => panic!("the body's own error, untouched: {other:?}"),
    }
    assert!(store.tables().is_empty());
    assert!(store.provenance_rows().unwrap().is_empty());
}

/// Counts fetched items; fails at `fail_at` (an item) when set.
#[derive(Default)]
struct Source {
    fetched: std::sync::Mutex<Vec<String>>,
    fail_at: Option<String>,
}

impl Source {
    fn search(&self, genes: &[String]) -> Result<DataFrame, Error> {
        if let Some(at) = &self.fail_at
            && genes.contains(at)
        {
            return Err(Error::Format(format!("connection reset at {at}")));
        }
        self.fetched.lock().unwrap().extend(genes.iter().cloned());
        let lengths: Vec<i64> = genes.iter().map(|g| g.len() as i64).collect();
        Ok(df!("gene" => genes, "length" => lengths)?)
    }

    fn fetched(&self) -> usize {
        self.fetched.lock().unwrap().len()
    }
}

#[checkpointed(table = "literature", skip(genes, source), batches = done)]
fn fetch_literature(
    ctx: &Pipeline<Arc<MemoryStore>>,
    genes: &[String],
    salt: u32,
    source: &Source,
) -> Result<DataFrame, Error> {
    for batch in done.pending(genes, 3)? {
        let rows = source.search(&batch)?;
        done.save(&batch, &rows)?;
    }
    done.finish()
}

fn gene_list(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("GENE{i:03}")).collect()
}

#[test]
fn batches_resume_after_a_failure_and_are_discarded_under_another_key() {
    let store = Arc::new(MemoryStore::new());
    let genes = gene_list(10);
    // Fails in the third batch (items 6..9): two batches kept.
    let failing = Source {
        fail_at: Some("GENE007".into()),
        ..Source::default()
    };
    assert!(fetch_literature(&run(&store), &genes, 1, &failing).is_err());
    assert_eq!(failing.fetched(), 6);

    let resumed = Source::default();
    let frame = fetch_literature(&run(&store), &genes, 1, &resumed).unwrap();
    assert_eq!(
        resumed.fetched(),
        4,
        "only the unfinished items are fetched"
    );
    let mut got: Vec<String> = frame
        .column("gene")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    got.sort();
    assert_eq!(got, genes, "every batch's rows, earlier and this run's");
    assert!(
        store.load_batches("literature").unwrap().is_none(),
        "the final save took the partial rows"
    );

    // Progress under other arguments is discarded, not mixed in.
    let failing = Source {
        fail_at: Some("GENE004".into()),
        ..Source::default()
    };
    assert!(fetch_literature(&run(&store), &genes, 2, &failing).is_err());
    let other_key = Source::default();
    fetch_literature(&run(&store), &genes, 3, &other_key).unwrap();
    assert_eq!(
        other_key.fetched(),
        10,
        "salt 3 does not resume salt 2's batches"
    );

    // A forced run starts afresh too.
    let failing = Source {
        fail_at: Some("GENE009".into()),
        ..Source::default()
    };
    assert!(fetch_literature(&run(&store).with_force(Force::All), &genes, 4, &failing).is_err());
    let forced = Source::default();
    fetch_literature(&run(&store).with_force(Force::All), &genes, 4, &forced).unwrap();
    assert_eq!(
        forced.fetched(),
        10,
        "a forced run discards earlier progress"
    );
}

static WEEKLY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "weekly", reads(genes), max_age = "7d")]
fn fetch_weekly(ctx: &Pipeline<Arc<MemoryStore>>) -> Result<DataFrame, Error> {
    WEEKLY_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(df!("gene" => ["USH2A"])?)
}

/// An adopted checkpoint takes the call's lineage (its declared inputs, its `max_age`), so it
/// stays a hit until those change; one older than `max_age` is recomputed, not adopted.
#[test]
fn adoption_records_the_calls_lineage_and_respects_max_age() {
    let store = Arc::new(MemoryStore::new());
    let frame = df!("gene" => ["MYO7A"]).unwrap();
    store.save_dataframe("genes", &frame, "").unwrap();
    store.save_dataframe("weekly", &frame, "").unwrap();
    let at = |days: i64| {
        let now = chrono::Utc::now().naive_utc() + chrono::TimeDelta::days(days);
        run(&store)
            .with_unkeyed(UnkeyedPolicy::Adopt)
            .with_clock(move || now)
    };
    let p = at(0);
    fetch_weekly(&p).unwrap();
    assert_eq!(runs(&WEEKLY_RUNS), 0);
    assert_eq!(outcomes(&p), [outcome("adopted")]);
    let lineage = store.checkpoint("weekly").unwrap().unwrap().lineage;
    assert_eq!(lineage.max_age_seconds, Some(7 * 86_400));
    assert_eq!(lineage.inputs.keys().collect::<Vec<_>>(), ["genes"]);
    let p = at(1);
    fetch_weekly(&p).unwrap();
    assert_eq!(
        (runs(&WEEKLY_RUNS), outcomes(&p)),
        (0, vec![outcome("hit")])
    );

    // Another unkeyed table, older than a week by the clock: recomputed, not adopted.
    store.save_dataframe("weekly", &frame, "").unwrap();
    let p = at(8);
    fetch_weekly(&p).unwrap();
    assert_eq!(runs(&WEEKLY_RUNS), 1);
    let (how, why) = outcomes(&p).remove(0);
    assert_eq!(how, "stale");
    assert!(why.unwrap().starts_with("expired: saved 8d"));
}

/// A progress display that writes down what it is told.
#[derive(Clone, Default)]
struct Recorded(Arc<std::sync::Mutex<Vec<String>>>);

impl crate::Progress for Recorded {
    fn report(&self, event: crate::ProgressEvent<'_>) {
        self.0.lock().unwrap().push(format!("{event:?}"));
    }
}

impl Recorded {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

#[checkpointed(table = "progress_loop", skip(fail_at), batches = done)]
fn progress_loop(
    ctx: &Pipeline<Arc<MemoryStore>>,
    items: Vec<u32>,
    fail_at: Option<u32>,
) -> Result<DataFrame, Error> {
    for batch in done.pending(&items, 10)? {
        if Some(batch[0]) == fail_at {
            return Err(Error::Format("interrupted".into()));
        }
        done.save(&batch, &df!("item" => batch.as_slice())?)?;
    }
    done.finish()
}

#[checkpointed(table = "progress_big")]
fn progress_big(ctx: &Pipeline<Arc<MemoryStore>>) -> Result<DataFrame, Error> {
    let n = crate::PROGRESS_MIN_ROWS as u32;
    Ok(df!("item" => (0..n).collect::<Vec<u32>>())?)
}

/// Loops report n of m items (earlier runs' included) and large saves and loads are
/// announced; only to a pipeline given a display.
#[test]
fn long_work_reports_its_progress() {
    let store = Arc::new(MemoryStore::new());
    let seen = Recorded::default();
    let items: Vec<u32> = (0..25).collect();
    let p = run(&store).with_progress(seen.clone());
    assert!(progress_loop(&p, items.clone(), Some(20)).is_err());
    let batches = |done, total| {
        format!("Batches {{ table: \"progress_loop\", done: {done}, total: {total} }}")
    };
    // A loop that fails takes its display down too.
    let finished = "BatchesFinished { table: \"progress_loop\" }".to_owned();
    assert_eq!(
        seen.take(),
        [batches(0, 25), batches(10, 25), batches(20, 25), finished]
    );
    let p = run(&store).with_progress(seen.clone());
    progress_loop(&p, items, None).unwrap();
    assert_eq!(
        seen.take(),
        [
            batches(20, 25),
            batches(25, 25),
            "BatchesFinished { table: \"progress_loop\" }".to_owned()
        ]
    );
    progress_big(&p).unwrap();
    progress_big(&p).unwrap();
    let rows = crate::PROGRESS_MIN_ROWS;
    assert_eq!(
        seen.take(),
        [
            format!("Saving {{ table: \"progress_big\", rows: {rows} }}"),
            "TransferFinished { table: \"progress_big\" }".to_owned(),
            format!("Loading {{ table: \"progress_big\", rows: {rows} }}"),
            "TransferFinished { table: \"progress_big\" }".to_owned(),
        ]
    );
}
