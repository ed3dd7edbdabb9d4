//! How the command line prints: tables fitted to the terminal (comfy-table, the crate polars
//! already draws frames with), no colour, and JSON values for `--json`.

use chrono::NaiveDateTime;
use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde_json::{Map, Value, json};
use usher_pipeline::polars::prelude::{AnyValue, DataFrame, TimeUnit};

/// A borderless table with `header`, columns padded by two spaces, wrapped to the terminal's
/// width when printing to one; columns listed in `right` are right-aligned (numbers).
pub fn table(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if right.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    // Trailing padding is not content: scripts compare lines.
    table
        .lines()
        .map(|line| line.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `2026-11-25 16:01:02` (UTC), or empty.
pub fn time(t: Option<NaiveDateTime>) -> String {
    t.map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// ISO 8601 with microseconds, as the JSON output writes times.
pub fn iso(t: Option<NaiveDateTime>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
    })
}

/// How long ago `t` was, at `now`: `45s`, `12m`, `3h 5m`, `4d 2h`.
pub fn age(t: Option<NaiveDateTime>, now: NaiveDateTime) -> String {
    let Some(t) = t else { return String::new() };
    let s = (now - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h {}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// Pretty JSON, as every `--json` output is printed.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The frame as JSON: its columns (name and dtype) and its rows as objects.
pub fn frame_json(frame: &DataFrame) -> Value {
    let columns: Vec<Value> = frame
        .columns()
        .iter()
        .map(|c| json!({"name": c.name().as_str(), "dtype": c.dtype().to_string()}))
        .collect();
    let rows: Vec<Value> = (0..frame.height())
        .map(|i| {
            let object: Map<String, Value> = frame
                .columns()
                .iter()
                .map(|c| {
                    let value = c.get(i).map_or(Value::Null, |v| any_json(&v));
                    (c.name().to_string(), value)
                })
                .collect();
            Value::Object(object)
        })
        .collect();
    json!({"columns": columns, "rows": rows})
}

/// One polars value as JSON: numbers, strings, booleans, dates and times as ISO 8601 text,
/// lists as arrays; a non-finite float as its text (`"NaN"`), which JSON cannot hold.
fn any_json(value: &AnyValue<'_>) -> Value {
    let float = |f: f64| {
        serde_json::Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
    };
    match value {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(*b),
        AnyValue::Int8(v) => json!(v),
        AnyValue::Int16(v) => json!(v),
        AnyValue::Int32(v) => json!(v),
        AnyValue::Int64(v) => json!(v),
        AnyValue::UInt8(v) => json!(v),
        AnyValue::UInt16(v) => json!(v),
        AnyValue::UInt32(v) => json!(v),
        AnyValue::UInt64(v) => json!(v),
        AnyValue::Float32(v) => float(f64::from(*v)),
        AnyValue::Float64(v) => float(*v),
        AnyValue::String(s) => json!(s),
        AnyValue::StringOwned(s) => json!(s.as_str()),
        // Out-of-range values (DuckDB's `infinity` dates) are written as polars shows them.
        AnyValue::Date(days) => days
            .checked_add(719_163)
            .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
            .map_or_else(
                || Value::String(value.to_string()),
                |d| json!(d.to_string()),
            ),
        AnyValue::Datetime(v, unit, _) | AnyValue::DatetimeOwned(v, unit, _) => {
            let micros = match unit {
                TimeUnit::Nanoseconds => Some(v / 1_000),
                TimeUnit::Microseconds => Some(*v),
                TimeUnit::Milliseconds => v.checked_mul(1_000),
            };
            match micros.and_then(chrono::DateTime::from_timestamp_micros) {
                Some(t) => iso(Some(t.naive_utc())),
                None => Value::String(value.to_string()),
            }
        }
        AnyValue::List(series) => Value::Array(
            (0..series.len())
                .map(|i| series.get(i).map_or(Value::Null, |v| any_json(&v)))
                .collect(),
        ),
        other => Value::String(other.to_string()),
    }
}
