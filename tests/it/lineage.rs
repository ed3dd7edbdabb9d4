//! Staleness that follows the data: frames as key arguments, declared `reads(...)`, nested
//! calls as inputs, early cut-off, `config(...)` fields, `max_age` and `check = ...`. Each run
//! is a new `Pipeline` on the same store file; what ran, and why, is read back from the
//! provenance steps.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use serde_json::{Map, Value, json};
use usher_pipeline::CheckpointStore;
use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    Config, DefaultStore, Error, Force, Pipeline, PipelineConfig, PipelineContext, PipelineStore,
    ProvenanceTracker, checkpointed,
};

/// One run's steps: (table, outcome, reason), whatever the run's config type.
fn steps<C>(p: &Pipeline<DefaultStore, C>) -> Vec<(String, String, Option<String>)> {
    p.provenance()
        .steps()
        .into_iter()
        .map(|step| {
            let details = step.details.unwrap_or_default();
            let text = |k: &str| details.get(k).and_then(Value::as_str).map(str::to_owned);
            (
                text("table").unwrap_or_default(),
                text("outcome").unwrap_or_default(),
                text("reason"),
            )
        })
        .collect()
}

/// The outcome of `table`'s step in the run.
fn outcome<C>(p: &Pipeline<DefaultStore, C>, table: &str) -> (String, Option<String>) {
    let found: Vec<_> = steps(p).into_iter().filter(|s| s.0 == table).collect();
    assert_eq!(found.len(), 1, "one step of {table}: {:?}", steps(p));
    let (_, outcome, reason) = found.into_iter().next().unwrap();
    (outcome, reason)
}

