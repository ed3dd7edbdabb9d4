//! Overhead of a `#[checkpointed]` hit on a 1,000-row table, against the same hit written by
//! hand with the store (`has_checkpoint` + `load_dataframe`), on one open store; of a hit
//! that also checks lineage: two declared inputs (`reads(...)`) and a 1,000-row `DataFrame`
//! argument (fingerprinted on every call); and of the last step of a 10-deep chain (each step
//! reads the one before), whose hit judges every step above it (staleness is transitive),
//! beside a step with a single input.
//!
//! ```sh
//! cargo run --release --example bench_checkpointed -- --calls 2000
//! ```
//!
//! Prints the median and 90th percentile per call of all three, interleaved so all see the
//! same machine state, and the ratios. Then the hit once more while another thread of the same
//! pipeline saves a `--save-rows` table (3,000,000 by default) over and over, beside the idle
//! figure: reads run on connections of their own, so they do not wait for the save. The attribute's hit does more than the hand-written one:
//! it reads the key (one joined metadata query instead of a count), compares it, and records
//! a provenance step.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{CheckpointStore, Pipeline, PipelineStore, ProvenanceTracker, checkpointed};

#[checkpointed(table = "genes")]
fn fetch_genes(ctx: &Pipeline, release: u32) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, release))
}

/// A hit whose validity also depends on two stored tables and a frame argument.
#[checkpointed(table = "scores", reads(genes, by_hand))]
fn score_genes(ctx: &Pipeline, constraint: &DataFrame) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(constraint.head(Some(1_000)))
}

/// One input: the hit compares `genes` and judges it (it has no inputs of its own).
#[checkpointed(table = "single", reads(genes))]
fn single(ctx: &Pipeline) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, 1))
}

// A chain of ten: `deep_10`'s hit judges all nine steps above it.
#[checkpointed(table = "deep_1", reads(genes))]
fn deep_1(ctx: &Pipeline) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, 1))
}
#[checkpointed(table = "deep_2", reads(deep_1))]
fn deep_2(ctx: &Pipeline) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, 2))
}
#[checkpointed(table = "deep_3", reads(deep_2))]
fn deep_3(ctx: &Pipeline) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, 3))
}
#[checkpointed(table = "deep_4", reads(deep_3))]
fn deep_4(ctx: &Pipeline) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, 4))
}
#[checkpointed(table = "deep_5", reads(deep_4))]
fn deep_5(ctx: &Pipeline) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, 5))
}
#[checkpointed(table = "deep_6", reads(deep_5))]
fn deep_6(ctx: &Pipeline) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, 6))
}
#[checkpointed(table = "deep_7", reads(deep_6))]
fn deep_7(ctx: &Pipeline) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, 7))
}
#[checkpointed(table = "deep_8", reads(deep_7))]
fn deep_8(ctx: &Pipeline) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, 8))
}
#[checkpointed(table = "deep_9", reads(deep_8))]
fn deep_9(ctx: &Pipeline) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, 9))
}
#[checkpointed(table = "deep_10", reads(deep_9))]
fn deep_10(ctx: &Pipeline) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(frame(1_000, 10))
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

