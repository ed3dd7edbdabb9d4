//! The command line, run as a user runs it: the built binary, its stdout, stderr and exit code.

use std::path::Path;
use std::process::{Command, Output};

use usher_pipeline::PipelineStore;
use usher_pipeline::polars::prelude::*;

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_usher-pipeline"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const DEFAULT_YAML: &str = "data_dir: data\ncache_dir: data/cache\nduckdb_path: data/pipeline.duckdb\nversions:\n  ensembl_release: 113\n  gnomad_version: v4.1\n  gtex_version: v8\n  hpa_version: \"23.0\"\napi:\n  rate_limit_per_second: 5\n  max_retries: 5\n  cache_ttl_seconds: 86400\n  timeout_seconds: 30\nscoring:\n  gnomad: 0.20\n  expression: 0.20\n  annotation: 0.15\n  localization: 0.15\n  animal_model: 0.15\n  literature: 0.15\n";
const DEFAULT_HASH: &str = "ddbb5195738ac3540f08ed0a46d5936cca070ec880fba3f65e7da48b81ca2b0f";

#[test]
fn info_prints_summary_and_full_hash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.yaml"), DEFAULT_YAML).unwrap();
    let o = run(&["info", "--config", "default.yaml"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(&format!("Config hash:    {DEFAULT_HASH}")),
        "{text}"
    );
    assert!(
        text.contains("Ensembl 113, gnomAD v4.1, GTEx v8, HPA 23.0"),
        "{text}"
    );
    assert!(
        dir.path().join("data/cache").is_dir(),
        "data_dir and cache_dir are created on load"
    );

    let o = run(&["info", "--config", "default.yaml", "--json"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["config_hash"], DEFAULT_HASH);
    assert_eq!(v["versions"]["ensembl_release"], 113);
    assert_eq!(v["scoring_weights_sum_to_one"], true);
}

#[test]
fn info_rejects_invalid_config_with_typed_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        DEFAULT_YAML.replace("hpa_version: \"23.0\"", "hpa_version: 23.0"),
    )
    .unwrap();
    let o = run(&["info", "--config", "bad.yaml", "--json"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty());
    let err = stderr(&o);
    assert!(
        err.contains("bad.yaml")
            && err.contains("`versions.hpa_version` must be a string, found 23.0"),
        "{err}"
    );

    let o = run(&["info", "--config", "missing.yaml"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read config missing.yaml"),
        "{}",
        stderr(&o)
    );
    std::fs::write(dir.path().join("notyaml.yaml"), "data_dir: [unclosed\n").unwrap();
    let o = run(&["info", "--config", "notyaml.yaml"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("notyaml.yaml:") && stderr(&o).contains("not valid YAML"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn checkpoints_lists_newest_first_as_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.duckdb");
    {
        let store = PipelineStore::open(&path).unwrap();
        store
            .save_dataframe(
                "gnomad_constraint",
                &df!("x" => [1, 2, 3]).unwrap(),
                "gnomAD v4.1",
            )
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        store
            .save_dataframe("annotation", &df!("x" => [1]).unwrap(), "GO terms ü")
            .unwrap();
    }
    let o = run(
        &["checkpoints", "--store", path.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("table")
            && lines[1].starts_with("annotation")
            && lines[2].starts_with("gnomad_constraint"),
        "{text}"
    );

    let o = run(
        &["checkpoints", "--store", path.to_str().unwrap(), "--json"],
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["table_name"], "annotation");
    assert_eq!(rows[0]["description"], "GO terms ü");
    assert_eq!(rows[1]["row_count"], 3);
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "the seed's keys: {keys:?}");
    assert!(rows[1]["created_at"].as_str().unwrap().contains('T'));
}

#[test]
fn checkpoints_on_a_missing_or_broken_store_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["checkpoints", "--store", "nope.duckdb"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope.duckdb"), "{}", stderr(&o));
    std::fs::write(dir.path().join("garbage.duckdb"), b"this is not a database").unwrap();
    let o = run(&["checkpoints", "--store", "garbage.duckdb"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("garbage.duckdb"), "{}", stderr(&o));
}
