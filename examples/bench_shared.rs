//! Shared-store benchmark: save and load of the bench frame on the shared store (PostgreSQL
//! catalog, Parquet files) against the DuckDB file store, in one run; a checkpoint hit of a
//! 1,000-row table on each; and how soon a worker waiting for another's computation has the
//! result after it is registered.
//!
//! ```sh
//! bash .ci/postgres start /tmp/pg                       # prints the server's URL
//! export USHER_TEST_POSTGRES=postgres://usher@127.0.0.1:PORT/usher
//! cargo run --release --features postgres --example bench_shared -- --rows 1000000
//! cargo run --release --features postgres --example bench_shared -- --rows 10000000
//! ```
//!
//! `--rounds R` (default 3) rounds alternate the stores on fresh files and a fresh schema:
//! best of 3 saves and loads per round, medians over rounds, the ratio shared / file and its
//! range. The shared store runs twice: as created (a DuckLake: each save also a lake
//! snapshot) and as a store without the lake (one made so, then its `ducklake_*` tables
//! dropped and opened as a look, which never upgrades it), the reference for what the lake
//! costs; so do the hit and the handover. The hit is the median of 200 `#[checkpointed]` hits of a 1,000-row table. The wait is
//! measured over `--waits W` (default 20) handovers between two processes of this example: one
//! computes a 1,000-row table; the other, waiting on the table's lock, notes when its call
//! returned with the frame; the figure is that time minus the checkpoint's `created_at` (taken
//! as the registering transaction starts: one machine, one clock).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    CheckpointStore, Error, Pipeline, PipelineConfig, PipelineStore, ProvenanceTracker,
    SharedStore, checkpointed,
};

#[path = "common/frame.rs"]
mod bench_frame;
use bench_frame::frame;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn best_of_3(mut f: impl FnMut() -> Result<(), Error>) -> Result<f64, Error> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// A shared store at `url` without the lake: created, its lake dropped (as before the lake),
/// then opened with `must_exist`, which does not upgrade it.
fn open_without_lake(
    admin: &mut postgres::Client,
    schema: &str,
    url: &str,
    root: &std::path::Path,
) -> Result<SharedStore, Box<dyn std::error::Error>> {
    drop(SharedStore::open(url, root)?);
    let tables: Vec<String> = admin
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'ducklake_%'",
            &[&schema],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for table in tables {
        admin.batch_execute(&format!("DROP TABLE {schema}.{table}"))?;
    }
    admin.batch_execute(&format!(
        "UPDATE {schema}._usher_schema SET value = '1' WHERE name = 'schema_version'"
    ))?;
    Ok(look(url, root)?)
}

/// An open that never creates nor upgrades the store.
fn look(url: &str, root: impl AsRef<std::path::Path>) -> Result<SharedStore, Error> {
    SharedStore::open_with(
        url,
        root,
        &usher_pipeline::SharedStoreOptions {
            must_exist: true,
            ..Default::default()
        },
    )
}

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

fn config() -> PipelineConfig {
    PipelineConfig::from_yaml_str(
        "data_dir: data\ncache_dir: cache\nduckdb_path: unused.duckdb\nversions:\n  ensembl_release: 113\napi: {}\nscoring: {}\n",
        "bench.yaml",
    )
    .expect("a valid config")
}

/// One function for both stores, as a pipeline's steps are (`&Pipeline` runs on either).
#[checkpointed(table = "hit")]
fn hit(ctx: &Pipeline) -> Result<DataFrame, Error> {
    let _ = ctx;
    Ok(frame(1_000))
}

/// The table of one handover: computed by whoever takes the lock first.
#[checkpointed(table = "handover")]
fn handover(ctx: &Pipeline<SharedStore>, round: u32) -> Result<DataFrame, Error> {
    let _ = ctx;
    // The computer holds the lock long enough for the waiter to be waiting on it.
    std::thread::sleep(Duration::from_millis(300));
    let mut frame = frame(1_000);
    frame.with_column(Column::new("round".into(), vec![i64::from(round); 1_000]))?;
    Ok(frame)
}

/// The median of 200 runs of `f`, in milliseconds.
fn median_ms(f: impl Fn() -> Result<(), Error>) -> Result<f64, Error> {
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&mut times))
}

