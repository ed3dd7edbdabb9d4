//! `MemoryStore`: checkpoints held in memory, for tests of pipeline logic and for dry runs.
//! Nothing survives the process.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::NaiveDateTime;
use polars::prelude::DataFrame;

use crate::error::Result;
use crate::model::{CheckpointInfo, CheckpointKey, HistoryVersion, Lineage, ProvenanceRecord};
use crate::names::{validate_table_name, validate_writable_table_name};
use crate::store::time::{now_local, now_utc, to_micros};
use crate::store::{CheckpointStore, JudgedLoad, PendingBatches, newest_first, validate_columns};

/// A [`CheckpointStore`] in memory, with the same rules as the DuckDB store (names, keys,
/// unkeyed checkpoints). Nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tables: BTreeMap<String, Entry>,
    provenance: Vec<ProvenanceRecord>,
    /// Per table: the key, the finished items, the kept rows.
    batches: BTreeMap<String, (String, Vec<String>, Option<DataFrame>)>,
    /// Per table: the key and item count of its resumable loop.
    totals: BTreeMap<String, (String, usize)>,
    /// Per table: its earlier keyed versions, oldest first, each with when it was replaced.
    history: BTreeMap<String, Vec<(Entry, NaiveDateTime)>>,
}

#[derive(Debug, Clone)]
struct Entry {
    frame: DataFrame,
    created_at: NaiveDateTime,
    description: String,
    key: Option<CheckpointKey>,
    lineage: Lineage,
    /// Its number among the table's keyed saves, and the provenance step that made it.
    version: Option<u64>,
    step: Option<String>,
}

impl Entry {
    /// The checkpoint of `table` this entry is.
    fn info(&self, table: &str) -> CheckpointInfo {
        CheckpointInfo {
            table_name: table.to_owned(),
            created_at: Some(self.created_at),
            row_count: i64::try_from(self.frame.height()).ok(),
            description: Some(self.description.clone()),
            key: self.key.clone(),
            lineage: self.lineage.clone(),
        }
    }

    /// This entry as a version of `table` in its history.
    fn version_of(&self, table: &str, replaced_at: Option<NaiveDateTime>) -> HistoryVersion {
        HistoryVersion {
            version: self.version.unwrap_or_default(),
            current: replaced_at.is_none(),
            checkpoint: self.info(table),
            replaced_at,
            step: self.step.clone(),
            bytes: None,
        }
    }
}

impl Inner {
    /// The number the next keyed save of `table` gets.
    fn next_version(&self, table: &str) -> u64 {
        let kept = self
            .history
            .get(table)
            .into_iter()
            .flatten()
            .filter_map(|(e, _)| e.version);
        let current = self.tables.get(table).and_then(|e| e.version);
        kept.chain(current).max().unwrap_or(0) + 1
    }

    /// Moves the current keyed checkpoint of `table` into its history.
    fn keep_current(&mut self, table: &str) {
        if self.tables.get(table).is_none_or(|e| e.key.is_none()) {
            return;
        }
        let Some(mut entry) = self.tables.remove(table) else {
            return;
        };
        if entry.version.is_none() {
            entry.version = Some(self.next_version(table));
        }
        self.history
            .entry(table.to_owned())
            .or_default()
            .push((entry, to_micros(now_utc())));
    }

