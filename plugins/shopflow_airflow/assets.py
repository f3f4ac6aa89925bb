"""The Assets shopflow publishes: one per validated clean dataset. Other DAGs schedule on these names."""

from __future__ import annotations

from airflow.sdk import Asset

CLEAN_ASSET_PREFIX = "shopflow_clean_"


def clean_asset(dataset: str) -> Asset:
    return Asset(name=f"{CLEAN_ASSET_PREFIX}{dataset}", uri=f"shopflow://lake/clean/{dataset}", group="shopflow")


def dataset_of(asset_name: str) -> str | None:
    """The dataset whose clean Asset this is (`shopflow_clean_orders` -> `orders`); None for any other Asset."""
    if not asset_name.startswith(CLEAN_ASSET_PREFIX):
        return None
    return asset_name[len(CLEAN_ASSET_PREFIX):] or None


# The governed dataset of near-duplicate clusters (shopflow.governance.duplicates.DATASET; not imported here: parse time).
DUPLICATES_ASSET = "catalog_duplicates"


def duplicates_asset() -> Asset:
    """Updated by the model group's `duplicates` task on success: the model catalogue's near-duplicate clusters."""
    return Asset(name=DUPLICATES_ASSET, uri="shopflow://lake/duplicates", group="shopflow")


def report_asset() -> Asset:
    return Asset(name="shopflow_daily_report", uri="shopflow://reports/daily", group="shopflow")
