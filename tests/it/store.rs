//! PipelineStore: the seed's eight store tests in Rust form, plus round trips of every dtype,
//! names, modes and errors.

use crate::common;

use common::{assert_frames_equal, genes};
use usher_pipeline::CheckpointStore;
use usher_pipeline::polars::prelude::*;
use usher_pipeline::{DuckdbErrorKind, Error, Param, PipelineStore, SaveMode};

fn store() -> (tempfile::TempDir, PipelineStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = PipelineStore::open(dir.path().join("nested/dir/test.duckdb")).unwrap();
    (dir, store)
}

#[test]
fn store_creates_database_and_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/test.duckdb");
    let store = PipelineStore::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(store.path(), path);
    let tables = store.query("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '_checkpoints' ORDER BY ordinal_position", &[]).unwrap();
    let names: Vec<&str> = tables
        .column("column_name")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    let types: Vec<&str> = tables
        .column("data_type")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(
        names,
        ["table_name", "created_at", "row_count", "description"]
    );
    assert_eq!(types, ["VARCHAR", "TIMESTAMP", "INTEGER", "VARCHAR"]);
}

#[test]
fn save_and_load_polars_round_trips_values() {
    let (_dir, store) = store();
    let df = df!("gene" => ["BRCA1", "TP53"], "score" => [0.95, 0.88]).unwrap();
    store
        .save_dataframe("test_genes", &df, "test data")
        .unwrap();
    assert!(store.has_checkpoint("test_genes").unwrap());
    let loaded = store.load_dataframe("test_genes").unwrap().unwrap();
    assert_eq!(loaded.shape(), (2, 2));
    assert_frames_equal(&loaded, &df);
}

#[test]
fn every_pipeline_dtype_round_trips_with_nulls_nan_unicode_and_quoted_names() {
    let (_dir, store) = store();
    let df = genes();
    store.save_dataframe("genes", &df, "all dtypes").unwrap();
    assert_frames_equal(&store.load_dataframe("genes").unwrap().unwrap(), &df);
    // NaN and null stay distinct in the stored table, not only after the round trip.
    let counts = store.query("SELECT count(*) FILTER (WHERE isnan(score)) AS nan, count(*) FILTER (WHERE score IS NULL) AS null FROM genes", &[]).unwrap();
    assert_eq!(counts.column("nan").unwrap().i64().unwrap().get(0), Some(1));
    assert_eq!(
        counts.column("null").unwrap().i64().unwrap().get(0),
        Some(1)
    );
}

#[test]
fn zero_row_frames_keep_their_schema() {
    let (_dir, store) = store();
    let empty = genes().head(Some(0));
    store.save_dataframe("empty_genes", &empty, "").unwrap();
    let loaded = store.load_dataframe("empty_genes").unwrap().unwrap();
    assert_frames_equal(&loaded, &empty);
    assert_eq!(store.list_checkpoints().unwrap()[0].row_count, Some(0));
}

/// The seed's pandas test: a Rust user passes frames built up in pieces rather than pandas, so
/// this saves a many-chunk frame and a slice with an offset, and compares values.
#[test]
fn chunked_and_sliced_frames_round_trip() {
    let (_dir, store) = store();
    let mut df = genes();
    for _ in 0..20 {
        df.vstack_mut(&genes()).unwrap();
    }
    assert!(df.first_col_n_chunks() > 1);
    store.save_dataframe("chunked", &df, "").unwrap();
    assert_frames_equal(&store.load_dataframe("chunked").unwrap().unwrap(), &df);
    let sliced = df.slice(3, 7);
    store.save_dataframe("sliced", &sliced, "").unwrap();
    assert_frames_equal(&store.load_dataframe("sliced").unwrap().unwrap(), &sliced);
}

