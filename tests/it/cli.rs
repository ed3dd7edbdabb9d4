//! The command line, run as a user runs it: the built binary, its stdout, stderr and exit code.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use usher_pipeline::CheckpointStore;
use usher_pipeline::PipelineStore;
use usher_pipeline::polars::prelude::*;

/// Runs the binary in `cwd`, with no shared store named by the environment.
fn run(args: &[&str], cwd: &Path) -> Output {
    run_with_env(args, cwd, &[])
}

/// [`run`] with `env` set.
fn run_with_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_usher-pipeline"))
        .args(args)
        .current_dir(cwd)
        .env_remove("USHER_STORE")
        .env_remove("USHER_DATA_ROOT")
        .envs(env.iter().copied())
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

// --- Looking inside a store made by a pipeline ---------------------------------------------

use usher_pipeline::{Error, Pipeline, PipelineConfig, checkpointed};

/// The example's shape: two fetches, a scoring step reading both, a report made from the
/// scores (by a nested call).
#[checkpointed(table = "gnomad_constraint")]
fn fetch_constraint(ctx: &Pipeline, min_depth: i64) -> Result<DataFrame, Error> {
    let all = df!(
        "gene_symbol" => ["USH2A", "MYO7A", "CDH23"],
        "loeuf" => [0.41, 0.12, 0.77],
        "depth" => [35i64, 25, 40],
    )?;
    let keep = all.column("depth")?.i64()?.gt_eq(min_depth);
    Ok(all.filter(&keep)?)
}

#[checkpointed(table = "go_annotation")]
fn fetch_annotation(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(df!("gene_symbol" => ["USH2A", "MYO7A", "CDH23"], "cilia" => [true, true, false])?)
}

#[checkpointed(table = "candidates", reads(gnomad_constraint, go_annotation))]
fn score(ctx: &Pipeline) -> Result<DataFrame, Error> {
    ctx.store().query(
        "SELECT c.gene_symbol, round(1 - c.loeuf, 3) AS score FROM gnomad_constraint c \
         JOIN go_annotation a USING (gene_symbol) WHERE a.cilia ORDER BY score DESC",
        &[],
    )
}

#[checkpointed(table = "report")]
fn report(ctx: &Pipeline) -> Result<DataFrame, Error> {
    Ok(score(ctx)?.head(Some(1)))
}

fn pipeline_at(dir: &Path) -> Pipeline {
    let yaml = crate::common::config_yaml(dir, &dir.join("store.duckdb"));
    std::fs::write(dir.join("pipeline.yaml"), yaml).unwrap();
    let config = PipelineConfig::load(dir.join("pipeline.yaml")).unwrap();
    Pipeline::with_config(PipelineStore::from_config(&config).unwrap(), &config).unwrap()
}

/// Runs the pipeline with `min_depth`, then closes the store (the command line needs it).
fn run_pipeline(dir: &Path, min_depth: i64) {
    let p = pipeline_at(dir);
    fetch_constraint(&p, min_depth).unwrap();
    fetch_annotation(&p).unwrap();
    score(&p).unwrap();
    report(&p).unwrap();
    p.save_provenance().unwrap();
}

