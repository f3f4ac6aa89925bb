"""Section 7, drift: per dataset, the day's partition against the earlier partitions with the same load kind.

Every partition is reduced to a profile of metrics derived from the clean schema (nothing is configured per dataset):

- row count;
- the null rate of every column, keys and ids included (a `customer_key` that goes 0% -> 62% null is drift);
- p50 and p90 of numeric columns (not ids, keys or line numbers), with the spread of the distribution around them;
- the share of true of boolean columns;
- for low-cardinality text columns (at most MAX_CATEGORIES distinct values on every day of the baseline and today):
  the distribution of their values (total variation distance to the baseline's), values the baseline never saw (a
  new category), and the median of every numeric column within each value (a segment: a country, a category, a line
  type), so that a change confined to one group shows.

Two checks; each mark says what moved, by how much and against which baseline:

- DRIFT, the day check: today against a seasonal baseline, the same weekday of the previous SEASON_WEEKS weeks when
  at least MIN_SEASON_DAYS of them have a partition, else every partition of the previous RECENT_DAYS days (fewer
  than MIN_BASELINE_DAYS: listed as n/a, not judged). Robust statistics: the baseline's median and MAD, robust z =
  (today - median) / max(1.4826 MAD, floor), and a mark only when |z| > Z_LIMIT *and* the change is at least the
  metric's minimum effect. Against a same-weekday baseline the MAD is at least that of all days of those weeks
  around their own weekday's median (a handful of values has no reliable MAD). Row counts and positive levels are
  compared on a log scale, rates (null rates, shares) in percentage points. The floor of a quantile is the spread of
  the distribution around it (half the distance between the quantiles q - 5% and q + 5%), and at least one unit of
  an integer column: on quantities sold in packs of 1, 2, 3, 6, 12 or 24 a p50 of 2 -> 3 or a p90 of 24 -> 12 is
  not drift, a p50 of 2 -> 24 is. A segment's median needs SEGMENT_MIN_DAYS baseline days, x3 and a z over half
  the segment's interquartile range (a country's lines are often one customer's order).
- SHIFT, the slow-shift check: the level (median of the daily values) of the last SHIFT_RECENT_DAYS days against
  the SHIFT_PRIOR_DAYS days that end SHIFT_GAP_DAYS before them (weeks 5 to 8 back). A baseline that moves with the
  data cannot see a change that builds up over weeks (daily volume +50% over eight weeks); this check can. A mark
  needs the minimum shift and a separation of more than SHIFT_Z standard errors of the two medians, estimated from
  the days' deviations from their weekday's median (the weekly rhythm is not noise).

A new source's first HISTORY_DAYS days have no history to compare a weekday with (a Sunday without guest orders,
a quiet Saturday): a day check against the pooled earlier days keeps its DRIFT mark only where today also departs
from the source's earlier partitions of the same weekday by the minimum effect; otherwise it is listed as n/a with
"no history yet: N days of M needed", and the section says so for the source.

On the real orders sample (2010-12 .. 2011-09, 244 comparable days; tests/report/test_drift.py) about 13% of the days carry a
DRIFT mark (the earlier design, pooled earlier days of a 14-day window with fixed thresholds: 86%); the sample's own
slow moves (volume -39% after December, +45% in September, the share of guest orders, basket value) give SHIFT marks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from shopflow.report import blocks
from shopflow.report.context import ReportContext

# --- baselines ---------------------------------------------------------------------------------------------------
SEASON_WEEKS = 6  # the day check: the same weekday of the previous 6 weeks ...
MIN_SEASON_DAYS = 3  # ... when at least 3 of them have a partition; otherwise:
RECENT_DAYS = 28  # every partition of the previous 28 days
MIN_BASELINE_DAYS = 3  # with fewer earlier partitions a day check is listed, not judged (marker n/a)
SHIFT_RECENT_DAYS = 21  # slow shift: the level of the last 3 weeks (the report day included) ...
SHIFT_GAP_DAYS = 7  # ... against, a week before them, ...
SHIFT_PRIOR_DAYS = 28  # ... the 4 weeks before that (weeks 5 to 8 back)
SHIFT_MIN_DAYS = 7  # partitions each side of the slow-shift check needs
# A source younger than this (days since its first partition) has no same-weekday baseline for every weekday yet:
# a DRIFT against its pooled earlier days stands only where today also departs from its earlier same weekdays.
HISTORY_DAYS = MIN_SEASON_DAYS * 7
LOOKBACK_DAYS = max(SEASON_WEEKS * 7, RECENT_DAYS, SHIFT_RECENT_DAYS + SHIFT_GAP_DAYS + SHIFT_PRIOR_DAYS - 1)
SEEN_DAYS = 365  # a value is "new" when no partition of the previous 365 days had it ...
NEW_VALUE_MIN_DAYS = 7  # ... of which at least 7 partitions were seen ...
NEW_VALUE_MIN_SHARE = 0.02  # ... and when it holds at least 2% of the day's rows

# --- thresholds --------------------------------------------------------------------------------------------------
Z_LIMIT = 4.0  # robust z of the day check
SHIFT_Z = 3.0  # slow shift: the two levels differ by more than 3 standard errors of their medians
MAD_SCALE = 1.4826  # MAD -> standard deviation of a normal distribution
COUNT_FLOOR = 0.10  # row count (log scale): spread at least 0.10, about 10% ...
COUNT_MIN_RATIO = 1.5  # ... a DRIFT needs x1.5 or /1.5 ...
COUNT_SHIFT_RATIO = 1.2  # ... a SHIFT of the level x1.2 or /1.2
RATE_FLOOR = 0.01  # null rates, shares, distances: spread at least 1 pp ...
RATE_MIN_PP = 0.05  # ... a DRIFT needs 5 pp ...
RATE_SHIFT_PP = 0.10  # ... a SHIFT of the level 10 pp
DISTRIBUTION_MIN = 0.10  # a category distribution DRIFTs when at least 10% of the rows moved to other values
LEVEL_FLOOR = math.log(1.1)  # quantiles and segment medians (log scale): spread at least 10% ...
LEVEL_MIN_RATIO = 1.5  # ... a DRIFT needs x1.5 or /1.5 ...
LEVEL_SHIFT_RATIO = 1.3  # ... a SHIFT x1.3 or /1.3; both more than two units of an integer column
QUANTILE_BAND = 0.05  # a quantile's floor: half the distance between the quantiles q - 5% and q + 5% ...
SEGMENT_BAND = 0.25  # ... a segment median's: half the segment's interquartile range (few customers, lumpy days)

MAX_CATEGORIES = 40
MIN_SEGMENT_ROWS = 30  # a segment's median counts on a day with at least this many rows of it ...
SEGMENT_MIN_DAYS = 5  # ... is checked against at least 5 such days of the baseline ...
SEGMENT_MIN_RATIO = 3.0  # ... and a DRIFT needs x3 or /3 (a segment is often a handful of customers)
TOP_SHARES = 6  # the most common values of a categorical column get a slow-shift check of their share
QUANTILES = (0.5, 0.9)
ID_SUFFIXES = ("_id", "_key", "source_line", "uniq_id", "pid", "_url", "_path", "_no")
NUMERIC = ("float64", "Float64", "Int64", "int64", "Int32", "int32")
MARKS = ("DRIFT", "SHIFT")
UNJUDGED = "n/a"  # a check whose baseline is too short to judge


@dataclass(frozen=True)
class Metric:
    """What one check measures. kind: count (log scale), rate (pp) or level (log scale when positive); `unit` is
    the resolution of an integer column."""

    measure: str
    column: str
    kind: str
    unit: float = 0.0
    headline: bool = True  # listed when nothing moved (segment medians are listed only when marked)
    shift: bool = True  # also has a slow-shift check
    segment: bool = False  # a median within one value of a categorical column


@dataclass
class Profile:
    """One partition's metrics, the spread around its quantiles and the value counts of its text columns."""

    values: dict[Metric, float | None] = field(default_factory=dict)
    bands: dict[Metric, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, dict[str, int] | None] = field(default_factory=dict)  # None: too many distinct values


