//! The shared store as a DuckLake 1.0 catalog: beside the store's own tables, in the same
//! schema, the `ducklake_*` tables that let any DuckDB attach the store and read every
//! checkpoint, and every earlier version of it, without this library:
//!
//! ```sql
//! ATTACH 'ducklake:postgres:dbname=usher host=db.lab user=usher' AS lake
//!     (METADATA_SCHEMA 'public', DATA_PATH '/shared/usher-data/', OVERRIDE_DATA_PATH true, READ_ONLY);
//! SELECT * FROM lake.gnomad_constraint;
//! ```
//!
//! The bundled DuckDB has no ducklake extension, so the rows are written here, over the
//! PostgreSQL client, in the transaction that registers the save. What they must hold was
//! measured against the extension itself (`tests/python/ducklake/`): each save is one snapshot
//! that drops the table's previous version and creates the new one (as `CREATE OR REPLACE
//! TABLE` does, so a changed schema is recorded the same way), with the new Parquet file, whose
//! field ids are the catalog's column ids. Row counts and file sizes are exact; column
//! statistics are left out (a reader then prunes nothing, and answers right), since wrong ones
//! would give wrong answers silently.

use postgres::Transaction;
use postgres::types::Type;

/// The DuckLake catalog format this library writes, and the only one it writes into.
pub const LAKE_FORMAT: &str = "1.0";

/// The tables, as the extension creates them.
const DDL: &str = include_str!("lake.sql");

/// The lake's one schema, `main` (DuckDB's default: `lake.t` is `lake.main.t`), whose files
/// live under `tables/` of the data path: the store's own layout, `tables/<table>/<file>`.
const SCHEMA_ID: i64 = 0;
const SCHEMA_PATH: &str = "tables/";

/// What the lake records as the author of the store's snapshots.
const AUTHOR: &str = "usher-pipeline";

/// A column of a lake table. Its id is its place in the table's columns and their children
/// taken in order, parents before children, from 1 (see [`numbered`]), and is its Parquet
/// field id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    /// The column's name (`element` for a list's items).
    pub name: String,
    /// Its type as DuckLake names it (`int64`, `varchar`, `list`, ...).
    pub ducklake_type: String,
    /// A list's item column; empty for other types.
    pub children: Vec<Column>,
}

impl Column {
    /// The lake column of a DuckDB column named `name` of type `duckdb_type` (as `DESCRIBE`
    /// shows it), `None` when the lake cannot hold the type as this store writes it.
    pub fn of(name: &str, duckdb_type: &str) -> Option<Column> {
        let (ducklake_type, children) = match duckdb_type.strip_suffix("[]") {
            Some(item) => ("list".to_owned(), vec![Column::of("element", item)?]),
            None => (ducklake_type(duckdb_type)?, Vec::new()),
        };
        Some(Column {
            name: name.to_owned(),
            ducklake_type,
            children,
        })
    }
}

/// Every column and child with its id and its parent's, parents first: the one numbering
/// of the catalog's rows and the file's field ids.
pub(crate) fn numbered(columns: &[Column]) -> Vec<(i64, Option<i64>, &Column)> {
    fn walk<'a>(
        columns: &'a [Column],
        parent: Option<i64>,
        out: &mut Vec<(i64, Option<i64>, &'a Column)>,
    ) {
        for column in columns {
            let id = out.len() as i64 + 1;
            out.push((id, parent, column));
            walk(&column.children, Some(id), out);
        }
    }
    let mut out = Vec::new();
    walk(columns, None, &mut out);
    out
}

/// The `FIELD_IDS` option of DuckDB's `COPY ... TO` for `columns`: each column's id, and a
/// list's as `{'__duckdb_field_id': id, 'element': ...}`.
pub(crate) fn field_ids(columns: &[Column]) -> String {
    let ids = numbered(columns);
    let mut next = ids.iter().map(|(id, _, _)| *id);
    fn spec(columns: &[Column], next: &mut dyn Iterator<Item = i64>) -> String {
        let entries: Vec<String> = columns
            .iter()
            .map(|column| {
                let id = next.next().unwrap_or_default();
                let value = if column.children.is_empty() {
                    id.to_string()
                } else {
                    let inner = spec(&column.children, next);
                    format!(
                        "{{'__duckdb_field_id': {id}, {}}}",
                        &inner[1..inner.len() - 1]
                    )
                };
                format!("{}: {value}", quote_literal(&column.name))
            })
            .collect();
        format!("{{{}}}", entries.join(", "))
    }
    spec(columns, &mut next)
}

