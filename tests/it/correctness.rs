//! A restart never serves a stale result: staleness that travels through a chain of inputs
//! (in calls and in `status`), forcing through nested calls, resumed batches made from other
//! input versions, writes through SQL, a hit that loads exactly what it judged, and a nested
//! call of a table whose call is already running. Each scenario runs on the DuckDB file store
//! and, with a test server (`USHER_TEST_POSTGRES`), on the shared store; bodies are counted
//! and values compared.

// Only the shared store's half needs the helpers.
#[cfg(feature = "postgres")]
use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    AnyStore, CheckpointInfo, CheckpointKey, CheckpointState, CheckpointStore, DuckdbErrorKind,
    Error, Force, JudgedLoad, Lineage, LockFuture, PendingBatches, Pipeline, PipelineConfig,
    PipelineStore, ProvenanceRecord, ProvenanceTracker, TableLock, checkpointed,
};

// --- Where each scenario runs ------------------------------------------------------------------

/// One store to run a scenario on: the DuckDB file of a temporary directory, or a schema and
/// data root of the test server.
struct Place {
    dir: tempfile::TempDir,
    #[cfg(feature = "postgres")]
    shared: Option<common::shared::Shared>,
}

impl Place {
    /// The file store, and the shared store when a test server is there.
    fn all(name: &str) -> Vec<Place> {
        // Mutable only when the shared store can be added.
        #[cfg_attr(not(feature = "postgres"), allow(unused_mut))]
        let mut places = vec![Place {
            dir: tempfile::tempdir().unwrap(),
            #[cfg(feature = "postgres")]
            shared: None,
        }];
        #[cfg(feature = "postgres")]
        if let Some(shared) = common::shared::Shared::new(name) {
            places.push(Place {
                dir: tempfile::tempdir().unwrap(),
                shared: Some(shared),
            });
        }
        let _ = name;
        places
    }

    fn name(&self) -> &'static str {
        #[cfg(feature = "postgres")]
        if self.shared.is_some() {
            return "shared store";
        }
        "file store"
    }

    fn config(&self) -> PipelineConfig {
        let d = self.dir.path();
        let yaml = crate::common::config_yaml(d, &d.join("store.duckdb"));
        std::fs::write(d.join("config.yaml"), yaml).unwrap();
        PipelineConfig::load(d.join("config.yaml")).unwrap()
    }

    fn open(&self) -> AnyStore {
        #[cfg(feature = "postgres")]
        if let Some(shared) = &self.shared {
            return shared.store().into();
        }
        PipelineStore::from_config(&self.config()).unwrap().into()
    }

    /// A run: a new pipeline over a newly opened store (drop the previous run's first).
    fn run(&self) -> Pipeline {
        self.run_over(self.open())
    }

    fn run_over<S: CheckpointStore>(&self, store: S) -> Pipeline<S> {
        Pipeline::new(
            store,
            ProvenanceTracker::from_config(&self.config(), Some("test")),
        )
    }
}

/// The (outcome, reason) of each step of `table` in the run.
fn outcomes<S: CheckpointStore>(p: &Pipeline<S>, table: &str) -> Vec<(String, Option<String>)> {
    p.provenance()
        .steps()
        .into_iter()
        .filter_map(|step| {
            let details = step.details.unwrap_or_default();
            let text = |k: &str| details.get(k).and_then(Value::as_str).map(str::to_owned);
            (text("table").as_deref() == Some(table))
                .then(|| (text("outcome").unwrap_or_default(), text("reason")))
        })
        .collect()
}

/// The outcome and reason of the one step of `table` in the run.
fn outcome<S: CheckpointStore>(p: &Pipeline<S>, table: &str) -> (String, String) {
    let found = outcomes(p, table);
    assert_eq!(found.len(), 1, "one step of {table}: {found:?}");
    let (how, why) = found.into_iter().next().unwrap();
    (how, why.unwrap_or_default())
}

fn ints(df: &DataFrame, column: &str) -> Vec<i64> {
    df.column(column)
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect()
}

fn load(p: &Pipeline, table: &str) -> DataFrame {
    p.store().load_dataframe(table).unwrap().unwrap()
}

fn state(p: &Pipeline, table: &str) -> CheckpointState {
    p.status()
        .unwrap()
        .into_iter()
        .find(|s| s.table == table)
        .unwrap_or_else(|| panic!("{table} in the status"))
        .state
}