def _id_like(column: str) -> bool:
    return column.endswith(ID_SUFFIXES) or column in ID_SUFFIXES


def _unit(dtype: str) -> float:
    return 1.0 if "int" in dtype.lower() else 0.0


def profile(frame: pd.DataFrame, schema: dict[str, str]) -> Profile:
    """The metrics of one partition (every column of the schema that the frame has)."""
    result = Profile()
    result.values[Metric("row count", "", "count")] = float(len(frame))
    columns = [c for c in schema if c in frame.columns]
    numeric = [c for c in columns if schema[c] in NUMERIC and not _id_like(c)]
    for column in columns:
        result.values[Metric("null rate", column, "rate")] = _null_rate(frame[column])
        dtype = schema[column]
        if column in numeric:
            values = pd.to_numeric(frame[column], errors="coerce").astype("float64").dropna()
            for q in QUANTILES:
                metric = Metric(f"p{int(q * 100)}", column, "level", _unit(dtype))
                result.values[metric] = float(values.quantile(q)) if len(values) else None
                if len(values):
                    result.bands[metric] = (float(values.quantile(max(q - QUANTILE_BAND, 0.0))),
                                            float(values.quantile(min(q + QUANTILE_BAND, 1.0))))
        elif dtype in ("boolean", "bool"):
            result.values[Metric("share true", column, "rate")] = _true_share(frame[column])
        elif dtype in ("string", "object", "category") and not _id_like(column):
            counts = _text(frame[column]).value_counts(dropna=True)
            result.categories[column] = ({str(k): int(v) for k, v in counts.items()}
                                         if len(counts) <= MAX_CATEGORIES else None)
            if result.categories[column]:
                _segments(result, frame, column, numeric, schema)
    return result