/// `text` as a SQL string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A table's data file, as a save registers it in the lake.
#[derive(Debug, Clone)]
pub(crate) struct LakeFile<'a> {
    /// The file's name in the table's directory (`tables/<table>/`).
    pub name: &'a str,
    /// The columns, in order.
    pub columns: &'a [Column],
    /// Its rows.
    pub rows: i64,
    /// Its size in bytes, exact.
    pub bytes: i64,
    /// The length of its Parquet footer, exact, or `None` (a reader then reads it).
    pub footer: Option<i64>,
    /// Whether its columns are matched by name (a file written before the lake, without field
    /// ids) rather than by field id.
    pub by_name: bool,
}

/// The lake's format version, `None` when the catalog has no lake.
pub(crate) fn format(tx: &mut Transaction<'_>) -> Result<Option<String>, postgres::Error> {
    let exists: bool = tx
        .query_one("SELECT to_regclass('ducklake_metadata') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(tx
        .query_opt(
            "SELECT value FROM ducklake_metadata WHERE key = 'version' AND scope IS NULL",
            &[],
        )?
        .map(|row| row.get(0)))
}

/// Creates the lake's tables and its first snapshot (the empty schema `main`), for files under
/// `data_path` (absolute, ending in `/`).
pub(crate) fn create(
    tx: &mut Transaction<'_>,
    data_path: &str,
    created_by: &str,
) -> Result<(), postgres::Error> {
    tx.batch_execute(DDL)?;
    tx.execute(
        "INSERT INTO ducklake_snapshot (snapshot_id, snapshot_time, schema_version, \
         next_catalog_id, next_file_id) VALUES (0, now(), 0, 1, 0)",
        &[],
    )?;
    tx.execute(
        "INSERT INTO ducklake_snapshot_changes (snapshot_id, changes_made, author, \
         commit_message, commit_extra_info) VALUES (0, 'created_schema:\"main\"', NULL, NULL, NULL)",
        &[],
    )?;
    tx.execute(
        "INSERT INTO ducklake_metadata (key, value) VALUES ('version', $1), ('created_by', $2), \
         ('data_path', $3), ('encrypted', 'false'), ('data_inlining_row_limit', '0')",
        &[&LAKE_FORMAT, &created_by, &data_path],
    )?;
    tx.execute(
        "INSERT INTO ducklake_schema (schema_id, schema_uuid, begin_snapshot, end_snapshot, \
         schema_name, path, path_is_relative) VALUES ($1, gen_random_uuid(), 0, NULL, 'main', $2, true)",
        &[&SCHEMA_ID, &SCHEMA_PATH],
    )?;
    Ok(())
}

/// Records `data_path` as where the lake's files are.
pub(crate) fn set_data_path(
    tx: &mut Transaction<'_>,
    data_path: &str,
) -> Result<(), postgres::Error> {
    tx.execute(
        "UPDATE ducklake_metadata SET value = $1 WHERE key = 'data_path' AND scope IS NULL",
        &[&data_path],
    )
    .map(drop)
}

/// The statement that writes one snapshot of [`replace`], whole: the lake's last snapshot
/// read (under the lock the statement before took), the table's live version ended, the new
/// one created with its columns, file and (for a file without field ids) name mapping, and
/// the snapshot with its changes; one round trip instead of one per row. Data-modifying
/// `WITH` parts all see the lake as it was when the statement began and touch distinct rows.
/// Returns the snapshot's id, `NULL` when it had nothing to record.
const REPLACE_SQL: &str = "\
WITH last AS (
  SELECT snapshot_id + 1 AS s, schema_version AS sv, next_catalog_id AS cid,
         next_file_id AS fid
  FROM ducklake_snapshot ORDER BY snapshot_id DESC LIMIT 1),
old AS (
  UPDATE ducklake_table SET end_snapshot = (SELECT s FROM last)
  WHERE schema_id = $1 AND table_name = $2 AND end_snapshot IS NULL RETURNING table_id),
end_column AS (
  UPDATE ducklake_column SET end_snapshot = (SELECT s FROM last)
  WHERE table_id IN (SELECT table_id FROM old) AND end_snapshot IS NULL),
end_data_file AS (
  UPDATE ducklake_data_file SET end_snapshot = (SELECT s FROM last)
  WHERE table_id IN (SELECT table_id FROM old) AND end_snapshot IS NULL),
end_delete_file AS (
  UPDATE ducklake_delete_file SET end_snapshot = (SELECT s FROM last)
  WHERE table_id IN (SELECT table_id FROM old) AND end_snapshot IS NULL),
