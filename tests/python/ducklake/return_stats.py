"""What COPY ... TO parquet (FIELD_IDS, RETURN_STATS) returns in DuckDB 1.5.5."""
import duckdb, os
con = duckdb.connect()
src = """SELECT * FROM (VALUES
   (1::BIGINT, 1.5::DOUBLE, 'alpha'::VARCHAR, true, DATE '2024-01-02', TIMESTAMP '2024-01-02 03:04:05.123456', [1,2]::INTEGER[], {'a': 1, 'b': 'x'}, 'nan'::FLOAT, BLOB '\\x00\\xff', TIMESTAMPTZ '2024-01-01 10:00:00+02', 12.5::DECIMAL(10,2), INTERVAL 1 DAY),
   (2, -2.25, 'beta', false, DATE '1999-12-31', TIMESTAMP '1999-12-31 23:59:59', NULL, NULL, 1.0, NULL, NULL, NULL, NULL),
   (3, NULL, NULL, NULL, NULL, NULL, [], {'a': NULL, 'b': NULL}, NULL, BLOB 'abc', NULL, -1, NULL)
 ) v(id, score, name, flag, day, ts, lst, st, f32, bl, tstz, dec, iv)"""
for opts in ["FORMAT parquet, RETURN_STATS",
             "FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION v2, FIELD_IDS {id: 1, score: 2, name: 3, flag: 4, day: 5, ts: 6, lst: {__duckdb_field_id: 7, element: 8}, st: {__duckdb_field_id: 9, a: 10, b: 11}, f32: 12, bl: 13, tstz: 14, dec: 15, iv: 16}, RETURN_STATS",
             "FORMAT parquet, FIELD_IDS 'auto', RETURN_STATS"]:
    print('=' * 30, opts)
    f = '/tmp/dlcopy/f.parquet'
    if os.path.exists(f): os.remove(f)
    r = con.sql(f"COPY ({src}) TO '{f}' ({opts})")
    print('columns:', r.columns, r.types)
    for row in r.fetchall():
        for c, v in zip(r.columns, row):
            if c == 'column_statistics':
                print(' column_statistics:')
                for k, s in v.items():
                    print('   ', k, '->', s)
            else:
                print(' ', c, '=', repr(v))
    print(' os size', os.path.getsize(f))
    print(con.sql(f"SELECT name, field_id FROM parquet_schema('{f}')").fetchall())
    print(con.sql(f"SELECT file_size_bytes, footer_size FROM parquet_file_metadata('{f}')").fetchall())
print(con.sql("SELECT ''::TIMESTAMPTZ" if False else "SELECT current_setting('TimeZone')").fetchall())
