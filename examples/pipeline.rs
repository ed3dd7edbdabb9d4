//! A miniature of the gene-prioritisation pipeline: expensive fetch steps made restartable by
//! `#[checkpointed]`, a checkpointed scoring step in SQL that follows its inputs, a Parquet
//! output with its provenance sidecar.
//!
//! ```sh
//! cargo run --example pipeline                      # first run fetches (a delay stands in for
//!                                                   # the downloads); run it again: instant
//! cargo run --example pipeline -- --min-depth 30    # another argument: that step reruns, and
//!                                                   # the scoring made from its table
//! cargo run --example pipeline -- --min-depth 20    # back again: both restored from the
//!                                                   # history, nothing downloaded
//! USHER_FORCE=go_annotation cargo run --example pipeline   # force one step: identical data,
//!                                                         # so the scoring is not redone
//! ```
//!
//! The literature step saves its progress in batches: interrupt it (Ctrl-C) and run again, and
//! it resumes after the last finished batch. On a terminal a progress bar follows it; `-v`
//! prints the library's log events.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../runtime/cli/terminal.rs"]
mod terminal;

use usher_pipeline::CheckpointStore;
use usher_pipeline::polars::prelude::*;
use usher_pipeline::{Pipeline, PipelineConfig, checkpointed};

/// Stands in for the download a real fetch step does.
const FAKE_DOWNLOAD: Duration = Duration::from_millis(1500);

/// What a fetch step can fail with: its own problems, or the store's.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Store(#[from] usher_pipeline::Error),
    #[error("reading {path}: {message}")]
    Source { path: PathBuf, message: String },
    #[error("the pipeline has no config to read the scoring weights from")]
    NoConfig,
}

/// gnomAD v4.1 constraint (LOEUF) of the genes covered at `min_depth` or more. `min_depth` is
/// part of the checkpoint key: another value recomputes; the data directory is not.
#[checkpointed(table = "gnomad_constraint", skip(data))]
fn fetch_gnomad_constraint(
    ctx: &Pipeline,
    data: &Path,
    min_depth: i64,
) -> Result<DataFrame, FetchError> {
    println!("  downloading gnomAD constraint (min_depth {min_depth})...");
    std::thread::sleep(FAKE_DOWNLOAD);
    let path = data.join("gnomad_constraint.tsv");
    let frame = read_tsv(
        &path,
        &[
            ("loeuf", DataType::Float64),
            ("mean_depth", DataType::Int64),
        ],
    )?;
    let covered = frame
        .column("mean_depth")
        .and_then(|c| Ok(c.i64()?.gt_eq(min_depth)))
        .map_err(|e| source_error(&path, e))?;
    frame.filter(&covered).map_err(|e| source_error(&path, e))
}

/// GO annotation with a cilia flag.
#[checkpointed(table = "go_annotation", skip(data))]
fn fetch_go_annotation(ctx: &Pipeline, data: &Path) -> Result<DataFrame, FetchError> {
    println!("  downloading GO annotation...");
    std::thread::sleep(FAKE_DOWNLOAD);
    read_tsv(
        &data.join("go_annotation.tsv"),
        &[("cilia_related", DataType::Boolean)],
    )
}

/// PubMed hit counts per gene, searched in batches of 5 genes (the real step runs six searches
/// for each of ~20,000 genes). Each finished batch is saved: a killed run resumes.
#[checkpointed(table = "literature", skip(data, genes), batches = done)]
fn fetch_literature(
    ctx: &Pipeline,
    data: &Path,
    genes: &[String],
) -> Result<DataFrame, FetchError> {
    let path = data.join("pubmed_counts.tsv");
    let counts = read_tsv(
        &path,
        &[
            ("usher_hits", DataType::Int64),
            ("cilia_hits", DataType::Int64),
        ],
    )?;
    let pending = done.pending(genes, 5)?;
    if done.finished()? > 0 {
        println!("  resuming: {} genes already searched", done.finished()?);
    }
    // On a terminal a progress bar follows the batches (the pipeline's `with_progress`).
    println!(
        "  searching PubMed in {} batches of 5 genes...",
        pending.len()
    );
    for batch in &pending {
        std::thread::sleep(FAKE_DOWNLOAD / 3);
        let mask: BooleanChunked = counts
            .column("gene_id")
            .and_then(|c| c.str().cloned())
            .map_err(|e| source_error(&path, e))?
            .iter()
            .map(|id| id.is_some_and(|id| batch.iter().any(|g| g == id)))
            .collect();
        let rows = counts.filter(&mask).map_err(|e| source_error(&path, e))?;
        done.save(batch, &rows)?;
    }
    Ok(done.finish()?)
}

