//! The commands that write: `rm` and `gc` change the store, `export` writes a Parquet file and
//! its sidecar (from a store opened read-only).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Map, Value, json};
use usher_pipeline::{
    AnyStore, CheckpointStore, Error, ExpiredSnapshots, GcReport, LineageGraph, PROGRESS_MIN_ROWS,
    ProvenanceMetadata, ProvenanceStep, SharedGcReport, save_sidecar, sidecar_path,
};

use crate::Output;
use crate::inspect::{not_found, provenance_history};
use crate::output::pretty;
use crate::terminal::Bars;

/// `rm TABLE... [--with-dependents] [--dry-run]`: deletes checkpoints (tables, keys, batches,
/// partial rows) in one transaction. Refuses, naming them, when other checkpoints were made
/// from the tables, unless `--with-dependents` deletes those too.
pub fn rm(
    store: &AnyStore,
    tables: &[String],
    with_dependents: bool,
    dry_run: bool,
    as_json: bool,
) -> Result<Output, Error> {
    let list = store.list_checkpoints()?;
    let present: BTreeSet<&str> = list.iter().map(|c| c.table_name.as_str()).collect();
    let pending: BTreeSet<String> = store
        .pending_batches()?
        .into_iter()
        .map(|p| p.table)
        .collect();
    for table in tables {
        if !present.contains(table.as_str()) && !pending.contains(table) {
            return Err(not_found(store, table));
        }
    }
    let graph = LineageGraph::new(&list);
    let named: BTreeSet<String> = tables.iter().cloned().collect();
    let dependents: BTreeSet<String> = named
        .iter()
        .flat_map(|t| graph.downstream(t))
        .filter(|t| !named.contains(t) && present.contains(t.as_str()))
        .collect();
    if !dependents.is_empty() && !with_dependents {
        return Err(Error::HasDependents {
            tables: named.into_iter().collect(),
            dependents: dependents.into_iter().collect(),
        });
    }
    let doomed: BTreeSet<String> = named.union(&dependents).cloned().collect();
    if !dry_run {
        let names: Vec<&str> = doomed.iter().map(String::as_str).collect();
        store.delete_checkpoints(&names)?;
    }
    if as_json {
        let value = json!({"deleted": doomed, "dry_run": dry_run});
        return Ok(Output::new(pretty(&value), 0));
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    let names: Vec<String> = doomed.iter().map(|t| format!("`{t}`")).collect();
    Ok(Output::new(format!("{verb}: {}", names.join(", ")), 0))
}

/// `export TABLE --parquet PATH`: the table as Parquet and its provenance sidecar, each written
/// whole or not at all. The sidecar holds the `_provenance` step that made the table as it is
/// (with that run's version and config hash) and the export itself.
pub fn export(
    store: &AnyStore,
    table: &str,
    version: Option<u64>,
    parquet: &Path,
    as_json: bool,
) -> Result<Output, Error> {
    // With a version, the one the history keeps under that number, and the step that saved it.
    let (info, saved_by) = match version {
        None => (
            store
                .checkpoint(table)?
                .ok_or_else(|| not_found(store, table))?,
            None,
        ),
        Some(number) => {
            let kept = store
                .history(table)?
                .into_iter()
                .find(|v| v.version == number)
                .ok_or_else(|| {
                    Error::Format(format!(
                        "{table:?} has no version {number} (`usher-pipeline history {table}` lists them)"
                    ))
                })?;
            let step = kept
                .step
                .as_deref()
                .and_then(|json| serde_json::from_str::<Vec<ProvenanceStep>>(json).ok())
                .and_then(|steps| steps.into_iter().next());
            (kept.checkpoint, step)
        }
    };
    // An old sidecar goes first: a kill between the two files leaves a Parquet file without a
    // sidecar, never one beside a sidecar that describes other data.
    let sidecar_path = sidecar_path(parquet)?;
    match std::fs::remove_file(&sidecar_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Io {
                action: "remove the previous sidecar",
                path: sidecar_path,
                source: e,
            });
        }
        _ => {}
    }
    // A large table takes a while: a spinner on a terminal.
    let rows = usize::try_from(info.row_count.unwrap_or(0)).unwrap_or(0);
    let spinner = (rows >= PROGRESS_MIN_ROWS)
        .then(|| Bars::new().spinner(format!("exporting {table} ({rows} rows)")));
    let exported = match version {
        None => store.export_parquet(table, parquet),
        Some(number) => store.export_version_parquet(table, number, parquet),
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    exported?;
    // The step that made the table as it is: the last that saved it (not the hits since); for
    // a version, the step it was saved with, found in its run's row.
    let mut made: Option<(ProvenanceStep, String, String)> = None;
    for (record, run_steps) in provenance_history(store)? {
        for step in run_steps {
            let details = step.details.as_ref();
            let text = |k: &str| details.and_then(|d| d.get(k)).and_then(Value::as_str);
            let saved = matches!(
                text("outcome"),
                Some("miss" | "stale" | "force" | "adopted")
            );
            let this = match &saved_by {
                Some(saved_by) => *saved_by == step,
                None => text("table") == Some(table) && saved,
            };
            if this {
                made = Some((step, record.version.clone(), record.config_hash.clone()));
            }
        }
    }
    let (mut steps, made_by) = match made {
        Some((step, version, hash)) => (vec![step], Some((version, hash))),
        None => (Vec::new(), None),
    };
    let now = chrono::Utc::now().fixed_offset();
    let mut details = Map::new();
    details.insert("table".into(), table.into());
    details.insert("rows".into(), info.row_count.into());
    details.insert("parquet".into(), parquet.to_string_lossy().as_ref().into());
    if let Some(number) = version {
        details.insert("table_version".into(), number.into());
    }
    if let Some(version) = info.lineage.data_version {
        details.insert("data_version".into(), version.to_hex().into());
    }
    steps.push(ProvenanceStep {
        name: "export".into(),
        step_name: "export".into(),
        timestamp: now,
        details: Some(details),
    });
    // What made the table, as recorded; nothing is claimed for a table without a recorded
    // save (written by the Python pipeline or by hand). The store keeps no data-source
    // versions: the sidecar has the run's config hash, which names them.
    let (pipeline_version, config_hash) =
        made_by.unwrap_or_else(|| (env!("CARGO_PKG_VERSION").to_owned(), String::new()));
    let data_source_versions = Map::new();
    let metadata = ProvenanceMetadata {
        pipeline_version,
        data_source_versions,
        config_hash,
        created_at: now,
        processing_steps: steps,
    };
    let sidecar = save_sidecar(&metadata, parquet)?;
    if as_json {
        let value = json!({
            "table": table,
            "version": version,
            "rows": info.row_count,
            "parquet": parquet.to_string_lossy(),
            "sidecar": sidecar.to_string_lossy(),
        });
        return Ok(Output::new(pretty(&value), 0));
    }
    Ok(Output::new(
        format!(
            "wrote {} ({} rows) and {}",
            parquet.display(),
            info.row_count.unwrap_or_default(),
            sidecar.display()
        ),
        0,
    ))
}

