//! The behaviour every [`CheckpointStore`] must show, written once and run against each store:
//! the crate's own ([`MemoryStore`](crate::MemoryStore), the DuckDB file, the shared store) and
//! a backend written outside this crate, which runs the same cases with one line in its tests
//! (`test-util` feature):
//!
//! ```ignore
//! // tests/conformance.rs of a crate with a store of its own; Cargo.toml:
//! // [dev-dependencies] usher-pipeline = { version = "0.2", features = ["test-util"] }
//! usher_pipeline::conformance_suite!(Box::new(MyStore::open_temporary()));
//! ```
//!
//! [`conformance_suite!`](crate::conformance_suite) makes one `#[test]` per case; each case is
//! also a public function taking a fresh, empty store, to call from a test harness of your own.
//! A case panics (as a failed `assert!` does) when the store misbehaves, naming what it expected.
//! Operations a store may decline ([`query`](CheckpointStore::query),
//! [`export_parquet`](CheckpointStore::export_parquet)) pass when they return
//! [`Error::Unsupported`].

use std::path::PathBuf;

use chrono::NaiveDateTime;
use polars::prelude::*;
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::fingerprint::data_version;
use crate::model::{CheckpointKey, CheckpointVersion, Lineage, ProvenanceRecord};
use crate::store::{CheckpointStore, JudgedLoad, PendingBatches};

/// One `#[test]` per conformance case for the store `$open` makes: an expression giving a fresh,
/// empty store behind a pointer (`Box::new(MyStore::new())`, or a guard that owns the store's
/// temporary directory and derefs to the store). It may `return` to skip every case (a store
/// whose server is missing on a developer's machine, say).
///
/// ```ignore
/// usher_pipeline::conformance_suite!(Box::new(usher_pipeline::MemoryStore::new()));
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($open:expr) => {
        $crate::conformance_suite!(@cases $open;
            missing_table_has_no_checkpoint,
            a_save_is_loaded_with_its_row_and_key,
            lineage_is_kept_with_the_key,
            checkpoints_and_pending_batches_are_listed,
            a_save_replaces_the_previous_checkpoint,
            adoption_needs_the_same_checkpoint,
            batches_resume_under_their_key_only,
            batches_without_columns_record_items_only,
            a_checkpoint_save_removes_its_batches,
            provenance_rows_are_appended,
            names_follow_the_table_name_rule,
            frames_without_columns_are_refused,
            lineage_made_during_a_save_is_saved_with_it,
            a_judged_load_reads_only_the_judged_checkpoint,
            unkeyed_saves_are_loaded_listed_and_deleted,
            deletes_are_all_or_nothing,
            exports_and_queries_read_the_table_or_are_unsupported,
        );
    };
    (@cases $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let store = $open;
                $crate::conformance::$case(&*store);
            }
        )*
    };
}

/// The history cases, for a store that keeps earlier versions: invoke beside
/// [`conformance_suite!`] as `history_suite!(open expression)`.
#[macro_export]
#[doc(hidden)]
macro_rules! history_suite {
    ($open:expr) => {
        $crate::conformance_suite!(@cases $open;
            earlier_versions_are_kept_up_to_keep,
            a_restore_makes_the_version_current_as_it_was,
            keep_one_keeps_no_history,
            a_delete_forgets_the_history,
            pruning_bounds_every_tables_history,
        );
    };
}

fn key(arguments: Value) -> CheckpointKey {
    let Value::Object(arguments) = arguments else {
        panic!("key arguments are an object")
    };
    CheckpointKey::new("fetch", "version:1", arguments, Map::new()).unwrap()
}

fn record(step: &str) -> ProvenanceRecord {
    ProvenanceRecord {
        version: "0.1.0".into(),
        config_hash: "abc".into(),
        created_at: NaiveDateTime::parse_from_str("2026-11-25 10:00:00", "%Y-%m-%d %H:%M:%S")
            .unwrap(),
        steps_json: format!("[{{\"name\": \"{step}\"}}]"),
    }
}

