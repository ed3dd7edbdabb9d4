//! Store benchmark: save and load of a 5-column frame, and a checkpoint hit, against the Python
//! seed's code path on the same data in the same invocation.
//!
//! ```sh
//! bash .ci/python-env                                  # once: Python duckdb 2.x + polars
//! cargo run --release --example bench_store -- --rows 1000000
//! cargo run --release --example bench_store -- --rows 10000000
//! ```
//!
//! Runs `--rounds R` (default 3) rounds, each timing this library and then the Python side on a
//! fresh file: best of 3 saves and loads of N rows, median of 50 hits (`has_checkpoint` +
//! `load_dataframe` of a 1,000-row table on an open store). Prints each round, then the
//! medians over rounds as `save_s=<s> load_s=<s>` and `hit_ms=<ms>`, the peak memory of a load
//! measured in a fresh process, Python's medians, and the median ratios with their range.
//! Each round also times the frame's data version (`data_version`, best of 3) against that
//! round's save, and the save a `#[checkpointed]` call makes of the same frame (best of 3:
//! data version, key, lineage and provenance row with the table, in one transaction), reported
//! beside Python's plain save as `checkpoint_save`.
//! `--no-python` skips the comparison; `--storage latest` writes DuckDB 2.0's storage format
//! instead of the default duckdb-1.x-readable one (both sides write the same format).

use std::path::Path;
use std::process::Command;
use std::time::Instant;
use usher_pipeline::CheckpointStore;

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{Pipeline, PipelineStore, ProvenanceTracker, checkpointed};

#[path = "common/frame.rs"]
mod bench_frame;
use bench_frame::frame;