    /// Keeps the `keep - 1` newest earlier versions of `table`.
    fn prune(&mut self, table: &str, keep: usize) {
        if let Some(kept) = self.history.get_mut(table) {
            kept.sort_by_key(|(e, _)| e.version);
            let excess = kept.len().saturating_sub(keep.saturating_sub(1));
            kept.drain(..excess);
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The names of the tables held, sorted.
    pub fn tables(&self) -> Vec<String> {
        self.lock().tables.keys().cloned().collect()
    }

    /// The key `table` was saved with, if any.
    pub fn key(&self, table: &str) -> Option<CheckpointKey> {
        self.lock().tables.get(table).and_then(|e| e.key.clone())
    }
}

impl CheckpointStore for MemoryStore {
    /// Stamped in local time, as the Python pipeline's and hand-written saves are.
    fn save_dataframe(&self, table: &str, frame: &DataFrame, description: &str) -> Result<()> {
        validate_writable_table_name(table)?;
        validate_columns(table, frame)?;
        let mut inner = self.lock();
        inner.batches.remove(table);
        inner.totals.remove(table);
        inner.tables.insert(
            table.to_owned(),
            Entry {
                frame: frame.clone(),
                created_at: to_micros(now_local()),
                description: description.to_owned(),
                key: None,
                lineage: Lineage::default(),
                version: None,
                step: None,
            },
        );
        Ok(())
    }

    fn load_dataframe(&self, table: &str) -> Result<Option<DataFrame>> {
        validate_table_name(table)?;
        Ok(self.lock().tables.get(table).map(|e| e.frame.clone()))
    }

    fn delete_checkpoints(&self, tables: &[&str]) -> Result<()> {
        for table in tables {
            validate_writable_table_name(table)?;
        }
        let mut inner = self.lock();
        for table in tables {
            inner.tables.remove(*table);
            inner.batches.remove(*table);
            inner.totals.remove(*table);
            inner.history.remove(*table);
        }
        Ok(())
    }

    /// Memory holds no Parquet writer (polars is built without one, DuckDB may be absent):
    /// [`Error::Unsupported`](crate::Error::Unsupported).
    fn export_parquet(&self, table: &str, output_path: &Path) -> Result<()> {
        let _ = (table, output_path);
        Err(crate::Error::Unsupported {
            operation: "export_parquet",
            store: "MemoryStore",
        })
    }

    fn provenance_rows(&self) -> Result<Vec<ProvenanceRecord>> {
        Ok(self.lock().provenance.clone())
    }

    fn checkpoint(&self, table: &str) -> Result<Option<CheckpointInfo>> {
        validate_table_name(table)?;
        Ok(self.lock().tables.get(table).map(|e| e.info(table)))
    }

    /// The check and the read under one lock.
    fn load_judged(&self, judged: &CheckpointInfo) -> Result<JudgedLoad> {
        let table = judged.table_name.as_str();
        validate_table_name(table)?;
        Ok(match self.lock().tables.get(table) {
            Some(entry) if entry.info(table).same_checkpoint(judged) => {
                JudgedLoad::Loaded(entry.frame.clone())
            }
            _ => JudgedLoad::Replaced,
        })
    }

    fn save_checkpoint_with(
        &self,
        table: &str,
        frame: &DataFrame,
        description: &str,
        key: &CheckpointKey,
        saved_at: NaiveDateTime,
        metadata: &mut dyn FnMut() -> Result<(Lineage, ProvenanceRecord)>,
    ) -> Result<()> {
        self.save_checkpoint_keeping(table, frame, description, key, saved_at, 1, metadata)
    }

    fn save_checkpoint_keeping(
        &self,
        table: &str,
        frame: &DataFrame,
        description: &str,
        key: &CheckpointKey,
        saved_at: NaiveDateTime,
        keep: usize,
        metadata: &mut dyn FnMut() -> Result<(Lineage, ProvenanceRecord)>,
    ) -> Result<()> {
        validate_writable_table_name(table)?;
        validate_columns(table, frame)?;
        let (lineage, provenance) = metadata()?;
        let mut inner = self.lock();
        inner.batches.remove(table);
        inner.totals.remove(table);
        if keep > 1 {
            inner.keep_current(table);
        }
        let version = inner.next_version(table);
        inner.prune(table, keep);
        inner.tables.insert(
            table.to_owned(),
            Entry {
                frame: frame.clone(),
                created_at: to_micros(saved_at),
                description: description.to_owned(),
                key: Some(key.clone()),
                lineage,
                version: Some(version),
                step: Some(provenance.steps_json.clone()),
            },
        );
        inner.provenance.push(provenance);
        Ok(())
    }

    fn history(&self, table: &str) -> Result<Vec<HistoryVersion>> {
        validate_table_name(table)?;
        let inner = self.lock();
        let current = inner
            .tables
            .get(table)
            .filter(|e| e.key.is_some() && e.version.is_some())
            .map(|e| e.version_of(table, None));
        let mut versions: Vec<HistoryVersion> = current
            .into_iter()
            .chain(
                inner
                    .history
                    .get(table)
                    .into_iter()
                    .flatten()
                    .map(|(e, replaced)| e.version_of(table, Some(*replaced))),
            )
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.version));
        Ok(versions)
    }

    fn restore_version(
        &self,
        judged: &HistoryVersion,
        keep: usize,
    ) -> Result<Option<CheckpointInfo>> {
        let table = judged.checkpoint.table_name.as_str();
        validate_writable_table_name(table)?;
        let mut inner = self.lock();
        let kept = inner.history.get(table).and_then(|kept| {
            kept.iter().position(|(e, _)| {
                e.version == Some(judged.version)
                    && Some(e.created_at) == judged.checkpoint.created_at
            })
        });
        let (Some(at), false) = (kept, judged.current) else {
            return Ok(None);
        };
        let (entry, _) = inner
            .history
            .get_mut(table)
            .map(|kept| kept.remove(at))
            .expect("found above");
        inner.keep_current(table);
        inner.batches.remove(table);
        inner.totals.remove(table);
        let info = entry.info(table);
        inner.tables.insert(table.to_owned(), entry);
        inner.prune(table, keep);
        Ok(Some(info))
    }