fn genes(n: i64) -> DataFrame {
    let ids: Vec<String> = (0..n).map(|i| format!("ENSG{i:011}")).collect();
    let scores: Vec<Option<f64>> = (0..n)
        .map(|i| (i % 3 != 0).then_some(i as f64 / 7.0))
        .collect();
    df!("gene_id" => ids, "score" => scores).unwrap()
}

fn sorted(frame: DataFrame) -> DataFrame {
    frame
        .sort(["gene_id"], SortMultipleOptions::default())
        .unwrap()
}

/// A table never saved has no checkpoint, no data, no batches and no progress.
pub fn missing_table_has_no_checkpoint<S: CheckpointStore + ?Sized>(store: &S) {
    assert_eq!(store.checkpoint("genes").unwrap(), None);
    assert!(store.load_dataframe("genes").unwrap().is_none());
    assert!(store.load_batches("genes").unwrap().is_none());
    assert_eq!(
        store.batch_progress("genes", "k").unwrap(),
        Vec::<String>::new()
    );
}

/// A keyed save reads back with its `_checkpoints` row (rows, description, a UTC save time of
/// now) and its key, and its data loads equal.
pub fn a_save_is_loaded_with_its_row_and_key<S: CheckpointStore + ?Sized>(store: &S) {
    let frame = genes(5);
    let k = key(json!({"min_depth": 30, "sources": ["gnomad", "ü"]}));
    store
        .save_checkpoint(
            "genes",
            &frame,
            "fetch genes",
            &k,
            &Lineage::default(),
            &record("fetch"),
        )
        .unwrap();
    let row = store.checkpoint("genes").unwrap().expect("a checkpoint");
    assert_eq!(row.table_name, "genes");
    assert_eq!(row.row_count, Some(5));
    assert_eq!(row.description.as_deref(), Some("fetch genes"));
    assert_eq!(row.key.as_ref(), Some(&k));
    let created = row.created_at.expect("a creation time");
    let age = chrono::Utc::now().naive_utc() - created;
    assert!(
        age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::minutes(5),
        "created_at is now, in UTC: {created}"
    );
    assert!(
        store
            .load_dataframe("genes")
            .unwrap()
            .unwrap()
            .equals_missing(&frame)
    );
}

/// Data version, inputs (either kind of version) and `max_age` come back as saved; adoption
/// records the lineage it is given (no data version: the checkpoint's version is its save
/// time).
pub fn lineage_is_kept_with_the_key<S: CheckpointStore + ?Sized>(store: &S) {
    let frame = genes(4);
    let saved =
        NaiveDateTime::parse_from_str("2026-11-25 10:00:00.5", "%Y-%m-%d %H:%M:%S%.f").unwrap();
    let lineage = Lineage {
        data_version: Some(data_version(&frame).unwrap()),
        inputs: [
            (
                "constraint".to_owned(),
                CheckpointVersion::Data(data_version(&genes(2)).unwrap()),
            ),
            ("hpa".to_owned(), CheckpointVersion::Saved(Some(saved))),
        ]
        .into(),
        max_age_seconds: Some(30 * 86_400),
    };
    let k = key(json!({"n": 1}));
    store
        .save_checkpoint("scores", &frame, "", &k, &lineage, &record("a"))
        .unwrap();
    let row = store.checkpoint("scores").unwrap().unwrap();
    assert_eq!(row.lineage, lineage);
    assert_eq!(
        row.version(),
        CheckpointVersion::Data(data_version(&frame).unwrap())
    );
    store
        .save_checkpoint("plain", &frame, "", &k, &Lineage::default(), &record("b"))
        .unwrap();
    let row = store.checkpoint("plain").unwrap().unwrap();
    assert_eq!(row.lineage, Lineage::default());
    assert_eq!(row.version(), CheckpointVersion::Saved(row.created_at));
    let adopted = Lineage {
        inputs: [("hpa".to_owned(), CheckpointVersion::Saved(Some(saved)))].into(),
        max_age_seconds: Some(3_600),
        ..Lineage::default()
    };
    assert!(
        store
            .adopt_checkpoint(
                "scores",
                store.checkpoint("scores").unwrap().unwrap().created_at,
                None,
                &k,
                &adopted
            )
            .unwrap()
    );
    let row = store.checkpoint("scores").unwrap().unwrap();
    assert_eq!(row.lineage, adopted);
    assert_eq!(row.version(), CheckpointVersion::Saved(row.created_at));
}

