"""Sources read by role, on real data: two catalogues side by side (the Flipkart slice and the real Olist product
list, which maps only an id and one category level), each in its own block of the report's products section with
notes for what it lacks; the catalogue view of either; the model branch training on the catalogue that can and
saying why Olist cannot; and users and search blocks that degrade with a note when a role field is not mapped."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TEST_KEY
from model_fixtures import SNAPSHOT_DAY, slice_source_data
from shopflow.cli import cmd_db_upgrade
from shopflow.common.parquet import read_parquet
from shopflow.config.settings import Settings
from shopflow.lake import zones as lake
from shopflow.lake.catalog_view import catalog_as_of
from shopflow.landing.sample_data import land_behavior, land_catalog, land_orders, land_search
from shopflow.model.registry import TrainingPolicy, training_due
from shopflow.model.training.data import labelled_examples
from shopflow.report import products, search, users
from shopflow.report.build import build_report
from shopflow.report.context import ReportContext
from shopflow.sources import DEFAULT_SOURCES_FILE, get_source, roles
from shopflow.sources.role_frames import category_status
from shopflow.steps import model_branch as model_pipeline
from shopflow.steps import partition as pipeline
from shopflow.store.repository import MetadataStore

DAY = SNAPSHOT_DAY  # the Flipkart snapshot day; the Olist snapshot is landed on it too
ORDERS_DAY, BEHAVIOR_DAY = date(2010, 12, 19), date(2017, 11, 27)
OLIST_FILES = ("olist_products_dataset.csv", "product_category_name_translation.csv")
OLIST_REASON = "olist_catalog: no title field in its catalog role: the category model needs product text; not trained"


@dataclass
class Shop:
    settings: Settings
    store: MetadataStore
    env: dict[str, str]

    def context(self, ds: date) -> ReportContext:
        return ReportContext(self.settings, self.store, ds)

    def clean(self, dataset: str, ds: date) -> pd.DataFrame:
        return read_parquet(lake.lake_file(self.settings, "clean", dataset, ds))

    def shopflow(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shopflow", *args], env=self.env, capture_output=True,
                              text=True, check=True)


@pytest.fixture(scope="module")
def shop(tmp_path_factory, source_data) -> Shop:
    root = tmp_path_factory.mktemp("roles")
    variables = {"SHOPFLOW_HOME": str(root / "home"), "SHOPFLOW_SOURCE_DATA": str(source_data),
                 "SHOPFLOW_PSEUDONYM_KEY": TEST_KEY}
    env = {k: v for k, v in os.environ.items() if k != "SHOPFLOW_SOURCES"} | variables
    settings = Settings.from_env(variables)
    cmd_db_upgrade(settings, None)
    sliced = dataclasses.replace(settings, source_data=slice_source_data(source_data, root / "catalog-slice"))
    land_catalog(sliced)
    land_search(sliced, DAY, DAY)
    land_orders(settings)
    land_behavior(settings)
    for dataset, day in (("catalog", DAY), ("search", DAY), ("orders", ORDERS_DAY), ("behavior", BEHAVIOR_DAY)):
        for step in (pipeline.ingest, pipeline.clean, pipeline.validate):
            step(settings, dataset, day)
    shop = Shop(settings, MetadataStore(settings.store_url), env)
    # The Olist export lands the way a shop's own export does, through the CLI.
    for name in OLIST_FILES:
        shop.shopflow("land", "--source", "olist_catalog", "--from", str(source_data / "catalog" / f"{name}.gz"),
                      "--file", name, "--day", DAY.isoformat())
    shop.shopflow("run", DAY.isoformat(), "--source", "olist_catalog")
    return shop


def _sources_file(tmp_path: Path, change) -> str:
    """A copy of the shipped sources file, changed by `change(entries)`."""
    entries = yaml.safe_load(DEFAULT_SOURCES_FILE.read_text())
    change(entries)
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(entries, sort_keys=False))
    return str(path)


def _subsections(section: dict) -> dict[str, dict]:
    return {b["title"]: b for b in section["blocks"] if b["kind"] == "subsection"}


def _texts(part: dict) -> list[str]:
    return [b["text"] for b in part["blocks"] if b["kind"] == "note"]


def _table(part: dict, starts: str) -> dict | None:
    return next((b for b in part["blocks"] if b["kind"] == "table" and b["title"].startswith(starts)), None)


# ---- catalogue view --------------------------------------------------------------------------------------------
def test_catalog_as_of_any_catalog_source(shop):
    [olist_partition] = shop.store.partitions("olist_catalog", DAY)
    olist = catalog_as_of(shop.store, DAY, source="olist_catalog")
    assert olist_partition.status == "validated" and len(olist) == olist_partition.rows_clean == 32951
    assert olist["product_id"].is_unique and olist["product_id"].is_monotonic_increasing
    assert set(olist["as_of_ds"]) == {DAY.isoformat()}

    flipkart = catalog_as_of(shop.store, DAY)  # the default: the first catalog-role source of the file
    assert flipkart["uniq_id"].is_unique and len(flipkart) == len(shop.clean("catalog", DAY))
    with pytest.raises(LookupError, match="not a catalog-role source"):
        catalog_as_of(shop.store, DAY, source="orders")
    with pytest.raises(LookupError, match="no validated olist_catalog snapshot"):
        catalog_as_of(shop.store, date(2015, 12, 2), source="olist_catalog")
    printed = shop.shopflow("catalog-as-of", DAY.isoformat()).stdout
    assert f"catalogue as of {DAY}: {len(flipkart):,} products" in printed


# ---- products section ------------------------------------------------------------------------------------------
def test_products_section_has_a_block_per_catalogue(shop):
    section = products.build(shop.context(DAY))
    titles = [title for title in _subsections(section) if title.startswith("Catalogue")]
    assert titles == [f"Catalogue as of {DAY} · catalog", f"Catalogue as of {DAY} · olist_catalog"]
    flipkart, olist = (_subsections(section)[title] for title in titles)

    clean = shop.clean("olist_catalog", DAY)
    categories = _table(olist, "Products per top-level category")["rows"]
    largest = clean["category_en"].value_counts()
    assert sum(r["products"] for r in categories) == len(clean)
    assert (categories[0]["category"], categories[0]["products"]) == (largest.index[0], largest.iloc[0])
    assert "olist_catalog declares no price field: no price distribution." in _texts(olist)
    assert "olist_catalog declares no brand field: no brand coverage." in _texts(olist)
    assert any(t.startswith("olist_catalog declares no category_status field") for t in _texts(olist))
    assert _table(olist, "Prices of the") is None and _table(olist, "Top 10 brands") is None
    missing = {r["field"]: r["missing"] for r in _table(olist, "Fields most often missing")["rows"]}
    assert missing["category_en"] == pytest.approx(clean["category_en"].isna().mean())
    assert olist["status"] == "ok"
    assert section["summary"]["per_source"]["olist_catalog"] == {
        "catalogue_products": len(clean), "categories": clean["category_en"].nunique(), "brand_coverage": None,
        "distinct_brands": None, "largest_category": largest.index[0]}

    # The Flipkart block is whole, and the section's headline figures are still its own.
    assert _table(flipkart, "Prices of the") and _table(flipkart, "Top 10 brands") and _table(flipkart, "Category-tree")
    assert not [t for t in _texts(flipkart) if "declares no" in t]
    assert section["summary"]["catalogue_products"] == len(shop.clean("catalog", DAY))


def test_the_written_report_carries_both_catalogues_and_the_model_notes(shop):
    result = build_report(shop.settings, DAY, store=shop.store)
    html = Path(result["html"]).read_text()
    assert "olist_catalog declares no price field: no price distribution." in html
    assert f"{OLIST_REASON}." in html and "The model serves the catalog source catalog." in html
    assert result["sections"]["products"] != "failed"


# ---- model branch ----------------------------------------------------------------------------------------------
def test_the_model_branch_trains_on_the_catalogue_that_can_and_says_why_not_olist(shop, caplog):
    catalogue = roles.model_catalog()
    assert catalogue.name == "catalog" and catalogue.passed_over == {"olist_catalog": OLIST_REASON}
    with caplog.at_level(logging.INFO, logger="shopflow.model"):
        gate = model_pipeline.training_gate(shop.settings, DAY)
    assert gate["train"] and gate["catalog"] == "catalog" and gate["not_trained"] == {"olist_catalog": OLIST_REASON}
    assert OLIST_REASON in caplog.text

    olist = get_source("olist_catalog")
    with pytest.raises(ValueError, match="no title field"):
        labelled_examples(shop.clean("olist_catalog", DAY), 40, olist)
    # Without a category_status field, a product with a category counts as usable and one without as missing.
    states = category_status(shop.clean("olist_catalog", DAY), olist)
    assert (states == "ok").sum() == shop.clean("olist_catalog", DAY)["category_en"].notna().sum() > 0


def test_no_catalogue_that_can_train_means_no_training_with_the_reason(shop, tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPFLOW_SOURCES", _sources_file(tmp_path, lambda entries: entries.pop("catalog")))
    assert roles.model_catalog().source is None
    decision = training_due(shop.store, DAY, TrainingPolicy())
    assert not decision.promote and OLIST_REASON in decision.reason
    with pytest.raises(model_pipeline.NothingToDo, match="olist_catalog: no title field"):
        model_pipeline.training_gate(shop.settings, DAY)
    with pytest.raises(model_pipeline.NothingToDo, match="no catalog source can train"):
        model_pipeline.repair(shop.settings, DAY)


def test_only_the_first_catalogue_that_can_train_is_served(tmp_path, monkeypatch):
    def second_flipkart(entries):
        entries["flipkart_copy"] = dict(entries["catalog"])

    monkeypatch.setenv("SHOPFLOW_SOURCES", _sources_file(tmp_path, second_flipkart))
    catalogue = roles.model_catalog()
    assert catalogue.name == "catalog" and set(catalogue.passed_over) == {"olist_catalog", "flipkart_copy"}
    assert "serves one catalogue, catalog" in catalogue.passed_over["flipkart_copy"]


# ---- users and search degrade ----------------------------------------------------------------------------------
def test_users_blocks_without_customer_country_or_timestamp_fields(shop, tmp_path, monkeypatch):
    full_funnel = users.build(shop.context(BEHAVIOR_DAY))["summary"]["funnel"]

    def fewer_fields(entries):
        for field in ("customer", "country"):
            entries["orders"]["role"]["fields"].pop(field)
        entries["behavior"]["role"]["fields"].pop("timestamp")

    monkeypatch.setenv("SHOPFLOW_SOURCES", _sources_file(tmp_path, fewer_fields))
    orders = _subsections(users.build(shop.context(ORDERS_DAY)))["Customer segments (RFM) and countries · orders"]
    assert "orders declares no customer field: no customer segments (RFM)." in _texts(orders)
    assert "orders declares no country or customer fields: no customers by country." in _texts(orders)
    assert _table(orders, "Segment sizes") is None and orders["status"] == "ok"

    section = users.build(shop.context(BEHAVIOR_DAY))
    behaviour = _subsections(section)[f"Behaviour funnel on {BEHAVIOR_DAY} · behavior"]
    assert "behavior declares no timestamp field: no hour-of-day profile." in _texts(behaviour)
    assert _table(behaviour, "Busiest hours") is None and _table(behaviour, "Funnel")
    assert section["summary"]["funnel"] == full_funnel and section["summary"]["busiest_hour"] is None


def test_search_blocks_without_session_or_click_fields(shop, tmp_path, monkeypatch):
    full = search.build(shop.context(DAY))["summary"]
    monkeypatch.setenv("SHOPFLOW_SOURCES", _sources_file(
        tmp_path, lambda entries: entries["search"]["role"].update(fields={"query": "query"})))
    section = search.build(shop.context(DAY))
    [part] = section["blocks"]
    assert any(t.startswith("search declares no session field") for t in _texts(part))
    assert any(t.startswith("search declares no clicked_item field") for t in _texts(part))
    assert _table(part, "Most searched queries without any click") is None
    summary = section["summary"]
    assert (summary["searches"], summary["distinct_queries"]) == (full["searches"], full["distinct_queries"]) != (0, 0)
    assert summary["sessions"] is None and summary["click_through_rate"] is None
