//! Hostile and broken input, and a second process: typed errors naming the culprit, never a
//! panic, a hang or a damaged store.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use usher_pipeline::CheckpointStore;

use common::assert_frames_equal;
use usher_pipeline::polars::prelude::*;
use usher_pipeline::{Error, PipelineStore};

/// Child mode of `another_process_holding_the_store_gets_store_in_use`: hold the store open
/// for writing until killed. Ignored: it runs only as that test's child process.
#[test]
#[ignore = "the child process of another_process_holding_the_store_gets_store_in_use"]
fn child_holds_store_open() {
    let Some(path) = std::env::var_os("USHER_TEST_HOLD_STORE") else {
        return;
    };
    let store = PipelineStore::open(&path).unwrap();
    store
        .save_dataframe("held", &df!("x" => [1i64]).unwrap(), "")
        .unwrap();
    println!("ready");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn another_process_holding_the_store_gets_store_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.duckdb");
    let mut child = common::child_test(&common::test_name!(child_holds_store_open))
        .env("USHER_TEST_HOLD_STORE", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        // The test harness prints "test robustness::child_holds_store_open ... " on the same
        // line.
        ready = line.unwrap();
        if ready.trim_end().ends_with("ready") {
            break;
        }
    }
    assert!(
        ready.trim_end().ends_with("ready"),
        "the child never opened the store: {ready:?}"
    );
    let started = std::time::Instant::now();
    let err = PipelineStore::open(&path).unwrap_err();
    let err_ro = PipelineStore::open_read_only(&path).unwrap_err();
    let waited = started.elapsed();
    child.kill().unwrap();
    child.wait().unwrap();
    for e in [&err, &err_ro] {
        assert!(matches!(e, Error::StoreInUse { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("busy.duckdb") && text.contains("in use by another process"),
            "{text}"
        );
    }
    eprintln!("both refusals took {waited:?}");
    // Once the holder is gone the store opens, with the holder's committed checkpoint.
    let store = PipelineStore::open(&path).unwrap();
    assert!(store.has_checkpoint("held").unwrap());
}

/// Starts a child holding `path` open and returns it once it has.
fn holder(path: &std::path::Path) -> std::process::Child {
    let mut child = common::child_test(&common::test_name!(child_holds_store_open))
        .env("USHER_TEST_HOLD_STORE", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines
        .map_while(|l| l.ok())
        .any(|l| l.trim_end().ends_with("ready"));
    assert!(ready, "the child never opened the store");
    child
}

/// A second process may wait for the store instead of failing at once: it opens as soon as
/// the holder is gone, or fails with `StoreInUse` once its wait is over.
#[test]
fn a_second_process_can_wait_for_the_store() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.duckdb");
    let waiting = |wait: Duration| usher_pipeline::StoreOptions {
        wait_if_busy: Some(wait),
        ..Default::default()
    };
    let mut child = holder(&path);
    let started = Instant::now();
    let err = PipelineStore::open_with(&path, &waiting(Duration::from_millis(300))).unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, Error::StoreInUse { .. }), "{err}");
    assert!(err.to_string().contains("after waiting"), "{err}");
    assert!(
        waited >= Duration::from_millis(300),
        "gave up after {waited:?}"
    );
    // The holder goes away half a second into a ten-second wait: the store opens then.
    let started = Instant::now();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        child.kill().unwrap();
        child.wait().unwrap();
    });
    let store = PipelineStore::open_with(&path, &waiting(Duration::from_secs(10))).unwrap();
    let waited = started.elapsed();
    killer.join().unwrap();
    assert!(store.has_checkpoint("held").unwrap());
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
        "opened after {waited:?}"
    );
    eprintln!("opened {waited:?} after the holder was asked to go (killed at 500 ms)");
}