#[test]
fn large_frames_go_through_parallel_batches_intact() {
    let (_dir, store) = store();
    let n = 400_000i64;
    let df = df!(
        "id" => (0..n).map(|i| format!("ENSG{i:011}")).collect::<Vec<_>>(),
        "value" => (0..n).map(|i| (i % 20 != 0).then_some(i as f64 / 7.0)).collect::<Vec<_>>(),
        "n" => (0..n).collect::<Vec<_>>(),
    )
    .unwrap();
    store.save_dataframe("big", &df, "").unwrap();
    let loaded = store.load_dataframe("big").unwrap().unwrap();
    assert_frames_equal(&loaded, &df);
    // Loads come in row-group-sized pieces (122,880 rows), not the C API's 2,048-row ones.
    assert!(
        loaded.first_col_n_chunks() <= 4,
        "{} chunks",
        loaded.first_col_n_chunks()
    );
}

#[test]
fn checkpoint_lifecycle() {
    let (_dir, store) = store();
    let df = df!("x" => [1, 2, 3]).unwrap();
    store.save_dataframe("to_delete", &df, "").unwrap();
    assert!(store.has_checkpoint("to_delete").unwrap());
    store.delete_checkpoint("to_delete").unwrap();
    assert!(!store.has_checkpoint("to_delete").unwrap());
    assert!(store.load_dataframe("to_delete").unwrap().is_none());
}

#[test]
fn list_checkpoints_returns_typed_rows_newest_first() {
    let (_dir, store) = store();
    for (i, name) in ["table1", "table2", "table3"].iter().enumerate() {
        let df = df!("x" => (0..=i as i64).collect::<Vec<_>>()).unwrap();
        store
            .save_dataframe(name, &df, &format!("description {i}"))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let list = store.list_checkpoints().unwrap();
    let names: Vec<&str> = list.iter().map(|c| c.table_name.as_str()).collect();
    assert_eq!(names, ["table3", "table2", "table1"]);
    assert_eq!(list[0].row_count, Some(3));
    assert_eq!(list[2].description.as_deref(), Some("description 0"));
    let age = chrono::Utc::now().naive_utc() - list[0].created_at.unwrap();
    assert!(
        age.num_seconds().abs() < 60,
        "created_at is UTC now, got {:?}",
        list[0].created_at
    );
}

#[test]
fn export_parquet_creates_parents_and_is_readable() {
    let (dir, store) = store();
    let df = genes();
    store.save_dataframe("genes", &df, "").unwrap();
    let out = dir.path().join("out/deeper/genes.parquet");
    store.export_parquet("genes", &out).unwrap();
    assert!(out.is_file());
    let back = store
        .query(
            "SELECT * FROM read_parquet(?)",
            &[out.to_str().unwrap().into()],
        )
        .unwrap();
    assert_frames_equal(&back, &df);
    let missing = store
        .export_parquet("nope", &dir.path().join("nope.parquet"))
        .unwrap_err();
    assert!(
        matches!(&missing, Error::TableNotFound { table, .. } if table == "nope"),
        "{missing}"
    );
}

#[test]
fn load_nonexistent_returns_none() {
    let (_dir, store) = store();
    assert!(store.load_dataframe("nonexistent").unwrap().is_none());
    assert!(!store.has_checkpoint("nonexistent").unwrap());
}

/// The seed's context-manager test: dropping the store closes it, releasing the file for the
/// next opener, with everything saved still there.
#[test]
fn drop_closes_and_reopen_sees_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctx.duckdb");
    {
        let store = PipelineStore::open(&path).unwrap();
        store
            .save_dataframe("kept", &df!("x" => [1i64, 2]).unwrap(), "kept")
            .unwrap();
    }
    let reopened = PipelineStore::open(&path).unwrap();
    assert_eq!(
        reopened.load_dataframe("kept").unwrap().unwrap().height(),
        2
    );
    reopened.close();
    let again = PipelineStore::open_read_only(&path).unwrap();
    assert!(again.has_checkpoint("kept").unwrap());
}

