//! What happens on a `#[checkpointed]` call, top to bottom, in the order it happens:
//!
//! 1. [`run`] (or [`run_async`], or the `_batched` forms) finishes the key and refuses a call
//!    of a table whose body is running on this thread ([`refuse_reentry`]);
//! 2. takes the pipeline's lock of the table, so two calls of one pipeline run one body;
//! 3. judges the stored checkpoint ([`Pipeline::plan`], by the one stale rule of
//!    [`Judge`](crate::status::Judge)) and, on a hit, loads exactly the checkpoint it judged
//!    ([`Pipeline::load`]), judging again when another writer replaced it ([`load_or_why`]);
//! 4. otherwise takes the store's lock of the table (other processes of a shared store), looks
//!    again under it, and readies the body's batches and input recorder ([`prepare`]);
//! 5. runs the body, with nested calls recorded as its inputs;
//! 6. runs the checks on its frame and saves it with its key, lineage and provenance step in
//!    one transaction ([`check_and_save`], [`Pipeline::save`]).
//!
//! The attribute's expansion calls the entry points through the `__private` door; everything
//! else here is the crate's own.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::PoisonError;
use std::time::Instant;

use polars::prelude::DataFrame;
use serde_json::{Map, Value};

use crate::bounds::{CarriesStoreErrors, CheckFn, CheckpointValue, FetchResult};
use crate::error::{Error, Result};
use crate::fingerprint::data_version;
use crate::model::{CheckpointInfo, CheckpointKey, CheckpointVersion, Lineage};
use crate::pipeline::key::KeyBuilder;
use crate::pipeline::lineage::{self, Recorder};
use crate::pipeline::{Batches, Pipeline, PipelineContext, UnkeyedPolicy};
use crate::progress::ProgressEvent;
use crate::provenance::new_step;
use crate::status::Judge;
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
    /// `keep = N`: how many versions of the table to keep, instead of the pipeline's setting.
    pub keep: Option<usize>,
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
        keep: None,
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

/// The config of the pipeline `context` lends, for `config(...)` fields: of the context's own
/// config type, so a field that type lacks is a compile error at the field's token.
pub fn config_of<C: PipelineContext + ?Sized>(context: &C) -> Option<&C::Config> {
    context.pipeline().config()
}

/// Checks at compile time that the return type is a `Result` (what `run` requires of its
/// value and error is reported by `run`'s own bounds, at the same place).
pub fn assert_fetch_result<R: FetchResult>() {}

// --- The entry points: steps 1-6 in order, sync and async ---------------------------------

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
    let call = new_call(spec, &key, started, pipeline.keep());
    let why = match load_or_why(pipeline, &call)? {
        Ok(frame) => return Ok(T::from_frame(frame)),
        Err(why) => why,
    };
    // Waiting for another process's holder without taking the lock in turn: what it saved is
    // loaded at once, beside the other waiters.
    let store_lock = loop {
        if let Some(lock) = pipeline.store().try_lock_table(spec.table)? {
            break lock;
        }
        pipeline.store().wait_for_release(spec.table)?;
        if let Ok(frame) = load_or_why(pipeline, &call)? {
            return Ok(T::from_frame(frame));
        }
    };
    let compute = match prepare(pipeline, spec, &call, why, store_lock)? {
        Ok(frame) => return Ok(T::from_frame(frame)),
        Err(compute) => compute,
    };
    let Compute { batches, saving } = compute;
    let value = saving
        .recorder
        .run(|| body(batches))
        .inspect_err(|_| failed(spec))?;
    check_and_save(pipeline, spec, &call, saving, value.as_frame())?;
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
    let call = new_call(spec, &key, started, pipeline.keep());
    let why = match load_or_why(pipeline, &call)? {
        Ok(frame) => return Ok(T::from_frame(frame)),
        Err(why) => why,
    };
    // As in `run_batched`, without blocking the caller's thread.
    let store_lock = loop {
        if let Some(lock) = pipeline.store().try_lock_table(spec.table)? {
            break lock;
        }
        pipeline.store().wait_for_release_async(spec.table).await?;
        if let Ok(frame) = load_or_why(pipeline, &call)? {
            return Ok(T::from_frame(frame));
        }
    };
    let compute = match prepare(pipeline, spec, &call, why, store_lock)? {
        Ok(frame) => return Ok(T::from_frame(frame)),
        Err(compute) => compute,
    };
    let Compute { batches, saving } = compute;
    let value = saving
        .recorder
        .wrap(body(batches))
        .await
        .inspect_err(|_| failed(spec))?;
    check_and_save(pipeline, spec, &call, saving, value.as_frame())?;
    Ok(value)
}

