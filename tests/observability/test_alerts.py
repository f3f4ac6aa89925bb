"""Alerts: what the library decides to alert about on real orders days (a failed critical expectation, a corrupt
landing file, DRIFT marks, a repair review backlog), the e-mail the notifier sends through the SMTP provider to a
real local SMTP server (aiosmtpd), and a real `airflow dags test` day that fails and is e-mailed."""

from __future__ import annotations

import csv
import dataclasses
import email
import email.policy
import io
import json
import logging
import threading
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from conftest import TEST_KEY, Sandbox
from local_airflow import airflow, airflow_env, free_port
from sample_rows import CATALOG_NAMES, data_path
from shopflow.common.landing_file import LandingFileError
from shopflow.common.parquet import read_parquet
from shopflow.config.settings import ConfigurationError, Settings
from shopflow.landing.sample_data import land_orders
from shopflow.observability import alerts
from shopflow.report import drift
from shopflow.report.build import build_report
from shopflow.sources import get_source
from shopflow.steps import partition as pipeline
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

# Real days as landed. The drift day check needs 3 earlier partitions: the first three days are listed n/a (not
# judged); the Sunday 2010-12-05 is judged against them and does not drift.
GOOD_DAYS = [date(2010, 12, 1), date(2010, 12, 2), date(2010, 12, 3), date(2010, 12, 5)]
ZERO_PRICE_DAY = date(2010, 12, 6)  # real rows, every price set to 0: all quarantined, 0 clean rows
CORRUPT_DAY = date(2010, 12, 7)  # real rows, one line with a field missing
# Real rows, every price x100 (a pence/pounds mix-up): against the 4 good days the prices and line amounts drift
# (the 6th's clean partition, 0 rows, is compared with too but has no prices; the 7th has none). Only a warning
# expectation (prices up to 1000) fails; the day validates. The real 2010-12-08 against the same days does not drift.
DRIFT_DAY = date(2010, 12, 8)


# ---- a real local SMTP server ----------------------------------------------------------------------------------
class _Inbox:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        with self._arrived:
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 30) -> list[email.message.EmailMessage]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)
        return list(self.messages)


@dataclasses.dataclass
class SmtpServer:
    port: int
    inbox: _Inbox

    def connection_json(self) -> str:
        """AIRFLOW_CONN_SMTP_DEFAULT for this server: plain SMTP on loopback (no SSL, no STARTTLS)."""
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                           "extra": {"from_email": "shopflow@shop.example", "disable_ssl": True, "disable_tls": True,
                                     "retry_limit": 0, "timeout": 10}})


@pytest.fixture()
def smtp_server():
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(port=controller.port, inbox=inbox)
    finally:
        controller.stop()


def _body(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("html", "plain"))
    return part.get_content()


# ---- a small store of real orders days -------------------------------------------------------------------------
def _rewrite_landing(path: Path, change) -> None:
    """Rewrite a landed orders file record by record (csv), `change(fields) -> fields`."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(rows[0])
    writer.writerows(change(list(row)) for row in rows[1:])
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _zero_prices(fields: list[str]) -> list[str]:
    fields[5] = "0"  # UnitPrice
    return fields


def _prices_times_100(fields: list[str]) -> list[str]:
    fields[5] = repr(round(float(fields[5]) * 100, 4))  # UnitPrice
    return fields


def _orders_file(settings: Settings, day: date) -> Path:
    return Path(settings.landing_dir) / "orders" / f"ds={day.isoformat()}" / "orders.csv"


def _run_day(settings: Settings, store: MetadataStore, day: date) -> None:
    """ingest -> clean -> validate as the operators do: a data error is recorded as the partition's failure."""
    for step in ("ingest", "clean", "validate"):
        try:
            getattr(pipeline, step)(settings, "orders", day, f"test__{day}")
        except (pipeline.ValidationFailed, LandingFileError) as exc:
            store.record_failure("orders", day, step=step, error=str(exc), run_id=f"test__{day}")
            return


