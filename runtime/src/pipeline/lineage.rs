//! Nested calls are lineage: the checkpointed calls a checkpointed body makes are recorded as
//! the inputs of the checkpoint it saves.
//!
//! A running body's [`Recorder`] sits on a per-thread stack while the body runs (a sync body)
//! or while its future is polled ([`Recording`], as `tracing`'s `Instrumented` does for spans),
//! so any runtime works and no task-local storage is needed. A checkpointed call that finishes
//! (loaded or saved) reports its table and version to the recorder on top, if that recorder
//! belongs to the same [`Pipeline`](super::Pipeline). Work a body hands to another thread or
//! spawned task is not seen.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use crate::model::CheckpointVersion;

/// The inputs of one running body: its declared `reads(...)` and the calls it has made.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    /// The pipeline the body runs in (its address): calls in another pipeline, over another
    /// store, are not this checkpoint's inputs.
    pipeline: usize,
    /// The table the body makes, never its own input.
    table: &'static str,
    inputs: Arc<Mutex<BTreeMap<String, CheckpointVersion>>>,
    /// What the save's provenance step should add to its reason (progress discarded, say).
    notes: Arc<Mutex<Vec<String>>>,
}

thread_local! {
    /// The recorders of the bodies running on this thread, innermost last.
    static RUNNING: RefCell<Vec<Recorder>> = const { RefCell::new(Vec::new()) };
}

/// Reports a finished checkpointed call of `pipeline` to the innermost running body of the
/// same pipeline on this thread, if there is one (and it is not the call's own table).
pub(crate) fn record(pipeline: usize, table: &str, version: CheckpointVersion) {
    // During thread teardown there is no stack, and no body running on it.
    let _ = RUNNING.try_with(|running| {
        if let Some(body) = running
            .borrow()
            .iter()
            .rev()
            .find(|r| r.pipeline == pipeline)
            && body.table != table
        {
            body.lock().insert(table.to_owned(), version);
        }
    });
}

/// Whether the body making `table` in `pipeline` is running on this thread (a sync body, or an
/// `async` one being polled).
pub(crate) fn running(pipeline: usize, table: &str) -> bool {
    RUNNING
        .try_with(|running| {
            running
                .borrow()
                .iter()
                .any(|r| r.pipeline == pipeline && r.table == table)
        })
        .unwrap_or(false)
}

impl Recorder {
    /// A recorder for the body making `table`, starting from its declared inputs.
    pub(crate) fn new(
        pipeline: usize,
        table: &'static str,
        declared: BTreeMap<String, CheckpointVersion>,
    ) -> Self {
        Self {
            pipeline,
            table,
            inputs: Arc::new(Mutex::new(declared)),
            notes: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Runs `body` with this recorder innermost.
    pub(crate) fn run<R>(&self, body: impl FnOnce() -> R) -> R {
        let _entered = self.enter();
        body()
    }

    /// `body`, polled with this recorder innermost.
    pub(crate) fn wrap<F: Future>(&self, body: F) -> Recording<F> {
        Recording {
            recorder: self.clone(),
            body: Box::pin(body),
        }
    }

    /// The inputs recorded so far.
    pub(crate) fn inputs(&self) -> BTreeMap<String, CheckpointVersion> {
        self.lock().clone()
    }

    /// Adds `note` to the reason of the step that saves the body's result.
    pub(crate) fn note(&self, note: String) {
        self.notes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(note);
    }

    /// The notes so far.
    pub(crate) fn notes(&self) -> Vec<String> {
        self.notes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, CheckpointVersion>> {
        self.inputs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(&self) -> Entered {
        let pushed = RUNNING
            .try_with(|running| running.borrow_mut().push(self.clone()))
            .is_ok();
        Entered { pushed }
    }
}

/// Takes the recorder off the stack again, also when the body panics.
struct Entered {
    /// Whether the recorder was pushed (not during thread teardown).
    pushed: bool,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if self.pushed {
            let _ = RUNNING.try_with(|running| running.borrow_mut().pop());
        }
    }
}

/// An `async` body with its [`Recorder`] innermost while it is polled. Boxed, so it is `Unpin`
/// without a pin projection (one allocation per computed call, next to a fetch).
pub(crate) struct Recording<F> {
    recorder: Recorder,
    body: Pin<Box<F>>,
}

impl<F: Future> Future for Recording<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.recorder.enter();
        this.body.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::DataVersion;

    fn v(n: u8) -> CheckpointVersion {
        CheckpointVersion::Data(DataVersion::from_hex(&format!("{n:02x}").repeat(16)).unwrap())
    }

    #[test]
    fn calls_reach_the_innermost_body_of_the_same_pipeline_only() {
        let outer = Recorder::new(1, "scores", BTreeMap::new());
        let inner = Recorder::new(1, "constraint", BTreeMap::new());
        outer.run(|| {
            record(1, "genes", v(1));
            inner.run(|| record(1, "raw", v(2)));
            record(2, "other_pipeline", v(3));
            Recorder::new(2, "elsewhere", BTreeMap::new()).run(|| record(1, "under_another", v(7)));
            record(1, "scores", v(4));
            record(1, "constraint", v(5));
        });
        record(1, "after", v(6));
        assert_eq!(
            outer.inputs(),
            BTreeMap::from([
                ("constraint".to_owned(), v(5)),
                ("genes".to_owned(), v(1)),
                ("under_another".to_owned(), v(7)),
            ])
        );
        assert_eq!(inner.inputs(), BTreeMap::from([("raw".to_owned(), v(2))]));
        RUNNING.with(|r| assert!(r.borrow().is_empty()));
    }

    /// A future polled once, then dropped unfinished (a timeout, a cancelled task): the stack
    /// holds nothing of it.
    #[test]
    fn a_future_dropped_mid_way_leaves_the_stack_empty() {
        let recorder = Recorder::new(1, "scores", BTreeMap::new());
        let mut polled = 0;
        let body = std::future::poll_fn(|_| {
            polled += 1;
            record(1, "genes", v(1));
            Poll::<()>::Pending
        });
        let mut recording = recorder.wrap(body);
        let waker = std::task::Waker::noop();
        let pending = Pin::new(&mut recording).poll(&mut Context::from_waker(waker));
        assert!(pending.is_pending());
        RUNNING.with(|r| assert!(r.borrow().is_empty(), "popped after the poll"));
        drop(recording);
        assert_eq!(polled, 1);
        assert_eq!(recorder.inputs().len(), 1);
        RUNNING.with(|r| assert!(r.borrow().is_empty()));
    }

    #[test]
    fn a_panicking_body_leaves_the_stack_empty() {
        let outer = Recorder::new(1, "scores", BTreeMap::new());
        let caught = std::panic::catch_unwind(|| outer.run(|| panic!("boom")));
        assert!(caught.is_err());
        RUNNING.with(|r| assert!(r.borrow().is_empty()));
    }
}