/// `restore TABLE --version N`: makes a kept version of the table current again, as a call
/// would; refused when its inputs changed since or it expired (which a call would recompute
/// instead), unless `force`. Keeps every other version.
pub fn restore(
    store: &AnyStore,
    table: &str,
    version: u64,
    force: bool,
    as_json: bool,
) -> Result<Output, Error> {
    let versions = store.history(table)?;
    let Some(chosen) = versions.iter().find(|v| v.version == version) else {
        return Err(Error::Format(format!(
            "{table:?} has no version {version} (`usher-pipeline history {table}` lists them)"
        )));
    };
    if chosen.current {
        return Err(Error::Format(format!(
            "version {version} of {table:?} is the current one already"
        )));
    }
    let stale = usher_pipeline::version_staleness(store, chosen, chrono::Utc::now().naive_utc())?;
    if !stale.is_empty() && !force {
        let why: Vec<String> = stale.iter().map(ToString::to_string).collect();
        return Err(Error::Format(format!(
            "not restoring version {version} of {table:?}: {}; a call would compute it \
             instead (--force restores it all the same)",
            why.join("; ")
        )));
    }
    // Every version stays: the replaced one joins the history.
    let keep = versions.len().max(1) + 1;
    let Some(restored) = store.restore_version(chosen, keep)? else {
        return Err(Error::Format(format!(
            "version {version} of {table:?} changed while it was being restored: look again"
        )));
    };
    if as_json {
        let value = json!({
            "table": table,
            "restored": version,
            "rows": restored.row_count,
            "forced": !stale.is_empty(),
        });
        return Ok(Output::new(pretty(&value), 0));
    }
    Ok(Output::new(
        format!(
            "restored version {version} of {table} ({} rows){}",
            restored.row_count.unwrap_or_default(),
            if stale.is_empty() {
                ""
            } else {
                ", forced past its changed inputs"
            }
        ),
        0,
    ))
}

