//! The read-only looks at a store: `status`, `show`, `lineage`, `provenance`, `checkpoints`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use usher_pipeline::CheckpointStore;
use usher_pipeline::{
    AnyStore, CheckpointInfo, CheckpointState, CheckpointStatus, Error, HistoryVersion,
    LineageGraph, ProvenanceRecord, ProvenanceStep, StaleReason, status as store_status,
};

use crate::Output;
use crate::output::{age, frame_json, iso, pretty, table, time};

/// The exit code of `status` when something would be recomputed (stale, unkeyed or partial).
pub const NOT_ALL_VALID: u8 = 3;

fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// The state's word, as text and JSON print it.
fn state_word(state: &CheckpointState) -> &'static str {
    match state {
        CheckpointState::Valid => "valid",
        CheckpointState::Stale(_) => "stale",
        CheckpointState::Unkeyed => "unkeyed",
        CheckpointState::Partial => "partial",
    }
}

/// Why, in words: the stale reasons, or what an unkeyed or partial checkpoint means.
fn reasons(status: &CheckpointStatus) -> Vec<String> {
    let mut why: Vec<String> = match &status.state {
        CheckpointState::Valid => Vec::new(),
        CheckpointState::Stale(reasons) => reasons.iter().map(StaleReason::to_string).collect(),
        CheckpointState::Unkeyed => vec![
            "saved without a key (by the Python pipeline or by hand): USHER_UNKEYED=adopt keeps it, \
             =recompute replaces it"
                .to_owned(),
        ],
        CheckpointState::Partial => Vec::new(),
    };
    if let Some(version) = status.restore {
        why.push(format!("would restore version {version}"));
    }
    if let Some(pending) = &status.pending {
        let of = pending
            .total
            .map(|t| format!(" of {t}"))
            .unwrap_or_default();
        why.push(format!(
            "{}{of} items finished in batches of an interrupted call",
            pending.items
        ));
    }
    why
}

/// `status`: every checkpoint with its state and why; exit code [`NOT_ALL_VALID`] when one
/// would be recomputed.
pub fn status(store: &AnyStore, as_json: bool) -> Result<Output, Error> {
    let now = now();
    let list = store_status(store, now)?;
    let all_valid = list.iter().all(CheckpointStatus::is_valid);
    let code = if all_valid { 0 } else { NOT_ALL_VALID };
    if as_json {
        let rows: Vec<Value> = list
            .iter()
            .map(|s| {
                let info = s.checkpoint.as_ref();
                json!({
                    "table": s.table,
                    "state": state_word(&s.state),
                    "reasons": reasons(s),
                    "rows": info.and_then(|i| i.row_count),
                    "created_at": iso(info.and_then(|i| i.created_at)),
                    "pending_items": s.pending.as_ref().map(|p| p.items),
                    "pending_total": s.pending.as_ref().and_then(|p| p.total),
                    "restore": s.restore,
                })
            })
            .collect();
        let value = json!({
            "store": store.name(),
            "all_valid": all_valid,
            "checkpoints": rows,
        });
        return Ok(Output::new(pretty(&value), code));
    }
    if list.is_empty() {
        return Ok(Output::new("no checkpoints".to_owned(), 0));
    }
    let rows = list
        .iter()
        .map(|s| {
            let info = s.checkpoint.as_ref();
            vec![
                s.table.clone(),
                state_word(&s.state).to_owned(),
                info.and_then(|i| i.row_count)
                    .map_or_else(String::new, |n| n.to_string()),
                age(info.and_then(|i| i.saved_utc()), now),
                reasons(s).join("; "),
            ]
        })
        .collect();
    // "4 checkpoints: 3 valid, 1 stale" (the states that occur, in a fixed order).
    let counts: Vec<String> = ["valid", "stale", "unkeyed", "partial"]
        .iter()
        .filter_map(|word| {
            let n = list
                .iter()
                .filter(|s| state_word(&s.state) == *word)
                .count();
            (n > 0).then(|| format!("{n} {word}"))
        })
        .collect();
    let summary = format!("{} checkpoints: {}", list.len(), counts.join(", "));
    let text = table(&["table", "state", "rows", "age", "why"], rows, &[2, 3]);
    Ok(Output::new(format!("{text}\n\n{summary}"), code))
}

