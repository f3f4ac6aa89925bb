"""The report's users and products sections on real partitions run through the library, each headline number
checked against an independent pandas computation on the clean Parquet; RFM scoring as a property."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pytest
from conftest import TEST_KEY
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from model_fixtures import SNAPSHOT_DAY, slice_source_data
from shopflow.cli import cmd_db_upgrade
from shopflow.common.parquet import read_parquet
from shopflow.config.settings import Settings
from shopflow.lake import zones as lake
from shopflow.landing.sample_data import land_behavior, land_catalog, land_orders
from shopflow.report import products, users
from shopflow.report.context import ReportContext
from shopflow.report.render import environment
from shopflow.steps import partition as pipeline
from shopflow.store.repository import MetadataStore

# Small real days: two December 2010 trading days three days apart (both inside one 14-day window) and the
# smallest behaviour day. The catalogue is the model fixture's real slice, snapshot day included.
ORDERS_DAYS = (date(2010, 12, 19), date(2010, 12, 22))
BEHAVIOR_DAY = date(2017, 11, 27)


@dataclass
class Landed:
    settings: Settings
    store: MetadataStore

    def context(self, ds: date) -> ReportContext:
        return ReportContext(self.settings, self.store, ds)

    def clean(self, dataset: str, *days: date) -> pd.DataFrame:
        return pd.concat([read_parquet(lake.lake_file(self.settings, "clean", dataset, d)) for d in days],
                         ignore_index=True)


@pytest.fixture(scope="module")
def landed(tmp_path_factory, source_data) -> Landed:
    root = tmp_path_factory.mktemp("report_users_products")
    settings = Settings.from_env({"SHOPFLOW_HOME": str(root / "home"), "SHOPFLOW_SOURCE_DATA": str(source_data),
                                  "SHOPFLOW_PSEUDONYM_KEY": TEST_KEY})
    cmd_db_upgrade(settings, None)
    land_orders(settings)
    land_behavior(settings)
    land_catalog(dataclasses.replace(settings, source_data=slice_source_data(source_data, root / "catalog-slice")))
    runs = [("orders", d) for d in ORDERS_DAYS] + [("behavior", BEHAVIOR_DAY), ("catalog", SNAPSHOT_DAY)]
    for dataset, day in runs:
        for step in (pipeline.ingest, pipeline.clean, pipeline.validate):
            step(settings, dataset, day)
    return Landed(settings, MetadataStore(settings.store_url))


def _subsection(section: dict, starts: str) -> dict:
    return next(b for b in section["blocks"] if b["kind"] == "subsection" and b["title"].startswith(starts))


def _table(part: dict, starts: str) -> dict:
    return next(b for b in part["blocks"] if b["kind"] == "table" and b["title"].startswith(starts))


def _plain_tree(value) -> bool:
    """Only JSON's own python types (no numpy or pandas scalars, no NaN) anywhere in a section."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_tree(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_tree(v) for v in value)
    if isinstance(value, float):
        return type(value) is float and not np.isnan(value)
    return value is None or type(value) in (str, int, bool)


# ---- users -----------------------------------------------------------------------------------------------------
def test_rfm_segments_match_the_clean_orders(landed):
    section = users.build(landed.context(ORDERS_DAYS[-1]))
    orders = landed.clean("orders", *ORDERS_DAYS)
    keyed = orders[orders["customer_key"].notna()]
    sales = keyed[~keyed["is_cancellation"].astype(bool)]
    buyers = sales["customer_key"].unique()
    summary = section["summary"]

    assert summary["customers"] == len(buyers) > 0
    assert summary["rfm_as_of"] == ORDERS_DAYS[-1].isoformat() and summary["orders_days"] == 2
    assert sum(summary["segments"].values()) == len(buyers) and list(summary["segments"]) == users.SEGMENTS
    part = _subsection(section, "Customer segments")
    sizes = _table(part, "Segment sizes")["rows"]
    assert sum(r["customers"] for r in sizes) == len(buyers)
    assert sum(r["share"] for r in sizes) == pytest.approx(1.0)
    spend = keyed[keyed["customer_key"].isin(buyers) & (keyed["line_type"] == "product")]["line_amount_gbp"].sum()
    assert sum(r["monetary_total"] for r in sizes) == pytest.approx(spend, abs=0.01 * len(buyers))

    rfm = users.rfm_table(orders, ORDERS_DAYS[-1], "Europe/London")
    assert rfm["frequency"].to_dict() == sales.groupby("customer_key")["invoice_no"].nunique().to_dict()
    last_day = sales.groupby("customer_key")["invoice_ts_utc"].max().dt.tz_convert("Europe/London").dt.date
    assert rfm["recency_days"].to_dict() == {k: (ORDERS_DAYS[-1] - d).days for k, d in last_day.items()}
    assert set(rfm["recency_days"]) == {(ORDERS_DAYS[-1] - d).days for d in ORDERS_DAYS}

    countries = _table(part, "Customers by country")["rows"]
    by_country = keyed.groupby("country")["customer_key"].nunique().sort_values(ascending=False)
    assert (countries[0]["country"], countries[0]["customers"]) == (by_country.index[0], by_country.iloc[0])
    top_revenue = orders[(orders["country"] == by_country.index[0]) & (orders["line_type"] == "product")]
    assert countries[0]["revenue_gbp"] == pytest.approx(top_revenue["line_amount_gbp"].sum())
    assert _subsection(section, "Behaviour funnel")["status"] == "no_data"
    assert section["status"] == "ok"


