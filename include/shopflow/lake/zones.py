"""Where each partition's files live: landing (input, read-only) and the lake's raw, clean and quarantine zones."""

from __future__ import annotations

from datetime import date

from shopflow.common import storage
from shopflow.common.storage import StoragePath
from shopflow.config.settings import Settings

# duplicates: the near-duplicate clusters of a catalogue as of the day (shopflow.governance.duplicates), pairs.parquet beside
ZONES = ("raw", "clean", "quarantine", "repaired", "duplicates")


def partition_dir(root: StoragePath, dataset: str, ds: date) -> StoragePath:
    return root / dataset / f"ds={ds.isoformat()}"


def landing_dir(settings: Settings, dataset: str, ds: date) -> StoragePath:
    return partition_dir(settings.landing_dir, dataset, ds)


def lake_file(settings: Settings, zone: str, dataset: str, ds: date) -> StoragePath:
    if zone not in ZONES:
        raise ValueError(f"unknown lake zone {zone!r}")
    return partition_dir(settings.lake_dir / zone, dataset, ds) / "part-0.parquet"


def drop_outputs(settings: Settings, dataset: str, ds: date) -> None:
    """Remove a partition's lake outputs (its landing went away, so its old outputs must not linger)."""
    for zone in ZONES:
        storage.remove_tree(lake_file(settings, zone, dataset, ds).parent)