fn config(dir: &Path, gnomad_version: &str) -> PipelineConfig {
    let yaml = format!(
        "data_dir: {d}/data\ncache_dir: {d}/cache\nduckdb_path: {d}/store.duckdb\nversions:\n  ensembl_release: 113\n  gnomad_version: {gnomad_version}\napi: {{}}\nscoring: {{}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    PipelineConfig::load(dir.join("config.yaml")).unwrap()
}

/// A run: a new pipeline over the store of `dir`, with a config.
fn run(dir: &Path) -> Pipeline {
    run_with(dir, "v4.1")
}

fn run_with(dir: &Path, gnomad_version: &str) -> Pipeline {
    let config = config(dir, gnomad_version);
    Pipeline::with_config(PipelineStore::from_config(&config).unwrap(), &config).unwrap()
}

// --- The scoring scenario of the issue -------------------------------------------------------

static CONSTRAINT: AtomicUsize = AtomicUsize::new(0);
static SCORES: AtomicUsize = AtomicUsize::new(0);
static SCORES_SQL: AtomicUsize = AtomicUsize::new(0);

/// Genes covered at `min_depth`: 20 keeps three, 30 keeps two.
#[checkpointed(table = "gnomad_constraint")]
fn fetch_constraint(ctx: &Pipeline, min_depth: i64) -> Result<DataFrame, Error> {
    CONSTRAINT.fetch_add(1, Ordering::SeqCst);
    let all = df!(
        "gene_symbol" => ["USH2A", "MYO7A", "CDH23"],
        "loeuf" => [0.41, 0.12, 0.77],
        "mean_depth" => [35i64, 25, 40],
    )?;
    let covered = all.column("mean_depth")?.i64()?.gt_eq(min_depth);
    Ok(all.filter(&covered)?)
}

/// Scores from the constraint frame: no `skip`, the frame is keyed by its data version.
#[checkpointed(table = "scores")]
fn score(ctx: &Pipeline, constraint: &DataFrame) -> Result<DataFrame, Error> {
    SCORES.fetch_add(1, Ordering::SeqCst);
    let loeuf = constraint.column("loeuf")?.f64()?;
    let score: Float64Chunked = loeuf.apply_values(|x| 1.0 - x);
    let mut out = constraint.select(["gene_symbol"])?;
    out.with_column(score.into_series().with_name("score".into()).into_column())?;
    Ok(out)
}

/// Scores in SQL over the stored table, as the Python pipeline's scoring does.
#[checkpointed(table = "scores_sql", reads(gnomad_constraint))]
fn score_sql(ctx: &Pipeline) -> Result<DataFrame, Error> {
    SCORES_SQL.fetch_add(1, Ordering::SeqCst);
    ctx.store().query(
        "SELECT gene_symbol, 1 - loeuf AS score FROM gnomad_constraint ORDER BY gene_symbol",
        &[],
    )
}

fn counts() -> [usize; 3] {
    [&CONSTRAINT, &SCORES, &SCORES_SQL].map(|c| c.load(Ordering::SeqCst))
}

#[test]
fn upstream_changes_reach_downstream_and_identical_data_cuts_off() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let pipeline = |p: &Pipeline, min_depth| {
        let constraint = fetch_constraint(p, min_depth).unwrap();
        score(p, &constraint).unwrap();
        score_sql(p).unwrap();
    };

    let p = run(dir);
    pipeline(&p, 20);
    assert_eq!(counts(), [1, 1, 1]);

    let p = run(dir);
    pipeline(&p, 20);
    assert_eq!(counts(), [1, 1, 1], "all hits");
    assert_eq!(outcome(&p, "scores").0, "hit");

    // The constraint recomputed with other data: both scoring steps recompute, and say why.
    let p = run(dir);
    pipeline(&p, 30);
    assert_eq!(counts(), [2, 2, 2]);
    let (how, why) = outcome(&p, "scores");
    assert_eq!(how, "stale");
    let why = why.unwrap();
    assert!(
        why.starts_with("argument `constraint` changed (data ")
            && why.matches("data ").count() == 2,
        "{why}"
    );
    let (how, why) = outcome(&p, "scores_sql");
    assert_eq!(how, "stale");
    assert!(
        why.as_deref()
            .unwrap()
            .starts_with("input `gnomad_constraint` changed (data "),
        "{why:?}"
    );
    let scores = p.store().load_dataframe("scores_sql").unwrap().unwrap();
    assert_eq!(scores.height(), 2, "made from the min_depth 30 frame");

    // Forced again with identical data: the constraint reruns, nothing downstream does.
    let p = run(dir).with_force(Force::tables(["gnomad_constraint"]));
    pipeline(&p, 30);
    assert_eq!(counts(), [3, 2, 2], "early cut-off");
    assert_eq!(outcome(&p, "gnomad_constraint").0, "force");
    assert_eq!(outcome(&p, "scores").0, "hit");
    assert_eq!(outcome(&p, "scores_sql").0, "hit");
}

#[checkpointed(table = "needs_missing", reads(not_there))]
fn needs_missing(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(df!("a" => [1])?)
}

#[test]
fn a_missing_declared_input_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = run(dir.path());
    match needs_missing(&p) {
        Err(Error::MissingInput { table, input }) => {
            assert_eq!(
                (table.as_str(), input.as_str()),
                ("needs_missing", "not_there")
            );
        }
        other => panic!("expected MissingInput, got {other:?}"),
    }
    assert!(!p.store().has_checkpoint("needs_missing").unwrap());
}

// --- Nested calls ----------------------------------------------------------------------------

static INNER: AtomicUsize = AtomicUsize::new(0);
static OUTER: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "expression")]
fn fetch_expression(ctx: &Pipeline, tissue: String) -> Result<DataFrame, Error> {
    INNER.fetch_add(1, Ordering::SeqCst);
    Ok(df!("gene_symbol" => ["USH2A"], "tissue" => [tissue])?)
}

/// Calls another checkpointed function: that call is this checkpoint's input.
#[checkpointed(table = "retina_report")]
fn retina_report(ctx: &Pipeline) -> Result<DataFrame, Error> {
    OUTER.fetch_add(1, Ordering::SeqCst);
    let expression = fetch_expression(ctx, "retina".to_owned())?;
    Ok(expression.select(["gene_symbol"])?)
}