@pytest.fixture(scope="module")
def orders_store(tmp_path_factory, source_data):
    home = tmp_path_factory.mktemp("alerts") / "home"
    settings = Settings.from_env({"SHOPFLOW_HOME": str(home), "SHOPFLOW_SOURCE_DATA": str(source_data),
                                  "SHOPFLOW_PSEUDONYM_KEY": TEST_KEY})
    home.mkdir(parents=True)
    migrate.upgrade(settings.store_url)
    land_orders(settings)
    _rewrite_landing(_orders_file(settings, ZERO_PRICE_DAY), _zero_prices)
    corrupt = _orders_file(settings, CORRUPT_DAY)
    lines = corrupt.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[3] = lines[3].rstrip("\n").rsplit(",", 1)[0] + "\n"  # the 3rd record loses its Country field
    corrupt.write_text("".join(lines), encoding="utf-8")
    _rewrite_landing(_orders_file(settings, DRIFT_DAY), _prices_times_100)
    store = MetadataStore(settings.store_url)
    for day in [*GOOD_DAYS, ZERO_PRICE_DAY, CORRUPT_DAY, DRIFT_DAY]:
        _run_day(settings, store, day)
        build_report(settings, day, store=store)
    return settings, store


# ---- the library's decisions -----------------------------------------------------------------------------------
def _drift_rows(settings: Settings, day: date) -> list[dict]:
    """The rows of the orders table in the drift section of the day's report.json."""
    report = alerts.load_report(settings, day)
    [section] = [s for s in report["sections"] if s["id"] == "drift"]
    return [r for sub in section["blocks"] if sub["kind"] == "subsection" and sub["title"] == "orders"
            for t in sub["blocks"] if t["kind"] == "table" for r in t["rows"]]


def test_a_good_day_without_drift_has_no_alert(orders_store):
    settings, store = orders_store
    # The first day has nothing to drift from; the next two have 1 and 2 earlier partitions: listed, not judged.
    for day in GOOD_DAYS[:3]:
        assert alerts.day_alerts(settings, day, store=store) == [], day
    for day in GOOD_DAYS[1:3]:
        rows = _drift_rows(settings, day)
        assert rows and {r["marker"] for r in rows} == {"n/a"}, day
    # The 4th real day is judged against the 3 before it, and nothing drifts.
    good = GOOD_DAYS[3]
    rows = _drift_rows(settings, good)
    assert rows and {r["marker"] for r in rows} == {"ok"}
    assert {tuple(r["baseline_days"]) for r in rows if r["check"] == "day"} == {
        tuple(d.isoformat() for d in GOOD_DAYS[:3])}
    assert alerts.day_alerts(settings, good, store=store) == []


def test_failed_critical_expectation_is_an_alert_naming_it(orders_store):
    settings, store = orders_store
    [partition] = store.partitions("orders", ZERO_PRICE_DAY)
    # validate records failed_validation; the operator's failure record keeps it (older stores: failed)
    assert partition.status in ("failed_validation", "failed") and partition.rows_clean == 0
    found = alerts.day_alerts(settings, ZERO_PRICE_DAY, store=store)
    failed = [a for a in found if a["kind"] == "expectation_failed"]
    [alert] = failed
    assert alert["day"] == "2010-12-06" and alert["dataset"] == "orders" and alert["task"] == "orders.validate"
    assert alert["details"]["expectation"] == "expect_table_row_count_to_be_between"
    assert alert["details"]["observed_value"] == 0
    assert alert["details"]["quarantined_by_reason"] == {"non_positive_price": partition.rows_in}
    assert "expect_table_row_count_to_be_between failed, observed 0" in alert["what"]
    # What the store holds: exactly the failed critical expectations of the day, no partition_failed besides.
    stored = [v.expectation for v in store.validations("orders", ZERO_PRICE_DAY) if v.severity == "critical"
              and not v.success]
    assert [a["details"]["expectation"] for a in failed] == stored
    assert not [a for a in found if a["kind"] == "partition_failed"]


