//! Nothing to use: this crate exists to run the compile-fail suite of `#[checkpointed]`
//! (`tests/ui.rs`, one case per file in `cases/`) as an ordinary, non-proc-macro crate.
//! See its `Cargo.toml` for why.
