//! Shared by the integration tests: the frame every round trip uses, a value-by-value frame
//! comparison, and the Python environments of `.ci/python-env`.
#![allow(dead_code)]

#[cfg(feature = "postgres")]
pub mod cluster;
#[cfg(feature = "postgres")]
pub mod runs;
#[cfg(feature = "postgres")]
pub mod shared;

use std::path::{Path, PathBuf};
use std::process::Command;

use usher_pipeline::polars::prelude::*;

/// The smallest valid usher config: its directories under `dir`, its DuckDB file at
/// `duckdb_path`.
pub fn config_yaml(dir: &Path, duckdb_path: &Path) -> String {
    format!(
        "data_dir: {d}/data\ncache_dir: {d}/cache\nduckdb_path: {p}\nversions:\n  ensembl_release: 113\napi: {{}}\nscoring: {{}}\n",
        d = dir.display(),
        p = duckdb_path.display()
    )
}

/// The frame of `tests/python/interop.py::genes()`: every dtype the pipeline uses, with nulls,
/// NaN, extremes, unicode, quotes and SQL in values and column names.
pub fn genes() -> DataFrame {
    let days = |ymd: [(i32, u32, u32); 5], nulls: &[usize]| -> Vec<Option<i32>> {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        ymd.iter()
            .enumerate()
            .map(|(i, &(y, m, d))| {
                (!nulls.contains(&i)).then(|| {
                    (chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap() - epoch).num_days() as i32
                })
            })
            .collect()
    };
    type Stamp = (i32, u32, u32, u32, u32, u32, u32);
    let micros = |v: &[Option<Stamp>]| -> Vec<Option<i64>> {
        v.iter()
            .map(|t| {
                t.map(|(y, mo, d, h, mi, s, us)| {
                    chrono::NaiveDate::from_ymd_opt(y, mo, d)
                        .unwrap()
                        .and_hms_micro_opt(h, mi, s, us)
                        .unwrap()
                        .and_utc()
                        .timestamp_micros()
                })
            })
            .collect()
    };
    let day = Series::new(
        "day".into(),
        days(
            [
                (2024, 1, 31),
                (1, 1, 1),
                (1970, 1, 1),
                (1900, 2, 28),
                (2262, 4, 11),
            ],
            &[1],
        ),
    )
    .cast(&DataType::Date)
    .unwrap();
    let ts = Series::new(
        "ts".into(),
        micros(&[
            Some((2024, 1, 31, 12, 34, 56, 789012)),
            None,
            Some((1970, 1, 1, 0, 0, 0, 0)),
            Some((1900, 2, 28, 23, 59, 59, 0)),
            Some((2262, 4, 11, 1, 2, 3, 0)),
        ]),
    )
    .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
    .unwrap();
    let tag = |v: &[Option<&str>]| Series::new("".into(), v.to_vec());
    let tags = Series::new(
        "tags".into(),
        [
            Some(tag(&[Some("a"), Some("b")])),
            Some(tag(&[])),
            None,
            Some(tag(&[Some("ü"), None])),
            Some(tag(&[Some("x")])),
        ],
    )
    .cast(&DataType::List(Box::new(DataType::String)))
    .unwrap();
    DataFrame::new_infer_height(vec![
        Column::new(
            "gene_id".into(),
            [
                Some("ENSG00000042781"),
                Some("ENSG00000107736"),
                None,
                Some("ENSG ü ✓ 😀"),
                Some(""),
            ],
        ),
        Column::new(
            "symbol".into(),
            [
                Some("USH2A"),
                Some("it's \"quoted\"; DROP TABLE x;--"),
                Some("CDH23"),
                None,
                Some("MYO7A"),
            ],
        ),
        Column::new(
            "score".into(),
            [Some(0.5), None, Some(f64::NAN), Some(-1.5e-7), Some(1e300)],
        ),
        Column::new(
            "n".into(),
            [Some(1i64), Some(-2), None, Some(i64::MAX), Some(i64::MIN)],
        ),
        Column::new(
            "ok".into(),
            [Some(true), Some(false), None, Some(true), Some(false)],
        ),
        day.into_column(),
        ts.into_column(),
        tags.into_column(),
        Column::new(
            "größe 📏".into(),
            [Some(1.0), Some(2.0), Some(3.0), None, Some(5.0)],
        ),
        Column::new("we\"ird col".into(), ["a", "b", "c", "d", "e"]),
    ])
    .unwrap()
}

