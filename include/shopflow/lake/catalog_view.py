"""The clean catalogue of a catalog-role source as of any day: its latest validated snapshot up to that day, with
the later deltas applied, the last write of a product (by the role's id field) winning."""

from __future__ import annotations

from datetime import date

import pandas as pd

from shopflow.common.parquet import read_parquet
from shopflow.sources import roles
from shopflow.store.repository import MetadataStore


def catalog_as_of(store: MetadataStore, day: date, source: str | None = None) -> pd.DataFrame:
    """The catalogue of `source` (a catalog-role source; default the first one of the sources file) as of `day`,
    one row per product sorted by its id, with `as_of_ds` naming the partition its row comes from."""
    spec = roles.source_of("catalog", source)
    product_id = spec.role_column("id")
    partitions = [p for p in store.partitions(spec.name) if p.ds <= day and p.status == "validated"]
    snapshots = [p for p in partitions if p.load_kind == "snapshot"]
    if not snapshots:
        raise LookupError(f"no validated {spec.name} snapshot on or before {day}")
    base = max(snapshots, key=lambda p: p.ds)
    chain = [base] + sorted((p for p in partitions if p.load_kind == "delta" and p.ds > base.ds), key=lambda p: p.ds)
    frames = []
    for partition in chain:
        frame = read_parquet(partition.clean_path)
        frame["as_of_ds"] = partition.ds.isoformat()
        frames.append(frame)
    merged = pd.concat(frames, ignore_index=True)
    # Later partitions win: a delta row replaces the product as it was known before.
    return merged.drop_duplicates(product_id, keep="last").sort_values(product_id).reset_index(drop=True)
