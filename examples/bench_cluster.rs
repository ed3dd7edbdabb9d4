//! Cluster benchmark (issue 23): W worker processes (this example again, with `--worker`)
//! started together, each running the twelve-step chain of tests/it/common/cluster.rs (the
//! pipeline of the cluster tests) on one shared store, against a PostgreSQL server that
//! allows M connections, 3 of them kept for the superuser.
//!
//! ```sh
//! cargo run --features postgres --example bench_cluster                  # 200 workers, 40 connections
//! cargo run --features postgres --example bench_cluster -- --workers 40 --connections 20
//! cargo run --features postgres --example bench_cluster -- --url postgres://u@host:5432/db
//! ```
//!
//! By default it starts a server of its own with `.ci/postgres` (stopped at the end) allowing
//! `--connections`. With `--url` it uses that server as it is, in a new schema, and counts
//! connections through that URL (or `--superuser URL`, which gets in when the others cannot).
//!
//! Prints the workers and connections, the wall time from the start signal to the last
//! worker's end, the bodies run (the chain has 12), the failures with the first few errors,
//! the handover latency (for each step, each waiting worker's call returning after the
//! computing worker's: median, p90, max), the time to open the store, the peak connections to
//! the database in all and by one process (sampled every 20 ms), and the workers' peak RSS.
//! Exits 1 if a worker failed.

use std::process::Command;
use std::time::Duration;

use usher_pipeline::SharedStore;

#[path = "../tests/it/common/cluster.rs"]
mod cluster;
#[path = "../tests/it/common/runs.rs"]
mod runs;

use cluster::{Fleet, Sampler, Server, Summary};

const USAGE: &str =
    "usage: bench_cluster [--workers W] [--connections M] [--url URL [--superuser URL]]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--worker") {
        if let Err(e) = cluster::worker_main() {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |name: &str, default: usize| -> Result<usize, String> {
        arg(name).map_or(Ok(default), |v| v.parse().map_err(|_| USAGE.to_owned()))
    };
    let workers = number("--workers", 200)?;
    let connections = number("--connections", 40)?;

    let dir = tempfile::tempdir()?;
    let (server, url, sampler_url) = match arg("--url") {
        Some(url) => {
            let schema = format!("bench_cluster_{}", std::process::id());
            postgres::Client::connect(&url, postgres::NoTls)?
                .batch_execute(&format!("CREATE SCHEMA {schema}"))?;
            let sep = if url.contains('?') { '&' } else { '?' };
            let in_schema = format!("{url}{sep}options=-c%20search_path%3D{schema}");
            (None, in_schema, arg("--superuser").unwrap_or(url))
        }
        None => {
            let server = Server::start(connections)?;
            let (url, superuser) = (server.url().to_owned(), server.superuser());
            (Some(server), url, superuser)
        }
    };
    let config: postgres::Config = url.parse()?;
    let db = config.get_dbname().unwrap_or("postgres").to_owned();
    let root = dir.path().join("data");
    // The catalog and the data root's marker exist before the workers start.
    drop(SharedStore::open(&url, &root)?);

    let go = dir.path().join("go");
    let exe = std::env::current_exe()?;
    let mut fleet = Fleet::new(&dir.path().join("logs"));
    for n in 0..workers {
        let mut command = Command::new(&exe);
        command
            .arg("--worker")
            .env(cluster::STORE_ENV, &url)
            .env(cluster::ROOT_ENV, &root)
            .env(cluster::RUNS_ENV, dir.path().join("runs"))
            .env(cluster::WORKER_ENV, n.to_string())
            .env(cluster::GO_ENV, &go);
        fleet.spawn(command);
    }
    let sampler = Sampler::start(&sampler_url, &db);
    let (outcomes, wall) = fleet.run(&go, Duration::from_secs(600 + 3 * workers as u64));
    let peaks = sampler.stop();
    drop(server);

    let bodies = runs::runs_of(&dir.path().join("runs"))
        .values()
        .sum::<usize>();
    let limit = match arg("--url") {
        Some(_) => "the given server's".to_owned(),
        None => connections.to_string(),
    };
    println!(
        "{workers} workers, max_connections {limit}, {}={}",
        cluster::CONNECTIONS_ENV,
        std::env::var(cluster::CONNECTIONS_ENV).unwrap_or_else(|_| "(unset)".to_owned()),
    );
    println!("{}", Summary::of(&outcomes, wall));
    println!("bodies counted on disk: {bodies}");
    println!("{peaks}");
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.done())
        .map(cluster::Outcome::why)
        .collect();
    for why in failed.iter().take(5) {
        println!("failed: {why}");
    }
    if !failed.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