// --- 1. Before anything: a call of a table whose body runs on this thread ---------------

/// A call of a table whose body is already running on this thread in the same pipeline
/// (recursion, or two functions writing one table, nested) would wait for its own lock: it is
/// an error instead.
fn refuse_reentry<S: CheckpointStore, C>(pipeline: &Pipeline<S, C>, spec: &Spec<'_>) -> Result<()> {
    if lineage::running(pipeline.id(), spec.table) {
        return Err(Error::Reentrant {
            table: spec.table.to_owned(),
        });
    }
    Ok(())
}

// --- 3. Judge, and load exactly what was judged ----------------------------------------

/// How often a call judges again when the checkpoint it judged was replaced before it could
/// load it: each time needs another writer's save in between.
const REJUDGE_LIMIT: usize = 8;

/// The checkpoint of a hit, loaded (exactly the one judged), or why the body must run.
fn load_or_why<S: CheckpointStore, C>(
    pipeline: &Pipeline<S, C>,
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

impl<S: CheckpointStore, C> Pipeline<S, C> {
    /// Decides between loading the checkpoint and running the body, by the one stale rule
    /// ([`Judge`]) with this run's forced tables.
    pub(crate) fn plan(&self, call: &Call<'_>) -> Result<Plan> {
        let table = call.table;
        let stored = self.store.checkpoint(table)?;
        if self.force.includes(table) && !self.recomputed_in_this_run(table, stored.as_ref()) {
            return Ok(Plan::Compute(Outcome::Forced, Some("forced".to_owned())));
        }
        let Some(stored) = stored else {
            return Ok(Plan::Compute(Outcome::Miss, None));
        };
        let forced = |info: &CheckpointInfo| self.forced_now(info);
        let mut judge = Judge::forcing(&self.store, self.now(), &forced);
        match &stored.key {
            Some(stored_key) => {
                let rekey = self.keyed_with_legacy_code(stored_key, call)?;
                let mut why: Vec<String> = match rekey {
                    true => Vec::new(),
                    false => stored_key.difference(call.key).into_iter().collect(),
                };
                why.extend(
                    judge
                        .reasons(&stored, call.reads, call.max_age_seconds)?
                        .iter()
                        .map(ToString::to_string),
                );
                if !why.is_empty() {
                    return Ok(Plan::Compute(Outcome::Stale, Some(why.join("; "))));
                }
                if !rekey {
                    return Ok(Plan::Load(Outcome::Hit, Box::new(stored)));
                }
                // Keyed by an older release's code hash of this same code: recorded anew with
                // today's, lineage kept, so the next toolchain's hash cannot orphan it.
                let adopted = self.store.adopt_checkpoint(
                    table,
                    stored.created_at,
                    stored.created_at,
                    call.key,
                    &stored.lineage,
                )?;
                match self.store.checkpoint(table)? {
                    Some(now) if adopted && now.created_at == stored.created_at => {
                        tracing::info!(table, "checkpoint re-keyed with the new code hash");
                        Ok(Plan::Load(Outcome::Hit, Box::new(now)))
                    }
                    _ => Ok(Plan::Compute(
                        Outcome::Stale,
                        Some("the checkpoint changed while it was being re-keyed".to_owned()),
                    )),
                }
            }
            None => match self.unkeyed {
                UnkeyedPolicy::Refuse => Err(Error::UnkeyedCheckpoint {
                    table: table.to_owned(),
                }),
                UnkeyedPolicy::Recompute => Ok(Plan::Compute(
                    Outcome::Stale,
                    Some("the checkpoint has no key (saved without #[checkpointed])".to_owned()),
                )),
                UnkeyedPolicy::Adopt => {
                    // Trusted as to what made it, not beyond its age; from now on it has the
                    // lineage of a call: its declared inputs as they are, its `max_age`.
                    let expired = judge.reasons(&stored, &[], call.max_age_seconds)?;
                    if !expired.is_empty() {
                        let why: Vec<String> = expired.iter().map(ToString::to_string).collect();
                        return Ok(Plan::Compute(Outcome::Stale, Some(why.join("; "))));
                    }
                    let lineage = Lineage {
                        data_version: None,
                        inputs: self.declared_inputs(call)?,
                        max_age_seconds: call.max_age_seconds,
                    };
                    // Keyed from now on, so stamped in UTC: its save time converted from the
                    // writer's local time.
                    let saved_at = stored.saved_utc();
                    let adopted = self.store.adopt_checkpoint(
                        table,
                        stored.created_at,
                        saved_at,
                        call.key,
                        &lineage,
                    )?;
                    // What is loaded is the checkpoint as adopted (the same row, now keyed).
                    match self.store.checkpoint(table)? {
                        Some(now) if adopted && now.created_at == saved_at => {
                            Ok(Plan::Load(Outcome::Adopted, Box::new(now)))
                        }
                        _ => Ok(Plan::Compute(
                            Outcome::Stale,
                            Some("the checkpoint changed while it was being adopted".to_owned()),
                        )),
                    }
                }
            },
        }
    }

    /// Whether `stored` is the key `call` would have had under an older release's code hash of
    /// the same code (the pretty-printed tokens, whose spacing changed between compilers).
    fn keyed_with_legacy_code(&self, stored: &CheckpointKey, call: &Call<'_>) -> Result<bool> {
        let Some(legacy) = call.legacy_code else {
            return Ok(false);
        };
        if stored.code != legacy || stored.code == call.key.code {
            return Ok(false);
        }
        Ok(call.key.with_code(legacy)?.key == stored.key)
    }

    /// Whether the checkpoint `info` is forced in this run and not recomputed yet: what was
    /// made from it is stale until it is.
    pub(super) fn forced_now(&self, info: &CheckpointInfo) -> bool {
        self.force.includes(&info.table_name)
            && !self.recomputed_in_this_run(&info.table_name, Some(info))
    }

    /// Whether a forced `table` needs no recomputing in this run: this pipeline recomputed it,
    /// or its keyed checkpoint was saved after the pipeline was made (by another worker of a
    /// shared store that was forced too, or by an earlier call of this run). Such a checkpoint
    /// is then planned like any other: a hit when its key and inputs match. Only keyed
    /// checkpoints count: their times are this library's UTC, while the Python pipeline
    /// records local time.
    fn recomputed_in_this_run(&self, table: &str, stored: Option<&CheckpointInfo>) -> bool {
        let done = self
            .forced_done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(table);
        done || stored.is_some_and(|info| {
            info.key.is_some() && info.created_at.is_some_and(|t| t >= self.started_at)
        })
    }

    /// The current versions of the tables `call` declares it reads; one without a checkpoint is
    /// [`Error::MissingInput`].
    pub(crate) fn declared_inputs(
        &self,
        call: &Call<'_>,
    ) -> Result<BTreeMap<String, CheckpointVersion>> {
        call.reads
            .iter()
            .map(|read| match self.store.checkpoint(read)? {
                Some(info) => Ok(((*read).to_owned(), info.version())),
                None => Err(Error::MissingInput {
                    table: call.table.to_owned(),
                    input: (*read).to_owned(),
                }),
            })
            .collect()
    }

    /// Makes current again the newest earlier version of the call's table that the call would
    /// hit (the same key; inputs, expiry and what they were made from judged by the one stale
    /// rule) and loads it, recorded as `restored` with the version's number; `None` when no
    /// kept version matches. Under the table's locks: nothing else saves it meanwhile.
    fn restore(&self, call: &Call<'_>) -> Result<Option<DataFrame>> {
        let history = self.store.history(call.table)?;
        let forced = |info: &CheckpointInfo| self.forced_now(info);
        let mut judge = Judge::forcing(&self.store, self.now(), &forced);
        for version in history.iter().filter(|v| !v.current) {
            let same_key = version
                .checkpoint
                .key
                .as_ref()
                .is_some_and(|key| key.difference(call.key).is_none());
            if !same_key
                || !judge
                    .reasons(&version.checkpoint, call.reads, call.max_age_seconds)?
                    .is_empty()
            {
                continue;
            }
            let Some(restored) = self.store.restore_version(version, call.keep)? else {
                continue;
            };
            tracing::info!(
                table = call.table,
                version = version.version,
                "an earlier version matches the call: restored"
            );
            match self.load_version(call, Outcome::Restored, &restored, Some(version.version))? {
                JudgedLoad::Loaded(frame) => return Ok(Some(frame)),
                // Its table gone, or replaced at once by another writer: computed instead.
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Loads exactly the checkpoint a hit judged and records it; `Replaced` when another
    /// checkpoint took its place meanwhile (the caller judges again), `TableMissing` when its
    /// table is gone.
    pub(crate) fn load(
        &self,
        call: &Call<'_>,
        outcome: Outcome,
        judged: &CheckpointInfo,
    ) -> Result<JudgedLoad> {
        self.load_version(call, outcome, judged, None)
    }

    /// [`load`](Self::load), for a restore also recording the version restored.
    fn load_version(
        &self,
        call: &Call<'_>,
        outcome: Outcome,
        judged: &CheckpointInfo,
        restored: Option<u64>,
    ) -> Result<JudgedLoad> {
        let rows = usize::try_from(judged.row_count.unwrap_or(0)).unwrap_or(0);
        let loading = ProgressEvent::Loading {
            table: call.table,
            rows,
        };
        let frame = match self
            .transferring(loading, rows, call.table, || self.store.load_judged(judged))?
        {
            JudgedLoad::Loaded(frame) => frame,
            other => return Ok(other),
        };
        let version = judged.version();
        let ms = elapsed_ms(call.started);
        tracing::info!(
            table = call.table,
            function = call.function,
            rows = frame.height(),
            duration_ms = ms,
            outcome = outcome.as_str(),
            "checkpoint loaded: body skipped"
        );
        let mut details = details(call, outcome, None, frame.height(), ms);
        details.insert("version".into(), version.to_string().into());
        if let Some(number) = restored {
            details.insert("restored_version".into(), number.into());
        }
        self.provenance.record_step(call.function, Some(details));
        lineage::record(self.id(), call.table, version);
        Ok(JudgedLoad::Loaded(frame))
    }
}

// --- 4. Compute: under the store's lock, looked at again ---------------------------------

/// A call that must run its body: why, the batches it resumes from, the recorder of its
/// inputs (its declared reads already in), and the store's lock on the table, held until the
/// result is saved.
struct Compute<'a, S> {
    batches: Batches<'a, S>,
    saving: Saving,
}

/// What the save of a computed call needs: why it ran, the recorder of its inputs, and the
/// store's lock on the table, held until the result is saved.
struct Saving {
    outcome: Outcome,
    reason: Option<String>,
    recorder: Recorder,
    _lock: TableLock,
}

/// How a call that must run its body does so, holding the store's lock on the table. On a
/// store other processes share, the checkpoint is looked at again first: what the lock's
/// previous holder saved is loaded rather than computed twice.
fn prepare<'a, S: CheckpointStore, C>(
    pipeline: &'a Pipeline<S, C>,
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
    // An earlier version this call would hit is made current again instead (never for a
    // forced table, which is to be computed).
    if outcome != Outcome::Forced
        && let Some(frame) = pipeline.restore(call)?
    {
        return Ok(Ok(frame));
    }
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
        batches,
        saving: Saving {
            outcome,
            reason,
            recorder,
            _lock: lock,
        },
    }))
}

