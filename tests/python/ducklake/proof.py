"""Proof that an outside writer (plain SQL over a PostgreSQL client + Parquet files written by a
DuckDB that has NO ducklake extension) produces a DuckLake 1.0 catalog that the real ducklake
extension (DuckDB 1.5.5, ducklake d8a1881e) attaches and reads, with history.

  writer side : psycopg2 (stands for the Rust `postgres` client) + duckdb.connect() with no
                extension loaded (stands for the bundled DuckDB 2.0) writing
                COPY ... TO (FORMAT parquet, FIELD_IDS {...}, RETURN_STATS)
  reader side : a fresh duckdb.connect() per check, LOAD ducklake + postgres_scanner, ATTACH.

Run: /tmp/dlvenv/bin/python proof.py  (needs the .ci/postgres server whose URL is in /tmp/pgdl/url)
"""
import glob
import os
import shutil
import sys
import uuid

import duckdb
import psycopg2

URL = open('/tmp/pgdl/url').read().strip()
PORT = int(URL.rsplit(':', 1)[1].split('/')[0])
SITE = glob.glob('/tmp/dlvenv/lib/python3*/site-packages')[0]
EXT = {n: f'{SITE}/duckdb_extension_{n}/extensions/v1.5.5/{n}.duckdb_extension'
       for n in ('ducklake', 'postgres_scanner')}
