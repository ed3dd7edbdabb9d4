//! The behaviour every [`CheckpointStore`] must show, written once and run against each store
//! by [`conformance_suite!`]: `store::memory` (no DuckDB, seconds) and `store::duckdb`.
//!
//! Each case takes a fresh, empty store. What the trait cannot read back (the `_provenance`
//! rows) is read through [`Inspect`], which each store's test module implements.

use chrono::NaiveDateTime;
use polars::prelude::*;
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::fingerprint::data_version;
use crate::model::{CheckpointKey, CheckpointVersion, Lineage, ProvenanceRecord};
use crate::store::{CheckpointStore, JudgedLoad};

/// One `#[test]` per case for the store `$open` makes: an expression giving a fresh, empty
/// store behind a pointer (`Box::new(MemoryStore::new())`, or a guard that also owns the
/// store's temporary directory).
macro_rules! conformance_suite {
    ($open:expr) => {
        conformance_suite!(@cases $open;
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
        );
    };
    (@cases $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let store = $open;
                $crate::store::conformance::$case(&*store);
            }
        )*
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

pub(crate) fn missing_table_has_no_checkpoint<S: CheckpointStore>(store: &S) {
    assert_eq!(store.checkpoint("genes").unwrap(), None);
    assert!(store.load_dataframe("genes").unwrap().is_none());
    assert!(store.load_batches("genes").unwrap().is_none());
    assert_eq!(
        store.batch_progress("genes", "k").unwrap(),
        Vec::<String>::new()
    );
}

pub(crate) fn a_save_is_loaded_with_its_row_and_key<S: CheckpointStore>(store: &S) {
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
pub(crate) fn lineage_is_kept_with_the_key<S: CheckpointStore>(store: &S) {
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

pub(crate) fn checkpoints_and_pending_batches_are_listed<S: CheckpointStore>(store: &S) {
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

pub(crate) fn a_save_replaces_the_previous_checkpoint<S: CheckpointStore>(store: &S) {
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

pub(crate) fn adoption_needs_the_same_checkpoint<S: CheckpointStore>(store: &S) {
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

pub(crate) fn batches_resume_under_their_key_only<S: CheckpointStore>(store: &S) {
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

pub(crate) fn batches_without_columns_record_items_only<S: CheckpointStore>(store: &S) {
    store
        .save_batch("genes", "k", &items(&["a"]), &DataFrame::empty())
        .unwrap();
    assert_eq!(store.batch_progress("genes", "k").unwrap(), items(&["a"]));
    assert!(store.load_batches("genes").unwrap().is_none());
}

pub(crate) fn a_checkpoint_save_removes_its_batches<S: CheckpointStore>(store: &S) {
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

pub(crate) fn provenance_rows_are_appended<S: CheckpointStore>(store: &S) {
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

pub(crate) fn names_follow_the_table_name_rule<S: CheckpointStore>(store: &S) {
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

pub(crate) fn frames_without_columns_are_refused<S: CheckpointStore>(store: &S) {
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
pub(crate) fn lineage_made_during_a_save_is_saved_with_it<S: CheckpointStore>(store: &S) {
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
pub(crate) fn a_judged_load_reads_only_the_judged_checkpoint<S: CheckpointStore>(store: &S) {
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