end_partition AS (
  UPDATE ducklake_partition_info SET end_snapshot = (SELECT s FROM last)
  WHERE table_id IN (SELECT table_id FROM old) AND end_snapshot IS NULL),
end_column_tag AS (
  UPDATE ducklake_column_tag SET end_snapshot = (SELECT s FROM last)
  WHERE table_id IN (SELECT table_id FROM old) AND end_snapshot IS NULL),
end_tag AS (
  UPDATE ducklake_tag SET end_snapshot = (SELECT s FROM last)
  WHERE object_id IN (SELECT table_id FROM old) AND end_snapshot IS NULL),
ids AS (
  SELECT s, sv, cid AS table_id,
         CASE WHEN $8 THEN fid END AS mapping_id,
         fid + CASE WHEN $8 THEN 1 ELSE 0 END AS file_id,
         cid + CASE WHEN $3 THEN 1 ELSE 0 END AS next_cid,
         fid + CASE WHEN $3 THEN 1 ELSE 0 END + CASE WHEN $8 THEN 1 ELSE 0 END AS next_fid,
         EXISTS (SELECT 1 FROM old) OR $3 AS changed
  FROM last),
new_table AS (
  INSERT INTO ducklake_table (table_id, table_uuid, begin_snapshot, end_snapshot, schema_id,
    table_name, path, path_is_relative)
  SELECT table_id, gen_random_uuid(), s, NULL, $1, $2, $2 || '/', true FROM ids WHERE $3),
new_columns AS (
  INSERT INTO ducklake_column (column_id, begin_snapshot, end_snapshot, table_id, column_order,
    column_name, column_type, initial_default, default_value, nulls_allowed, parent_column,
    default_value_type, default_value_dialect)
  SELECT c.id, ids.s, NULL, ids.table_id, c.id, c.name, c.type, NULL, 'NULL', true, c.parent,
    c.kind, 'duckdb'
  FROM ids, unnest($9::bigint[], $10::text[], $11::text[], $12::bigint[], $13::text[])
    AS c(id, name, type, parent, kind)
  WHERE $3),
new_schema_version AS (
  INSERT INTO ducklake_schema_versions (begin_snapshot, schema_version, table_id)
  SELECT s, sv + 1, table_id FROM ids WHERE $3),
new_mapping AS (
  INSERT INTO ducklake_column_mapping (mapping_id, table_id, type)
  SELECT mapping_id, table_id, 'map_by_name' FROM ids WHERE $3 AND $8),
new_name_mapping AS (
  INSERT INTO ducklake_name_mapping (mapping_id, column_id, source_name, target_field_id,
    parent_column, is_partition)
  SELECT ids.mapping_id, c.id - 1, c.source, c.id, c.parent - 1, false
  FROM ids, unnest($9::bigint[], $14::text[], $12::bigint[]) AS c(id, source, parent)
  WHERE $3 AND $8),
new_file AS (
  INSERT INTO ducklake_data_file (data_file_id, table_id, begin_snapshot, end_snapshot,
    file_order, path, path_is_relative, file_format, record_count, file_size_bytes,
    footer_size, row_id_start, partition_id, encryption_key, mapping_id, partial_max)
  SELECT file_id, table_id, s, NULL, NULL, $4, true, 'parquet', $5, $6, $7, 0, NULL, NULL,
    mapping_id, NULL
  FROM ids WHERE $3),
new_stats AS (
  INSERT INTO ducklake_table_stats (table_id, record_count, next_row_id, file_size_bytes)
  SELECT table_id, $5, $5, $6 FROM ids WHERE $3),
new_snapshot AS (
  INSERT INTO ducklake_snapshot (snapshot_id, snapshot_time, schema_version, next_catalog_id,
    next_file_id)
  SELECT s, now(), sv + 1, next_cid, next_fid FROM ids WHERE changed),
new_changes AS (
  INSERT INTO ducklake_snapshot_changes (snapshot_id, changes_made, author, commit_message,
    commit_extra_info)
  SELECT s, concat_ws(',', (SELECT string_agg('dropped_table:' || table_id, ',') FROM old),
    CASE WHEN $3 THEN 'created_table:\"main\".' || $15 || ',inserted_into_table:' || table_id END),
    $16, $17, NULL
  FROM ids WHERE changed)
SELECT CASE WHEN changed THEN s END FROM ids";