#[test]
fn a_checkpoint_made_from_a_nested_call_is_stale_when_that_table_changes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let p = run(dir);
    retina_report(&p).unwrap();
    assert_eq!(
        (OUTER.load(Ordering::SeqCst), INNER.load(Ordering::SeqCst)),
        (1, 1)
    );
    let info = usher_pipeline::CheckpointStore::checkpoint(p.store(), "retina_report")
        .unwrap()
        .unwrap();
    assert_eq!(
        info.lineage.inputs.keys().collect::<Vec<_>>(),
        ["expression"],
        "the nested call is recorded"
    );

    let p = run(dir);
    retina_report(&p).unwrap();
    assert_eq!(
        (OUTER.load(Ordering::SeqCst), INNER.load(Ordering::SeqCst)),
        (1, 1)
    );

    // The inner table recomputed by another call, with other arguments.
    let p = run(dir);
    fetch_expression(&p, "cochlea".to_owned()).unwrap();
    retina_report(&p).unwrap();
    assert_eq!(
        (OUTER.load(Ordering::SeqCst), INNER.load(Ordering::SeqCst)),
        (2, 2),
        "the report reran, and its nested call restored the retina table from the history"
    );
    let (how, why) = outcome(&p, "retina_report");
    assert_eq!(how, "stale");
    assert!(
        why.as_deref()
            .unwrap()
            .starts_with("input `expression` changed (data "),
        "{why:?}"
    );
}

// --- Config fields ---------------------------------------------------------------------------

static GNOMAD: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "gnomad_release", config(versions.gnomad_version))]
fn fetch_gnomad(ctx: &Pipeline) -> Result<DataFrame, Error> {
    GNOMAD.fetch_add(1, Ordering::SeqCst);
    let version = ctx.config().unwrap().versions.gnomad_version.clone();
    Ok(df!("version" => [version])?)
}

#[test]
fn a_config_field_in_the_key_recomputes_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    fetch_gnomad(&run_with(dir, "v4.0")).unwrap();
    fetch_gnomad(&run_with(dir, "v4.0")).unwrap();
    assert_eq!(GNOMAD.load(Ordering::SeqCst), 1);
    let p = run_with(dir, "v4.1");
    fetch_gnomad(&p).unwrap();
    assert_eq!(GNOMAD.load(Ordering::SeqCst), 2);
    assert_eq!(
        outcome(&p, "gnomad_release"),
        (
            "stale".to_owned(),
            Some(r#"config `versions.gnomad_version` changed ("v4.0" -> "v4.1")"#.to_owned())
        )
    );
    // Without a config there is nothing to key on: a typed error, the body not run.
    let bare = Pipeline::new(
        PipelineStore::open(dir.join("bare.duckdb")).unwrap(),
        ProvenanceTracker::from_config(&config(dir, "v4.1"), None),
    );
    match fetch_gnomad(&bare) {
        Err(Error::NoConfig { table, field }) => {
            assert_eq!(
                (table.as_str(), field.as_str()),
                ("gnomad_release", "versions.gnomad_version")
            );
        }
        other => panic!("expected NoConfig, got {other:?}"),
    }
    assert_eq!(GNOMAD.load(Ordering::SeqCst), 2);
}

// --- A pipeline's own config type ----------------------------------------------------------

/// A lab's settings, its own type with nothing of usher's schema: only `model.threshold` keys
/// `variant_hits`; the other fields are in the config's hash, not in that step's key.
#[derive(Debug, Clone, Serialize)]
struct LabConfig {
    model: Model,
    cohort: Cohort,
    clinvar_release: String,
}

#[derive(Debug, Clone, Serialize)]
struct Model {
    threshold: f64,
    name: String,
}

#[derive(Debug, Clone, Serialize)]
struct Cohort {
    samples: u32,
}

impl Config for LabConfig {
    fn data_source_versions(&self) -> Map<String, Value> {
        let mut versions = Map::new();
        versions.insert("clinvar".into(), self.clinvar_release.clone().into());
        versions
    }
}