#[test]
fn append_adds_rows_and_counts_the_whole_table() {
    let (_dir, store) = store();
    let df = df!("gene" => ["A", "B"], "n" => [1i64, 2]).unwrap();
    store.save("t", &df, "first", SaveMode::Append).unwrap();
    // Columns are matched by name, not position.
    let swapped = df!("n" => [3i64], "gene" => ["C"]).unwrap();
    store
        .save("t", &swapped, "second", SaveMode::Append)
        .unwrap();
    let loaded = store.load_dataframe("t").unwrap().unwrap();
    assert_frames_equal(
        &loaded,
        &df!("gene" => ["A", "B", "C"], "n" => [1i64, 2, 3]).unwrap(),
    );
    let cp = &store.list_checkpoints().unwrap()[0];
    assert_eq!(
        (cp.row_count, cp.description.as_deref()),
        (Some(3), Some("second"))
    );
    // Replace starts over.
    store
        .save("t", &swapped, "third", SaveMode::Replace)
        .unwrap();
    assert_eq!(store.load_dataframe("t").unwrap().unwrap().height(), 1);
}

#[test]
fn table_names_are_validated_and_reserved_names_refused() {
    let (_dir, store) = store();
    let df = df!("x" => [1]).unwrap();
    for bad in [
        "",
        "1abc",
        "a b",
        "a;DROP TABLE _checkpoints",
        "a\"b",
        "é",
        "Genes",
        &"x".repeat(129),
    ] {
        let err = store.save_dataframe(bad, &df, "").unwrap_err();
        assert!(
            matches!(err, Error::InvalidTableName { .. }),
            "{bad:?}: {err}"
        );
        assert!(
            err.to_string().contains(&format!("{bad:?}")),
            "message names the table: {err}"
        );
    }
    for reserved in ["_checkpoints", "_provenance", "_x"] {
        let err = store.save_dataframe(reserved, &df, "").unwrap_err();
        assert!(
            matches!(err, Error::ReservedTableName { .. }),
            "{reserved}: {err}"
        );
        assert!(matches!(
            store.delete_checkpoint(reserved),
            Err(Error::ReservedTableName { .. })
        ));
    }
    // SQL keywords are fine as names: they are always quoted.
    store.save_dataframe("select", &df, "").unwrap();
    assert_eq!(store.load_dataframe("select").unwrap().unwrap().height(), 1);
    // The store's own tables can be read.
    assert!(store.load_dataframe("_checkpoints").unwrap().is_some());
}

#[test]
fn query_binds_parameters_of_every_type() {
    let (_dir, store) = store();
    store.save_dataframe("genes", &genes(), "").unwrap();
    let hostile = "x'; DROP TABLE genes; --";
    let df = store
        .query(
            "SELECT ? AS s, ? AS i, ? AS f, ? AS b, ? AS d, ? AS t, ? AS nothing, (SELECT count(*) FROM genes WHERE symbol = ?) AS hits",
            &[
                hostile.into(),
                42i64.into(),
                0.5f64.into(),
                true.into(),
                chrono::NaiveDate::from_ymd_opt(2024, 1, 31).unwrap().into(),
                chrono::NaiveDate::from_ymd_opt(2024, 1, 31).unwrap().and_hms_micro_opt(1, 2, 3, 4).unwrap().into(),
                Param::Null,
                "USH2A".into(),
            ],
        )
        .unwrap();
    assert_eq!(df.column("s").unwrap().str().unwrap().get(0), Some(hostile));
    assert_eq!(df.column("i").unwrap().i64().unwrap().get(0), Some(42));
    assert_eq!(df.column("hits").unwrap().i64().unwrap().get(0), Some(1));
    assert_eq!(df.column("d").unwrap().dtype(), &DataType::Date);
    assert!(
        store.load_dataframe("genes").unwrap().is_some(),
        "the hostile value ran as a value"
    );
    let err = store.query("SELECT ?", &[]).unwrap_err().to_string();
    assert!(err.contains("1 parameter"), "{err}");
    let err = store.query("SELECT 1; DROP TABLE genes", &[]).unwrap_err();
    assert!(matches!(err, Error::Duckdb { .. }), "{err}");
    assert!(
        store.load_dataframe("genes").unwrap().is_some(),
        "a second statement never runs"
    );
}