/// The median time a call takes once its checkpoint is valid.
fn hit_ms<S: CheckpointStore>(
    pipeline: &Pipeline<S>,
    call: impl Fn(&Pipeline<S>) -> Result<DataFrame, Error>,
) -> Result<f64, Error> {
    call(pipeline)?;
    median_ms(|| call(pipeline).map(|f| assert_eq!(f.height(), 1_000)))
}

/// Child: one side of a handover (`compute` or `wait`); the waiter prints when it got the
/// result (microseconds since the epoch).
fn handover_child(url: &str, root: &str, round: u32, role: &str) -> Result<(), Error> {
    // The store exists: a look, which leaves a store without the lake as it is.
    let store = look(url, root)?;
    let pipeline = Pipeline::new(store, ProvenanceTracker::new("bench", &config()));
    if role == "wait" {
        // Started after the computer said it is computing: this call waits on the lock.
        let frame = handover(&pipeline, round)?;
        println!("got {} {}", now_micros(), frame.height());
    } else {
        println!("computing");
        handover(&pipeline, round)?;
        println!("done");
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(role) = arg("--handover") {
        let (url, root, round) = (
            arg("--url").ok_or("--url")?,
            arg("--root").ok_or("--root")?,
            arg("--round").ok_or("--round")?.parse()?,
        );
        handover_child(&url, &root, round, &role)?;
        return Ok(());
    }
    let rows: usize = arg("--rows")
        .and_then(|v| v.parse().ok())
        .ok_or("usage: bench_shared --rows N [--rounds R] [--waits W]")?;
    let rounds: usize = arg("--rounds").and_then(|v| v.parse().ok()).unwrap_or(3);
    let waits: u32 = arg("--waits").and_then(|v| v.parse().ok()).unwrap_or(20);
    let server = std::env::var("USHER_TEST_POSTGRES")
        .map_err(|_| "set USHER_TEST_POSTGRES (`bash .ci/postgres start DIR` prints one)")?;
    let mut admin = postgres::Client::connect(&server, postgres::NoTls)?;
    let df = frame(rows);
    let (mut file_save, mut file_load, mut shared_save, mut shared_load) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut plain_save, mut plain_load) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let dir = tempfile::tempdir()?;
        let file = PipelineStore::open(dir.path().join("bench.duckdb"))?;
        let fs = best_of_3(|| file.save_dataframe("bench", &df, "bench"))?;
        let fl = best_of_3(|| file.load_dataframe("bench").map(|f| assert!(f.is_some())))?;
        drop(file);
        let mut shared_run = |lake: bool| -> Result<(f64, f64), Box<dyn std::error::Error>> {
            let schema = format!("bench_{}_{round}_{lake}", std::process::id());
            admin.batch_execute(&format!("CREATE SCHEMA {schema}"))?;
            let url = format!("{server}?options=-c%20search_path%3D{schema}");
            let root = dir.path().join(&schema);
            let shared = match lake {
                true => SharedStore::open(&url, &root)?,
                false => open_without_lake(&mut admin, &schema, &url, &root)?,
            };
            let ss = best_of_3(|| shared.save_dataframe("bench", &df, "bench"))?;
            let sl = best_of_3(|| shared.load_dataframe("bench").map(|f| assert!(f.is_some())))?;
            drop(shared);
            admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))?;
            Ok((ss, sl))
        };
        // Alternating which goes first, so neither always meets a warmer server.
        let ((ss, sl), (ps, pl)) = if round % 2 == 0 {
            let lake = shared_run(true)?;
            (lake, shared_run(false)?)
        } else {
            let plain = shared_run(false)?;
            (shared_run(true)?, plain)
        };
        println!(
            "round {round}: file save {fs:.3} s load {fl:.3} s | shared save {ss:.3} s load {sl:.3} s \
             | without the lake save {ps:.3} s load {pl:.3} s"
        );
        file_save.push(fs);
        file_load.push(fl);
        shared_save.push(ss);
        shared_load.push(sl);
        plain_save.push(ps);
        plain_load.push(pl);
    }
    let ratios = |a: &[f64], b: &[f64]| {
        let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        let (lo, hi) = r
            .iter()
            .fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        (r, lo, hi)
    };
    let (mut rs, slo, shi) = ratios(&shared_save, &file_save);
    let (mut rl, llo, lhi) = ratios(&shared_load, &file_load);
    println!(
        "{rows} rows: file save_s={:.3} load_s={:.3}; shared save_s={:.3} load_s={:.3}; shared/file save {:.2}x ({slo:.2}-{shi:.2}), load {:.2}x ({llo:.2}-{lhi:.2})",
        median(&mut file_save),
        median(&mut file_load),
        median(&mut shared_save),
        median(&mut shared_load),
        median(&mut rs),
        median(&mut rl),
    );
    println!(
        "  without the lake: save_s={:.3} load_s={:.3}",
        median(&mut plain_save),
        median(&mut plain_load),
    );

    // Hits of a 1,000-row table.
    let dir = tempfile::tempdir()?;
    let schema = format!("bench_hit_{}", std::process::id());
    let plain_schema = format!("bench_hit_plain_{}", std::process::id());
    admin.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE SCHEMA {plain_schema}"
    ))?;
    let url = format!("{server}?options=-c%20search_path%3D{schema}");
    let plain_url = format!("{server}?options=-c%20search_path%3D{plain_schema}");
    let tracker = || ProvenanceTracker::new("bench", &config());
    let file: Pipeline = Pipeline::new(
        PipelineStore::open(dir.path().join("hit.duckdb"))?,
        tracker(),
    );
    let shared: Pipeline = Pipeline::new(
        SharedStore::open(&url, dir.path().join("shared"))?,
        tracker(),
    );
    let plain: Pipeline = Pipeline::new(
        open_without_lake(
            &mut admin,
            &plain_schema,
            &plain_url,
            &dir.path().join("plain"),
        )?,
        tracker(),
    );
    let (fh, sh, ph) = (
        hit_ms(&file, hit)?,
        hit_ms(&shared, hit)?,
        hit_ms(&plain, hit)?,
    );
    println!(
        "hit of a 1,000-row table: file {fh:.3} ms, shared {sh:.3} ms, without the lake {ph:.3} ms (median of 200)"
    );
    // Its two parts on the shared store: the catalog lookup, and the load (file name, read).
    for (name, pipeline) in [("shared", &shared), ("without the lake", &plain)] {
        let store = pipeline.store();
        let lookup = median_ms(|| store.checkpoint("hit").map(drop))?;
        let load = median_ms(|| store.load_dataframe("hit").map(drop))?;
        println!("  {name}, of which: catalog lookup {lookup:.3} ms, load {load:.3} ms");
    }

    // Handovers between two processes.
    let exe = std::env::current_exe()?;
    for (name, url, root, pipeline) in [
        ("shared", &url, dir.path().join("shared"), &shared),
        (
            "without the lake",
            &plain_url,
            dir.path().join("plain"),
            &plain,
        ),
    ] {
        let mut latencies = Vec::new();
        for round in 0..waits {
            let child = |role: &str| {
                Command::new(&exe)
                    .args(["--handover", role, "--url", url, "--root"])
                    .arg(&root)
                    .args(["--round", &round.to_string()])
                    .stdout(Stdio::piped())
                    .spawn()
            };
            let computer = child("compute")?;
            let mut computer_out = std::io::BufReader::new(computer.stdout.expect("piped"));
            let mut line = String::new();
            std::io::BufRead::read_line(&mut computer_out, &mut line)?;
            assert_eq!(line.trim(), "computing");
            let waiter = child("wait")?.wait_with_output()?;
            line.clear();
            std::io::BufRead::read_line(&mut computer_out, &mut line)?;
            assert_eq!(line.trim(), "done");
            // The registration's time: `_checkpoints.created_at`, taken as the registering
            // transaction starts (so the figure includes its commit and the unlock).
            let registered = pipeline
                .store()
                .checkpoint("handover")?
                .and_then(|c| c.created_at)
                .ok_or("no handover checkpoint")?
                .and_utc()
                .timestamp_micros() as u128;
            let got: u128 = String::from_utf8(waiter.stdout)?
                .trim()
                .strip_prefix("got ")
                .and_then(|r| r.split(' ').next())
                .ok_or("the waiter did not load")?
                .parse()?;
            latencies.push(got.saturating_sub(registered) as f64 / 1e3);
        }
        let max = latencies.iter().copied().fold(0f64, f64::max);
        println!(
            "{name}: a waiting worker had the result {:.1} ms after its registration (median of {waits}; max {max:.1} ms)",
            median(&mut latencies)
        );
    }
    drop((shared, plain));
    admin.batch_execute(&format!(
        "DROP SCHEMA {schema} CASCADE; DROP SCHEMA {plain_schema} CASCADE"
    ))?;
    Ok(())
}