// --- A chain: d calls c inside its body; c reads b; b reads a ------------------------------------

#[derive(Default)]
struct Counts {
    a: AtomicUsize,
    b: AtomicUsize,
    c: AtomicUsize,
    d: AtomicUsize,
}

impl Counts {
    fn get(&self) -> [usize; 4] {
        [&self.a, &self.b, &self.c, &self.d].map(|c| c.load(SeqCst))
    }
}

/// `frame` (gene, v) with `f` applied to each `v`.
fn map_v(frame: &DataFrame, f: impl Fn(i64) -> i64) -> Result<DataFrame, Error> {
    let v: Vec<i64> = ints(frame, "v").into_iter().map(f).collect();
    Ok(df!("gene" => frame.column("gene")?.as_materialized_series().clone(), "v" => v)?)
}

#[checkpointed(table = "chain_a", skip(n))]
fn fetch_a(ctx: &Pipeline, release: i64, n: &Counts) -> Result<DataFrame, Error> {
    n.a.fetch_add(1, SeqCst);
    Ok(df!("gene" => ["USH2A", "MYO7A"], "v" => [release, release * 10])?)
}

/// `v + 1` of the stored `chain_a`.
#[checkpointed(table = "chain_b", reads(chain_a), skip(n))]
fn make_b(ctx: &Pipeline, n: &Counts) -> Result<DataFrame, Error> {
    n.b.fetch_add(1, SeqCst);
    let a = ctx.store().load_dataframe("chain_a")?.unwrap();
    map_v(&a, |v| v + 1)
}

/// `v * 2` of the stored `chain_b`.
#[checkpointed(table = "chain_c", reads(chain_b), skip(n))]
fn make_c(ctx: &Pipeline, n: &Counts) -> Result<DataFrame, Error> {
    n.c.fetch_add(1, SeqCst);
    let b = ctx.store().load_dataframe("chain_b")?.unwrap();
    map_v(&b, |v| v * 2)
}

/// `v + 1000` of what `make_c` returns, called inside the body.
#[checkpointed(table = "chain_d", skip(n))]
fn make_d(ctx: &Pipeline, n: &Counts) -> Result<DataFrame, Error> {
    n.d.fetch_add(1, SeqCst);
    let c = make_c(ctx, n)?;
    map_v(&c, |v| v + 1000)
}

/// What `make_d` must return when `chain_a` was made with `release`.
fn d_of(release: i64) -> Vec<i64> {
    [release, release * 10].map(|a| (a + 1) * 2 + 1000).to_vec()
}