#[test]
fn frames_without_columns_are_refused() {
    let (_dir, store) = store();
    let err = store
        .save_dataframe("nothing", &DataFrame::empty(), "")
        .unwrap_err();
    assert!(err.to_string().contains("\"nothing\""), "{err}");
    assert!(!store.has_checkpoint("nothing").unwrap());
}

#[test]
fn a_failed_save_keeps_the_previous_checkpoint() {
    let (_dir, store) = store();
    let df = df!("gene" => ["A"], "n" => [1i64]).unwrap();
    store.save_dataframe("t", &df, "good").unwrap();
    // Appending a frame with a column the table lacks fails inside the transaction.
    let bad = df!("other" => [1i64]).unwrap();
    let err = store.save("t", &bad, "bad", SaveMode::Append).unwrap_err();
    assert!(
        matches!(err, Error::Duckdb { ref context, .. } if context.contains("\"t\"")),
        "{err}"
    );
    assert_frames_equal(&store.load_dataframe("t").unwrap().unwrap(), &df);
    let cp = &store.list_checkpoints().unwrap()[0];
    assert_eq!(
        (cp.row_count, cp.description.as_deref()),
        (Some(1), Some("good"))
    );
    // And the store is still usable.
    store.save_dataframe("t2", &df, "").unwrap();
}

#[test]
fn store_and_tracker_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PipelineStore>();
    assert_send_sync::<usher_pipeline::ProvenanceTracker>();
    let (_dir, store) = store();
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            s.spawn(move || {
                for i in 0..5 {
                    let name = format!("t{t}_{i}");
                    store
                        .save_dataframe(&name, &df!("x" => [t, i]).unwrap(), "")
                        .unwrap();
                    assert_eq!(store.load_dataframe(&name).unwrap().unwrap().height(), 2);
                }
            });
        }
    });
    assert_eq!(store.list_checkpoints().unwrap().len(), 20);
}

/// Two stores on one file in one process share one DuckDB instance: each sees the other's
/// checkpoints, and closing one leaves the other working. (Two independent instances on one
/// file would each miss the other's writes.)
#[test]
fn two_opens_of_one_file_in_one_process_share_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.duckdb");
    let a = PipelineStore::open(&path).unwrap();
    let b = PipelineStore::open(&path).unwrap();
    a.save_dataframe("from_a", &df!("x" => [1i64, 2]).unwrap(), "")
        .unwrap();
    assert!(b.has_checkpoint("from_a").unwrap());
    assert_eq!(b.load_dataframe("from_a").unwrap().unwrap().height(), 2);
    drop(a);
    b.save_dataframe("from_b", &df!("x" => [3i64]).unwrap(), "")
        .unwrap();
    drop(b);
    let c = PipelineStore::open(&path).unwrap();
    assert_eq!(c.list_checkpoints().unwrap().len(), 2);
}

/// Saves through two stores on one file from two threads at once: their Arrow scans share the
/// instance's scan catalog and must not trade views (each table holds its own frame).
#[test]
fn concurrent_saves_through_two_stores_on_one_file_keep_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.duckdb");
    let stores = [
        PipelineStore::open(&path).unwrap(),
        PipelineStore::open(&path).unwrap(),
    ];
    std::thread::scope(|s| {
        for (t, store) in stores.iter().enumerate() {
            s.spawn(move || {
                for i in 0..10i64 {
                    let name = format!("s{t}_{i}");
                    let frame = df!("who" => [t as i64; 3], "i" => [i; 3]).unwrap();
                    store.save_dataframe(&name, &frame, "").unwrap();
                    assert_frames_equal(&store.load_dataframe(&name).unwrap().unwrap(), &frame);
                }
            });
        }
    });
    assert_eq!(stores[0].list_checkpoints().unwrap().len(), 20);
}