/// `gc`: removes what interrupted or superseded work left behind, and reports the space;
/// with `expire` on a shared store, first expires the lake's snapshots older than that.
pub fn gc(
    store: &AnyStore,
    keep: Option<usize>,
    expire: Option<chrono::Duration>,
    as_json: bool,
) -> Result<Output, Error> {
    let pruned = match keep {
        Some(keep) => store.prune_history(keep)?,
        None => 0,
    };
    let output = gc_store(store, expire, as_json)?;
    if keep.is_none() {
        return Ok(output);
    }
    if as_json {
        let mut value: Value = serde_json::from_str(&output.text)
            .map_err(|e| Error::Format(format!("gc's own report: {e}")))?;
        value["versions_dropped"] = json!(pruned);
        return Ok(Output::new(pretty(&value), output.code));
    }
    Ok(Output::new(
        format!(
            "dropped {pruned} earlier versions beyond {} per table\n{}",
            keep.unwrap_or_default(),
            output.text
        ),
        output.code,
    ))
}

/// The store's own garbage collection, after an expiry of the shared store's snapshots.
fn gc_store(
    store: &AnyStore,
    expire: Option<chrono::Duration>,
    as_json: bool,
) -> Result<Output, Error> {
    match (store.as_file(), store.as_shared(), expire) {
        (Some(_), _, Some(_)) => Err(Error::Format(
            "--expire-older-than: the DuckDB file store keeps no earlier versions to expire"
                .to_owned(),
        )),
        (Some(file), _, None) => gc_file(&file.gc()?, as_json),
        (None, Some(shared), expire) => {
            let expired = match expire {
                Some(age) => Some(shared.expire_snapshots(chrono::Utc::now() - age)?),
                None => None,
            };
            gc_shared(&shared.gc()?, expired.as_ref(), as_json)
        }
        (None, None, _) => Err(Error::Format(format!(
            "gc does not know the store {}",
            store.name()
        ))),
    }
}

/// An age on the command line: a whole number and a unit, `s`, `m`, `h`, `d` or `w`.
pub fn parse_age(text: &str) -> Result<chrono::Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: write 30d, 12h, 90m, 45s or 2w"))?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use s, m, h, d or w"
            ));
        }
    };
    number
        .checked_mul(seconds_per)
        .and_then(chrono::Duration::try_seconds)
        .ok_or_else(|| format!("{text:?} is too long an age"))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn gc_file(report: &GcReport, as_json: bool) -> Result<Output, Error> {
    if as_json {
        let value = json!({
            "key_rows": report.key_rows,
            "total_rows": report.total_rows,
            "partial_tables": report.partial_tables,
            "bytes_before": report.bytes_before,
            "bytes_after": report.bytes_after,
        });
        return Ok(Output::new(pretty(&value), 0));
    }
    Ok(Output::new(
        format!(
            "removed {} unused key rows, {} item counts of loops without batches, {} partial tables{}\n\
             store file {:.1} MiB -> {:.1} MiB",
            report.key_rows,
            report.total_rows,
            report.partial_tables.len(),
            listed(&report.partial_tables),
            mb(report.bytes_before),
            mb(report.bytes_after),
        ),
        0,
    ))
}

fn gc_shared(
    report: &SharedGcReport,
    expired: Option<&ExpiredSnapshots>,
    as_json: bool,
) -> Result<Output, Error> {
    if as_json {
        let mut value = json!({
            "files_removed": report.files_removed,
            "bytes_removed": report.bytes_removed,
            "key_rows": report.orphaned_keys,
            "tables_busy": report.tables_busy,
        });
        if let Some(expired) = expired {
            value["snapshots_expired"] = json!(expired.snapshots);
            value["files_unread"] = json!(expired.files);
        }
        return Ok(Output::new(pretty(&value), 0));
    }
    let expired = match expired {
        Some(expired) => format!(
            "expired {} lake snapshots, leaving {} files no snapshot reads\n",
            expired.snapshots, expired.files
        ),
        None => String::new(),
    };
    Ok(Output::new(
        format!(
            "{expired}removed {} data files no checkpoint names ({:.1} MiB) and {} unused key rows\n\
             skipped {} tables being computed now{}",
            report.files_removed,
            mb(report.bytes_removed),
            report.orphaned_keys,
            report.tables_busy.len(),
            listed(&report.tables_busy),
        ),
        0,
    ))
}

/// ` (a, b)` after a count, or nothing for none.
fn listed(tables: &[String]) -> String {
    if tables.is_empty() {
        String::new()
    } else {
        format!(" ({})", tables.join(", "))
    }
}
