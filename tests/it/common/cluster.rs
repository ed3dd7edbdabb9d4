//! The cluster pipeline of issue 23: twelve `#[checkpointed]` steps in a chain, run at once by
//! many worker processes against a PostgreSQL server of their own that allows fewer
//! connections than the workers would take, and what the workers report. Shared by
//! tests/it/cluster.rs (a worker is the test binary running an ignored test) and
//! examples/bench_cluster.rs (a worker is the example run with `--worker`), which includes
//! this file by path: both run and measure the same pipeline.
//!
//! A worker speaks in lines on its stdout, times in microseconds since the epoch (one machine,
//! one clock):
//! - `ready`: started, waiting for the go file (so all workers start together);
//! - `opened START END`: its store is open;
//! - `calling K`; then `call K START END COMPUTED` once that call of step K returned its frame
//!   (COMPUTED is 1 when this call ran the body), or `error K MESSAGE` when it failed
//!   (`error open MESSAGE` when the store would not open);
//! - `body K T`: the body of step K started here, so this worker holds K's lock;
//! - `rss KB PSS` then `done`: its peak resident memory and its proportional share of memory
//!   at the end (what it costs beside the others: the binary's pages are shared), and the end
//!   of a run whose every frame held the expected values.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use usher_pipeline::polars::prelude::*;
use usher_pipeline::{Error, Pipeline, ProvenanceTracker, Settings, SharedStore, checkpointed};

use super::runs::count_run;

/// The catalog's URL, its data root and the directory counting body runs (optional), as
/// `Shared::command` in tests/it/common/shared.rs sets them.
pub const STORE_ENV: &str = "USHER_TEST_STORE";
pub const ROOT_ENV: &str = "USHER_TEST_ROOT";
pub const RUNS_ENV: &str = "USHER_TEST_RUNS";
/// The worker's number: even ones call every step in turn, odd ones only the last.
pub const WORKER_ENV: &str = "USHER_CLUSTER_WORKER";
/// A file whose creation starts the workers (optional).
pub const GO_ENV: &str = "USHER_CLUSTER_GO";
/// `K:MS`: step K's body takes MS milliseconds instead of its usual time (optional).
pub const SLOW_ENV: &str = "USHER_CLUSTER_SLOW";
/// The store's bound on its connections per process (issue 23), 2 when unset.
pub const CONNECTIONS_ENV: &str = "USHER_STORE_CONNECTIONS";
pub const DEFAULT_CONNECTIONS: usize = 2;

/// The chain's length.
pub const STEPS: usize = 12;

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

// --- a server of its own -------------------------------------------------------------------

/// `.ci/postgres`, run with bash (CI's clone may lose the executable bit).
fn postgres_script() -> Command {
    let mut command = Command::new("bash");
    command.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".ci")
            .join("postgres"),
    );
    command
}

/// A throwaway PostgreSQL server started with `.ci/postgres` for one test or benchmark, so
/// it may allow few connections and be restarted without disturbing anyone; stopped (and its
/// directory removed) when dropped, a failing test's unwinding included.
pub struct Server {
    dir: tempfile::TempDir,
    url: String,
}