fn lab_config(threshold: f64) -> LabConfig {
    LabConfig {
        model: Model {
            threshold,
            name: "splice-v2".to_owned(),
        },
        cohort: Cohort { samples: 412 },
        clinvar_release: "2026-11".to_owned(),
    }
}

/// A run of the lab's pipeline: a new pipeline over the store of `dir`, with `config`.
fn lab_run(dir: &Path, config: &LabConfig) -> Pipeline<DefaultStore, LabConfig> {
    let store = PipelineStore::open(dir.join("lab.duckdb")).unwrap();
    Pipeline::with_config(store, config).unwrap()
}

static VARIANT_HITS: AtomicUsize = AtomicUsize::new(0);

/// The genes whose splice score reaches the model's threshold.
#[checkpointed(table = "variant_hits", config(model.threshold))]
fn fetch_variant_hits(ctx: &Pipeline<DefaultStore, LabConfig>) -> Result<DataFrame, Error> {
    VARIANT_HITS.fetch_add(1, Ordering::SeqCst);
    let threshold = ctx.config().unwrap().model.threshold;
    let scores = df!(
        "gene_symbol" => ["USH2A", "MYO7A", "CDH23"],
        "splice_score" => [0.91, 0.74, 0.55],
    )?;
    let kept = scores.column("splice_score")?.f64()?.gt_eq(threshold);
    Ok(scores.filter(&kept)?)
}

fn genes_of(frame: &DataFrame) -> Vec<String> {
    frame
        .column("gene_symbol")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|gene| gene.unwrap().to_owned())
        .collect()
}

#[test]
fn a_field_of_a_users_own_config_type_keys_the_step_and_no_other_field_does() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let first = lab_config(0.7);
    let p = lab_run(dir, &first);
    assert_eq!(
        genes_of(&fetch_variant_hits(&p).unwrap()),
        ["USH2A", "MYO7A"]
    );
    assert_eq!(VARIANT_HITS.load(Ordering::SeqCst), 1);
    assert_eq!(outcome(&p, "variant_hits").0, "miss");
    let details = p.provenance().steps()[0].details.clone().unwrap();
    assert_eq!(details["config"], json!({"model.threshold": 0.7}));

    // Every other field changed, nested or not: the config's hash differs, the key does not.
    let mut unrelated = lab_config(0.7);
    unrelated.model.name = "splice-v3".to_owned();
    unrelated.cohort.samples = 9000;
    unrelated.clinvar_release = "2027-01".to_owned();
    let p = lab_run(dir, &unrelated);
    assert_ne!(p.provenance().config_hash(), first.config_hash());
    assert_eq!(
        genes_of(&fetch_variant_hits(&p).unwrap()),
        ["USH2A", "MYO7A"]
    );
    assert_eq!(
        VARIANT_HITS.load(Ordering::SeqCst),
        1,
        "no keyed field changed: the body did not run"
    );
    assert_eq!(outcome(&p, "variant_hits"), ("hit".to_owned(), None));

    // The keyed field changed: stale, recomputed with the new value, and the reason says so.
    let p = lab_run(dir, &lab_config(0.9));
    assert_eq!(genes_of(&fetch_variant_hits(&p).unwrap()), ["USH2A"]);
    assert_eq!(VARIANT_HITS.load(Ordering::SeqCst), 2);
    assert_eq!(
        outcome(&p, "variant_hits"),
        (
            "stale".to_owned(),
            Some("config `model.threshold` changed (0.7 -> 0.9)".to_owned())
        )
    );
    // And back: the checkpoint holds 0.9 now, and the 0.7 version kept in the history is
    // restored rather than recomputed.
    let p = lab_run(dir, &lab_config(0.7));
    assert_eq!(
        genes_of(&fetch_variant_hits(&p).unwrap()),
        ["USH2A", "MYO7A"]
    );
    assert_eq!(VARIANT_HITS.load(Ordering::SeqCst), 2);
    assert_eq!(outcome(&p, "variant_hits"), ("restored".to_owned(), None));
    // Without a history, it is recomputed.
    let p = lab_run(dir, &lab_config(0.9)).with_keep(1);
    fetch_variant_hits(&p).unwrap();
    let p = lab_run(dir, &lab_config(0.7)).with_keep(1);
    assert_eq!(
        genes_of(&fetch_variant_hits(&p).unwrap()),
        ["USH2A", "MYO7A"]
    );
    assert_eq!(VARIANT_HITS.load(Ordering::SeqCst), 3);
}