def _segments(result: Profile, frame: pd.DataFrame, by: str, numeric: list[str], schema: dict[str, str]) -> None:
    keys = _text(frame[by])
    sizes = keys.value_counts()
    inside = keys.isin(sizes[sizes >= MIN_SEGMENT_ROWS].index)
    if not inside.any():
        return
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce").astype("float64")[inside]
        grouped = values.groupby(keys[inside])
        low, mid, high = (grouped.quantile(q) for q in (0.5 - SEGMENT_BAND, 0.5, 0.5 + SEGMENT_BAND))
        for value, med in mid.items():
            if not pd.isna(med):
                metric = Metric(f"p50 where {by} = '{value}'", column, "level", _unit(schema[column]),
                                headline=False, shift=False, segment=True)
                result.values[metric] = float(med)
                result.bands[metric] = (float(low[value]), float(high[value]))


# --- comparison --------------------------------------------------------------------------------------------------
def compare(today: pd.DataFrame, earlier: dict[date, pd.DataFrame], schema: dict[str, str], ds: date) -> list[dict]:
    """The drift checks of the partition of `ds` against earlier partitions ({day: clean frame})."""
    return compare_profiles(ds, profile(today, schema), {d: profile(f, schema) for d, f in earlier.items()})


def value_sets(frame: pd.DataFrame, schema: dict[str, str]) -> dict[str, set[str]]:
    """The values of a partition's low-cardinality text columns: what the new-value check remembers of a day."""
    found = {}
    for column, dtype in schema.items():
        if column in frame.columns and dtype in ("string", "object", "category") and not _id_like(column):
            values = set(_text(frame[column]).dropna().unique())
            if len(values) <= MAX_CATEGORIES:
                found[column] = {str(v) for v in values}
    return found


def compare_profiles(ds: date, today: Profile, history: dict[date, Profile],
                     seen: dict[date, dict[str, set[str]]] | None = None, first_day: date | None = None) -> list[dict]:
    """Every check of `today` against the profiles of earlier days (those within LOOKBACK_DAYS count). `seen`: the
    value sets of earlier partitions (value_sets) over SEEN_DAYS, for the new-value check; by default the history's.
    `first_day`: the source's first partition (default: the earliest day of `history` and `seen`), for its age."""
    first_day = min([ds, *history, *(seen or {})]) if first_day is None else first_day
    young = _Young(ds, (ds - first_day).days) if (ds - first_day).days < HISTORY_DAYS else None
    seen = {d: v for d, v in (seen if seen is not None else {d: {c: set(k) for c, k in p.categories.items() if k is not None}
                                                             for d, p in history.items()}).items()
            if ds - timedelta(days=SEEN_DAYS) <= d < ds}
    history = {d: p for d, p in sorted(history.items()) if ds - timedelta(days=LOOKBACK_DAYS) <= d < ds}
    categorical = _categorical(today, history)
    rows: list[dict] = []
    for metric, value in today.values.items():
        segment = metric.measure.split(" where ", 1)[1].split(" = ", 1)[0] if " where " in metric.measure else None
        if segment is not None and segment not in categorical:
            continue
        series = {d: v for d, p in history.items() if (v := p.values.get(metric)) is not None and not math.isnan(v)}
        bands = [p.bands[metric] for p in history.values() if metric in p.bands]
        row = _day_check(metric, ds, value, series, bands, young)
        if row is not None:
            rows.append(row)
        row = _shift_check(metric, ds, value, series, bands) if metric.shift else None
        if row is not None:
            rows.append(row)
    for column in sorted(categorical):
        rows += _category_checks(column, ds, today, history, seen, young)
    for order, row in enumerate(rows):
        row["order"] = order
    return rows


def _categorical(today: Profile, history: dict[date, Profile]) -> set[str]:
    """Text columns with few distinct values on every day, and over the baseline and the day together."""
    found = set()
    for column in today.categories:
        days = [today.categories[column]] + [p.categories[column] for p in history.values() if column in p.categories]
        if any(c is None for c in days):
            continue
        if len(set().union(*[c.keys() for c in days])) <= MAX_CATEGORIES:
            found.add(column)
    return found


