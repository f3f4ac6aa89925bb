"""shopflow_weekly_digest, the example consumer of shopflow's Assets: its schedule, the digest library on real
partitions, and a real scheduler proving that a validated day triggers it and a day that fails validation does not."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from conftest import REPO, make_sandbox
from local_airflow import airflow, running_airflow, trigger
from run_watch import AirflowApi

DIGEST_DAG = "shopflow_weekly_digest"
GOOD_DAY, BAD_DAY = "2010-12-01", "2010-12-02"  # both real orders days of ISO week 2010-W48


def _zero_prices(path: Path) -> int:
    """Set UnitPrice to 0 on every row of a real landing file: every row is then quarantined (non_positive_price),
    the clean partition is empty and the critical row-count expectation fails."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    price = rows[0].index("UnitPrice")
    for row in rows[1:]:
        row[price] = "0"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    return len(rows) - 1


def _expected_orders_numbers(clean_path: str) -> dict:
    """The day's numbers computed here, straight from the clean Parquet columns (not through the role frames)."""
    import pandas as pd

    frame = pd.read_parquet(clean_path)
    amount = frame["quantity"].astype("float64") * frame["unit_price_gbp"].astype("float64")
    sale = ~frame["is_cancellation"].astype(bool)
    return {"rows": len(frame), "orders": frame.loc[sale, "invoice_no"].nunique(),
            "revenue": round(float(amount[sale].round(2).sum()), 2), "net_revenue": round(float(amount.round(2).sum()), 2),
            "customers": frame["customer_key"].dropna().nunique()}


# ---- the DAG's schedule ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_the_consumer_is_scheduled_on_every_clean_asset_of_shopflow_daily(dagbag):
    from airflow.sdk import AssetAny
    from shopflow.sources import load_sources
    from shopflow_airflow.assets import clean_asset

    assert dagbag.import_errors == {}
    consumer, daily = dagbag.dags[DIGEST_DAG], dagbag.dags["shopflow_daily"]
    assert type(consumer.timetable).__name__ == "AssetTriggeredTimetable"
    condition = consumer.timetable.asset_condition
    assert isinstance(condition, AssetAny)
    scheduled = {(a.name, a.uri) for a in condition.objects}
    assert scheduled == {(clean_asset(n).name, clean_asset(n).uri) for n in load_sources()}
    # Exactly the Assets the producer's validate tasks publish; not the daily report (a failed day has one too).
    published = {(a.name, a.uri) for t in daily.tasks if t.task_id.endswith(".validate") for a in t.outlets}
    assert scheduled == published and "shopflow_daily_report" not in {name for name, _ in scheduled}
    assert consumer.catchup is False and consumer.max_active_runs == 1 and consumer.doc_md
    assert "AssetAny" in consumer.doc_md and "PartitionedAssetTimetable" in consumer.doc_md
    assert consumer.task_ids == ["triggered_partitions", "write_digest"]
    assert consumer.get_task("write_digest").upstream_task_ids == {"triggered_partitions"}
    assert all(t.owner == "data-platform" and t.retries >= 1 for t in consumer.tasks)