def test_corrupt_landing_file_is_a_failed_partition_alert(orders_store):
    settings, store = orders_store
    [alert] = [a for a in alerts.day_alerts(settings, CORRUPT_DAY, store=store) if a["kind"] == "partition_failed"]
    assert alert["dataset"] == "orders" and alert["task"] == "orders.ingest" and alert["details"]["step"] == "ingest"
    assert "orders.csv, line 4: expected 8 fields, found 7" in alert["what"]


def test_drift_marks_of_the_report_are_one_alert_per_dataset(orders_store):
    settings, store = orders_store
    # Compared with the readable earlier partitions: the good days and the zero-price day's (empty) clean partition;
    # the corrupt day failed at ingest and has none. A price quantile's baseline is the good days.
    earlier = [d.isoformat() for d in GOOD_DAYS]
    report = alerts.load_report(settings, DRIFT_DAY)
    [section] = [s for s in report["sections"] if s["id"] == "drift"]
    assert section["status"] == "warning"
    assert section["summary"]["orders"]["compared_with"] == [*earlier, ZERO_PRICE_DAY.isoformat()]
    drifted = [r for r in _drift_rows(settings, DRIFT_DAY) if r["marker"] == "DRIFT"]
    marked = [(r["measure"], r["column"]) for r in drifted]
    # Prices x100: the quantiles of the price and of the line amount (quantity x price), nothing else.
    assert marked == [("p50", "unit_price_gbp"), ("p90", "unit_price_gbp"), ("p50", "line_amount_gbp"),
                      ("p90", "line_amount_gbp")]
    assert section["summary"]["orders"]["drifted"] == len(marked)
    for row in drifted:
        assert row["check"] == "day" and row["baseline_days"] == earlier
        assert 30 < row["today"] / row["before"] < 300 and row["z"] > 4, row
    # The control: the same clean rows with the prices / 100 (the real day) against the same days do not drift.
    clean = {p.ds: read_parquet(p.clean_path) for d in [*GOOD_DAYS, ZERO_PRICE_DAY, DRIFT_DAY]
             for p in store.partitions("orders", d)}
    real = clean.pop(DRIFT_DAY).copy()
    real[["unit_price_gbp", "line_amount_gbp"]] /= 100
    control = drift.compare(real, clean, get_source("orders").clean_schema, DRIFT_DAY)
    assert control and not [r for r in control if r["marker"] == "DRIFT"]
    [alert] = alerts.day_alerts(settings, DRIFT_DAY, store=store)
    assert alert["kind"] == "drift" and alert["dataset"] == "orders" and alert["task"] == "report"
    assert alert["day"] == DRIFT_DAY.isoformat()
    assert [(m["measure"], m["column"]) for m in alert["details"]["metrics"]] == marked
    assert [m["change"] for m in alert["details"]["metrics"]] == [r["change"] for r in drifted]
    assert alert["details"]["compared_with"] == [*earlier, ZERO_PRICE_DAY.isoformat()]
    assert alert["what"].startswith("DRIFT on 4 metric(s): ")
    for row in drifted:
        assert f"{row['measure']} of {row['column']} {row['change']}" in alert["what"]