@dataclass(frozen=True)
class _Young:
    """A source in its first HISTORY_DAYS days: `age` days since its first partition."""

    ds: date
    age: int

    def reason(self, same_weekdays: int) -> str:
        found = (f"in line with its {same_weekdays} earlier {self.ds:%A}(s)" if same_weekdays
                 else f"no earlier {self.ds:%A} to tell a weekday pattern from a drift")
        return f"no history yet: {self.age} days of {HISTORY_DAYS} needed, {found}; not judged"


@dataclass
class Baseline:
    days: list[date]
    label: str
    seasonal: bool = False


def _day_baseline(ds: date, days, segment: bool = False) -> Baseline | None:
    season = [d for d in (ds - timedelta(weeks=k) for k in range(SEASON_WEEKS, 0, -1)) if d in days]
    if len(season) >= (SEGMENT_MIN_DAYS if segment else MIN_SEASON_DAYS):
        return Baseline(season, f"same weekday ({ds:%a}) of the previous {SEASON_WEEKS} weeks: {len(season)} "
                                f"partitions, {season[0]} .. {season[-1]}", seasonal=True)
    recent = sorted(d for d in days if ds - timedelta(days=RECENT_DAYS) <= d < ds)
    if not recent or (segment and len(recent) < SEGMENT_MIN_DAYS):
        return None
    short = f"; fewer than {MIN_BASELINE_DAYS}: not judged" if len(recent) < MIN_BASELINE_DAYS else ""
    return Baseline(recent, f"previous {RECENT_DAYS} days: {len(recent)} partition(s), {recent[0]} .. "
                            f"{recent[-1]}{short}")


class _Scale:
    """How a metric's values are compared: transform, floor of the spread, minimum effect."""

    def __init__(self, metric: Metric, values: list[float], bands: list[tuple[float, float]]):
        self.metric = metric
        self.log = metric.kind == "count" or (metric.kind == "level" and all(v > 0 for v in values))
        center = float(np.median(values))
        if metric.kind == "count":
            self.floor = COUNT_FLOOR
        elif metric.kind == "rate":
            self.floor = RATE_FLOOR
        elif self.log:
            local = [(math.log(hi) - math.log(lo)) / 2 for lo, hi in bands if lo > 0 and hi > 0]
            self.floor = max(LEVEL_FLOOR, math.log1p(metric.unit / center), float(np.median(local)) if local else 0.0)
        else:
            local = [(hi - lo) / 2 for lo, hi in bands]
            self.floor = max(metric.unit, 0.1 * abs(center), float(np.median(local)) if local else 0.0, 1e-9)

    def __call__(self, value: float) -> float:
        if self.metric.kind == "count":
            return math.log1p(max(value, 0.0))
        return math.log(value) if self.log and value > 0 else (-math.inf if self.log else value)

    def large(self, today: float, before: float, shift: bool) -> bool:
        """Whether a change from `before` to `today` reaches the minimum effect."""
        kind, unit = self.metric.kind, self.metric.unit
        if kind == "rate":
            return abs(today - before) >= (RATE_SHIFT_PP if shift else RATE_MIN_PP)
        if kind == "count":
            ratio = COUNT_SHIFT_RATIO if shift else COUNT_MIN_RATIO
            return abs(math.log1p(max(today, 0)) - math.log1p(max(before, 0))) >= math.log(ratio)
        ratio = LEVEL_SHIFT_RATIO if shift else (SEGMENT_MIN_RATIO if self.metric.segment else LEVEL_MIN_RATIO)
        if abs(today - before) <= 2 * unit:
            return False
        if self.log:
            return today <= 0 or abs(math.log(today) - math.log(before)) >= math.log(ratio)
        return abs(today - before) >= (ratio - 1) * abs(before) if before else True

    def effect_text(self, shift: bool) -> str:
        kind, unit = self.metric.kind, self.metric.unit
        if kind == "rate":
            return f"≥ {(RATE_SHIFT_PP if shift else RATE_MIN_PP) * 100:.0f} pp"
        ratio = (COUNT_SHIFT_RATIO if shift else COUNT_MIN_RATIO) if kind == "count" else \
            (LEVEL_SHIFT_RATIO if shift else (SEGMENT_MIN_RATIO if self.metric.segment else LEVEL_MIN_RATIO))
        return f"×{ratio:g} or ÷{ratio:g}" + (f", more than {2 * unit:g} units" if unit else "")


def _robust(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype="float64")
    center = float(np.median(arr))
    return center, float(MAD_SCALE * np.median(np.abs(arr - center)))


