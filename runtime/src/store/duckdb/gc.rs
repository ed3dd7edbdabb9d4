//! Collecting the garbage interrupted and superseded work leaves in a DuckDB store file
//! (`usher-pipeline gc`).

use super::PipelineStore;
use super::ffi::{Connection, DuckError};
use crate::error::Result;
use crate::store::sql::quote_ident;

/// What [`PipelineStore::gc`] removed, and the file's size before and after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// `_checkpoint_keys` rows no checkpoint uses any more (the table was deleted, or re-saved
    /// without a key by the Python pipeline or by hand).
    pub key_rows: usize,
    /// `_partial_<table>` tables without any finished batch recorded.
    pub partial_tables: Vec<String>,
    /// `_checkpoint_batch_totals` rows of loops without any finished batch.
    pub total_rows: usize,
    /// The database file's size before, in bytes.
    pub bytes_before: u64,
    /// The database file's size after DuckDB's `CHECKPOINT`, in bytes.
    pub bytes_after: u64,
}

impl PipelineStore {
    /// Removes what interrupted or superseded work left behind (see [`GcReport`]) in one
    /// transaction, then runs DuckDB's `CHECKPOINT` so freed blocks can be reused or returned.
    /// Finished batches are always kept, whatever their key: a call with that key resumes
    /// from them (also the recomputation of a stale checkpoint, under the same key), and the
    /// store cannot know which keys will be called again. `delete_checkpoints` drops them.
    pub fn gc(&self) -> Result<GcReport> {
        let context = "collecting garbage";
        self.check_writable(context)?;
        let size = || std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        let bytes_before = size();
        let mut report = self
            .writing(|conn| conn.transaction(|| collect(conn)))
            .map_err(self.duckdb_error(context))?;
        self.writing(|conn| conn.execute("CHECKPOINT"))
            .map_err(self.duckdb_error("checkpointing after garbage collection"))?;
        report.bytes_before = bytes_before;
        report.bytes_after = size();
        Ok(report)
    }
}

/// The garbage collection's deletes, inside the caller's transaction.
fn collect(conn: &Connection) -> std::result::Result<GcReport, DuckError> {
    let count = |sql: &str| conn.query_i64_cached(sql, &[]).map(|n| n.max(0) as usize);
    const UNUSED_KEYS: &str = concat!(
        "FROM _checkpoint_keys k WHERE NOT EXISTS (SELECT 1 FROM _checkpoints c WHERE ",
        key_of_checkpoint!(),
        ")"
    );
    let key_rows = count(&format!("SELECT count(*) {UNUSED_KEYS}"))?;
    conn.execute(&format!("DELETE {UNUSED_KEYS}"))?;
    let orphans = conn.query_text_rows_cached(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() \
         AND schema_name = current_schema() AND starts_with(table_name, '_partial_') \
         AND substr(table_name, 10) NOT IN (SELECT DISTINCT table_name FROM _checkpoint_batches) \
         ORDER BY table_name",
        &[],
    )?;
    // Item counts of loops without any finished batch (their next run records them again).
    const UNUSED_TOTALS: &str = "FROM _checkpoint_batch_totals t WHERE NOT EXISTS \
         (SELECT 1 FROM _checkpoint_batches b WHERE b.table_name = t.table_name AND b.key = t.key)";
    let total_rows = count(&format!("SELECT count(*) {UNUSED_TOTALS}"))?;
    conn.execute(&format!("DELETE {UNUSED_TOTALS}"))?;
    let partial_tables: Vec<String> = orphans
        .into_iter()
        .filter_map(|mut row| row.pop().flatten())
        .collect();
    for table in &partial_tables {
        conn.execute(&format!("DROP TABLE {}", quote_ident(table)))?;
    }
    Ok(GcReport {
        key_rows,
        partial_tables,
        total_rows,
        ..GcReport::default()
    })
}

#[cfg(test)]
mod tests {
    use polars::prelude::*;

