"""Labelled examples from the clean catalogue: text, top-level and second-level labels, a stable split.

Only products whose category tree is intact (`category_status == 'ok'`) are labelled: depth-1 "trees" that are
the product name, truncated leaves and missing trees are what the repair step fixes, not what the model learns
from. Rare classes (fewer than `rare_class_min` products) become `other`. The split comes from a hash of the
product id, so a product stays in the same split on every day and in every run.
"""

from __future__ import annotations

import hashlib

import pandas as pd

OTHER = "other"
SPLITS = (("train", 80), ("validation", 90), ("test", 100))
DESCRIPTION_CHARS = 300


def split_of(uniq_id: str) -> str:
    bucket = int(hashlib.sha256(uniq_id.encode()).hexdigest()[:8], 16) % 100
    return next(name for name, upper in SPLITS if bucket < upper)


def product_text(frame: pd.DataFrame) -> pd.Series:
    """Title, then brand and the start of the description when present."""
    title = frame["product_name"].fillna("")
    brand = frame["brand"].fillna("") if "brand" in frame else ""
    description = frame["description"].fillna("").str.slice(0, DESCRIPTION_CHARS) if "description" in frame else ""
    text = title + (" | " + brand).where(brand != "", "") + (" | " + description).where(description != "", "")
    return text.str.strip()


def _collapse_rare(labels: pd.Series, minimum: int) -> pd.Series:
    counts = labels.value_counts()
    return labels.where(labels.map(counts) >= minimum, OTHER)


def labelled_examples(catalog: pd.DataFrame, rare_class_min: int) -> pd.DataFrame:
    """uniq_id, text, label_top, label_l2, split for every product with an intact category tree."""
    usable = catalog[(catalog["category_status"] == "ok") & catalog["category_top"].notna()].copy()
    usable = usable.sort_values("uniq_id").reset_index(drop=True)
    top = _collapse_rare(usable["category_top"].astype(str), rare_class_min)
    second = (usable["category_top"].astype(str) + " > " + usable["category_l2"].astype(str)).where(
        usable["category_l2"].notna(), OTHER)
    second = _collapse_rare(second, rare_class_min)
    return pd.DataFrame({
        "uniq_id": usable["uniq_id"].astype(str),
        "text": product_text(usable),
        "label_top": top,
        "label_l2": second,
        "split": usable["uniq_id"].astype(str).map(split_of),
    })


def repair_candidates(catalog: pd.DataFrame) -> pd.DataFrame:
    """Products whose category the repair step may fill (no usable tree) -- with their text."""
    broken = catalog[catalog["category_status"].isin(["name_only", "missing"])].copy()
    broken["text"] = product_text(broken)
    return broken
