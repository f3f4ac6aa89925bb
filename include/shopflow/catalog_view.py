"""The clean catalogue as of any day: the latest validated snapshot up to that day, with later deltas applied."""

from __future__ import annotations

from datetime import date

import pandas as pd

from shopflow.landing_io import read_parquet
from shopflow.store.repository import MetadataStore


def catalog_as_of(store: MetadataStore, day: date) -> pd.DataFrame:
    partitions = [p for p in store.partitions("catalog") if p.ds <= day and p.status == "validated"]
    snapshots = [p for p in partitions if p.load_kind == "snapshot"]
    if not snapshots:
        raise LookupError(f"no validated catalogue snapshot on or before {day}")
    base = max(snapshots, key=lambda p: p.ds)
    chain = [base] + sorted((p for p in partitions if p.load_kind == "delta" and p.ds > base.ds), key=lambda p: p.ds)
    frames = []
    for partition in chain:
        frame = read_parquet(partition.clean_path)
        frame["as_of_ds"] = partition.ds.isoformat()
        frames.append(frame)
    merged = pd.concat(frames, ignore_index=True)
    # Later partitions win: a delta row replaces the product as it was known before.
    return merged.drop_duplicates("uniq_id", keep="last").sort_values("uniq_id").reset_index(drop=True)