#[test]
fn a_stale_input_makes_everything_made_from_it_stale_in_calls_and_status() {
    for place in Place::all("transitive") {
        let at = place.name();
        let n = Counts::default();
        {
            let p = place.run();
            fetch_a(&p, 1, &n).unwrap();
            make_b(&p, &n).unwrap();
            assert_eq!(ints(&make_d(&p, &n).unwrap(), "v"), d_of(1), "{at}");
            assert_eq!(n.get(), [1, 1, 1, 1], "{at}");
        }
        // a and b recomputed with new data; d's recorded input c is unchanged, but c is stale.
        {
            let p = place.run();
            fetch_a(&p, 2, &n).unwrap();
            make_b(&p, &n).unwrap();
            assert_eq!(n.get(), [2, 2, 1, 1], "{at}");
            match state(&p, "chain_d") {
                CheckpointState::Stale(why) => {
                    let text = why[0].to_string();
                    assert!(
                        text.starts_with("input `chain_c` is stale: its input `chain_b` changed ("),
                        "{at}: {text}"
                    );
                }
                other => panic!("{at}: chain_d is {other:?} in the status"),
            }
            assert!(
                matches!(state(&p, "chain_c"), CheckpointState::Stale(_)),
                "{at}"
            );
            let d = make_d(&p, &n).unwrap();
            assert_eq!(ints(&d, "v"), d_of(2), "{at}: d made from the new a");
            assert_eq!(n.get(), [2, 2, 2, 2], "{at}: c and d recomputed");
            let (how, why) = outcome(&p, "chain_d");
            assert_eq!(how, "stale", "{at}");
            assert!(
                why.starts_with("input `chain_c` is stale: its input `chain_b` changed ("),
                "{at}: {why}"
            );
            assert_eq!(outcome(&p, "chain_c").0, "stale", "{at}");
            assert_eq!(ints(&load(&p, "chain_d"), "v"), d_of(2), "{at}");
        }
        // Everything is valid now: every call is a hit.
        {
            let p = place.run();
            for s in p.status().unwrap() {
                assert!(s.is_valid(), "{at}: {s:?}");
            }
            assert_eq!(ints(&make_d(&p, &n).unwrap(), "v"), d_of(2), "{at}");
            assert_eq!(n.get(), [2, 2, 2, 2], "{at}");
            assert_eq!(outcome(&p, "chain_d").0, "hit", "{at}");
        }
        // Forcing c, which this run reaches only through d's body: c recomputes, and so does
        // d, once.
        {
            let p = place.run().with_force(Force::tables(["chain_c"]));
            match p
                .status()
                .unwrap()
                .into_iter()
                .find(|s| s.table == "chain_d")
                .unwrap()
                .state
            {
                CheckpointState::Stale(why) => assert_eq!(
                    why[0].to_string(),
                    "input `chain_c` is stale: it is forced in this run",
                    "{at}"
                ),
                other => panic!("{at}: chain_d is {other:?}"),
            }
            assert_eq!(ints(&make_d(&p, &n).unwrap(), "v"), d_of(2), "{at}");
            assert_eq!(n.get(), [2, 2, 3, 3], "{at}: c forced through d");
            let (how, why) = outcome(&p, "chain_d");
            assert_eq!(
                (how.as_str(), why.as_str()),
                (
                    "stale",
                    "input `chain_c` is stale: it is forced in this run"
                ),
                "{at}"
            );
            assert_eq!(outcome(&p, "chain_c").0, "force", "{at}");
            make_d(&p, &n).unwrap();
            assert_eq!(n.get(), [2, 2, 3, 3], "{at}: forced once per run");
        }
        // Early cut-off still holds: a forced re-download of identical data stops at a.
        {
            let p = place.run().with_force(Force::tables(["chain_a"]));
            fetch_a(&p, 2, &n).unwrap();
            make_b(&p, &n).unwrap();
            assert_eq!(ints(&make_d(&p, &n).unwrap(), "v"), d_of(2), "{at}");
            assert_eq!(n.get(), [3, 2, 3, 3], "{at}: only a ran");
            assert_eq!(outcome(&p, "chain_d").0, "hit", "{at}");
        }
        // The status of a store alone names the chain too, and a missing link.
        {
            let p = place.run();
            fetch_a(&p, 3, &n).unwrap();
            p.store().delete_checkpoint("chain_b").unwrap();
            match state(&p, "chain_d") {
                CheckpointState::Stale(why) => assert_eq!(
                    why[0].to_string(),
                    "input `chain_c` is stale: its input `chain_b` is missing",
                    "{at}"
                ),
                other => panic!("{at}: chain_d is {other:?}"),
            }
        }
    }
}

