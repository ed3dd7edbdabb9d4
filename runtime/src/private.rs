//! What `#[checkpointed]` expands to call. Not a public API: the attribute is.
//!
//! Kept here, in ordinary code, so the expansion is a few lines that read like the hand-written
//! check-load-or-run-save-record it replaces; the generic parts are thin and hand over to
//! non-generic methods of [`Pipeline`] at once.

use std::future::Future;
use std::time::Instant;

use polars::prelude::DataFrame;
use serde_json::{Map, Value};

pub use crate::bounds::{CarriesStoreErrors, CheckFn, CheckpointValue, FetchResult, KeyArg};

use crate::config::PipelineConfig;
use crate::error::{Error, Result};
use crate::fingerprint::data_version;
use crate::model::{CheckpointKey, FRAME_KEY};
use crate::pipeline::lineage::{self, Recorder};
use crate::pipeline::{Batches, Call, Outcome, Pipeline, PipelineContext, Plan};
use crate::store::{CheckpointStore, JudgedLoad, TableLock};

/// The attribute's arguments, as the expansion passes them.
#[derive(Debug)]
pub struct Spec<'a> {
    /// `table = "..."`.
    pub table: &'static str,
    /// The function's name.
    pub function: &'static str,
    /// `version:<v>` when pinned, else `tokens:<hash of the function's tokens>`.
    pub code: &'static str,
    /// The code as releases before 0.2.0 hashed it (`tokens:` of the pretty-printed tokens),
    /// when not pinned: a checkpoint keyed with it is re-keyed with `code` rather than
    /// recomputed.
    pub legacy_code: Option<&'static str>,
    /// `reads(...)`: the tables the body reads, whose versions join the checkpoint's inputs.
    pub reads: &'static [&'static str],
    /// `max_age = "..."`, in seconds.
    pub max_age_seconds: Option<u64>,
    /// `check = ...`: run on the frame before it is saved.
    pub checks: &'a [Check],
}

impl Spec<'static> {
    /// A spec without `reads`, `max_age` or checks, for the expansion's `..Spec::DEFAULT`.
    pub const DEFAULT: Spec<'static> = Spec {
        table: "",
        function: "",
        code: "",
        legacy_code: None,
        reads: &[],
        max_age_seconds: None,
        checks: &[],
    };
}

/// One `check = path` of the attribute.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// The path as written.
    pub name: &'static str,
    /// Runs the check (through [`run_check`]), its error as text.
    pub run: fn(&DataFrame) -> std::result::Result<(), String>,
}

/// Runs a check function; its bound is where a function of the wrong shape is reported.
pub fn run_check<F: CheckFn>(check: &F, frame: &DataFrame) -> std::result::Result<(), String> {
    check.check(frame)
}

/// The config of the pipeline `context` lends, for `config(...)` fields.
pub fn config_of<C: PipelineContext + ?Sized>(context: &C) -> Option<&PipelineConfig> {
    context.pipeline().config()
}

/// The key arguments of one call, collected before the body runs.
#[derive(Debug, Default)]
pub struct KeyBuilder {
    arguments: Map<String, Value>,
    config: Map<String, Value>,
    error: Option<(&'static str, String)>,
    /// The first config field named when the pipeline has no config.
    no_config: Option<&'static str>,
}

/// One key argument, serialised (or why it could not be).
#[derive(Debug)]
pub struct KeyValue(std::result::Result<Value, String>);

/// Serialises a key argument. Its bound is where a type that cannot be part of the key is
/// reported, at the parameter's type.
pub fn key_arg<T: KeyArg + ?Sized>(value: &T) -> KeyValue {
    KeyValue(value.key_value())
}

impl KeyBuilder {
    /// An empty key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the argument `name`.
    pub fn arg(&mut self, name: &'static str, value: KeyValue) {
        Self::add(&mut self.arguments, &mut self.error, name, value);
    }