/// `list_checkpoints` lists every checkpoint, `pending_batches` the finished batches waiting
/// per table.
pub fn checkpoints_and_pending_batches_are_listed<S: CheckpointStore + ?Sized>(store: &S) {
    assert!(store.list_checkpoints().unwrap().is_empty());
    assert!(store.pending_batches().unwrap().is_empty());
    let k = key(json!({}));
    for table in ["b", "a"] {
        store
            .save_checkpoint(table, &genes(1), "", &k, &Lineage::default(), &record("x"))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let names: Vec<String> = store
        .list_checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.table_name)
        .collect();
    assert_eq!(names, ["a", "b"], "newest first");
    store
        .save_batch("c", "k1", &["\"x\"".into(), "\"y\"".into()], &genes(2))
        .unwrap();
    store
        .save_batch("c", "k1", &["\"z\"".into()], &DataFrame::empty())
        .unwrap();
    assert_eq!(
        store.pending_batches().unwrap(),
        [crate::store::PendingBatches {
            table: "c".into(),
            key: "k1".into(),
            items: 3,
            total: None,
        }]
    );
    // With the loop's item count recorded: "3 of 10"; gone with the batches.
    store.record_batch_total("c", "k1", 10).unwrap();
    assert_eq!(store.pending_batches().unwrap()[0].total, Some(10));
    store.discard_batches("c").unwrap();
    assert!(store.pending_batches().unwrap().is_empty());
    store
        .save_batch("c", "k1", &["\"x\"".into()], &genes(1))
        .unwrap();
    assert_eq!(store.pending_batches().unwrap()[0].total, None);
}

/// A second save of a table replaces its data, row and key.
pub fn a_save_replaces_the_previous_checkpoint<S: CheckpointStore + ?Sized>(store: &S) {
    let (first, second) = (key(json!({"n": 1})), key(json!({"n": 2})));
    store
        .save_checkpoint(
            "genes",
            &genes(5),
            "",
            &first,
            &Lineage::default(),
            &record("a"),
        )
        .unwrap();
    store
        .save_checkpoint(
            "genes",
            &genes(3),
            "",
            &second,
            &Lineage::default(),
            &record("b"),
        )
        .unwrap();
    let row = store.checkpoint("genes").unwrap().unwrap();
    assert_eq!((row.row_count, row.key), (Some(3), Some(second)));
    assert_eq!(store.load_dataframe("genes").unwrap().unwrap().height(), 3);
}

/// `adopt_checkpoint` keys a checkpoint only while it is the one created at the time given.
pub fn adoption_needs_the_same_checkpoint<S: CheckpointStore + ?Sized>(store: &S) {
    let (made, adopted) = (key(json!({"n": 1})), key(json!({"n": 2})));
    assert!(
        !store
            .adopt_checkpoint("genes", None, None, &adopted, &Lineage::default())
            .unwrap()
    );
    store
        .save_checkpoint(
            "genes",
            &genes(2),
            "",
            &made,
            &Lineage::default(),
            &record("a"),
        )
        .unwrap();
    let created = store.checkpoint("genes").unwrap().unwrap().created_at;
    let other = created.map(|t| t - chrono::TimeDelta::seconds(1));
    assert!(
        !store
            .adopt_checkpoint("genes", other, None, &adopted, &Lineage::default())
            .unwrap()
    );
    assert_eq!(
        store.checkpoint("genes").unwrap().unwrap().key,
        Some(made.clone())
    );
    assert!(
        store
            .adopt_checkpoint("genes", created, None, &adopted, &Lineage::default())
            .unwrap()
    );
    let row = store.checkpoint("genes").unwrap().unwrap();
    assert_eq!((row.created_at, row.key), (created, Some(adopted)));
    // Adopted and stamped anew (an unkeyed checkpoint's local time, in UTC from now on).
    let restamped = created.map(|t| t - chrono::TimeDelta::hours(5));
    assert!(
        store
            .adopt_checkpoint("genes", created, restamped, &made, &Lineage::default())
            .unwrap()
    );
    let row = store.checkpoint("genes").unwrap().unwrap();
    assert_eq!((row.created_at, row.key), (restamped, Some(made)));
    assert_eq!(store.load_dataframe("genes").unwrap().unwrap().height(), 2);
}