def _day_check(metric: Metric, ds: date, value: float | None, series: dict[date, float],
               bands: list[tuple[float, float]], young: _Young | None = None) -> dict | None:
    if value is None or math.isnan(value):
        return None
    baseline = _day_baseline(ds, series, metric.segment)
    if baseline is None:
        return None
    raw = [series[d] for d in baseline.days]
    scale = _Scale(metric, raw, bands)
    center, spread = _robust([scale(v) for v in raw])
    if baseline.seasonal:  # a handful of same-weekday values: the spread is also that of the other weekdays
        spread = max(spread, _weekday_residual_spread(ds, series, scale))
    before = float(np.median(raw))
    delta = scale(value) - center
    z = delta / max(spread, scale.floor)
    marked = abs(z) > Z_LIMIT and scale.large(value, before, shift=False)
    judged = len(baseline.days) >= MIN_BASELINE_DAYS
    label = baseline.label
    if marked and judged and young is not None and not baseline.seasonal:
        same = [v for d, v in series.items() if d < ds and d.weekday() == ds.weekday()]
        if not same or not scale.large(value, float(np.median(same)), shift=False):
            judged, label = False, f"{label}; {young.reason(len(same))}"
    return _row(("DRIFT" if marked else "ok") if judged else UNJUDGED, "day", metric, value, before, z, label,
                f"|z| > {Z_LIMIT:g} and {scale.effect_text(shift=False)}", baseline.days)


def _weekday_residual_spread(ds: date, series: dict[date, float], scale: _Scale) -> float:
    """1.4826 MAD of the deviations of the previous SEASON_WEEKS weeks' values from their own weekday's median."""
    by_weekday: dict[int, list[float]] = {}
    for day, value in series.items():
        if ds - timedelta(weeks=SEASON_WEEKS) <= day < ds:
            by_weekday.setdefault(day.weekday(), []).append(scale(value))
    residuals = [v - float(np.median(values)) for values in by_weekday.values() if len(values) >= 2 for v in values]
    residuals = [r for r in residuals if math.isfinite(r)]
    return float(MAD_SCALE * np.median(np.abs(residuals))) if residuals else 0.0


def _deseasonalised_spread(days: list[date], series: dict[date, float], scale: _Scale) -> float:
    """1.4826 MAD of the days' values around their weekday's median within the same days (the weekly rhythm is
    not noise); the plain spread where no weekday has two values."""
    by_weekday: dict[int, list[float]] = {}
    for day in days:
        by_weekday.setdefault(day.weekday(), []).append(scale(series[day]))
    residuals = [v - float(np.median(vs)) for vs in by_weekday.values() if len(vs) >= 2 for v in vs]
    residuals = [r for r in residuals if math.isfinite(r)]
    if not residuals:
        return _robust([scale(series[d]) for d in days])[1]
    return float(MAD_SCALE * np.median(np.abs(residuals)))


def _shift_check(metric: Metric, ds: date, value: float | None, series: dict[date, float],
                 bands: list[tuple[float, float]]) -> dict | None:
    series = dict(series)
    if value is not None and not math.isnan(value):
        series[ds] = value
    recent_start = ds - timedelta(days=SHIFT_RECENT_DAYS - 1)
    prior_end = recent_start - timedelta(days=SHIFT_GAP_DAYS)
    prior_start = prior_end - timedelta(days=SHIFT_PRIOR_DAYS)
    recent = sorted(d for d in series if recent_start <= d <= ds)
    prior = sorted(d for d in series if prior_start <= d < prior_end)
    if len(recent) < SHIFT_MIN_DAYS or len(prior) < SHIFT_MIN_DAYS:
        return None
    scale = _Scale(metric, [series[d] for d in prior], bands)
    r_center, p_center = (float(np.median([scale(series[d]) for d in days])) for days in (recent, prior))
    r_spread, p_spread = (_deseasonalised_spread(days, series, scale) for days in (recent, prior))
    # standard error of a median: 1.2533 sigma / sqrt(n)
    error = 1.2533 * math.sqrt(max(r_spread, scale.floor) ** 2 / len(recent)
                               + max(p_spread, scale.floor) ** 2 / len(prior))
    z = (r_center - p_center) / error
    now, before = float(np.median([series[d] for d in recent])), float(np.median([series[d] for d in prior]))
    marked = abs(z) > SHIFT_Z and scale.large(now, before, shift=True)
    label = (f"median of the last {SHIFT_RECENT_DAYS} days ({len(recent)} partitions, {recent[0]} .. {recent[-1]}) "
             f"against weeks {(SHIFT_RECENT_DAYS + SHIFT_GAP_DAYS) // 7 + 1} to "
             f"{(SHIFT_RECENT_DAYS + SHIFT_GAP_DAYS + SHIFT_PRIOR_DAYS) // 7} back ({len(prior)} partitions, {prior[0]} .."
             f" {prior[-1]})")
    return _row("SHIFT" if marked else "ok", "slow shift", metric, now, before, z, label,
                f"separation > {SHIFT_Z:g} s.e. and {scale.effect_text(shift=True)}", prior)