/// `history TABLE`: every version of the table the store keeps, newest first, with its key
/// arguments, data version, inputs, age, rows and size where known.
pub fn history(store: &AnyStore, name: &str, as_json: bool) -> Result<Output, Error> {
    let now = now();
    let versions = store.history(name)?;
    if versions.is_empty() && store.checkpoint(name)?.is_none() {
        return Err(not_found(store, name));
    }
    let arguments = |v: &HistoryVersion| {
        v.checkpoint
            .key
            .as_ref()
            .map(|k| Value::Object(k.arguments.clone()))
            .unwrap_or(Value::Null)
    };
    let data = |v: &HistoryVersion| v.checkpoint.lineage.data_version.map(|d| d.to_hex());
    let inputs = |v: &HistoryVersion| -> Vec<String> {
        v.checkpoint.lineage.inputs.keys().cloned().collect()
    };
    if as_json {
        let rows: Vec<Value> = versions
            .iter()
            .map(|v| {
                json!({
                    "version": v.version,
                    "current": v.current,
                    "arguments": arguments(v),
                    "data_version": data(v),
                    "inputs": Value::Object(v.checkpoint.lineage.inputs_map()),
                    "created_at": iso(v.checkpoint.created_at),
                    "replaced_at": iso(v.replaced_at),
                    "rows": v.checkpoint.row_count,
                    "bytes": v.bytes,
                })
            })
            .collect();
        return Ok(Output::new(
            pretty(&json!({"table": name, "versions": rows})),
            0,
        ));
    }
    if versions.is_empty() {
        return Ok(Output::new(
            format!("{name}: no versions kept (saved without a key, or before history)"),
            0,
        ));
    }
    let rows = versions
        .iter()
        .map(|v| {
            vec![
                format!("{}{}", v.version, if v.current { " (current)" } else { "" }),
                arguments(v).to_string(),
                data(v).map(|d| d[..12].to_owned()).unwrap_or_default(),
                inputs(v).join(", "),
                age(v.checkpoint.saved_utc(), now),
                v.checkpoint
                    .row_count
                    .map_or_else(String::new, |n| n.to_string()),
                v.bytes.map_or_else(String::new, |b| b.to_string()),
            ]
        })
        .collect();
    Ok(Output::new(
        table(
            &[
                "version",
                "arguments",
                "data",
                "inputs",
                "age",
                "rows",
                "bytes",
            ],
            rows,
            &[4, 5, 6],
        ),
        0,
    ))
}

/// Whether `step` is about `table` (its `details.table`); every step when `table` is `None`.
fn touches(step: &ProvenanceStep, table: Option<&str>) -> bool {
    table.is_none_or(|t| {
        step.details
            .as_ref()
            .and_then(|d| d.get("table"))
            .and_then(Value::as_str)
            == Some(t)
    })
}

/// The steps of `_provenance` rows that touched `table` (all steps for `None`), with their
/// row, oldest first, each once: a checkpoint's save commits its step in a row of its own
/// (so a kill loses none), and the run's row at the end repeats it.
fn steps_of<'a>(
    records: &'a [(ProvenanceRecord, Vec<ProvenanceStep>)],
    table: Option<&'a str>,
) -> impl Iterator<Item = (&'a ProvenanceRecord, &'a ProvenanceStep)> {
    let mut seen = std::collections::HashSet::new();
    records
        .iter()
        .flat_map(move |(record, steps)| {
            steps
                .iter()
                .filter(move |step| touches(step, table))
                .map(move |step| (record, step))
        })
        .filter(move |(_, step)| first_time(&mut seen, step))
}

/// Whether `step` is seen here for the first time (the rule of `steps_of`).
fn first_time(seen: &mut std::collections::HashSet<String>, step: &ProvenanceStep) -> bool {
    seen.insert(serde_json::to_string(step).unwrap_or_default())
}

/// The error for a table the store does not have.
pub fn not_found(store: &AnyStore, table: &str) -> Error {
    Error::TableNotFound {
        table: table.to_owned(),
        path: store.name().into(),
    }
}

/// `_provenance` rows with their steps parsed.
pub fn provenance_history(
    store: &AnyStore,
) -> Result<Vec<(ProvenanceRecord, Vec<ProvenanceStep>)>, Error> {
    store
        .provenance_rows()?
        .into_iter()
        .map(|record| {
            let steps: Vec<ProvenanceStep> =
                serde_json::from_str(&record.steps_json).map_err(|e| {
                    Error::Format(format!(
                        "a _provenance row of {} has steps that are not a list of steps: {e}",
                        time(Some(record.created_at))
                    ))
                })?;
            Ok((record, steps))
        })
        .collect()
}