fn items(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("{n:?}")).collect()
}

/// Finished batches resume under the key they were saved with; progress saved under another
/// key is discarded.
pub fn batches_resume_under_their_key_only<S: CheckpointStore + ?Sized>(store: &S) {
    let all = genes(6);
    store
        .save_batch("genes", "k1", &items(&["a", "b"]), &all.slice(0, 3))
        .unwrap();
    store
        .save_batch("genes", "k1", &items(&["c"]), &all.slice(3, 3))
        .unwrap();
    let mut done = store.batch_progress("genes", "k1").unwrap();
    done.sort();
    assert_eq!(done, items(&["a", "b", "c"]));
    let kept = store.load_batches("genes").unwrap().unwrap();
    assert!(sorted(kept).equals_missing(&all));
    // Progress made under another key (other arguments or code) is not mixed in: discarded.
    assert!(store.batch_progress("genes", "k2").unwrap().is_empty());
    assert!(store.load_batches("genes").unwrap().is_none());
    assert!(store.batch_progress("genes", "k1").unwrap().is_empty());
    store
        .save_batch("genes", "k2", &items(&["d"]), &all.slice(0, 1))
        .unwrap();
    store.discard_batches("genes").unwrap();
    assert!(store.batch_progress("genes", "k2").unwrap().is_empty());
    assert!(store.load_batches("genes").unwrap().is_none());
}

/// A batch whose frame has no columns records its items and keeps no rows.
pub fn batches_without_columns_record_items_only<S: CheckpointStore + ?Sized>(store: &S) {
    store
        .save_batch("genes", "k", &items(&["a"]), &DataFrame::empty())
        .unwrap();
    assert_eq!(store.batch_progress("genes", "k").unwrap(), items(&["a"]));
    assert!(store.load_batches("genes").unwrap().is_none());
}

/// Saving the checkpoint removes the table's batches.
pub fn a_checkpoint_save_removes_its_batches<S: CheckpointStore + ?Sized>(store: &S) {
    let k = key(json!({}));
    store
        .save_batch("genes", &k.key, &items(&["a"]), &genes(2))
        .unwrap();
    store
        .save_batch("other", &k.key, &items(&["a"]), &genes(1))
        .unwrap();
    store
        .save_checkpoint(
            "genes",
            &genes(2),
            "",
            &k,
            &Lineage::default(),
            &record("a"),
        )
        .unwrap();
    assert!(store.batch_progress("genes", &k.key).unwrap().is_empty());
    assert!(store.load_batches("genes").unwrap().is_none());
    // Another table's progress is its own.
    assert_eq!(
        store.batch_progress("other", &k.key).unwrap(),
        items(&["a"])
    );
}

/// Each save with a provenance row, and each `append_provenance`, adds one `_provenance` row,
/// read back in order.
pub fn provenance_rows_are_appended<S: CheckpointStore + ?Sized>(store: &S) {
    let before = store.provenance_rows().unwrap().len();
    store
        .save_checkpoint(
            "genes",
            &genes(1),
            "",
            &key(json!({})),
            &Lineage::default(),
            &record("save"),
        )
        .unwrap();
    store.append_provenance(&record("run")).unwrap();
    let rows = store.provenance_rows().unwrap();
    assert_eq!(rows.len(), before + 2);
    assert_eq!(rows[before..], [record("save"), record("run")]);
}