def test_funnel_and_hour_profile_match_the_clean_events(landed):
    ctx = landed.context(BEHAVIOR_DAY)
    section = users.build(ctx)
    events = landed.clean("behavior", BEHAVIOR_DAY)
    users_of = {t: set(events.loc[events["event_type"] == t, "user_key"]) for t in ("view", "cart", "buy")}
    funnel = section["summary"]["funnel"]

    assert funnel["view_users"] == len(users_of["view"]) > 0
    assert funnel["buy_users"] == len(users_of["buy"])
    assert funnel["view_to_buy"] == pytest.approx(len(users_of["view"] & users_of["buy"]) / len(users_of["view"]))
    assert funnel["cart_to_buy"] == pytest.approx(len(users_of["cart"] & users_of["buy"]) / len(users_of["cart"]))
    part = _subsection(section, "Behaviour funnel")
    stages = _table(part, "Funnel")["rows"]
    assert [r["stage"] for r in stages] == ["view", "favourite", "cart", "buy"]
    assert sum(r["events"] for r in stages) == len(events) == section["summary"]["events"]

    profile = users.hour_profile(events, ctx.specs["behavior"].timezone)
    assert list(profile["hour"]) == list(range(24)) and profile["events"].sum() == len(events)
    local_hours = events["event_ts_utc"].dt.tz_convert("Asia/Shanghai").dt.hour.value_counts()
    assert section["summary"]["busiest_hour"] == min(h for h, n in local_hours.items() if n == local_hours.max())
    busiest = _table(part, "Busiest hours")["rows"]
    assert busiest[0]["events"] == local_hours.max() and len(busiest) == users.BUSIEST_HOURS
    assert any(b["kind"] == "plot" and "Asia/Shanghai" in b["title"] for b in part["blocks"])
    assert _subsection(section, "Customer segments")["status"] == "no_data" and section["summary"]["customers"] == 0


# ---- products --------------------------------------------------------------------------------------------------
def test_catalogue_blocks_match_the_clean_snapshot(landed):
    section = products.build(landed.context(SNAPSHOT_DAY))
    catalogue = landed.clean("catalog", SNAPSHOT_DAY)
    summary = section["summary"]
    branded = catalogue["brand"].notna() & (catalogue["brand"].fillna("").str.strip() != "")

    assert summary["catalogue_products"] == len(catalogue)
    assert summary["categories"] == catalogue["category_top"].nunique()
    assert summary["brand_coverage"] == pytest.approx(branded.mean())
    assert summary["distinct_brands"] == catalogue.loc[branded, "brand"].nunique()
    part = _subsection(section, "Catalogue")
    categories = _table(part, "Products per top-level category")["rows"]
    assert sum(r["products"] for r in categories) == len(catalogue)
    largest = catalogue["category_top"].value_counts()
    assert (categories[0]["category"], categories[0]["products"]) == (largest.index[0], largest.iloc[0])

    price = catalogue["discounted_price_inr"].fillna(catalogue["retail_price_inr"])
    in_largest = price[(catalogue["category_top"] == largest.index[0]) & (price > 0)]
    prices = _table(part, "Prices of the")["rows"]
    assert prices[0]["category"] == largest.index[0] and prices[0]["count"] == len(in_largest)
    assert prices[0]["median"] == pytest.approx(in_largest.median(), abs=0.01)
    assert len(prices) == min(products.PRICE_CATEGORIES, catalogue["category_top"].nunique())

    missing = _table(part, "Fields most often missing")["rows"]
    assert missing[0]["missing"] == max(r["missing"] for r in missing)
    assert next(r["missing"] for r in missing if r["field"] == "brand") == pytest.approx(1 - branded.mean())
    statuses = {r["status"]: r["products"] for r in _table(part, "Category-tree status")["rows"]}
    assert statuses == {s: int((catalogue["category_status"] == s).sum()) for s in statuses}
    assert sum(statuses.values()) == len(catalogue)
    assert _subsection(section, "Products sold")["status"] == "no_data" and summary["orders_days"] == []


