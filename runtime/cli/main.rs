//! `usher-pipeline`: the command line of the library, the stable outside interface.
//!
//! - `usher-pipeline info --config FILE [--json]`: the validated config and its full hash.
//! - `usher-pipeline checkpoints --store PATH [--json]`: the store's checkpoints, newest first.
//!
//! Errors go to stderr with a non-zero exit code (1 for invalid input, 2 for usage).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use serde_json::{Value, json};
use usher_pipeline::{CheckpointInfo, PipelineConfig, PipelineStore};

/// The command line. clap's builder rather than its derive: `clap_derive` turns on syn's `full`
/// feature for every proc-macro of the build, which rebuilds serde's derive, and with it
/// DuckDB's build script, whenever the binary is built after the library.
fn cli() -> Command {
    let json = || {
        Arg::new("json")
            .long("json")
            .action(ArgAction::SetTrue)
            .help("Print JSON instead of text")
    };
    let path = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .required(true)
            .value_parser(value_parser!(PathBuf))
            .help(help)
    };
    Command::new("usher-pipeline")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Restartable, traceable pipeline steps: config and checkpoint inspection")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(
            Command::new("info")
                .about("Validate a config file and show its summary and config_hash")
                .arg(path("config", "The YAML config file"))
                .arg(json()),
        )
        .subcommand(
            Command::new("checkpoints")
                .about("List the checkpoints of a store, newest first")
                .arg(path("store", "The DuckDB store file"))
                .arg(json()),
        )
}

fn main() -> ExitCode {
    let matches = cli().get_matches();
    let path = |m: &ArgMatches, name: &str| m.get_one::<PathBuf>(name).cloned().unwrap_or_default();
    let result = match matches.subcommand() {
        Some(("info", m)) => info(&path(m, "config"), m.get_flag("json")),
        Some(("checkpoints", m)) => checkpoints(&path(m, "store"), m.get_flag("json")),
        _ => unreachable!("clap requires one of the subcommands"),
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn info(path: &std::path::Path, as_json: bool) -> Result<String, usher_pipeline::Error> {
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

fn checkpoints(path: &std::path::Path, as_json: bool) -> Result<String, usher_pipeline::Error> {
    let store = PipelineStore::open_read_only(path)?;
    let list = store.list_checkpoints()?;
    if as_json {
        let rows: Vec<Value> = list
            .iter()
            .map(|c| {
                json!({
                    "table_name": c.table_name,
                    "created_at": c.created_at.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
                    "row_count": c.row_count,
                    "description": c.description,
                })
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&rows).expect("JSON values serialise"));
    }
    Ok(table(&list))
}

fn table(list: &[CheckpointInfo]) -> String {
    if list.is_empty() {
        return "no checkpoints".to_owned();
    }
    let rows: Vec<[String; 4]> = list
        .iter()
        .map(|c| {
            [
                c.table_name.clone(),
                c.created_at
                    .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
                c.row_count.map_or_else(String::new, |n| n.to_string()),
                c.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["table", "created_at (UTC)", "rows", "description"];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 4]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i == 2 {
                s += &format!("{}{cell}  ", " ".repeat(pad));
            } else {
                s += &format!("{cell}{}  ", " ".repeat(pad));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = vec![line(header)];
    out.extend(rows.iter().map(|r| line([&r[0], &r[1], &r[2], &r[3]])));
    out.join("\n")
}