/// Table names follow the crate's one rule: names that are not identifiers are refused to read
/// and to write, reserved ones (`_...`) to write.
pub fn names_follow_the_table_name_rule<S: CheckpointStore + ?Sized>(store: &S) {
    let (frame, k) = (genes(1), key(json!({})));
    for (name, reserved) in [("_checkpoints", true), ("Genes", false), ("a b", false)] {
        let err = store
            .save_checkpoint(name, &frame, "", &k, &Lineage::default(), &record("x"))
            .unwrap_err();
        match err {
            Error::ReservedTableName { .. } if reserved => {}
            Error::InvalidTableName { .. } if !reserved => {}
            other => panic!("{name:?}: {other}"),
        }
        assert!(
            store.save_batch(name, "k", &[], &frame).is_err(),
            "{name:?}"
        );
    }
    assert!(matches!(
        store.checkpoint("a b"),
        Err(Error::InvalidTableName { .. })
    ));
    assert!(matches!(
        store.load_dataframe("x;y"),
        Err(Error::InvalidTableName { .. })
    ));
    // Uppercase and the store's own names can be read (the Python pipeline writes them).
    assert_eq!(store.checkpoint("Genes").unwrap(), None);
}

/// A frame the store cannot hold as it is (no columns) is refused, and nothing is saved.
pub fn frames_without_columns_are_refused<S: CheckpointStore + ?Sized>(store: &S) {
    let err = store
        .save_checkpoint(
            "genes",
            &DataFrame::empty(),
            "",
            &key(json!({})),
            &Lineage::default(),
            &record("x"),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("no columns") && err.to_string().contains("genes"),
        "{err}"
    );
    assert_eq!(store.checkpoint("genes").unwrap(), None);
}

/// `save_checkpoint_with` asks for the lineage once and saves it with the frame; an error of
/// the lineage saves nothing and reaches the caller as it is.
pub fn lineage_made_during_a_save_is_saved_with_it<S: CheckpointStore + ?Sized>(store: &S) {
    let k = key(json!({"release": 1}));
    let lineage = Lineage {
        data_version: Some(data_version(&genes(3)).unwrap()),
        ..Lineage::default()
    };
    let mut asked = 0;
    // Stamped by the caller's clock (a pipeline's), to the microsecond a column holds.
    let saved_at =
        NaiveDateTime::parse_from_str("2031-02-03 04:05:06.7891234", "%Y-%m-%d %H:%M:%S%.f")
            .unwrap();
    store
        .save_checkpoint_with("genes", &genes(3), "with", &k, saved_at, &mut || {
            asked += 1;
            Ok((lineage.clone(), record("with")))
        })
        .unwrap();
    assert_eq!(asked, 1);
    let saved = store.checkpoint("genes").unwrap().unwrap();
    assert_eq!(saved.lineage, lineage);
    assert_eq!(
        saved.created_at.map(|t| t.to_string()),
        Some("2031-02-03 04:05:06.789123".to_owned())
    );
    assert_eq!(store.provenance_rows().unwrap().len(), 1);

    let err = store
        .save_checkpoint_with(
            "genes",
            &genes(5),
            "failed",
            &key(json!({"release": 2})),
            saved_at,
            &mut || Err(Error::Format("no lineage".into())),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Format(m) if m == "no lineage"),
        "{err}"
    );
    let kept = store.checkpoint("genes").unwrap().unwrap();
    assert_eq!(kept.key.map(|k| k.key), Some(k.key.clone()));
    assert_eq!(kept.row_count, Some(3));
    assert_eq!(store.load_dataframe("genes").unwrap().unwrap().height(), 3);
    assert_eq!(
        store.provenance_rows().unwrap().len(),
        1,
        "no provenance row of the failed save"
    );
}