    use super::super::tests::temp_store;
    use crate::model::{CheckpointKey, Lineage};
    use crate::store::CheckpointStore;

    fn key(name: &str) -> CheckpointKey {
        CheckpointKey::new(name, "version:1", Default::default(), Default::default()).unwrap()
    }

    fn record() -> crate::model::ProvenanceRecord {
        crate::model::ProvenanceRecord {
            version: "0.2.0".into(),
            config_hash: "abc".into(),
            created_at: chrono::NaiveDateTime::parse_from_str(
                "2026-11-25 10:00:00.123456",
                "%Y-%m-%d %H:%M:%S%.f",
            )
            .unwrap(),
            steps_json: "[]".into(),
        }
    }

    fn frame() -> DataFrame {
        df!("gene_symbol" => ["USH2A", "MYO7A", "CDH23"]).unwrap()
    }

    #[test]
    fn gc_removes_leftovers_and_keeps_pending_work() {
        let store = temp_store();
        let save = |table: &str, k: &CheckpointKey| {
            store
                .save_checkpoint(table, &frame(), "", k, &Lineage::default(), &record())
                .unwrap();
        };
        // A key row orphaned by a re-save of the Python pipeline (which rewrites `_checkpoints`
        // and knows nothing of `_checkpoint_keys`).
        save("resaved", &key("a"));
        store
            .with_connection(
                |c| {
                    c.execute(
                        "UPDATE _checkpoints SET created_at = created_at + INTERVAL 1 SECOND \
                         WHERE table_name = 'resaved'",
                    )
                },
                "re-saving as Python does",
            )
            .unwrap();
        // Batches of a recomputation under the checkpoint's own key (a stale checkpoint being
        // recomputed when the run was killed): kept, the next call resumes from them.
        save("done", &key("d"));
        store
            .save_batch("done", &key("d").key, &["\"x\"".into()], &frame())
            .unwrap();
        // A loop that recorded its item count but finished no batch.
        store.record_batch_total("started", "k0", 7).unwrap();
        // A partial table without batch rows.
        store
            .with_connection(
                |c| c.execute("CREATE TABLE _partial_orphan AS SELECT 1 AS a"),
                "leaving a partial table",
            )
            .unwrap();
        // Pending work of an interrupted call: kept.
        store
            .save_batch("pending", "k1", &["\"x\"".into()], &frame())
            .unwrap();
        let report = store.gc().unwrap();
        assert_eq!(report.key_rows, 1);
        assert_eq!(report.total_rows, 1);
        assert_eq!(report.partial_tables, ["_partial_orphan"]);
        assert!(report.bytes_before > 0 && report.bytes_after > 0);
        assert_eq!(store.pending_batches().unwrap().len(), 2);
        assert_eq!(
            store.batch_progress("done", &key("d").key).unwrap(),
            ["\"x\""]
        );
        assert_eq!(store.batch_progress("pending", "k1").unwrap(), ["\"x\""]);
        assert!(store.load_batches("pending").unwrap().is_some());
        assert!(store.checkpoint("done").unwrap().unwrap().key.is_some());
        // Nothing left to collect.
        let again = store.gc().unwrap();
        assert_eq!(
            (again.key_rows, again.total_rows, again.partial_tables.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn head_and_provenance_read_what_is_there() {
        let store = temp_store();
        store.save_dataframe("genes", &frame(), "").unwrap();
        assert_eq!(store.head("genes", 2).unwrap().unwrap().height(), 2);
        assert!(store.head("missing", 2).unwrap().is_none());
        let mut first = record();
        first.steps_json = "[1]".into();
        let mut second = record();
        second.steps_json = "[2]".into();
        second.created_at = first.created_at + chrono::TimeDelta::seconds(1);
        store.append_provenance(&second).unwrap();
        store.append_provenance(&first).unwrap();
        let rows = store.provenance_rows().unwrap();
        assert_eq!(rows, [first, second], "oldest first");
    }
}