def _category_checks(column: str, ds: date, today: Profile, history: dict[date, Profile],
                     seen: dict[date, dict[str, set[str]]], young: _Young | None = None) -> list[dict]:
    """The distribution of a categorical column's values, new values, and slow shifts of its common values."""
    counts_today = today.categories[column] or {}
    total_today = sum(counts_today.values())
    shares = {d: _shares(p.categories[column]) for d, p in history.items() if p.categories.get(column)}
    if not total_today or not shares:
        return []
    share_today = _shares(counts_today)
    rows = []
    baseline = _day_baseline(ds, shares)
    if baseline is not None:
        reference = _reference([shares[d] for d in baseline.days])
        # how far the days of the last SEASON_WEEKS weeks lie from it: the usual distance and its spread
        distances = [_distance(shares[d], reference) for d in shares if ds - timedelta(weeks=SEASON_WEEKS) <= d]
        distance = _distance(share_today, reference)
        center, spread = _robust(distances)
        z = (distance - center) / max(spread, RATE_FLOOR)
        moved = sorted(set(share_today) | set(reference), key=lambda v: -abs(share_today.get(v, 0) - reference.get(v, 0)))
        detail = ", ".join(f"'{v}' {reference.get(v, 0) * 100:.1f}% -> {share_today.get(v, 0) * 100:.1f}%"
                           for v in moved[:3])
        metric = Metric("distribution of values", column, "rate")
        marker = "DRIFT" if z > Z_LIMIT and distance - center >= DISTRIBUTION_MIN else "ok"
        label = baseline.label
        if marker == "DRIFT" and young is not None and not baseline.seasonal:
            same = [shares[d] for d in shares if d.weekday() == ds.weekday()]
            if not same or _distance(share_today, _reference(same)) < DISTRIBUTION_MIN:
                marker, label = UNJUDGED, f"{label}; {young.reason(len(same))}"
        row = _row(marker if len(baseline.days) >= MIN_BASELINE_DAYS else UNJUDGED, "day", metric,
                   distance, center, z, label,
                   f"z > {Z_LIMIT:g} and ≥ {DISTRIBUTION_MIN * 100:.0f} pp more than usual", baseline.days)
        row.update(measure="distribution of values (share of rows on other values than the baseline)",
                   change=f"{(distance - center) * 100:+.1f} pp; most moved: {detail}")
        rows.append(row)
    known = sorted(d for d, sets in seen.items() if column in sets)
    if len(known) >= NEW_VALUE_MIN_DAYS:
        values = set().union(*[seen[d][column] for d in known])
        for value, count in sorted(counts_today.items(), key=lambda kv: (-kv[1], kv[0])):
            if value not in values and count / total_today >= NEW_VALUE_MIN_SHARE:
                rows.append(_row("DRIFT", "day", Metric(f"new value '{value}'", column, "rate"), count / total_today,
                                 0.0, None, f"never seen in the {len(known)} earlier partitions ({known[0]} .. "
                                            f"{known[-1]})",
                                 f"a new value with ≥ {NEW_VALUE_MIN_SHARE:.0%} of the rows", known))
    seen = set().union(*[s.keys() for s in shares.values()])
    typical = {v: float(np.median([s.get(v, 0.0) for s in shares.values()])) for v in seen}
    for value in sorted(seen, key=lambda v: (-typical[v], v))[:TOP_SHARES]:
        series = {d: s.get(value, 0.0) for d, s in shares.items()}
        row = _shift_check(Metric(f"share of '{value}'", column, "rate"), ds, share_today.get(value, 0.0), series, [])
        if row is not None:
            rows.append(row)
    return rows


def _shares(counts: dict[str, int] | None) -> dict[str, float]:
    total = sum((counts or {}).values())
    return {k: v / total for k, v in (counts or {}).items()} if total else {}


def _reference(days: list[dict[str, float]]) -> dict[str, float]:
    """The baseline's distribution: each value's median share, normalised."""
    values = set().union(*[d.keys() for d in days])
    medians = {v: float(np.median([d.get(v, 0.0) for d in days])) for v in values}
    total = math.fsum(medians.values())  # fsum: exact, so the result does not depend on the set's order
    return {v: m / total for v, m in medians.items() if m > 0} if total else {}


def _distance(shares: dict[str, float], reference: dict[str, float]) -> float:
    """Total variation distance: the share of rows that would have to move to other values."""
    return 0.5 * math.fsum(abs(shares.get(v, 0.0) - reference.get(v, 0.0)) for v in set(shares) | set(reference))


