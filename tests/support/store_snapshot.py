"""Comparable views of the metadata store and the lake, for end-to-end and idempotency assertions."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import create_engine, text

VOLATILE = {"id", "updated_at", "recorded_at", "timings", "airflow_run_id", "partition_id", "dataset_id"}


def store_rows(store_url: str) -> dict[str, list[tuple]]:
    """Every table's rows, without ids, timestamps and run ids, sorted: equal when a re-run changed nothing."""
    engine = create_engine(store_url)
    tables = {}
    try:
        with engine.connect() as connection:
            for table in ("datasets", "partitions", "partition_files", "validations", "lineage"):
                result = connection.execute(text(f"SELECT * FROM {table}"))
                keep = [c for c in result.keys() if c not in VOLATILE]
                rows = [tuple(str(row._mapping[c]) for c in keep) for row in result]
                tables[table] = sorted(rows)
    finally:
        engine.dispose()
    return tables


def lake_digests(lake: Path) -> dict[str, str]:
    return {str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(lake.rglob("*.parquet"))}