fn detail(step: &ProvenanceStep, key: &str) -> String {
    match step.details.as_ref().and_then(|d| d.get(key)) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `provenance [--table T]`: the runs and steps of `_provenance`.
pub fn provenance(store: &AnyStore, only: Option<&str>, as_json: bool) -> Result<Output, Error> {
    let history = provenance_history(store)?;
    if as_json {
        let mut seen = std::collections::HashSet::new();
        let runs: Vec<Value> = history
            .iter()
            .filter_map(|(record, steps)| {
                // Each step once, as the text shows them (see `steps_of`).
                let steps: Vec<&ProvenanceStep> = steps
                    .iter()
                    .filter(|step| touches(step, only))
                    .filter(|step| first_time(&mut seen, step))
                    .collect();
                (!steps.is_empty() || only.is_none()).then(|| {
                    json!({
                        "version": record.version,
                        "config_hash": record.config_hash,
                        "created_at": iso(Some(record.created_at)),
                        "steps": steps,
                    })
                })
            })
            .collect();
        return Ok(Output::new(pretty(&Value::Array(runs)), 0));
    }
    let rows: Vec<Vec<String>> = steps_of(&history, only)
        .map(|(record, step)| {
            vec![
                step.timestamp.format("%Y-%m-%d %H:%M:%S").to_string(),
                record.version.clone(),
                record.config_hash.chars().take(12).collect(),
                step.name.clone(),
                detail(step, "table"),
                detail(step, "outcome"),
                detail(step, "rows"),
                detail(step, "duration_ms"),
                detail(step, "reason"),
            ]
        })
        .collect();
    if rows.is_empty() {
        return Ok(Output::new("no provenance recorded".to_owned(), 0));
    }
    let header = [
        "time (UTC)",
        "version",
        "config",
        "step",
        "table",
        "outcome",
        "rows",
        "ms",
        "why",
    ];
    Ok(Output::new(table(&header, rows, &[6, 7]), 0))
}

/// `show TABLE`: what made it, what was made from it, its schema and first rows.
pub fn show(
    store: &AnyStore,
    name: &str,
    version: Option<u64>,
    as_json: bool,
) -> Result<Output, Error> {
    if let Some(number) = version {
        return show_version(store, name, number, as_json);
    }
    let list = store.list_checkpoints()?;
    let info = list.iter().find(|c| c.table_name == name);
    let head = store.head(name, 5)?;
    let (Some(info), Some(head)) = (info, head) else {
        return Err(not_found(store, name));
    };
    let graph = LineageGraph::new(&list);
    let dependents: Vec<&str> = graph.dependents(name).collect();
    let state = store_status(store, now())?
        .into_iter()
        .find(|s| s.table == name);
    let history = provenance_history(store)?;
    let steps: Vec<&ProvenanceStep> = steps_of(&history, Some(name)).map(|(_, s)| s).collect();
    if as_json {
        let key = info.key.as_ref().map(|k| {
            json!({"key": k.key, "function": k.function, "code": k.code,
                   "arguments": k.arguments, "config": k.config})
        });
        let inputs: Map<String, Value> = info.lineage.inputs_map();
        let value = json!({
            "table": name,
            "rows": info.row_count,
            "created_at": iso(info.created_at),
            "description": info.description,
            "state": state.as_ref().map(|s| state_word(&s.state)),
            "reasons": state.as_ref().map(reasons).unwrap_or_default(),
            "key": key,
            "data_version": info.lineage.data_version.map(|v| v.to_hex()),
            "max_age_seconds": info.lineage.max_age_seconds,
            "inputs": inputs,
            "dependents": dependents,
            "provenance": steps,
            "head": frame_json(&head),
        });
        return Ok(Output::new(pretty(&value), 0));
    }
    Ok(Output::new(
        show_text(info, state.as_ref(), &dependents, &steps, &head),
        0,
    ))
}

/// `show TABLE --version N`: a version the history keeps: what made it, whether a call with
/// its key would restore it (or why not), the step that saved it, its schema and first rows.
fn show_version(store: &AnyStore, name: &str, number: u64, as_json: bool) -> Result<Output, Error> {
    let kept = store
        .history(name)?
        .into_iter()
        .find(|v| v.version == number)
        .ok_or_else(|| {
            Error::Format(format!(
                "{name:?} has no version {number} (`usher-pipeline history {name}` lists them)"
            ))
        })?;
    let head = store
        .load_version(name, number)?
        .ok_or_else(|| not_found(store, name))?
        .head(Some(5));
    let stale = usher_pipeline::version_staleness(store, &kept, now())?;
    let why: Vec<String> = stale.iter().map(ToString::to_string).collect();
    let steps: Vec<ProvenanceStep> = kept
        .step
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    let info = &kept.checkpoint;
    if as_json {
        let key = info.key.as_ref().map(|k| {
            json!({"key": k.key, "function": k.function, "code": k.code,
                   "arguments": k.arguments, "config": k.config})
        });
        let value = json!({
            "table": name,
            "version": number,
            "current": kept.current,
            "rows": info.row_count,
            "created_at": iso(info.created_at),
            "replaced_at": iso(kept.replaced_at),
            "description": info.description,
            "restorable": stale.is_empty(),
            "reasons": why,
            "key": key,
            "data_version": info.lineage.data_version.map(|v| v.to_hex()),
            "inputs": info.lineage.inputs_map(),
            "provenance": steps,
            "head": frame_json(&head),
        });
        return Ok(Output::new(pretty(&value), 0));
    }
    let state = match (kept.current, why.is_empty()) {
        (true, _) => "the current version".to_owned(),
        (false, true) => "kept: a call with its key restores it".to_owned(),
        (false, false) => format!("kept, not restorable: {}", why.join("; ")),
    };
    let steps: Vec<&ProvenanceStep> = steps.iter().collect();
    let text = show_text(info, None, &[], &steps, &head);
    Ok(Output::new(
        format!("version      {number} ({state})\n{text}"),
        0,
    ))
}

fn show_text(
    info: &CheckpointInfo,
    state: Option<&CheckpointStatus>,
    dependents: &[&str],
    steps: &[&ProvenanceStep],
    head: &usher_pipeline::polars::prelude::DataFrame,
) -> String {
    let mut fields: Vec<(&str, String)> = vec![
        ("table", info.table_name.clone()),
        (
            "rows",
            info.row_count.map_or_else(String::new, |n| n.to_string()),
        ),
        ("created", format!("{} UTC", time(info.saved_utc()))),
        ("description", info.description.clone().unwrap_or_default()),
    ];
    if let Some(state) = state {
        let why = reasons(state);
        let word = state_word(&state.state).to_owned();
        fields.push((
            "state",
            if why.is_empty() {
                word
            } else {
                format!("{word}: {}", why.join("; "))
            },
        ));
    }
    match &info.key {
        Some(key) => {
            fields.push(("function", key.function.clone()));
            fields.push(("code", key.code.clone()));
            fields.push(("arguments", key.arguments_json()));
            if let Some(config) = key.config_json() {
                fields.push(("config", config));
            }
            fields.push(("key", key.key.clone()));
        }
        None => fields.push(("key", "none (saved without #[checkpointed])".to_owned())),
    }
    fields.push((
        "data version",
        info.lineage
            .data_version
            .map_or_else(|| "none".to_owned(), |v| v.to_hex()),
    ));
    if let Some(max_age) = info.lineage.max_age_seconds {
        fields.push(("max_age", format!("{max_age} s")));
    }
    let inputs: Vec<String> = info
        .lineage
        .inputs
        .iter()
        .map(|(t, v)| format!("{t} ({})", v.short()))
        .collect();
    fields.push(("inputs", or_none(inputs.join(", "))));
    fields.push(("dependents", or_none(dependents.join(", "))));
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}"))
        .collect();
    out.push(String::new());
    out.push("columns:".to_owned());
    let columns = head
        .columns()
        .iter()
        .map(|c| vec![c.name().to_string(), c.dtype().to_string()])
        .collect();
    out.push(table(&["name", "dtype"], columns, &[]));
    out.push(String::new());
    out.push("provenance:".to_owned());
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            vec![
                s.timestamp.format("%Y-%m-%d %H:%M:%S").to_string(),
                detail(s, "outcome"),
                detail(s, "rows"),
                detail(s, "reason"),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push("none recorded".to_owned());
    } else {
        out.push(table(&["time (UTC)", "outcome", "rows", "why"], rows, &[2]));
    }
    out.push(String::new());
    out.push(format!("first rows:\n{head}"));
    out.join("\n")
}