def _row(marker: str, check: str, metric: Metric, today: float, before: float, z: float | None, baseline: str,
         threshold: str, days: list[date]) -> dict:
    return {"marker": marker, "check": check, "measure": metric.measure, "column": metric.column,
            "today": _plain(today), "before": _plain(before), "today_shown": _shown(metric, today),
            "before_shown": _shown(metric, before), "change": _change(metric, today, before),
            "change_value": _plain(_change_value(metric, today, before)),
            "z": None if z is None or not math.isfinite(z) else round(float(z), 1), "threshold": threshold,
            "baseline": baseline, "baseline_days": [d.isoformat() for d in days], "kind": metric.kind,
            "headline": metric.headline}


def _change_value(metric: Metric, today: float, before: float) -> float | None:
    if metric.kind == "rate":
        return today - before
    return (today - before) / abs(before) if before else None


def _change(metric: Metric, today: float, before: float) -> str:
    if metric.kind == "rate":
        return f"{(today - before) * 100:+.1f} pp"
    if before:
        ratio = today / before
        return f"{(ratio - 1) * 100:+.1f}%" + (f" (×{ratio:.3g})" if ratio >= 3 else "")
    return "±0" if today == before else f"{today - before:+,.4g} (from 0)"


def _shown(metric: Metric, value: float | None) -> str | None:
    if value is None:
        return None
    if metric.kind == "rate":
        return f"{value * 100:.1f}%"
    if metric.kind == "count" or (metric.unit and float(value).is_integer()):
        return f"{value:,.0f}"
    return f"{value:,.4g}"


def describe(row: dict) -> str:
    """One sentence for a row: what, how much, against which baseline."""
    target = f"{row['measure']} of {row['column']}" if row["column"] else row["measure"]
    z = "" if row["z"] is None else f", z {row['z']:+.1f}"
    return (f"{row['marker']}: {target} {row['today_shown']} against {row['before_shown']} ({row['change']}{z}); "
            f"baseline: {row['baseline']}")


# --- the section -------------------------------------------------------------------------------------------------
def history_text(age: int) -> str:
    return f"no history yet: {age} days of {HISTORY_DAYS} needed"


def build(ctx: ReportContext) -> dict:
    content, summary = [], {}
    since = ctx.ds - timedelta(days=LOOKBACK_DAYS)
    for name in ctx.specs:
        today = ctx.clean(name)
        if today is None:
            continue
        partition = ctx.partition(name)
        readable = [p.ds for p in ctx.partitions(name)
                    if p.ds < ctx.ds and p.load_kind == partition.load_kind and ctx.has_data(name, p.ds)]
        age = (ctx.ds - readable[0]).days if readable else 0
        history = {"days": age, "needed": HISTORY_DAYS, "young": age < HISTORY_DAYS}
        earlier_days = [day for day in readable if day >= since]
        if not earlier_days:
            summary[name] = {"compared_with": [], "drifted": 0, "shifted": 0, "checks": 0, "marks": [],
                             "history": history, "marked": []}
            content.append(blocks.subsection(name, [blocks.note(
                f"{history_text(age)}: no earlier {partition.load_kind} partition in the {LOOKBACK_DAYS} days "
                f"before {ctx.ds} to compare with.")], status="no_data"))
            continue
        schema = ctx.specs[name].clean_schema
        profiles = {day: profile(ctx.clean(name, day), schema) for day in earlier_days}
        remembered = [day for day in readable if day >= ctx.ds - timedelta(days=SEEN_DAYS)]
        seen = {day: {c: set(k) for c, k in profiles[day].categories.items() if k is not None} if day in profiles
                else value_sets(ctx.clean(name, day), schema) for day in remembered}
        rows = compare_profiles(ctx.ds, profile(today, schema), profiles, seen, first_day=readable[0])
        marked = [r for r in rows if r["marker"] in MARKS]
        summary[name] = {"compared_with": [d.isoformat() for d in earlier_days],
                         "drifted": sum(r["marker"] == "DRIFT" for r in rows),
                         "shifted": sum(r["marker"] == "SHIFT" for r in rows), "checks": len(rows),
                         "marks": [describe(r) for r in marked], "history": history,
                         "marked": [{k: r[k] for k in ("marker", "measure", "column", "change")} for r in marked]}
        shown = sorted((r for r in rows if r["marker"] in MARKS or r["headline"]),
                       key=lambda r: (r["marker"] not in MARKS, r["order"]))
        # A slow SHIFT is a standing fact for weeks (the level of the last weeks against the weeks before): shown
        # and summarised, but it does not turn the day to warning on every one of those days; a DRIFT does.
        drifted = any(r["marker"] == "DRIFT" for r in marked)
        parts = [blocks.note("\n".join(describe(r) for r in marked), "warning" if drifted else "info")] if marked else []
        if history["young"]:
            parts.append(blocks.note(
                f"{history_text(age)} (first partition {readable[0]}): a same-weekday baseline needs the weekday in "
                f"{MIN_SEASON_DAYS} of the previous {SEASON_WEEKS} weeks. Until then a DRIFT against the earlier days "
                f"stands only where today also departs from the earlier partitions of the same weekday; the others "
                f"are listed as n/a."))
        unmarked = len(shown) - len(marked)
        parts.append(blocks.table(
            f"{name} on {ctx.ds} against {len(earlier_days)} earlier {partition.load_kind} partition(s) "
            f"({earlier_days[0]} .. {earlier_days[-1]})", [
                blocks.column("marker", "", "status"), blocks.column("check", "check"),
                blocks.column("measure", "measure"), blocks.column("column", "column", "code"),
                blocks.column("today_shown", "today"), blocks.column("before_shown", "baseline"),
                blocks.column("change", "change"), blocks.column("z", "robust z", "float"),
                blocks.column("threshold", "marked when"), blocks.column("baseline", "baseline")],
            shown, shown_rows=len(marked),
            folded=f"{unmarked} check(s) without a mark" + (", none marked" if not marked else ""),
            note=f"{len(rows) - len(shown)} segment medians (a numeric column within one value of a categorical "
                 f"column) are not marked and not listed." if len(rows) > len(shown) else None))
        content.append(blocks.subsection(name, parts, status="warning" if drifted else "ok"))
    if not content:
        content.append(blocks.note(f"No dataset has a partition on {ctx.ds}."))
    flagged = sum(s["drifted"] for s in summary.values())
    compared = any(s["compared_with"] for s in summary.values())
    return blocks.section(
        "drift", "Drift", content, status="warning" if flagged else ("ok" if compared else "no_data"),
        summary=summary, intro=INTRO)