/// Records in one new snapshot that `table` is now `file` (a save), or is gone (`None`, a
/// delete): its live version, if any, is dropped, and a new one created with the file. Under
/// `lock_key` (a transaction lock), so the store's writers take snapshot ids one at a time; a
/// DuckDB client committing at the same moment makes this transaction fail on the snapshot's
/// primary key (SQLSTATE 23505), and the caller tries again. Returns the snapshot, `None` when
/// there was nothing to record (a delete of a table the lake does not have).
pub(crate) fn replace(
    tx: &mut Transaction<'_>,
    lock_key: i64,
    table: &str,
    file: Option<&LakeFile<'_>>,
) -> Result<Option<i64>, postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key])?;
    let empty: &[Column] = &[];
    let columns = numbered(file.map_or(empty, |f| f.columns));
    let ids: Vec<i64> = columns.iter().map(|(id, _, _)| *id).collect();
    let names: Vec<&str> = columns.iter().map(|(_, _, c)| c.name.as_str()).collect();
    let types: Vec<&str> = columns
        .iter()
        .map(|(_, _, c)| c.ducklake_type.as_str())
        .collect();
    let parents: Vec<Option<i64>> = columns.iter().map(|(_, parent, _)| *parent).collect();
    // As the extension writes them: a parent's default is of no kind.
    let kinds: Vec<&str> = columns
        .iter()
        .map(|(_, _, c)| if c.children.is_empty() { "literal" } else { "" })
        .collect();
    // A list's item is found by name under the Parquet group that repeats it, `list` (as the
    // extension maps DuckDB's files: tests/python/ducklake/README.md).
    let sources: Vec<&str> = columns
        .iter()
        .map(|(_, parent, c)| {
            let in_list = parent.is_some_and(|p| {
                columns
                    .iter()
                    .any(|(id, _, c)| *id == p && c.ducklake_type == "list")
            });
            if in_list { "list" } else { c.name.as_str() }
        })
        .collect();
    let message = match file {
        Some(_) => format!("saved {table}"),
        None => format!("deleted {table}"),
    };
    let params: [(&(dyn postgres::types::ToSql + Sync), Type); 17] = [
        (&SCHEMA_ID, Type::INT8),
        (&table, Type::TEXT),
        (&file.is_some(), Type::BOOL),
        (&file.map(|f| f.name), Type::TEXT),
        (&file.map(|f| f.rows), Type::INT8),
        (&file.map(|f| f.bytes), Type::INT8),
        (&file.and_then(|f| f.footer), Type::INT8),
        (&file.is_some_and(|f| f.by_name), Type::BOOL),
        (&ids, Type::INT8_ARRAY),
        (&names, Type::TEXT_ARRAY),
        (&types, Type::TEXT_ARRAY),
        (&parents, Type::INT8_ARRAY),
        (&kinds, Type::TEXT_ARRAY),
        (&sources, Type::TEXT_ARRAY),
        (&quote_name(table), Type::TEXT),
        (&AUTHOR, Type::TEXT),
        (&message, Type::TEXT),
    ];
    Ok(tx
        .query_typed(REPLACE_SQL, &params)?
        .first()
        .and_then(|row| row.get(0)))
}

/// How often a transaction that writes a snapshot is tried when DuckDB clients keep taking
/// the lake's next snapshot id first.
const ATTEMPTS: usize = 5;

