"""Order-line measures shared by the users and products sections (net product revenue, sale lines, which orders
days a figure covers), and the conversion of pandas results into the plain JSON values that blocks hold."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd

from shopflow.report.context import ReportContext

# `line_type` of merchandise lines (shopflow.sources.orders.line_types); postage, fees and adjustments are not.
PRODUCT_LINE = "product"


def product_lines(orders: pd.DataFrame) -> pd.DataFrame:
    """Merchandise lines, cancellations included (their quantity and amount are negative)."""
    return orders[orders["line_type"] == PRODUCT_LINE]


def is_sale(orders: pd.DataFrame) -> pd.Series:
    return ~orders["is_cancellation"].fillna(False).astype(bool)


def net_product_revenue(orders: pd.DataFrame, by: str | list[str]) -> pd.Series:
    """Net GBP of product lines per `by` key: sales minus cancellations, to the penny."""
    return product_lines(orders).groupby(by, sort=True)["line_amount_gbp"].sum().round(2)


def coverage(ctx: ReportContext, days: list[date], orders: pd.DataFrame) -> tuple[str, str]:
    """A sentence naming the orders days and rows a figure covers, and 'warning' when any day failed validation."""
    failed = [d for d in days if (p := ctx.partition("orders", d)) is not None and p.status == "failed_validation"]
    text = (f"Covers {len(days)} orders day(s) with data, {days[0]} to {days[-1]}: {len(orders):,} clean invoice "
            f"lines.")
    if failed:
        text += (f" {len(failed)} of these days failed validation ({', '.join(str(d) for d in failed)}); their "
                 f"rows are included.")
    return text, "warning" if failed else "ok"


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
