"""Labelled examples from the clean catalogue of the model catalogue (`shopflow.roles.model_catalog`): text,
top-level and second-level labels, a stable split. Columns are read through the source's catalog role: the text is
its title (then brand and the start of the description, where mapped), the labels its first two category levels.

Only products whose category is intact (category_status `ok`; a source without a status field: every product with
a category) are labelled: depth-1 "trees" that are the product name, truncated leaves and missing trees are what
the repair step fixes, not what the model learns from. Rare classes (fewer than `rare_class_min` products) become
`other`; so does the second level of a source that has only one. The split comes from a hash of the product id,
so a product stays in the same split on every day and in every run.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from shopflow import roles
from shopflow.role_frames import INTACT_STATUS, categories, category_status
from shopflow.sources import SourceSpec

OTHER = "other"
SPLITS = (("train", 80), ("validation", 90), ("test", 100))
DESCRIPTION_CHARS = 300


def split_of(uniq_id: str) -> str:
    bucket = int(hashlib.sha256(uniq_id.encode()).hexdigest()[:8], 16) % 100
    return next(name for name, upper in SPLITS if bucket < upper)


def _trainable(spec: SourceSpec | None) -> SourceSpec:
    """The given catalog source, checked to be able to train, or the model catalogue."""
    if spec is None:
        return roles.model_catalog_source()
    obstacle = roles.training_obstacle(spec)
    if obstacle:
        raise ValueError(obstacle)
    return spec


def product_text(frame: pd.DataFrame, spec: SourceSpec | None = None) -> pd.Series:
    """Title, then brand and the start of the description when present (`spec`: default the model catalogue)."""
    spec = _trainable(spec)
    brand_column, description_column = spec.role_column("brand"), spec.role_column("description")
    title = frame[spec.role_column("title")].fillna("")
    brand = frame[brand_column].fillna("") if brand_column and brand_column in frame else ""
    description = frame[description_column].fillna("").str.slice(0, DESCRIPTION_CHARS) \
        if description_column and description_column in frame else ""
    text = title + (" | " + brand).where(brand != "", "") + (" | " + description).where(description != "", "")
    return text.str.strip()


def _collapse_rare(labels: pd.Series, minimum: int) -> pd.Series:
    counts = labels.value_counts()
    return labels.where(labels.map(counts) >= minimum, OTHER)


def labelled_examples(catalog: pd.DataFrame, rare_class_min: int, spec: SourceSpec | None = None) -> pd.DataFrame:
    """uniq_id (the product's id), text, label_top, label_l2, split for every product with an intact category."""
    spec = _trainable(spec)
    product_id = spec.role_column("id")
    top, second = categories(catalog, spec)
    usable = catalog[(category_status(catalog, spec) == INTACT_STATUS) & top.notna()].copy()
    usable = usable.sort_values(product_id).reset_index(drop=True)
    top, second = categories(usable, spec)
    top_label = _collapse_rare(top.astype(str), rare_class_min)
    second_label = OTHER if second is None else (top.astype(str) + " > " + second.astype(str)).where(
        second.notna(), OTHER)
    second_label = _collapse_rare(pd.Series(second_label, index=usable.index), rare_class_min)
    return pd.DataFrame({
        "uniq_id": usable[product_id].astype(str),
        "text": product_text(usable, spec),
        "label_top": top_label,
        "label_l2": second_label,
        "split": usable[product_id].astype(str).map(split_of),
    })


def repair_candidates(catalog: pd.DataFrame, spec: SourceSpec | None = None) -> pd.DataFrame:
    """Products whose category the repair step may fill (no usable category) -- with their text."""
    spec = _trainable(spec)
    broken = catalog[category_status(catalog, spec).isin(["name_only", "missing"])].copy()
    broken["text"] = product_text(broken, spec)
    return broken