/// Runs `transaction` (one that writes a lake snapshot when `lake`), again when it lost the
/// race for the snapshot id to a DuckDB client (SQLSTATE 23505 on the snapshot's key), up to
/// [`ATTEMPTS`] times in all.
pub(crate) fn retrying<T>(
    lake: bool,
    mut transaction: impl FnMut() -> Result<T, postgres::Error>,
) -> Result<T, postgres::Error> {
    let mut attempt = 1;
    loop {
        match transaction() {
            Err(e)
                if lake
                    && attempt < ATTEMPTS
                    && e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) =>
            {
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// A row version of the lake (`x`: its table's alias) that no remaining snapshot can see:
/// ended, and no snapshot lies in `[begin_snapshot, end_snapshot)`. The extension's own rule
/// for what its `ducklake_expire_snapshots` removes.
const UNSEEN: &str = "x.end_snapshot IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ducklake_snapshot s \
     WHERE s.snapshot_id >= x.begin_snapshot AND s.snapshot_id < x.end_snapshot)";

/// What [`expire`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Expired {
    /// Snapshots removed.
    pub snapshots: u64,
    /// Data and delete files no remaining snapshot reads, by path relative to the data root;
    /// those a DuckDB client wrote are scheduled for its `ducklake_cleanup_old_files`, the
    /// store's own are left to `gc`.
    pub files: Vec<String>,
}

/// Removes the snapshots taken before `before` (always keeping the latest), as the
/// extension's `ducklake_expire_snapshots` does: their rows, and every row version (files,
/// tables, columns, what hangs on them) no remaining snapshot sees. Under `lock_key`, the
/// store's writers' lock, in the caller's transaction.
pub(crate) fn expire(
    tx: &mut Transaction<'_>,
    lock_key: i64,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<Expired, postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key])?;
    let snapshots = tx.execute(
        "DELETE FROM ducklake_snapshot WHERE snapshot_time < $1::text::timestamptz \
         AND snapshot_id < (SELECT max(snapshot_id) FROM ducklake_snapshot)",
        &[&before.to_rfc3339()],
    )?;
    if snapshots == 0 {
        return Ok(Expired::default());
    }
    tx.execute(
        "DELETE FROM ducklake_snapshot_changes c WHERE NOT EXISTS \
         (SELECT 1 FROM ducklake_snapshot s WHERE s.snapshot_id = c.snapshot_id)",
        &[],
    )?;
    // The files first, while their tables' rows still give their paths.
    let files_sql = format!(
        "WITH gone AS (DELETE FROM ducklake_data_file x WHERE {UNSEEN} \
           RETURNING x.data_file_id, x.table_id, x.path, x.path_is_relative), \
         gone_deletes AS (DELETE FROM ducklake_delete_file x WHERE {UNSEEN} \
           RETURNING x.delete_file_id, x.table_id, x.path, x.path_is_relative), \
         stats AS (DELETE FROM ducklake_file_column_stats c \
           WHERE c.data_file_id IN (SELECT data_file_id FROM gone)), \
         variant_stats AS (DELETE FROM ducklake_file_variant_stats c \
           WHERE c.data_file_id IN (SELECT data_file_id FROM gone)), \
         partition_values AS (DELETE FROM ducklake_file_partition_value c \
           WHERE c.data_file_id IN (SELECT data_file_id FROM gone)), \
         paths AS ( \
           SELECT g.data_file_id AS id, \
             (SELECT s.path || t.path FROM ducklake_table t \
              JOIN ducklake_schema s ON s.schema_id = t.schema_id \
              WHERE t.table_id = g.table_id AND t.path_is_relative AND s.path_is_relative \
              ORDER BY t.begin_snapshot DESC LIMIT 1) || g.path AS path \
           FROM gone g WHERE g.path_is_relative \
           UNION ALL \
           SELECT g.delete_file_id, \
             (SELECT s.path || t.path FROM ducklake_table t \
              JOIN ducklake_schema s ON s.schema_id = t.schema_id \
              WHERE t.table_id = g.table_id AND t.path_is_relative AND s.path_is_relative \
              ORDER BY t.begin_snapshot DESC LIMIT 1) || g.path \
           FROM gone_deletes g WHERE g.path_is_relative), \
         scheduled AS (INSERT INTO ducklake_files_scheduled_for_deletion \
           (data_file_id, path, path_is_relative, schedule_start) \
           SELECT id, path, true, now() FROM paths \
           WHERE path IS NOT NULL AND {FOREIGN}) \
         SELECT path FROM paths WHERE path IS NOT NULL",
        FOREIGN = "path ~ '(^|/)ducklake-[^/]*$'"
    );
    let files = tx
        .query(&files_sql, &[])?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for statement in [
        "DELETE FROM ducklake_column x WHERE {UNSEEN}",
        "DELETE FROM ducklake_partition_info x WHERE {UNSEEN}",
        "DELETE FROM ducklake_column_tag x WHERE {UNSEEN}",
        "DELETE FROM ducklake_tag x WHERE {UNSEEN}",
        "DELETE FROM ducklake_sort_info x WHERE {UNSEEN}",
        "DELETE FROM ducklake_table x WHERE {UNSEEN}",
        "DELETE FROM ducklake_view x WHERE {UNSEEN}",
        "DELETE FROM ducklake_macro x WHERE {UNSEEN}",
        "DELETE FROM ducklake_schema x WHERE {UNSEEN}",
        "DELETE FROM ducklake_macro_impl m WHERE NOT EXISTS \
         (SELECT 1 FROM ducklake_macro x WHERE x.macro_id = m.macro_id)",
        "DELETE FROM ducklake_macro_parameters m WHERE NOT EXISTS \
         (SELECT 1 FROM ducklake_macro x WHERE x.macro_id = m.macro_id)",
    ] {
        tx.execute(&statement.replace("{UNSEEN}", UNSEEN), &[])?;
    }
    // A table no remaining snapshot sees at all: what hangs on its id goes too, and its
    // inlined rows (the extension's own tables, named in the catalog).
    let dead = "NOT EXISTS (SELECT 1 FROM ducklake_table t WHERE t.table_id = x.table_id)";
    let inlined: Vec<String> = tx
        .query(
            &format!("SELECT x.table_name FROM ducklake_inlined_data_tables x WHERE {dead}"),
            &[],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for name in inlined {
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", quote_name(&name)))?;
    }
    for table in [
        "ducklake_column",
        "ducklake_table_stats",
        "ducklake_table_column_stats",
        "ducklake_schema_versions",
        "ducklake_inlined_data_tables",
        "ducklake_partition_column",
        "ducklake_sort_expression",
    ] {
        tx.execute(&format!("DELETE FROM {table} x WHERE {dead}"), &[])?;
    }
    tx.execute(
        &format!(
            "WITH gone AS (DELETE FROM ducklake_column_mapping x WHERE {dead} RETURNING mapping_id) \
             DELETE FROM ducklake_name_mapping n WHERE n.mapping_id IN (SELECT mapping_id FROM gone)"
        ),
        &[],
    )?;
    Ok(Expired { snapshots, files })
}

/// The paths (relative to the data path) of every data file any snapshot of `table` names:
/// files a retained snapshot can still read, which `gc` must leave alone.
pub(crate) fn files_of(
    client: &mut postgres::Client,
    table: &str,
) -> Result<Vec<String>, postgres::Error> {
    // By directory, not name: a table a DuckDB client renamed keeps its files where they were.
    Ok(client
        .query(
            "SELECT DISTINCT s.path || t.path || f.path FROM ducklake_data_file f \
             JOIN ducklake_table t ON t.table_id = f.table_id \
             JOIN ducklake_schema s ON s.schema_id = t.schema_id \
             WHERE s.path || t.path = $1 AND f.path_is_relative AND t.path_is_relative \
             AND s.path_is_relative",
            &[&format!("{SCHEMA_PATH}{table}/")],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// The names of the lake's live tables this store may hold (schema `main`), as a query; with
/// `$1` as the one name asked for when `one_table`.
pub(crate) fn tables_sql(one_table: bool) -> String {
    format!(
        "SELECT table_name FROM ducklake_table WHERE schema_id = {SCHEMA_ID} \
         AND end_snapshot IS NULL{}",
        if one_table {
            " AND table_name = $1"
        } else {
            ""
        }
    )
}

/// The columns that say what the lake holds under the name `name` (an SQL expression) beside
/// the store's catalog row whose file is `path`, decoded by [`Held::from_row`]; `join` goes
/// into the query's `FROM` after the tables that define `name` and `path`.
pub(crate) fn held_sql(name: &str, path: &str) -> (String, String) {
    let columns = format!(
        "l.table_id::text, l.files, l.file, l.deletes, l.columns_changed, l.inlined, \
         l.changed, l.record_count::text, EXISTS (SELECT 1 FROM ducklake_data_file d \
         JOIN ducklake_table t ON t.table_id = d.table_id \
         JOIN ducklake_schema s ON s.schema_id = t.schema_id \
         WHERE t.table_name = {name} AND s.path || t.path || d.path = {path})"
    );
    // The live table of that name: its files, whether anything beyond one Parquet file holds
    // its rows (deletions, rows inlined into the catalog, columns changed since it was
    // made), and when it last changed (its latest snapshot naming its id, or its creation).
    // `OFFSET 0` keeps the planner from pulling the subquery up into a join, which would judge
    // every live table of the lake to answer for one.
    let join = format!(
        "LEFT JOIN LATERAL (SELECT t.table_id, \
         (SELECT count(*) FROM ducklake_data_file d \
          WHERE d.table_id = t.table_id AND d.end_snapshot IS NULL) AS files, \
         (SELECT min(s.path || t.path || d.path) FROM ducklake_data_file d \
          WHERE d.table_id = t.table_id AND d.end_snapshot IS NULL AND d.path_is_relative \
          AND t.path_is_relative AND s.path_is_relative) AS file, \
         EXISTS (SELECT 1 FROM ducklake_delete_file d \
          WHERE d.table_id = t.table_id AND d.end_snapshot IS NULL) AS deletes, \
         EXISTS (SELECT 1 FROM ducklake_column d WHERE d.table_id = t.table_id \
          AND (d.end_snapshot IS NOT NULL OR d.begin_snapshot <> (SELECT min(b.begin_snapshot) \
          FROM ducklake_table b WHERE b.table_id = t.table_id))) AS columns_changed, \
         EXISTS (SELECT 1 FROM ducklake_snapshot_changes d WHERE d.snapshot_id >= t.begin_snapshot \
          AND d.changes_made ~ ('(^|,)inline[a-z_]*:' || t.table_id || '(,|$)')) AS inlined, \
         (SELECT to_char(n.snapshot_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
          FROM ducklake_snapshot n WHERE n.snapshot_id = GREATEST(t.begin_snapshot, \
          (SELECT max(d.snapshot_id) FROM ducklake_snapshot_changes d \
           WHERE d.snapshot_id >= t.begin_snapshot \
           AND d.changes_made ~ (':' || t.table_id || '(,|$)')))) AS changed, \
         (SELECT st.record_count FROM ducklake_table_stats st WHERE st.table_id = t.table_id) \
          AS record_count \
         FROM ducklake_table t JOIN ducklake_schema s ON s.schema_id = t.schema_id \
         WHERE t.schema_id = {SCHEMA_ID} AND t.table_name = {name} AND t.end_snapshot IS NULL \
         OFFSET 0) l ON true"
    );
    (columns, join)
}

/// What the lake holds under a table's name, beside the store's catalog row (see
/// [`held_sql`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// Whether the lake has a live table of the name.
    live: bool,
    /// Its live data files.
    files: i64,
    /// One of them (relative to the data root).
    file: Option<String>,
    /// Why its rows are more than that one file, if they are.
    beyond_file: Option<&'static str>,
    /// When it last changed, in UTC (`YYYY-MM-DD HH:MM:SS.ffffff`).
    changed: Option<String>,
    /// Its rows, as the lake counts them.
    rows: Option<String>,
    /// Whether the store's registered file is, or was, a file of a lake table of the name.
    registered: bool,
}

/// What a table is, judged by the lake beside the store's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The lake holds exactly the store's registered file, or (for a table the lake could not
    /// hold) nothing: the catalog row is the truth.
    Agrees,
    /// The lake's table of the name was dropped by another writer: the checkpoint is gone.
    Dropped,
    /// Another writer made or changed the lake's table of the name: the lake's version is the
    /// table now, saved at `changed` (UTC) without a key.
    Changed {
        /// Its one data file, or why it is not one plain Parquet file this store reads.
        file: std::result::Result<String, String>,
        /// When it last changed, in UTC text.
        changed: Option<String>,
        /// Its rows, as the lake counts them.
        rows: Option<String>,
    },
}

