"""The Python pipeline's config model, written from ../shared/seed/01-01-config-schema.md.

This is the reference the Rust `PipelineConfig` is checked against: PyYAML parses the file,
pydantic 2 (lax mode, extra keys ignored) validates it, and `config_hash()` is
`sha256(json.dumps(model_dump(mode="python"), sort_keys=True, default=str))`.
"""

import hashlib
import json
import sys
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, field_validator


class DataSourceVersions(BaseModel):
    ensembl_release: int = Field(..., ge=100)
    gnomad_version: str = "v4.1"
    gtex_version: str = "v8"
    hpa_version: str = "23.0"


class ScoringWeights(BaseModel):
    gnomad: float = Field(default=0.20, ge=0.0, le=1.0)
    expression: float = Field(default=0.20, ge=0.0, le=1.0)
    annotation: float = Field(default=0.15, ge=0.0, le=1.0)
    localization: float = Field(default=0.15, ge=0.0, le=1.0)
    animal_model: float = Field(default=0.15, ge=0.0, le=1.0)
    literature: float = Field(default=0.15, ge=0.0, le=1.0)

    def validate_sum(self) -> None:
        total = (self.gnomad + self.expression + self.annotation + self.localization
                 + self.animal_model + self.literature)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"Scoring weights must sum to 1.0, got {total:.6f}")


class APIConfig(BaseModel):
    rate_limit_per_second: int = Field(default=5, ge=1)
    max_retries: int = Field(default=5, ge=1, le=20)
    cache_ttl_seconds: int = Field(default=86400, ge=0)
    timeout_seconds: int = Field(default=30, ge=1)


class PipelineConfig(BaseModel):
    data_dir: Path
    cache_dir: Path
    duckdb_path: Path
    versions: DataSourceVersions
    api: APIConfig
    scoring: ScoringWeights

    @field_validator("data_dir", "cache_dir")
    @classmethod
    def create_directory(cls, v: Path) -> Path:
        v.mkdir(parents=True, exist_ok=True)
        return v

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="python"), sort_keys=True, default=str)

    def config_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def load_config(path) -> PipelineConfig:
    with open(path, "r", encoding="utf-8") as f:
        return PipelineConfig.model_validate(yaml.safe_load(f))


if __name__ == "__main__":
    # Usage: seed_config.py FILE...  -> one line per file: "<file>\t<hash>" or "<file>\tERROR\t<msg>"
    for name in sys.argv[1:]:
        try:
            print(f"{name}\t{load_config(name).config_hash()}")
        except Exception as e:  # noqa: BLE001 - the report is the point
            msg = str(e).replace("\n", " | ")
            print(f"{name}\tERROR\t{type(e).__name__}: {msg}")
