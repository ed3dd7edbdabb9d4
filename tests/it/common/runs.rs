//! Counting the runs of step bodies across processes: each run leaves an empty file named
//! after its table in a directory every worker shares, so nothing but that directory is shared
//! and a worker killed mid-body has still been counted. Also included by path in
//! examples/bench_cluster.rs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Records that the body of `table` started in this process.
pub fn count_run(runs: &Path, table: &str) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "{table}.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    std::fs::write(runs.join(name), b"").unwrap();
}

/// How many times each table's body started, by every process that counted into `runs`.
pub fn runs_of(runs: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(runs).into_iter().flatten().flatten() {
        let name = entry.file_name().into_string().unwrap();
        let table = name.split('.').next().unwrap().to_owned();
        *counts.entry(table).or_insert(0) += 1;
    }
    counts
}
