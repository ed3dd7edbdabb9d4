//! A miniature of the gene-prioritisation pipeline: two expensive "fetch" steps checkpointed in
//! the DuckDB store, a scoring step in SQL, a Parquet output with its provenance sidecar.
//!
//! Run it twice: the first run "downloads" (a visible delay stands in for hours of API calls),
//! the second finds the checkpoints and is instant.
//!
//! ```sh
//! cargo run --example pipeline                # config/default.yaml, store in data/
//! cargo run --example pipeline -- --fresh     # delete the checkpoints first
//! ```

use std::error::Error;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use usher_pipeline::polars::prelude::*;
use usher_pipeline::{PipelineConfig, PipelineStore, ProvenanceTracker};

/// Stands in for the download a real fetch step does.
const FAKE_DOWNLOAD: Duration = Duration::from_millis(1500);

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = PipelineConfig::load(root.join("config/default.yaml"))?;
    config.scoring.validate_sum()?;
    let store = PipelineStore::from_config(&config)?;
    let provenance = ProvenanceTracker::from_config(&config, None);
    println!(
        "config {}  hash {}",
        root.join("config/default.yaml").display(),
        &config.config_hash()[..16]
    );
    println!("store  {}", store.path().display());

    if std::env::args().any(|a| a == "--fresh") {
        for table in ["gnomad_constraint", "go_annotation", "candidates"] {
            store.delete_checkpoint(table)?;
        }
    }

    let data = root.join("examples/data");
    let constraint = checkpointed(
        &store,
        &provenance,
        "gnomad_constraint",
        "gnomAD v4.1 constraint (LOEUF)",
        || {
            read_tsv(
                &data.join("gnomad_constraint.tsv"),
                &[
                    ("loeuf", DataType::Float64),
                    ("mean_depth", DataType::Int64),
                ],
            )
        },
    )?;
    let annotation = checkpointed(
        &store,
        &provenance,
        "go_annotation",
        "GO annotation",
        || {
            read_tsv(
                &data.join("go_annotation.tsv"),
                &[("cilia_related", DataType::Boolean)],
            )
        },
    )?;
    println!(
        "loaded {} constraint rows, {} annotation rows",
        constraint.height(),
        annotation.height()
    );

    // Scoring runs in DuckDB over the checkpointed tables; the threshold is a bound parameter.
    let started = Instant::now();
    let candidates = store.query(
        "SELECT c.gene_id, c.symbol, c.loeuf, a.cilia_related, \
                round((1 - least(c.loeuf, 2.0) / 2.0) * ? + CASE WHEN a.cilia_related THEN ? ELSE 0 END, 4) AS score \
         FROM gnomad_constraint c JOIN go_annotation a USING (gene_id) \
         WHERE c.loeuf IS NOT NULL AND c.mean_depth >= ? ORDER BY score DESC, c.symbol",
        &[config.scoring.gnomad.into(), config.scoring.annotation.into(), 20i64.into()],
    )?;
    store.save_dataframe(
        "candidates",
        &candidates,
        "candidate genes scored from constraint and annotation",
    )?;
    provenance.record_step(
        "score_candidates",
        Some(json!({"rows": candidates.height(), "min_depth": 20, "seconds": started.elapsed().as_secs_f64()}).as_object().cloned().unwrap_or_default()),
    );

    let output = config.data_dir.join("output/candidates.parquet");
    store.export_parquet("candidates", &output)?;
    let sidecar = provenance.save_sidecar(&output)?;
    provenance.save_to_store(&store)?;
    println!("\ntop candidates:\n{}", candidates.head(Some(5)));
    println!("wrote {} and {}", output.display(), sidecar.display());
    println!("\ncheckpoints (newest first):");
    for c in store.list_checkpoints()? {
        println!(
            "  {:<18} {:>4} rows  {}",
            c.table_name,
            c.row_count.unwrap_or(0),
            c.description.unwrap_or_default()
        );
    }
    Ok(())
}

/// Loads `table` if the store has a checkpoint for it; otherwise runs `fetch`, saves the result
/// and records the step. (The `#[checkpointed]` attribute does this for a whole function.)
fn checkpointed(
    store: &PipelineStore,
    provenance: &ProvenanceTracker,
    table: &str,
    description: &str,
    fetch: impl FnOnce() -> Result<DataFrame, Box<dyn Error>>,
) -> Result<DataFrame, Box<dyn Error>> {
    let started = Instant::now();
    if store.has_checkpoint(table)?
        && let Some(frame) = store.load_dataframe(table)?
    {
        println!(
            "{table:<18} checkpoint hit: {} rows in {:.1} ms",
            frame.height(),
            started.elapsed().as_secs_f64() * 1e3
        );
        provenance.record_step(
            format!("load_{table}"),
            Some(
                json!({"checkpoint": "hit", "rows": frame.height()})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        );
        return Ok(frame);
    }
    println!("{table:<18} no checkpoint: fetching...");
    std::thread::sleep(FAKE_DOWNLOAD);
    let frame = fetch()?;
    store.save_dataframe(table, &frame, description)?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{table:<18} fetched and saved {} rows in {seconds:.2} s",
        frame.height()
    );
    provenance.record_step(
        format!("fetch_{table}"),
        Some(
            json!({"checkpoint": "miss", "rows": frame.height(), "seconds": seconds})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ),
    );
    Ok(frame)
}

/// A tab-separated file as a frame: every column a string unless `types` says otherwise; empty
/// cells are nulls.
fn read_tsv(path: &Path, types: &[(&str, DataType)]) -> Result<DataFrame, Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty file")?.split('\t').collect();
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
        .collect::<PolarsResult<Vec<Column>>>()?;
    Ok(DataFrame::new_infer_height(columns)?)
}
