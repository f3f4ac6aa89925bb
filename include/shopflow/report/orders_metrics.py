"""Order-line measures shared by the users and products sections (net merchandise revenue, sale lines, which days
of an orders source a figure covers, what an orders source's role cannot tell), on order lines read through the
orders role (`shopflow.sources.role_frames.order_lines`: columns named by role field, plus amount, sale and merchandise),
and the conversion of pandas results into the plain JSON values that blocks hold."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd

from shopflow.report import blocks
from shopflow.report.context import ReportContext
from shopflow.sources import SourceSpec, roles


def product_lines(lines: pd.DataFrame) -> pd.DataFrame:
    """Merchandise lines, cancellations included (their quantity and amount are negative)."""
    return lines[lines["merchandise"]]


def is_sale(lines: pd.DataFrame) -> pd.Series:
    return lines["sale"]


def net_product_revenue(lines: pd.DataFrame, by: str | list[str]) -> pd.Series:
    """Net amount of merchandise lines per `by` key: sales minus cancellations, to the penny."""
    return product_lines(lines).groupby(by, sort=True)["amount"].sum().round(2)


def coverage(ctx: ReportContext, source: str, days: list[date], orders: pd.DataFrame) -> tuple[str, str]:
    """A sentence naming the days and rows of an orders source a figure covers, and 'warning' when any day failed
    validation."""
    failed = [d for d in days if (p := ctx.partition(source, d)) is not None and p.status == "failed_validation"]
    text = (f"Covers {len(days)} {source} day(s) with data, {days[0]} to {days[-1]}: {len(orders):,} clean order "
            f"lines.")
    if failed:
        text += (f" {len(failed)} of these days failed validation ({', '.join(str(d) for d in failed)}); their "
                 f"rows are included.")
    return text, "warning" if failed else "ok"


def caveats(spec: SourceSpec, orders: pd.DataFrame) -> list[dict]:
    """Notes on what the source's orders role cannot tell apart, so every line is counted (none for a source that
    maps a cancellation field and types its lines)."""
    notes = []
    if not roles.maps(spec, "cancellation"):
        notes.append(blocks.note(roles.no_field(spec, "cancellation", "every line counts as a sale") + "."))
    if not roles.maps(spec, "line_type"):
        notes.append(blocks.note(roles.no_field(spec, "line_type", "every line counts as merchandise (postage, fees "
                                                "and adjustments included)") + "."))
    return notes


def plain(value):
    """A JSON-ready python value: numpy and pandas scalars become int/float/bool/str, missing values None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, date)):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def records(frame: pd.DataFrame) -> list[dict]:
    """Table rows of plain values, in the frame's order."""
    return [{key: plain(value) for key, value in row.items()} for row in frame.to_dict("records")]
