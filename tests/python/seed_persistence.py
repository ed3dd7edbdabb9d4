"""The Python pipeline's persistence layer, written from ../shared/seed/01-03-persistence-plan.txt.

The interop tests run this code, as the Python pipeline would, against stores and sidecars that
the Rust library writes, and the Rust library reads what this code writes. It follows the plan:
`duckdb.connect` on a file, the `_checkpoints` DDL, `CREATE OR REPLACE TABLE t AS SELECT * FROM
df` for saves, `conn.execute(...).pl()` for loads (duckdb 1.x), `COPY ... TO ? (FORMAT PARQUET)`
for exports, and the provenance dict / sidecar / `_provenance` formats.
"""

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl


class PipelineStore:
    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = duckdb.connect(str(self.db_path))
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS _checkpoints ("
            " table_name VARCHAR PRIMARY KEY,"
            " created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,"
            " row_count INTEGER,"
            " description VARCHAR)"
        )

    def save_dataframe(self, df: pl.DataFrame, table_name: str, description: str = "", replace: bool = True):
        if replace:
            self.conn.execute(f"CREATE OR REPLACE TABLE {table_name} AS SELECT * FROM df")
        else:
            self.conn.execute(f"INSERT INTO {table_name} SELECT * FROM df")
        self.conn.execute(
            "INSERT OR REPLACE INTO _checkpoints (table_name, row_count, description, created_at)"
            " VALUES (?, ?, ?, CURRENT_TIMESTAMP)",
            [table_name, len(df), description],
        )

    def load_dataframe(self, table_name: str):
        try:
            return self.conn.execute(f"SELECT * FROM {table_name}").pl()
        except duckdb.CatalogException:
            return None

    def has_checkpoint(self, table_name: str) -> bool:
        row = self.conn.execute("SELECT COUNT(*) FROM _checkpoints WHERE table_name = ?", [table_name]).fetchone()
        return row[0] > 0

    def list_checkpoints(self) -> list:
        rows = self.conn.execute(
            "SELECT table_name, created_at, row_count, description FROM _checkpoints ORDER BY created_at DESC"
        ).fetchall()
        return [dict(table_name=r[0], created_at=r[1], row_count=r[2], description=r[3]) for r in rows]

    def delete_checkpoint(self, table_name: str):
        self.conn.execute(f"DROP TABLE IF EXISTS {table_name}")
        self.conn.execute("DELETE FROM _checkpoints WHERE table_name = ?", [table_name])

    def export_parquet(self, table_name: str, output_path: Path):
        Path(output_path).parent.mkdir(parents=True, exist_ok=True)
        self.conn.execute(f"COPY {table_name} TO ? (FORMAT PARQUET)", [str(output_path)])

    def execute_query(self, query: str, params=None) -> pl.DataFrame:
        return (self.conn.execute(query, params) if params else self.conn.execute(query)).pl()

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class ProvenanceTracker:
    def __init__(self, pipeline_version: str, config):
        self.pipeline_version = pipeline_version
        self.config_hash = config.config_hash()
        self.data_source_versions = config.versions.model_dump()
        self.processing_steps = []
        self.created_at = datetime.now(timezone.utc)

    def record_step(self, step_name: str, details=None):
        step = {"name": step_name, "step_name": step_name, "timestamp": datetime.now(timezone.utc).isoformat()}
        if details:
            step["details"] = details
        self.processing_steps.append(step)

    def create_metadata(self) -> dict:
        return {
            "pipeline_version": self.pipeline_version,
            "data_source_versions": self.data_source_versions,
            "config_hash": self.config_hash,
            "created_at": self.created_at.isoformat(),
            "processing_steps": self.processing_steps,
        }

    def save_sidecar(self, output_path: Path):
        sidecar = Path(output_path).with_suffix(".provenance.json")
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        with open(sidecar, "w") as f:
            json.dump(self.create_metadata(), f, indent=2, default=str)

    def save_to_store(self, store: PipelineStore):
        m = self.create_metadata()
        store.conn.execute(
            "CREATE TABLE IF NOT EXISTS _provenance (version VARCHAR, config_hash VARCHAR,"
            " created_at TIMESTAMP, steps_json VARCHAR)"
        )
        store.conn.execute(
            "INSERT INTO _provenance (version, config_hash, created_at, steps_json) VALUES (?, ?, ?, ?)",
            [m["pipeline_version"], m["config_hash"], m["created_at"], json.dumps(m["processing_steps"])],
        )

    @staticmethod
    def load_sidecar(sidecar_path: Path) -> dict:
        with open(sidecar_path) as f:
            return json.load(f)
