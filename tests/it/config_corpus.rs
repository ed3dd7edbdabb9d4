//! The config-hash corpus: `tests/fixtures/configs/*.yaml`, each with its expected outcome in
//! `tests/fixtures/configs/expected.tsv` (file, Rust's hash or REJECT, Python's hash or ERROR).
//!
//! `corpus_matches_committed_expectations` runs under a plain `cargo test`; the live test
//! re-runs the Python definition (PyYAML + pydantic 2, `tests/python/seed_config.py`) on every
//! file. The rule both enforce: whenever Rust accepts a file, Python accepts it with the same
//! hash. Rust may reject a file that Python's lax model accepts (`yes` for an int, unknown
//! keys, octal `0161`, ints beyond 64 bits), never the other way round with a different hash.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use usher_pipeline::PipelineConfig;

struct Expected {
    rust: String,
    python: String,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/configs")
}

fn expected() -> BTreeMap<String, Expected> {
    let text = std::fs::read_to_string(corpus_dir().join("expected.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 3, "bad line {line:?}");
            (
                cols[0].to_owned(),
                Expected {
                    rust: cols[1].to_owned(),
                    python: cols[2].to_owned(),
                },
            )
        })
        .collect()
}

fn files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

/// Rust's outcome for one file: its hash, or REJECT.
fn rust_outcome(name: &str) -> String {
    let text = std::fs::read_to_string(corpus_dir().join(name)).unwrap();
    match PipelineConfig::from_yaml_str(&text, name) {
        Ok(config) => config.config_hash(),
        Err(_) => "REJECT".to_owned(),
    }
}

#[test]
fn corpus_matches_committed_expectations() {
    let expected = expected();
    let files = files();
    assert!(files.len() >= 30, "the corpus has {} files", files.len());
    let accepted = expected.values().filter(|e| e.rust != "REJECT").count();
    assert!(
        accepted >= 20,
        "only {accepted} accepted files in the corpus"
    );
    for name in &files {
        let e = expected
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no line in expected.tsv"));
        assert_eq!(rust_outcome(name), e.rust, "{name}");
        if e.rust != "REJECT" {
            assert_eq!(
                e.rust, e.python,
                "{name}: Rust accepts it, so Python's hash must be the same"
            );
        }
    }
    assert_eq!(
        expected.len(),
        files.len(),
        "expected.tsv lists files that do not exist"
    );
}

#[test]
fn corpus_matches_python_live() {
    let Some(python) = common::python("py1") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let paths: Vec<String> = files()
        .iter()
        .map(|n| corpus_dir().join(n).to_string_lossy().into_owned())
        .collect();
    // Python creates data_dir and cache_dir relative to its working directory: keep that in a
    // scratch directory.
    let out = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/seed_config.py"))
        .args(&paths)
        .current_dir(scratch.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = expected();
    let mut checked = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let name = Path::new(cols[0])
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let python_outcome = if cols[1] == "ERROR" { "ERROR" } else { cols[1] };
        let e = &expected[&name];
        assert_eq!(
            python_outcome, e.python,
            "{name}: Python's outcome changed ({line})"
        );
        let rust = rust_outcome(&name);
        if rust != "REJECT" {
            assert_eq!(
                rust, python_outcome,
                "{name}: Rust accepted it with a different hash than Python"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, files().len());
    eprintln!("config corpus: {checked} files checked against Python");
}
