//! The user's guide, one chapter per module; the API reference is the rest of the crate.
//!
//! The chapters are markdown files in `runtime/docs/`, included here so that rustdoc renders
//! them, compiles and runs their examples as doctests, and checks their links. Read them in
//! this order, or jump to the one you need:
//!
//! 1. [`overview`]: what the crate holds, and its features.
//! 2. [`calls`]: what a `#[checkpointed]` call does, and what its key is made of.
//! 3. [`batches`]: loops that resume after a kill.
//! 4. [`lineage`]: staleness that follows the data; inputs, expiry, checks.
//! 5. [`stores`]: choosing a store; the DuckDB file; the store used by hand.
//! 6. [`many_machines`]: one set of checkpoints for several workers (PostgreSQL + Parquet).
//! 7. [`inspecting`]: the `usher-pipeline` command line, status, progress and logs.
//! 8. [`formats`]: what is on disk, shared with the Python pipeline.
//! 9. [`nothing_lost`]: kills, full disks, panics, and the tests that prove them.
//! 10. [`benchmarks`]: the figures, with the commands that measure them.
//! 11. [`limits`]: known limits.
//!
//! For people working on the crate itself:
//!
//! 12. [`testing`]: CI's test command and its faster subsets.
//! 13. [`layout`]: the repository's layout, and why it is one crate.
//! 14. [`dependencies`]: each dependency, and why.

// The chapters link to every store, `SharedStore` included, which exists only with the
// `postgres` feature. docs.rs and CI document all features, where every link is checked
// (`RUSTDOCFLAGS="-D warnings" cargo doc --all-features`); a build with fewer features would
// only warn about links to types it does not have.
#![cfg_attr(not(feature = "postgres"), allow(rustdoc::broken_intra_doc_links))]

#[doc = include_str!("../docs/overview.md")]
pub mod overview {}

#[doc = include_str!("../docs/calls.md")]
pub mod calls {}

#[doc = include_str!("../docs/batches.md")]
pub mod batches {}

#[doc = include_str!("../docs/lineage.md")]
pub mod lineage {}

#[doc = include_str!("../docs/stores.md")]
pub mod stores {}

#[doc = include_str!("../docs/many-machines.md")]
pub mod many_machines {}

#[doc = include_str!("../docs/inspecting.md")]
pub mod inspecting {}

#[doc = include_str!("../docs/formats.md")]
pub mod formats {}

#[doc = include_str!("../docs/nothing-lost.md")]
pub mod nothing_lost {}

#[doc = include_str!("../docs/benchmarks.md")]
pub mod benchmarks {}

#[doc = include_str!("../docs/limits.md")]
pub mod limits {}

#[doc = include_str!("../docs/testing.md")]
pub mod testing {}

#[doc = include_str!("../docs/layout.md")]
pub mod layout {}

#[doc = include_str!("../docs/dependencies.md")]
pub mod dependencies {}