#[test]
fn garbage_and_truncated_database_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.duckdb");
    std::fs::write(&garbage, vec![0x5a; 64 * 1024]).unwrap();
    let err = PipelineStore::open(&garbage).unwrap_err();
    assert!(
        matches!(err, Error::Open { .. }) && err.to_string().contains("garbage.duckdb"),
        "{err}"
    );
    // Told apart by DuckDB's error type, not by its message.
    assert!(
        matches!(
            err,
            Error::Open {
                kind: usher_pipeline::DuckdbErrorKind::Io,
                ..
            }
        ),
        "{err:?}"
    );

    let good = dir.path().join("good.duckdb");
    {
        let store = PipelineStore::open(&good).unwrap();
        store
            .save_dataframe(
                "t",
                &df!("x" => (0..100_000i64).collect::<Vec<_>>()).unwrap(),
                "",
            )
            .unwrap();
    }
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.duckdb");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    // DuckDB either refuses the file or finds the table unreadable: a typed error either way.
    match PipelineStore::open(&truncated) {
        Err(e) => assert!(e.to_string().contains("truncated.duckdb"), "{e}"),
        Ok(store) => match store.load_dataframe("t") {
            Err(e) => assert!(e.to_string().contains("truncated.duckdb"), "{e}"),
            Ok(frame) => panic!("a truncated store loaded a frame: {frame:?}"),
        },
    }
}

/// Each table name of the corpus gets the outcome pinned beside it: stored and read back, or
/// refused with the error (and the rule's reason) given. Nothing else runs: the store's own
/// tables and a sentinel table are intact afterwards.
#[test]
fn hostile_table_names_are_refused_or_round_trip() {
    use usher_pipeline::NameProblem::{self, *};
    /// What a save of the name must do.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Outcome {
        Stored,
        Refused(NameProblem),
    }
    use Outcome::*;

    let dir = tempfile::tempdir().unwrap();
    let store = PipelineStore::open(dir.path().join("hostile.duckdb")).unwrap();
    let sentinel = df!("x" => [42i64]).unwrap();
    store
        .save_dataframe("sentinel", &sentinel, "keep me")
        .unwrap();
    let long = "a".repeat(128);
    let too_long = "a".repeat(129);
    let corpus: Vec<(&str, Outcome)> = vec![
        (
            "genes\"; DROP TABLE sentinel; --",
            Refused(NotLowercaseIdentifier),
        ),
        (
            "genes'; DELETE FROM _checkpoints; --",
            Refused(NotLowercaseIdentifier),
        ),
        ("a;b", Refused(NotLowercaseIdentifier)),
        ("select", Stored),
        ("from", Stored),
        ("table", Stored),
        ("_checkpoints", Refused(Reserved)),
        ("_provenance", Refused(Reserved)),
        ("_checkpoint_keys", Refused(Reserved)),
        ("_checkpoint_batches", Refused(Reserved)),
        ("_partial_sentinel", Refused(Reserved)),
        ("", Refused(Empty)),
        (" ", Refused(NotLowercaseIdentifier)),
        ("gène", Refused(NotLowercaseIdentifier)),
        ("基因", Refused(NotLowercaseIdentifier)),
        ("😀", Refused(NotLowercaseIdentifier)),
        ("a-b", Refused(NotLowercaseIdentifier)),
        ("a.b", Refused(NotLowercaseIdentifier)),
        ("a b", Refused(NotLowercaseIdentifier)),
        ("main.sentinel", Refused(NotLowercaseIdentifier)),
        ("\"sentinel\"", Refused(NotLowercaseIdentifier)),
        ("sentinel\0", Refused(NotLowercaseIdentifier)),
        ("1genes", Refused(NotLowercaseIdentifier)),
        ("GENES", Refused(Uppercase)),
        (&long, Stored),
        (&too_long, Refused(TooLong)),
        ("ok_name_1", Stored),
    ];
    let frame = df!("v" => [1i64, 2, 3]).unwrap();
    for (name, expected) in &corpus {
        let got = match store.save_dataframe(name, &frame, "hostile") {
            Ok(()) => {
                assert_frames_equal(&store.load_dataframe(name).unwrap().unwrap(), &frame);
                Stored
            }
            Err(e @ Error::InvalidTableName { problem, .. }) => {
                assert!(
                    e.to_string().contains(&format!("{name:?}")),
                    "names the table: {e}"
                );
                Refused(problem)
            }
            Err(e @ Error::ReservedTableName { .. }) => {
                assert!(
                    e.to_string().contains(&format!("{name:?}")),
                    "names the table: {e}"
                );
                Refused(Reserved)
            }
            Err(e) => panic!("{name:?}: untyped failure {e}"),
        };
        assert_eq!(got, *expected, "{name:?}");
    }
    assert_frames_equal(
        &store.load_dataframe("sentinel").unwrap().unwrap(),
        &sentinel,
    );
    let stored = corpus.iter().filter(|(_, o)| *o == Stored).count();
    let names_now: Vec<String> = store
        .list_checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.table_name)
        .collect();
    assert_eq!(names_now.len(), 1 + stored, "{names_now:?}");
    assert!(names_now.contains(&"sentinel".to_owned()));
    for own in ["_checkpoint_keys", "_checkpoint_batches"] {
        store
            .query(&format!("SELECT count(*) FROM {own}"), &[])
            .unwrap_or_else(|e| panic!("{own} damaged: {e}"));
    }
    eprintln!(
        "table-name corpus: {} names, {stored} stored, {} refused",
        corpus.len(),
        corpus.len() - stored
    );
}