def test_the_consumer_dag_file_has_no_heavy_imports():
    code = ("import sys, runpy; runpy.run_path('dags/shopflow_weekly_digest.py');"
            "print(','.join(m for m in ('pandas', 'torch', 'transformers', 'great_expectations', 'pyarrow')"
            " if m in sys.modules))")
    path = os.pathsep.join(filter(None, [str(REPO / "plugins"), str(REPO / "scripts"), os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": path}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "", f"heavy modules imported at DAG parse time: {result.stdout}"


def test_asset_names_map_back_to_datasets():
    from shopflow_airflow.assets import clean_asset, dataset_of

    assert dataset_of(clean_asset("olist_catalog").name) == "olist_catalog"
    assert dataset_of("shopflow_daily_report") is None and dataset_of("shopflow_clean_") is None


# ---- the library on real partitions ------------------------------------------------------------------------------
def test_triggered_partitions_come_from_the_events_not_from_today():
    from shopflow.report.digest import triggered_partitions

    events = [
        {"dataset": "orders", "extra": {"ds": "2010-12-03", "row_count": 10}, "source_run_id": "a"},
        {"dataset": "orders", "extra": {"ds": "2010-12-03", "row_count": 12}, "source_run_id": "b"},  # re-run
        {"dataset": "catalog", "extra": {}, "partition_key": "2015-12-04", "source_run_id": "c"},
        {"dataset": "orders", "extra": {"row_count": 5}, "partition_key": None, "source_run_id": "d"},
        {"dataset": None, "asset": "someone_else", "extra": {"ds": "2010-12-01"}},
    ]
    partitions, ignored = triggered_partitions(events)
    assert partitions == [
        {"dataset": "orders", "ds": "2010-12-03", "event_row_count": 12, "source_run_id": "b"},
        {"dataset": "catalog", "ds": "2015-12-04", "event_row_count": None, "source_run_id": "c"},
    ]
    assert len(ignored) == 2 and "'d'" in ignored[0] and "someone_else" in ignored[1]


def test_digest_reads_only_validated_partitions(tmp_path, source_data):
    from shopflow.config.settings import Settings
    from shopflow.landing.sample_data import land_behavior, land_orders
    from shopflow.report import digest
    from shopflow.sources import load_sources
    from shopflow.steps import partition as pipeline
    from shopflow.store import migrate
    from shopflow.store.repository import MetadataStore

    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / "home"), "SHOPFLOW_SOURCE_DATA": str(source_data),
                                  "SHOPFLOW_PSEUDONYM_KEY": "digest-test-key-not-a-secret-32bytes"})
    settings.home.mkdir(parents=True)
    migrate.upgrade(settings.store_url)
    store = MetadataStore(settings.store_url)
    for spec in load_sources().values():
        store.register_dataset(spec)
    land_orders(settings)
    land_behavior(settings)
    _zero_prices(settings.landing_dir / "orders" / f"ds={BAD_DAY}" / "orders.csv")
    for dataset, day in (("orders", GOOD_DAY), ("orders", BAD_DAY), ("behavior", "2017-11-27")):
        for step in ("ingest", "clean", "validate"):
            try:
                getattr(pipeline, step)(settings, dataset, date.fromisoformat(day))
            except pipeline.ValidationFailed:
                assert (dataset, day) == ("orders", BAD_DAY)

    partitions = [{"dataset": "orders", "ds": GOOD_DAY}, {"dataset": "orders", "ds": BAD_DAY},
                  {"dataset": "behavior", "ds": "2017-11-27", "event_row_count": 1}]
    summary = digest.write_digests(settings, partitions, run_id="test-run")
    assert summary["weeks"] == {"2010-W48": str(digest.week_path(settings, "2010-W48")),
                                "2017-W48": str(digest.week_path(settings, "2017-W48"))}
    assert [(p["ds"], p["status"]) for p in summary["partitions"]] == [
        (GOOD_DAY, "validated"), (BAD_DAY, "skipped"), ("2017-11-27", "validated")]

    [good] = store.partitions("orders", date.fromisoformat(GOOD_DAY))
    entry = json.loads(digest.day_path(settings, "orders", date.fromisoformat(GOOD_DAY)).read_text())
    expected = _expected_orders_numbers(good.clean_path)
    assert {k: entry[k] for k in expected} == expected and entry["rows"] == good.rows_clean
    assert entry["currency"] == "GBP" and entry["order_lines"] == entry["sale_lines"] + entry["cancellation_lines"]
    skipped = json.loads(digest.day_path(settings, "orders", date.fromisoformat(BAD_DAY)).read_text())
    assert skipped["status"] == "skipped" and "failed_validation" in skipped["reason"] and "rows" not in skipped

    week = json.loads(digest.week_path(settings, "2010-W48").read_text())
    assert list(week["days"]) == [GOOD_DAY, BAD_DAY]
    assert week["totals"]["orders"]["days_validated"] == 1 and week["totals"]["orders"]["days_skipped"] == [BAD_DAY]
    assert week["totals"]["orders"]["revenue"] == expected["revenue"]

    import pandas as pd

    [behavior] = store.partitions("behavior", date(2017, 11, 27))
    events = pd.read_parquet(behavior.clean_path)
    day = json.loads(digest.day_path(settings, "behavior", date(2017, 11, 27)).read_text())
    assert day["rows"] == len(events) and day["users"] == events["user_key"].nunique()
    assert day["events_by_type"] == {k: int(v) for k, v in events["event_type"].astype(str).value_counts().items()}
    assert "re-run since the event" in day["note"]  # the event's row count (1) is not the partition's
    assert "2017-11-27 behavior" in digest.describe(digest.week_digest(settings, "2017-W48"))


