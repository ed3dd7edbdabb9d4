//! The earlier versions of each checkpoint on the shared store. When a keyed checkpoint is
//! replaced, its rows of `_checkpoints`, `_checkpoint_keys` and `_checkpoint_files` are copied
//! to a `_checkpoint_history` row, and its Parquet file stays where it is; a restore makes a
//! version's rows current again, registering its file under a new name (a hard link: no byte
//! copied), so the lake's snapshots of the old and the new registration never share a path
//! that one snapshot's expiry could remove under the other. Versions are numbered per table
//! from 1 in save order and keep their number. Everything here runs inside the caller's
//! transaction, under the table's lock.

use postgres::Transaction;

/// The history of every table: one row per earlier version, with what its catalog rows held
/// while it was current.
pub(crate) const HISTORY_DDL: &str = "CREATE TABLE IF NOT EXISTS _checkpoint_history (
        table_name TEXT NOT NULL,
        version BIGINT NOT NULL,
        created_at TIMESTAMP,
        row_count INTEGER,
        description TEXT,
        key TEXT,
        function TEXT,
        code TEXT,
        arguments TEXT,
        config TEXT,
        data_version TEXT,
        inputs TEXT,
        max_age_seconds BIGINT,
        step TEXT,
        path TEXT NOT NULL,
        bytes BIGINT,
        replaced_at TIMESTAMP,
        PRIMARY KEY (table_name, version))";

/// The columns the history added to `_checkpoint_keys`: the save's number and its provenance
/// step (`_provenance`'s `steps_json`), valid beside a current lineage only, as the lineage is.
pub(crate) const KEY_COLUMNS: [(&str, &str); 2] = [("version", "BIGINT"), ("step", "TEXT")];

/// The columns a version carries from `_checkpoint_keys` into its history row and back.
const CARRIED: &str =
    "key, function, code, arguments, config, data_version, inputs, max_age_seconds, step";

/// The number the next version of `table` gets: one past every number it has used.
pub(crate) fn next_version(tx: &mut Transaction<'_>, table: &str) -> Result<i64, postgres::Error> {
    Ok(tx
        .query_one(
            "SELECT 1 + greatest( \
               (SELECT coalesce(max(version), 0) FROM _checkpoint_history WHERE table_name = $1), \
               (SELECT coalesce(max(version), 0) FROM _checkpoint_keys WHERE table_name = $1))",
            &[&table],
        )?
        .get(0))
}

/// Moves the current checkpoint of `table` into its history when it is a keyed one (its key
/// and lineage written with this very save); returns its file, which stays.
pub(crate) fn keep_current(
    tx: &mut Transaction<'_>,
    table: &str,
) -> Result<Option<String>, postgres::Error> {
    let next = next_version(tx, table)?;
    let moved = tx.query_opt(
        &format!(
            "INSERT INTO _checkpoint_history (table_name, version, created_at, row_count, \
             description, {CARRIED}, path, bytes, replaced_at) \
             SELECT c.table_name, coalesce(k.version, $2), c.created_at, c.row_count, \
             c.description, k.key, k.function, k.code, k.arguments, k.config, k.data_version, \
             k.inputs, k.max_age_seconds, k.step, f.path, f.bytes, now() AT TIME ZONE 'UTC' \
             FROM _checkpoints c JOIN _checkpoint_keys k ON {CURRENT} \
             JOIN _checkpoint_files f ON f.table_name = c.table_name \
             WHERE c.table_name = $1 \
             ON CONFLICT (table_name, version) DO NOTHING RETURNING path",
            CURRENT = current_key_of_checkpoint!()
        ),
        &[&table, &next],
    )?;
    Ok(moved.map(|row| row.get(0)))
}

/// Keeps the `keep - 1` newest earlier versions of `table`; returns the files of the others.
pub(crate) fn prune(
    tx: &mut Transaction<'_>,
    table: &str,
    keep: usize,
) -> Result<Vec<String>, postgres::Error> {
    let kept = i64::try_from(keep.saturating_sub(1)).unwrap_or(i64::MAX);
    Ok(tx
        .query(
            "DELETE FROM _checkpoint_history WHERE table_name = $1 AND version IN \
             (SELECT version FROM _checkpoint_history WHERE table_name = $1 \
              ORDER BY version DESC OFFSET $2) RETURNING path",
            &[&table, &kept],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// The file of version `version` of `table`, saved at `created_at` (the catalog's text), if
/// the history has it so.
pub(crate) fn file_of(
    tx: &mut impl postgres::GenericClient,
    table: &str,
    version: i64,
    created_at: Option<&str>,
) -> Result<Option<String>, postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT path FROM _checkpoint_history WHERE table_name = $1 AND version = $2 \
             AND created_at IS NOT DISTINCT FROM $3::text::timestamp",
            &[&table, &version, &created_at],
        )?
        .map(|row| row.get(0)))
}