/// Checkpoint lookups are answered from metadata kept in memory; every write in the process,
/// through any store on the file and through `query`, is seen by the next lookup.
#[test]
fn checkpoint_lookups_see_every_write_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.duckdb");
    let a = PipelineStore::open(&path).unwrap();
    let b = PipelineStore::open(dir.path().join(".").join("meta.duckdb")).unwrap();
    let frame = df!("x" => [1i64, 2]).unwrap();
    assert!(!a.has_checkpoint("t").unwrap());
    assert!(!b.has_checkpoint("t").unwrap());

    b.save_dataframe("t", &frame, "by b").unwrap();
    assert!(a.has_checkpoint("t").unwrap());

    a.delete_checkpoint("t").unwrap();
    assert!(!b.has_checkpoint("t").unwrap());

    a.save_dataframe("t", &frame, "again").unwrap();
    assert!(b.has_checkpoint("t").unwrap());
    // A write through SQL is seen by every store on the file: a dropped checkpoint table
    // takes its checkpoint with it.
    assert_eq!(b.execute("DROP TABLE t", &[]).unwrap(), ["t"]);
    assert!(!a.has_checkpoint("t").unwrap());
    a.save_dataframe("t", &frame, "by hand").unwrap();
    assert!(b.has_checkpoint("t").unwrap());

    // A failed statement still invalidates: the lookup after it reads the table again.
    let err = a.execute("DELETE FROM no_such_table", &[]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Duckdb {
                kind: DuckdbErrorKind::Catalog,
                ..
            }
        ),
        "{err}"
    );
    assert!(b.has_checkpoint("t").unwrap());
    drop((a, b));

    // Reopened, the store reads what is on disk.
    let c = PipelineStore::open(&path).unwrap();
    assert!(c.has_checkpoint("t").unwrap());
    assert_eq!(
        c.list_checkpoints().unwrap()[0].description.as_deref(),
        Some("by hand")
    );
}

/// Every DuckDB type a query or a table (say, one the Python pipeline wrote) can hold comes back
/// as a frame or as a typed error naming the column; none brings the caller down. polars here
/// is built without its decimal and categorical features, on which it would panic.
#[test]
fn results_of_every_duckdb_type_are_frames_or_typed_errors() {
    let (_dir, store) = store();
    let cases: &[(&str, Option<&str>)] = &[
        ("1.5::DECIMAL(10,2)", Some("is DECIMAL")),
        ("1::HUGEINT", Some("is DECIMAL")),
        ("1::UHUGEINT", Some("is DECIMAL")),
        ("[1.5::DECIMAL(4,1)]", Some("is DECIMAL")),
        ("{'d': 1::HUGEINT}", Some("is DECIMAL")),
        ("MAP {'a': 1}", Some("is a MAP")),
        ("CAST('a' AS ENUM('a', 'b'))", Some("is an ENUM")),
        ("1::TINYINT", Some("cannot create series")),
        ("INTERVAL '1 day'", Some("could not import")),
        // Extensions are not downloaded behind the user's back.
        ("'{}'::JSON", Some("json")),
        ("uuid()", None),
        ("TIME '12:00'", None),
        ("TIMESTAMPTZ '2020-01-01 00:00+00'", None),
        ("TIMESTAMP_NS '2020-01-01'", None),
        ("'\\xAA'::BLOB", None),
        ("[1, 2]", None),
        ("1::UBIGINT", None),
        ("1.0::FLOAT", None),
        ("NULL", None),
    ];
    for (expr, refused) in cases {
        let got = store.query(&format!("SELECT {expr} AS v"), &[]);
        match (refused, got) {
            (None, Ok(frame)) => assert_eq!(frame.shape(), (1, 1), "{expr}"),
            (Some(why), Err(e)) => {
                let text = e.to_string();
                assert!(matches!(e, Error::Duckdb { .. }), "{expr}: {e:?}");
                let names_column = text.contains("\"v\"") || expr.contains("JSON");
                assert!(text.contains(why) && names_column, "{expr}: {text}");
            }
            (refused, got) => panic!("{expr}: expected refusal {refused:?}, got {got:?}"),
        }
    }
    let autoinstall = store
        .query(
            "SELECT current_setting('autoinstall_known_extensions') AS on",
            &[],
        )
        .unwrap();
    assert_eq!(
        autoinstall.column("on").unwrap().bool().unwrap().get(0),
        Some(false)
    );
    // A stored table with such a column: the load names the table and the column.
    store
        .execute(
            "CREATE TABLE totals AS SELECT 'BRCA1' AS gene, sum(range) AS total FROM range(3)",
            &[],
        )
        .unwrap();
    let err = store.load_dataframe("totals").unwrap_err().to_string();
    assert!(
        err.contains("\"totals\"") && err.contains("column \"total\" is DECIMAL"),
        "{err}"
    );
}