/// An input's staleness is judged by its own lineage: a cycle in hand-edited lineage does not
/// hang the rule, and a diamond is judged once per table.
#[test]
fn the_stale_rule_walks_diamonds_and_long_chains() {
    #[checkpointed(table = "dia_top", skip(n))]
    fn top(ctx: &Pipeline, release: i64, n: &AtomicUsize) -> Result<DataFrame, Error> {
        n.fetch_add(1, SeqCst);
        Ok(df!("v" => [release])?)
    }
    #[checkpointed(table = "dia_left", reads(dia_top))]
    fn left(ctx: &Pipeline) -> Result<DataFrame, Error> {
        Ok(ctx.store().load_dataframe("dia_top")?.unwrap())
    }
    #[checkpointed(table = "dia_right", reads(dia_top))]
    fn right(ctx: &Pipeline) -> Result<DataFrame, Error> {
        Ok(ctx.store().load_dataframe("dia_top")?.unwrap())
    }
    #[checkpointed(table = "dia_bottom", reads(dia_left, dia_right), skip(n))]
    fn bottom(ctx: &Pipeline, n: &AtomicUsize) -> Result<DataFrame, Error> {
        n.fetch_add(1, SeqCst);
        let l = ctx.store().load_dataframe("dia_left")?.unwrap();
        let r = ctx.store().load_dataframe("dia_right")?.unwrap();
        Ok(l.vstack(&r)?)
    }
    for place in Place::all("diamond") {
        let at = place.name();
        let (t, b) = (AtomicUsize::new(0), AtomicUsize::new(0));
        {
            let p = place.run();
            top(&p, 1, &t).unwrap();
            left(&p).unwrap();
            right(&p).unwrap();
            bottom(&p, &b).unwrap();
        }
        let p = place.run();
        top(&p, 2, &t).unwrap();
        left(&p).unwrap();
        // right is stale (not recomputed), so bottom is stale through it alone.
        let got = bottom(&p, &b).unwrap();
        assert_eq!(b.load(SeqCst), 2, "{at}");
        let (how, why) = outcome(&p, "dia_bottom");
        assert_eq!(how, "stale", "{at}");
        assert!(why.contains("input `dia_left` changed"), "{at}: {why}");
        assert!(
            why.contains("input `dia_right` is stale: its input `dia_top` changed"),
            "{at}: {why}"
        );
        // What the body read: the new left, the old right (the body does not call right).
        assert_eq!(ints(&got, "v"), [2, 1], "{at}");
    }
}

// --- Resumed batches ---------------------------------------------------------------------------

#[checkpointed(table = "batch_src", skip(n))]
fn fetch_src(ctx: &Pipeline, release: i64, n: &AtomicUsize) -> Result<DataFrame, Error> {
    n.fetch_add(1, SeqCst);
    Ok(df!(
        "gene" => ["G0", "G1", "G2", "G3", "G4", "G5"],
        "v" => [release; 6],
    )?)
}

/// Per gene, the source's `v` plus 100: two genes a batch; with `fail`, the second batch fails.
#[checkpointed(table = "batch_lit", reads(batch_src), batches = done, skip(n, fail))]
fn fetch_lit(ctx: &Pipeline, n: &AtomicUsize, fail: bool) -> Result<DataFrame, Error> {
    let src = ctx.store().load_dataframe("batch_src")?.unwrap();
    let names = src.column("gene")?.str()?;
    let genes: Vec<String> = (0..names.len())
        .map(|i| names.get(i).unwrap_or_default().to_owned())
        .collect();
    let values = ints(&src, "v");
    for (i, batch) in done.pending(&genes, 2)?.into_iter().enumerate() {
        if fail && i == 1 {
            return Err(Error::Format("connection reset".into()));
        }
        n.fetch_add(batch.len(), SeqCst);
        let v: Vec<i64> = batch
            .iter()
            .map(|g| values[genes.iter().position(|x| x == g).unwrap()] + 100)
            .collect();
        done.save(&batch, &df!("gene" => &batch, "v" => v)?)?;
    }
    done.finish()
}

#[test]
fn resumed_batches_made_from_other_input_versions_are_discarded() {
    for place in Place::all("batch_inputs") {
        let at = place.name();
        let (src, items) = (AtomicUsize::new(0), AtomicUsize::new(0));
        {
            let p = place.run();
            fetch_src(&p, 1, &src).unwrap();
            assert!(fetch_lit(&p, &items, true).is_err());
            assert_eq!(items.load(SeqCst), 2, "{at}: one batch done");
        }
        // Unchanged input: the loop resumes.
        {
            let p = place.run();
            assert!(fetch_lit(&p, &items, true).is_err());
            assert_eq!(items.load(SeqCst), 4, "{at}: resumed, one more batch");
        }
        // The source re-fetched with new values: the loop starts over.
        {
            let p = place.run();
            fetch_src(&p, 2, &src).unwrap();
            let lit = fetch_lit(&p, &items, false).unwrap();
            assert_eq!(items.load(SeqCst), 4 + 6, "{at}: every item fetched again");
            assert_eq!(
                ints(&lit, "v"),
                [102; 6],
                "{at}: nothing made from the old source"
            );
            let (how, why) = outcome(&p, "batch_lit");
            assert_eq!(how, "miss", "{at}");
            assert!(
                why.contains("4 finished items discarded: made from other versions of its inputs"),
                "{at}: {why}"
            );
        }
        {
            let p = place.run();
            let lit = fetch_lit(&p, &items, false).unwrap();
            assert_eq!(outcome(&p, "batch_lit").0, "hit", "{at}");
            assert_eq!(ints(&lit, "v"), [102; 6], "{at}");
            assert_eq!(items.load(SeqCst), 10, "{at}");
        }
    }
}