/// The value after `flag` on the command line, or `default`.
fn arg(flag: &str, default: usize) -> Result<usize, std::num::ParseIntError> {
    match std::env::args().skip_while(|a| a != flag).nth(1) {
        Some(v) => v.parse(),
        None => Ok(default),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls = arg("--calls", 2000)?;
    let save_rows = arg("--save-rows", 3_000_000)?;
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
    let pipeline: Pipeline = Pipeline::new(store, ProvenanceTracker::from_config(&config, None));
    fetch_genes(&pipeline, 113)?; // the miss that saves the checkpoint
    let constraint = frame(1_000, 4);
    score_genes(&pipeline, &constraint)?;
    single(&pipeline)?;
    for step in [
        deep_1, deep_2, deep_3, deep_4, deep_5, deep_6, deep_7, deep_8, deep_9, deep_10,
    ] {
        step(&pipeline)?;
    }

    let mut by_hand = Vec::with_capacity(calls);
    let mut attribute = Vec::with_capacity(calls);
    let mut lineage = Vec::with_capacity(calls);
    let mut one_input = Vec::with_capacity(calls);
    let mut chain = Vec::with_capacity(calls);
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

        let t = Instant::now();
        let df = single(&pipeline)?;
        let one = t.elapsed().as_secs_f64() * 1e6;
        assert_eq!(df.height(), 1_000);

        let t = Instant::now();
        let df = deep_10(&pipeline)?;
        let deep = t.elapsed().as_secs_f64() * 1e6;
        assert_eq!(df.height(), 1_000);
        if i >= 50 {
            // The first 50 warm caches (prepared statements, allocator).
            by_hand.push(hand);
            attribute.push(attr);
            lineage.push(with_lineage);
            one_input.push(one);
            chain.push(deep);
        }
    }
    let hits = pipeline
        .provenance()
        .steps()
        .iter()
        .filter(|s| s.details.as_ref().is_some_and(|d| d["outcome"] == "hit"))
        .count();
    assert_eq!(hits, 4 * (calls + 50), "every timed call was a hit");
    for timings in [
        &mut by_hand,
        &mut attribute,
        &mut lineage,
        &mut one_input,
        &mut chain,
    ] {
        timings.sort_by(f64::total_cmp);
    }
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
    let (o50, d50) = (percentile(&one_input, 0.5), percentile(&chain, 0.5));
    println!(
        "single_input_hit_us median={o50:.0} p90={:.0} (reads 1 table)",
        percentile(&one_input, 0.9)
    );
    println!(
        "chain_10_hit_us median={d50:.0} p90={:.0} (last of 10 steps, each reading the one before)",
        percentile(&chain, 0.9)
    );
    println!("chain_vs_single ratio={:.2}", d50 / o50);

    // The same hit while another thread saves a big table, over and over.
    let big = frame(save_rows, 1);
    let (stop, saves) = (AtomicBool::new(false), AtomicUsize::new(0));
    let mut beside = Vec::with_capacity(calls);
    std::thread::scope(|s| -> Result<(), usher_pipeline::Error> {
        let saver = s.spawn(|| -> Result<(), usher_pipeline::Error> {
            while !stop.load(SeqCst) {
                store.save_dataframe("busy", &big, "saved beside the hits")?;
                saves.fetch_add(1, SeqCst);
            }
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(20)); // the first save under way
        // The hits of at least two whole saves: `calls` of them, or as many as four saves
        // allow (a store whose reads wait for the saves serves few).
        let enough = |hits: usize, saves: usize| saves >= 2 && (hits >= calls || saves >= 4);
        while !enough(beside.len(), saves.load(SeqCst)) && !saver.is_finished() {
            let t = Instant::now();
            let df = fetch_genes(&pipeline, 113)?;
            beside.push(t.elapsed().as_secs_f64() * 1e6);
            assert_eq!(df.height(), 1_000);
        }
        stop.store(true, SeqCst);
        saver.join().expect("the saving thread does not panic")
    })?;
    beside.sort_by(f64::total_cmp);
    let line = |name: &str, t: &[f64]| {
        println!(
            "{name} median={:.0} p90={:.0} p99={:.0} max={:.0} (n={})",
            percentile(t, 0.5),
            percentile(t, 0.9),
            percentile(t, 0.99),
            t[t.len() - 1],
            t.len()
        )
    };
    line("hit_idle_us", &attribute);
    line("hit_beside_save_us", &beside);
    println!(
        "beside_save: {} saves of {save_rows} rows by another thread; median ratio={:.2}",
        saves.load(SeqCst),
        percentile(&beside, 0.5) / a50
    );
    Ok(())
}
