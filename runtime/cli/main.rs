//! `usher-pipeline`: the command line of the library, the stable outside interface.
//!
//! Every store command takes `--store PATH` or `--config FILE` (the config's `duckdb_path`), or
//! a shared store: `--store postgres://...` with `--data-root DIR`, or `USHER_STORE` and
//! `USHER_DATA_ROOT` in the environment (which a `--config` defers to, as
//! `Pipeline::from_config` does). Each takes `--json` (stable, documented output) and opens a
//! file store read-only unless it writes (`rm`, `gc`):
//!
//! - `info --config FILE`: the validated config and its full hash.
//! - `status`: every checkpoint with its state (valid, stale, unkeyed, partial) and why; exit
//!   code 3 when something would be recomputed.
//! - `show TABLE`: what made a checkpoint, what was made from it, its schema and first rows.
//! - `lineage [TABLE] [--dot]`: the graph of checkpoints as a tree, or for Graphviz.
//! - `rm TABLE... [--with-dependents] [--dry-run]`: deletes checkpoints in one transaction.
//! - `export TABLE --parquet PATH`: Parquet plus provenance sidecar, each whole or not at all.
//! - `provenance [--table T]`: the `_provenance` history.
//! - `query SQL [--param V]...`: a read-only query, values bound.
//! - `gc`: removes leftovers of interrupted work and reports the space.
//! - `checkpoints`: the `_checkpoints` rows, newest first.
//!
//! Exit codes: 0 success, 1 an error (printed to stderr), 2 a usage error, 3 `status` found
//! something that would be recomputed. `-v` (or `RUST_LOG=target=level,...`) prints the
//! library's `tracing` events to stderr.
#![deny(unsafe_code)]

mod inspect;
mod manage;
mod output;
mod query;
mod terminal;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgGroup, ArgMatches, Command, value_parser};
use serde_json::{Value, json};
use usher_pipeline::{
    AnyStore, DATA_ROOT_ENV, Error, PipelineConfig, PipelineStore, Settings, SharedStore,
    SharedStoreOptions, StoreOptions,
};

/// What a command prints, and its exit code.
pub struct Output {
    text: String,
    code: u8,
}

impl Output {
    fn new(text: String, code: u8) -> Self {
        Self { text, code }
    }
}

