"""A report context over in-memory clean frames of one orders source: what a report section (e.g. drift.build)
reads of a ReportContext, without a store or a lake."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pandas as pd
from shopflow.sources import get_source


class FramesContext:
    def __init__(self, frames: dict[date, pd.DataFrame], ds: date, source: str = "orders"):
        self.frames, self.ds, self.specs = frames, ds, {source: get_source(source)}

    def partition(self, name, day=None):
        day = day or self.ds
        return SimpleNamespace(ds=day, load_kind="append", status="validated") if day in self.frames else None

    def partitions(self, name, since=None):
        return [self.partition(name, d) for d in sorted(self.frames) if d <= self.ds and (since is None or d >= since)]

    def has_data(self, name, day=None):
        return (day or self.ds) in self.frames

    def clean(self, name, day=None):
        return self.frames.get(day or self.ds)
