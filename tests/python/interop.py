"""Interop checks run by tests/it/interop.rs against real Python duckdb + polars.

    interop.py write DIR         the seed code writes DIR/py.duckdb, a Parquet export and sidecar
    interop.py read DIR          the seed code (duckdb 1.x) reads what Rust wrote in DIR
    interop.py read-v2 DIR       plain duckdb 2.x (`conn.sql(...).pl()`) reads what Rust wrote
    interop.py reread DIR        the seed code reads DIR/py.duckdb after Rust wrote to it
    interop.py resave DIR        the seed code reads Rust's keyed checkpoint in DIR/keyed.duckdb
                                 and saves the table again (as a Python re-run would)
    interop.py probe FILE        prints "opened" or "refused: <reason>" for this duckdb version
    interop.py write-local DIR   the seed code saves genes in DIR/local.duckdb now (its
                                 `CURRENT_TIMESTAMP`: local time of the TZ it runs in)

Every check raises on mismatch, so a non-zero exit is a failed test.
"""

import json
import math
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import polars as pl
from polars.testing import assert_frame_equal

sys.path.insert(0, str(Path(__file__).parent))
from seed_config import load_config  # noqa: E402
from seed_persistence import PipelineStore, ProvenanceTracker  # noqa: E402


def genes() -> pl.DataFrame:
    """The frame both languages build identically (tests/it/common/mod.rs has the Rust twin)."""
    return pl.DataFrame(
        {
            "gene_id": ["ENSG00000042781", "ENSG00000107736", None, "ENSG ü ✓ 😀", ""],
            "symbol": ["USH2A", 'it\'s "quoted"; DROP TABLE x;--', "CDH23", None, "MYO7A"],
            "score": [0.5, None, float("nan"), -1.5e-7, 1e300],
            "n": [1, -2, None, 9223372036854775807, -9223372036854775808],
            "ok": [True, False, None, True, False],
            "day": [date(2024, 1, 31), None, date(1970, 1, 1), date(1900, 2, 28), date(2262, 4, 11)],
            "ts": [datetime(2024, 1, 31, 12, 34, 56, 789012), None, datetime(1970, 1, 1), datetime(1900, 2, 28, 23, 59, 59), datetime(2262, 4, 11, 1, 2, 3)],
            "tags": [["a", "b"], [], None, ["ü", None], ["x"]],
            "größe 📏": [1.0, 2.0, 3.0, None, 5.0],
            'we"ird col': ["a", "b", "c", "d", "e"],
        },
        schema={
            "gene_id": pl.String, "symbol": pl.String, "score": pl.Float64, "n": pl.Int64, "ok": pl.Boolean,
            "day": pl.Date, "ts": pl.Datetime("us"), "tags": pl.List(pl.String), "größe 📏": pl.Float64,
            'we"ird col': pl.String,
        },
    )


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def write(d: Path):
    config = load_config(d / "config.yaml")
    tracker = ProvenanceTracker("0.9.0-python", config)
    with PipelineStore(d / "py.duckdb") as store:
        store.save_dataframe(genes(), "genes", "written by the Python seed")
        store.save_dataframe(genes().head(0), "empty_genes", "")
        tracker.record_step("fetch_genes", {"rows": 5, "source": "gnomAD", "path": str(d / "x ü")})
        tracker.record_step("no_details")
        store.export_parquet("genes", d / "out" / "genes.parquet")
        tracker.save_to_store(store)
    tracker.save_sidecar(d / "out" / "genes.parquet")
    print(json.dumps({"config_hash": config.config_hash()}))


def check_rust_store(d: Path, load, query):
    """Shared by the duckdb 1.x and 2.x readers: `load(table)` and `query(sql)` return frames."""
    assert_frame_equal(load("genes"), genes())
    empty = load("empty_genes")
    check(empty.height == 0 and empty.schema == genes().schema, f"empty_genes schema {empty.schema}")
    cps = query("SELECT table_name, row_count, description FROM _checkpoints ORDER BY table_name")
    check(cps.to_dicts() == [
        {"table_name": "empty_genes", "row_count": 0, "description": ""},
        {"table_name": "genes", "row_count": 5, "description": "written by Rust ü"},
    ], f"_checkpoints {cps.to_dicts()}")
    prov = query("SELECT version, config_hash, created_at, steps_json FROM _provenance")
    check(prov.height == 1, "one _provenance row")
    row = prov.row(0, named=True)
    expected = json.loads((d / "expected.json").read_text())
    check(row["version"] == "0.1.0-rust", f"version {row['version']}")
    check(row["config_hash"] == expected["config_hash"], "config_hash in _provenance")
    steps = json.loads(row["steps_json"])
    check([s["step_name"] for s in steps] == ["fetch_genes", "no_details"], f"steps {steps}")
    check(steps[0]["details"] == {"rows": 5, "ratio": 0.1, "note": "ü"}, f"details {steps[0]}")
    check("details" not in steps[1], "empty details omitted")
    parquet = pl.read_parquet(d / "out" / "genes.parquet")
    assert_frame_equal(parquet, genes())