/// The command line. clap's builder rather than its derive: `clap_derive` turns on syn's `full`
/// feature for every proc-macro of the build, which rebuilds serde's derive, and with it
/// DuckDB's build script, whenever the binary is built after the library.
fn cli() -> Command {
    let json = || {
        Arg::new("json")
            .long("json")
            .global(true)
            .action(ArgAction::SetTrue)
            .help("Print JSON instead of text")
    };
    let path = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_parser(value_parser!(PathBuf))
            .help(help)
    };
    // The store of a command: a file or a shared store's catalog, the one a config names, or
    // the shared store of USHER_STORE.
    let store_command = |name: &'static str, about: &'static str| {
        Command::new(name)
            .about(about)
            .arg(path(
                "store",
                "The DuckDB store file, or a shared store's PostgreSQL URL (postgres://user@host/db)",
            ))
            .arg(path(
                "config",
                "A YAML config whose duckdb_path is the store (USHER_STORE, when set, names a shared store instead)",
            ))
            .arg(path(
                "data-root",
                "The shared store's data directory (default: USHER_DATA_ROOT)",
            ))
            .group(ArgGroup::new("source").args(["store", "config"]))
    };
    let table = |help: &'static str| Arg::new("table").required(true).help(help);
    Command::new("usher-pipeline")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Restartable, traceable pipeline steps: config and checkpoint inspection")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .arg(json())
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .global(true)
                .action(ArgAction::Count)
                .help("Print the library's log events to stderr (-v info, -vv debug); RUST_LOG takes target=level lists"),
        )
        .subcommand(
            Command::new("info")
                .about("Validate a config file and show its summary and config_hash")
                .arg(path("config", "The YAML config file").required(true)),
        )
        .subcommand(store_command(
            "status",
            "Every checkpoint with its state and why; exit code 3 when something would be recomputed",
        ))
        .subcommand(
            store_command("show", "What made a checkpoint, what was made from it, its schema and first rows")
                .arg(table("The checkpoint's table"))
                .arg(
                    Arg::new("version")
                        .long("version")
                        .value_parser(clap::value_parser!(u64))
                        .help("A kept version of the table, as `history` numbers it"),
                ),
        )
        .subcommand(
            store_command("history", "Every version of a table the store keeps: arguments, data version, inputs, age, rows, size")
                .arg(table("The checkpoint's table")),
        )
        .subcommand(
            store_command("restore", "Make a kept version of a table current again (refused when its inputs changed since, unless --force)")
                .arg(table("The checkpoint's table"))
                .arg(
                    Arg::new("version")
                        .long("version")
                        .required(true)
                        .value_parser(clap::value_parser!(u64))
                        .help("The version's number, as `history` lists it"),
                )
                .arg(
                    Arg::new("force")
                        .long("force")
                        .action(ArgAction::SetTrue)
                        .help("Restore it even though its inputs changed since or it expired"),
                ),
        )
        .subcommand(
            store_command("lineage", "The graph of checkpoints: each input above what was made from it")
                .arg(Arg::new("table").help("Only this table's upstream and downstream"))
                .arg(
                    Arg::new("dot")
                        .long("dot")
                        .action(ArgAction::SetTrue)
                        .help("Print Graphviz DOT (dot -Tsvg) instead of a tree"),
                ),
        )
        .subcommand(
            store_command("rm", "Delete checkpoints (tables, keys, batches) in one transaction")
                .arg(
                    Arg::new("tables")
                        .required(true)
                        .num_args(1..)
                        .help("The checkpoints' tables"),
                )
                .arg(
                    Arg::new("with-dependents")
                        .long("with-dependents")
                        .action(ArgAction::SetTrue)
                        .help("Also delete the checkpoints made from them"),
                )
                .arg(
                    Arg::new("dry-run")
                        .long("dry-run")
                        .action(ArgAction::SetTrue)
                        .help("Say what would be deleted, delete nothing"),
                ),
        )
        .subcommand(
            store_command("export", "Write a table as Parquet with its provenance sidecar")
                .arg(table("The table"))
                .arg(path("parquet", "The Parquet file to write").required(true))
                .arg(
                    Arg::new("version")
                        .long("version")
                        .value_parser(clap::value_parser!(u64))
                        .help("A kept version of the table, as `history` numbers it (default: the current one)"),
                ),
        )
        .subcommand(
            store_command("provenance", "The _provenance history: runs and their steps").arg(
                Arg::new("only")
                    .long("table")
                    .help("Only the steps about this table"),
            ),
        )
        .subcommand(
            store_command("query", "Run a read-only SQL query, values bound to ? placeholders")
                .arg(Arg::new("sql").required(true).help("One SQL statement"))
                .arg(
                    Arg::new("param")
                        .long("param")
                        .allow_hyphen_values(true)
                        .action(ArgAction::Append)
                        .help("A value for the next ?: null, true, false, a number, else text (text:113 keeps text)"),
                ),
        )
        .subcommand(
            store_command(
                "gc",
                "Remove leftovers of interrupted or superseded work and report the space returned",
            )
            .arg(
                Arg::new("keep")
                    .long("keep")
                    .value_name("N")
                    .value_parser(clap::value_parser!(u64).range(1..))
                    .help("First keep at most N versions of every table (the current one included), dropping the oldest"),
            )
            .arg(
                Arg::new("expire-older-than")
                    .long("expire-older-than")
                    .value_name("AGE")
                    .value_parser(manage::parse_age)
                    .help("Shared store: first expire the lake's snapshots older than AGE (30d, 12h, 90m, 2w), so the earlier versions only they read are removed too"),
            ),
        )
        .subcommand(store_command(
            "checkpoints",
            "List the checkpoints of a store, newest first",
        ))
}