/// `args` on the store of a test's directory.
fn on_store(args: &[&'static str]) -> Vec<&'static str> {
    [args, &["--store", "store.duckdb"][..]].concat()
}

/// The names of a sidecar's processing steps.
fn sidecar_steps(path: &Path) -> Vec<String> {
    let sidecar: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    sidecar["processing_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("{e}: stdout {:?}, stderr {:?}", stdout(o), stderr(o)))
}

#[test]
fn status_lineage_and_show_describe_a_pipeline_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_pipeline(d, 20);
    let with = on_store;

    let o = run(&with(&["status"]), d);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("4 checkpoints: 4 valid"),
        "{}",
        stdout(&o)
    );

    // Through the config too.
    let o = run(&["status", "--config", "pipeline.yaml", "--json"], d);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["all_valid"], true);
    assert_eq!(v["checkpoints"].as_array().unwrap().len(), 4);

    let o = run(&with(&["lineage"]), d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim_end(),
        "gnomad_constraint\n└── candidates\n    └── report\ngo_annotation\n└── candidates\n    └── report"
    );
    let v = json(&run(&with(&["lineage", "--json"]), d));
    let edges: Vec<(String, String)> = v["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_owned(),
                e["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        [
            ("gnomad_constraint".to_owned(), "candidates".to_owned()),
            ("go_annotation".to_owned(), "candidates".to_owned()),
            ("candidates".to_owned(), "report".to_owned()),
        ]
    );
    let dot = stdout(&run(&with(&["lineage", "report", "--dot"]), d));
    assert!(dot.contains("\"candidates\" -> \"report\";"), "{dot}");

    let o = run(&with(&["show", "candidates"]), d);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("dependents    report"), "{text}");
    assert!(
        text.contains("inputs        gnomad_constraint (data "),
        "{text}"
    );
    let v = json(&run(&with(&["show", "candidates", "--json"]), d));
    assert_eq!(v["dependents"], serde_json::json!(["report"]));
    assert_eq!(
        v["inputs"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["gnomad_constraint", "go_annotation"]
    );
    assert_eq!(v["head"]["rows"].as_array().unwrap().len(), 2);
    assert_eq!(v["head"]["rows"][0]["gene_symbol"], "MYO7A");
    // Saved (miss), then loaded by the report's nested call (hit); each step once, though the
    // save's own `_provenance` row and the run's row both hold it.
    let outcomes: Vec<&str> = v["provenance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["details"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["miss", "hit"]);

    // The constraint recomputed with other data: what was made from it would be recomputed.
    let p = pipeline_at(d);
    fetch_constraint(&p, 30).unwrap();
    drop(p);
    let o = run(&with(&["status"]), d);
    assert_eq!(o.status.code(), Some(3), "something would be recomputed");
    let text = stdout(&o);
    assert!(
        text.contains("candidates") && text.contains("input `gnomad_constraint` changed (data "),
        "{text}"
    );
    // The report was made from the candidates, which are stale: so is the report.
    assert!(
        text.contains("input `candidates` is stale: its input `gnomad_constraint` changed (data "),
        "{text}"
    );
    let v = json(&run(&with(&["status", "--json"]), d));
    let states: Vec<(&str, &str)> = v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["table"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("candidates", "stale"),
            ("gnomad_constraint", "valid"),
            ("go_annotation", "valid"),
            ("report", "stale"),
        ]
    );
}