/// Column names are data, not SQL: every name polars allows is stored and read back exactly,
/// except the empty name, which DuckDB would rename (`v0`): that save is refused with a typed
/// error naming the table, and leaves nothing behind. Each name's outcome is pinned.
#[test]
fn hostile_column_names_round_trip_or_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = PipelineStore::open(dir.path().join("columns.duckdb")).unwrap();
    let long = "c".repeat(10_000);
    let names: Vec<(&str, bool)> = vec![
        ("plain", true),
        ("with space", true),
        ("quote\"inside", true),
        ("single'quote", true),
        ("semi;colon", true),
        ("DROP TABLE _checkpoints; --", true),
        ("select", true),
        ("gène 基因 😀", true),
        ("", false),
        ("a\nnewline", true),
        ("back\\slash", true),
        (&long, true),
    ];
    for (i, (name, stores)) in names.iter().enumerate() {
        let frame = DataFrame::new_infer_height(vec![
            Column::new((*name).into(), [1i64, 2]),
            Column::new("other".into(), ["a", "b"]),
        ])
        .unwrap();
        let table = format!("cols_{i}");
        match (store.save_dataframe(&table, &frame, ""), stores) {
            (Ok(()), true) => {
                assert_frames_equal(&store.load_dataframe(&table).unwrap().unwrap(), &frame);
            }
            (Err(e), false) => {
                assert!(matches!(e, Error::Format(_)), "{name:?}: {e}");
                assert!(e.to_string().contains(&table), "{e}");
                assert!(e.to_string().contains("empty name"), "{e}");
                assert!(
                    !store.has_checkpoint(&table).unwrap(),
                    "a failed save leaves no checkpoint"
                );
            }
            (outcome, _) => panic!("{name:?}: expected stored = {stores}, got {outcome:?}"),
        }
    }
    // DuckDB's column names are case-insensitive: it would rename the second one, so the save
    // is refused instead, naming both.
    let dup = DataFrame::new_infer_height(vec![
        Column::new("Gene".into(), [1i64]),
        Column::new("gene".into(), [2i64]),
    ])
    .unwrap();
    let err = store.save_dataframe("dup_cols", &dup, "").unwrap_err();
    assert!(err.to_string().contains("\"Gene\" and \"gene\""), "{err}");
    assert!(!store.has_checkpoint("dup_cols").unwrap());
    let stored = names.iter().filter(|(_, stores)| *stores).count();
    assert_eq!(store.list_checkpoints().unwrap().len(), stored);
}