// --- 6. Checks, then one transaction: table, key, lineage, provenance --------------------

/// Runs the checks on what the body returned, then saves it with the inputs it recorded. A
/// failed check saves nothing.
fn check_and_save<S: CheckpointStore, C>(
    pipeline: &Pipeline<S, C>,
    spec: &Spec<'_>,
    call: &Call<'_>,
    saving: Saving,
    frame: &DataFrame,
) -> Result<()> {
    let Saving {
        outcome,
        reason,
        recorder,
        _lock,
    } = saving;
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

impl<S: CheckpointStore, C> Pipeline<S, C> {
    /// Saves what the body returned, with its data version, its `inputs` and the
    /// `_provenance` row of its step in the same transaction, and records the step.
    pub(crate) fn save(
        &self,
        call: &Call<'_>,
        outcome: Outcome,
        reason: Option<&str>,
        frame: &DataFrame,
        inputs: BTreeMap<String, CheckpointVersion>,
    ) -> Result<()> {
        let description = format!("{} {}", call.function, call.key.arguments_json());
        let ms = elapsed_ms(call.started);
        let saving = ProgressEvent::Saving {
            table: call.table,
            rows: frame.height(),
        };
        // A column type without an encoding (an object column) leaves the checkpoint without a
        // data version rather than unsaved: checkpoints made from it then compare its save time.
        // Hashed before the save, outside the store's write: hashing beside DuckDB's ingest was
        // measured no faster (bench_store, 1M rows: 0.99x and 1.00x of Python's save), the
        // ingest already keeps every core busy.
        let version = data_version(frame)
            .inspect_err(|e| {
                tracing::warn!(table = call.table, error = %e, "saved without a data version");
            })
            .ok();
        let lineage = Lineage {
            data_version: version,
            inputs,
            max_age_seconds: call.max_age_seconds,
        };
        let mut details = details(call, outcome, reason, frame.height(), ms);
        if let Some(version) = lineage.data_version {
            details.insert("version".into(), version.to_hex().into());
        }
        if !lineage.inputs.is_empty() {
            details.insert("inputs".into(), Value::Object(lineage.inputs_map()));
        }
        let step = new_step(call.function.to_owned(), Some(details));
        let record = self.provenance.record_of(std::slice::from_ref(&step))?;
        let mut metadata = || Ok((lineage.clone(), record.clone()));
        self.transferring(saving, frame.height(), call.table, || {
            self.store.save_checkpoint_keeping(
                call.table,
                frame,
                &description,
                call.key,
                self.now(),
                call.keep,
                &mut metadata,
            )
        })?;
        if outcome == Outcome::Forced {
            self.forced_done
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(call.table.to_owned());
        }
        tracing::info!(
            table = call.table,
            function = call.function,
            rows = frame.height(),
            duration_ms = ms,
            outcome = outcome.as_str(),
            reason,
            "checkpoint saved"
        );
        self.provenance.push_step(step);
        if let Some(version) = lineage.data_version {
            lineage::record(self.id(), call.table, CheckpointVersion::Data(version));
        }
        Ok(())
    }
}

// --- The call, its outcome, its provenance step ----------------------------------------

/// The call `spec` makes with `key`, started at `started`, keeping `keep` versions unless the
/// spec says.
fn new_call<'a>(
    spec: &'a Spec<'_>,
    key: &'a CheckpointKey,
    started: Instant,
    keep: usize,
) -> Call<'a> {
    Call {
        table: spec.table,
        function: spec.function,
        key,
        legacy_code: spec.legacy_code,
        started,
        reads: spec.reads,
        max_age_seconds: spec.max_age_seconds,
        keep: spec.keep.unwrap_or(keep).max(1),
    }
}