HERE = os.path.dirname(os.path.abspath(__file__))
DDL = open(os.path.join(HERE, 'writer-ddl.sql')).read()


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------------------------------------
# The writer: what our Rust code would do.
# ------------------------------------------------------------------------------------------------
class Writer:
    def __init__(self, schema, root, schema_path='tables/'):
        self.schema = schema                # metadata schema, e.g. lakeP
        self.s = f'"{schema}"'              # quoted as the extension quotes it
        self.root = root                    # data root, ends in '/'
        self.schema_path = schema_path      # schema 'main' path, relative to the root
        self.pg = psycopg2.connect(host='127.0.0.1', port=PORT, user='usher', dbname='usher')
        self.duck = duckdb.connect()        # no extension: only COPY TO parquet

    def create_catalog(self):
        cur = self.pg.cursor()
        cur.execute(f'DROP SCHEMA IF EXISTS {self.s} CASCADE')
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root)
        sql = (DDL.replace('__SCHEMA__', self.s)
               .replace('__DATA_PATH__', "'" + self.root + "'")
               .replace('__SCHEMA_PATH__', "'" + self.schema_path + "'")
               .replace('__CREATED_BY__', "'usher-pipeline 0.x (outside writer)'"))
        cur.execute(sql)                    # one transaction: all or nothing
        self.pg.commit()

    # -- Parquet --------------------------------------------------------------------------------
    def write_file(self, table, select_sql, columns):
        """Writes select_sql to <root>/<schema_path><table>/<uuid>.parquet with field ids =
        column ids; returns what RETURN_STATS reports."""
        field_ids = '{' + ', '.join(f'"{c["name"]}": {c["id"]}' for c in columns) + '}'
        name = f'usher-{uuid.uuid4()}.parquet'
        directory = os.path.join(self.root, self.schema_path, table)
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        row = self.duck.execute(
            f"COPY ({select_sql}) TO '{path}' (FORMAT parquet, COMPRESSION zstd, "
            f"PARQUET_VERSION v2, FIELD_IDS {field_ids}, RETURN_STATS)").fetchone()
        _, count, size, footer, stats, _ = row
        assert size == os.path.getsize(path)
        return dict(name=name, path=path, count=count, size=size, footer=footer, stats=stats)

    # -- one snapshot = one PostgreSQL transaction ---------------------------------------------
    def commit(self, build, author='usher-pipeline', message=None, extra=None):
        cur = self.pg.cursor()
        cur.execute(f'SELECT snapshot_id, schema_version, next_catalog_id, next_file_id '
                    f'FROM {self.s}.ducklake_snapshot ORDER BY snapshot_id DESC LIMIT 1')
        sid, sv, ncat, nfile = cur.fetchone()
        snap = dict(id=sid + 1, schema_version=sv, next_catalog_id=ncat, next_file_id=nfile)
        changes = build(cur, snap)
        cur.execute(f'INSERT INTO {self.s}.ducklake_snapshot VALUES (%s, NOW(), %s, %s, %s)',
                    (snap['id'], snap['schema_version'], snap['next_catalog_id'], snap['next_file_id']))
        cur.execute(f'INSERT INTO {self.s}.ducklake_snapshot_changes VALUES (%s, %s, %s, %s, %s)',
                    (snap['id'], ','.join(changes), author, message, extra))
        self.pg.commit()                    # a concurrent writer loses on the snapshot_id PK
        return snap['id']

    # -- operations -----------------------------------------------------------------------------
    def create_table(self, cur, snap, name, columns, file):
        table_id = snap['next_catalog_id']
        snap['next_catalog_id'] += 1
        snap['schema_version'] += 1
        S = snap['id']
        cur.execute(f'INSERT INTO {self.s}.ducklake_table VALUES (%s, %s, %s, NULL, 0, %s, %s, true)',
                    (table_id, str(uuid.uuid4()), S, name, name + '/'))
        for order, c in enumerate(columns, 1):
            cur.execute(f"INSERT INTO {self.s}.ducklake_column VALUES "
                        f"(%s, %s, NULL, %s, %s, %s, %s, NULL, 'NULL', true, NULL, 'literal', 'duckdb')",
                        (c['id'], S, table_id, order, c['name'], c['type']))
        cur.execute(f'INSERT INTO {self.s}.ducklake_schema_versions VALUES (%s, %s, %s)',
                    (S, snap['schema_version'], table_id))
        self.add_file(cur, snap, table_id, columns, file, row_id_start=0)
        cur.execute(f'INSERT INTO {self.s}.ducklake_table_stats VALUES (%s, %s, %s, %s)',
                    (table_id, file['count'], file['count'], file['size']))
        for c in columns:
            st = file['stats'].get(f'"{c["name"]}"', {})
            cur.execute(f'INSERT INTO {self.s}.ducklake_table_column_stats VALUES (%s, %s, %s, %s, %s, %s, NULL)',
                        (table_id, c['id'], int(st.get('null_count', 1)) > 0, nan(st),
                         st.get('min'), st.get('max')))
        return table_id, [f'created_table:"main"."{name}"', f'inserted_into_table:{table_id}']

    def add_file(self, cur, snap, table_id, columns, file, row_id_start):
        file_id = snap['next_file_id']
        snap['next_file_id'] += 1
        cur.execute(f"INSERT INTO {self.s}.ducklake_data_file VALUES "
                    f"(%s, %s, %s, NULL, NULL, %s, true, 'parquet', %s, %s, %s, %s, NULL, NULL, NULL, NULL)",
                    (file_id, table_id, snap['id'], file['name'], file['count'], file['size'],
                     file['footer'], row_id_start))
        for c in columns:
            st = file['stats'].get(f'"{c["name"]}"')
            if st is None:
                continue
            num, nulls = int(st['num_values']), int(st['null_count'])
            cur.execute(f'INSERT INTO {self.s}.ducklake_file_column_stats VALUES '
                        f'(%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL)',
                        (file_id, table_id, c['id'], int(st['column_size_bytes']), num - nulls, nulls,
                         st.get('min'), st.get('max'), nan(st)))
        return file_id

    def replace_in_place(self, cur, snap, table_id, columns, file, widen=True):
        """Same schema: the table keeps its id, the old file is closed, the new one added."""
        S = snap['id']
        cur.execute(f'UPDATE {self.s}.ducklake_data_file SET end_snapshot = %s '
                    f'WHERE table_id = %s AND end_snapshot IS NULL', (S, table_id))
        cur.execute(f'SELECT record_count, next_row_id, file_size_bytes FROM {self.s}.ducklake_table_stats '
                    f'WHERE table_id = %s', (table_id,))
        records, next_row_id, size = cur.fetchone()
        self.add_file(cur, snap, table_id, columns, file, row_id_start=next_row_id)
        # as the extension does: record_count counts every row ever inserted (it then differs from
        # the live count, which keeps MIN/MAX from being answered from these bounds), and the
        # column bounds only widen (they are not versioned: time travel sees them too).
        cur.execute(f'UPDATE {self.s}.ducklake_table_stats SET record_count = %s, next_row_id = %s, '
                    f'file_size_bytes = %s WHERE table_id = %s',
                    (records + file['count'], next_row_id + file['count'], size + file['size'], table_id))
        for c in columns:
            st = file['stats'].get(f'"{c["name"]}"', {})
            cur.execute(f'SELECT contains_null, contains_nan, min_value, max_value FROM '
                        f'{self.s}.ducklake_table_column_stats WHERE table_id = %s AND column_id = %s',
                        (table_id, c['id']))
            old = cur.fetchone()
            new = (int(st.get('null_count', 1)) > 0, nan(st), st.get('min'), st.get('max'))
            if widen and old is not None:
                new = (old[0] or new[0], (old[1] or new[1]) if None not in (old[1], new[1]) else None,
                       self.bound(c['type'], old[2], new[2], min), self.bound(c['type'], old[3], new[3], max))
            cur.execute(f'DELETE FROM {self.s}.ducklake_table_column_stats WHERE table_id = %s AND column_id = %s',
                        (table_id, c['id']))
            cur.execute(f'INSERT INTO {self.s}.ducklake_table_column_stats VALUES (%s, %s, %s, %s, %s, %s, NULL)',
                        (table_id, c['id']) + new)
        return [f'inserted_into_table:{table_id}', f'deleted_from_table:{table_id}']

    def bound(self, ducklake_type, a, b, pick):
        if a is None or b is None:
            return None                     # unknown stays unknown
        duck_type = {'int64': 'BIGINT', 'float64': 'DOUBLE', 'varchar': 'VARCHAR', 'boolean': 'BOOLEAN',
                     'date': 'DATE', 'timestamp': 'TIMESTAMP', 'int32': 'INTEGER'}[ducklake_type]
        lower = self.duck.execute(f'SELECT TRY_CAST(? AS {duck_type}) <= TRY_CAST(? AS {duck_type})',
                                  [a, b]).fetchone()[0]
        return (a if lower else b) if pick is min else (b if lower else a)

    def drop_table(self, cur, snap, table_id):
        S = snap['id']
        for t, key in (('ducklake_table', 'table_id'), ('ducklake_column', 'table_id'),
                       ('ducklake_data_file', 'table_id'), ('ducklake_delete_file', 'table_id'),
                       ('ducklake_partition_info', 'table_id'), ('ducklake_column_tag', 'table_id'),
                       ('ducklake_tag', 'object_id')):
            cur.execute(f'UPDATE {self.s}.{t} SET end_snapshot = %s WHERE {key} = %s AND end_snapshot IS NULL',
                        (S, table_id))
        snap['schema_version'] += 1
        return [f'dropped_table:{table_id}']