/// `load_judged` loads the checkpoint judged, and says `Replaced` once another took its place.
pub fn a_judged_load_reads_only_the_judged_checkpoint<S: CheckpointStore + ?Sized>(store: &S) {
    let lineage = |n| Lineage {
        data_version: Some(data_version(&genes(n)).unwrap()),
        ..Lineage::default()
    };
    store
        .save_checkpoint(
            "genes",
            &genes(3),
            "",
            &key(json!({"n": 3})),
            &lineage(3),
            &record("a"),
        )
        .unwrap();
    let judged = store.checkpoint("genes").unwrap().unwrap();
    match store.load_judged(&judged).unwrap() {
        JudgedLoad::Loaded(frame) => assert_eq!(frame.height(), 3),
        other => panic!("{other:?}"),
    }
    store
        .save_checkpoint(
            "genes",
            &genes(4),
            "",
            &key(json!({"n": 4})),
            &lineage(4),
            &record("b"),
        )
        .unwrap();
    assert!(matches!(
        store.load_judged(&judged).unwrap(),
        JudgedLoad::Replaced
    ));
    let now = store.checkpoint("genes").unwrap().unwrap();
    match store.load_judged(&now).unwrap() {
        JudgedLoad::Loaded(frame) => assert_eq!(frame.height(), 4),
        other => panic!("{other:?}"),
    }
}

/// A save without a key (the Python pipeline's, or one by hand) is what the store holds until
/// deleted: listed, loaded whole or by its first rows, with no key.
pub fn unkeyed_saves_are_loaded_listed_and_deleted<S: CheckpointStore + ?Sized>(store: &S) {
    let frame = genes(5);
    store.save_dataframe("genes", &frame, "by hand").unwrap();
    assert!(store.has_checkpoint("genes").unwrap());
    let row = store.checkpoint("genes").unwrap().expect("a checkpoint");
    assert_eq!(
        (row.key, row.row_count, row.description.as_deref()),
        (None, Some(5), Some("by hand")),
        "an unkeyed save has no key"
    );
    let listed: Vec<String> = store
        .list_checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.table_name)
        .collect();
    assert_eq!(listed, ["genes"]);
    assert!(sorted(store.load_dataframe("genes").unwrap().unwrap()).equals_missing(&frame));
    let head = store.head("genes", 2).unwrap().expect("the first rows");
    assert_eq!(head.height(), 2);
    assert_eq!(head.get_column_names(), frame.get_column_names());
    assert!(store.head("other", 2).unwrap().is_none());

    store.delete_checkpoint("genes").unwrap();
    assert!(!store.has_checkpoint("genes").unwrap());
    assert!(store.load_dataframe("genes").unwrap().is_none());
    assert!(store.head("genes", 2).unwrap().is_none());
    assert!(store.list_checkpoints().unwrap().is_empty());
}

/// `delete_checkpoints` removes every table named with its batches, or, when one name is
/// refused, none of them.
pub fn deletes_are_all_or_nothing<S: CheckpointStore + ?Sized>(store: &S) {
    for table in ["a", "b", "c"] {
        store.save_dataframe(table, &genes(2), "").unwrap();
    }
    store
        .save_batch("b", "k", &["\"x\"".into()], &genes(1))
        .unwrap();
    assert!(
        store.delete_checkpoints(&["a", "_reserved"]).is_err(),
        "a reserved name is refused"
    );
    assert!(
        store.has_checkpoint("a").unwrap(),
        "a refused delete removes nothing"
    );
    store.delete_checkpoints(&["a", "b"]).unwrap();
    let left: Vec<String> = store
        .list_checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.table_name)
        .collect();
    assert_eq!(left, ["c"]);
    assert!(store.load_dataframe("a").unwrap().is_none());
    let pending: Vec<PendingBatches> = store.pending_batches().unwrap();
    assert!(
        pending.iter().all(|p| p.table != "b"),
        "a deleted table's batches go with it: {pending:?}"
    );
    assert!(store.load_batches("b").unwrap().is_none());
}

/// A unique path under the system's temporary directory, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        TempPath(std::env::temp_dir().join(format!(
            "usher-conformance-{}-{nanos}/{name}",
            std::process::id()
        )))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `export_parquet` writes the table whole (a missing table is [`Error::TableNotFound`]) and
