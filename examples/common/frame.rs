//! The benchmarks' frame, shared by `bench_store` and `bench_shared`.

use usher_pipeline::polars::prelude::*;

/// The 5-column frame of `tests/python/bench_store.py::frame`: string id, string symbol, f64
/// with 5% nulls, i64, bool.
pub fn frame(n: usize) -> DataFrame {
    let ids: Vec<String> = (0..n).map(|i| format!("ENSG{i:011}")).collect();
    let symbols: Vec<String> = (0..n).map(|i| format!("SYM{}", i % 50_000)).collect();
    let values: Vec<Option<f64>> = (0..n)
        .map(|i| (i % 20 != 0).then_some(i as f64 / 7.0))
        .collect();
    let counts: Vec<i64> = (0..n as i64).map(|i| i * 3).collect();
    let flags: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
    df!("id" => ids, "symbol" => symbols, "value" => values, "n" => counts, "flag" => flags)
        .expect("valid frame")
}