    /// Puts `value` into `map` under `name`, or keeps the first error (reported by `finish`).
    fn add(
        map: &mut Map<String, Value>,
        error: &mut Option<(&'static str, String)>,
        name: &'static str,
        value: KeyValue,
    ) {
        match value.0 {
            Ok(v) => {
                map.insert(name.to_owned(), v);
            }
            Err(message) => {
                error.get_or_insert((name, message));
            }
        }
    }

    /// Adds the `DataFrame` argument `name`, by its data version.
    pub fn frame(&mut self, name: &'static str, frame: &DataFrame) {
        let value = data_version(frame)
            .map(|version| {
                let mut object = Map::new();
                object.insert(FRAME_KEY.to_owned(), version.to_hex().into());
                Value::Object(object)
            })
            .map_err(|e| e.to_string());
        self.arg(name, KeyValue(value));
    }

    /// Adds the config field at `path` (`versions.gnomad_version`).
    pub fn config(&mut self, path: &'static str, value: KeyValue) {
        Self::add(&mut self.config, &mut self.error, path, value);
    }

    /// Notes that the config field at `path` was named but the pipeline has no config.
    pub fn no_config(&mut self, path: &'static str) {
        self.no_config.get_or_insert(path);
    }

    fn finish(self, spec: &Spec<'_>) -> Result<CheckpointKey> {
        if let Some(field) = self.no_config {
            return Err(Error::NoConfig {
                table: spec.table.to_owned(),
                field: field.to_owned(),
            });
        }
        if let Some((argument, message)) = self.error {
            return Err(Error::Key {
                table: spec.table.to_owned(),
                function: spec.function.to_owned(),
                argument: argument.to_owned(),
                message,
            });
        }
        CheckpointKey::new(spec.function, spec.code, self.arguments, self.config)
    }
}

/// Checks at compile time that the return type is a `Result` (what `run` requires of its
/// value and error is reported by `run`'s own bounds, at the same place).
pub fn assert_fetch_result<R: FetchResult>() {}

/// A synchronous checkpointed call: load the checkpoint, or run `body`, save and record.
/// Two threads asking for the same table run one body; the other loads its result.
pub fn run<C, T, E>(
    context: &C,
    spec: &Spec<'_>,
    key: KeyBuilder,
    body: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E>
where
    C: PipelineContext + ?Sized,
    T: CheckpointValue,
    E: CarriesStoreErrors,
{
    run_batched(context, spec, key, |_| body())
}

/// [`run`] for a body that takes the call's [`Batches`] (`batches = name`).
pub fn run_batched<'a, C, T, E>(
    context: &'a C,
    spec: &Spec<'_>,
    key: KeyBuilder,
    body: impl FnOnce(Batches<'a, C::Store>) -> std::result::Result<T, E>,
) -> std::result::Result<T, E>
where
    C: PipelineContext + ?Sized,
    T: CheckpointValue,
    E: CarriesStoreErrors,
{
    let pipeline = context.pipeline();
    let started = Instant::now();
    let key = key.finish(spec)?;
    refuse_reentry(pipeline, spec)?;
    let lock = pipeline.table_lock(spec.table);
    let _held = lock.lock_blocking();
    let call = new_call(spec, &key, started);
    let why = match load_or_why(pipeline, &call)? {
        Ok(frame) => return Ok(T::from_frame(frame)),
        Err(why) => why,
    };
    let store_lock = pipeline.store().lock_table(spec.table)?;
    let compute = match prepare(pipeline, spec, &call, why, store_lock)? {
        Ok(frame) => return Ok(T::from_frame(frame)),
        Err(compute) => compute,
    };
    let value = compute
        .recorder
        .run(|| body(compute.batches))
        .inspect_err(|_| failed(spec))?;
    check_and_save(
        pipeline,
        spec,
        &call,
        compute.outcome,
        compute.reason,
        &compute.recorder,
        value.as_frame(),
    )?;
    Ok(value)
}

/// An `async` checkpointed call: as [`run`], awaiting `body`. The returned future is `Send`
/// when `body` is. Calls for the same table awaited together run one body; the others wait
/// (without blocking their thread) and load its result.
pub async fn run_async<C, T, E, F>(
    context: &C,
    spec: &Spec<'_>,
    key: KeyBuilder,
    body: F,
) -> std::result::Result<T, E>
where
    C: PipelineContext + ?Sized,
    T: CheckpointValue,
    E: CarriesStoreErrors,
    F: Future<Output = std::result::Result<T, E>>,
{
    run_async_batched(context, spec, key, |_| body).await
}

/// [`run_async`] for a body that takes the call's [`Batches`] (`batches = name`).
pub async fn run_async_batched<'a, C, T, E, F>(
    context: &'a C,
    spec: &Spec<'_>,
    key: KeyBuilder,
    body: impl FnOnce(Batches<'a, C::Store>) -> F,
) -> std::result::Result<T, E>
where
    C: PipelineContext + ?Sized,
    T: CheckpointValue,
    E: CarriesStoreErrors,
    F: Future<Output = std::result::Result<T, E>>,
{
    let pipeline = context.pipeline();
    let started = Instant::now();
    let key = key.finish(spec)?;
    refuse_reentry(pipeline, spec)?;
    let lock = pipeline.table_lock(spec.table);
    let _held = lock.lock().await;
    let call = new_call(spec, &key, started);
    let why = match load_or_why(pipeline, &call)? {
        Ok(frame) => return Ok(T::from_frame(frame)),
        Err(why) => why,
    };
    let store_lock = pipeline.store().lock_table_async(spec.table).await?;
    let compute = match prepare(pipeline, spec, &call, why, store_lock)? {
        Ok(frame) => return Ok(T::from_frame(frame)),
        Err(compute) => compute,
    };
    let value = compute
        .recorder
        .wrap(body(compute.batches))
        .await
        .inspect_err(|_| failed(spec))?;
    check_and_save(
        pipeline,
        spec,
        &call,
        compute.outcome,
        compute.reason,
        &compute.recorder,
        value.as_frame(),
    )?;
    Ok(value)
}

/// A call of a table whose body is already running on this thread in the same pipeline
/// (recursion, or two functions writing one table, nested) would wait for its own lock: it is
/// an error instead.
fn refuse_reentry<S: CheckpointStore>(pipeline: &Pipeline<S>, spec: &Spec<'_>) -> Result<()> {
    if lineage::running(pipeline.id(), spec.table) {
        return Err(Error::Reentrant {
            table: spec.table.to_owned(),
        });
    }
    Ok(())
}

/// Runs the checks on what the body returned, then saves it with the inputs it recorded. A
/// failed check saves nothing.
fn check_and_save<S: CheckpointStore>(
    pipeline: &Pipeline<S>,
    spec: &Spec<'_>,
    call: &Call<'_>,
    outcome: Outcome,
    reason: Option<String>,
    recorder: &Recorder,
    frame: &DataFrame,
) -> Result<()> {
    for check in spec.checks {
        if let Err(message) = (check.run)(frame) {
            tracing::warn!(
                table = spec.table,
                check = check.name,
                message,
                "the frame failed its check: nothing saved"
            );
            return Err(Error::CheckFailed {
                table: spec.table.to_owned(),
                check: check.name.to_owned(),
                message,
            });
        }
    }
    let notes = recorder.notes();
    let reason = match (reason, notes.is_empty()) {
        (reason, true) => reason,
        (None, false) => Some(notes.join("; ")),
        (Some(reason), false) => Some(format!("{reason}; {}", notes.join("; "))),
    };
    pipeline.save(call, outcome, reason.as_deref(), frame, recorder.inputs())
}

/// A call that must run its body: why, the batches it resumes from, the recorder of its
/// inputs (its declared reads already in), and the store's lock on the table, held until the
/// result is saved.
struct Compute<'a, S> {
    outcome: Outcome,
    reason: Option<String>,
    batches: Batches<'a, S>,
    recorder: Recorder,
    _lock: TableLock,
}

/// How a call that must run its body does so, holding the store's lock on the table. On a
/// store other processes share, the checkpoint is looked at again first: what the lock's
/// previous holder saved is loaded rather than computed twice.
fn prepare<'a, S: CheckpointStore>(
    pipeline: &'a Pipeline<S>,
    spec: &Spec<'_>,
    call: &Call<'_>,
    why: (Outcome, Option<String>),
    lock: TableLock,
) -> Result<std::result::Result<DataFrame, Compute<'a, S>>> {
    let (outcome, reason) = if lock.is_shared() {
        match load_or_why(pipeline, call)? {
            Ok(frame) => return Ok(Ok(frame)),
            Err(why) => why,
        }
    } else {
        why
    };
    let recorder = Recorder::new(pipeline.id(), spec.table, pipeline.declared_inputs(call)?);
    tracing::info!(
        table = call.table,
        function = call.function,
        outcome = outcome.as_str(),
        reason = reason.as_deref(),
        "running the body"
    );
    // Progress an older release saved under this call's key, as its code hash had it, is
    // resumed too.
    let legacy_key = match call.legacy_code {
        Some(legacy) if legacy != call.key.code => Some(call.key.with_code(legacy)?.key),
        _ => None,
    };
    let batches = Batches::new(
        pipeline,
        spec.table,
        (call.key.key.clone(), legacy_key),
        outcome == Outcome::Forced,
        recorder.clone(),
    );
    Ok(Err(Compute {
        outcome,
        reason,
        batches,
        recorder,
        _lock: lock,
    }))
}

