//! The shared store read as a DuckLake by a colleague's DuckDB: Python's duckdb 1.5.5 with the
//! real ducklake and postgres extensions (`target/py3`, made by `.ci/python-env`) attaches the
//! store's catalog and reads every table, value by value against what the library loads, an
//! earlier version after a recompute (`AT (VERSION => n)`), and the snapshots.
//!
//! Needs `USHER_TEST_POSTGRES` and `target/py3`, as `.ci/test` provides.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use usher_pipeline::polars::prelude::*;
use usher_pipeline::{
    CheckpointStore, Error, Pipeline, ProvenanceTracker, SharedStore, UnkeyedPolicy, checkpointed,
};

use crate::common;
use crate::common::shared::Shared;

/// A shared store of its own and the Python with the ducklake extension, or `None` (the test
/// is skipped, with the reason printed) when either is missing here.
fn lake_test(name: &str) -> Option<(Shared, std::path::PathBuf)> {
    let shared = Shared::new(name)?;
    let python = common::python("py3")?;
    Some((shared, python))
}

/// A provenance tracker named `name`, with a minimal config beside the test's store.
fn tracker_for(shared: &Shared, name: &str) -> ProvenanceTracker {
    let config = usher_pipeline::PipelineConfig::from_yaml_str(
        &crate::common::config_yaml(&shared.root(), &shared.root().join("unused.duckdb")),
        "h.yaml",
    )
    .unwrap();
    ProvenanceTracker::new(name, &config)
}

/// `usher-pipeline ARGS --store URL --data-root ROOT` on the test's store.
fn cli(shared: &Shared, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_usher-pipeline"))
        .args(args)
        .args(["--store", &shared.url, "--data-root"])
        .arg(shared.root())
        .output()
        .unwrap()
}

/// What `tests/python/ducklake/read_store.py` printed.
fn read_with_duckdb(python: &std::path::Path, shared: &Shared) -> Value {
    write_with_duckdb(python, shared, &[])
}

