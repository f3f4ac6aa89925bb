"""The Assets shopflow publishes: one per validated clean dataset. Other DAGs schedule on these names."""

from __future__ import annotations

from airflow.sdk import Asset


def clean_asset(dataset: str) -> Asset:
    return Asset(name=f"shopflow_clean_{dataset}", uri=f"shopflow://lake/clean/{dataset}", group="shopflow")


def report_asset() -> Asset:
    return Asset(name="shopflow_daily_report", uri="shopflow://reports/daily", group="shopflow")