fn failed(spec: &Spec<'_>) {
    tracing::warn!(
        table = spec.table,
        function = spec.function,
        "the body failed: nothing saved"
    );
}

/// The details of a checkpointed call's provenance step.
fn details(
    call: &Call<'_>,
    outcome: Outcome,
    reason: Option<&str>,
    rows: usize,
    ms: f64,
) -> Map<String, Value> {
    let mut details = Map::new();
    details.insert("table".into(), call.table.into());
    details.insert("outcome".into(), outcome.as_str().into());
    if let Some(reason) = reason {
        details.insert("reason".into(), reason.into());
    }
    details.insert("rows".into(), rows.into());
    details.insert("duration_ms".into(), Value::from(ms));
    details.insert("key".into(), call.key.key.clone().into());
    details.insert(
        "arguments".into(),
        Value::Object(call.key.arguments.clone()),
    );
    details.insert("code".into(), call.key.code.clone().into());
    if !call.key.config.is_empty() {
        details.insert("config".into(), Value::Object(call.key.config.clone()));
    }
    details
}

/// One checkpointed call: its table, function, key (and legacy code), start time, declared
/// inputs and expiry.
pub(crate) struct Call<'a> {
    pub table: &'static str,
    pub function: &'a str,
    pub key: &'a CheckpointKey,
    /// The function's code as releases before 0.2.0 hashed it, if not pinned.
    pub legacy_code: Option<&'a str>,
    pub started: Instant,
    pub reads: &'a [&'static str],
    pub max_age_seconds: Option<u64>,
    /// How many versions of the table to keep.
    pub keep: usize,
}

/// Milliseconds since `started`, to the microsecond.
fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// What happened to a checkpointed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Hit,
    Adopted,
    /// An earlier version kept in the table's history, made current again.
    Restored,
    Miss,
    Stale,
    Forced,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Adopted => "adopted",
            Outcome::Restored => "restored",
            Outcome::Miss => "miss",
            Outcome::Stale => "stale",
            Outcome::Forced => "force",
        }
    }
}

/// Load the checkpoint judged (exactly that one), or run the body (with the outcome and why).
pub(crate) enum Plan {
    Load(Outcome, Box<CheckpointInfo>),
    Compute(Outcome, Option<String>),
}