/// A backend written outside this crate, as a user would: it implements the required methods
/// of `CheckpointStore` (here over a `MemoryStore`, with export and query declined as the
/// memory store declines them) and proves itself with the public conformance suite.
#[cfg(feature = "test-util")]
mod outside_backend {
    use std::path::Path;

    use usher_pipeline::polars::prelude::DataFrame;
    use usher_pipeline::{
        CheckpointInfo, CheckpointKey, CheckpointStore, Lineage, MemoryStore, PendingBatches,
        ProvenanceRecord, Result,
    };

    struct Outside(MemoryStore);

    impl CheckpointStore for Outside {
        fn save_dataframe(&self, table: &str, frame: &DataFrame, description: &str) -> Result<()> {
            self.0.save_dataframe(table, frame, description)
        }
        fn load_dataframe(&self, table: &str) -> Result<Option<DataFrame>> {
            self.0.load_dataframe(table)
        }
        fn list_checkpoints(&self) -> Result<Vec<CheckpointInfo>> {
            self.0.list_checkpoints()
        }
        fn delete_checkpoints(&self, tables: &[&str]) -> Result<()> {
            self.0.delete_checkpoints(tables)
        }
        fn export_parquet(&self, table: &str, output_path: &Path) -> Result<()> {
            self.0.export_parquet(table, output_path)
        }
        fn provenance_rows(&self) -> Result<Vec<ProvenanceRecord>> {
            self.0.provenance_rows()
        }
        fn checkpoint(&self, table: &str) -> Result<Option<CheckpointInfo>> {
            self.0.checkpoint(table)
        }
        fn save_checkpoint_with(
            &self,
            table: &str,
            frame: &DataFrame,
            description: &str,
            key: &CheckpointKey,
            saved_at: chrono::NaiveDateTime,
            metadata: &mut dyn FnMut() -> Result<(Lineage, ProvenanceRecord)>,
        ) -> Result<()> {
            self.0
                .save_checkpoint_with(table, frame, description, key, saved_at, metadata)
        }
        fn adopt_checkpoint(
            &self,
            table: &str,
            created_at: Option<chrono::NaiveDateTime>,
            saved_at: Option<chrono::NaiveDateTime>,
            key: &CheckpointKey,
            lineage: &Lineage,
        ) -> Result<bool> {
            self.0
                .adopt_checkpoint(table, created_at, saved_at, key, lineage)
        }
        fn batch_progress(&self, table: &str, key: &str) -> Result<Vec<String>> {
            self.0.batch_progress(table, key)
        }
        fn discard_batches(&self, table: &str) -> Result<()> {
            self.0.discard_batches(table)
        }
        fn record_batch_total(&self, table: &str, key: &str, total: usize) -> Result<()> {
            self.0.record_batch_total(table, key, total)
        }
        fn save_batch(
            &self,
            table: &str,
            key: &str,
            items: &[String],
            frame: &DataFrame,
        ) -> Result<()> {
            self.0.save_batch(table, key, items, frame)
        }
        fn load_batches(&self, table: &str) -> Result<Option<DataFrame>> {
            self.0.load_batches(table)
        }
        fn append_provenance(&self, record: &ProvenanceRecord) -> Result<()> {
            self.0.append_provenance(record)
        }
        fn pending_batches(&self) -> Result<Vec<PendingBatches>> {
            self.0.pending_batches()
        }
    }

    usher_pipeline::conformance_suite!(Box::new(Outside(MemoryStore::new())));
}