/// Asserts equal schemas and equal values, treating null = null and NaN = NaN.
pub fn assert_frames_equal(actual: &DataFrame, expected: &DataFrame) {
    assert_eq!(actual.schema(), expected.schema(), "schemas differ");
    assert_eq!(actual.height(), expected.height(), "row counts differ");
    for (a, e) in actual.columns().iter().zip(expected.columns()) {
        let (a, e) = (a.as_materialized_series(), e.as_materialized_series());
        if a.dtype().is_float() {
            let (av, ev) = (a.f64().unwrap(), e.f64().unwrap());
            for (i, (x, y)) in av.iter().zip(ev.iter()).enumerate() {
                let same = match (x, y) {
                    (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
                    (None, None) => true,
                    _ => false,
                };
                assert!(same, "column {:?} row {i}: {x:?} != {y:?}", a.name());
            }
        } else {
            assert!(
                a.equals_missing(e),
                "column {:?} differs:\n{a}\n{e}",
                a.name()
            );
        }
    }
}

/// The interpreter of a `.ci/python-env` environment (`py1`: duckdb 1.x, `py2`: duckdb 2.x).
/// Missing environments skip the calling test, unless `USHER_REQUIRE_PYTHON` is set (CI sets
/// it), in which case they fail it.
pub fn python(env: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target").join(env).join("bin").join("python");
    if python.is_file() && root.join("target").join(env).join(".ready").is_file() {
        return Some(python);
    }
    if std::env::var_os("USHER_REQUIRE_PYTHON").is_some() {
        panic!("{} is missing: run .ci/python-env", python.display());
    }
    eprintln!(
        "SKIPPED: {} is missing (run .ci/python-env to enable the Python interop tests)",
        python.display()
    );
    None
}

/// Runs a script of `tests/python` and returns its stdout; panics with its output on failure.
pub fn run_python(python: &Path, script: &str, args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg(root.join("tests").join("python").join(script))
        .args(args)
        .env("PYTHONIOENCODING", "utf-8")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The name the test harness gives the test function `$test` of the calling module:
/// `kill::child_saves_in_a_loop` for `test_name!(child_saves_in_a_loop)` in `kill.rs` (the
/// module path without the binary's own name, `it`). The function must exist in the calling
/// module, so a child test renamed or moved fails to compile instead of its parent starting a
/// child that matches no test, runs nothing and exits successfully. (Unused without the
/// `duckdb` feature, as every test with a child process needs the store.)
#[allow(unused_macros)]
macro_rules! test_name {
    ($test:ident) => {{
        let _ = $test;
        $crate::common::in_module(module_path!(), stringify!($test))
    }};
}
#[allow(unused_imports)]
pub(crate) use test_name;

/// `test` in the module `module_path` (a `module_path!()`), as the test harness names it.
pub fn in_module(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_binary, module)) => format!("{module}::{test}"),
        None => test.to_owned(),
    }
}

/// The arguments that make this test binary run only the ignored test `name` (its full name,
/// from [`test_name!`]), uncaptured: the child half of a test that needs a second process
/// (killed, holding a lock, under `ulimit`).
pub fn child_args(name: &str) -> [&str; 5] {
    [
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]
}

/// This test binary again, as a child process running only the ignored test `name` (its full
/// name, from [`test_name!`]).
pub fn child_test(name: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command.args(child_args(name));
    command
}

/// Starts `command` with its stdout piped into a channel of lines (stderr discarded), so the
/// parent can wait for a line with a timeout.
pub fn spawn_with_lines(
    command: &mut Command,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the child test process");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// A small deterministic generator (xorshift) for kill schedules, seeded from the clock and
/// printed, so a failing schedule can be replayed with `USHER_KILL_SEED`.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Self {
        let seed = std::env::var("USHER_KILL_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("kill schedule seed: USHER_KILL_SEED={seed}");
        Rng(seed)
    }

    /// A number below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The main example (`examples/pipeline.rs`), built beside this test binary by `cargo test`,
/// or `None` (skipped, or a failure where the Python tests are required) when it was not
/// built (a run of this test binary alone).
pub fn example_pipeline() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let example = exe.parent()?.parent()?.join("examples").join("pipeline");
    if example.is_file() {
        return Some(example);
    }
    let why = format!(
        "{} is missing: `cargo test --all-features` builds it (a run of `--test it` alone does not)",
        example.display()
    );
    if std::env::var_os("USHER_REQUIRE_PYTHON").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Runs the main example with `--min-depth min_depth` in `dir`, with `env` set and the run's
/// other `USHER_*` settings removed; returns its stdout, panicking with both outputs when it
/// fails.
pub fn run_example(
    example: &Path,
    dir: &Path,
    min_depth: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> String {
    let mut command = Command::new(example);
    command.args(["--min-depth", min_depth]).current_dir(dir);
    for name in [
        "USHER_STORE",
        "USHER_DATA_ROOT",
        "USHER_FORCE",
        "USHER_KEEP",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A tokio runtime of either flavour: multi-thread (2 workers) or current-thread.
#[allow(dead_code)]
pub fn tokio_runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    match multi_thread {
        true => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap(),
        false => tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
    }
}