/// An application's context lending a pipeline of the lab's config type.
struct LabApp {
    pipeline: Pipeline<DefaultStore, LabConfig>,
}

impl PipelineContext for LabApp {
    type Store = DefaultStore;
    type Config = LabConfig;
    fn pipeline(&self) -> &Pipeline<DefaultStore, LabConfig> {
        &self.pipeline
    }
}

static APP_HITS: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "app_variant_hits", context = app, config(model.threshold))]
async fn fetch_hits_in_app(app: &LabApp) -> Result<DataFrame, Error> {
    APP_HITS.fetch_add(1, Ordering::SeqCst);
    let threshold = app.pipeline.config().unwrap().model.threshold;
    Ok(df!("gene_symbol" => ["USH2A"], "threshold" => [threshold])?)
}

#[test]
fn an_application_context_of_a_users_config_type_keys_async_steps_too() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    let call = |config: &LabConfig| {
        let app = LabApp {
            pipeline: lab_run(dir.path(), config),
        };
        // Spawned: the call's future is `Send` with the lab's config in the context.
        let (frame, how) = runtime
            .block_on(runtime.spawn(async move {
                let frame = fetch_hits_in_app(&app).await.unwrap();
                (frame, outcome(&app.pipeline, "app_variant_hits").0)
            }))
            .unwrap();
        let threshold = frame.column("threshold").unwrap().f64().unwrap().get(0);
        (how, threshold.unwrap(), APP_HITS.load(Ordering::SeqCst))
    };
    assert_eq!(call(&lab_config(0.7)), ("miss".to_owned(), 0.7, 1));
    let mut unrelated = lab_config(0.7);
    unrelated.cohort.samples = 1;
    assert_eq!(call(&unrelated), ("hit".to_owned(), 0.7, 1));
    assert_eq!(call(&lab_config(0.8)), ("stale".to_owned(), 0.8, 2));
}

// --- Expiry ----------------------------------------------------------------------------------

static PUBMED: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "pubmed_counts", max_age = "30d")]
fn fetch_pubmed(ctx: &Pipeline) -> Result<DataFrame, Error> {
    PUBMED.fetch_add(1, Ordering::SeqCst);
    Ok(df!("gene_symbol" => ["USH2A"], "hits" => [412i64])?)
}

#[test]
fn a_checkpoint_older_than_max_age_is_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let at = |days: i64| {
        let now = chrono::Utc::now().naive_utc() + chrono::TimeDelta::days(days);
        run(dir).with_clock(move || now)
    };
    fetch_pubmed(&at(0)).unwrap();
    fetch_pubmed(&at(29)).unwrap();
    assert_eq!(PUBMED.load(Ordering::SeqCst), 1, "29 days old: still valid");
    let p = at(31);
    fetch_pubmed(&p).unwrap();
    assert_eq!(PUBMED.load(Ordering::SeqCst), 2);
    let (how, why) = outcome(&p, "pubmed_counts");
    assert_eq!(how, "stale");
    let why = why.unwrap();
    assert!(
        why.starts_with("expired: saved 31d") && why.ends_with("ago, max_age 30d"),
        "{why}"
    );
}

// --- Checks ----------------------------------------------------------------------------------

static HPA: AtomicUsize = AtomicUsize::new(0);

