//! The earlier versions of each checkpoint table in the DuckDB file: when a keyed checkpoint is
//! replaced, its table is renamed (not copied) to a table of the store's own,
//! `__usher_v<n>_<table>`, and its `_checkpoints` row and key to a `_checkpoint_history` row;
//! a restore renames it back, in one transaction. Versions are numbered per table from 1 in the
//! order they were saved, and keep their number. The Python pipeline sees none of it: it
//! reads `_checkpoints` and the tables it names.

use chrono::NaiveDateTime;

use super::ffi::{Connection, DuckError};
use super::{Param, table_exists};
use crate::store::sql::quote_ident;
use crate::store::time::now_utc;

/// The history of every table: one row per earlier version, with what its `_checkpoints` row
/// and key held while it was current.
pub(crate) const HISTORY_DDL: &str = "CREATE TABLE IF NOT EXISTS _checkpoint_history (
    table_name VARCHAR,
    version BIGINT,
    created_at TIMESTAMP,
    row_count INTEGER,
    description VARCHAR,
    key VARCHAR,
    function VARCHAR,
    code VARCHAR,
    arguments VARCHAR,
    config VARCHAR,
    data_version VARCHAR,
    inputs VARCHAR,
    max_age_seconds BIGINT,
    step VARCHAR,
    replaced_at TIMESTAMP,
    PRIMARY KEY (table_name, version)
)";

/// The columns a version carries from `_checkpoint_keys` into its history row and back.
const KEY_COLUMNS: &str =
    "key, function, code, arguments, config, data_version, inputs, max_age_seconds, step";

/// The table holding the rows of version `version` of `table`.
pub(crate) fn storage(table: &str, version: i64) -> String {
    quote_ident(&format!("__usher_v{version}_{table}"))
}

/// The number the next version of `table` gets: one past every number it has used.
fn next_version(conn: &Connection, table: &str) -> Result<i64, DuckError> {
    conn.query_i64_cached(
        "SELECT 1 + greatest( \
           (SELECT coalesce(max(version), 0) FROM _checkpoint_history WHERE table_name = ?), \
           (SELECT coalesce(max(version), 0) FROM _checkpoint_keys WHERE table_name = ?))",
        &[table.into(), table.into()],
    )
}

/// Moves the current checkpoint of `table` into its history, when it is a keyed one (its key
/// and lineage written with this very save) and its table exists: its table renamed, its rows
/// of `_checkpoints` and `_checkpoint_keys` copied to `_checkpoint_history`. Inside the
/// caller's transaction. Returns whether it moved.
pub(crate) fn keep_current(conn: &Connection, table: &str) -> Result<bool, DuckError> {
    let current = conn.query_text_rows_cached(
        concat!(
            "SELECT CAST(k.version AS VARCHAR) FROM _checkpoints c JOIN _checkpoint_keys k ON ",
            current_key_of_checkpoint!(),
            " WHERE c.table_name = ?"
        ),
        &[table.into()],
    )?;
    let Some(row) = current.into_iter().next() else {
        return Ok(false);
    };
    if !table_exists(conn, table)? {
        return Ok(false);
    }
    let version = match row.into_iter().next().flatten() {
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| format!("_checkpoint_keys holds version {text:?} for {table:?}"))?,
        None => next_version(conn, table)?,
    };
    conn.execute(&format!(
        "ALTER TABLE {} RENAME TO {}",
        quote_ident(table),
        // ALTER ... RENAME TO takes a bare name: the quoted one of `storage`.
        storage(table, version)
    ))?;
    conn.query_cached(
        &format!(
            "INSERT OR REPLACE INTO _checkpoint_history (table_name, version, created_at, row_count, \
             description, {KEY_COLUMNS}, replaced_at) \
             SELECT c.table_name, ?, c.created_at, c.row_count, c.description, \
             k.key, k.function, k.code, k.arguments, k.config, k.data_version, k.inputs, \
             k.max_age_seconds, k.step, ? \
             FROM _checkpoints c JOIN _checkpoint_keys k ON k.table_name = c.table_name \
             WHERE c.table_name = ?"
        ),
        &[Param::Int(version), Param::Timestamp(now_utc()), table.into()],
    )?;
    Ok(true)
}

/// Keeps the `keep - 1` newest earlier versions of `table` (with the current one, `keep` in
/// all) and drops the others, tables and rows. Inside the caller's transaction.
pub(crate) fn prune(conn: &Connection, table: &str, keep: usize) -> Result<(), DuckError> {
    let kept = i64::try_from(keep.saturating_sub(1)).unwrap_or(i64::MAX);
    let gone = conn.query_text_rows_cached(
        "SELECT CAST(version AS VARCHAR) FROM _checkpoint_history WHERE table_name = ? \
         ORDER BY version DESC OFFSET ?",
        &[table.into(), Param::Int(kept)],
    )?;
    for row in gone {
        let Some(version) = row.into_iter().next().flatten() else {
            continue;
        };
        let version: i64 = version
            .parse()
            .map_err(|_| format!("_checkpoint_history holds version {version:?} for {table:?}"))?;
        drop_version(conn, table, version)?;
    }
    Ok(())
}

