"""What every section reads: the day, the look-back window, the datasets' specs and partitions, the sources of each
role, and a cached reader of the lake's clean partitions. Everything comes from the store, the lake and the sources
file; nothing is hard-coded."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property

import pandas as pd

from shopflow.common.parquet import read_parquet
from shopflow.config.options import default, values_of
from shopflow.config.settings import Settings
from shopflow.sources import SourceSpec, load_sources, roles
from shopflow.store.models import Partition
from shopflow.store.repository import MetadataStore

# Partition states whose clean Parquet exists and holds the day's typed rows.
READABLE = ("cleaned", "validated", "failed_validation")


@dataclass
class ReportContext:
    settings: Settings
    store: MetadataStore
    ds: date
    # freshness, trends and drift look this many days back, the report day included (SHOPFLOW_REPORT_WINDOW_DAYS)
    window_days: int = default("SHOPFLOW_REPORT_WINDOW_DAYS")
    lookback_days: int = default("SHOPFLOW_REPORT_LOOKBACK_DAYS")  # customer history (RFM) and product sales
    _frames: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, settings: Settings, store: MetadataStore, ds: date) -> "ReportContext":
        return cls(settings, store, ds, **values_of("ReportContext"))

    @cached_property
    def specs(self) -> dict[str, SourceSpec]:
        return load_sources()

    def sources_of(self, role: str) -> list[SourceSpec]:
        """The sources that play `role` (catalog, orders, events, search), in sources-file order."""
        return roles.sources_of(role, self.specs)

    @cached_property
    def window(self) -> list[date]:
        return [self.ds - timedelta(days=n) for n in range(self.window_days - 1, -1, -1)]

    @cached_property
    def _partitions(self) -> dict[str, list[Partition]]:
        by_dataset: dict[str, list[Partition]] = {name: [] for name in self.specs}
        for partition in self.store.partitions():
            if partition.ds <= self.ds:
                by_dataset.setdefault(partition.dataset.name, []).append(partition)
        for partitions in by_dataset.values():
            partitions.sort(key=lambda p: p.ds)
        return by_dataset

    def partitions(self, dataset: str, since: date | None = None) -> list[Partition]:
        """The dataset's recorded partitions up to the report day (inclusive), oldest first."""
        return [p for p in self._partitions.get(dataset, []) if since is None or p.ds >= since]

    def partition(self, dataset: str, day: date | None = None) -> Partition | None:
        day = day or self.ds
        return next((p for p in self._partitions.get(dataset, []) if p.ds == day), None)

    def window_partitions(self, dataset: str) -> list[Partition]:
        return self.partitions(dataset, since=self.window[0])

    def has_data(self, dataset: str, day: date | None = None) -> bool:
        partition = self.partition(dataset, day)
        return partition is not None and partition.status in READABLE and bool(partition.clean_path)

    def clean(self, dataset: str, day: date | None = None) -> pd.DataFrame | None:
        """The day's clean rows, or None when the day has no readable partition."""
        partition = self.partition(dataset, day)
        if partition is None or partition.status not in READABLE or not partition.clean_path:
            return None
        key = (dataset, partition.ds)
        if key not in self._frames:
            self._frames[key] = read_parquet(partition.clean_path)
        return self._frames[key]

    def clean_since(self, dataset: str, since: date) -> tuple[pd.DataFrame | None, list[date]]:
        """The clean rows of every readable partition from `since` to the report day, and the days they cover."""
        days = [p.ds for p in self.partitions(dataset, since=since) if self.has_data(dataset, p.ds)]
        if not days:
            return None, []
        return pd.concat([self.clean(dataset, day) for day in days], ignore_index=True), days