/// `query` reads it; a store without them says [`Error::Unsupported`].
pub fn exports_and_queries_read_the_table_or_are_unsupported<S: CheckpointStore + ?Sized>(
    store: &S,
) {
    store.save_dataframe("genes", &genes(3), "").unwrap();
    let out = TempPath::new("genes.parquet");
    match store.export_parquet("genes", &out.0) {
        Ok(()) => {
            let bytes = std::fs::read(&out.0).expect("the exported file");
            assert!(
                bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
                "a whole Parquet file"
            );
            let missing = store.export_parquet("missing", &out.0).unwrap_err();
            assert!(
                matches!(&missing, Error::TableNotFound { table, .. } if table == "missing"),
                "{missing}"
            );
        }
        Err(Error::Unsupported { .. }) => {}
        Err(e) => panic!("export_parquet: {e}"),
    }
    match store.query(
        "SELECT count(*) AS n FROM genes WHERE score IS NULL OR score >= ?",
        &[0.0.into()],
    ) {
        Ok(frame) => {
            let n = frame.column("n").unwrap().cast(&DataType::Int64).unwrap();
            assert_eq!(n.i64().unwrap().get(0), Some(3));
            assert!(
                store.query("DROP TABLE genes", &[]).is_err(),
                "query only reads"
            );
            assert!(store.has_checkpoint("genes").unwrap());
        }
        Err(Error::Unsupported { .. }) => {}
        Err(e) => panic!("query: {e}"),
    }
}

/// Saves `frame` as `table` under `key`, with its data version as lineage, keeping `keep`.
fn save_keeping<S: CheckpointStore + ?Sized>(
    store: &S,
    table: &str,
    frame: &DataFrame,
    k: &CheckpointKey,
    keep: usize,
) -> Lineage {
    let lineage = Lineage {
        data_version: Some(data_version(frame).unwrap()),
        ..Lineage::default()
    };
    let mut metadata = || Ok((lineage.clone(), record("save")));
    let now = crate::store::time::to_micros(crate::store::time::now_utc());
    store
        .save_checkpoint_keeping(table, frame, "versions", k, now, keep, &mut metadata)
        .unwrap();
    lineage
}

/// Four keyed saves keeping 3: the current one and the two before it are listed, newest
/// first, numbered 4, 3, 2, each with the key, lineage and rows it was saved with, and each
/// loads its own rows; the first is gone.
pub fn earlier_versions_are_kept_up_to_keep<S: CheckpointStore + ?Sized>(store: &S) {
    let mut saved = Vec::new();
    for n in 1..=4i64 {
        let k = key(json!({ "n": n }));
        let frame = genes(n);
        let lineage = save_keeping(store, "genes", &frame, &k, 3);
        saved.push((k, frame, lineage));
    }
    let history = store.history("genes").unwrap();
    let numbers: Vec<(u64, bool)> = history.iter().map(|v| (v.version, v.current)).collect();
    assert_eq!(numbers, [(4, true), (3, false), (2, false)]);
    for version in &history {
        let (k, frame, lineage) = &saved[version.version as usize - 1];
        assert_eq!(version.checkpoint.key.as_ref(), Some(k));
        assert_eq!(&version.checkpoint.lineage, lineage);
        assert_eq!(version.checkpoint.row_count, Some(frame.height() as i64));
        assert_eq!(version.current, version.replaced_at.is_none());
        assert!(
            store
                .load_version("genes", version.version)
                .unwrap()
                .unwrap()
                .equals_missing(frame),
            "version {}",
            version.version
        );
    }
    assert!(store.load_version("genes", 1).unwrap().is_none(), "pruned");
    assert_eq!(
        store.checkpoint("genes").unwrap().unwrap(),
        history[0].checkpoint,
        "the current version is the checkpoint"
    );
    // No other table's versions, and none for a table never saved.
    assert!(store.history("other").unwrap().is_empty());
}

