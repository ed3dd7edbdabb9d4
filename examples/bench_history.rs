//! History benchmark: what keeping earlier versions costs a save, and what a restore costs
//! beside the save it spares, on the DuckDB file store and (with `USHER_TEST_POSTGRES`) the
//! shared store, in one run.
//!
//! ```sh
//! cargo run --release --features postgres --example bench_history -- --rows 1000000
//! cargo run --release --features postgres --example bench_history -- --rows 10000000
//! ```
//!
//! Per store and round (`--rounds R`, default 3; medians printed): the save of a keyed frame
//! that replaces a keyed checkpoint, best of 3, keeping no history (`keep` 1: the old one is
//! dropped) and keeping it (`keep` 5: the old table renamed into the history, or the old file
//! kept); then a restore of the earlier version (the two swapped back and forth), best of 3.

use std::time::Instant;

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    CheckpointKey, CheckpointStore, Error, Lineage, PipelineStore, ProvenanceRecord, SharedStore,
};

#[path = "common/frame.rs"]
mod bench_frame;
use bench_frame::frame;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn key(n: i64) -> CheckpointKey {
    let mut arguments = serde_json::Map::new();
    arguments.insert("n".into(), n.into());
    CheckpointKey::new("bench", "version:1", arguments, serde_json::Map::new()).expect("a key")
}

fn record() -> ProvenanceRecord {
    ProvenanceRecord {
        version: "bench".into(),
        config_hash: "bench".into(),
        created_at: chrono::Utc::now().naive_utc(),
        steps_json: "[]".into(),
    }
}

/// One keyed save of `frame` under `key(n)`, keeping `keep` versions; its seconds.
fn save<S: CheckpointStore>(store: &S, df: &DataFrame, n: i64, keep: usize) -> Result<f64, Error> {
    let mut metadata = || Ok((Lineage::default(), record()));
    let now = chrono::Utc::now().naive_utc();
    let t = Instant::now();
    store.save_checkpoint_keeping("bench", df, "bench", &key(n), now, keep, &mut metadata)?;
    Ok(t.elapsed().as_secs_f64())
}

/// The store's figures for one round: (save keeping none, save keeping 5, restore), each the
/// best of 3, in seconds.
fn round<S: CheckpointStore>(store: &S, df: &DataFrame) -> Result<(f64, f64, f64), Error> {
    let (mut plain, mut kept, mut restore) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    save(store, df, 0, 1)?;
    for i in 0..3 {
        // Each replaces a keyed checkpoint, as a recomputation does.
        plain = plain.min(save(store, df, 10 + i, 1)?);
    }
    for i in 0..3 {
        kept = kept.min(save(store, df, 20 + i, 5)?);
    }
    for _ in 0..3 {
        let earlier = store
            .history("bench")?
            .into_iter()
            .find(|v| !v.current)
            .expect("an earlier version");
        let t = Instant::now();
        store
            .restore_version(&earlier, 5)?
            .expect("the version is there");
        restore = restore.min(t.elapsed().as_secs_f64());
    }
    Ok((plain, kept, restore))
}

fn report(name: &str, rows: usize, figures: &mut [(f64, f64, f64)]) {
    let mut plain: Vec<f64> = figures.iter().map(|f| f.0).collect();
    let mut kept: Vec<f64> = figures.iter().map(|f| f.1).collect();
    let mut restore: Vec<f64> = figures.iter().map(|f| f.2).collect();
    let mut overhead: Vec<f64> = figures.iter().map(|f| f.1 / f.0).collect();
    let (p, k, r) = (median(&mut plain), median(&mut kept), median(&mut restore));
    println!(
        "{name}, {rows} rows: save keeping none {p:.3} s, keeping 5 {k:.3} s ({:.2}x, range {:.2}-{:.2}); restore {:.1} ms ({:.3}x of the save)",
        median(&mut overhead),
        overhead.first().copied().unwrap_or_default(),
        overhead.last().copied().unwrap_or_default(),
        r * 1e3,
        r / k
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let rows: usize = arg("--rows")
        .and_then(|v| v.parse().ok())
        .ok_or("usage: bench_history --rows N [--rounds R]")?;
    let rounds: usize = arg("--rounds").and_then(|v| v.parse().ok()).unwrap_or(3);
    let df = frame(rows);
    let server = std::env::var("USHER_TEST_POSTGRES").ok();
    let mut file_figures = Vec::new();
    let mut shared_figures = Vec::new();
    for r in 0..rounds {
        let dir = tempfile::tempdir()?;
        let file = PipelineStore::open(dir.path().join("history.duckdb"))?;
        file_figures.push(round(&file, &df)?);
        drop(file);
        if let Some(server) = &server {
            let mut admin = postgres::Client::connect(server, postgres::NoTls)?;
            let schema = format!("bench_history_{}_{r}", std::process::id());
            admin.batch_execute(&format!("CREATE SCHEMA {schema}"))?;
            let url = format!("{server}?options=-c%20search_path%3D{schema}");
            let shared = SharedStore::open(&url, dir.path().join("shared"))?;
            shared_figures.push(round(&shared, &df)?);
            drop(shared);
            admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))?;
        }
        let last = file_figures.last().copied().unwrap_or_default();
        println!(
            "round {r}: file save {:.3} / {:.3} s, restore {:.1} ms{}",
            last.0,
            last.1,
            last.2 * 1e3,
            shared_figures
                .last()
                .map(|s| format!(
                    " | shared save {:.3} / {:.3} s, restore {:.1} ms",
                    s.0,
                    s.1,
                    s.2 * 1e3
                ))
                .unwrap_or_default()
        );
    }
    report("file store", rows, &mut file_figures);
    if shared_figures.is_empty() {
        println!("shared store: set USHER_TEST_POSTGRES to measure it");
    } else {
        report("shared store", rows, &mut shared_figures);
    }
    Ok(())
}
