//! What the command line and the example show on a terminal: progress bars for the library's
//! [`ProgressEvent`]s (indicatif, drawn on stderr only when it is a terminal, so pipes and CI
//! logs stay clean) and the library's `tracing` events (`-v`, or `RUST_LOG` as `target=level`
//! lists). Shared by the binary and `examples/pipeline.rs` (`#[path]`), so the library itself
//! depends on neither crate.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use usher_pipeline::{Progress, ProgressEvent};

/// Progress bars on stderr, one per table at work.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Bars {
    /// Bars drawn on stderr when it is a terminal, hidden otherwise.
    pub fn new() -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// A spinner with `message` until it is finished (for work that has no count).
    pub fn spinner(&self, message: String) -> ProgressBar {
        let spinner = self.multi.add(ProgressBar::new_spinner());
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_message(message);
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner
    }

    fn take(&self, table: &str) -> Option<ProgressBar> {
        self.bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(table)
    }

    fn put(&self, table: &str, bar: ProgressBar) {
        self.bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(table.to_owned(), bar);
    }
}

impl Progress for Bars {
    fn report(&self, event: ProgressEvent<'_>) {
        match event {
            ProgressEvent::Batches { table, done, total } => {
                let bar = self.take(table).unwrap_or_else(|| {
                    let bar = self.multi.add(ProgressBar::new(total as u64));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {pos}/{len} items, {per_sec}, {eta} left",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(table.to_owned());
                    // Items finished by earlier runs are not this run's rate.
                    bar.set_position(done as u64);
                    bar.reset_eta();
                    bar
                });
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                self.put(table, bar);
            }
            ProgressEvent::Saving { table, rows } => {
                self.put(table, self.spinner(format!("saving {table} ({rows} rows)")));
            }
            ProgressEvent::Loading { table, rows } => {
                self.put(
                    table,
                    self.spinner(format!("loading {table} ({rows} rows)")),
                );
            }
            ProgressEvent::BatchesFinished { table }
            | ProgressEvent::TransferFinished { table } => {
                if let Some(bar) = self.take(table) {
                    bar.finish_and_clear();
                }
            }
            _ => {}
        }
    }
}

/// The library's `tracing` events on stderr: `verbose` 1 info, 2 debug; without it `RUST_LOG`
/// (`target=level,...`) or warnings only. Colour only on a terminal.
pub fn init_logging(verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = match (verbose, std::env::var("RUST_LOG")) {
        (0, Ok(spec)) => spec.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("warning: RUST_LOG={spec:?} ignored: {e}");
            Targets::new().with_default(LevelFilter::WARN)
        }),
        (0, Err(_)) => Targets::new().with_default(LevelFilter::WARN),
        (1, _) => Targets::new().with_default(LevelFilter::INFO),
        _ => Targets::new().with_default(LevelFilter::DEBUG),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .init();
}
