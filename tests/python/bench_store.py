"""The Python seed's store path, timed on the same data as examples/bench_store.rs.

    bench_store.py --rows N --dir DIR

Save is the seed's `save_dataframe` (`CREATE OR REPLACE TABLE t AS SELECT * FROM df` plus the
`_checkpoints` upsert); load is `SELECT * FROM t` to polars on a warm connection (`conn.sql(...).pl()`,
since duckdb 2.x dropped `.pl()` on `execute` results); hit is `has_checkpoint` + load of a
1,000-row table on an open store. The file is created with the same `storage_compatibility_version` as the Rust side, so both
write the same format. Prints one JSON object.
"""

import argparse
import json
import statistics
import time

import duckdb
import polars as pl


def frame(n: int) -> pl.DataFrame:
    """The 5-column frame of the issue: string id, string symbol, f64 with 5% nulls, i64, bool."""
    i = pl.int_range(0, n, dtype=pl.Int64)
    return pl.select(
        id=pl.lit("ENSG") + i.cast(pl.String).str.zfill(11),
        symbol=pl.lit("SYM") + (i % 50_000).cast(pl.String),
        value=pl.when(i % 20 == 0).then(None).otherwise(i / 7.0),
        n=i * 3,
        flag=i % 3 == 0,
    )


def save(conn, df, table):
    conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM df")
    conn.execute(
        "INSERT OR REPLACE INTO _checkpoints (table_name, row_count, description, created_at) VALUES (?, ?, ?, CURRENT_TIMESTAMP)",
        [table, len(df), "bench"],
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--storage", default="latest", help="storage_compatibility_version of the new file")
    args = ap.parse_args()
    df = frame(args.rows)
    conn = duckdb.connect(f"{args.dir}/python.duckdb", config={"storage_compatibility_version": args.storage})
    conn.execute("CREATE TABLE IF NOT EXISTS _checkpoints (table_name VARCHAR PRIMARY KEY, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, row_count INTEGER, description VARCHAR)")
    saves, loads = [], []
    for _ in range(3):
        t = time.perf_counter(); save(conn, df, "bench"); saves.append(time.perf_counter() - t)
        t = time.perf_counter(); loaded = conn.sql("SELECT * FROM bench").pl(); loads.append(time.perf_counter() - t)
        assert loaded.height == args.rows
    small = frame(1000)
    save(conn, small, "small")
    hits = []
    for _ in range(50):
        t = time.perf_counter()
        ok = conn.execute("SELECT COUNT(*) FROM _checkpoints WHERE table_name = ?", ["small"]).fetchall()[0][0] > 0
        got = conn.sql("SELECT * FROM small").pl()
        hits.append(time.perf_counter() - t)
        assert ok and got.height == 1000
    conn.close()
    print(json.dumps({"duckdb": duckdb.__version__, "polars": pl.__version__, "save_s": min(saves), "load_s": min(loads), "hit_ms": statistics.median(hits) * 1e3}))


if __name__ == "__main__":
    main()