/// Candidate genes scored in DuckDB over the two fetched tables, the weights bound as
/// parameters. Its inputs are the tables it reads and the config's weights: a new
/// `--min-depth` changes the constraint table and so rescores; a forced re-download that
/// brings identical data does not. An empty result is refused rather than saved.
#[checkpointed(
    table = "candidates",
    reads(gnomad_constraint, go_annotation),
    config(scoring.gnomad, scoring.annotation),
    check = usher_pipeline::checks::non_empty
)]
fn score_candidates(ctx: &Pipeline) -> Result<DataFrame, FetchError> {
    let weights = ctx
        .config()
        .map(|c| &c.scoring)
        .ok_or(FetchError::NoConfig)?;
    Ok(ctx.store().query(
        "SELECT c.gene_id, c.symbol, c.loeuf, a.cilia_related, \
                round((1 - least(c.loeuf, 2.0) / 2.0) * ? + CASE WHEN a.cilia_related THEN ? ELSE 0 END, 4) AS score \
         FROM gnomad_constraint c JOIN go_annotation a USING (gene_id) \
         WHERE c.loeuf IS NOT NULL ORDER BY score DESC, c.symbol",
        &[weights.gnomad.into(), weights.annotation.into()],
    )?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let min_depth = match std::env::args().skip_while(|a| a != "--min-depth").nth(1) {
        Some(v) => v.parse().map_err(|e| format!("--min-depth {v:?}: {e}"))?,
        None => 20,
    };
    // -v (or RUST_LOG=usher_pipeline=info) prints the library's log events on stderr.
    let verbose = std::env::args().filter(|a| a == "-v").count() as u8;
    terminal::init_logging(verbose);
    let config = PipelineConfig::load(root.join("examples/default.yaml"))?;
    config.scoring.validate_sum()?;
    // Opens the store the config names; USHER_FORCE / USHER_UNKEYED apply from the environment.
    // Long work (the literature loop) draws a progress bar on a terminal.
    let pipeline = Pipeline::from_config(&config)?.with_progress(terminal::Bars::new());
    println!(
        "config hash {}  store {}",
        &config.config_hash()[..16],
        pipeline.store().name()
    );

    let data = root.join("examples/data");
    let constraint = fetch_gnomad_constraint(&pipeline, &data, min_depth)?;
    report(&pipeline);
    let annotation = fetch_go_annotation(&pipeline, &data)?;
    report(&pipeline);
    let genes: Vec<String> = annotation
        .column("gene_id")?
        .str()?
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    let literature = fetch_literature(&pipeline, &data, &genes)?;
    report(&pipeline);
    println!(
        "{} constraint rows, {} annotation rows, {} literature rows",
        constraint.height(),
        annotation.height(),
        literature.height()
    );

    // Scoring is a checkpointed step too: it reads both tables, so it reruns only when either
    // changed (run with another --min-depth), or when the weights in the config change.
    let candidates = score_candidates(&pipeline)?;
    report(&pipeline);
    let store = pipeline.store();

    let output = config.data_dir.join("output/candidates.parquet");
    store.export_parquet("candidates", &output)?;
    let sidecar = pipeline.provenance().save_sidecar(&output)?;
    pipeline.save_provenance()?;
    println!("\ntop candidates:\n{}", candidates.head(Some(5)));
    println!("wrote {} and {}", output.display(), sidecar.display());
    println!("finished in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Prints what the last checkpointed call did, from its provenance step.
fn report(pipeline: &Pipeline) {
    let Some(step) = pipeline.provenance().steps().pop() else {
        return;
    };
    let d = step.details.unwrap_or_default();
    let text = |k: &str| {
        d.get(k).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let outcome = match text("outcome").as_deref() {
        Some("hit") => "checkpoint hit, body skipped".to_owned(),
        Some("restored") => format!(
            "restored version {} from the history, body skipped",
            text("restored_version").unwrap_or_default()
        ),
        Some("miss") => "no checkpoint: fetched and saved".to_owned(),
        Some(other) => format!(
            "{other}: recomputed ({})",
            text("reason").unwrap_or_default()
        ),
        None => String::new(),
    };
    let config = text("config")
        .map(|c| format!(", config {c}"))
        .unwrap_or_default();
    println!(
        "{:<18} {outcome}  {} rows, {} ms, key {}{config}",
        text("table").unwrap_or_default(),
        text("rows").unwrap_or_default(),
        text("duration_ms").unwrap_or_default(),
        text("arguments").unwrap_or_default(),
    );
}

fn source_error(path: &Path, e: impl std::fmt::Display) -> FetchError {
    FetchError::Source {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// A tab-separated file as a frame: every column a string unless `types` says otherwise; empty
/// cells are nulls.
fn read_tsv(path: &Path, types: &[(&str, DataType)]) -> Result<DataFrame, FetchError> {
    let text = std::fs::read_to_string(path).map_err(|e| source_error(path, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| source_error(path, "empty file"))?
        .split('\t')
        .collect();
    let rows: Vec<Vec<&str>> = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    let columns = header
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let cells: Vec<Option<&str>> = rows
                .iter()
                .map(|r| r.get(i).copied().filter(|c| !c.is_empty()))
                .collect();
            let s = Series::new((*name).into(), cells);
            match types.iter().find(|(n, _)| n == name) {
                Some((_, dtype)) if *dtype == DataType::Boolean => {
                    let values: Vec<Option<bool>> =
                        s.str()?.iter().map(|v| v.map(|v| v == "true")).collect();
                    Ok(Series::new((*name).into(), values).into_column())
                }
                Some((_, dtype)) => Ok(s.strict_cast(dtype)?.into_column()),
                None => Ok(s.into_column()),
            }
        })
        .collect::<PolarsResult<Vec<Column>>>()
        .map_err(|e| source_error(path, e))?;
    DataFrame::new_infer_height(columns).map_err(|e| source_error(path, e))
}