impl Held {
    /// Decodes the columns of [`held_sql`], starting at `at`.
    pub fn from_row(row: &postgres::Row, at: usize) -> Held {
        let flag = |i: usize| row.get::<_, Option<bool>>(at + i).unwrap_or(false);
        let beyond_file = if flag(3) {
            Some("rows deleted by another writer")
        } else if flag(5) {
            Some("rows inlined into the catalog")
        } else if flag(4) {
            Some("columns changed since it was made")
        } else {
            None
        };
        Held {
            live: row.get::<_, Option<String>>(at).is_some(),
            files: row.get::<_, Option<i64>>(at + 1).unwrap_or(0),
            file: row.get(at + 2),
            beyond_file,
            changed: row.get(at + 6),
            rows: row.get(at + 7),
            registered: flag(8),
        }
    }

    /// The verdict for the catalog row whose registered file is `path` (`None`: the catalog
    /// has no row of the name).
    pub fn verdict(&self, path: Option<&str>) -> Verdict {
        if !self.live {
            return match self.registered {
                true => Verdict::Dropped,
                false => Verdict::Agrees,
            };
        }
        let file = match (self.files, &self.file, self.beyond_file) {
            (_, _, Some(why)) => Err(why.to_owned()),
            (1, Some(file), None) => Ok(file.clone()),
            (0, _, None) => Err("no data file (its rows, if any, are in the catalog)".to_owned()),
            (1, None, None) => Err("its file is not under the data root".to_owned()),
            (n, _, None) => Err(format!("{n} data files")),
        };
        match file {
            Ok(file) if path == Some(file.as_str()) => Verdict::Agrees,
            file => Verdict::Changed {
                file,
                changed: self.changed.clone(),
                rows: self.rows.clone(),
            },
        }
    }
}

