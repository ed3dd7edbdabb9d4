"""Reads a shared store as a colleague would: DuckDB 1.5.5 with the ducklake and postgres_scanner
extensions (installed offline from their wheels) attaches the store's catalog as a DuckLake and
prints, as JSON, every table's rows (current, and at each snapshot the table had) and the
snapshots. The Rust tests compare that with what the library loads.

    python read_store.py HOST PORT USER DBNAME SCHEMA DATA_PATH [STATEMENT...]

With statements, it first runs them in the lake (attached for writing, `USE lake`), as a
colleague changing the store through DuckDB would.
"""
import glob
import json
import os
import sys

import duckdb


def extension_path(name):
    import importlib
    module = importlib.import_module(f"duckdb_extension_{name}")
    found = glob.glob(os.path.join(os.path.dirname(module.__file__), "extensions", "*",
                                   f"{name}.duckdb_extension"))
    if not found:
        raise SystemExit(f"no {name} extension binary in its wheel")
    return found[0]


def value(v):
    # JSON keeps numbers and strings; dates and times as ISO text, as the Rust side writes them.
    if isinstance(v, float) and v != v:
        return "NaN"  # JSON has no NaN
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        return [value(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat(sep=" ") if hasattr(v, "hour") and hasattr(v, "date") else v.isoformat()
    return str(v)


def rows(con, sql):
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return {"columns": names, "rows": [[value(v) for v in row] for row in cur.fetchall()]}


def main():
    host, port, user, dbname, schema, data_path = sys.argv[1:7]
    statements = sys.argv[7:]
    con = duckdb.connect()
    for name in ("ducklake", "postgres_scanner"):
        con.execute(f"INSTALL '{extension_path(name)}'")
        con.execute(f"LOAD {name}")
    con.execute(
        f"ATTACH 'ducklake:postgres:dbname={dbname} host={host} port={port} user={user}' AS lake "
        f"(METADATA_SCHEMA '{schema}', DATA_PATH '{data_path}', OVERRIDE_DATA_PATH true"
        f"{'' if statements else ', READ_ONLY'})")
    if statements:
        con.execute("USE lake")
        for statement in statements:
            con.execute(statement)
        con.execute("USE memory")
    out = {"tables": {}, "snapshots": [], "versions": {}}
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake' ORDER BY 1").fetchall()]
    for t in tables:
        out["tables"][t] = rows(con, f'SELECT * FROM lake."{t}"')
    for sid, changes in con.execute(
            "SELECT snapshot_id, changes FROM ducklake_snapshots('lake') ORDER BY snapshot_id").fetchall():
        out["snapshots"].append({"id": sid, "changes": {k: [str(x) for x in v] for k, v in changes.items()}})
    # Every table at every snapshot where it existed.
    for t in tables:
        out["versions"][t] = {}
        for snap in out["snapshots"]:
            try:
                out["versions"][t][str(snap["id"])] = rows(
                    con, f'SELECT * FROM lake."{t}" AT (VERSION => {snap["id"]})')
            except duckdb.Error:
                pass
    print(json.dumps(out))


if __name__ == "__main__":
    main()
