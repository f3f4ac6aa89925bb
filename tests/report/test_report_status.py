"""A report status that tells the truth: each cause that needs attention (a failed model step, a quarantine share
above the source's limit, an alert raised by the run, a DRIFT mark) turns the day from ok, with its reason in the
header and the JSON; a clean day stays ok; a slow SHIFT and a new source's missing history are shown but change
nothing; the page fits 1,280 px.

Real orders days of March 2011 run through the library (no Airflow, no model training); a failed model step and
a repair's review backlog are recorded in the store the way the steps record them."""

from __future__ import annotations

import csv
import json
import logging
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from frames_context import FramesContext
from browser import chromium  # noqa: F401  (the headless-chromium fixture)
from conftest import TEST_KEY
from sample_rows import ORDERS_FILE, data_path, pseudonymise_like_ingest
from shopflow.config.settings import Settings
from shopflow.ingest.readers import read_delimited
from shopflow.report import attention, drift
from shopflow.report.build import build_report
from shopflow.report.context import ReportContext
from shopflow.report.render import render_html
from shopflow.sources import get_source, roles
from shopflow.sources.cleaning import clean_partition
from shopflow.sources.spec import SourcesFileError, parse_sources
from shopflow.steps import partition as pipeline
from shopflow.store.repository import MetadataStore

CLEAN_DAYS = (date(2011, 3, 7), date(2011, 3, 8), date(2011, 3, 9), date(2011, 3, 10))  # Mon .. Thu
QUARANTINE_DAY = date(2011, 3, 11)  # Fri: 90% of the rows get a zero price (quarantined: non_positive_price)
DRIFT_DAY = date(2011, 3, 14)  # Mon: every price x100, against Mon 7 .. Fri 11
CLEAN_DAY = CLEAN_DAYS[-1]
BACKLOG_DAY = CLEAN_DAYS[1]  # the repair of that day sent more products to review than the alert threshold
DUPLICATES_DAY = CLEAN_DAYS[2]  # the near-duplicate search of that day failed its critical expectations
QUIET_SUNDAY_ROWS = 150


def _rewrite_prices(path: Path, change) -> None:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    price = rows[0].index("UnitPrice")
    for number, row in enumerate(rows[1:]):
        row[price] = change(number, row[price])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


@pytest.fixture(scope="module")
def shop(tmp_path_factory, source_data) -> SimpleNamespace:
    from shopflow.cli import cmd_db_upgrade
    from shopflow.landing.sample_data import land_orders

    root = tmp_path_factory.mktemp("report_status")
    settings = Settings.from_env({"SHOPFLOW_HOME": str(root / "home"), "SHOPFLOW_SOURCE_DATA": str(source_data),
                                  "SHOPFLOW_PSEUDONYM_KEY": TEST_KEY})
    cmd_db_upgrade(settings, None)
    land_orders(settings)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    landing = settings.landing_dir / "orders"
    _rewrite_prices(landing / f"ds={QUARANTINE_DAY}" / "orders.csv", lambda n, p: p if n % 10 == 0 else "0")
    _rewrite_prices(landing / f"ds={DRIFT_DAY}" / "orders.csv", lambda n, p: f"{float(p) * 100:.2f}")
    for day in (*CLEAN_DAYS, QUARANTINE_DAY, DRIFT_DAY):
        for step in (pipeline.ingest, pipeline.clean, pipeline.validate):
            step(settings, "orders", day)
    store = MetadataStore(settings.store_url)
    store.record_repair(BACKLOG_DAY, run={
        "model_version": 1, "threshold": 0.8, "rows_in": 120, "rows_filled": 10, "rows_flagged": 0,
        "rows_review": 60, "rows_unchanged": 50, "output_path": str(root / "repaired.parquet")},
        audit=[{"uniq_id": f"product-{n}", "action": "review", "field": "category_path", "before": None,
                "after": "Clothing", "confidence": 0.5, "model_version": 1} for n in range(60)], run_id=None)
    store.record_duplicates(roles.model_catalog().name, DUPLICATES_DAY, run={
        "products_in": 100, "products_in_clusters": 0, "singletons": 100, "clusters": 0, "largest_cluster": 0,
        "candidate_pairs": 0, "accepted_pairs": 0, "counts": {}, "policy": {}, "embedding": {},
        "validation_success": False, "critical_failures": 2, "validation": [], "output_path": "-",
        "pairs_path": "-", "seconds": 0.1}, run_id=None)
    return SimpleNamespace(settings=settings, store=store)


def _written(result: dict) -> tuple[dict, str]:
    return json.loads(Path(result["json"]).read_text()), Path(result["html"]).read_text()