/// A `/proc/self/status` figure in KiB: `VmHWM` (peak resident) or `VmRSS` (resident now).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    // Child mode: open the store, load the table, report memory. A fresh process, so the peak
    // is the load's alone.
    if let Some(i) = args.iter().position(|a| a == "--measure-load") {
        let store = PipelineStore::open(&args[i + 1])?;
        let before = status_kib("VmRSS:");
        let df = store.load_dataframe("bench")?.ok_or("no bench table")?;
        let peak = status_kib("VmHWM:");
        // With the store closed, what stays resident is the frame itself (DuckDB's buffers
        // are gone; polars' estimated_size undercounts string views).
        drop(store);
        let frame = status_kib("VmRSS:").saturating_sub(before);
        assert!(df.height() > 0);
        println!("{before} {peak} {frame}");
        return Ok(());
    }
    let rows: usize = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .ok_or("usage: bench_store --rows N [--storage v1.0.0|latest] [--no-python]")?;
    let with_python = !args.iter().any(|a| a == "--no-python");

    let dir = tempfile::tempdir()?;
    let df = frame(rows);
    // `--storage latest` opts into DuckDB 2.0's format; the default is the store's default
    // (readable by duckdb 1.x). Python writes the same format, so both do the same work.
    let storage = args
        .iter()
        .position(|a| a == "--storage")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| usher_pipeline::DEFAULT_STORAGE_COMPATIBILITY.to_owned());
    let options = usher_pipeline::StoreOptions {
        storage_compatibility_version: Some(storage.clone()).filter(|v| v != "latest"),
        ..Default::default()
    };
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py2/bin/python");
    if with_python && !python.is_file() {
        return Err(
            "target/py2 is missing: run `bash .ci/python-env` (or pass --no-python)".into(),
        );
    }

    // Rounds alternate the two sides, so a slow spell of this shared machine hits both; the
    // figures are medians over rounds.
    let mut rust_rounds = Vec::new();
    let mut python_rounds = Vec::new();
    let mut fingerprint_shares: Vec<f64> = Vec::new();
    for round in 0..rounds {
        let rust = rust_round(&dir.path().join("rust.duckdb"), &options, &df)?;
        println!(
            "round {round}: rust save_s={:.4} load_s={:.4} hit_ms={:.4} checkpoint_save_s={:.4}",
            rust[0], rust[1], rust[2], rust[3]
        );
        rust_rounds.push(rust);
        // The data version every checkpoint save will record: best of 3, against this round's
        // save of the same frame.
        let mut fingerprints = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let version = usher_pipeline::data_version(&df)?;
            fingerprints.push(t.elapsed().as_secs_f64());
            std::hint::black_box(version);
        }
        let fingerprint = fingerprints.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "round {round}: rust fingerprint_s={fingerprint:.4} ({:.1}% of the save)",
            100.0 * fingerprint / rust[0]
        );
        fingerprint_shares.push(fingerprint / rust[0]);
        if with_python {
            let py = python_round(&python, rows, dir.path(), &storage)?;
            println!(
                "round {round}: python save_s={:.4} load_s={:.4} hit_ms={:.4}",
                py[0], py[1], py[2]
            );
            python_rounds.push(py);
        }
    }
    let rust = medians(&rust_rounds);
    println!(
        "save_s={:.4} load_s={:.4} checkpoint_save_s={:.4}",
        rust[0], rust[1], rust[3]
    );
    println!("hit_ms={:.4}", rust[2]);
    fingerprint_shares.sort_by(f64::total_cmp);
    println!(
        "fingerprint/save: {:.1}% (median of {} rounds; range {:.1}-{:.1}%)",
        100.0 * fingerprint_shares[fingerprint_shares.len() / 2],
        fingerprint_shares.len(),
        100.0 * fingerprint_shares[0],
        100.0 * fingerprint_shares[fingerprint_shares.len() - 1]
    );

    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .arg("--measure-load")
        .arg(dir.path().join("rust.duckdb"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<u64> = text
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if let [before, peak, frame_kib] = nums[..] {
        let delta = peak.saturating_sub(before);
        println!(
            "load_peak_mib={:.0} frame_rss_mib={:.0} peak_over_frame={:.2}",
            delta as f64 / 1024.0,
            frame_kib as f64 / 1024.0,
            delta as f64 / frame_kib.max(1) as f64
        );
    }

    if with_python {
        let py = medians(&python_rounds);
        println!(
            "python duckdb 2.x, storage {storage}: save_s={:.4} load_s={:.4} hit_ms={:.4}",
            py[0], py[1], py[2]
        );
        let ratios: Vec<[f64; 4]> = rust_rounds
            .iter()
            .zip(&python_rounds)
            .map(|(r, p)| [r[0] / p[0], r[1] / p[1], r[2] / p[2], r[3] / p[0]])
            .collect();
        let (lo, hi) = (extreme(&ratios, f64::min), extreme(&ratios, f64::max));
        let mid = medians(&ratios);
        println!(
            "ratio rust/python (median of {rounds} rounds, range): save={:.2} ({:.2}-{:.2}) load={:.2} ({:.2}-{:.2}) hit={:.2} ({:.2}-{:.2}) checkpoint_save/python_save={:.2} ({:.2}-{:.2})",
            mid[0], lo[0], hi[0], mid[1], lo[1], hi[1], mid[2], lo[2], hi[2], mid[3], lo[3], hi[3]
        );
    }
    Ok(())
}

/// What a `#[checkpointed]` step that returns `df` saves: each `round` a miss.
#[checkpointed(table = "bench_checkpoint", skip(df))]
fn checkpoint_save(
    ctx: &Pipeline,
    round: usize,
    df: &DataFrame,
) -> Result<DataFrame, usher_pipeline::Error> {
    Ok(df.clone())
}

/// One round on the Rust side: best of 3 saves and loads (s), median of 50 hits (ms), best of
/// 3 checkpoint saves (s).
fn rust_round(
    path: &Path,
    options: &usher_pipeline::StoreOptions,
    df: &DataFrame,
) -> Result<[f64; 4], Box<dyn std::error::Error>> {
    // A fresh file each round, as on the Python side.
    let _ = std::fs::remove_file(path);
    let dir = path.parent().ok_or("the store has a directory")?;
    std::fs::write(
        dir.join("bench.yaml"),
        format!(
            "data_dir: {d}/data\ncache_dir: {d}/cache\nduckdb_path: {p}\nversions:\n  ensembl_release: 113\napi: {{}}\nscoring: {{}}\n",
            d = dir.display(),
            p = path.display()
        ),
    )?;
    let config = usher_pipeline::PipelineConfig::load(dir.join("bench.yaml"))?;
    let pipeline: Pipeline = Pipeline::new(
        PipelineStore::open_with(path, options)?,
        ProvenanceTracker::from_config(&config, None),
    );
    let store = pipeline.store().as_file().ok_or("a file store")?;
    let (mut saves, mut loads) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        store.save_dataframe("bench", df, "bench")?;
        saves.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let loaded = store
            .load_dataframe("bench")?
            .ok_or("bench table missing")?;
        loads.push(t.elapsed().as_secs_f64());
        assert_eq!(loaded.height(), df.height());
        assert_eq!(
            loaded.column("value")?.null_count(),
            df.column("value")?.null_count()
        );
    }
    store.save_dataframe("small", &frame(1000), "bench")?;
    let mut hits = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let ok = store.has_checkpoint("small")?;
        let got = store
            .load_dataframe("small")?
            .ok_or("small table missing")?;
        hits.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(ok && got.height() == 1000);
    }
    hits.sort_by(f64::total_cmp);
    let mut checkpoint_saves = Vec::new();
    for round in 0..3 {
        let t = Instant::now();
        let saved = checkpoint_save(&pipeline, round, df)?;
        checkpoint_saves.push(t.elapsed().as_secs_f64());
        assert_eq!(saved.height(), df.height());
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    Ok([
        best(&saves),
        best(&loads),
        hits[hits.len() / 2],
        best(&checkpoint_saves),
    ])
}

/// One round of `tests/python/bench_store.py` on the same data and storage format.
fn python_round(
    python: &Path,
    rows: usize,
    dir: &Path,
    storage: &str,
) -> Result<[f64; 3], Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let _ = std::fs::remove_file(dir.join("python.duckdb"));
    let out = Command::new(python)
        .arg(root.join("tests/python/bench_store.py"))
        .args([
            "--rows",
            &rows.to_string(),
            "--dir",
            dir.to_str().ok_or("path")?,
            "--storage",
            storage,
        ])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "python bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let py: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let get = |k: &str| py[k].as_f64().unwrap_or(f64::NAN);
    Ok([get("save_s"), get("load_s"), get("hit_ms")])
}

/// Per-column medians of the rounds.
fn medians<const N: usize>(rounds: &[[f64; N]]) -> [f64; N] {
    std::array::from_fn(|i| {
        let mut v: Vec<f64> = rounds.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    })
}

/// Per-column minimum or maximum of the rounds.
fn extreme<const N: usize>(rounds: &[[f64; N]], pick: fn(f64, f64) -> f64) -> [f64; N] {
    std::array::from_fn(|i| rounds.iter().map(|r| r[i]).reduce(pick).unwrap_or(f64::NAN))
}