// --- Writes through SQL --------------------------------------------------------------------------

#[test]
fn a_write_through_sql_makes_what_was_made_from_the_table_stale() {
    for place in Place::all("sql_writes") {
        let at = place.name();
        let n = Counts::default();
        {
            let p = place.run();
            fetch_a(&p, 1, &n).unwrap();
            make_b(&p, &n).unwrap();
            assert_eq!(ints(&make_c(&p, &n).unwrap(), "v"), [4, 22], "{at}");
        }
        let p = place.run();
        // `query` reads; a write is refused before it runs, and changes nothing.
        // (The shared store's checkpoints are views over Parquet files there: DuckDB's binder
        // refuses the write as invalid SQL before the statement-kind check would.)
        let refused = p.store().query("UPDATE chain_b SET v = v + 100", &[]);
        assert!(
            matches!(
                refused,
                Err(Error::Duckdb {
                    kind: DuckdbErrorKind::InvalidInput,
                    ..
                })
            ) || (place.name() == "shared store"
                && matches!(
                    refused,
                    Err(Error::Duckdb {
                        kind: DuckdbErrorKind::InvalidSql,
                        ..
                    })
                )),
            "{at}: {refused:?}"
        );
        assert_eq!(ints(&load(&p, "chain_b"), "v"), [2, 11], "{at}");
        assert_eq!(ints(&make_c(&p, &n).unwrap(), "v"), [4, 22], "{at}");
        assert_eq!(n.get()[2], 1, "{at}: still a hit");
        let Some(file) = p.store().as_file() else {
            // The shared store runs no writes through SQL at all.
            continue;
        };
        // `execute` writes, and records the tables it touched as changed.
        let touched = file.execute("UPDATE chain_b SET v = v + 100", &[]).unwrap();
        let _ = file;
        assert_eq!(touched, ["chain_b"], "{at}");
        drop(p);
        let p = place.run();
        assert_eq!(state(&p, "chain_b"), CheckpointState::Unkeyed, "{at}");
        assert!(
            matches!(state(&p, "chain_c"), CheckpointState::Stale(_)),
            "{at}"
        );
        assert_eq!(ints(&make_c(&p, &n).unwrap(), "v"), [204, 222], "{at}");
        assert_eq!(n.get()[2], 2, "{at}: recomputed from the edited table");
        let (how, why) = outcome(&p, "chain_c");
        assert_eq!(how, "stale", "{at}");
        assert!(why.starts_with("input `chain_b` changed ("), "{at}: {why}");
        // The edited table is no longer taken as its function's checkpoint.
        assert!(
            matches!(make_b(&p, &n), Err(Error::UnkeyedCheckpoint { ref table }) if table == "chain_b"),
            "{at}"
        );
        // Writes to the library's own tables are refused.
        let file = p.store().as_file().unwrap();
        let own = file.execute("DELETE FROM _checkpoint_keys", &[]);
        assert!(
            matches!(
                own,
                Err(Error::Duckdb {
                    kind: DuckdbErrorKind::InvalidInput,
                    ..
                })
            ),
            "{at}: {own:?}"
        );
        assert!(
            p.store()
                .checkpoint("chain_c")
                .unwrap()
                .unwrap()
                .key
                .is_some()
        );
    }
}

// --- A hit loads what it judged ------------------------------------------------------------------

/// What another writer does to the store right after a call judged its checkpoint.
type Meanwhile = Box<dyn FnOnce(&AnyStore) + Send>;

/// A store that lets another writer save `table` right after a call has judged its checkpoint.
struct Racy {
    inner: AnyStore,
    table: &'static str,
    meanwhile: Mutex<Option<Meanwhile>>,
}