def _kinds(report: dict) -> set[str]:
    return {reason["kind"] for reason in report["attention"]}


def _header(html: str) -> str:
    return html.split('<header class="page">', 1)[1].split("</header>", 1)[0]


def test_a_clean_day_stays_ok(shop):
    report, html = _written(build_report(shop.settings, CLEAN_DAY, store=shop.store))
    assert report["status"] == "ok", report["attention"]
    assert report["attention"] == [] and "; nothing needs attention" in report["headline"]
    # a notice changes nothing: the source is 3 days old
    assert [n["kind"] for n in report["notices"]] == ["no_history"]
    assert "nothing needs attention" in _header(html)
    recorded = shop.store.report(CLEAN_DAY)
    assert recorded.status == "ok" and recorded.summary["attention"]["reasons"] == []


def test_a_failed_model_step_fails_the_day_and_is_kept_when_regenerated(shop):
    result = build_report(shop.settings, CLEAN_DAY, store=shop.store, run_id="scheduled__2011-03-10",
                          failed_tasks=["model.train"])
    report, html = _written(result)
    assert report["status"] == "failed" and result["status"] == "failed"
    [reason] = report["attention"]
    assert (reason["level"], reason["kind"]) == ("failed", "model_step_failed")
    assert "model step train failed" in reason["what"] and "model step train failed" in report["headline"]
    assert "model step train failed" in _header(html) and 'class="badge failed">failed' in _header(html)
    # regenerated from the store (the CLI passes the run, not the failed tasks): the failure is not forgotten
    again, _ = _written(build_report(shop.settings, CLEAN_DAY, store=shop.store, run_id="scheduled__2011-03-10"))
    assert again["status"] == "failed" and again["failed_tasks"] == ["model.train"]
    # another run of the day, whose tasks all succeeded: ok again
    clean, _ = _written(build_report(shop.settings, CLEAN_DAY, store=shop.store, run_id="manual__rerun",
                                     failed_tasks=[]))
    assert clean["status"] == "ok"


def test_a_failed_duplicates_step_recorded_in_the_store_fails_the_day(shop):
    report, html = _written(build_report(shop.settings, DUPLICATES_DAY, store=shop.store))
    assert report["status"] == "failed" and _kinds(report) == {"model_step_failed"}
    assert "model step duplicates failed: 2 critical expectation(s)" in report["headline"]
    assert "model step duplicates failed" in _header(html)


def test_a_quarantine_share_above_the_limit_warns(shop):
    [partition] = shop.store.partitions("orders", QUARANTINE_DAY)
    share = partition.rows_quarantined / partition.rows_in
    assert share > 0.85 and partition.status == "validated", "real rows, 90% with a zero price, still validated"
    report, html = _written(build_report(shop.settings, QUARANTINE_DAY, store=shop.store))
    assert report["status"] == "warning"
    [reason] = [r for r in report["attention"] if r["kind"] == "quarantine"]
    assert reason["dataset"] == "orders" and reason["level"] == "warning"
    assert f"orders: {share:.1%} of rows quarantined" in reason["what"] and "limit 5%" in reason["what"]
    assert "non_positive_price" in reason["what"] and reason["what"] in report["headline"]
    assert f"{share:.1%} of rows quarantined" in _header(html)


def test_the_quarantine_limit_is_the_sources_files(shop):
    ctx = ReportContext(shop.settings, shop.store, QUARANTINE_DAY)
    [partition] = shop.store.partitions("orders", QUARANTINE_DAY)
    share = partition.rows_quarantined / partition.rows_in
    ctx.specs = {**ctx.specs, "orders": ctx.specs["orders"].model_copy(update={"max_quarantine_share": 0.95})}
    assert attention._quarantine(ctx) == []
    ctx.specs = {**ctx.specs, "orders": ctx.specs["orders"].model_copy(update={"max_quarantine_share": share - 0.01})}
    assert [r.kind for r in attention._quarantine(ctx)] == ["quarantine"]
    # the clean days quarantine some rows too, under the default 5%
    clean = ReportContext(shop.settings, shop.store, CLEAN_DAY)
    assert attention._quarantine(clean) == []