def _record_reviews(store: MetadataStore, day: date, count: int) -> None:
    """A repair run of `day` that sent `count` real catalogue products to review (the store's own write path)."""
    with data_path(CATALOG_NAMES).open("rb") as raw:
        import gzip

        ids = [row[0] for row in csv.reader(io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8"))][:count]
    audit = [{"uniq_id": uid, "action": "review", "field": "category_top", "before": None, "after": "Clothing",
              "confidence": 0.4 + i / (10 * count), "model_version": 1} for i, uid in enumerate(ids)]
    store.record_repair(day, run={"model_version": 1, "threshold": 0.9, "rows_in": count + 10, "rows_filled": 10,
                                  "rows_flagged": 0, "rows_review": count, "rows_unchanged": 0,
                                  "output_path": "lake/repaired/catalog"}, audit=audit, run_id="test")


def test_review_backlog_over_the_threshold(orders_store):
    settings, store = orders_store
    day = date(2015, 12, 3)
    _record_reviews(store, day, 60)
    [alert] = alerts.backlog_alerts(store, day, 50)
    assert alert["kind"] == "review_backlog" and alert["dataset"] == "catalog" and alert["task"] == "model.repair"
    assert alert["details"]["backlog"] == 60 and alert["details"]["threshold"] == 50
    assert "repair review backlog 60 products (threshold 50)" in alert["what"]
    assert len(alert["details"]["examples"]) == alerts.SHOWN_EXAMPLES
    assert alerts.backlog_alerts(store, day, 60) == []  # at the threshold: not over it
    assert [a["kind"] for a in alerts.day_alerts(settings, day, store=store, review_backlog=59)] == ["review_backlog"]


def test_run_failure_alerts_name_the_dataset_and_the_recorded_error(orders_store):
    _, store = orders_store
    found = alerts.run_failure_alerts(store, ZERO_PRICE_DAY, ["orders.validate", "model.train"], run_id="r1")
    assert [(a["task"], a["dataset"]) for a in found] == [("model.train", None), ("orders.validate", "orders")]
    assert "critical expectations failed: expect_table_row_count_to_be_between" in found[1]["what"]


def test_settings_from_the_environment():
    assert alerts.AlertSettings.from_env({}) == alerts.AlertSettings((), 50)
    parsed = alerts.AlertSettings.from_env({"SHOPFLOW_ALERT_EMAILS": " ops@shop.example, ,data@shop.example ",
                                            "SHOPFLOW_ALERT_REVIEW_BACKLOG": "7"})
    assert parsed == alerts.AlertSettings(("ops@shop.example", "data@shop.example"), 7)
    with pytest.raises(ConfigurationError, match="SHOPFLOW_ALERT_REVIEW_BACKLOG"):
        alerts.AlertSettings.from_env({"SHOPFLOW_ALERT_REVIEW_BACKLOG": "many"})


def test_message_names_day_dataset_failure_and_links(orders_store):
    settings, store = orders_store
    found = alerts.day_alerts(settings, ZERO_PRICE_DAY, store=store)
    subject, text, html = alerts.render(found, ZERO_PRICE_DAY, report_url="http://ui/shopflow/reports/2010-12-06",
                                        log_urls={"orders.validate": "http://ui/log/<validate>"}, run_id="r&1")
    assert subject.startswith("[shopflow] 2010-12-06: ") and "expectation failed" in subject and "(orders)" in subject
    for part in ("2010-12-06", "dataset orders", "expect_table_row_count_to_be_between",
                 "http://ui/shopflow/reports/2010-12-06", "http://ui/log/<validate>"):
        assert part in text
    assert "http://ui/log/&lt;validate&gt;" in html and "r&amp;1" in html and "<validate>" not in html


# ---- the notifier: Airflow's BaseNotifier, delivered by the SMTP provider --------------------------------------
def test_notifier_sends_through_the_smtp_connection(orders_store, smtp_server, monkeypatch):
    from shopflow_airflow.alerts import ShopflowAlertNotifier

    settings, store = orders_store
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_server.connection_json())
    monkeypatch.setenv("SHOPFLOW_ALERT_EMAILS", "ops@shop.example,data@shop.example")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080/")
    found = alerts.day_alerts(settings, DRIFT_DAY, store=store)
    [alert] = found
    run_id = "manual__2010-12-08T00:00:00+00:00"
    ShopflowAlertNotifier(found).notify({"ds": "2010-12-08", "run_id": run_id})
    [message] = smtp_server.inbox.wait_for(1)
    assert smtp_server.inbox.envelopes == [("shopflow@shop.example", ["ops@shop.example", "data@shop.example"])]
    assert message["Subject"] == "[shopflow] 2010-12-08: 1 alert(s): drift (orders)"
    body = _body(message)
    assert "http://airflow.example:8080/shopflow/reports/2010-12-08" in body
    assert f"http://airflow.example:8080/dags/shopflow_daily/runs/{quote(run_id, safe='')}/tasks/report" in body
    assert "dataset <code>orders</code>" in body and "DRIFT on 4 metric(s)" in body
    for metric in alert["details"]["metrics"]:
        assert f"{metric['measure']} of {metric['column']} {metric['change']}" in body


def test_no_recipients_sends_nothing_and_says_so(orders_store, smtp_server, monkeypatch, caplog, capsys):
    from shopflow_airflow.alerts import ShopflowAlertNotifier

    settings, store = orders_store
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_server.connection_json())
    monkeypatch.delenv("SHOPFLOW_ALERT_EMAILS", raising=False)
    found = alerts.day_alerts(settings, ZERO_PRICE_DAY, store=store)
    with caplog.at_level(logging.INFO):
        ShopflowAlertNotifier(found).notify({"ds": "2010-12-06", "run_id": "r"})
    captured = capsys.readouterr()  # Airflow's task loggers may write to the console rather than to logging
    logged = caplog.text + captured.out + captured.err
    assert f"{len(found)} alert(s), not sent: no recipients configured (SHOPFLOW_ALERT_EMAILS is not set)" in logged
    assert "expect_table_row_count_to_be_between" in logged  # the message that would have been sent
    assert smtp_server.inbox.wait_for(1, timeout=1) == []