def nan(st):
    return None if 'has_nan' not in st else st['has_nan'] == 'true'


# ------------------------------------------------------------------------------------------------
# The reader: the real extension, a fresh DuckDB instance each time (no caches carried over).
# ------------------------------------------------------------------------------------------------
def reader(schema, options=''):
    con = duckdb.connect()
    con.execute(f"LOAD '{EXT['ducklake']}'; LOAD '{EXT['postgres_scanner']}'")
    con.execute(f"ATTACH 'ducklake:postgres:dbname=usher host=127.0.0.1 port={PORT} user=usher' AS lake "
                f"(METADATA_SCHEMA '{schema}'{options})")
    return con


def show(con, sql):
    log(f'  > {sql}')
    try:
        rel = con.sql(sql)
        if rel is None:
            log('      ok')
            return
        for row in rel.fetchall():
            log(f'      {row}')
    except Exception as e:  # noqa: BLE001 - we print what the reader says
        log(f'      ERROR {type(e).__name__}: ' + ' | '.join(l for l in str(e).splitlines() if l.strip())[:400])


T1 = """SELECT * FROM (VALUES
   (1::BIGINT, 1.5::DOUBLE, 'alpha'::VARCHAR, true, DATE '2024-01-02', TIMESTAMP '2024-01-02 03:04:05.123456'),
   (2, -2.25, 'beta', false, DATE '1999-12-31', TIMESTAMP '1999-12-31 23:59:59'),
   (3, NULL, NULL, NULL, NULL, NULL)) v(id, score, name, flag, day, ts)"""
