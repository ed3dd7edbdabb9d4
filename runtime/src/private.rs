//! What `#[checkpointed]` expands to call: a door, not an API (the attribute is). The call
//! protocol lives in `pipeline/call.rs`, the key in `pipeline/key.rs`; this re-exports what
//! the expansion names, so expansions stay a few lines.

pub use crate::bounds::{CarriesStoreErrors, CheckFn, CheckpointValue, FetchResult, KeyArg};
pub use crate::pipeline::call::{
    Check, Spec, assert_fetch_result, config_of, run, run_async, run_async_batched, run_batched,
    run_check,
};
pub use crate::pipeline::key::{KeyBuilder, KeyValue, key_arg};
