"""A role source's clean rows read through its role: columns named by role field (`customer`, `timestamp`,
`title`, ...) whatever the source calls them, and what a role implies beyond its fields: an order line's amount and
whether it is a sale of merchandise; a product's top-level and second-level category (its category_levels, else
split from its category_path) and the state of its category.

`shopflow.sources.roles` says which sources play a role; this module reads their frames (it imports pandas, roles does not).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from shopflow.sources import SourceSpec
from shopflow.sources.spec import MERCHANDISE_LINE, ROLE_FIELDS

# category_path holds the levels joined by this (the Flipkart cleaner writes "Clothing > Women's Clothing > ...").
CATEGORY_PATH_SEPARATOR = ">"
# How levels are joined when written: a category path, and a second-level label ("Top > Second").
LEVEL_SEPARATOR = " > "
# A product's category state (the catalog cleaner's category_status values; shopflow.governance.repair acts on them).
INTACT_STATUS, MISSING_STATUS = "ok", "missing"


def role_frame(frame: pd.DataFrame, spec: SourceSpec, role_fields: Iterable[str] | None = None) -> pd.DataFrame:
    """The columns of `frame` that play the source's role fields (default: all of them but category_levels, see
    `categories`), named by field; a field the source does not map is not a column. The index is kept."""
    wanted = ROLE_FIELDS[spec.role.name] if role_fields is None else role_fields
    columns = {name: spec.role_column(name) for name in wanted if name != "category_levels"}
    return pd.DataFrame({name: frame[column] for name, column in columns.items() if column and column in frame},
                        index=frame.index)


# ---- orders ----------------------------------------------------------------------------------------------------
def order_lines(frame: pd.DataFrame, spec: SourceSpec) -> pd.DataFrame:
    """An orders source's lines by role field, plus `amount` (quantity x unit price, to the penny, where the source
    maps both), `sale` (not a cancellation; every line of a source without a cancellation field) and
    `merchandise` (the line_type field is MERCHANDISE_LINE; every line of a source that maps no line_type)."""
    lines = role_frame(frame, spec)
    if "quantity" in lines and "unit_price" in lines:
        lines["amount"] = (lines["quantity"].astype("float64") * lines["unit_price"].astype("float64")).round(2)
    cancelled = lines["cancellation"].fillna(False).astype(bool) if "cancellation" in lines else False
    lines["sale"] = ~pd.Series(cancelled, index=lines.index, dtype=bool)
    merchandise = lines["line_type"].eq(MERCHANDISE_LINE).fillna(False).astype(bool) if "line_type" in lines else True
    lines["merchandise"] = pd.Series(merchandise, index=lines.index, dtype=bool)
    return lines


# ---- events ----------------------------------------------------------------------------------------------------
def event_rows(frame: pd.DataFrame, spec: SourceSpec) -> pd.DataFrame:
    """An events source's rows by role field: user, event_type and, where mapped, item and timestamp."""
    return role_frame(frame, spec, ROLE_FIELDS["events"])


# ---- catalogue -------------------------------------------------------------------------------------------------
def _text_or_na(values: pd.Series) -> pd.Series:
    values = values.astype("string").str.strip()
    return values.mask(values == "")


def categories(frame: pd.DataFrame, spec: SourceSpec) -> tuple[pd.Series | None, pd.Series | None]:
    """Each product's top-level and second-level category: the first two category_levels columns, else the first two
    parts of category_path; None for a level the source does not have."""
    levels = spec.role.columns("category_levels")
    if levels:
        return frame[levels[0]], (frame[levels[1]] if len(levels) > 1 else None)
    path = spec.role_column("category_path")
    if path is None:
        return None, None
    parts = frame[path].astype("string").str.split(CATEGORY_PATH_SEPARATOR)
    return _text_or_na(parts.str[0]), _text_or_na(parts.str[1])


def category_columns(spec: SourceSpec) -> list[str]:
    """The clean columns `categories` and `category_status` read: the status field where the source maps one, else
    the first two category_levels (or the category_path). A reader that loads only some columns loads these."""
    status = spec.role_column("category_status")
    levels = spec.role.columns("category_levels")
    path = spec.role_column("category_path")
    return [*([status] if status else []), *(levels[:2] if levels else [path] if path else [])]


def category_status(frame: pd.DataFrame, spec: SourceSpec) -> pd.Series:
    """Each product's category state: the source's category_status field; a source without one: `ok` where the
    product has a top-level category, else `missing` (every product with a category counts as usable)."""
    column = spec.role_column("category_status")
    if column is not None:
        return frame[column]
    top, _ = categories(frame, spec)
    has_category = _text_or_na(top).notna().to_numpy(dtype=bool) if top is not None else np.zeros(len(frame), bool)
    return pd.Series(np.where(has_category, INTACT_STATUS, MISSING_STATUS), index=frame.index, dtype="string")


# Which clean column plays each field the repair fills, audits or checks.
def category_field(spec: SourceSpec) -> str:
    """The clean column the repair fills and audits: the first category level, else the category path."""
    return (spec.role.columns("category_levels") or [spec.role_column("category_path")])[0]


def l2_field(spec: SourceSpec) -> str | None:
    """The clean column of the second category level (None for a source whose role maps no second level)."""
    levels = spec.role.columns("category_levels")
    return levels[1] if len(levels) > 1 else None


def brand_field(spec: SourceSpec) -> str | None:
    """The brand column, when the source's role maps a brand and a title to read one from (else None)."""
    return spec.role_column("brand") if spec.role_column("title") else None


def price_field(spec: SourceSpec) -> str | None:
    """The price column the anomaly check reads (None for a source whose role maps no price)."""
    return spec.role_column("price")