T2 = """SELECT * FROM (VALUES
   (10::BIGINT, 0.5::DOUBLE, 'gamma'::VARCHAR, false, DATE '2025-01-01', TIMESTAMP '2025-01-01 00:00:00'),
   (11, 'nan'::DOUBLE, 'delta', true, DATE '2025-02-01', NULL)) v(id, score, name, flag, day, ts)"""
T3 = """SELECT * FROM (VALUES
   ('a1'::VARCHAR, 0.5::DOUBLE, 'eta'::VARCHAR, DATE '2026-01-01', TIMESTAMP '2026-01-01 00:00:00', 42::INTEGER),
   ('a2', 2.5, 'theta', DATE '2026-02-01', NULL, NULL)) v(id, score, name, day, ts, extra)"""
COLS1 = [dict(id=1, name='id', type='int64'), dict(id=2, name='score', type='float64'),
         dict(id=3, name='name', type='varchar'), dict(id=4, name='flag', type='boolean'),
         dict(id=5, name='day', type='date'), dict(id=6, name='ts', type='timestamp')]
COLS3 = [dict(id=1, name='id', type='varchar'), dict(id=2, name='score', type='float64'),
         dict(id=3, name='name', type='varchar'), dict(id=4, name='day', type='date'),
         dict(id=5, name='ts', type='timestamp'), dict(id=6, name='extra', type='int32')]