/// Makes version `version` of `table` the catalog's checkpoint again, as it was, with its
/// rows now in `file` (`bytes` long), and removes it from the history. The caller has moved
/// the current checkpoint away first.
pub(crate) fn make_current(
    tx: &mut Transaction<'_>,
    table: &str,
    version: i64,
    file: &str,
    bytes: i64,
) -> Result<(), postgres::Error> {
    tx.execute(
        "INSERT INTO _checkpoints (table_name, created_at, row_count, description) \
         SELECT table_name, created_at, row_count, description FROM _checkpoint_history \
         WHERE table_name = $1 AND version = $2 \
         ON CONFLICT (table_name) DO UPDATE SET created_at = excluded.created_at, \
         row_count = excluded.row_count, description = excluded.description",
        &[&table, &version],
    )?;
    tx.execute(
        &format!(
            "INSERT INTO _checkpoint_keys (table_name, checkpoint_created_at, \
             lineage_created_at, version, {CARRIED}) \
             SELECT table_name, created_at, created_at, version, {CARRIED} \
             FROM _checkpoint_history WHERE table_name = $1 AND version = $2 \
             ON CONFLICT (table_name) DO UPDATE SET \
             checkpoint_created_at = excluded.checkpoint_created_at, \
             lineage_created_at = excluded.lineage_created_at, version = excluded.version, \
             key = excluded.key, function = excluded.function, code = excluded.code, \
             arguments = excluded.arguments, config = excluded.config, \
             data_version = excluded.data_version, inputs = excluded.inputs, \
             max_age_seconds = excluded.max_age_seconds, step = excluded.step"
        ),
        &[&table, &version],
    )?;
    tx.execute(super::REGISTER_FILE, &[&table, &file, &bytes])?;
    tx.execute(
        "DELETE FROM _checkpoint_history WHERE table_name = $1 AND version = $2",
        &[&table, &version],
    )?;
    Ok(())
}

/// Every version of a table (`$1`), newest first: the columns `checkpoint_row` decodes, in its
/// order, then the version's number, when it stopped being current (`NULL` for the current
/// one), whether it is current, its provenance step, and its file's size.
pub(crate) const VERSIONS_SQL: &str = concat!(
    "\
SELECT table_name, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS.US'), row_count::text, \
  description, key, function, code, arguments, config, data_version, inputs, \
  max_age_seconds::text, version, to_char(replaced_at, 'YYYY-MM-DD HH24:MI:SS.US'), false, step, \
  bytes \
FROM _checkpoint_history WHERE table_name = $1 \
UNION ALL \
SELECT c.table_name, to_char(c.created_at, 'YYYY-MM-DD HH24:MI:SS.US'), c.row_count::text, \
  c.description, k.key, k.function, k.code, k.arguments, k.config, k.data_version, k.inputs, \
  k.max_age_seconds::text, k.version, NULL, true, k.step, f.bytes \
FROM _checkpoints c JOIN _checkpoint_keys k ON ",
    current_key_of_checkpoint!(),
    " LEFT JOIN _checkpoint_files f ON f.table_name = c.table_name \
WHERE c.table_name = $1 AND k.version IS NOT NULL ORDER BY 13 DESC"
);

/// The file of version `version` of `table`, current or earlier (`$1`, `$2`).
pub(crate) const VERSION_FILE_SQL: &str = "\
SELECT path FROM _checkpoint_history WHERE table_name = $1 AND version = $2 \
UNION ALL \
SELECT f.path FROM _checkpoint_files f JOIN _checkpoint_keys k ON k.table_name = f.table_name \
  JOIN _checkpoints c ON c.table_name = f.table_name \
  AND k.checkpoint_created_at IS NOT DISTINCT FROM c.created_at \
WHERE f.table_name = $1 AND k.version = $2";
