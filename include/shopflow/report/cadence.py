"""Whether the report expects a source on a day, from what the sources file declares about it.

- `cadence` (shopflow.sources.spec; absent: the load kind's default, append -> daily, snapshot and snapshot_or_delta
  -> on_change): a `daily` source is due every day, a `weekly` one once in any 7 days, an `on_change` one (a
  catalogue snapshot) lands when its data changes and is never stale for not landing.
- `window` (the source's declared collection span): outside it the source is not expected.
- A source is expected from its first landed partition on: one that has never delivered up to the day is "not
  started", not stale.

A due source is stale when its last validated partition is older than its period plus GRACE_DAYS (one skipped or
late day, e.g. a non-trading Saturday, is not a warning; two in a row are). Only a stale source turns the
inventory, and with it the report, to `warning`; a source that is not expected that day does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from shopflow.sources import SourceSpec
from shopflow.sources.spec import DEFAULT_CADENCE

PERIOD_DAYS = {"daily": 1, "weekly": 7}
GRACE_DAYS = 1
LANDED = ("ingested", "cleaned", "validated", "failed_validation", "failed")  # files landed that day


@dataclass(frozen=True)
class Expectation:
    cadence: str
    expected: bool  # the source is due by the day (per cadence, window and first landing)
    stale: bool  # due, and no validated partition recent enough
    reason: str  # in words, for the page

    @property
    def freshness(self) -> str:
        return "warning" if self.stale else ("ok" if self.expected else "not expected")


def expectation(spec: SourceSpec, ds: date, partitions: list) -> Expectation:
    """The source's expectation on `ds`, from its recorded partitions up to `ds` (store partitions, any order)."""
    cadence = spec.cadence or DEFAULT_CADENCE.get(spec.load_kind, "daily")
    landed = sorted(p.ds for p in partitions if p.ds <= ds and str(p.status) in LANDED)
    validated = sorted(p.ds for p in partitions if p.ds <= ds and str(p.status) == "validated")
    window = spec.window or {}
    if cadence == "on_change":
        return Expectation(cadence, False, False, "cadence on_change: lands when its data changes, never stale for "
                                                  "not landing")
    if (window.get("start") and ds < window["start"]) or (window.get("end") and ds > window["end"]):
        return Expectation(cadence, False, False, f"outside its declared window {window.get('start') or '…'} .. "
                                                  f"{window.get('end') or '…'}")
    if not landed:
        return Expectation(cadence, False, False, f"cadence {cadence}: not started (no partition landed by {ds})")
    allowed = PERIOD_DAYS[cadence] + GRACE_DAYS - 1
    if validated and (ds - validated[-1]).days <= allowed:
        return Expectation(cadence, True, False, f"cadence {cadence}: validated partition {validated[-1]} is "
                                                 f"{(ds - validated[-1]).days} day(s) old (at most {allowed} allowed)")
    last = f"last validated partition {validated[-1]}" if validated else "no validated partition yet"
    return Expectation(cadence, True, True, f"cadence {cadence}: stale, {last} (at most {allowed} day(s) old "
                                            f"allowed)")
