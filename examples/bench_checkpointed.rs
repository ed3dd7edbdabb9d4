//! Overhead of a `#[checkpointed]` hit on a 1,000-row table, against the same hit written by
//! hand with the store (`has_checkpoint` + `load_dataframe`), on one open store.
//!
//! ```sh
//! cargo run --release --example bench_checkpointed -- --calls 2000
//! ```
//!
//! Prints the median and 90th percentile per call of both, interleaved so both see the same
//! machine state, and the difference. The attribute's hit does more than the hand-written one:
//! it reads the key (one joined metadata query instead of a count), compares it, and records
//! a provenance step.

use std::time::Instant;

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{Pipeline, PipelineStore, ProvenanceTracker, checkpointed};

#[checkpointed(table = "genes")]
fn fetch_genes(ctx: &Pipeline, release: u32) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, release))
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
    let pipeline = Pipeline::new(store, ProvenanceTracker::from_config(&config, None));
    fetch_genes(&pipeline, 113)?; // the miss that saves the checkpoint

    let mut by_hand = Vec::with_capacity(calls);
    let mut attribute = Vec::with_capacity(calls);
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
        if i >= 50 {
            // The first 50 warm caches (prepared statements, allocator).
            by_hand.push(hand);
            attribute.push(attr);
        }
    }
    by_hand.sort_by(f64::total_cmp);
    attribute.sort_by(f64::total_cmp);
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
    Ok(())
}