def main_proof():
    log('=' * 100)
    log('PART 1: one table, a create, an in-place replacement, a replacement with a new schema')
    log('=' * 100)
    w = Writer('lakeP', '/tmp/dlproof/')
    w.create_catalog()
    f1 = w.write_file('t', T1, COLS1)
    log(f'file 1: {f1["name"]} rows={f1["count"]} size={f1["size"]} footer={f1["footer"]}')
    state = {}

    def s1(cur, snap):
        state['t'], changes = w.create_table(cur, snap, 't', COLS1, f1)
        return changes
    v1 = w.commit(s1, message='save t', extra='{"key": "abc"}')

    f2 = w.write_file('t', T2, COLS1)
    v2 = w.commit(lambda cur, snap: w.replace_in_place(cur, snap, state['t'], COLS1, f2), message='save t')

    f3 = w.write_file('t', T3, COLS3)

    def s3(cur, snap):
        changes = w.drop_table(cur, snap, state['t'])
        state['t'], more = w.create_table(cur, snap, 't', COLS3, f3)
        return changes + more
    v3 = w.commit(s3, message='save t (new schema)')
    log(f'snapshots written: {v1}, {v2}, {v3}')
    log('rows our writer wrote (every non-empty ducklake_* table):')
    cur = w.pg.cursor()
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (w.schema,))
    for (t,) in cur.fetchall():
        cur.execute(f'SELECT * FROM {w.s}.{t}')
        rows = cur.fetchall()
        if rows:
            log(f'  -- {t}: ' + ', '.join(d[0] for d in cur.description))
            for r in rows:
                log('     ' + ' | '.join(str(v) if not hasattr(v, 'isoformat') else v.isoformat() for v in r))
    w.pg.commit()

    con = reader('lakeP')
    show(con, "SELECT * FROM lake.t")
    show(con, f"SELECT * FROM lake.t AT (VERSION => {v1})")
    show(con, f"SELECT * FROM lake.t AT (VERSION => {v2})")
    show(con, f"SELECT * FROM lake.t AT (VERSION => {v1}) WHERE id = 2")
    show(con, f"SELECT count(*), min(id), max(id) FROM lake.t AT (VERSION => {v2})")
    show(con, "SELECT count(*), min(extra), max(extra) FROM lake.t")
    show(con, f"SELECT count(*) FROM lake.t AT (VERSION => {v2}) WHERE score = 'nan'::DOUBLE")
    show(con, "SELECT snapshot_id, schema_version, changes, author, commit_message, commit_extra_info "
              "FROM ducklake_snapshots('lake') ORDER BY snapshot_id")
    show(con, "SELECT table_name, table_id, file_count, file_size_bytes FROM ducklake_table_info('lake')")
    show(con, "SELECT data_file, data_file_size_bytes, data_file_footer_size FROM ducklake_list_files('lake', 't')")
    show(con, f"SELECT * FROM ducklake_table_insertions('lake', 'main', 't', {v3}, {v3})")
    con.close()

    log('')
    log('PART 2: the extension writes into the same lake after us, then we write after it')
    con = reader('lakeP')
    con.execute('SET ducklake_default_data_inlining_row_limit = 0')
    show(con, "CREATE TABLE lake.other AS SELECT range AS x FROM range(3)")
    show(con, "INSERT INTO lake.t VALUES ('a3', 9.5, 'iota', DATE '2027-01-01', NULL, 7)")
    con.close()
    f4 = w.write_file('t', T3, COLS3)
    w.commit(lambda cur, snap: w.replace_in_place(cur, snap, state['t'], COLS3, f4), message='save t again')
    con = reader('lakeP')
    show(con, "SELECT * FROM lake.t")
    show(con, "SELECT * FROM lake.other")
    show(con, "SELECT snapshot_id, schema_version, changes FROM ducklake_snapshots('lake') ORDER BY snapshot_id")
    con.close()
    w.commit(lambda cur, snap: w.drop_table(cur, snap, state['t']), message='drop t')
    con = reader('lakeP')
    show(con, "SHOW TABLES FROM lake")
    show(con, f"SELECT count(*) FROM lake.t AT (VERSION => {v3})")
    show(con, "CALL ducklake_expire_snapshots('lake', older_than => now())")
    show(con, "SELECT count(*) FROM ducklake_snapshots('lake')")
    show(con, "CALL ducklake_cleanup_old_files('lake', cleanup_all => true)")
    con.close()
    log('  files left under the root: ' + str(sorted(
        os.path.relpath(os.path.join(d, f), w.root) for d, _, fs in os.walk(w.root) for f in fs)))