def test_blank_records_are_not_rows_of_the_quarantine_share():
    """The real catalogue snapshot: 3,995 of its 20,023 records are blank (only delimiters), none quarantined else."""
    catalog = get_source("catalog")

    def day(by_reason: dict) -> SimpleNamespace:
        partition = SimpleNamespace(rows_in=20023, rows_quarantined=sum(by_reason.values()),
                                    quarantined_by_reason=by_reason)
        return SimpleNamespace(specs={"catalog": catalog}, partition=lambda name: partition)

    assert attention._quarantine(day({"blank_row": 3995})) == []
    [reason] = attention._quarantine(day({"blank_row": 3995, "missing_title": 1600}))
    assert reason.what == ("catalog: 10.0% of rows quarantined (1,600 of 16,028, not counting 3,995 blank records; "
                           "limit 5%): missing_title 1,600")


def test_max_quarantine_share_is_validated():
    import yaml
    from shopflow.sources import sources_location

    raw = yaml.safe_load(open(sources_location(), encoding="utf-8"))
    assert parse_sources(raw, "test")["orders"].max_quarantine_share == 0.05  # the default
    raw["orders"]["max_quarantine_share"] = 0.2
    assert parse_sources(raw, "test")["orders"].max_quarantine_share == 0.2
    for bad in (1.5, -0.1, "lots"):
        raw["orders"]["max_quarantine_share"] = bad
        with pytest.raises(SourcesFileError, match="max_quarantine_share"):
            parse_sources(raw, "test")


def test_an_alert_raised_by_the_run_warns(shop):
    from shopflow.observability import alerts

    report, html = _written(build_report(shop.settings, BACKLOG_DAY, store=shop.store))
    assert report["status"] == "warning" and _kinds(report) == {"alert"}
    [reason] = report["attention"]
    assert "alert: repair review backlog of 60 products (threshold 50" in reason["what"]
    assert reason["what"] in report["headline"] and "repair review backlog of 60 products" in _header(html)
    # the same alert the run sends
    [sent] = alerts.day_alerts(shop.settings, BACKLOG_DAY, store=shop.store)
    assert sent["kind"] == "review_backlog" and sent["details"]["backlog"] == 60


def test_a_drift_mark_warns_with_what_moved(shop):
    report, html = _written(build_report(shop.settings, DRIFT_DAY, store=shop.store))
    assert report["status"] == "warning"
    [reason] = [r for r in report["attention"] if r["kind"] == "drift"]
    assert reason["what"].startswith("orders: DRIFT on ") and "p50 of unit_price_gbp" in reason["what"]
    assert reason["what"] in report["headline"] and "DRIFT on" in _header(html)
    # a young source (7 days): the DRIFT stands because the prices also departed from the earlier Monday
    [notice] = [n for n in report["notices"] if n["kind"] == "no_history"]
    assert notice["what"] == f"orders: no history yet: 7 days of {drift.HISTORY_DAYS} needed"
    # the drift table leads with what is marked, the rest is folded
    section = next(s for s in report["sections"] if s["id"] == "drift")
    [table] = [b for sub in section["blocks"] for b in sub["blocks"] if b["kind"] == "table"]
    marked = sum(r["marker"] in drift.MARKS for r in table["rows"])
    assert marked and table["shown_rows"] == marked and all(r["marker"] in drift.MARKS for r in table["rows"][:marked])
    assert '<details class="folded"><summary>' in html


def test_every_cause_is_a_reason_and_shift_is_only_a_notice(shop):
    """attention.assess on sections as built, with the drift summary of a slow SHIFT and a stale source."""
    ctx = ReportContext(shop.settings, shop.store, CLEAN_DAY)
    datasets = {name: "validated" if name == "orders" else "not run" for name in ctx.specs}
    shift = {"compared_with": ["2011-03-09"], "drifted": 0, "shifted": 1, "checks": 40, "marks": [],
             "history": {"days": 60, "needed": drift.HISTORY_DAYS, "young": False},
             "marked": [{"marker": "SHIFT", "measure": "row count", "column": "", "change": "+52.0%"}]}
    sections = [{"id": "drift", "title": "Drift", "status": "ok", "summary": {"orders": shift}},
                {"id": "inventory", "title": "Data-asset inventory", "status": "ok", "summary": {}}]
    judged = attention.assess(ctx, datasets, sections)
    assert judged.status == "ok" and judged.reasons == []
    assert [n.what for n in judged.notices] == ["orders: slow SHIFT on 1 metric(s): row count +52.0%"]
    headline = judged.headline(datasets)
    assert "nothing needs attention" in headline and "also: orders: slow SHIFT" in headline
    html = render_html({"ds": CLEAN_DAY.isoformat(), "status": judged.status, "headline": headline,
                        "attention": [], "notices": [n.as_dict() for n in judged.notices], "datasets": datasets,
                        "window_days": 14, "window_start": CLEAN_DAY.isoformat(), "sections": []}, "now")
    assert "slow SHIFT on 1 metric(s): row count +52.0%" in _header(html)

    stale = {"orders": {"stale": True, "freshness": "cadence daily: stale, last validated partition 2011-03-01"}}
    sections[1] = {"id": "inventory", "title": "Data-asset inventory", "status": "warning", "summary": stale}
    judged = attention.assess(ctx, datasets, sections, failed_tasks=["plan_day"])
    assert judged.status == "failed"
    assert [(r.level, r.kind) for r in judged.reasons] == [("failed", "task_failed"), ("warning", "stale")]


