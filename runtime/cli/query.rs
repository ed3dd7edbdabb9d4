//! `query SQL [--param V]...`: a read-only query, values bound, printed as a table or JSON.

use usher_pipeline::CheckpointStore;
use usher_pipeline::polars::prelude::{AnyValue, DataFrame};
use usher_pipeline::{AnyStore, Error, Param};

use crate::Output;
use crate::output::{frame_json, pretty, table};

/// A `--param` value: `null`, `true` / `false`, an integer, a float, else text; `text:` before
/// a value keeps it text (`text:113`).
pub fn parse_param(value: &str) -> Param {
    if let Some(text) = value.strip_prefix("text:") {
        return Param::Text(text.to_owned());
    }
    match value {
        "null" => Param::Null,
        "true" => Param::Bool(true),
        "false" => Param::Bool(false),
        _ => value
            .parse::<i64>()
            .map(Param::Int)
            .or_else(|_| value.parse::<f64>().map(Param::Float))
            .unwrap_or_else(|_| Param::Text(value.to_owned())),
    }
}

/// Runs `sql` on the store (opened read-only, so a statement that writes fails).
pub fn query(
    store: &AnyStore,
    sql: &str,
    params: &[Param],
    as_json: bool,
) -> Result<Output, Error> {
    let frame = store.query(sql, params)?;
    if as_json {
        return Ok(Output::new(pretty(&frame_json(&frame)), 0));
    }
    Ok(Output::new(frame_table(&frame), 0))
}

/// Every row of `frame` as a table (numbers right-aligned, nulls empty).
fn frame_table(frame: &DataFrame) -> String {
    let header: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let right: Vec<usize> = frame
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.dtype().is_primitive_numeric())
        .map(|(i, _)| i)
        .collect();
    let rows = (0..frame.height())
        .map(|i| {
            frame
                .columns()
                .iter()
                .map(|c| match c.get(i) {
                    Ok(AnyValue::Null) | Err(_) => String::new(),
                    Ok(AnyValue::String(s)) => s.to_owned(),
                    Ok(AnyValue::StringOwned(s)) => s.to_string(),
                    Ok(v) => v.to_string(),
                })
                .collect()
        })
        .collect();
    let text = table(&header, rows, &right);
    format!(
        "{text}\n({} row{})",
        frame.height(),
        if frame.height() == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_typed_by_their_text() {
        assert!(matches!(parse_param("113"), Param::Int(113)));
        assert!(matches!(parse_param("0.35"), Param::Float(f) if f == 0.35));
        assert!(matches!(parse_param("true"), Param::Bool(true)));
        assert!(matches!(parse_param("null"), Param::Null));
        assert!(matches!(parse_param("USH2A"), Param::Text(t) if t == "USH2A"));
        assert!(matches!(parse_param("text:113"), Param::Text(t) if t == "113"));
    }
}