    fn prune_history(&self, keep: usize) -> Result<usize> {
        let mut inner = self.lock();
        let before: usize = inner.history.values().map(Vec::len).sum();
        let tables: Vec<String> = inner.history.keys().cloned().collect();
        for table in tables {
            inner.prune(&table, keep.max(1));
        }
        Ok(before - inner.history.values().map(Vec::len).sum::<usize>())
    }

    fn load_version(&self, table: &str, version: u64) -> Result<Option<DataFrame>> {
        validate_table_name(table)?;
        let inner = self.lock();
        let current = inner
            .tables
            .get(table)
            .filter(|e| e.version == Some(version));
        let kept = inner
            .history
            .get(table)
            .into_iter()
            .flatten()
            .map(|(e, _)| e)
            .find(|e| e.version == Some(version));
        Ok(current.or(kept).map(|e| e.frame.clone()))
    }

    fn adopt_checkpoint(
        &self,
        table: &str,
        created_at: Option<NaiveDateTime>,
        saved_at: Option<NaiveDateTime>,
        key: &CheckpointKey,
        lineage: &Lineage,
    ) -> Result<bool> {
        validate_writable_table_name(table)?;
        let mut inner = self.lock();
        match inner.tables.get_mut(table) {
            Some(entry) if Some(entry.created_at) == created_at => {
                if let Some(saved_at) = saved_at {
                    entry.created_at = to_micros(saved_at);
                }
                entry.key = Some(key.clone());
                entry.lineage = lineage.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn batch_progress(&self, table: &str, key: &str) -> Result<Vec<String>> {
        validate_writable_table_name(table)?;
        let mut inner = self.lock();
        match inner.batches.get(table) {
            Some((k, items, _)) if k == key => Ok(items.clone()),
            Some(_) => {
                inner.batches.remove(table);
                inner.totals.retain(|t, (k, _)| t != table || k == key);
                Ok(Vec::new())
            }
            None => Ok(Vec::new()),
        }
    }

    fn discard_batches(&self, table: &str) -> Result<()> {
        validate_writable_table_name(table)?;
        let mut inner = self.lock();
        inner.batches.remove(table);
        inner.totals.remove(table);
        Ok(())
    }

    fn record_batch_total(&self, table: &str, key: &str, total: usize) -> Result<()> {
        validate_writable_table_name(table)?;
        self.lock()
            .totals
            .insert(table.to_owned(), (key.to_owned(), total));
        Ok(())
    }

    fn save_batch(
        &self,
        table: &str,
        key: &str,
        items: &[String],
        frame: &DataFrame,
    ) -> Result<()> {
        validate_writable_table_name(table)?;
        if frame.width() > 0 {
            validate_columns(table, frame)?;
        }
        let mut inner = self.lock();
        let entry = inner
            .batches
            .entry(table.to_owned())
            .or_insert_with(|| (key.to_owned(), Vec::new(), None));
        if entry.0 != key {
            *entry = (key.to_owned(), Vec::new(), None);
        }
        if frame.width() > 0 {
            entry.2 = Some(match entry.2.take() {
                Some(mut rows) => {
                    rows.vstack_mut(frame)?;
                    rows
                }
                None => frame.clone(),
            });
        }
        entry.1.extend(items.iter().cloned());
        Ok(())
    }

    fn load_batches(&self, table: &str) -> Result<Option<DataFrame>> {
        validate_writable_table_name(table)?;
        Ok(self
            .lock()
            .batches
            .get(table)
            .and_then(|(_, _, rows)| rows.clone()))
    }

    fn append_provenance(&self, record: &ProvenanceRecord) -> Result<()> {
        self.lock().provenance.push(record.clone());
        Ok(())
    }

    fn list_checkpoints(&self) -> Result<Vec<CheckpointInfo>> {
        let names = self.tables();
        let mut list = Vec::new();
        for name in names {
            list.extend(self.checkpoint(&name)?);
        }
        newest_first(&mut list);
        Ok(list)
    }

    fn pending_batches(&self) -> Result<Vec<PendingBatches>> {
        let inner = self.lock();
        Ok(inner
            .batches
            .iter()
            .map(|(table, (key, items, _))| PendingBatches {
                table: table.clone(),
                key: key.clone(),
                items: items.len(),
                total: inner
                    .totals
                    .get(table)
                    .filter(|(k, _)| k == key)
                    .map(|(_, total)| *total),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::conformance_suite!(Box::new(MemoryStore::new()));
    crate::history_suite!(Box::new(MemoryStore::new()));
}