#[test]
fn rm_refuses_dependents_then_deletes_them_and_export_writes_a_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_pipeline(d, 20);
    let with = on_store;

    let o = run(
        &with(&[
            "export",
            "candidates",
            "--parquet",
            "out/candidates.parquet",
        ]),
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let steps = sidecar_steps(&d.join("out/candidates.provenance.json"));
    assert_eq!(
        steps,
        ["score", "export"],
        "the step that made it, then the export"
    );
    {
        let store = PipelineStore::open(d.join("check.duckdb")).unwrap();
        let back = store
            .query(
                "SELECT count(*) AS n FROM read_parquet(?)",
                &[d.join("out/candidates.parquet")
                    .to_string_lossy()
                    .as_ref()
                    .into()],
            )
            .unwrap();
        assert_eq!(back.column("n").unwrap().i64().unwrap().get(0), Some(2));
    }

    let o = run(&with(&["rm", "gnomad_constraint"]), d);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("`gnomad_constraint`") && err.contains("`candidates`, `report`"),
        "{err}"
    );
    let v = json(&run(
        &with(&[
            "rm",
            "gnomad_constraint",
            "--with-dependents",
            "--dry-run",
            "--json",
        ]),
        d,
    ));
    assert_eq!(v["dry_run"], true);
    assert_eq!(
        v["deleted"],
        serde_json::json!(["candidates", "gnomad_constraint", "report"])
    );
    assert_eq!(
        json(&run(&with(&["status", "--json"]), d))["checkpoints"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let o = run(&with(&["rm", "gnomad_constraint", "--with-dependents"]), d);
    assert!(o.status.success(), "{}", stderr(&o));
    let left: Vec<String> = json(&run(&with(&["status", "--json"]), d))["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["table"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, ["go_annotation"]);
    let o = run(&with(&["rm", "nope"]), d);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));

    let v = json(&run(
        &with(&[
            "query",
            "SELECT gene_symbol FROM go_annotation WHERE cilia = ? ORDER BY 1",
            "--param",
            "true",
            "--json",
        ]),
        d,
    ));
    assert_eq!(v["rows"].as_array().unwrap().len(), 2);
    assert_eq!(v["columns"][0]["name"], "gene_symbol");
    let o = run(&with(&["query", "DROP TABLE go_annotation"]), d);
    assert_eq!(o.status.code(), Some(1), "queries are read-only");
    let o = run(&with(&["query", "COPY go_annotation TO 'leak.csv'"]), d);
    assert_eq!(o.status.code(), Some(1), "and confined to the store");
    assert!(!d.join("leak.csv").exists());
    let v = json(&run(
        &with(&["query", "SELECT ? + 1 AS n", "--param", "-5", "--json"]),
        d,
    ));
    assert_eq!(v["rows"][0]["n"], -4, "negative values are values");
    assert_eq!(
        json(&run(&with(&["status", "--json"]), d))["checkpoints"][0]["table"],
        "go_annotation",
        "still there"
    );

    let v = json(&run(
        &with(&["provenance", "--table", "go_annotation", "--json"]),
        d,
    ));
    let runs = v.as_array().unwrap();
    assert!(!runs.is_empty());
    assert!(runs.iter().all(|r| {
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["details"]["table"] == "go_annotation")
    }));

    // The deleted checkpoints' tables are gone with them; nothing is left to collect, and the
    // file is reported.
    let v = json(&run(&with(&["gc", "--json"]), d));
    assert_eq!(v["key_rows"], 0);
    assert_eq!(v["partial_tables"], serde_json::json!([]));
    assert!(v["bytes_after"].as_u64().unwrap() > 0);
}

#[test]
fn a_store_written_by_the_python_pipeline_reads_as_unkeyed() {
    let Some(py1) = common::python("py1") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("config.yaml"),
        DEFAULT_YAML.replace("data/", &format!("{}/data/", d.display())),
    )
    .unwrap();
    common::run_python(&py1, "interop.py", &["write", d.to_str().unwrap()]);
    let o = run(&["status", "--store", "py.duckdb"], d);
    assert_eq!(
        o.status.code(),
        Some(3),
        "unkeyed checkpoints would not simply load"
    );
    assert!(stdout(&o).contains("unkeyed"), "{}", stdout(&o));
    let v = json(&run(
        &["show", "genes", "--store", "py.duckdb", "--json"],
        d,
    ));
    assert_eq!(v["key"], serde_json::Value::Null);
    assert_eq!(v["rows"], 5);
    let v = json(&run(&["provenance", "--store", "py.duckdb", "--json"], d));
    assert_eq!(v[0]["version"], "0.9.0-python");
    assert_eq!(v[0]["steps"][0]["name"], "fetch_genes");
}

// --- Progress on a terminal, silence in a pipe ---------------------------------------------

// The command line's display, as the binary and the example use it (the logging half is
// not needed here).
#[allow(dead_code)]
#[path = "../../runtime/cli/terminal.rs"]
mod terminal;

#[checkpointed(table = "slow_loop", batches = done)]
fn slow_loop(ctx: &Pipeline, items: Vec<u32>) -> Result<DataFrame, Error> {
    for batch in done.pending(&items, 2)? {
        std::thread::sleep(std::time::Duration::from_millis(150));
        done.save(&batch, &df!("item" => batch.as_slice())?)?;
    }
    done.finish()
}

/// Child: a resumable loop with the command line's progress display.
#[test]
#[ignore = "a child process of progress_is_drawn_on_a_terminal_and_absent_in_a_pipe"]
fn child_runs_a_slow_loop() {
    let Some(dir) = std::env::var_os("USHER_TEST_DIR") else {
        return;
    };
    let p = pipeline_at(Path::new(&dir)).with_progress(terminal::Bars::new());
    let rows = slow_loop(&p, (0..8).collect()).unwrap();
    println!("finished with {} rows", rows.height());
}