def test_best_sellers_and_cancellations_match_the_clean_orders(landed):
    ctx = landed.context(ORDERS_DAYS[-1])
    section = products.build(ctx)
    lines = landed.clean("orders", *ORDERS_DAYS)
    lines = lines[lines["line_type"] == "product"]
    revenue = lines.groupby("stock_code")["line_amount_gbp"].sum().round(2)
    quantity = lines.groupby("stock_code")["quantity"].sum()
    summary = section["summary"]

    assert summary["orders_days"] == [d.isoformat() for d in ORDERS_DAYS]
    by_revenue = summary["best_seller_by_revenue"]
    assert by_revenue["revenue_gbp"] == pytest.approx(revenue.max())
    assert by_revenue["stock_code"] == min(revenue[revenue == revenue.max()].index)
    assert summary["best_seller_by_quantity"]["quantity"] == quantity.max()
    part = _subsection(section, "Products sold")
    top = _table(part, "Best sellers by net revenue")["rows"]
    assert [r["revenue_gbp"] for r in top] == sorted(revenue, reverse=True)[: products.TOP_SELLERS]

    sale = ~lines["is_cancellation"].astype(bool)
    sold_lines = lines[sale].groupby("stock_code").size()
    for row in _table(part, "Highest cancellation rates")["rows"]:
        code_lines = lines[lines["stock_code"] == row["stock_code"]]
        cancelled = -code_lines.loc[~sale, "quantity"].sum()
        assert row["sold_lines"] == sold_lines[row["stock_code"]] >= products.MIN_SOLD_LINES
        assert row["rate"] == pytest.approx(cancelled / code_lines.loc[sale, "quantity"].sum())
    assert _subsection(section, "Catalogue")["status"] == "no_data" and section["status"] == "ok"


# ---- both --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module,day", [(users, ORDERS_DAYS[-1]), (users, BEHAVIOR_DAY),
                                        (products, ORDERS_DAYS[-1]), (products, SNAPSHOT_DAY)])
def test_sections_are_plain_reproducible_and_render(landed, module, day):
    section = module.build(landed.context(day))
    assert _plain_tree(section)
    json.dumps(section, allow_nan=False)
    assert module.build(landed.context(day)) == section, "same day, same section (plots included)"
    render_block = environment().get_template("blocks.html.j2").module.render_block
    html = "".join(str(render_block(block, 3)) for block in section["blocks"])
    assert "data:image/svg+xml;base64," in html and "<script" not in html


# ---- RFM scoring -------------------------------------------------------------------------------------------------
customers = st.lists(
    st.tuples(st.integers(0, 30), st.integers(1, 6), st.sampled_from([-12.5, 0.0, 3.2, 15.0, 15.0, 120.75, 4000.0])),
    min_size=1, max_size=60)


@hypothesis_settings(max_examples=150, deadline=None)
@given(customers)
def test_rfm_scores_and_segments_cover_every_customer(rows):
    rfm = pd.DataFrame(rows, columns=["recency_days", "frequency", "monetary_gbp"],
                       index=[f"c{i}" for i in range(len(rows))])
    scored = users.score_rfm(rfm)
    assert len(scored) == len(rfm) and scored.index.equals(rfm.index)
    for column in ("r_score", "f_score", "m_score"):
        assert scored[column].between(1, 5).all()
    assert scored["segment"].isin(users.SEGMENTS).all()
    assert users.segment_table(scored)["customers"].sum() == len(rfm)
    # Ties share a score and a better value never scores lower.
    for measure, score, sign in (("recency_days", "r_score", -1), ("frequency", "f_score", 1),
                                 ("monetary_gbp", "m_score", 1)):
        ordered = scored.sort_values(measure, kind="stable")
        assert (ordered.groupby(measure)[score].nunique() == 1).all()
        assert (np.diff(ordered[score].to_numpy()) * sign >= 0).all()
    # Each customer is in the first segment whose rule matches.
    matches = np.column_stack([rule(scored).to_numpy(dtype=bool) for _, _, rule in users.SEGMENT_RULES])
    assert matches.any(axis=1).all()
    assert list(scored["segment"]) == [users.SEGMENTS[i] for i in matches.argmax(axis=1)]
    assert not (scored["frequency"].eq(1) & scored["f_score"].ge(4)).any()