fn or_none(text: String) -> String {
    if text.is_empty() {
        "none".to_owned()
    } else {
        text
    }
}

/// `lineage [TABLE] [--dot]`: the graph of checkpoints as a tree (sources first, what was made
/// from each below it), or in Graphviz's DOT language.
pub fn lineage(
    store: &AnyStore,
    table_name: Option<&str>,
    dot: bool,
    as_json: bool,
) -> Result<Output, Error> {
    let list = store.list_checkpoints()?;
    let mut graph = LineageGraph::new(&list);
    if let Some(name) = table_name {
        if !graph.contains(name) {
            return Err(not_found(store, name));
        }
        graph = graph.around(name);
    }
    if dot {
        return Ok(Output::new(graph.to_dot().trim_end().to_owned(), 0));
    }
    if as_json {
        let edges: Vec<Value> = graph
            .tables()
            .flat_map(|t| graph.inputs(t).map(move |i| json!({"from": i, "to": t})))
            .collect();
        let value = json!({"tables": graph.tables().collect::<Vec<_>>(), "edges": edges});
        return Ok(Output::new(pretty(&value), 0));
    }
    let present: BTreeSet<&str> = list.iter().map(|c| c.table_name.as_str()).collect();
    let mut out = Vec::new();
    let mut drawn = BTreeSet::new();
    // Sources first; then any table no source leads to (a cycle of tables made from each
    // other), so every table is drawn.
    let starts: Vec<&str> = graph.sources().chain(graph.tables()).collect();
    for start in starts {
        if !drawn.contains(start) {
            tree(
                &graph,
                &present,
                start,
                "",
                "",
                &mut Vec::new(),
                &mut drawn,
                &mut out,
            );
        }
    }
    if out.is_empty() {
        out.push("no checkpoints".to_owned());
    }
    Ok(Output::new(out.join("\n"), 0))
}