/// How often a call judges again when the checkpoint it judged was replaced before it could
/// load it: each time needs another writer's save in between.
const REJUDGE_LIMIT: usize = 8;

/// The checkpoint of a hit, loaded (exactly the one judged), or why the body must run.
fn load_or_why<S: CheckpointStore>(
    pipeline: &Pipeline<S>,
    call: &Call<'_>,
) -> Result<std::result::Result<DataFrame, (Outcome, Option<String>)>> {
    for _ in 0..REJUDGE_LIMIT {
        let (outcome, judged) = match pipeline.plan(call)? {
            Plan::Load(outcome, judged) => (outcome, judged),
            Plan::Compute(outcome, reason) => return Ok(Err((outcome, reason))),
        };
        match pipeline.load(call, outcome, &judged)? {
            JudgedLoad::Loaded(frame) => return Ok(Ok(frame)),
            JudgedLoad::Replaced => {
                tracing::debug!(
                    table = call.table,
                    "the judged checkpoint was replaced: judging again"
                );
            }
            JudgedLoad::TableMissing => {
                return Ok(Err((
                    Outcome::Stale,
                    Some("the checkpoint's table is missing".to_owned()),
                )));
            }
        }
    }
    Ok(Err((
        Outcome::Stale,
        Some(format!(
            "the checkpoint was replaced {REJUDGE_LIMIT} times while it was being loaded"
        )),
    )))
}

/// The call `spec` makes with `key`, started at `started`.
fn new_call<'a>(spec: &'a Spec<'_>, key: &'a CheckpointKey, started: Instant) -> Call<'a> {
    Call {
        table: spec.table,
        function: spec.function,
        key,
        legacy_code: spec.legacy_code,
        started,
        reads: spec.reads,
        max_age_seconds: spec.max_age_seconds,
    }
}

fn failed(spec: &Spec<'_>) {
    tracing::warn!(
        table = spec.table,
        function = spec.function,
        "the body failed: nothing saved"
    );
}