/// `rows` rows, the last without a gene symbol when `null_last`.
#[checkpointed(table = "hpa", skip(rows, null_last), check = usher_pipeline::checks::non_empty, check = has_gene_symbols)]
fn fetch_hpa(ctx: &Pipeline, rows: usize, null_last: bool) -> Result<DataFrame, Error> {
    HPA.fetch_add(1, Ordering::SeqCst);
    let mut genes: Vec<Option<&str>> = ["USH2A", "MYO7A"]
        .into_iter()
        .map(Some)
        .cycle()
        .take(rows)
        .collect();
    if null_last && let Some(last) = genes.last_mut() {
        *last = None;
    }
    Ok(df!("gene_symbol" => genes)?)
}

#[derive(Debug, thiserror::Error)]
#[error("{0} rows have no gene symbol")]
struct MissingSymbols(usize);

fn has_gene_symbols(frame: &DataFrame) -> Result<(), MissingSymbols> {
    match frame.column("gene_symbol").map(|c| c.null_count()) {
        Ok(0) => Ok(()),
        Ok(n) => Err(MissingSymbols(n)),
        Err(_) => Err(MissingSymbols(frame.height())),
    }
}

#[test]
fn a_frame_that_fails_a_check_is_not_saved_and_is_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = run(dir.path());
    match fetch_hpa(&p, 0, false) {
        Err(Error::CheckFailed {
            table,
            check,
            message,
        }) => {
            assert_eq!(table, "hpa");
            assert_eq!(check, "usher_pipeline::checks::non_empty");
            assert_eq!(message, "the frame has no rows");
        }
        other => panic!("expected CheckFailed, got {other:?}"),
    }
    assert!(!p.store().has_checkpoint("hpa").unwrap(), "nothing saved");
    match fetch_hpa(&p, 3, true) {
        Err(Error::CheckFailed { check, message, .. }) => {
            assert_eq!(
                (check.as_str(), message.as_str()),
                ("has_gene_symbols", "1 rows have no gene symbol")
            );
        }
        other => panic!("expected CheckFailed, got {other:?}"),
    }
    assert!(!p.store().has_checkpoint("hpa").unwrap(), "nothing saved");
    fetch_hpa(&p, 2, false).unwrap();
    assert_eq!(
        HPA.load(Ordering::SeqCst),
        3,
        "the failed frames were not cached"
    );
    fetch_hpa(&p, 0, false).unwrap();
    assert_eq!(HPA.load(Ordering::SeqCst), 3, "then a hit");
}

// --- Nested async calls ----------------------------------------------------------------------

static ASYNC_INNER: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "async_expression")]
async fn fetch_expression_async(ctx: &Pipeline, tissue: String) -> Result<DataFrame, Error> {
    ASYNC_INNER.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    Ok(df!("gene_symbol" => ["USH2A"], "tissue" => [tissue])?)
}

/// Awaits its nested call across polls (the sleep hands the task back to the runtime, which
/// may resume it on another thread).
#[checkpointed(table = "async_report")]
async fn async_report(ctx: &Pipeline, tissue: String) -> Result<DataFrame, Error> {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let expression = fetch_expression_async(ctx, tissue).await?;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    Ok(expression.select(["gene_symbol"])?)
}

#[test]
fn nested_async_calls_are_inputs_too() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let p = std::sync::Arc::new(run(dir.path()));
    // Spawned, so the report's future is polled by the runtime's workers.
    let task = {
        let p = std::sync::Arc::clone(&p);
        runtime.spawn(async move { async_report(&p, "retina".to_owned()).await })
    };
    runtime.block_on(task).unwrap().unwrap();
    let info = usher_pipeline::CheckpointStore::checkpoint(p.store(), "async_report")
        .unwrap()
        .unwrap();
    assert_eq!(
        info.lineage.inputs.keys().collect::<Vec<_>>(),
        ["async_expression"]
    );
    runtime
        .block_on(fetch_expression_async(&p, "cochlea".to_owned()))
        .unwrap();
    // The report's own key (tissue = retina) is unchanged, its input is not.
    let p = run(dir.path());
    runtime
        .block_on(async_report(&p, "retina".to_owned()))
        .unwrap();
    let (how, why) = outcome(&p, "async_report");
    assert_eq!(how, "stale");
    assert!(
        why.as_deref()
            .unwrap()
            .starts_with("input `async_expression` changed"),
        "{why:?}"
    );
    // The nested call's retina version came back from the history.
    assert_eq!(ASYNC_INNER.load(Ordering::SeqCst), 2);
}