/// Child mode of `a_failing_disk_during_a_save_is_a_typed_error_and_keeps_the_checkpoint`:
/// tries to save a large frame under a file-size limit and prints what happened.
#[test]
#[ignore = "the child process of a_failing_disk_during_a_save_is_a_typed_error_and_keeps_the_checkpoint"]
fn child_saves_beyond_the_file_size_limit() {
    let Some(path) = std::env::var_os("USHER_TEST_STORE") else {
        return;
    };
    let store = PipelineStore::open(&path).unwrap();
    let n = 2_000_000i64;
    let big = df!(
        "id" => (0..n).collect::<Vec<i64>>(),
        "label" => (0..n).map(|i| format!("row-{i}")).collect::<Vec<String>>()
    )
    .unwrap();
    match store.save_dataframe("genes", &big, "too big for the disk") {
        Ok(()) => println!("RESULT saved"),
        Err(e) => println!("RESULT error={e}"),
    }
}

/// A disk that fills up during a save, made real with `ulimit -f` (which binds root too,
/// unlike a read-only directory): the save is a typed error naming the store, and the
/// previous checkpoint is intact.
#[test]
fn a_failing_disk_during_a_save_is_a_typed_error_and_keeps_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.duckdb");
    let genes = common::genes();
    {
        let store = PipelineStore::open(&path).unwrap();
        store
            .save_dataframe("genes", &genes, "the good one")
            .unwrap();
    }
    let size = std::fs::metadata(&path).unwrap().len();
    // Room for the file as it is and 1 MiB more; the frame needs tens of MiB.
    let blocks = size / 1024 + 1024;
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" {}",
            common::child_args(&common::test_name!(child_saves_beyond_the_file_size_limit))
                .join(" ")
        ))
        .arg(std::env::current_exe().unwrap())
        .env("USHER_TEST_STORE", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_owned()))
        .unwrap_or_else(|| {
            panic!(
                "the child reported nothing; stdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        result.starts_with("error="),
        "the save should fail: {result}"
    );
    assert!(
        result.contains("full.duckdb"),
        "the error names the store: {result}"
    );
    eprintln!("child: {result}");

    let store = PipelineStore::open(&path).unwrap();
    let kept = store.load_dataframe("genes").unwrap().unwrap();
    assert_frames_equal(&kept, &genes);
    let info = store.list_checkpoints().unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].row_count, Some(genes.height() as i64));
    assert_eq!(info[0].description.as_deref(), Some("the good one"));
}

/// Config files that are not YAML at all (binary bytes, broken syntax, a directory): typed
/// errors naming the file, never a panic, and no directory created from a half-read file.
#[test]
fn config_files_that_are_not_yaml_are_typed_errors_naming_the_file() {
    use usher_pipeline::ConfigError;
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8]); 4] = [
        ("binary.yaml", &[0x00, 0xff, 0xfe, 0x12, 0x80, 0x0a]),
        ("unclosed.yaml", b"data_dir: [unclosed\ncache_dir: c\n"),
        ("tabs.yaml", b"versions:\n\tensembl_release: 113\n"),
        ("duplicate.yaml", b"data_dir: a\ndata_dir: b\n"),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = usher_pipeline::PipelineConfig::load(&path).unwrap_err();
        assert!(
            matches!(err, ConfigError::Yaml { .. } | ConfigError::Invalid { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(name), "{name}: {err}");
        eprintln!("{name}: {err}");
    }
    let err = usher_pipeline::PipelineConfig::load(dir.path()).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&*dir.path().file_name().unwrap().to_string_lossy()),
        "{err}"
    );
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries.len(), 4, "nothing but the four files: {entries:?}");
}
