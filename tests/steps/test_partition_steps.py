"""The partition steps through the library (no scheduler): failure paths, the GX gate, catalogue as-of, settings."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest
from shopflow.config.settings import ConfigurationError, Settings
from shopflow.lake.catalog_view import catalog_as_of
from shopflow.landing.sample_data import land_catalog, land_orders
from shopflow.steps import partition as pipeline
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

KEY = "pipeline-test-key-not-a-secret-32bytes"


@pytest.fixture()
def settings(tmp_path, source_data) -> Settings:
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / "home"), "SHOPFLOW_SOURCE_DATA": str(source_data),
                                  "SHOPFLOW_PSEUDONYM_KEY": KEY})
    settings.home.mkdir(parents=True)
    migrate.upgrade(settings.store_url)
    return settings


def _write_orders_day(settings: Settings, day: str, rows: list[str]) -> Path:
    path = settings.landing_dir / "orders" / f"ds={day}" / "orders.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n" + "".join(rows))
    return path


def test_critical_expectation_failure_stops_the_partition(settings):
    # Real rows of 2010-12-01 with their price set to 0: every row is quarantined, the clean partition is empty.
    rows = [
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,0,17850.0,United Kingdom\n",
        "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,0.00,17850.0,United Kingdom\n",
    ]
    _write_orders_day(settings, "2010-12-01", rows)
    day = date(2010, 12, 1)
    pipeline.ingest(settings, "orders", day)
    summary = pipeline.clean(settings, "orders", day)
    assert summary["rows_clean"] == 0 and summary["quarantined_by_reason"] == {"non_positive_price": 2}
    with pytest.raises(pipeline.ValidationFailed, match="expect_table_row_count_to_be_between"):
        pipeline.validate(settings, "orders", day)
    store = MetadataStore(settings.store_url)
    [partition] = store.partitions("orders", day)
    assert partition.status == "failed_validation" and partition.validation_success is False
    assert partition.critical_failures >= 1
    failed = [v for v in store.validations("orders", day) if not v.success]
    assert any(v.expectation == "expect_table_row_count_to_be_between" and v.observed_value == 0 for v in failed)


def test_warnings_are_recorded_without_failing(settings):
    land_orders(settings)
    day = date(2010, 12, 1)
    pipeline.ingest(settings, "orders", day)
    pipeline.clean(settings, "orders", day)
    summary = pipeline.validate(settings, "orders", day)
    assert summary["success"] and summary["critical_failures"] == 0
    stored = MetadataStore(settings.store_url).validations("orders", day)
    assert len(stored) == summary["expectations"]
    assert {v.severity for v in stored} == {"critical", "warning"}


def test_missing_partition_is_recorded_and_required_source_fails(settings, monkeypatch):
    day = date(2011, 12, 25)
    with pytest.raises(pipeline.PartitionMissing):
        pipeline.ingest(settings, "orders", day)
    [partition] = MetadataStore(settings.store_url).partitions("orders", day)
    assert partition.status == "missing"

    from shopflow import sources

    required = sources.get_source("orders").model_copy(update={"required": True})
    monkeypatch.setattr(pipeline, "get_source", lambda name: required)
    with pytest.raises(pipeline.RequiredPartitionMissing, match="required"):
        pipeline.ingest(settings, "orders", day)


def test_outputs_of_a_withdrawn_landing_are_removed(settings):
    land_orders(settings)
    day = date(2010, 12, 2)
    pipeline.ingest(settings, "orders", day)
    pipeline.clean(settings, "orders", day)
    landing = settings.landing_dir / "orders" / f"ds={day}"
    (landing / "orders.csv").rename(landing.parent / "withdrawn.csv")
    with pytest.raises(pipeline.PartitionMissing):
        pipeline.ingest(settings, "orders", day)
    assert not list(settings.lake_dir.glob(f"*/orders/ds={day}/*"))


def test_unmigrated_store_fails_with_instructions(tmp_path):
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path), "SHOPFLOW_PSEUDONYM_KEY": KEY})
    with pytest.raises(ConfigurationError, match="python -m shopflow db upgrade"):
        pipeline.ingest(settings, "orders", date(2010, 12, 1))


def test_missing_pseudonym_key_is_a_clear_error(tmp_path, settings):
    land_orders(settings)
    keyless = dataclasses.replace(settings, pseudonym_key=None, pseudonym_key_file=tmp_path / "absent.key")
    with pytest.raises(ConfigurationError, match="SHOPFLOW_PSEUDONYM_KEY"):
        pipeline.ingest(keyless, "orders", date(2010, 12, 1))


def test_catalog_as_of_applies_deltas_to_the_snapshot(settings):
    land_catalog(settings)
    for day in (date(2015, 12, 3), date(2015, 12, 4), date(2016, 1, 6)):
        pipeline.ingest(settings, "catalog", day)
        pipeline.clean(settings, "catalog", day)
        pipeline.validate(settings, "catalog", day)
    store = MetadataStore(settings.store_url)
    assert [p.load_kind for p in store.partitions("catalog")] == ["snapshot", "delta", "delta"]

    with pytest.raises(LookupError):
        catalog_as_of(store, date(2015, 12, 2))
    first = catalog_as_of(store, date(2015, 12, 3))
    assert len(first) == 16028 and set(first["as_of_ds"]) == {"2015-12-03"}
    later = catalog_as_of(store, date(2016, 1, 10))
    assert len(later) == 16028, "deltas change known products, they do not add rows"
    counts = later["as_of_ds"].value_counts()
    assert counts["2015-12-04"] == 161 and counts["2016-01-06"] == 441
    # A product re-crawled on 2015-12-04 carries that crawl's description and timestamp from then on.
    recrawled = later[later["as_of_ds"] == "2015-12-04"].iloc[0]
    before = first.set_index("uniq_id").loc[recrawled["uniq_id"]]
    assert recrawled["crawl_ts_utc"].date() == date(2015, 12, 4)
    assert recrawled["description"] is not None and before["product_name"] == recrawled["product_name"]