impl Server {
    /// Starts a server allowing `max_connections`, 3 of which PostgreSQL keeps for the
    /// superuser. The error says why `.ci/postgres` could not.
    pub fn start(max_connections: usize) -> Result<Server, String> {
        let dir = tempfile::Builder::new()
            .prefix("usher-cluster-pg.")
            .tempdir()
            .map_err(|e| format!("cannot make a directory for the server: {e}"))?;
        // Built first, so a start that failed halfway is stopped all the same.
        let mut server = Server {
            dir,
            url: String::new(),
        };
        let out = postgres_script()
            .arg("start")
            .arg(server.dir.path())
            .env("USHER_PG_MAX_CONNECTIONS", max_connections.to_string())
            .output()
            .map_err(|e| format!("cannot run .ci/postgres: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        server.url = stdout.lines().last().unwrap_or("").trim().to_owned();
        if !out.status.success() || !server.url.starts_with("postgres://") {
            return Err(format!(
                ".ci/postgres start failed ({}): {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(server)
    }

    /// The `usher` role's URL (trusted, no password), database `usher`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|port| port.parse().ok())
            .expect("a URL .ci/postgres printed")
    }

    /// The superuser's URL: it may connect when every other slot is taken.
    pub fn superuser(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port())
    }

    /// `.ci/postgres restart`: every session is cut; returns once the server accepts
    /// connections again.
    pub fn restart(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let out = postgres_script()
            .arg("restart")
            .arg(self.dir.path())
            .output()
            .map_err(|e| format!("cannot run .ci/postgres: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                ".ci/postgres restart failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(started.elapsed())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = postgres_script()
            .arg("stop")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// --- the pipeline --------------------------------------------------------------------------

/// Step `k`'s table.
pub fn table(k: usize) -> String {
    format!("c{k:02}")
}

/// Step `k`'s frame, made from its upstream's: every value carries the sum of the upstream's,
/// so a frame made from a wrong, stale or torn upstream differs all the way down the chain.
pub fn step_frame(k: usize, upstream: Option<&DataFrame>) -> DataFrame {
    let carried = upstream
        .map(|u| u.column("acc").unwrap().i64().unwrap().sum().unwrap_or(0))
        .unwrap_or(23)
        .rem_euclid(1_000_003);
    let ids: Vec<i64> = (0..(500 + 25 * k) as i64).collect();
    let acc: Vec<i64> = ids
        .iter()
        .map(|i| carried * 7 + i * (k as i64 + 1))
        .collect();
    let labels: Vec<String> = ids.iter().map(|i| format!("{}-{i}", table(k))).collect();
    df!("id" => ids, "acc" => acc, "label" => labels).unwrap()
}

/// What step `k` must hold, computed here without any store.
pub fn expected(k: usize) -> DataFrame {
    let mut frame = step_frame(0, None);
    for j in 1..=k {
        frame = step_frame(j, Some(&frame));
    }
    frame
}

/// How long step `k`'s body takes: every third step 100 to 250 ms, so that the other workers
/// really wait for it; `SLOW_ENV` makes one step longer.
fn body_time(k: usize) -> Duration {
    match SLOW.get().copied().flatten() {
        Some((slow, ms)) if slow == k => Duration::from_millis(ms),
        _ if k % 3 == 2 => Duration::from_millis(100 + 50 * (k / 3) as u64),
        _ => Duration::ZERO,
    }
}

static SLOW: OnceLock<Option<(usize, u64)>> = OnceLock::new();
static RUNS: OnceLock<Option<PathBuf>> = OnceLock::new();

thread_local! {
    /// Bit `k` is set while this thread has run step `k`'s body since its last `call(k)`.
    static COMPUTED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

type Step = fn(&Pipeline<SharedStore>) -> Result<DataFrame, Error>;

/// The body of step `k`: reads its upstream through the pipeline (a nested call, so the
/// lineage records it and, if it is missing too, this worker computes it holding both locks).
fn body(ctx: &Pipeline<SharedStore>, k: usize) -> Result<DataFrame, Error> {
    if let Some(Some(runs)) = RUNS.get() {
        count_run(runs, &table(k));
    }
    COMPUTED.with(|c| c.set(c.get() | 1 << k));
    say(format!("body {k} {}", now_us()));
    let upstream = match k {
        0 => None,
        _ => Some(call(ctx, k - 1)?),
    };
    std::thread::sleep(body_time(k));
    Ok(step_frame(k, upstream.as_ref()))
}

macro_rules! chain {
    ($($k:literal $step:ident $table:literal),* $(,)?) => {
        $(
            #[checkpointed(table = $table)]
            fn $step(ctx: &Pipeline<SharedStore>) -> Result<DataFrame, Error> {
                body(ctx, $k)
            }
        )*
        const CHAIN: [Step; STEPS] = [$($step),*];
    };
}

chain! {
    0 c00 "c00", 1 c01 "c01", 2 c02 "c02", 3 c03 "c03", 4 c04 "c04", 5 c05 "c05",
    6 c06 "c06", 7 c07 "c07", 8 c08 "c08", 9 c09 "c09", 10 c10 "c10", 11 c11 "c11",
}

/// Calls step `k`, saying when it was called, when it returned and whether it computed.
pub fn call(ctx: &Pipeline<SharedStore>, k: usize) -> Result<DataFrame, Error> {
    say(format!("calling {k}"));
    COMPUTED.with(|c| c.set(c.get() & !(1 << k)));
    let start = now_us();
    let result = CHAIN[k](ctx);
    let end = now_us();
    let computed = COMPUTED.with(|c| c.get() >> k & 1);
    match &result {
        Ok(_) => say(format!("call {k} {start} {end} {computed}")),
        Err(e) => say(format!("error {k} {}", one_line(e))),
    }
    result
}

fn one_line(e: &dyn fmt::Display) -> String {
    e.to_string().replace('\n', " ")
}

/// Prints a line for the parent at once.
pub fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

/// The config a worker's provenance records.
#[derive(serde::Serialize)]
struct Run {
    pipeline: &'static str,
}
impl usher_pipeline::Config for Run {}

/// A worker's provenance tracker.
pub fn tracker() -> ProvenanceTracker {
    ProvenanceTracker::new("cluster", &Run { pipeline: "chain" })
}

/// A worker: its settings from the environment (the `*_ENV` names), then the chain, each
/// frame it gets checked against [`expected`]. The error is the first failure's text, said
/// already as an `error` line.
pub fn worker_main() -> Result<(), String> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let (url, root) = (var(STORE_ENV)?, var(ROOT_ENV)?);
    let index: usize = var(WORKER_ENV)?
        .parse()
        .map_err(|_| format!("{WORKER_ENV} is not a number"))?;
    let runs = std::env::var_os(RUNS_ENV).map(PathBuf::from);
    if let Some(runs) = &runs {
        std::fs::create_dir_all(runs).map_err(|e| e.to_string())?;
    }
    RUNS.get_or_init(|| runs);
    SLOW.get_or_init(|| {
        let spec = std::env::var(SLOW_ENV).ok()?;
        let (k, ms) = spec.split_once(':')?;
        Some((k.parse().ok()?, ms.parse().ok()?))
    });
    // libtest starts a test's line (`test NAME ... `) before the test prints: an empty line
    // ends it, so `ready` is a line of its own.
    say("");
    say("ready");
    if let Ok(go) = var(GO_ENV) {
        let deadline = Instant::now() + Duration::from_secs(900);
        while !Path::new(&go).exists() {
            if Instant::now() > deadline {
                return Err("no go file".to_owned());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let start = now_us();
    // Opened as `Pipeline::from_config` would, from the environment's settings, so that
    // `USHER_STORE_CONNECTIONS` applies; the catalog and root are the test's.
    let opened = Settings::from_env().and_then(|mut settings| {
        settings.store = Some(url);
        settings.data_root = Some(root.into());
        SharedStore::from_settings(&settings)
    });
    let store = match opened {
        Ok(Some(store)) => store,
        Ok(None) => unreachable!("a store and a data root are set"),
        Err(e) => {
            say(format!("error open {}", one_line(&e)));
            return Err(e.to_string());
        }
    };
    say(format!("opened {start} {}", now_us()));
    let pipeline = Pipeline::new(store, tracker());
    // Even workers call every step in turn; odd ones only the last, whose body calls the one
    // before it, and so on down: up to twelve locks held at once, always taken downwards.
    let order: Vec<usize> = match index % 2 {
        0 => (0..STEPS).collect(),
        _ => vec![STEPS - 1],
    };
    for k in order {
        let frame = call(&pipeline, k).map_err(|e| e.to_string())?;
        if !frame.equals_missing(&expected(k)) {
            say(format!("error {k} not the expected values"));
            return Err(format!("step {k} returned\n{frame}\nnot\n{}", expected(k)));
        }
    }
    say(format!(
        "rss {} {}",
        kb_of("/proc/self/status", "VmHWM:").unwrap_or(0),
        kb_of("/proc/self/smaps_rollup", "Pss:").unwrap_or(0)
    ));
    say("done");
    Ok(())
}

/// The figure (in kB) of the line starting with `field` in the /proc file `path`.
fn kb_of(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// --- the workers, seen from the parent -----------------------------------------------------

/// Worker processes, their lines gathered on one channel as they come (so the parent can act
/// on what they say while they run). Workers still running when it is dropped are killed.
pub struct Fleet {
    children: Vec<Child>,
    statuses: Vec<Option<ExitStatus>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// Every line each worker said so far.
    pub lines: Vec<Vec<String>>,
    /// When each worker said its last line (or was started).
    heard: Vec<Instant>,
    tx: mpsc::Sender<(usize, String)>,
    rx: mpsc::Receiver<(usize, String)>,
    logs: PathBuf,
}

impl Fleet {
    /// Workers whose stderr goes to `logs/wN.err`.
    pub fn new(logs: &Path) -> Fleet {
        std::fs::create_dir_all(logs).unwrap();
        let (tx, rx) = mpsc::channel();
        Fleet {
            children: Vec::new(),
            statuses: Vec::new(),
            readers: Vec::new(),
            lines: Vec::new(),
            heard: Vec::new(),
            tx,
            rx,
            logs: logs.to_owned(),
        }
    }

    /// Starts `command` as the next worker; its number.
    pub fn spawn(&mut self, mut command: Command) -> usize {
        let n = self.children.len();
        let stderr = std::fs::File::create(self.logs.join(format!("w{n}.err"))).unwrap();
        // A panic's message, not a backtrace, is what a failure's report shows of stderr.
        let mut child = command
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start a worker");
        let stdout = child.stdout.take().expect("piped");
        let tx = self.tx.clone();
        self.readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((n, line)).is_err() {
                    break;
                }
            }
        }));
        self.children.push(child);
        self.statuses.push(None);
        self.lines.push(Vec::new());
        self.heard.push(Instant::now());
        n
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn pid(&self, n: usize) -> u32 {
        self.children[n].id()
    }

    /// Takes the lines said so far, waiting up to `wait` for the first.
    pub fn pump(&mut self, wait: Duration) {
        let mut next = self.rx.recv_timeout(wait).ok();
        while let Some((n, line)) = next {
            self.lines[n].push(line);
            self.heard[n] = Instant::now();
            next = self.rx.try_recv().ok();
        }
    }

    /// Pumps lines until `done` holds or `timeout` passed; whether it held.
    pub fn wait_until(&mut self, timeout: Duration, done: impl Fn(&Fleet) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() > deadline {
                return false;
            }
            self.pump(Duration::from_millis(20));
        }
        true
    }

    /// Pumps lines for `time`.
    pub fn watch(&mut self, time: Duration) {
        let until = Instant::now() + time;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.pump(left.min(Duration::from_millis(50)));
        }
    }

    /// What each worker said and wrote to stderr so far, for a failure's message.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        for (n, lines) in self.lines.iter().enumerate() {
            let stderr = std::fs::read_to_string(self.logs.join(format!("w{n}.err")));
            text.push_str(&format!(
                "\n--- worker {n} said: {lines:?}\n    stderr: {}",
                stderr.unwrap_or_default().trim()
            ));
        }
        text
    }

    /// How long worker `n` has said nothing (as far as the lines pumped tell).
    pub fn quiet_for(&self, n: usize) -> Duration {
        self.heard[n].elapsed()
    }

    /// Whether worker `n` said a line starting with `prefix`.
    pub fn said(&self, n: usize, prefix: &str) -> bool {
        self.lines[n].iter().any(|l| l.starts_with(prefix))
    }

    /// Waits until every worker is ready, creates `go`, and waits for them all to end (see
    /// [`finish`](Self::finish)); the time from the go to the last worker's end.
    pub fn run(&mut self, go: &Path, timeout: Duration) -> (Vec<Outcome>, Duration) {
        let ready = self.wait_until(timeout, |f| (0..f.len()).all(|n| f.said(n, "ready")));
        assert!(
            ready,
            "the workers were not all ready after {timeout:?}: {}",
            self.describe()
        );
        std::fs::write(go, b"").unwrap();
        let started = Instant::now();
        let outcomes = self.finish(timeout);
        (outcomes, started.elapsed())
    }

    /// Waits for every worker to end, killing those still running after `timeout` (their
    /// status is `None`), and returns what each said and how it ended.
    pub fn finish(&mut self, timeout: Duration) -> Vec<Outcome> {
        let deadline = Instant::now() + timeout;
        loop {
            for (child, status) in self.children.iter_mut().zip(&mut self.statuses) {
                if status.is_none() {
                    *status = child.try_wait().unwrap();
                }
            }
            if self.statuses.iter().all(Option::is_some) || Instant::now() > deadline {
                break;
            }
            self.pump(Duration::from_millis(50));
        }
        self.kill();
        // Every pipe is closed once its reader is done: all lines are in the channel.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.pump(Duration::ZERO);
        (0..self.len())
            .map(|n| Outcome {
                worker: n,
                pid: self.children[n].id(),
                status: self.statuses[n],
                lines: self.lines[n].clone(),
                stderr: std::fs::read_to_string(self.logs.join(format!("w{n}.err")))
                    .unwrap_or_default(),
            })
            .collect()
    }

    fn kill(&mut self) {
        for (child, status) in self.children.iter_mut().zip(&self.statuses) {
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a worker ended and what it said.
pub struct Outcome {
    pub worker: usize,
    pub pid: u32,
    /// `None`: still running at the deadline, killed.
    pub status: Option<ExitStatus>,
    pub lines: Vec<String>,
    pub stderr: String,
}

/// A call that returned a frame.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub step: usize,
    pub start: u64,
    pub end: u64,
    pub computed: bool,
}

impl Outcome {
    /// Ended well, every frame as expected.
    pub fn done(&self) -> bool {
        self.status.is_some_and(|s| s.success()) && self.lines.iter().any(|l| l == "done")
    }

    /// The first error it said (what follows `error `).
    pub fn error(&self) -> Option<&str> {
        self.lines.iter().find_map(|l| l.strip_prefix("error "))
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lines
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.strip_prefix("call ")?.split(' ').collect();
                Some(Call {
                    step: f.first()?.parse().ok()?,
                    start: f.get(1)?.parse().ok()?,
                    end: f.get(2)?.parse().ok()?,
                    computed: *f.get(3)? == "1",
                })
            })
            .collect()
    }

    /// Its peak resident memory and its proportional share at the end, in kB.
    pub fn memory_kb(&self) -> Option<(u64, u64)> {
        let line = self.lines.iter().find_map(|l| l.strip_prefix("rss "))?;
        let (rss, pss) = line.split_once(' ')?;
        Some((rss.parse().ok()?, pss.parse().ok()?))
    }

    /// Why it did not end well, for a failure's message: status, error, end of stderr.
    pub fn why(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "killed at the deadline".to_owned(),
        };
        let tail: Vec<&str> = self.stderr.lines().rev().take(6).collect();
        format!(
            "worker {} (pid {}): {status}; error: {}; stderr: {}",
            self.worker,
            self.pid,
            self.error().unwrap_or("none said"),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )
    }
}

/// The steps whose body a worker started, by its `lines`, and had not returned from: the locks
/// it holds (at the time of the last line).
pub fn open_bodies(lines: &[String]) -> Vec<usize> {
    let mut open = Vec::new();
    for line in lines {
        let mut fields = line.split(' ');
        let (kind, step) = (fields.next(), fields.next().and_then(|k| k.parse().ok()));
        match (kind, step) {
            (Some("body"), Some(k)) => open.push(k),
            (Some("call"), Some(k)) if line.ends_with(" 1") => {
                if let Some(i) = open.iter().rposition(|&o| o == k) {
                    open.remove(i);
                }
            }
            _ => {}
        }
    }
    open
}

/// For each step, how long each worker that called it before its computing worker's call
/// returned took to return after that call did: the handover, in milliseconds (slightly
/// negative when a waiter's load beat the computer's own bookkeeping).
pub fn handovers(outcomes: &[Outcome]) -> Vec<f64> {
    let calls: Vec<Call> = outcomes.iter().flat_map(Outcome::calls).collect();
    let mut out = Vec::new();
    for step in 0..STEPS {
        let Some(computed) = calls
            .iter()
            .filter(|c| c.step == step && c.computed)
            .map(|c| c.end)
            .min()
        else {
            continue;
        };
        out.extend(
            calls
                .iter()
                .filter(|c| c.step == step && !c.computed && c.start < computed)
                .map(|c| (c.end as f64 - computed as f64) / 1e3),
        );
    }
    out
}

/// Median, 90th percentile and maximum of some values.
pub struct Stats {
    pub n: usize,
    pub median: f64,
    pub p90: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(mut values: Vec<f64>) -> Stats {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((values.len() as f64 * q) as usize).min(values.len().saturating_sub(1));
            values.get(i).copied().unwrap_or(f64::NAN)
        };
        Stats {
            n: values.len(),
            median: at(0.5),
            p90: at(0.9),
            max: values.last().copied().unwrap_or(f64::NAN),
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.n == 0 {
            return write!(f, "none");
        }
        write!(
            f,
            "median {:.0} ms, p90 {:.0} ms, max {:.0} ms (of {})",
            self.median, self.p90, self.max, self.n
        )
    }
}

/// A run's figures.
pub struct Summary {
    pub workers: usize,
    pub failures: usize,
    pub bodies: usize,
    pub wall: Duration,
    pub handover: Stats,
    pub open: Stats,
    pub rss_max_kb: u64,
    pub pss_total_kb: u64,
}

impl Summary {
    pub fn of(outcomes: &[Outcome], wall: Duration) -> Summary {
        let memory: Vec<(u64, u64)> = outcomes.iter().filter_map(Outcome::memory_kb).collect();
        let opens = outcomes.iter().filter_map(|o| {
            let line = o.lines.iter().find_map(|l| l.strip_prefix("opened "))?;
            let (start, end) = line.split_once(' ')?;
            Some((end.parse::<f64>().ok()? - start.parse::<f64>().ok()?) / 1e3)
        });
        Summary {
            workers: outcomes.len(),
            failures: outcomes.iter().filter(|o| !o.done()).count(),
            bodies: outcomes
                .iter()
                .flat_map(|o| &o.lines)
                .filter(|l| l.starts_with("body "))
                .count(),
            wall,
            handover: Stats::of(handovers(outcomes)),
            open: Stats::of(opens.collect()),
            rss_max_kb: memory.iter().map(|m| m.0).max().unwrap_or(0),
            pss_total_kb: memory.iter().map(|m| m.1).sum(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "workers {}, failures {}, bodies run {} (the chain has {STEPS}), wall {:.2} s",
            self.workers,
            self.failures,
            self.bodies,
            self.wall.as_secs_f64()
        )?;
        writeln!(f, "handover: {}", self.handover)?;
        writeln!(f, "open: {}", self.open)?;
        write!(
            f,
            "memory: peak RSS of a worker {} MiB; PSS of all workers at their end {} MiB",
            self.rss_max_kb / 1024,
            self.pss_total_kb / 1024
        )
    }
}

/// The most connections open at once, in all and by one worker process.
#[derive(Debug, Default, Clone)]
pub struct Peaks {
    pub total: usize,
    pub per_process: usize,
    /// The `application_name` of a process that had `per_process`.
    pub busiest: String,
    /// The most each `application_name` had.
    pub by_name: BTreeMap<String, usize>,
    pub samples: usize,
}

impl Peaks {
    /// The most connections the process `pid` had at once.
    pub fn of_pid(&self, pid: u32) -> usize {
        let suffix = format!(" pid {pid}");
        self.by_name
            .iter()
            .filter(|(name, _)| name.ends_with(&suffix))
            .map(|(_, &n)| n)
            .max()
            .unwrap_or(0)
    }
}

impl fmt::Display for Peaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "peak connections: {} in all, {} by one process ({}), over {} samples",
            self.total, self.per_process, self.busiest, self.samples
        )
    }
}

/// A session seen in `pg_stat_activity`: alive from its start to at least its last sighting
/// (server clock, microseconds).
struct Sighting {
    name: String,
    start: i64,
    last_seen: i64,
}

/// The sessions seen, by server pid and start, and how many samples were taken.
type Sightings = (BTreeMap<(i32, i64), Sighting>, usize);

/// The most of `spans` (start, end) that share a moment.
fn most_at_once(spans: impl Iterator<Item = (i64, i64)>) -> usize {
    // Ends sort before starts at the same time: touching spans do not overlap.
    let mut events: Vec<(i64, i32)> = spans.flat_map(|(s, e)| [(s, 1), (e, -1)]).collect();
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in events {
        now += step;
        most = most.max(now);
    }
    most as usize
}

/// Watches the sessions on database `db` every 10 ms from a connection of its own (`url`, a
/// superuser's, which gets in when every other slot is taken; reconnecting after a restart).
/// Each session is known by its server pid and start, and was open from its start to at least
/// its last sighting: two sessions of a process whose spans overlap were open together, even
/// if no single sample caught both. The store names a process's sessions `usher-pipeline HOST
/// pid PID`.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Sightings>,
}