fn main() -> ExitCode {
    let matches = cli().get_matches();
    terminal::init_logging(matches.get_count("verbose"));
    match run(&matches) {
        Ok(output) => {
            println!("{}", output.text);
            ExitCode::from(output.code)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(matches: &ArgMatches) -> Result<Output, Error> {
    let (name, m) = matches
        .subcommand()
        .ok_or_else(|| Error::Format("no command given".to_owned()))?;
    let as_json = m.get_flag("json");
    let path = |name: &str| m.get_one::<PathBuf>(name).cloned();
    let text = |name: &str| m.get_one::<String>(name).cloned().unwrap_or_default();
    if name == "info" {
        let config = path("config").unwrap_or_default();
        return info(&config, as_json).map(|text| Output::new(text, 0));
    }
    let writes = match name {
        "rm" => !m.get_flag("dry-run"),
        "gc" | "restore" => true,
        _ => false,
    };
    let source = source(path("store"), path("config"), path("data-root"))?;
    let store = open(&source, writes, name == "query")?;
    match name {
        "status" => inspect::status(&store, as_json),
        "show" => inspect::show(
            &store,
            &text("table"),
            m.get_one::<u64>("version").copied(),
            as_json,
        ),
        "history" => inspect::history(&store, &text("table"), as_json),
        "restore" => manage::restore(
            &store,
            &text("table"),
            m.get_one::<u64>("version").copied().unwrap_or_default(),
            m.get_flag("force"),
            as_json,
        ),
        "lineage" => inspect::lineage(
            &store,
            m.get_one::<String>("table").map(String::as_str),
            m.get_flag("dot"),
            as_json,
        ),
        "provenance" => inspect::provenance(
            &store,
            m.get_one::<String>("only").map(String::as_str),
            as_json,
        ),
        "checkpoints" => inspect::checkpoints(&store, as_json),
        "rm" => {
            let tables: Vec<String> = m
                .get_many::<String>("tables")
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            manage::rm(
                &store,
                &tables,
                m.get_flag("with-dependents"),
                m.get_flag("dry-run"),
                as_json,
            )
        }
        "export" => manage::export(
            &store,
            &text("table"),
            m.get_one::<u64>("version").copied(),
            &path("parquet").unwrap_or_default(),
            as_json,
        ),
        "gc" => manage::gc(
            &store,
            m.get_one::<u64>("keep")
                .map(|n| usize::try_from(*n).unwrap_or(usize::MAX)),
            m.get_one::<chrono::Duration>("expire-older-than").copied(),
            as_json,
        ),
        "query" => {
            let params: Vec<_> = m
                .get_many::<String>("param")
                .into_iter()
                .flatten()
                .map(|v| query::parse_param(v))
                .collect();
            query::query(&store, &text("sql"), &params, as_json)
        }
        other => Err(Error::Format(format!("unknown command {other}"))),
    }
}

/// Where a command's store is.
enum Source {
    /// A DuckDB store file.
    File(PathBuf),
    /// A shared store: its catalog's URL and its data root.
    Shared(String, PathBuf),
}

/// Whether `--store` names a PostgreSQL catalog rather than a file.
fn is_catalog(store: &Path) -> bool {
    // A key=value string starts with a keyword (`host=`, `dbname=`); `./a=b.duckdb` is a file.
    store.to_str().is_some_and(|s| {
        s.starts_with("postgres://")
            || s.starts_with("postgresql://")
            || s.split_once('=').is_some_and(|(keyword, _)| {
                !keyword.is_empty()
                    && keyword
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    })
}

/// The store from `--store`, `--config` (the config's file unless `USHER_STORE` names a
/// shared store) or the environment alone; a shared store's data root from `--data-root` or
/// `USHER_DATA_ROOT`.
fn source(
    store: Option<PathBuf>,
    config: Option<PathBuf>,
    data_root: Option<PathBuf>,
) -> Result<Source, Error> {
    // The environment is read where the library reads it, with the same rules.
    let settings = Settings::from_env()?;
    let root = || {
        data_root.clone().or_else(|| settings.data_root.clone()).ok_or_else(|| {
            Error::Setting {
                setting: DATA_ROOT_ENV,
                value: String::new(),
                message: "a shared store needs its data directory: give --data-root or set USHER_DATA_ROOT".to_owned(),
            }
        })
    };
    let env_store = settings.store.clone();
    match (store, env_store, config) {
        (Some(store), _, _) if is_catalog(&store) => Ok(Source::Shared(
            store.to_string_lossy().into_owned(),
            root()?,
        )),
        (Some(store), _, _) => Ok(Source::File(store)),
        (None, Some(url), _) => Ok(Source::Shared(url, root()?)),
        (None, None, Some(config)) => Ok(Source::File(PipelineConfig::load(config)?.duckdb_path)),
        (None, None, None) => Err(Error::Format(
            "give --store or --config (or set USHER_STORE to a shared store)".to_owned(),
        )),
    }
}

/// The store of `source`: read-only unless the command writes; `query` confined to the store
/// (no files, no network: a read-only store would still let `COPY ... TO` write a file; a
/// shared store's queries are always `SELECT`s). A shared store must exist already.
fn open(source: &Source, writes: bool, confined: bool) -> Result<AnyStore, Error> {
    let path = match source {
        Source::File(path) => path,
        Source::Shared(url, root) => {
            let options = SharedStoreOptions {
                must_exist: true,
                ..SharedStoreOptions::default()
            };
            return SharedStore::open_with(url, root, &options).map(AnyStore::from);
        }
    };
    if !path.is_file() {
        return Err(Error::Open {
            path: path.to_owned(),
            kind: usher_pipeline::DuckdbErrorKind::Io,
            message: "no such database file".to_owned(),
        });
    }
    let options = StoreOptions {
        read_only: !writes,
        external_access: !confined,
        ..StoreOptions::default()
    };
    PipelineStore::open_with(path, &options).map(AnyStore::from)
}

fn info(path: &Path, as_json: bool) -> Result<String, usher_pipeline::Error> {
    let config = PipelineConfig::load(path)?;
    let hash = config.config_hash();
    let weights_ok = config.scoring.validate_sum();
    if as_json {
        let mut value = serde_json::to_value(&config).expect("a validated config serialises");
        if let Value::Object(map) = &mut value {
            map.insert("config_file".into(), json!(path.to_string_lossy()));
            map.insert("config_hash".into(), json!(hash));
            map.insert(
                "scoring_weights_sum_to_one".into(),
                json!(weights_ok.is_ok()),
            );
        }
        return Ok(serde_json::to_string_pretty(&value).expect("JSON values serialise"));
    }
    let v = &config.versions;
    let a = &config.api;
    let s = &config.scoring;
    let mut out = String::new();
    out += &format!("Config file:    {}\n", path.display());
    out += &format!("Data directory: {}\n", config.data_dir.display());
    out += &format!("Cache:          {}\n", config.cache_dir.display());
    out += &format!("DuckDB store:   {}\n", config.duckdb_path.display());
    out += &format!(
        "Data sources:   Ensembl {}, gnomAD {}, GTEx {}, HPA {}\n",
        v.ensembl_release, v.gnomad_version, v.gtex_version, v.hpa_version
    );
    out += &format!(
        "API:            {}/s, {} retries, cache TTL {} s, timeout {} s\n",
        a.rate_limit_per_second, a.max_retries, a.cache_ttl_seconds, a.timeout_seconds
    );
    out += &format!(
        "Scoring:        gnomad {}, expression {}, annotation {}, localization {}, animal_model {}, literature {}",
        s.gnomad, s.expression, s.annotation, s.localization, s.animal_model, s.literature
    );
    if let Err(e) = weights_ok {
        out += &format!(" (warning: {e})");
    }
    out += &format!("\nConfig hash:    {hash}");
    Ok(out)
}