impl CheckpointStore for Racy {
    fn checkpoint(&self, table: &str) -> usher_pipeline::Result<Option<CheckpointInfo>> {
        let judged = self.inner.checkpoint(table);
        if table == self.table
            && let Some(meanwhile) = self.meanwhile.lock().unwrap().take()
        {
            meanwhile(&self.inner);
        }
        judged
    }
    fn load_dataframe(&self, table: &str) -> usher_pipeline::Result<Option<DataFrame>> {
        self.inner.load_dataframe(table)
    }
    fn save_dataframe(
        &self,
        table: &str,
        frame: &DataFrame,
        description: &str,
    ) -> usher_pipeline::Result<()> {
        self.inner.save_dataframe(table, frame, description)
    }
    fn delete_checkpoints(&self, tables: &[&str]) -> usher_pipeline::Result<()> {
        self.inner.delete_checkpoints(tables)
    }
    fn export_parquet(
        &self,
        table: &str,
        output_path: &std::path::Path,
    ) -> usher_pipeline::Result<()> {
        self.inner.export_parquet(table, output_path)
    }
    fn provenance_rows(&self) -> usher_pipeline::Result<Vec<ProvenanceRecord>> {
        self.inner.provenance_rows()
    }
    fn load_judged(&self, judged: &CheckpointInfo) -> usher_pipeline::Result<JudgedLoad> {
        self.inner.load_judged(judged)
    }
    fn save_checkpoint_with(
        &self,
        table: &str,
        frame: &DataFrame,
        description: &str,
        key: &CheckpointKey,
        saved_at: chrono::NaiveDateTime,
        metadata: &mut dyn FnMut() -> usher_pipeline::Result<(Lineage, ProvenanceRecord)>,
    ) -> usher_pipeline::Result<()> {
        self.inner
            .save_checkpoint_with(table, frame, description, key, saved_at, metadata)
    }
    fn adopt_checkpoint(
        &self,
        table: &str,
        created_at: Option<chrono::NaiveDateTime>,
        saved_at: Option<chrono::NaiveDateTime>,
        key: &CheckpointKey,
        lineage: &Lineage,
    ) -> usher_pipeline::Result<bool> {
        self.inner
            .adopt_checkpoint(table, created_at, saved_at, key, lineage)
    }
    fn batch_progress(&self, table: &str, key: &str) -> usher_pipeline::Result<Vec<String>> {
        self.inner.batch_progress(table, key)
    }
    fn discard_batches(&self, table: &str) -> usher_pipeline::Result<()> {
        self.inner.discard_batches(table)
    }
    fn record_batch_total(
        &self,
        table: &str,
        key: &str,
        total: usize,
    ) -> usher_pipeline::Result<()> {
        self.inner.record_batch_total(table, key, total)
    }
    fn save_batch(
        &self,
        table: &str,
        key: &str,
        items: &[String],
        frame: &DataFrame,
    ) -> usher_pipeline::Result<()> {
        self.inner.save_batch(table, key, items, frame)
    }
    fn load_batches(&self, table: &str) -> usher_pipeline::Result<Option<DataFrame>> {
        self.inner.load_batches(table)
    }
    fn append_provenance(&self, record: &ProvenanceRecord) -> usher_pipeline::Result<()> {
        self.inner.append_provenance(record)
    }
    fn list_checkpoints(&self) -> usher_pipeline::Result<Vec<CheckpointInfo>> {
        self.inner.list_checkpoints()
    }
    fn pending_batches(&self) -> usher_pipeline::Result<Vec<PendingBatches>> {
        self.inner.pending_batches()
    }
    fn lock_table(&self, table: &str) -> usher_pipeline::Result<TableLock> {
        self.inner.lock_table(table)
    }
    fn lock_table_async<'a>(&'a self, table: &'a str) -> LockFuture<'a> {
        self.inner.lock_table_async(table)
    }
}

#[checkpointed(table = "judged", context = ctx, skip(n))]
fn judged(ctx: &Pipeline<Racy>, which: i64, n: &AtomicUsize) -> Result<DataFrame, Error> {
    n.fetch_add(1, SeqCst);
    Ok(df!("which" => [which, which])?)
}