impl Sampler {
    pub fn start(url: &str, db: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (url, db, stopped) = (url.to_owned(), db.to_owned(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut seen: BTreeMap<(i32, i64), Sighting> = BTreeMap::new();
            let mut samples = 0;
            let mut client = None;
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                let sampler = match &mut client {
                    Some(client) => client,
                    None => match postgres::Client::connect(&url, postgres::NoTls) {
                        Ok(c) => client.insert(c),
                        Err(_) => continue,
                    },
                };
                let rows = sampler.query(
                    "SELECT coalesce(application_name, ''), pid, \
                     (extract(epoch FROM backend_start) * 1e6)::int8, \
                     (extract(epoch FROM clock_timestamp()) * 1e6)::int8 \
                     FROM pg_stat_activity WHERE datname = $1 \
                     AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                    &[&db],
                );
                let Ok(rows) = rows else {
                    client = None;
                    continue;
                };
                samples += 1;
                for row in rows {
                    let (name, pid, start, now): (String, i32, i64, i64) =
                        (row.get(0), row.get(1), row.get(2), row.get(3));
                    seen.entry((pid, start))
                        .or_insert(Sighting {
                            name,
                            start,
                            last_seen: now,
                        })
                        .last_seen = now;
                }
            }
            (seen, samples)
        });
        Sampler { stop, thread }
    }

    pub fn stop(self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        let (seen, samples) = self.thread.join().expect("the sampler");
        let mut by_name: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        for s in seen.values() {
            by_name
                .entry(s.name.clone())
                .or_default()
                .push((s.start, s.last_seen));
        }
        let mut peaks = Peaks {
            total: most_at_once(seen.values().map(|s| (s.start, s.last_seen))),
            samples,
            ..Peaks::default()
        };
        for (name, spans) in by_name {
            if !name.starts_with("usher-pipeline ") {
                continue;
            }
            let most = most_at_once(spans.into_iter());
            if most > peaks.per_process {
                peaks.per_process = most;
                peaks.busiest = name.clone();
            }
            peaks.by_name.insert(name, most);
        }
        peaks
    }
}
