//! The integration tests, built as one test binary: each module was a test binary of its own
//! (`tests/*.rs`), and every one of them linked DuckDB and polars. One binary halves the test
//! build: after an edit of the library, `cargo test --workspace --all-features --no-run` took
//! 25 s with 17 binaries and takes 10 s with one; rebuilding this package's targets, 47 s and
//! 28 s (2 cores; 2.2 GB of test executables became 0.15 GB). A test's name is
//! `module::test`, so `cargo test --test it kill::` runs the kill tests and `cargo test --test
//! it -- --exact store::some_test` one test.
//!
//! Tests that need a second process (SIGKILL, a lock held elsewhere, `ulimit -f`) run this
//! binary again as a child limited to one ignored test, named with [`common::test_name!`].

mod common;

#[cfg(feature = "duckdb")]
mod batches;
#[cfg(feature = "duckdb")]
mod checkpointed;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "postgres")]
mod cluster;
#[cfg(feature = "duckdb")]
mod concurrency;
mod config_corpus;
#[cfg(feature = "duckdb")]
mod correctness;
#[cfg(feature = "postgres")]
mod ducklake;
#[cfg(feature = "duckdb")]
mod history;
#[cfg(feature = "duckdb")]
mod interop;
#[cfg(feature = "duckdb")]
mod kill;
#[cfg(feature = "duckdb")]
mod lineage;
#[cfg(feature = "duckdb")]
mod provenance;
mod readme;
#[cfg(feature = "duckdb")]
mod robustness;
#[cfg(feature = "postgres")]
mod shared;
#[cfg(feature = "postgres")]
mod shared_async;
#[cfg(feature = "postgres")]
mod shared_create;
#[cfg(feature = "duckdb")]
mod store;
#[cfg(feature = "duckdb")]
mod upgrade;