#[test]
fn a_hit_loads_the_checkpoint_it_judged_not_one_saved_meanwhile() {
    for place in Place::all("judged") {
        let at = place.name();
        let n = AtomicUsize::new(0);
        let racy = |meanwhile: Option<Meanwhile>| Racy {
            inner: place.open(),
            table: "judged",
            meanwhile: Mutex::new(meanwhile),
        };
        {
            let p = place.run_over(racy(None));
            judged(&p, 1, &n).unwrap();
        }
        // Another worker saves the table under other arguments between the judgement and the
        // load: this call must not serve that data as its hit.
        let other = Box::new(|store: &AnyStore| {
            let mut arguments = serde_json::Map::new();
            arguments.insert("which".into(), 2.into());
            let key = CheckpointKey::new("judged", "tokens:other", arguments, Default::default())
                .unwrap();
            let record = ProvenanceRecord {
                version: "other".into(),
                config_hash: "x".into(),
                created_at: chrono::Utc::now().naive_utc(),
                steps_json: "[]".into(),
            };
            store
                .save_checkpoint(
                    "judged",
                    &df!("which" => [2i64, 2]).unwrap(),
                    "judged {\"which\": 2}",
                    &key,
                    &Lineage::default(),
                    &record,
                )
                .unwrap();
        });
        let p = place.run_over(racy(Some(other)));
        let got = judged(&p, 1, &n).unwrap();
        assert_eq!(
            ints(&got, "which"),
            [1, 1],
            "{at}: the data of this call's key"
        );
        assert_eq!(n.load(SeqCst), 2, "{at}: recomputed after the re-plan");
        let (how, why) = outcome(&p, "judged");
        assert_eq!(how, "stale", "{at}");
        assert!(
            why.contains("argument `which` changed (2 -> 1)"),
            "{at}: {why}"
        );
        assert_eq!(
            ints(
                &p.store().load_dataframe("judged").unwrap().unwrap(),
                "which"
            ),
            [1, 1],
            "{at}"
        );
        // The store alone: a judged checkpoint replaced meanwhile is never loaded.
        let judged_now = p.store().checkpoint("judged").unwrap().unwrap();
        p.store()
            .inner
            .save_dataframe("judged", &df!("which" => [3i64]).unwrap(), "by hand")
            .unwrap();
        assert!(
            matches!(
                p.store().load_judged(&judged_now).unwrap(),
                JudgedLoad::Replaced
            ),
            "{at}"
        );
    }
}

// --- A nested call of a table whose call is running ----------------------------------------------

#[checkpointed(table = "recursive")]
fn recursive(ctx: &Pipeline, depth: i64) -> Result<DataFrame, Error> {
    if depth > 0 {
        recursive(ctx, depth - 1)?;
    }
    Ok(df!("depth" => [depth])?)
}

#[checkpointed(table = "recursive")]
fn writes_recursive_too(ctx: &Pipeline) -> Result<DataFrame, Error> {
    recursive(ctx, 0)
}

#[checkpointed(table = "recursive_async")]
async fn recursive_async(ctx: &Pipeline, depth: i64) -> Result<DataFrame, Error> {
    if depth > 0 {
        Box::pin(recursive_async(ctx, depth - 1)).await?;
    }
    Ok(df!("depth" => [depth])?)
}

/// Runs `f` on a thread of its own and fails the test if it hangs.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the call hung instead of returning an error")
}

#[test]
fn a_nested_call_of_a_running_table_is_an_error_not_a_hang() {
    let place = Arc::new(Place::all("recursive").remove(0));
    let p = Arc::new(place.run());
    let q = Arc::clone(&p);
    let err = within_a_minute(move || recursive(&q, 2).unwrap_err());
    assert!(
        matches!(&err, Error::Reentrant { table } if table == "recursive"),
        "{err}"
    );
    assert!(err.to_string().contains("\"recursive\""), "{err}");
    let q = Arc::clone(&p);
    let err = within_a_minute(move || writes_recursive_too(&q).unwrap_err());
    assert!(
        matches!(&err, Error::Reentrant { table } if table == "recursive"),
        "{err}"
    );
    let q = Arc::clone(&p);
    let err = within_a_minute(move || {
        tokio::runtime::Builder::new_multi_thread()
            .build()
            .unwrap()
            .block_on(recursive_async(&q, 1))
            .unwrap_err()
    });
    assert!(
        matches!(&err, Error::Reentrant { table } if table == "recursive_async"),
        "{err}"
    );
    // Nothing was saved, and a plain call still works.
    assert!(p.store().checkpoint("recursive").unwrap().is_none());
    let q = Arc::clone(&p);
    let frame = within_a_minute(move || recursive(&q, 0).unwrap());
    assert_eq!(ints(&frame, "depth"), [0]);
}