# ---- end to end: a real `airflow dags test` day that fails -----------------------------------------------------
@pytest.mark.airflow
@pytest.mark.slow
def test_failed_day_is_emailed_with_report_and_log_links(tmp_path, source_data, smtp_server):
    env = airflow_env(tmp_path / "airflow", tmp_path / "shopflow", port=free_port(), parallelism=2)
    env.update({"SHOPFLOW_SOURCE_DATA": str(source_data), "SHOPFLOW_PSEUDONYM_KEY": TEST_KEY,
                "SHOPFLOW_ALERT_EMAILS": "ops@shop.example", "AIRFLOW_CONN_SMTP_DEFAULT": smtp_server.connection_json()})
    sandbox = Sandbox(root=tmp_path, env=env)
    sandbox.shopflow("db", "upgrade")
    settings = sandbox.settings()
    land_orders(settings)  # the real orders days; the run's day gets a broken export below
    _rewrite_landing(_orders_file(settings, ZERO_PRICE_DAY), _zero_prices)
    airflow(env, "db", "migrate", timeout=600)

    result = sandbox.dags_test(ZERO_PRICE_DAY.isoformat())
    assert result.returncode != 0, "the day must fail: every row of its orders file has a zero price"

    messages = smtp_server.inbox.wait_for(2)
    callback_log = result.stdout[result.stdout.find("Executing on_failure dag callback"):][:4000]
    assert len(messages) == 2, ([m["Subject"] for m in messages], callback_log)
    by_kind = {("run failed" if "run failed" in m["Subject"] else "alerts"): m for m in messages}
    base, day = env["AIRFLOW__API__BASE_URL"], "2010-12-06"
    report = MetadataStore(sandbox.store_url).report(ZERO_PRICE_DAY)
    assert report.status == "failed"  # the report the links point to exists and says the day failed
    run = quote(report.airflow_run_id, safe="")  # `dags test` names its run manual__<now>
    validate_log = f"{base}/dags/shopflow_daily/runs/{run}/tasks/orders.validate"
    # Sent by the report task after it wrote the report: the failed critical expectation.
    report_alert = by_kind["alerts"]
    assert report_alert["Subject"].startswith(f"[shopflow] {day}: ") and "expectation failed" in report_alert["Subject"]
    assert "(orders)" in report_alert["Subject"]
    body = _body(report_alert)
    assert "expect_table_row_count_to_be_between failed, observed 0" in body and "dataset <code>orders</code>" in body
    assert f"{base}/shopflow/reports/{day}" in body and validate_log in body
    # Sent by the DAG's on_failure_callback once the run failed: the failed task with its log link.
    failure = by_kind["run failed"]
    assert failure["Subject"] == f"[shopflow] {day}: run failed: orders.validate (orders)"
    body = _body(failure)
    assert "task orders.validate failed: validate: orders 2010-12-06: critical expectations failed" in body
    assert validate_log in body and f"{base}/shopflow/reports/{day}" in body
    assert "fail_if_any_task_failed" not in body