/// A restored version is the checkpoint again exactly as it was (save time, key, lineage, so
/// what was made from it matches it), its rows load, the replaced current one is kept in its
/// place, and a restore of a version no longer there as judged changes nothing.
pub fn a_restore_makes_the_version_current_as_it_was<S: CheckpointStore + ?Sized>(store: &S) {
    let first = genes(3);
    let second = genes(5);
    let k1 = key(json!({ "min_depth": 20 }));
    let k2 = key(json!({ "min_depth": 30 }));
    save_keeping(store, "constraint", &first, &k1, 5);
    let was = store.checkpoint("constraint").unwrap().unwrap();
    save_keeping(store, "constraint", &second, &k2, 5);
    let history = store.history("constraint").unwrap();
    let earlier = history.iter().find(|v| !v.current).unwrap().clone();
    assert_eq!(earlier.checkpoint, was);

    let restored = store
        .restore_version(&earlier, 5)
        .unwrap()
        .expect("restored");
    assert_eq!(restored, was, "save time, key and lineage as they were");
    assert_eq!(store.checkpoint("constraint").unwrap().unwrap(), was);
    assert!(
        store
            .load_dataframe("constraint")
            .unwrap()
            .unwrap()
            .equals_missing(&first)
    );
    let after = store.history("constraint").unwrap();
    let numbers: Vec<(u64, bool)> = after.iter().map(|v| (v.version, v.current)).collect();
    assert_eq!(numbers, [(2, false), (1, true)], "numbers kept");
    assert_eq!(after[0].checkpoint.key.as_ref(), Some(&k2));
    assert!(
        store
            .load_version("constraint", 2)
            .unwrap()
            .unwrap()
            .equals_missing(&second)
    );
    // The same judgement again: that version is current now, nothing to do.
    assert_eq!(store.restore_version(&earlier, 5).unwrap(), None);
    assert_eq!(store.checkpoint("constraint").unwrap().unwrap(), was);
    // And back: the other version, as judged from the history.
    let back = store.restore_version(&after[0], 5).unwrap().unwrap();
    assert_eq!(back.key.as_ref(), Some(&k2));
    assert!(
        store
            .load_dataframe("constraint")
            .unwrap()
            .unwrap()
            .equals_missing(&second)
    );
}

/// `keep = 1` keeps no earlier version, and drops those kept before.
pub fn keep_one_keeps_no_history<S: CheckpointStore + ?Sized>(store: &S) {
    save_keeping(store, "t", &genes(1), &key(json!({ "n": 1 })), 3);
    save_keeping(store, "t", &genes(2), &key(json!({ "n": 2 })), 3);
    assert_eq!(store.history("t").unwrap().len(), 2);
    save_keeping(store, "t", &genes(3), &key(json!({ "n": 3 })), 1);
    let history = store.history("t").unwrap();
    assert_eq!(history.len(), 1);
    assert!(history[0].current);
    assert_eq!(history[0].version, 3);
}

/// Deleting a checkpoint deletes its earlier versions too; a later save starts afresh beside
/// no history.
pub fn a_delete_forgets_the_history<S: CheckpointStore + ?Sized>(store: &S) {
    save_keeping(store, "t", &genes(1), &key(json!({ "n": 1 })), 3);
    save_keeping(store, "t", &genes(2), &key(json!({ "n": 2 })), 3);
    store.delete_checkpoint("t").unwrap();
    assert!(store.history("t").unwrap().is_empty());
    assert!(store.load_version("t", 1).unwrap().is_none());
    save_keeping(store, "t", &genes(3), &key(json!({ "n": 3 })), 3);
    let history = store.history("t").unwrap();
    assert_eq!(history.len(), 1);
}

/// `prune_history(keep)` bounds every table's versions at once, newest kept, current
/// untouched; pruning again drops nothing.
pub fn pruning_bounds_every_tables_history<S: CheckpointStore + ?Sized>(store: &S) {
    for table in ["a", "b"] {
        for n in 1..=4i64 {
            save_keeping(store, table, &genes(n), &key(json!({ "n": n })), 5);
        }
    }
    assert_eq!(store.history("a").unwrap().len(), 4);
    assert_eq!(
        store.prune_history(2).unwrap(),
        4,
        "two earlier versions of each dropped"
    );
    for table in ["a", "b"] {
        let numbers: Vec<(u64, bool)> = store
            .history(table)
            .unwrap()
            .iter()
            .map(|v| (v.version, v.current))
            .collect();
        assert_eq!(numbers, [(4, true), (3, false)], "{table}");
        assert!(
            store
                .load_dataframe(table)
                .unwrap()
                .unwrap()
                .equals_missing(&genes(4))
        );
    }
    assert_eq!(store.prune_history(2).unwrap(), 0);
}