/// One table and, indented below it, what was made from it (recorded in `drawn`). A table
/// without a checkpoint is marked `(missing)`; a table already above it on the path is not
/// followed again.
#[allow(clippy::too_many_arguments)]
fn tree<'a>(
    graph: &'a LineageGraph,
    present: &BTreeSet<&str>,
    table: &'a str,
    first: &str,
    rest: &str,
    path: &mut Vec<&'a str>,
    drawn: &mut BTreeSet<&'a str>,
    out: &mut Vec<String>,
) {
    drawn.insert(table);
    let missing = if present.contains(table) {
        ""
    } else {
        "  (missing)"
    };
    out.push(format!("{first}{table}{missing}"));
    if path.contains(&table) {
        return;
    }
    path.push(table);
    let children: Vec<&str> = graph.dependents(table).collect();
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let (branch, indent) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        tree(
            graph,
            present,
            child,
            &format!("{rest}{branch}"),
            &format!("{rest}{indent}"),
            path,
            drawn,
            out,
        );
    }
    path.pop();
}

/// `checkpoints`: the `_checkpoints` rows, newest first, with the seed's four fields in JSON.
pub fn checkpoints(store: &AnyStore, as_json: bool) -> Result<Output, Error> {
    let list = store.list_checkpoints()?;
    if as_json {
        let rows: Vec<Value> = list
            .iter()
            .map(|c| {
                json!({
                    "table_name": c.table_name,
                    "created_at": iso(c.created_at),
                    "row_count": c.row_count,
                    "description": c.description,
                })
            })
            .collect();
        return Ok(Output::new(pretty(&Value::Array(rows)), 0));
    }
    if list.is_empty() {
        return Ok(Output::new("no checkpoints".to_owned(), 0));
    }
    let rows = list
        .iter()
        .map(|c| {
            vec![
                c.table_name.clone(),
                time(c.saved_utc()),
                c.row_count.map_or_else(String::new, |n| n.to_string()),
                c.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    Ok(Output::new(
        table(
            &["table", "created_at (UTC)", "rows", "description"],
            rows,
            &[2],
        ),
        0,
    ))
}