/// What `tests/python/ducklake/read_store.py` printed after running `statements` in the lake.
fn write_with_duckdb(python: &std::path::Path, shared: &Shared, statements: &[&str]) -> Value {
    let url: postgres::Config = shared.admin.parse().unwrap();
    let host = match &url.get_hosts()[0] {
        postgres::config::Host::Tcp(host) => host.clone(),
        postgres::config::Host::Unix(path) => path.display().to_string(),
    };
    let port = url.get_ports().first().copied().unwrap_or(5432).to_string();
    let root = format!("{}/", shared.root().canonicalize().unwrap().display());
    let args = [
        host.as_str(),
        &port,
        url.get_user().unwrap(),
        url.get_dbname().unwrap(),
        &shared.schema,
        &root,
    ];
    let out = common::run_python(
        python,
        "ducklake/read_store.py",
        &[&args[..], statements].concat(),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A frame's rows as the reader's JSON spells them: numbers, strings, booleans, `null`, NaN
/// as `"NaN"`, dates as `YYYY-MM-DD`, timestamps as Python's `isoformat(sep=" ")`, lists as
/// arrays.
fn rows_of(frame: &DataFrame) -> Vec<Vec<Value>> {
    fn cell(value: AnyValue<'_>) -> Value {
        match value {
            AnyValue::Null => Value::Null,
            AnyValue::Boolean(b) => Value::Bool(b),
            AnyValue::Int8(v) => v.into(),
            AnyValue::Int16(v) => v.into(),
            AnyValue::Int32(v) => v.into(),
            AnyValue::Int64(v) => v.into(),
            AnyValue::UInt32(v) => v.into(),
            AnyValue::UInt64(v) => v.into(),
            AnyValue::Float64(v) if v.is_nan() => "NaN".into(),
            AnyValue::Float64(v) => v.into(),
            AnyValue::Float32(v) => f64::from(v).into(),
            AnyValue::String(s) => s.into(),
            AnyValue::StringOwned(s) => s.as_str().into(),
            AnyValue::Date(days) => (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
                + chrono::Duration::days(i64::from(days)))
            .format("%Y-%m-%d")
            .to_string()
            .into(),
            AnyValue::Datetime(v, TimeUnit::Microseconds, None) => {
                let t = chrono::DateTime::from_timestamp_micros(v)
                    .unwrap()
                    .naive_utc();
                let format = if v.rem_euclid(1_000_000) == 0 {
                    "%Y-%m-%d %H:%M:%S"
                } else {
                    "%Y-%m-%d %H:%M:%S%.6f"
                };
                t.format(format).to_string().into()
            }
            AnyValue::List(items) => Value::Array(items.iter().map(cell).collect()),
            other => panic!("no JSON form for {other:?}"),
        }
    }
    (0..frame.height())
        .map(|i| {
            frame
                .columns()
                .iter()
                .map(|column| cell(column.get(i).unwrap()))
                .collect()
        })
        .collect()
}

fn assert_read_as(read: &Value, frame: &DataFrame, what: &str) {
    let columns: Vec<&str> = read["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let names: Vec<&str> = frame
        .get_column_names()
        .iter()
        .map(|n| n.as_str())
        .collect();
    assert_eq!(columns, names, "{what}: columns");
    let rows: Vec<Vec<Value>> = read["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect();
    assert_eq!(rows, rows_of(frame), "{what}: rows");
}

/// Every checkpoint of a shared store, read by DuckDB through the lake, holds exactly what the
/// library loads (every type the pipeline uses, lists, NaN, extremes, odd column names); after
/// a table is recomputed with another schema, the lake's current version is the new one and
/// the snapshot of the first save still reads the old one; a deleted table is gone from the
/// current version; one snapshot per save and delete.
#[test]
fn duckdb_reads_every_checkpoint_and_its_history_through_the_lake() {
    let Some((shared, python)) = lake_test("lake_read") else {
        return;
    };
    let store: SharedStore = shared.store();
    let genes = common::genes();
    let first = df!("gene_id" => ["a", "b", "c"], "score" => [1.0, 2.5, -3.0]).unwrap();
    let second = df!("gene_id" => ["a"], "rank" => [1i64], "note" => [Some("x")]).unwrap();
    let gone = df!("x" => [1i64]).unwrap();
    store.save_dataframe("genes", &genes, "every type").unwrap();
    store.save_dataframe("scores", &first, "first").unwrap();
    store
        .save_dataframe("gone", &gone, "deleted below")
        .unwrap();
    store
        .save_dataframe("scores", &second, "recomputed")
        .unwrap();
    store.delete_checkpoint("gone").unwrap();

    let read = read_with_duckdb(&python, &shared);
    let tables: Vec<&String> = read["tables"].as_object().unwrap().keys().collect();
    assert_eq!(tables, ["genes", "scores"], "the lake's current tables");
    for table in ["genes", "scores"] {
        let loaded = store.load_dataframe(table).unwrap().unwrap();
        assert_read_as(&read["tables"][table], &loaded, table);
    }
    assert_read_as(&read["tables"]["scores"], &second, "scores, current");
    // Snapshots: 0 (the schema), then one per save and delete, in order.
    let changes: Vec<String> = read["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["changes"].to_string())
        .collect();
    assert_eq!(changes.len(), 6, "{changes:?}");
    assert!(changes[2].contains("main.scores"), "{changes:?}");
    assert!(changes[5].contains("tables_dropped"), "{changes:?}");
    // The first version of `scores` (snapshot 2) and the deleted table (snapshot 3) still read.
    assert_read_as(
        &read["versions"]["scores"]["2"],
        &first,
        "scores at snapshot 2",
    );
    assert_read_as(
        &read["versions"]["scores"]["4"],
        &second,
        "scores at snapshot 4",
    );
    assert!(
        read["versions"]["gone"].is_null(),
        "no current `gone` to ask for"
    );
}

/// A store made before the lake (catalog version 1, no `ducklake_*` tables, files without
/// field ids) becomes one at the next open that may write, once: its current files are
/// registered as they are (no data copied, columns matched by name), and DuckDB reads them;
/// saves after it are snapshots as usual.
#[test]
fn a_store_made_before_the_lake_is_upgraded_in_place() {
    let Some((shared, python)) = lake_test("lake_upgrade") else {
        return;
    };
    let scores =
        df!("gene_id" => ["a", "b"], "score" => [0.5, f64::NAN], "n" => [Some(1i64), None])
            .unwrap();
    // Lists, before and after flat columns: their items are matched by name too.
    let tags = Series::new(
        "tags".into(),
        [
            Series::new("".into(), ["x", "y"]),
            Series::new("".into(), Vec::<String>::new()),
        ],
    );
    let ids = Series::new(
        "ids".into(),
        [
            Series::new("".into(), [7i64]),
            Series::new("".into(), [8i64, 9]),
        ],
    );
    let other = DataFrame::new_infer_height(vec![
        tags.into(),
        df!("x" => ["only", "two"]).unwrap()["x"].clone(),
        ids.into(),
    ])
    .unwrap();
    {
        let store = shared.store();
        store.save_dataframe("scores", &scores, "before").unwrap();
        store.save_dataframe("other", &other, "before").unwrap();
    }
    // What 0.1 left: no lake, version 1, files written without field ids.
    let mut sql = shared.sql();
    let lake_tables: Vec<String> = sql
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() \
             AND tablename LIKE 'ducklake_%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(lake_tables.len(), 28);
    for table in &lake_tables {
        sql.batch_execute(&format!("DROP TABLE {table}")).unwrap();
    }
    sql.batch_execute("UPDATE _usher_schema SET value = '1' WHERE name = 'schema_version'")
        .unwrap();
    let files: Vec<String> = sql
        .query("SELECT path FROM _checkpoint_files", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for file in &files {
        let path = shared.root().join(file);
        let rewrite = format!(
            "import duckdb, os; p = {path:?}; \
             duckdb.execute(f\"COPY (SELECT * FROM read_parquet('{{p}}')) TO '{{p}}.old' (FORMAT parquet)\"); \
             os.replace(p + '.old', p)"
        );
        let status = std::process::Command::new(&python)
            .args(["-c", &rewrite])
            .status()
            .unwrap();
        assert!(status.success());
    }
    // A look (must_exist) changes nothing; an open that may write upgrades.
    let looked = SharedStore::open_with(
        &shared.url,
        shared.root(),
        &usher_pipeline::SharedStoreOptions {
            must_exist: true,
            ..Default::default()
        },
    )
    .unwrap();
    drop(looked);
    let exists = |sql: &mut postgres::Client| -> bool {
        sql.query_one("SELECT to_regclass('ducklake_metadata') IS NOT NULL", &[])
            .unwrap()
            .get(0)
    };
    assert!(!exists(&mut sql), "a look made a lake");
    let store = shared.store();
    assert!(exists(&mut sql));
    let version: String = sql
        .query_one(
            "SELECT value FROM _usher_schema WHERE name = 'schema_version'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, "2");
    let mappings: i64 = sql
        .query_one("SELECT count(*) FROM ducklake_column_mapping", &[])
        .unwrap()
        .get(0);
    assert_eq!(mappings, 2, "one by-name mapping per upgraded file");
    let list_items: i64 = sql
        .query_one(
            "SELECT count(*) FROM ducklake_name_mapping WHERE source_name = 'list'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(list_items, 2, "each list's items mapped by name");
    // Upgraded once: another open adds nothing.
    drop(shared.store());
    let snapshots: i64 = sql
        .query_one("SELECT count(*) FROM ducklake_snapshot", &[])
        .unwrap()
        .get(0);
    assert_eq!(snapshots, 3, "the empty lake and one snapshot per table");
    // A save after it is a snapshot as usual.
    let recomputed = df!("gene_id" => ["c"], "score" => [9.0], "n" => [Some(3i64)]).unwrap();
    store
        .save_dataframe("scores", &recomputed, "after")
        .unwrap();

    let read = read_with_duckdb(&python, &shared);
    assert_read_as(
        &read["tables"]["other"],
        &other,
        "other, registered by the upgrade",
    );
    assert_read_as(
        &read["tables"]["scores"],
        &recomputed,
        "scores, saved after it",
    );
    let upgraded = read["versions"]["scores"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, v)| v["rows"].as_array().unwrap().len() == 2)
        .map(|(_, v)| v.clone())
        .expect("the upgraded version of scores");
    assert_read_as(&upgraded, &scores, "scores, registered by the upgrade");
}

static KEPT: AtomicUsize = AtomicUsize::new(0);
static INSERTED: AtomicUsize = AtomicUsize::new(0);
static REPLACED: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicUsize = AtomicUsize::new(0);
static DERIVED: AtomicUsize = AtomicUsize::new(0);

#[checkpointed(table = "lake_kept")]
fn kept(_ctx: &Pipeline<SharedStore>) -> Result<DataFrame, Error> {
    KEPT.fetch_add(1, Ordering::SeqCst);
    Ok(df!("gene_id" => ["a", "b"], "score" => [1.0, 2.0])?)
}

#[checkpointed(table = "lake_inserted")]
fn inserted(_ctx: &Pipeline<SharedStore>) -> Result<DataFrame, Error> {
    INSERTED.fetch_add(1, Ordering::SeqCst);
    Ok(df!("gene_id" => ["x", "y"], "n" => [1i64, 2])?)
}

#[checkpointed(table = "lake_replaced")]
fn replaced(_ctx: &Pipeline<SharedStore>) -> Result<DataFrame, Error> {
    REPLACED.fetch_add(1, Ordering::SeqCst);
    Ok(df!("v" => [1i64, 2, 3])?)
}

#[checkpointed(table = "lake_dropped")]
fn dropped(_ctx: &Pipeline<SharedStore>) -> Result<DataFrame, Error> {
    DROPPED.fetch_add(1, Ordering::SeqCst);
    Ok(df!("d" => [true])?)
}

#[checkpointed(table = "lake_derived")]
fn derived(ctx: &Pipeline<SharedStore>) -> Result<DataFrame, Error> {
    DERIVED.fetch_add(1, Ordering::SeqCst);
    let v = replaced(ctx)?;
    Ok(df!("total" => [v.column("v")?.as_materialized_series().sum::<i64>()?])?)
}

fn counts() -> [usize; 5] {
    [&KEPT, &INSERTED, &REPLACED, &DROPPED, &DERIVED].map(|c| c.load(Ordering::SeqCst))
}

fn all(pipeline: &Pipeline<SharedStore>) -> Vec<Result<DataFrame, Error>> {
    vec![
        kept(pipeline),
        inserted(pipeline),
        replaced(pipeline),
        dropped(pipeline),
        derived(pipeline),
    ]
}

/// A colleague's DuckDB writes through the lake: a table it creates is listed as a checkpoint
/// without a key (by the library and by `usher-pipeline status`) and loads with its values; a
/// checkpoint it inserts into, replaces or drops is no longer served as the function's result
/// (its body counter proves it): an insert leaves the table unkeyed and refused as the policy
/// says, and unreadable as one file (a typed error naming why); a replacement is adopted with
/// the colleague's values, and what was made from it recomputes; a drop is a miss. A recompute
/// makes the lake agree with the library again, read back by DuckDB.
#[test]
fn other_writers_tables_are_unkeyed_and_never_served_as_a_functions_result() {
    let Some((shared, python)) = lake_test("lake_writers") else {
        return;
    };
    let tracker = || {
        let config = usher_pipeline::PipelineConfig::from_yaml_str(
            "data_dir: data\ncache_dir: cache\nduckdb_path: unused.duckdb\nversions:\n  ensembl_release: 113\napi: {}\nscoring: {}\n",
            "lake-test.yaml",
        )
        .unwrap();
        ProvenanceTracker::new("lake-test", &config)
    };
    let pipeline = Pipeline::new(shared.store(), tracker());
    for result in all(&pipeline) {
        result.unwrap();
    }
    assert_eq!(counts(), [1, 1, 1, 1, 1], "every body once");
    let derived_before = derived(&pipeline).unwrap();
    assert_eq!(counts(), [1, 1, 1, 1, 1], "all hits");

    write_with_duckdb(
        &python,
        &shared,
        &[
            "CREATE TABLE colleague AS SELECT range AS n, 'g' || range::VARCHAR AS name FROM range(3)",
            "INSERT INTO lake_inserted VALUES ('z', 3)",
            "CREATE OR REPLACE TABLE lake_replaced AS SELECT 40::BIGINT AS v UNION ALL SELECT 2",
            "DROP TABLE lake_dropped",
        ],
    );

    let store = shared.store();
    let listed: Vec<(String, bool, Option<i64>, Option<String>)> = store
        .list_checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| (c.table_name, c.key.is_some(), c.row_count, c.description))
        .collect();
    let by = |name: &str| listed.iter().find(|c| c.0 == name).cloned();
    assert_eq!(
        by("colleague"),
        Some((
            "colleague".into(),
            false,
            Some(3),
            Some("written to the lake by another writer".into())
        ))
    );
    assert_eq!(
        by("lake_inserted").map(|c| (c.1, c.2)),
        Some((false, Some(3)))
    );
    assert_eq!(
        by("lake_replaced").map(|c| (c.1, c.2)),
        Some((false, Some(2)))
    );
    assert_eq!(by("lake_dropped"), None, "dropped in the lake: gone");
    assert_eq!(
        by("lake_kept").map(|c| c.1),
        Some(true),
        "untouched: still keyed"
    );
    assert_eq!(by("lake_derived").map(|c| c.1), Some(true));

    // The colleague's table loads with its values, as DuckDB wrote them.
    let colleague = store.load_dataframe("colleague").unwrap().unwrap();
    assert_eq!(
        colleague,
        df!("n" => [0i64, 1, 2], "name" => ["g0", "g1", "g2"]).unwrap()
    );
    // Two files (the insert went to Parquet: the lake's inlining limit is 0): not one file.
    match store.load_dataframe("lake_inserted") {
        Err(Error::LakeTable { table, reason }) => {
            assert_eq!(table, "lake_inserted");
            assert_eq!(reason, "2 data files");
        }
        other => panic!("expected LakeTable, got {other:?}"),
    }

    // The command line lists them as a colleague would expect.
    let status = cli(&shared, &["status", "--json"]);
    // 3: something would be recomputed (`lake_derived`).
    assert_eq!(
        status.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let states: Vec<(String, String)> = status["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["table"].as_str().unwrap().to_owned(),
                c["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("colleague", "unkeyed"),
            ("lake_derived", "stale"),
            ("lake_inserted", "unkeyed"),
            ("lake_kept", "valid"),
            ("lake_replaced", "unkeyed"),
        ]
        .map(|(t, s)| (t.to_owned(), s.to_owned())),
        "{status}"
    );

    // Refused by default: never served as the function's result.
    let pipeline = Pipeline::new(shared.store(), tracker());
    assert!(matches!(
        inserted(&pipeline),
        Err(Error::UnkeyedCheckpoint { table }) if table == "lake_inserted"
    ));
    kept(&pipeline).unwrap();
    assert_eq!(dropped(&pipeline).unwrap(), df!("d" => [true]).unwrap());
    assert_eq!(counts(), [1, 1, 1, 2, 1], "kept hit, dropped recomputed");

    // Adopted: the colleague's replacement, without running the body; what was made from the
    // old version recomputes from it.
    let adopting = Pipeline::new(shared.store(), tracker()).with_unkeyed(UnkeyedPolicy::Adopt);
    assert_eq!(
        replaced(&adopting).unwrap(),
        df!("v" => [40i64, 2]).unwrap()
    );
    assert_eq!(counts(), [1, 1, 1, 2, 1], "adopted, no body");
    let derived_after = derived(&adopting).unwrap();
    assert_eq!(derived_after, df!("total" => [42i64]).unwrap());
    assert_ne!(derived_after, derived_before);
    assert_eq!(
        counts(),
        [1, 1, 1, 2, 2],
        "derived recomputed from the adopted version"
    );
    // Adopted once: keyed from now on, a hit under the default policy.
    assert_eq!(
        replaced(&pipeline).unwrap(),
        df!("v" => [40i64, 2]).unwrap()
    );
    assert_eq!(counts(), [1, 1, 1, 2, 2]);
    assert!(
        store
            .checkpoint("colleague")
            .unwrap()
            .unwrap()
            .key
            .is_none(),
        "no call adopted the colleague's table"
    );

    // Recomputed: the library's version is the lake's again.
    let recomputing =
        Pipeline::new(shared.store(), tracker()).with_unkeyed(UnkeyedPolicy::Recompute);
    assert_eq!(
        inserted(&recomputing).unwrap(),
        df!("gene_id" => ["x", "y"], "n" => [1i64, 2]).unwrap()
    );
    assert_eq!(counts(), [1, 2, 1, 2, 2]);
    let read = read_with_duckdb(&python, &shared);
    for table in [
        "lake_kept",
        "lake_inserted",
        "lake_replaced",
        "lake_dropped",
        "lake_derived",
    ] {
        let loaded = store.load_dataframe(table).unwrap().unwrap();
        assert_read_as(&read["tables"][table], &loaded, table);
        assert!(
            store.checkpoint(table).unwrap().unwrap().key.is_some(),
            "{table} keyed"
        );
    }
    assert_read_as(
        &read["tables"]["colleague"],
        &colleague,
        "the colleague's table, untouched",
    );
}

/// Expiring the lake's snapshots takes exactly the earlier versions no remaining snapshot
/// reads, as the extension's rule says: an older version still read by a kept snapshot
/// stays readable (its file too, through gc), one read by none loses its file at the next gc,
/// the current version never. The extension's own expiry and cleanup work on the store
/// afterwards, and `usher-pipeline gc --expire-older-than` does both steps.
#[test]
fn expired_snapshots_take_only_the_versions_no_remaining_snapshot_reads() {
    let Some((shared, python)) = lake_test("lake_expire") else {
        return;
    };
    let store = shared.store();
    let version = |v: i64| df!("v" => [v, v * 10]).unwrap();
    let pause = || std::thread::sleep(std::time::Duration::from_millis(50));
    store.save_dataframe("t", &version(1), "v1").unwrap(); // snapshot 1
    pause();
    let cutoff = chrono::Utc::now();
    pause();
    store.save_dataframe("t", &version(2), "v2").unwrap(); // snapshot 2
    store.save_dataframe("t", &version(3), "v3").unwrap(); // snapshot 3
    store.save_dataframe("other", &version(7), "other").unwrap(); // snapshot 4
    let files_of_t = || common::shared::walk(&shared.root().join("tables/t")).len();
    assert_eq!(
        files_of_t(),
        3,
        "every version's file kept for the lake's history"
    );

    // Snapshots 0 and 1 go; v1 ([1, 2)) is read by none left, v2 ([2, 3)) by snapshot 2.
    let expired = store.expire_snapshots(cutoff).unwrap();
    assert_eq!((expired.snapshots, expired.files), (2, 1));
    assert_eq!(store.expire_snapshots(cutoff).unwrap().snapshots, 0, "once");
    let gc = store.gc().unwrap();
    assert_eq!(gc.files_removed, 1, "v1's file only");
    assert!(gc.bytes_removed > 0);
    assert_eq!(files_of_t(), 2);

    let read = read_with_duckdb(&python, &shared);
    let snapshots: Vec<i64> = read["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(snapshots, [2, 3, 4]);
    assert_read_as(&read["versions"]["t"]["2"], &version(2), "t at snapshot 2");
    assert_read_as(&read["tables"]["t"], &version(3), "t now");
    assert_read_as(&read["tables"]["other"], &version(7), "other now");
    assert_eq!(store.load_dataframe("t").unwrap().unwrap(), version(3));

    // The extension's own expiry and cleanup after ours, then a save and the command line.
    write_with_duckdb(
        &python,
        &shared,
        &[
            "CALL ducklake_expire_snapshots('lake', older_than => now())",
            "CALL ducklake_cleanup_old_files('lake', cleanup_all => true)",
        ],
    );
    store.save_dataframe("t", &version(4), "v4").unwrap();
    let gc = cli(&shared, &["gc", "--json", "--expire-older-than", "0s"]);
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    let gc: Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(gc["snapshots_expired"], 1, "{gc}");
    assert_eq!(gc["files_unread"], 1, "{gc}");
    // v2's file went with the extension's cleanup, v3's with this gc.
    assert_eq!(gc["files_removed"], 1, "{gc}");
    assert_eq!(files_of_t(), 1);
    let read = read_with_duckdb(&python, &shared);
    assert_eq!(read["snapshots"].as_array().unwrap().len(), 1);
    assert_read_as(&read["tables"]["t"], &version(4), "t after all");
    assert_read_as(&read["tables"]["other"], &version(7), "other after all");
    assert_eq!(store.load_dataframe("t").unwrap().unwrap(), version(4));

    let bad = cli(&shared, &["gc", "--expire-older-than", "30 days"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unknown unit \" days\""),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// The main example runs on the shared store (`USHER_STORE`) twice, the second time with
/// another `--min-depth`, so the constraint table and the scoring made from it are
/// recomputed; then DuckDB reads through the lake every table exactly as the library loads it,
/// the first run's constraint table at its snapshot, and one snapshot per save.
#[test]
fn the_example_pipeline_on_the_shared_store_reads_the_same_through_the_lake() {
    let Some((shared, python)) = lake_test("lake_example") else {
        return;
    };
    let Some(example) = common::example_pipeline() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = shared.root();
    let env = [
        ("USHER_STORE", std::ffi::OsStr::new(&shared.url)),
        ("USHER_DATA_ROOT", root.as_os_str()),
    ];
    let run = |min_depth: &str| common::run_example(&example, work.path(), min_depth, &env);
    let first = run("20");
    assert!(first.contains("store postgres://"), "{first}");
    assert!(
        first.contains("gnomad_constraint  no checkpoint: fetched and saved"),
        "{first}"
    );
    let store = shared.store();
    let constraint_before = store.load_dataframe("gnomad_constraint").unwrap().unwrap();
    let snapshot_before = {
        let mut sql = shared.sql();
        sql.query_one("SELECT max(snapshot_id) FROM ducklake_snapshot", &[])
            .unwrap()
            .get::<_, i64>(0)
    };
    let second = run("30");
    for line in [
        "gnomad_constraint  stale: recomputed (argument `min_depth` changed (20 -> 30))",
        "go_annotation      checkpoint hit, body skipped",
        "candidates         stale: recomputed (input `gnomad_constraint` changed",
    ] {
        assert!(second.contains(line), "{line:?} in {second}");
    }
    let constraint_after = store.load_dataframe("gnomad_constraint").unwrap().unwrap();
    assert_ne!(
        constraint_before, constraint_after,
        "another --min-depth, another table"
    );

    let read = read_with_duckdb(&python, &shared);
    let tables: Vec<String> = read["tables"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let listed: Vec<String> = {
        let mut names: Vec<String> = store
            .list_checkpoints()
            .unwrap()
            .into_iter()
            .map(|c| c.table_name)
            .collect();
        names.sort();
        names
    };
    assert_eq!(tables, listed, "every checkpoint is a lake table");
    assert!(tables.len() >= 4, "{tables:?}");
    for table in &tables {
        let loaded = store.load_dataframe(table).unwrap().unwrap();
        assert_read_as(&read["tables"][table], &loaded, table);
    }
    assert_read_as(
        &read["versions"]["gnomad_constraint"][snapshot_before.to_string()],
        &constraint_before,
        "the first run's constraint table, at its snapshot",
    );
    let saves: usize = read["snapshots"].as_array().unwrap().len() - 1;
    assert!(saves > tables.len(), "one snapshot per save: {saves}");
}

/// A restore on the shared store registers the kept version's file again under a new name, a
/// hard link (the same inode: no byte copied), in a new lake snapshot: the third run of
/// `--min-depth 20, 30, 20` restores the step and the one made from it (no body runs), DuckDB
/// reads the restored table through the lake, and gc removes none of the versions' files.
#[test]
fn a_restore_on_the_shared_store_copies_no_byte_and_the_lake_reads_it() {
    use crate::history::{constraint, counts, raw, scores, step};
    use std::os::unix::fs::MetadataExt;
    let Some((shared, python)) = lake_test("lake_restore") else {
        return;
    };
    let tracker = || tracker_for(&shared, "lake-restore");
    let run = || Pipeline::new(shared.store(), tracker());
    shared
        .store()
        .save_dataframe("h_raw", &raw(&[10, 25, 40, 60]), "raw")
        .unwrap();
    let start = counts();
    let first = run();
    let c20 = constraint(&first, 20).unwrap();
    let s20 = scores(&first).unwrap();
    let second = run();
    constraint(&second, 30).unwrap();
    scores(&second).unwrap();
    let mut sql = shared.sql();
    let kept: String = sql
        .query_one(
            "SELECT path FROM _checkpoint_history WHERE table_name = 'h_constraint' AND version = 1",
            &[],
        )
        .unwrap()
        .get(0);

    let third = run();
    assert_eq!(constraint(&third, 20).unwrap(), c20);
    assert_eq!(scores(&third).unwrap(), s20);
    let ran: Vec<usize> = counts().iter().zip(start).map(|(n, s)| n - s).collect();
    assert_eq!(ran[..2], [2, 2], "the third run ran no body");
    assert_eq!(step(&third, "h_constraint"), ("restored".into(), Some(1)));
    assert_eq!(step(&third, "h_scores"), ("restored".into(), Some(1)));

    let current: String = sql
        .query_one(
            "SELECT path FROM _checkpoint_files WHERE table_name = 'h_constraint'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_ne!(current, kept, "registered under a new name");
    let inode = |file: &str| std::fs::metadata(shared.root().join(file)).unwrap().ino();
    assert_eq!(inode(&current), inode(&kept), "a hard link: the same data");

    let store = shared.store();
    let gc = store.gc().unwrap();
    assert_eq!(
        gc.files_removed, 0,
        "every version's file is read by the history or the lake"
    );
    assert_eq!(store.load_dataframe("h_constraint").unwrap().unwrap(), c20);
    let read = read_with_duckdb(&python, &shared);
    assert_read_as(&read["tables"]["h_constraint"], &c20, "the restored table");
    assert_read_as(&read["tables"]["h_scores"], &s20, "the restored scores");
}

/// The rows of `flip`'s version `v`: every value says which version it is.
fn flip_frame(v: i64) -> DataFrame {
    let ids: Vec<i64> = (0..5_000).collect();
    let values: Vec<i64> = ids.iter().map(|i| i * v).collect();
    df!("id" => ids, "v" => vec![v; 5_000], "value" => values).unwrap()
}

/// Child: restores the other version of `flip` on the shared store, over and over.
#[test]
#[ignore = "a child process of sigkill_during_shared_restores_leaves_one_version_or_the_other"]
fn child_restores_on_the_shared_store() {
    let (Ok(url), Some(root)) = (
        std::env::var("USHER_TEST_STORE"),
        std::env::var_os("USHER_TEST_ROOT"),
    ) else {
        return;
    };
    let store = SharedStore::open(&url, root).unwrap();
    loop {
        let earlier = store
            .history("flip")
            .unwrap()
            .into_iter()
            .find(|v| !v.current)
            .expect("an earlier version");
        println!("restoring {}", earlier.version);
        store
            .restore_version(&earlier, 5)
            .unwrap()
            .expect("restored");
        println!("restored {}", earlier.version);
    }
}

/// A restore on the shared store is all or nothing: killed at any moment of restores, the
/// catalog and the lake agree on one version as current (its key kept, which a disagreeing
/// lake would take away), whole, and the other is in the history with its own rows; gc then
/// removes no file either version needs.
#[test]
fn sigkill_during_shared_restores_leaves_one_version_or_the_other() {
    let Some(shared) = Shared::new("lake_kill_restore") else {
        return;
    };
    let store = shared.store();
    for v in [1i64, 2] {
        let k = usher_pipeline::CheckpointKey::new(
            "flip",
            "version:1",
            serde_json::json!({ "v": v }).as_object().unwrap().clone(),
            serde_json::Map::new(),
        )
        .unwrap();
        let mut metadata = || {
            Ok((
                usher_pipeline::Lineage::default(),
                usher_pipeline::ProvenanceRecord {
                    version: "t".into(),
                    config_hash: "t".into(),
                    created_at: chrono::Utc::now().naive_utc(),
                    steps_json: "[]".into(),
                },
            ))
        };
        store
            .save_checkpoint_keeping(
                "flip",
                &flip_frame(v),
                "flip",
                &k,
                chrono::Utc::now().naive_utc(),
                5,
                &mut metadata,
            )
            .unwrap();
    }
    let kills: usize = std::env::var("USHER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let mut rng = common::Rng::new();
    let mut restored = 0;
    for _ in 0..kills {
        let (mut child, lines) =
            shared.spawn(&common::test_name!(child_restores_on_the_shared_store), &[]);
        let mut started = false;
        while let Ok(line) = lines.recv_timeout(std::time::Duration::from_secs(60)) {
            if line.contains("restoring") {
                started = true;
                break;
            }
        }
        assert!(started, "the child never started restoring");
        std::thread::sleep(std::time::Duration::from_millis(rng.below(150)));
        child.kill().unwrap();
        child.wait().unwrap();
        restored += lines
            .try_iter()
            .filter(|l| l.starts_with("restored"))
            .count();
        let store = shared.store();
        let current = store.checkpoint("flip").unwrap().unwrap();
        let k = current
            .key
            .as_ref()
            .expect("keyed: the lake agrees with the catalog");
        let v = k.arguments["v"].as_i64().unwrap();
        assert_eq!(
            store.load_dataframe("flip").unwrap().unwrap(),
            flip_frame(v)
        );
        let history = store.history("flip").unwrap();
        assert_eq!(history.len(), 2, "{history:?}");
        for version in &history {
            let made_of = version.checkpoint.key.as_ref().unwrap().arguments["v"]
                .as_i64()
                .unwrap();
            assert_eq!(version.current, made_of == v);
            assert_eq!(
                store
                    .load_version("flip", version.version)
                    .unwrap()
                    .unwrap(),
                flip_frame(made_of)
            );
        }
        // gc leaves every version whole.
        store.gc().unwrap();
        for version in &history {
            assert!(
                store
                    .load_version("flip", version.version)
                    .unwrap()
                    .is_some()
            );
        }
    }
    eprintln!("shared restore kills survived: {kills}, restores committed: {restored}");
    assert!(restored > 0, "no restore ever committed");
}

static LAKE_ASYNC_BODIES: AtomicUsize = AtomicUsize::new(0);

/// An `async` step of the shared store's restore test.
#[checkpointed(table = "lake_async")]
async fn fetch_lake_async(_ctx: &Pipeline<SharedStore>, n: i64) -> Result<DataFrame, Error> {
    LAKE_ASYNC_BODIES.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    Ok(df!("n" => [n])?)
}

/// An `async` step on the shared store restores from inside tokio's runtimes (the store's
/// PostgreSQL client kept off the executor's threads): no body on the third call of 20, 30,
/// 20, the first call's frame back, on the multi-thread and the current-thread runtime.
#[test]
fn async_steps_restore_on_the_shared_store_inside_tokio() {
    let Some(shared) = Shared::new("lake_async_restore") else {
        return;
    };
    let tracker = || tracker_for(&shared, "lake-async");
    for (multi, base) in [(true, 100), (false, 200)] {
        let runtime = crate::common::tokio_runtime(multi);
        runtime.block_on(async {
            let run = || Pipeline::new(shared.store(), tracker());
            let start = LAKE_ASYNC_BODIES.load(Ordering::SeqCst);
            let first = fetch_lake_async(&run(), base + 20).await.unwrap();
            fetch_lake_async(&run(), base + 30).await.unwrap();
            let p = run();
            assert_eq!(fetch_lake_async(&p, base + 20).await.unwrap(), first);
            assert_eq!(
                LAKE_ASYNC_BODIES.load(Ordering::SeqCst) - start,
                2,
                "multi-thread: {multi}"
            );
            let outcomes: Vec<String> = p
                .provenance()
                .steps()
                .into_iter()
                .filter_map(|s| s.details)
                .map(|d| d["outcome"].as_str().unwrap_or_default().to_owned())
                .collect();
            assert_eq!(outcomes, ["restored"]);
        });
    }
}