def hazards():
    log('')
    log('=' * 100)
    log('PART 3: what the reader checks (each check on a fresh lake "lakeH", fresh DuckDB instance)')
    log('=' * 100)
    w = Writer('lakeH', '/tmp/dlhazard/')

    def fresh(select=T1, cols=COLS1):
        w.create_catalog()
        f = w.write_file('t', select, cols)
        ids = {}

        def s(cur, snap):
            ids['t'], changes = w.create_table(cur, snap, 't', cols, f)
            return changes
        ids['v'] = w.commit(s)
        return f, ids

    def sql(statement, args=()):
        cur = w.pg.cursor()
        cur.execute(statement.replace('{S}', w.s), args)
        w.pg.commit()

    for label, change in [('footer_size + 1', 'footer_size = footer_size + 1'),
                          ('footer_size - 1', 'footer_size = footer_size - 1'),
                          ('footer_size NULL', 'footer_size = NULL'),
                          ('footer_size = 8 (far too small)', 'footer_size = 8'),
                          ('file_size_bytes + 10', 'file_size_bytes = file_size_bytes + 10'),
                          ('file_size_bytes - 1', 'file_size_bytes = file_size_bytes - 1'),
                          ('record_count + 5 (count(*) comes from the catalog)', 'record_count = record_count + 5'),
                          ('row_id_start NULL', 'row_id_start = NULL')]:
        fresh()
        sql(f'UPDATE {{S}}.ducklake_data_file SET {change}')
        log(f'-- data_file.{label}')
        con = reader('lakeH')
        show(con, 'SELECT count(*) FROM lake.t')
        show(con, 'SELECT count(*), sum(id) FROM lake.t')
        show(con, 'SELECT * FROM lake.t WHERE id >= 2')
        if 'row_id' in label:
            show(con, 'SELECT rowid, id FROM lake.t')
        con.close()

    log('-- file_column_stats NULL min/max/value_count/null_count/contains_nan (no pruning, still right)')
    fresh()
    sql('UPDATE {S}.ducklake_file_column_stats SET min_value = NULL, max_value = NULL, value_count = NULL, '
        'null_count = NULL, contains_nan = NULL')
    con = reader('lakeH')
    show(con, 'SELECT count(*) FROM lake.t WHERE id = 2')
    show(con, 'SELECT count(*) FROM lake.t WHERE name IS NULL')
    con.close()

    log('-- file_column_stats missing rows entirely')
    fresh()
    sql('DELETE FROM {S}.ducklake_file_column_stats')
    con = reader('lakeH')
    show(con, 'SELECT count(*) FROM lake.t WHERE id = 2')
    con.close()

    log('-- file_column_stats WRONG max (id max 1 while 2 and 3 exist): files are pruned')
    fresh()
    sql("UPDATE {S}.ducklake_file_column_stats SET max_value = '1' WHERE column_id = 1")
    con = reader('lakeH')
    show(con, 'SELECT count(*) FROM lake.t WHERE id = 2')
    con.close()

    log('-- file_column_stats value_count = 0 for a column that has values')
    fresh()
    sql("UPDATE {S}.ducklake_file_column_stats SET value_count = 0 WHERE column_id = 1")
    con = reader('lakeH')
    show(con, 'SELECT count(*) FROM lake.t WHERE id = 2')
    show(con, 'SELECT count(*) FROM lake.t WHERE id IS NOT NULL')
    con.close()

    log('-- file_column_stats min/max text that does not cast (id min \'abc\')')
    fresh()
    sql("UPDATE {S}.ducklake_file_column_stats SET min_value = 'abc' WHERE column_id = 1")
    con = reader('lakeH')
    show(con, 'SELECT count(*) FROM lake.t WHERE id = 2')
    con.close()

    log('-- boolean stats written as true/false instead of 0/1')
    fresh()
    sql("UPDATE {S}.ducklake_file_column_stats SET min_value = 'false', max_value = 'true' WHERE column_id = 4")
    sql("UPDATE {S}.ducklake_table_column_stats SET min_value = 'false', max_value = 'true' WHERE column_id = 4")
    con = reader('lakeH')
    show(con, 'SELECT count(*) FROM lake.t WHERE flag = true')
    con.close()

    log('-- table_column_stats: a bound that is not exact while table_stats.record_count == live rows')
    fresh()
    sql("UPDATE {S}.ducklake_table_column_stats SET min_value = '-100' WHERE column_id = 1")
    con = reader('lakeH')
    show(con, 'SELECT min(id), max(id) FROM lake.t')
    con.close()
    log('-- ... the same bound with record_count larger than the live rows (as after a replacement)')
    sql('UPDATE {S}.ducklake_table_stats SET record_count = record_count + 1')
    con = reader('lakeH')
    show(con, 'SELECT min(id), max(id) FROM lake.t')
    con.close()

    log('-- table_column_stats WRONG (max 1 while ids 2, 3 exist)')
    fresh()
    sql("UPDATE {S}.ducklake_table_column_stats SET max_value = '1' WHERE column_id = 1")
    con = reader('lakeH')
    show(con, 'SELECT count(*) FROM lake.t WHERE id = 2')
    show(con, 'SELECT max(id) FROM lake.t')
    con.close()

    log('-- table_column_stats contains_null false on a column with NULLs')
    fresh()
    sql("UPDATE {S}.ducklake_table_column_stats SET contains_null = false")
    con = reader('lakeH')
    show(con, 'SELECT count(*) FROM lake.t WHERE name IS NULL')
    show(con, 'SELECT count(name), count(*) FROM lake.t')
    con.close()

    log('-- table_stats present (exact), NO table_column_stats rows')
    fresh()
    sql('DELETE FROM {S}.ducklake_table_column_stats')
    con = reader('lakeH')
    show(con, 'SELECT count(*), min(id), max(id) FROM lake.t')
    show(con, 'SELECT count(*) FROM lake.t WHERE id = 2')
    show(con, 'SELECT count(*) FROM lake.t WHERE name IS NULL')
    con.close()

    log('-- no table_stats / table_column_stats rows at all')
    fresh()
    sql('DELETE FROM {S}.ducklake_table_stats')
    sql('DELETE FROM {S}.ducklake_table_column_stats')
    con = reader('lakeH')
    show(con, 'SELECT count(*), min(id), max(id) FROM lake.t')
    show(con, 'SELECT count(*) FROM lake.t WHERE id = 2')
    con.close()

    log('-- in-place replacement whose table_column_stats SHRINK to the new file (not widened),')
    log('   then time travel to the old file with a filter')
    f, ids = fresh()
    f2 = w.write_file('t', T2, COLS1)
    v2 = w.commit(lambda cur, snap: w.replace_in_place(cur, snap, ids['t'], COLS1, f2, widen=False))
    con = reader('lakeH')
    show(con, 'SELECT id FROM lake.t')
    show(con, f"SELECT id FROM lake.t AT (VERSION => {ids['v']}) WHERE id = 2")
    show(con, f"SELECT id FROM lake.t AT (VERSION => {ids['v']}) WHERE id < 5")
    show(con, f"SELECT min(id) FROM lake.t AT (VERSION => {ids['v']})")
    con.close()
    log('   ... and with widened stats (what the extension does)')
    f, ids = fresh()
    f2 = w.write_file('t', T2, COLS1)
    w.commit(lambda cur, snap: w.replace_in_place(cur, snap, ids['t'], COLS1, f2, widen=True))
    con = reader('lakeH')
    show(con, f"SELECT id FROM lake.t AT (VERSION => {ids['v']}) WHERE id = 2")
    show(con, f"SELECT id FROM lake.t AT (VERSION => {ids['v']}) WHERE id < 5")
    con.close()

    log('-- a Parquet file WITHOUT field ids and no mapping: columns are matched BY POSITION')
    fresh()
    swapped = w.duck.execute(f"COPY (SELECT name, score, id, flag, day, ts FROM ({T1})) TO "
                             f"'/tmp/dlhazard/tables/t/nofieldids.parquet' (FORMAT parquet, RETURN_STATS)").fetchone()
    sql("UPDATE {S}.ducklake_data_file SET path = 'nofieldids.parquet', file_size_bytes = %s, footer_size = %s",
        (swapped[2], swapped[3]))
    sql('DELETE FROM {S}.ducklake_file_column_stats')
    con = reader('lakeH')
    show(con, 'SELECT * FROM lake.t')
    con.close()
    log('-- ... the same file with a map_by_name mapping (mapping_id from next_file_id, as the extension does)')
    sql("INSERT INTO {S}.ducklake_column_mapping VALUES (100, 1, 'map_by_name')")
    for i, (col, target) in enumerate([('id', 1), ('score', 2), ('name', 3), ('flag', 4), ('day', 5), ('ts', 6)]):
        sql('INSERT INTO {S}.ducklake_name_mapping VALUES (100, %s, %s, %s, NULL, false)', (i, col, target))
    sql('UPDATE {S}.ducklake_data_file SET mapping_id = 100')
    con = reader('lakeH')
    show(con, 'SELECT * FROM lake.t')
    con.close()

    log('-- metadata version')
    for v in ('1.1', '0.4', '1.0-usher', None):
        fresh()
        if v is None:
            sql("DELETE FROM {S}.ducklake_metadata WHERE key = 'version'")
        else:
            sql("UPDATE {S}.ducklake_metadata SET value = %s WHERE key = 'version'", (v,))
        log(f'   version = {v!r}')
        try:
            con = reader('lakeH')
            show(con, 'SELECT count(*) FROM lake.t')
            con.close()
        except Exception as e:  # noqa: BLE001
            log(f'      ATTACH ERROR {type(e).__name__}: {str(e).splitlines()[0]}')

    log('-- DATA_PATH given at ATTACH that differs from the stored one')
    fresh()
    os.makedirs('/tmp/dlhazard-elsewhere', exist_ok=True)
    if not os.path.exists('/tmp/dlhazard-elsewhere/tables'):
        os.symlink('/tmp/dlhazard/tables', '/tmp/dlhazard-elsewhere/tables')
    for opts in (", DATA_PATH '/tmp/dlhazard-elsewhere/'",
                 ", DATA_PATH '/tmp/dlhazard-elsewhere/', OVERRIDE_DATA_PATH true",
                 ", DATA_PATH '/tmp/dlhazard'"):
        log(f'   ATTACH options{opts}')
        try:
            con = reader('lakeH', opts)
            show(con, "SELECT count(*) FROM lake.t")
            show(con, "SELECT data_file FROM ducklake_list_files('lake', 't')")
            con.close()
        except Exception as e:  # noqa: BLE001
            log(f'      ATTACH ERROR {type(e).__name__}: {str(e).splitlines()[0]}')

    log('-- an unknown change type in snapshot_changes.changes_made')
    fresh()
    sql("UPDATE {S}.ducklake_snapshot_changes SET changes_made = changes_made || ',usher_saved:1' "
        "WHERE snapshot_id = 1")
    con = reader('lakeH')
    show(con, 'SELECT count(*) FROM lake.t')
    show(con, "SELECT snapshot_id, changes FROM ducklake_snapshots('lake')")
    con.close()
    log('   ... and a DuckDB writer that started before that snapshot and commits after it')
    fresh()
    con = reader('lakeH')
    con.execute('SET ducklake_default_data_inlining_row_limit = 0')
    con.execute('BEGIN')
    con.execute("INSERT INTO lake.t SELECT * FROM lake.t")
    w.commit(lambda cur, snap: ['usher_saved:1'])
    show(con, 'COMMIT')
    con.close()
    log('   ... the same with a known change type (inserted_into_table of another table id)')
    fresh()
    con = reader('lakeH')
    con.execute('SET ducklake_default_data_inlining_row_limit = 0')
    con.execute('BEGIN')
    con.execute("INSERT INTO lake.t SELECT * FROM lake.t")
    w.commit(lambda cur, snap: ['inserted_into_table:99'])
    show(con, 'COMMIT')
    con.close()

    log('-- schema_version NOT bumped when we create a table (same DuckDB instance keeps its cache)')
    fresh()
    con = reader('lakeH')
    show(con, 'SELECT count(*) FROM lake.t')
    f5 = w.write_file('u', T1, COLS1)

    def no_bump(cur, snap):
        before = snap['schema_version']
        _, changes = w.create_table(cur, snap, 'u', COLS1, f5)
        snap['schema_version'] = before
        cur.execute(f"UPDATE {w.s}.ducklake_schema_versions SET schema_version = %s WHERE begin_snapshot = %s",
                    (before, snap['id']))
        return changes
    w.commit(no_bump)
    show(con, 'SELECT count(*) FROM lake.u')
    con.close()
    con = reader('lakeH')
    show(con, 'SELECT count(*) FROM lake.u   -- a fresh instance')
    con.close()
    log('   ... and bumped: the same long-lived instance sees the new table')
    fresh()
    con = reader('lakeH')
    show(con, 'SELECT count(*) FROM lake.t')
    f6 = w.write_file('u', T1, COLS1)
    w.commit(lambda cur, snap: w.create_table(cur, snap, 'u', COLS1, f6)[1])
    show(con, 'SELECT count(*) FROM lake.u')
    con.close()

    log('-- the same long-lived instance and an in-place replacement (same schema_version, next_file_id moves)')
    f, ids = fresh()
    con = reader('lakeH')
    show(con, 'SELECT count(*), max(id) FROM lake.t')
    f7 = w.write_file('t', T2, COLS1)
    w.commit(lambda cur, snap: w.replace_in_place(cur, snap, ids['t'], COLS1, f7))
    show(con, 'SELECT count(*), max(id) FROM lake.t')
    con.close()


if __name__ == '__main__':
    main_proof()
    hazards()