#[test]
fn progress_is_drawn_on_a_terminal_and_absent_in_a_pipe() {
    // In a pipe (stdout and stderr captured): no bar, only the child's own line.
    let dir = tempfile::tempdir().unwrap();
    let o = common::child_test(&common::test_name!(child_runs_a_slow_loop))
        .env("USHER_TEST_DIR", dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("finished with 8 rows"),
        "{}",
        stdout(&o)
    );
    assert!(
        !stderr(&o).contains("items"),
        "no progress in a pipe: {}",
        stderr(&o)
    );

    // Under a pseudo-terminal (util-linux `script`): the bar, counting items.
    if Command::new("script").arg("--version").output().is_err() {
        if std::env::var_os("CI").is_some() {
            panic!("`script` (util-linux) is needed to test progress under a terminal");
        }
        eprintln!("SKIPPED: no `script` to run the child under a pseudo-terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let command = format!(
        "{} {}",
        exe.display(),
        common::child_args(&common::test_name!(child_runs_a_slow_loop)).join(" ")
    );
    let o = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("USHER_TEST_DIR", dir.path())
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{screen}");
    assert!(screen.contains("finished with 8 rows"), "{screen}");
    assert!(
        screen.contains("slow_loop") && screen.contains("/8 items"),
        "a progress bar on the terminal: {screen:?}"
    );
}

// --- The same commands on a shared store ---------------------------------------------------

/// The pipeline above, unchanged, run on a shared store; then every command on it, named by
/// `--store URL --data-root DIR`, by `USHER_STORE` / `USHER_DATA_ROOT`, and through a config.
#[test]
fn the_commands_read_a_shared_store() {
    let Some(shared) = common::shared::Shared::new("cli") else {
        return;
    };
    let d = shared.dir.path();
    let root = shared.root();
    let root_arg = root.to_str().unwrap();
    {
        let local = pipeline_at(d); // writes pipeline.yaml; its DuckDB file is not used below
        let config = local.config().unwrap().clone();
        drop(local);
        std::fs::remove_file(d.join("store.duckdb")).unwrap();
        let p = Pipeline::with_config(shared.store(), &config).unwrap();
        fetch_constraint(&p, 20).unwrap();
        fetch_annotation(&p).unwrap();
        score(&p).unwrap();
        report(&p).unwrap();
        p.save_provenance().unwrap();
    }
    let url = shared.url.as_str();
    let with = |args: &[&'static str]| -> Vec<String> {
        args.iter()
            .map(|a| a.to_string())
            .chain(["--store", url, "--data-root", root_arg].map(String::from))
            .collect()
    };
    let go = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, d)
    };

    let o = go(with(&["status"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("4 checkpoints: 4 valid"),
        "{}",
        stdout(&o)
    );
    let o = go(with(&["lineage"]));
    assert_eq!(
        stdout(&o).trim_end(),
        "gnomad_constraint\n└── candidates\n    └── report\ngo_annotation\n└── candidates\n    └── report",
        "{}",
        stderr(&o)
    );
    let v = json(&go(with(&["show", "candidates", "--json"])));
    assert_eq!(v["dependents"], serde_json::json!(["report"]));
    assert_eq!(v["head"]["rows"].as_array().unwrap().len(), 2);
    assert_eq!(v["head"]["rows"][0]["gene_symbol"], "MYO7A");

    // Named by the environment alone, and through a config: the config's DuckDB file is not
    // opened (it does not exist), the shared store is.
    let env = [("USHER_STORE", url), ("USHER_DATA_ROOT", root_arg)];
    for args in [
        &["status", "--json"][..],
        &["status", "--json", "--config", "pipeline.yaml"],
    ] {
        let o = run_with_env(args, d, &env);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v = json(&o);
        assert_eq!(v["checkpoints"].as_array().unwrap().len(), 4);
        assert!(
            v["store"].as_str().unwrap().starts_with("postgres://"),
            "{v}"
        );
    }
    assert!(!d.join("store.duckdb").exists());

    // Queries run over the Parquet files, values bound; only SELECTs.
    let v = json(&go(with(&[
        "query",
        "SELECT gene_symbol FROM candidates WHERE score > ? ORDER BY 1",
        "--param",
        "0.5",
        "--json",
    ])));
    assert_eq!(
        v["rows"],
        serde_json::json!([{"gene_symbol": "MYO7A"}, {"gene_symbol": "USH2A"}])
    );
    let o = go(with(&["query", "COPY candidates TO 'leak.csv'"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("only a SELECT"), "{}", stderr(&o));
    assert!(!d.join("leak.csv").exists());

    let o = go(with(&[
        "export",
        "candidates",
        "--parquet",
        "out/candidates.parquet",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let steps = sidecar_steps(&d.join("out/candidates.provenance.json"));
    assert_eq!(steps, ["score", "export"]);
    let back = PipelineStore::open(d.join("check.duckdb"))
        .unwrap()
        .query(
            "SELECT gene_symbol, score FROM read_parquet(?) ORDER BY score DESC",
            &[d.join("out/candidates.parquet")
                .to_string_lossy()
                .as_ref()
                .into()],
        )
        .unwrap();
    common::assert_frames_equal(
        &back,
        &df!("gene_symbol" => ["MYO7A", "USH2A"], "score" => [0.88, 0.59]).unwrap(),
    );

    // A changed input makes what was made from it stale.
    {
        let config = PipelineConfig::load(d.join("pipeline.yaml")).unwrap();
        let p = Pipeline::with_config(shared.store(), &config).unwrap();
        fetch_constraint(&p, 30).unwrap();
    }
    let o = go(with(&["status"]));
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));

    let o = go(with(&["rm", "gnomad_constraint"]));
    assert_eq!(o.status.code(), Some(1), "dependents refuse");
    let o = go(with(&["rm", "gnomad_constraint", "--with-dependents"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let left: Vec<String> = json(&go(with(&["checkpoints", "--json"])))
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["table_name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, ["go_annotation"]);
    let parquet_files = |dir: &Path| -> usize {
        fn walk(dir: &Path, n: &mut usize) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, n);
                } else if path.extension().is_some_and(|e| e == "parquet") {
                    *n += 1;
                }
            }
        }
        let mut n = 0;
        walk(dir, &mut n);
        n
    };
    // The deleted tables' files stay while the lake's history reads them: every file on disk
    // is one a snapshot names (the store is a DuckLake), and no more.
    let lake_files: i64 = shared
        .sql()
        .query_one("SELECT count(DISTINCT path) FROM ducklake_data_file", &[])
        .unwrap()
        .get(0);
    assert!(lake_files > 1, "history kept: {lake_files}");
    assert_eq!(
        parquet_files(&root) as i64,
        lake_files,
        "the files on disk are those of the lake's snapshots"
    );

    // An orphan (a worker killed between writing and registering) is collected.
    let orphan = root.join("tables/go_annotation/killed-worker.parquet");
    std::fs::copy(d.join("out/candidates.parquet"), &orphan).unwrap();
    let v = json(&go(with(&["gc", "--json"])));
    assert_eq!(v["files_removed"], 1, "{v}");
    assert_eq!(v["tables_busy"], serde_json::json!([]));
    assert!(!orphan.exists());
    let v = json(&go(with(&[
        "provenance",
        "--table",
        "go_annotation",
        "--json",
    ])));
    assert!(!v.as_array().unwrap().is_empty());

    // Looking never creates: a database without a catalog, or a data root that is not there,
    // is an error and stays as it was.
    let empty = common::shared::Shared::new("cli_empty").unwrap();
    let o = run(
        &["status", "--store", &empty.url, "--data-root", root_arg],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no usher-pipeline catalog"),
        "{}",
        stderr(&o)
    );
    let tables: i64 = empty
        .sql()
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
            &[&empty.schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
    let o = run(&["status", "--store", url, "--data-root", "not-mounted"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not-mounted"), "{}", stderr(&o));
    assert!(!d.join("not-mounted").exists());
    let o = run(&["status", "--store", url], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--data-root"), "{}", stderr(&o));
}