def read(d: Path):
    with PipelineStore(d / "rust.duckdb") as store:
        check_rust_store(d, store.load_dataframe, store.execute_query)
        check(store.load_dataframe("missing") is None, "missing table is None")
        cps = store.list_checkpoints()
        check([c["table_name"] for c in cps][0] == "empty_genes", f"newest first: {cps}")
        # The seed code can also write to a store Rust created, and it stays a valid store.
        store.save_dataframe(genes().head(2), "from_python", "python wrote here")
    meta = ProvenanceTracker.load_sidecar(d / "out" / "genes.provenance.json")
    expected = json.loads((d / "expected.json").read_text())
    check(meta["config_hash"] == expected["config_hash"], "sidecar config_hash")
    check(meta["data_source_versions"] == {"ensembl_release": 113, "gnomad_version": "v4.1", "gtex_version": "v8", "hpa_version": "23.0"}, meta["data_source_versions"])
    check(datetime.fromisoformat(meta["created_at"]).utcoffset().total_seconds() == 0, meta["created_at"])
    check([s["name"] for s in meta["processing_steps"]] == ["fetch_genes", "no_details"], meta)
    raw = (d / "out" / "genes.provenance.json").read_text()
    check(raw == json.dumps(meta, indent=2), "sidecar bytes are Python's json.dump(indent=2)")


def read_v2(d: Path):
    check(duckdb.__version__.startswith("2."), duckdb.__version__)
    conn = duckdb.connect(str(d / "rust.duckdb"), read_only=True)
    check_rust_store(d, lambda t: conn.sql(f'SELECT * FROM "{t}"').pl(), lambda q: conn.sql(q).pl())
    conn.close()


def reread(d: Path):
    with PipelineStore(d / "py.duckdb") as store:
        assert_frame_equal(store.load_dataframe("genes"), genes())
        assert_frame_equal(store.load_dataframe("from_rust"), genes().head(3))
        check(store.has_checkpoint("from_rust"), "Rust's checkpoint row")
        rows = {c["table_name"]: c["row_count"] for c in store.list_checkpoints()}
        check(rows == {"genes": 5, "empty_genes": 0, "from_rust": 3}, rows)


def resave(d: Path):
    with PipelineStore(d / "keyed.duckdb") as store:
        check(store.has_checkpoint("genes"), "Rust's #[checkpointed] table is a checkpoint here")
        assert_frame_equal(store.load_dataframe("genes"), genes())
        rows = {c["table_name"]: c["row_count"] for c in store.list_checkpoints()}
        check(rows == {"genes": 5}, rows)
        store.save_dataframe(genes().head(2), "genes", "re-saved by Python")


def write_local(d: Path):
    with PipelineStore(d / "local.duckdb") as store:
        store.save_dataframe(genes(), "genes", "saved by Python")
        stamp = store.list_checkpoints()[0]["created_at"]
    utc = datetime.now(timezone.utc).replace(tzinfo=None)
    # The column holds the writer's local time: off from UTC by the zone's offset.
    print(f"created_at={stamp} utc_now={utc}")


def probe(path: Path):
    """Prints whether this duckdb can open the file at all (for the storage-version test)."""
    try:
        duckdb.connect(str(path), read_only=True).close()
        print("opened")
    except duckdb.Error as e:  # the refusal is the answer, not a failure
        print(f"refused: {e}")


if __name__ == "__main__":
    if sys.argv[1] == "probe":
        probe(Path(sys.argv[2]))
        sys.exit(0)
    cmd, directory = sys.argv[1], Path(sys.argv[2])
    {"write": write, "read": read, "read-v2": read_v2, "reread": reread, "resave": resave, "write-local": write_local}[cmd](directory)
    print(f"interop {cmd}: ok")
