"""Runs the real ducklake 1.5.5 extension against a throwaway PostgreSQL and dumps the
catalog rows after each step."""
import os, shutil, subprocess, sys, glob
import duckdb, psycopg2

PORT = int(open('/tmp/pgdl/url').read().strip().rsplit(':', 1)[1].split('/')[0])
VARIANT = sys.argv[1] if len(sys.argv) > 1 else 'A'
SCHEMA = 'lake' + VARIANT
DATA = '/tmp/dldata/' if VARIANT == 'A' else f'/tmp/dldata{VARIANT}/'
SITE = glob.glob('/tmp/dlvenv/lib/python3*/site-packages')[0]
EXT = lambda n: f"{SITE}/duckdb_extension_{n}/extensions/v1.5.5/{n}.duckdb_extension"
OUT = '/tmp/ducklake-research'
shutil.rmtree(DATA, ignore_errors=True)

pg = psycopg2.connect(host='127.0.0.1', port=PORT, user='usher', dbname='usher')
pg.autocommit = True
pc = pg.cursor()
pc.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')

con = duckdb.connect()
con.execute(f"INSTALL '{EXT('ducklake')}'; INSTALL '{EXT('postgres_scanner')}'; LOAD ducklake; LOAD postgres_scanner;")
print(con.sql("select extension_name, extension_version, install_path from duckdb_extensions() where loaded and extension_name in ('ducklake','postgres_scanner')").fetchall())
con.execute(f"ATTACH 'ducklake:postgres:dbname=usher host=127.0.0.1 port={PORT} user=usher' AS lake (DATA_PATH '{DATA}', METADATA_SCHEMA '{SCHEMA}')")

rows_out = open(f'{OUT}/rows-after-each-step.txt' if VARIANT == 'A' else f'{OUT}/rows-after-each-step-variant{VARIANT}.txt', 'w')
con.execute('SET ducklake_default_data_inlining_row_limit = 0')

def dump(step):
    rows_out.write(f"\n{'#'*100}\n### AFTER STEP: {step}\n{'#'*100}\n")
    pc.execute("SELECT table_name FROM information_schema.tables WHERE table_schema=%s ORDER BY table_name", (SCHEMA,))
    for (t,) in pc.fetchall():
        pc.execute(f'SELECT * FROM "{SCHEMA}"."{t}"')
        cols = [d[0] for d in pc.description]
        rows = pc.fetchall()
        if not rows:
            rows_out.write(f"-- {t}: (empty)\n")
            continue
        rows_out.write(f"-- {t} ({len(rows)} rows)  columns: {', '.join(cols)}\n")
        for r in rows:
            rows_out.write("   " + " | ".join(repr(v) for v in r) + "\n")
    rows_out.write("-- files under data path:\n")
    for root, _, files in sorted(os.walk(DATA)):
        for f in sorted(files):
            p = os.path.join(root, f)
            rows_out.write(f"   {p}  {os.path.getsize(p)} bytes\n")
    rows_out.flush()

def run(step, sql):
    print('>>', step)
    rows_out.write(f"\n\n======== SQL: {sql}\n")
    r = con.sql(sql)
    if r is not None:
        res = r.fetchall()
        rows_out.write(f"======== result: {res}\n")
    dump(step)

dump('ATTACH (fresh catalog)')
subprocess.run(['pg_dump', '--schema-only', '-n', '"'+SCHEMA+'"', '-h', '127.0.0.1', '-p', str(PORT), '-U', 'usher', 'usher'],
               stdout=open(f'{OUT}/ddl.sql' if VARIANT == 'A' else '/dev/null', 'w'), check=True)


CREATE1 = """CREATE TABLE lake.t AS SELECT * FROM (VALUES
   (1::BIGINT, 1.5::DOUBLE, 'alpha'::VARCHAR, true, DATE '2024-01-02', TIMESTAMP '2024-01-02 03:04:05.123456'),
   (2, -2.25, 'beta', false, DATE '1999-12-31', TIMESTAMP '1999-12-31 23:59:59'),
   (3, NULL, NULL, NULL, NULL, NULL),
   (-7, 1e300, 'it''s', true, DATE '2030-06-15', TIMESTAMP '2030-06-15 12:00:00'),
   (5, 0.1, repeat('z', 80) || 'ü', false, DATE '0044-03-15', TIMESTAMP '1969-07-20 20:17:40.5')
 ) v(id, score, name, flag, day, ts)"""
VALUES2 = """SELECT * FROM (VALUES
   (10::BIGINT, 0.5::DOUBLE, 'gamma'::VARCHAR, false, DATE '2025-01-01', TIMESTAMP '2025-01-01 00:00:00'),
   (11, 'nan'::DOUBLE, 'delta', true, DATE '2025-02-01', TIMESTAMP '2025-02-01 00:00:00'),
   (12, 'inf'::DOUBLE, 'zeta', NULL, DATE '2025-03-01', NULL)
 ) v(id, score, name, flag, day, ts)"""
