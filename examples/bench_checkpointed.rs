//! Overhead of a `#[checkpointed]` hit on a 1,000-row table, against the same hit written by
//! hand with the store (`has_checkpoint` + `load_dataframe`), on one open store; and of a hit
//! that also checks lineage: two declared inputs (`reads(...)`) and a 1,000-row `DataFrame`
//! argument (fingerprinted on every call).
//!
//! ```sh
//! cargo run --release --example bench_checkpointed -- --calls 2000
//! ```
//!
//! Prints the median and 90th percentile per call of all three, interleaved so all see the
//! same machine state, and the ratios. The attribute's hit does more than the hand-written one:
//! it reads the key (one joined metadata query instead of a count), compares it, and records
//! a provenance step.

use std::time::Instant;

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{Pipeline, PipelineStore, ProvenanceTracker, checkpointed};

#[checkpointed(table = "genes")]
fn fetch_genes(ctx: &Pipeline, release: u32) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, release))
}

/// A hit whose validity also depends on two stored tables and a frame argument.
#[checkpointed(table = "scores", reads(genes, by_hand))]
fn score_genes(ctx: &Pipeline, constraint: &DataFrame) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(constraint.head(Some(1_000)))
}

fn frame(n: usize, release: u32) -> DataFrame {
    let ids: Vec<String> = (0..n).map(|i| format!("ENSG{i:011}")).collect();
    let symbols: Vec<String> = (0..n).map(|i| format!("SYM{i}")).collect();
    let values: Vec<Option<f64>> = (0..n)
        .map(|i| (i % 20 != 0).then_some(i as f64 / 7.0))
        .collect();
    let release: Vec<i64> = vec![i64::from(release); n];
    let flags: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
    df!("id" => ids, "symbol" => symbols, "value" => values, "release" => release, "flag" => flags)
        .expect("valid frame")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = match std::env::args().skip_while(|a| a != "--calls").nth(1) {
        Some(v) => v.parse()?,
        None => 2000,
    };
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir: {d}/data\ncache_dir: {d}/cache\nduckdb_path: {d}/bench.duckdb\nversions:\n  ensembl_release: 113\napi: {{}}\nscoring: {{}}\n",
            d = dir.path().display()
        ),
    )?;
    let config = usher_pipeline::PipelineConfig::load(&config_path)?;
    let store = PipelineStore::from_config(&config)?;
    store.save_dataframe("by_hand", &frame(1_000, 113), "by hand")?;
    let pipeline: Pipeline =
        Pipeline::new(store.into(), ProvenanceTracker::from_config(&config, None));
    fetch_genes(&pipeline, 113)?; // the miss that saves the checkpoint
    let constraint = frame(1_000, 4);
    score_genes(&pipeline, &constraint)?;

    let mut by_hand = Vec::with_capacity(calls);
    let mut attribute = Vec::with_capacity(calls);
    let mut lineage = Vec::with_capacity(calls);
    let store = pipeline.store();
    for i in 0..calls + 50 {
        let t = Instant::now();
        let df = if store.has_checkpoint("by_hand")? {
            store.load_dataframe("by_hand")?
        } else {
            None
        };
        let hand = t.elapsed().as_secs_f64() * 1e6;
        assert_eq!(df.map(|d| d.height()), Some(1_000));

        let t = Instant::now();
        let df = fetch_genes(&pipeline, 113)?;
        let attr = t.elapsed().as_secs_f64() * 1e6;
        assert_eq!(df.height(), 1_000);

        let t = Instant::now();
        let df = score_genes(&pipeline, &constraint)?;
        let with_lineage = t.elapsed().as_secs_f64() * 1e6;
        assert_eq!(df.height(), 1_000);
        if i >= 50 {
            // The first 50 warm caches (prepared statements, allocator).
            by_hand.push(hand);
            attribute.push(attr);
            lineage.push(with_lineage);
        }
    }
    let hits = pipeline
        .provenance()
        .steps()
        .iter()
        .filter(|s| s.details.as_ref().is_some_and(|d| d["outcome"] == "hit"))
        .count();
    assert_eq!(hits, 2 * (calls + 50), "every timed call was a hit");
    by_hand.sort_by(f64::total_cmp);
    attribute.sort_by(f64::total_cmp);
    lineage.sort_by(f64::total_cmp);
    let (h50, a50) = (percentile(&by_hand, 0.5), percentile(&attribute, 0.5));
    println!("calls={calls} rows=1000");
    println!(
        "by_hand_us median={h50:.0} p90={:.0}",
        percentile(&by_hand, 0.9)
    );
    println!(
        "checkpointed_us median={a50:.0} p90={:.0}",
        percentile(&attribute, 0.9)
    );
    println!("overhead_us median={:.0} ratio={:.2}", a50 - h50, a50 / h50);
    let l50 = percentile(&lineage, 0.5);
    println!(
        "lineage_hit_us median={l50:.0} p90={:.0} (reads 2 tables, 1,000-row frame argument)",
        percentile(&lineage, 0.9)
    );
    println!("lineage_vs_checkpointed ratio={:.2}", l50 / a50);
    Ok(())
}