# ---- a real scheduler: a validated day triggers the consumer, a failed day does not ------------------------------
def _wait_parsed(env: dict, dag_ids: tuple[str, ...], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    for dag_id in dag_ids:
        while airflow(env, "dags", "details", dag_id, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} was not parsed within {timeout}s")
            time.sleep(3)


def _runs(api: AirflowApi, dag_id: str) -> list[dict]:
    return api.dag_runs(dag_id)


def _wait(condition, what: str, services, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        services.raise_if_dead()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout}s; service logs in {services.log_dir}")
        time.sleep(3)


TERMINAL = {"success", "failed"}


@pytest.mark.airflow
@pytest.mark.slow
def test_a_validated_day_triggers_the_digest_and_a_failed_day_does_not(tmp_path, source_data):
    sandbox = make_sandbox(tmp_path, source_data)
    sandbox.env.update({"SHOPFLOW_TRAIN_ENABLED": "false", "AIRFLOW__CORE__PARALLELISM": "4"})
    settings = sandbox.settings()
    landed = _zero_prices(settings.landing_dir / "orders" / f"ds={BAD_DAY}" / "orders.csv")
    assert landed > 100

    with running_airflow(sandbox.env, tmp_path / "service-logs") as services:
        _wait_parsed(sandbox.env, ("shopflow_daily", DIGEST_DAG))
        airflow(sandbox.env, "dags", "unpause", DIGEST_DAG)  # a paused consumer gets no queued Asset events
        api = AirflowApi(sandbox.env)
        daily_ids = {trigger(sandbox.env, BAD_DAY): BAD_DAY, trigger(sandbox.env, GOOD_DAY): GOOD_DAY}

        def daily_done() -> bool:
            runs = [r for r in _runs(api, "shopflow_daily") if r["dag_run_id"] in daily_ids]
            return len(runs) == 2 and all(r["state"] in TERMINAL for r in runs)

        _wait(daily_done, "both shopflow_daily runs finished", services, timeout=300)
        _wait(lambda: (runs := _runs(api, DIGEST_DAG)) and all(r["state"] in TERMINAL for r in runs),
              f"a finished {DIGEST_DAG} run", services, timeout=120)
        time.sleep(10)  # a second, wrongly triggered run would have been created by now (scheduler loop: ~1 s)
        daily = {daily_ids[r["dag_run_id"]]: r for r in _runs(api, "shopflow_daily") if r["dag_run_id"] in daily_ids}
        digests = _runs(api, DIGEST_DAG)
        [digest_run] = digests
        consumed = api.get(f"/api/v2/dags/{DIGEST_DAG}/dagRuns/{digest_run['dag_run_id']}/upstreamAssetEvents")
        every_event = api.get("/api/v2/assets/events", [("limit", "100")])["asset_events"]

    assert daily[GOOD_DAY]["state"] == "success" and daily[BAD_DAY]["state"] == "failed"
    from shopflow.store.repository import MetadataStore

    store = MetadataStore(sandbox.store_url)
    [good] = store.partitions("orders", date.fromisoformat(GOOD_DAY))
    [bad] = store.partitions("orders", date.fromisoformat(BAD_DAY))
    assert good.status == "validated"
    # Under Airflow the operator records the task failure on top of the failed validation.
    assert bad.status in ("failed", "failed_validation") and bad.validation_success is False
    assert "critical expectations failed: expect_table_row_count_to_be_between" in bad.error

    # The failed day emitted no event on its clean Asset; the validated day's event triggered exactly one run.
    clean_events = [(e["name"], (e["extra"] or {}).get("ds"), e["source_run_id"]) for e in every_event
                    if e["name"].startswith("shopflow_clean_")]
    assert clean_events == [("shopflow_clean_orders", GOOD_DAY, f"manual__{GOOD_DAY}")]
    # Both days published their report (a failed day is reported too): that is why the consumer is not on it.
    # (the unpaused DAG may also make its latest scheduled run, whose report is another day's)
    reported = {(e["extra"] or {}).get("ds") for e in every_event if e["name"] == "shopflow_daily_report"}
    assert {GOOD_DAY, BAD_DAY} <= reported
    assert digest_run["state"] == "success" and digest_run["run_type"] == "asset_triggered"
    assert [(e["extra"]["ds"], e["extra"]["row_count"], e["source_dag_id"]) for e in consumed["asset_events"]] == [
        (GOOD_DAY, good.rows_clean, "shopflow_daily")]

    # The digest was written from that day's validated clean data, and nothing for the failed day.
    from shopflow.report import digest

    entry = json.loads(digest.day_path(settings, "orders", date.fromisoformat(GOOD_DAY)).read_text())
    expected = _expected_orders_numbers(good.clean_path)
    assert {k: entry[k] for k in expected} == expected
    assert entry["digest_run_id"] == digest_run["dag_run_id"] and entry["source_run_id"] == f"manual__{GOOD_DAY}"
    week = json.loads(digest.week_path(settings, "2010-W48").read_text())
    assert list(week["days"]) == [GOOD_DAY] and list(week["days"][GOOD_DAY]) == ["orders"]
    assert not digest.day_path(settings, "orders", date.fromisoformat(BAD_DAY)).exists()
    logs = [p for p in (tmp_path / "airflow" / "logs").rglob("*.log") if f"dag_id={DIGEST_DAG}" in str(p)]
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "shopflow weekly digest 2010-W48" in text and f"{GOOD_DAY} orders: {good.rows_clean:,} clean rows" in text
