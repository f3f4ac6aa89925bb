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

from shopflow import alerts, pipeline
from shopflow.landing import land_orders
from shopflow.landing_io import LandingFileError
from shopflow.report.build import build_report
from shopflow.settings import ConfigurationError, Settings
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

from conftest import TEST_KEY, Sandbox
from local_airflow import airflow, airflow_env, free_port
from sample_rows import CATALOG_NAMES, data_path

GOOD_DAYS = [date(2010, 12, 1), date(2010, 12, 2), date(2010, 12, 3)]  # real days; the 3rd drifts on quantity
ZERO_PRICE_DAY = date(2010, 12, 6)  # real rows, every price set to 0: all quarantined, 0 clean rows
CORRUPT_DAY = date(2010, 12, 7)  # real rows, one line with a field missing


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
    store = MetadataStore(settings.store_url)
    for day in [*GOOD_DAYS, ZERO_PRICE_DAY, CORRUPT_DAY]:
        _run_day(settings, store, day)
        build_report(settings, day, store=store)
    return settings, store


# ---- the library's decisions -----------------------------------------------------------------------------------
def test_a_good_day_without_drift_has_no_alert(orders_store):
    settings, store = orders_store
    # The first day has nothing to drift from; the second real day already drifts (quantities, amounts).
    assert alerts.day_alerts(settings, GOOD_DAYS[0], store=store) == []
    assert [a["kind"] for a in alerts.day_alerts(settings, GOOD_DAYS[1], store=store)] == ["drift"]


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
    day = GOOD_DAYS[2]
    report = alerts.load_report(settings, day)
    [section] = [s for s in report["sections"] if s["id"] == "drift"]
    marked = [(r["measure"], r["column"]) for sub in section["blocks"] if sub["kind"] == "subsection"
              for t in sub["blocks"] if t["kind"] == "table" for r in t["rows"] if r["marker"] == "DRIFT"]
    assert marked == [("p50", "quantity"), ("p90", "quantity")]  # the real 2010-12-03 against the 1st and 2nd
    [alert] = alerts.day_alerts(settings, day, store=store)
    assert alert["kind"] == "drift" and alert["dataset"] == "orders" and alert["task"] == "report"
    assert [(m["measure"], m["column"]) for m in alert["details"]["metrics"]] == marked
    assert alert["details"]["compared_with"] == ["2010-12-01", "2010-12-02"]
    assert "p50 of quantity -33.3%" in alert["what"] and "p90 of quantity -41.7%" in alert["what"]


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
    found = alerts.day_alerts(settings, GOOD_DAYS[2], store=store)
    run_id = "manual__2010-12-03T00:00:00+00:00"
    ShopflowAlertNotifier(found).notify({"ds": "2010-12-03", "run_id": run_id})
    [message] = smtp_server.inbox.wait_for(1)
    assert smtp_server.inbox.envelopes == [("shopflow@shop.example", ["ops@shop.example", "data@shop.example"])]
    assert message["Subject"] == "[shopflow] 2010-12-03: 1 alert(s): drift (orders)"
    body = _body(message)
    assert "http://airflow.example:8080/shopflow/reports/2010-12-03" in body
    assert f"http://airflow.example:8080/dags/shopflow_daily/runs/{quote(run_id, safe='')}/tasks/report" in body
    assert "p90 of quantity -41.7%" in body


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
