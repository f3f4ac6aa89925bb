"""Section 7, drift: per dataset, the day's partition against the earlier partitions of the window with the same
load kind: row count, null rates, quantiles of numeric columns and shares of categorical columns. A change beyond
its threshold is marked DRIFT.

Which columns are compared is derived from the clean schema, not configured per dataset: numeric columns (not ids,
keys or line numbers) by their 50th and 90th percentiles, boolean columns by their share of true, text columns with
at most MAX_CATEGORIES distinct values by the shares of their most common values.
"""

from __future__ import annotations

import pandas as pd

from shopflow.report import blocks
from shopflow.report.context import ReportContext

ROWS_RELATIVE = 0.5  # row count differs from the earlier days' mean by more than 50%
NULL_RATE_PP = 0.05  # a column's null rate moves by more than 5 percentage points
SHARE_PP = 0.10  # a category's share moves by more than 10 percentage points
QUANTILE_RELATIVE = 0.25  # a percentile moves by more than 25%
MAX_CATEGORIES = 40
TOP_SHARES = 6
QUANTILES = (0.5, 0.9)
SKIPPED_SUFFIXES = ("_id", "_key", "source_line", "uniq_id", "pid", "_url", "_path")


def build(ctx: ReportContext) -> dict:
    content, summary = [], {}
    for name in ctx.specs:
        today = ctx.clean(name)
        if today is None:
            continue
        partition = ctx.partition(name)
        earlier_days = [p.ds for p in ctx.window_partitions(name)
                        if p.ds < ctx.ds and p.load_kind == partition.load_kind and ctx.has_data(name, p.ds)]
        if not earlier_days:
            content.append(blocks.subsection(name, [blocks.note(
                f"No earlier {partition.load_kind} partition in the window to compare with.")], status="no_data"))
            continue
        earlier = [ctx.clean(name, day) for day in earlier_days]
        rows = compare(today, earlier, ctx.specs[name].clean_schema)
        flagged = [r for r in rows if r["marker"] == "DRIFT"]
        summary[name] = {"compared_with": [d.isoformat() for d in earlier_days], "drifted": len(flagged),
                         "checks": len(rows)}
        content.append(blocks.subsection(name, [blocks.table(
            f"{name} on {ctx.ds} against {len(earlier_days)} earlier {partition.load_kind} partition(s) "
            f"({earlier_days[0]} .. {earlier_days[-1]})", [
                blocks.column("marker", "", "status"), blocks.column("measure", "measure"),
                blocks.column("column", "column", "code"), blocks.column("today", "today", "float"),
                blocks.column("before", "earlier days", "float"), blocks.column("change", "change"),
                blocks.column("threshold", "threshold")],
            sorted(rows, key=lambda r: (r["marker"] != "DRIFT", r["order"])))],
            status="warning" if flagged else "ok"))
    if not content:
        content.append(blocks.note(f"No dataset has a partition on {ctx.ds}."))
    drifted = sum(s["drifted"] for s in summary.values())
    return blocks.section(
        "drift", "Drift", content, status="warning" if drifted else ("ok" if summary else "no_data"),
        summary=summary,
        intro=(f"Thresholds: rows ±{ROWS_RELATIVE:.0%} of the earlier mean; null rate ±{NULL_RATE_PP * 100:.0f} pp; "
               f"category share ±{SHARE_PP * 100:.0f} pp; p50/p90 ±{QUANTILE_RELATIVE:.0%}. "
               f"Earlier days are pooled."))


def compare(today: pd.DataFrame, earlier: list[pd.DataFrame], schema: dict[str, str]) -> list[dict]:
    """The drift checks of one partition against earlier ones (rows with measure, values, change, marker)."""
    pooled = pd.concat(earlier, ignore_index=True)
    rows = [_check("row count", "", len(today), len(pooled) / len(earlier), "relative", ROWS_RELATIVE)]
    for column, dtype in schema.items():
        if column not in today or column.endswith(SKIPPED_SUFFIXES) or column in SKIPPED_SUFFIXES:
            continue
        rows.append(_check("null rate", column, _null_rate(today[column]), _null_rate(pooled[column]), "pp",
                           NULL_RATE_PP))
        if dtype in ("float64", "Int64", "int64"):
            rows += [_check(f"p{int(q * 100)}", column, _quantile(today[column], q), _quantile(pooled[column], q),
                            "relative", QUANTILE_RELATIVE) for q in QUANTILES]
        elif dtype == "boolean":
            rows.append(_check("share true", column, _true_share(today[column]), _true_share(pooled[column]), "pp",
                               SHARE_PP))
        elif dtype == "string" and 0 < today[column].nunique() <= MAX_CATEGORIES:
            rows += _share_checks(column, today[column], pooled[column])
    for order, row in enumerate(rows):
        row["order"] = order
    return rows


def _check(measure: str, column: str, today, before, kind: str, threshold: float) -> dict:
    if today is None or before is None:
        change, drifted = None, False
    elif kind == "pp":
        change = today - before
        drifted = abs(change) > threshold
    else:
        change = (today - before) / abs(before) if before else (0.0 if today == before else None)
        drifted = change is None or abs(change) > threshold
    shown = "–" if change is None else (f"{change * 100:+.1f} pp" if kind == "pp" else f"{change * 100:+.1f}%")
    limit = f"±{threshold * 100:.0f} pp" if kind == "pp" else f"±{threshold:.0%}"
    return {"measure": measure, "column": column, "today": _plain(today), "before": _plain(before), "change": shown,
            "change_value": _plain(change), "threshold": limit, "marker": "DRIFT" if drifted else "ok"}


def _share_checks(column: str, today: pd.Series, before: pd.Series) -> list[dict]:
    shares_today = today.value_counts(normalize=True, dropna=True)
    shares_before = before.value_counts(normalize=True, dropna=True)
    union = (shares_today.add(shares_before, fill_value=0)).sort_index().sort_values(ascending=False, kind="stable")
    return [_check(f"share of '{value}'", column, float(shares_today.get(value, 0.0)),
                   float(shares_before.get(value, 0.0)), "pp", SHARE_PP) for value in union.index[:TOP_SHARES]]


def _null_rate(series: pd.Series) -> float:
    if len(series) == 0:
        return 0.0
    missing = series.isna()
    if series.dtype == "string" or series.dtype == object:
        missing = missing | (series.astype("string").str.strip() == "").fillna(False)
    return float(missing.mean())


def _quantile(series: pd.Series, q: float) -> float | None:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.quantile(q)) if len(values) else None


def _true_share(series: pd.Series) -> float | None:
    values = series.dropna()
    return float(values.astype(bool).mean()) if len(values) else None


def _plain(value):
    if value is None:
        return None
    return int(value) if isinstance(value, int) else float(value)