/// `name` as a SQL identifier in double quotes, as `changes_made` spells table names.
fn quote_name(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The DuckLake name of a flat DuckDB column type (as `DESCRIBE` shows it), `None` for a type
/// the lake cannot hold as this store writes it: structs and maps (not yet mapped), HUGEINT
/// (written to Parquet as a double), enums, unions, bit strings, fixed-size arrays.
fn ducklake_type(duckdb_type: &str) -> Option<String> {
    let flat = match duckdb_type {
        "BOOLEAN" => "boolean",
        "TINYINT" => "int8",
        "SMALLINT" => "int16",
        "INTEGER" => "int32",
        "BIGINT" => "int64",
        "UTINYINT" => "uint8",
        "USMALLINT" => "uint16",
        "UINTEGER" => "uint32",
        "UBIGINT" => "uint64",
        "FLOAT" => "float32",
        "DOUBLE" => "float64",
        "DATE" => "date",
        "TIME" => "time",
        "TIME_NS" => "time_ns",
        "TIME WITH TIME ZONE" => "timetz",
        "TIMESTAMP" => "timestamp",
        "TIMESTAMP_S" => "timestamp_s",
        "TIMESTAMP_MS" => "timestamp_ms",
        "TIMESTAMP_NS" => "timestamp_ns",
        "TIMESTAMP WITH TIME ZONE" => "timestamptz",
        "INTERVAL" => "interval",
        "VARCHAR" => "varchar",
        "BLOB" => "blob",
        "UUID" => "uuid",
        "JSON" => "json",
        other => {
            let (precision, scale) = other
                .strip_prefix("DECIMAL(")?
                .strip_suffix(')')?
                .split_once(',')?;
            let (precision, scale): (u8, u8) =
                (precision.trim().parse().ok()?, scale.trim().parse().ok()?);
            return Some(format!("decimal({precision},{scale})"));
        }
    };
    Some(flat.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duckdb_types_map_to_ducklake_names() {
        for (duck, lake) in [
            ("BIGINT", Some("int64")),
            ("DOUBLE", Some("float64")),
            ("VARCHAR", Some("varchar")),
            ("TIMESTAMP WITH TIME ZONE", Some("timestamptz")),
            ("TIMESTAMP_NS", Some("timestamp_ns")),
            ("DECIMAL(18,3)", Some("decimal(18,3)")),
            ("DECIMAL(18, 3)", Some("decimal(18,3)")),
            ("HUGEINT", None),
            ("BIGINT[]", None), // a list: see `Column::of`
            ("STRUCT(a INTEGER)", None),
            ("ENUM('a', 'b')", None),
        ] {
            assert_eq!(ducklake_type(duck).as_deref(), lake, "{duck}");
        }
    }

    #[test]
    fn lists_are_numbered_parents_first_and_get_nested_field_ids() {
        let columns: Vec<Column> = [
            ("a", "BIGINT"),
            ("it's", "VARCHAR[]"),
            ("m", "INTEGER[][]"),
            ("z", "DOUBLE"),
        ]
        .iter()
        .map(|(n, t)| Column::of(n, t).unwrap())
        .collect();
        let ids: Vec<(i64, Option<i64>, &str, &str)> = numbered(&columns)
            .into_iter()
            .map(|(id, parent, c)| (id, parent, c.name.as_str(), c.ducklake_type.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                (1, None, "a", "int64"),
                (2, None, "it's", "list"),
                (3, Some(2), "element", "varchar"),
                (4, None, "m", "list"),
                (5, Some(4), "element", "list"),
                (6, Some(5), "element", "int32"),
                (7, None, "z", "float64"),
            ]
        );
        assert_eq!(
            field_ids(&columns),
            "{'a': 1, 'it''s': {'__duckdb_field_id': 2, 'element': 3}, \
             'm': {'__duckdb_field_id': 4, 'element': {'__duckdb_field_id': 5, 'element': 6}}, 'z': 7}"
        );
        assert_eq!(Column::of("x", "INTEGER[3]"), None);
        assert_eq!(Column::of("x", "STRUCT(a INTEGER)[]"), None);
    }

    #[test]
    fn table_names_are_quoted_as_the_extension_quotes_them() {
        assert_eq!(quote_name("genes"), "\"genes\"");
        assert_eq!(quote_name("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn the_ddl_is_the_extensions_28_tables() {
        assert_eq!(
            DDL.matches("CREATE TABLE IF NOT EXISTS ducklake_").count(),
            28
        );
    }
}
