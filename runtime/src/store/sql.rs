//! What both SQL-backed stores (the DuckDB file, the shared store's PostgreSQL catalog) share:
//! quoting an identifier, and decoding a checkpoint row read as text.

use chrono::NaiveDateTime;

use crate::fingerprint::DataVersion;
use crate::model::{CheckpointInfo, CheckpointKey, Lineage};

/// Quotes an SQL identifier: `a"b` -> `"a""b"`.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The one decoder of a `_checkpoints` row with its key, as text columns in the order both
/// stores' checkpoint queries select them (table, time, rows, description, key, function, code,
/// arguments, config, data version, inputs, max age).
pub(crate) fn checkpoint_row(
    row: Vec<Option<String>>,
) -> std::result::Result<CheckpointInfo, String> {
    let mut row = row.into_iter();
    let mut next = || row.next().flatten();
    let table_name = next().ok_or("a _checkpoints row without a table_name")?;
    let created_at = next()
        .map(|t| {
            NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|e| format!("created_at {t:?} of {table_name:?}: {e}"))
        })
        .transpose()?;
    let row_count = next()
        .map(|n| {
            n.parse::<i64>()
                .map_err(|e| format!("row_count {n:?} of {table_name:?}: {e}"))
        })
        .transpose()?;
    let description = next();
    let json_object = |what: &str, text: String| match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(format!(
            "the key {what} of {table_name:?} are not a JSON object: {text:?}"
        )),
    };
    let key = match (next(), next(), next(), next()) {
        (Some(key), Some(function), Some(code), Some(arguments)) => Some(CheckpointKey {
            key,
            function,
            code,
            arguments: json_object("arguments", arguments)?,
            config: match next() {
                Some(config) => json_object("config fields", config)?,
                None => serde_json::Map::new(),
            },
        }),
        _ => None,
    };
    let lineage = match key {
        None => Lineage::default(),
        Some(_) => Lineage {
            data_version: next()
                .map(|hex| {
                    DataVersion::from_hex(&hex)
                        .ok_or_else(|| format!("data_version {hex:?} of {table_name:?}"))
                })
                .transpose()?,
            inputs: next()
                .map(|json| {
                    Lineage::parse_inputs(&json).map_err(|e| format!("{table_name:?}: {e}"))
                })
                .transpose()?
                .unwrap_or_default(),
            max_age_seconds: next()
                .map(|n| {
                    n.parse::<u64>()
                        .map_err(|e| format!("max_age_seconds {n:?} of {table_name:?}: {e}"))
                })
                .transpose()?,
        },
    };
    Ok(CheckpointInfo {
        table_name,
        created_at,
        row_count,
        description,
        key,
        lineage,
    })
}
