"""The partition steps of a range of days, run in this one process (`python -m shopflow run FIRST --to LAST`).

A fresh interpreter spends about 2.5 s importing pandas, pyarrow and Great Expectations before it reads a row; a
small day's ingest, clean and validate take about 0.2 s once they are loaded. Running a range here pays the imports
once. Each day is what `run DAY` does for it (a day without landing files is recorded as missing, a failure is
recorded on its partition and the range goes on), in date order, every source of a day before the next day.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

from shopflow.config.options import value
from shopflow.config.settings import Settings
from shopflow.steps import partition as steps

log = logging.getLogger(__name__)

RUN_MAX_DAYS = "SHOPFLOW_RUN_MAX_DAYS"


class DayRangeError(ValueError):
    """The range cannot be run: its end before its start, or more days than the limit allows."""


@dataclass
class Failure:
    source: str
    ds: date
    error: Exception


@dataclass
class RangeRun:
    """What a range run did: the partitions run, the ones with nothing landed, the failures, and its counts."""

    first: date
    last: date
    partitions: int = 0
    missing: int = 0
    rows_in: int = 0
    rows_clean: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def summary(self) -> str:
        span = self.first.isoformat() if self.days == 1 else f"{self.first} .. {self.last} ({self.days:,} days)"
        rate = f", {self.days / self.seconds:.1f} days/s" if self.days > 1 and self.seconds > 0 else ""
        return (f"{span}: {self.partitions:,} partitions validated ({self.rows_in:,} rows in: "
                f"{self.rows_clean:,} clean, {self.rows_quarantined:,} quarantined, {self.rows_duplicate:,} duplicate), "
                f"{self.missing:,} with nothing landed, {len(self.failures):,} failed in {self.seconds:.1f} s{rate}")


def days_between(first: date, last: date | None = None, max_days: int | None = None) -> list[date]:
    """The days first .. last (inclusive; last defaults to first), at most max_days (default SHOPFLOW_RUN_MAX_DAYS)."""
    last = first if last is None else last
    if last < first:
        raise DayRangeError(f"the range ends ({last}) before it starts ({first})")
    count = (last - first).days + 1
    limit = value(RUN_MAX_DAYS) if max_days is None else max_days
    if count > limit:
        raise DayRangeError(f"{first} .. {last} is {count:,} days, more than the {limit:,} one run may take "
                            f"({RUN_MAX_DAYS}={limit}); run it in parts, or pass --max-days {count}")
    return [first + timedelta(days=offset) for offset in range(count)]


def run_days(settings: Settings, sources: list[str], days: list[date], run_id: str) -> RangeRun:
    """Ingest, clean and validate every (source, day), day after day; a failure is recorded and the run goes on."""
    outcome = RangeRun(first=days[0], last=days[-1])
    started = time.perf_counter()
    for done, ds in enumerate(days, start=1):
        for source in sources:
            _run_partition(settings, source, ds, run_id, outcome)
        outcome.seconds = time.perf_counter() - started
        if len(days) > 1:
            rate = done / outcome.seconds if outcome.seconds > 0 else 0.0
            eta = (len(days) - done) / rate if rate else 0.0
            log.info("day %d of %d (%s): %d partitions validated, %d with nothing landed, %d failed so far; %s rows in; "
                     "%.1f days/s, ETA %.0f s", done, len(days), ds, outcome.partitions, outcome.missing,
                     len(outcome.failures), f"{outcome.rows_in:,}", rate, eta)
    return outcome


def _run_partition(settings: Settings, source: str, ds: date, run_id: str, outcome: RangeRun) -> None:
    try:
        steps.ingest(settings, source, ds, run_id)
        cleaned = steps.clean(settings, source, ds, run_id)
        steps.validate(settings, source, ds, run_id)
    except steps.PartitionMissing:
        outcome.missing += 1
        return
    except Exception as exc:  # noqa: BLE001 - recorded on the partition by the step; the range goes on
        outcome.failures.append(Failure(source, ds, exc))
        return
    outcome.partitions += 1
    for key in ("rows_in", "rows_clean", "rows_quarantined", "rows_duplicate"):
        setattr(outcome, key, getattr(outcome, key) + int(cleaned[key]))