// --- Status from the store alone -------------------------------------------------------------

static STATUS_RUNS: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "status_constraint")]
fn status_constraint(ctx: &Pipeline, min_depth: i64) -> Result<DataFrame, Error> {
    STATUS_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(df!("gene_symbol" => ["USH2A"], "min_depth" => [min_depth])?)
}

#[checkpointed(table = "status_scores", reads(status_constraint))]
fn status_scores(ctx: &Pipeline) -> Result<DataFrame, Error> {
    STATUS_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(df!("gene_symbol" => ["USH2A"], "score" => [0.5])?)
}

#[checkpointed(table = "status_pubmed", max_age = "12h")]
fn status_pubmed(ctx: &Pipeline) -> Result<DataFrame, Error> {
    STATUS_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(df!("gene_symbol" => ["USH2A"], "hits" => [3i64])?)
}

#[checkpointed(table = "status_literature", skip(genes), batches = done)]
fn status_literature(ctx: &Pipeline, genes: &[&str]) -> Result<DataFrame, Error> {
    for batch in done.pending(genes, 1)? {
        if batch[0] == "CDH23" {
            return Err(Error::Format("interrupted".to_owned()));
        }
        done.save(&batch, &df!("gene_symbol" => batch.as_slice())?)?;
    }
    done.finish()
}

#[test]
fn status_says_what_would_recompute_without_running_anything() {
    use usher_pipeline::{CheckpointState, StaleReason};
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let p = run(dir);
    status_constraint(&p, 20).unwrap();
    status_scores(&p).unwrap();
    status_pubmed(&p).unwrap();
    assert!(status_literature(&p, &["USH2A", "MYO7A", "CDH23"]).is_err());
    p.store()
        .save_dataframe("hand_made", &df!("a" => [1]).unwrap(), "by hand")
        .unwrap();
    status_constraint(&p, 30).unwrap();
    let runs = STATUS_RUNS.load(Ordering::SeqCst);

    let later = chrono::Utc::now().naive_utc() + chrono::TimeDelta::hours(13);
    let status = run(dir).with_clock(move || later).status().unwrap();
    assert_eq!(STATUS_RUNS.load(Ordering::SeqCst), runs, "nothing ran");
    let state = |table: &str| {
        status
            .iter()
            .find(|s| s.table == table)
            .unwrap_or_else(|| panic!("{table} in {status:?}"))
            .clone()
    };
    assert_eq!(state("status_constraint").state, CheckpointState::Valid);
    assert!(state("status_constraint").is_valid());
    match &state("status_scores").state {
        CheckpointState::Stale(why) => {
            assert!(
                matches!(&why[..], [StaleReason::InputChanged { input, .. }] if input == "status_constraint"),
                "{why:?}"
            );
            assert!(
                why[0]
                    .to_string()
                    .starts_with("input `status_constraint` changed (data ")
            );
        }
        other => panic!("scores: {other:?}"),
    }
    match &state("status_pubmed").state {
        CheckpointState::Stale(why) => {
            assert!(
                matches!(why[..], [StaleReason::Expired { max_age_seconds: 43_200, age_seconds }] if age_seconds >= 13 * 3_600),
                "{why:?}"
            );
        }
        other => panic!("pubmed: {other:?}"),
    }
    assert_eq!(state("hand_made").state, CheckpointState::Unkeyed);
    let literature = state("status_literature");
    assert_eq!(literature.state, CheckpointState::Partial);
    assert_eq!(
        literature.pending.as_ref().map(|p| (p.items, p.total)),
        Some((2, Some(3))),
        "2 of 3 items"
    );
    assert_eq!(
        status.iter().map(|s| s.table.as_str()).collect::<Vec<_>>(),
        [
            "hand_made",
            "status_constraint",
            "status_literature",
            "status_pubmed",
            "status_scores"
        ]
    );
}