// --- One clock -----------------------------------------------------------------------------------

#[checkpointed(table = "clocked", max_age = "1d", skip(n))]
fn clocked(ctx: &Pipeline, n: &AtomicUsize) -> Result<DataFrame, Error> {
    n.fetch_add(1, SeqCst);
    Ok(df!("v" => [1i64])?)
}

/// A pipeline built `with_clock` stamps its saves by that clock and measures ages by it: a
/// checkpoint made "in 2001" expires a day later by the same clock.
#[test]
fn saves_and_ages_are_measured_by_the_pipelines_clock() {
    for place in Place::all("clock") {
        let at = place.name();
        let n = AtomicUsize::new(0);
        let start = chrono::NaiveDate::from_ymd_opt(2001, 2, 3)
            .unwrap()
            .and_hms_micro_opt(4, 5, 6, 789_123)
            .unwrap();
        let now = Arc::new(Mutex::new(start));
        let run = || {
            let now = Arc::clone(&now);
            place.run().with_clock(move || *now.lock().unwrap())
        };
        {
            let p = run();
            clocked(&p, &n).unwrap();
            let saved = p.store().checkpoint("clocked").unwrap().unwrap();
            assert_eq!(saved.created_at, Some(start), "{at}: stamped by the clock");
        }
        *now.lock().unwrap() = start + chrono::TimeDelta::hours(23);
        {
            let p = run();
            clocked(&p, &n).unwrap();
            assert_eq!(outcome(&p, "clocked").0, "hit", "{at}");
        }
        *now.lock().unwrap() = start + chrono::TimeDelta::hours(25);
        {
            let p = run();
            clocked(&p, &n).unwrap();
            assert_eq!(
                outcome(&p, "clocked"),
                (
                    "stale".to_owned(),
                    "expired: saved 1d 1h ago, max_age 1d".to_owned()
                ),
                "{at}"
            );
        }
        assert_eq!(n.load(SeqCst), 2, "{at}");
    }
}

// --- The same rules from async code ----------------------------------------------------------------

#[checkpointed(table = "async_c", reads(chain_b), skip(n))]
async fn make_c_async(ctx: &Pipeline, n: &Counts) -> Result<DataFrame, Error> {
    n.c.fetch_add(1, SeqCst);
    let b = ctx.store().load_dataframe("chain_b")?.unwrap();
    map_v(&b, |v| v * 2)
}

#[checkpointed(table = "async_d", skip(n))]
async fn make_d_async(ctx: &Pipeline, n: &Counts) -> Result<DataFrame, Error> {
    n.d.fetch_add(1, SeqCst);
    let c = make_c_async(ctx, n).await?;
    map_v(&c, |v| v + 1000)
}

/// An async outer step awaiting an async inner one, on tokio's multi-thread runtime: a stale
/// upstream reaches it through the inner step (transitive), it recomputes once, then hits.
#[test]
fn staleness_is_transitive_for_async_steps_on_tokio() {
    let runtime = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    for place in Place::all("transitive_async") {
        let at = place.name();
        let n = Counts::default();
        {
            let p = place.run();
            fetch_a(&p, 1, &n).unwrap();
            make_b(&p, &n).unwrap();
            let d = runtime.block_on(make_d_async(&p, &n)).unwrap();
            assert_eq!(ints(&d, "v"), d_of(1), "{at}");
        }
        {
            let p = place.run();
            fetch_a(&p, 2, &n).unwrap();
            make_b(&p, &n).unwrap();
            let d = runtime.block_on(make_d_async(&p, &n)).unwrap();
            assert_eq!(ints(&d, "v"), d_of(2), "{at}: made from the new a");
            let (how, why) = outcome(&p, "async_d");
            assert_eq!(how, "stale", "{at}");
            assert!(
                why.starts_with("input `async_c` is stale: its input `chain_b` changed ("),
                "{at}: {why}"
            );
        }
        {
            let p = place.run();
            runtime.block_on(make_d_async(&p, &n)).unwrap();
            assert_eq!(outcome(&p, "async_d").0, "hit", "{at}");
        }
        assert_eq!([n.c.load(SeqCst), n.d.load(SeqCst)], [2, 2], "{at}");
    }
}