VALUES3 = """SELECT * FROM (VALUES
   ('a1'::VARCHAR, 0.5::DOUBLE, 'eta'::VARCHAR, DATE '2026-01-01', TIMESTAMP '2026-01-01 00:00:00', 42::INTEGER),
   ('a2', 2.5, 'theta', DATE '2026-02-01', TIMESTAMP '2026-02-01 00:00:00', NULL)
 ) v(id, score, name, day, ts, extra)"""
if VARIANT == 'C':
    os.makedirs('/tmp/dlforeign', exist_ok=True)
    con.execute("COPY (SELECT 'x' || i AS name, i::BIGINT AS id, (i * 0.5)::DOUBLE AS score FROM range(3) t(i)) TO '/tmp/dlforeign/plain.parquet' (FORMAT parquet)")
    run('C1 CREATE TABLE lake.m (id BIGINT, name VARCHAR, score DOUBLE)', 'CREATE TABLE lake.m (id BIGINT, name VARCHAR, score DOUBLE)')
    run('C2 ducklake_add_data_files of a Parquet file without field ids (columns in another order)', "CALL ducklake_add_data_files('lake', 'm', '/tmp/dlforeign/plain.parquet')")
    print(con.sql('SELECT * FROM lake.m'))
else:
    run('1 CREATE TABLE AS', CREATE1)
if VARIANT == 'A':
    run('2 CREATE OR REPLACE TABLE AS (same schema)', 'CREATE OR REPLACE TABLE lake.t AS ' + VALUES2)
    run('3 CREATE OR REPLACE with changed schema (add extra INTEGER, drop flag, id BIGINT->VARCHAR)', 'CREATE OR REPLACE TABLE lake.t AS ' + VALUES3)
    run('4 second table (other types) CREATE TABLE lake.u', """CREATE TABLE lake.u AS SELECT * FROM (VALUES
   (1::TINYINT, 2::SMALLINT, 3::INTEGER, 4::HUGEINT, 5::UBIGINT, 6::UTINYINT, 1.25::FLOAT, 12.345::DECIMAL(10,3), 1.5::DECIMAL(20,2), TIMESTAMPTZ '2024-01-01 00:00:00+00', TIMESTAMP_S '2024-01-01 00:00:01', TIMESTAMP_MS '2024-01-01 00:00:01.5', TIMESTAMP_NS '2024-01-01 00:00:01.123456789', TIME '12:34:56', BLOB '\\x00\\xff', [1,2]::INTEGER[], {'a': 1, 'b': 'x'}, MAP {'k': 1}, UUID '12345678-1234-5678-1234-567812345678', INTERVAL 3 DAY, '{"a":1}'::JSON)
 ) v(i8, i16, i32, i128, u64, u8, f32, dec, dec20, tstz, ts_s, ts_ms, ts_ns, tm, bl, lst, st, mp, uu, iv, js)""")
    run('5 DROP TABLE lake.t', "DROP TABLE lake.t")
    run('6 ducklake_expire_snapshots(older_than now)', "CALL ducklake_expire_snapshots('lake', older_than => now())")
    run('7 ducklake_cleanup_old_files(cleanup_all)', "CALL ducklake_cleanup_old_files('lake', cleanup_all => true)")
elif VARIANT == 'C':
    pass
else:
    # variant B: replace in place (DELETE all + INSERT in one transaction), ALTER for schema change
    run('2B BEGIN; DELETE FROM lake.t; INSERT INTO lake.t ...; COMMIT', 'BEGIN; DELETE FROM lake.t; INSERT INTO lake.t ' + VALUES2 + '; COMMIT')
    try:
        con.execute("BEGIN; ALTER TABLE lake.t ALTER id TYPE VARCHAR; COMMIT")
    except Exception as e:
        rows_out.write(f"\n\n======== ALTER id BIGINT -> VARCHAR refused: {e}\n")
        con.execute("ROLLBACK")
    run('3B ALTER TABLE (add extra INTEGER, drop flag) + DELETE/INSERT in one transaction',
        "BEGIN; ALTER TABLE lake.t ADD COLUMN extra INTEGER; ALTER TABLE lake.t DROP COLUMN flag; DELETE FROM lake.t; INSERT INTO lake.t BY NAME " + VALUES3.replace("'a1'::VARCHAR", "1::BIGINT").replace("'a2'", "2") + "; COMMIT")
    run('4B TRUNCATE-like DELETE alone', 'DELETE FROM lake.t')
    run('5B ALTER int32 -> int64 (a promotion that keeps old files)', 'BEGIN; INSERT INTO lake.t BY NAME ' + VALUES3.replace("'a1'::VARCHAR", "1::BIGINT").replace("'a2'", "2") + '; ALTER TABLE lake.t ALTER extra TYPE BIGINT; COMMIT')
    print(con.sql('SELECT * FROM lake.t'))
    print(con.sql('SELECT * FROM lake.t AT (VERSION => 1)'))
    print(con.sql('SELECT * FROM lake.t AT (VERSION => 3)'))
    print(con.sql("SELECT * FROM ducklake_snapshots('lake')"))
print(con.sql("SELECT * FROM ducklake_snapshots('lake')"))
rows_out.close()