INTRO = (f"DRIFT (day check): today against the same weekday of the previous {SEASON_WEEKS} weeks (at least "
         f"{MIN_SEASON_DAYS} partitions, else the previous {RECENT_DAYS} days; fewer than {MIN_BASELINE_DAYS}: n/a); "
         f"robust z = (today − median) / max(1.4826·MAD, floor) beyond ±{Z_LIMIT:g} and a minimum effect: row count "
         f"and quantiles ×{COUNT_MIN_RATIO:g} (log scale; a quantile's floor is the spread of the distribution "
         f"around it, at least one unit of an integer column), null rates and shares {RATE_MIN_PP * 100:.0f} pp, a "
         f"category distribution {DISTRIBUTION_MIN:.0%} of the rows, a value not seen in {SEEN_DAYS} days with ≥ "
         f"{NEW_VALUE_MIN_SHARE:.0%} of the rows, the median within one value of a categorical column "
         f"×{SEGMENT_MIN_RATIO:g}. SHIFT (slow shift): the median level of the last {SHIFT_RECENT_DAYS} days against "
         f"weeks {(SHIFT_RECENT_DAYS + SHIFT_GAP_DAYS) // 7 + 1} to "
         f"{(SHIFT_RECENT_DAYS + SHIFT_GAP_DAYS + SHIFT_PRIOR_DAYS) // 7} back, more than {SHIFT_Z:g} standard errors "
         f"apart and by ×{COUNT_SHIFT_RATIO:g} (row count), ×{LEVEL_SHIFT_RATIO:g} (quantiles) or "
         f"{RATE_SHIFT_PP * 100:.0f} pp (rates, shares). A source's first {HISTORY_DAYS} days have no history yet: "
         f"a DRIFT against its earlier days stands only where today also departs from its earlier same weekdays. "
         f"Each table lists the marked checks first; the others are folded.")


# --- column statistics -------------------------------------------------------------------------------------------
def _text(series: pd.Series) -> pd.Series:
    values = series.astype("string").str.strip()
    return values.mask(values == "")


def _null_rate(series: pd.Series) -> float | None:
    if len(series) == 0:  # no rows (an all-quarantined day): no null rate, not a 0% one in later days' baselines
        return None
    missing = series.isna()
    if series.dtype == "string" or series.dtype == object:
        missing = missing | (series.astype("string").str.strip() == "").fillna(False)
    return float(missing.mean())


def _true_share(series: pd.Series) -> float | None:
    values = series.dropna()
    return float(values.astype(bool).mean()) if len(values) else None


def _plain(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return int(value) if isinstance(value, (int, np.integer)) else float(value)