# ---- a new source's first weeks ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def new_source() -> dict[date, pd.DataFrame]:
    """A new source's first 20 days: real orders of March 2011, where every Sunday is a quiet day (its first
    QUIET_SUNDAY_ROWS rows, a fifth of a weekday's): a weekly rhythm the source has no history of yet."""
    spec = get_source("orders")
    raw = read_delimited(data_path(ORDERS_FILE), spec.files[0].columns, has_header=True)
    day_of = raw["InvoiceDate"].str[:10]
    raw = pseudonymise_like_ingest(raw[(day_of >= "2011-03-01") & (day_of <= "2011-03-20")], spec)
    frames = {}
    for text, part in raw.groupby(raw["InvoiceDate"].str[:10], sort=True):
        day = date.fromisoformat(text)
        clean = clean_partition(spec, part, day).clean
        frames[day] = clean.iloc[:QUIET_SUNDAY_ROWS].reset_index(drop=True) if day.weekday() == 6 else clean
    return frames


def _day_rows(section: dict) -> list[dict]:
    return [r for sub in section["blocks"] for b in sub["blocks"] if b["kind"] == "table" for r in b["rows"]]


def test_a_new_sources_first_weeks_say_no_history_instead_of_drift(new_source):
    sundays = [d for d in sorted(new_source) if d.weekday() == 6]
    assert len(sundays) >= 2
    for sunday in sundays:
        frames = {d: f for d, f in new_source.items() if d <= sunday}
        section = drift.build(FramesContext(frames, sunday))
        age = (sunday - min(frames)).days
        summary = section["summary"]["orders"]
        assert summary["history"] == {"days": age, "needed": drift.HISTORY_DAYS, "young": True}
        assert summary["drifted"] == 0 and section["status"] == "ok", summary["marks"]
        rows = [r for r in _day_rows(section) if r["measure"] == "row count" and r["check"] == "day"]
        assert rows and rows[0]["marker"] == "n/a"
        assert f"no history yet: {age} days of {drift.HISTORY_DAYS} needed" in rows[0]["baseline"]
        notes = [b["text"] for sub in section["blocks"] for b in sub["blocks"] if b["kind"] == "note"]
        assert any(f"no history yet: {age} days of {drift.HISTORY_DAYS} needed" in text for text in notes)
        # the same day of a source with history (its first partition long before): the old verdict, DRIFT
        history = {d: drift.profile(f, get_source("orders").clean_schema) for d, f in frames.items()}
        judged = drift.compare_profiles(sunday, history.pop(sunday), history, first_day=sunday - timedelta(days=365))
        assert [r["marker"] for r in judged if r["measure"] == "row count" and r["check"] == "day"] == ["DRIFT"]


def test_a_new_sources_first_day_says_no_history(new_source):
    first = min(new_source)
    section = drift.build(FramesContext({first: new_source[first]}, first))
    assert section["summary"]["orders"]["history"]["days"] == 0 and section["status"] == "no_data"
    [sub] = section["blocks"]
    assert sub["blocks"][0]["text"].startswith(f"no history yet: 0 days of {drift.HISTORY_DAYS} needed")


# ---- the page at 1,280 px ---------------------------------------------------------------------------------------
def test_the_page_reads_at_1280_px_without_sideways_scrolling(shop, chromium, tmp_path):  # noqa: F811 - the fixture
    result = build_report(shop.settings, DRIFT_DAY, store=shop.store)
    page = chromium.open(Path(result["html"]).as_uri(),
                         wait_for="document.readyState === 'complete' && !!document.querySelector('h1')")
    page.screenshot(tmp_path / "report.png")
    assert page.evaluate("window.innerWidth") == 1280
    # open every folded part: what it holds must fit too
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    too_wide = page.evaluate("[...document.querySelectorAll('.table-wrap')].filter("
                             "w => w.scrollWidth > w.clientWidth + 1).map(w => w.previousElementSibling ? "
                             "w.previousElementSibling.textContent : '?')")
    assert too_wide == []
    assert page.evaluate("document.querySelector('#attention li').textContent").strip().startswith("warning")