/// Drops version `version` of `table`: its table and its row.
fn drop_version(conn: &Connection, table: &str, version: i64) -> Result<(), DuckError> {
    conn.execute(&format!("DROP TABLE IF EXISTS {}", storage(table, version)))?;
    conn.query_cached(
        "DELETE FROM _checkpoint_history WHERE table_name = ? AND version = ?",
        &[table.into(), Param::Int(version)],
    )
    .map(drop)
}

/// Drops every earlier version of `table` (a delete of the checkpoint). Inside the caller's
/// transaction.
pub(crate) fn forget(conn: &Connection, table: &str) -> Result<(), DuckError> {
    prune(conn, table, 1)
}

/// The number the save being written gets, recorded with its key (see `write_key`).
pub(crate) fn number_new(conn: &Connection, table: &str) -> Result<i64, DuckError> {
    next_version(conn, table)
}

/// Makes version `version` of `table` (saved at `created_at`) current again: the current
/// keyed checkpoint goes into the history first (any other current table is dropped), then the
/// version's table is renamed back and its rows of `_checkpoints` and `_checkpoint_keys`
/// written as they were, its number kept. Inside the caller's transaction. `false` (nothing
/// done) when the history has no such version saved then.
pub(crate) fn restore(
    conn: &Connection,
    table: &str,
    version: i64,
    created_at: Option<NaiveDateTime>,
) -> Result<bool, DuckError> {
    let there = conn.query_i64_cached(
        "SELECT count(*) FROM _checkpoint_history WHERE table_name = ? AND version = ? \
         AND created_at IS NOT DISTINCT FROM ?",
        &[
            table.into(),
            Param::Int(version),
            created_at.map_or(Param::Null, Param::Timestamp),
        ],
    )?;
    if there != 1 {
        return Ok(false);
    }
    if !keep_current(conn, table)? {
        conn.execute(&format!("DROP TABLE IF EXISTS {}", quote_ident(table)))?;
    }
    conn.execute(&format!(
        "ALTER TABLE {} RENAME TO {}",
        storage(table, version),
        quote_ident(table)
    ))?;
    conn.query_cached(
        "INSERT OR REPLACE INTO _checkpoints (table_name, created_at, row_count, description) \
         SELECT table_name, created_at, row_count, description FROM _checkpoint_history \
         WHERE table_name = ? AND version = ?",
        &[table.into(), Param::Int(version)],
    )?;
    conn.query_cached(
        &format!(
            "INSERT OR REPLACE INTO _checkpoint_keys (table_name, checkpoint_created_at, \
             lineage_created_at, version, {KEY_COLUMNS}) \
             SELECT table_name, created_at, created_at, version, {KEY_COLUMNS} \
             FROM _checkpoint_history WHERE table_name = ? AND version = ?"
        ),
        &[table.into(), Param::Int(version)],
    )?;
    conn.query_cached(
        "DELETE FROM _checkpoint_history WHERE table_name = ? AND version = ?",
        &[table.into(), Param::Int(version)],
    )?;
    Ok(true)
}

/// The SQL of every version of `table` the store has, newest first: the columns
/// `checkpoint_row` decodes (in its order), then the version's number, when it stopped being
/// current (`NULL` for the current one), whether it is current, and its provenance step.
pub(crate) const VERSIONS_SQL: &str = concat!(
    "\
SELECT table_name, strftime(CAST(created_at AS TIMESTAMP), '%Y-%m-%d %H:%M:%S.%f'), \
  CAST(row_count AS VARCHAR), description, key, function, code, arguments, config, \
  data_version, inputs, CAST(max_age_seconds AS VARCHAR), version, \
  strftime(CAST(replaced_at AS TIMESTAMP), '%Y-%m-%d %H:%M:%S.%f'), false, step \
FROM _checkpoint_history WHERE table_name = ? \
UNION ALL \
SELECT c.table_name, strftime(CAST(c.created_at AS TIMESTAMP), '%Y-%m-%d %H:%M:%S.%f'), \
  CAST(c.row_count AS VARCHAR), c.description, k.key, k.function, k.code, k.arguments, k.config, \
  k.data_version, k.inputs, CAST(k.max_age_seconds AS VARCHAR), k.version, \
  NULL, true, k.step \
FROM _checkpoints c JOIN _checkpoint_keys k ON ",
    current_key_of_checkpoint!(),
    " WHERE c.table_name = ? AND k.version IS NOT NULL ORDER BY 13 DESC"
);
