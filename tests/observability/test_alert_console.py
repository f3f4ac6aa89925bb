"""Under `airflow dags test` no task log is kept (issue 19): the alert says the task's output went to that console
instead of offering a log link that points at nothing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from shopflow.observability import alerts

DAY = "2010-12-06"
URL = "http://ui/dags/shopflow_daily/runs/manual__2026/tasks/orders.validate"
FAILED = [{"kind": "run_failed", "day": DAY, "dataset": "orders", "what": "task orders.validate failed",
           "details": {}, "task": "orders.validate"},
          {"kind": "drift", "day": DAY, "dataset": "orders", "what": "DRIFT on 1 metric(s)", "details": {},
           "task": None}]


@pytest.mark.parametrize("facts, console", [
    (("manual", "dag_test", None), True),
    (("manual", "dag_test", "test"), True),
    ((None, None, "TEST"), True),
    (("manual", "admin", "ui"), False),
    (("scheduled", None, "timetable"), False),
    (("scheduled", "dag_test", None), False),
    ((None, None, None), False),
])
def test_a_dags_test_run_is_told_from_its_run_facts(facts, console):
    assert alerts.console_run(*facts) is console


def test_enums_and_a_missing_log_file_count_too():
    run_type = SimpleNamespace(value="manual")
    assert alerts.console_run(run_type, "dag_test") is True
    assert alerts.console_run("scheduled", None, log_exists=False) is True
    assert alerts.console_run("scheduled", None, log_exists=True) is False


def test_log_line():
    assert alerts.log_line("orders.validate", URL) == f"log of orders.validate: {URL}"
    assert alerts.log_line("orders.validate", None) is None
    line = alerts.log_line("orders.validate", URL, console=True)
    assert line.startswith("the task's output went to the `airflow dags test` console (orders.validate")
    assert "no task log is kept" in line and "log of" not in line
    assert alerts.log_line("orders.validate", None, console=True) == \
        "the task's output went to the `airflow dags test` console (orders.validate; no task log is kept)"


def test_a_scheduled_run_links_the_task_log():
    _, text, html = alerts.render(FAILED, DAY, report_url="http://ui/shopflow/reports/2010-12-06",
                                  log_urls={"orders.validate": URL}, run_id="scheduled__x")
    assert f"   log of orders.validate: {URL}" in text and "console" not in text
    assert f'log of <code>orders.validate</code>: <a href="{URL}">' in html and "console" not in html


def test_a_dags_test_run_says_the_output_went_to_the_console():
    _, text, html = alerts.render(FAILED, DAY, report_url="http://ui/shopflow/reports/2010-12-06",
                                  log_urls={"orders.validate": URL}, run_id="manual__x", console=True)
    assert "log of orders.validate" not in text
    lines = text.splitlines()
    assert lines[lines.index("1. [run_failed] day 2010-12-06, dataset orders: task orders.validate failed") + 1] == (
        "   the task's output went to the `airflow dags test` console (orders.validate; no task log is kept, "
        f"its page: {URL})")
    assert text.count("console") == 1  # the drift alert names no task: nothing to say about a log
    assert "log of" not in html and "went to the <code>airflow dags test</code> console" in html
    assert "Report of 2010-12-06: http://ui/shopflow/reports/2010-12-06" in text


def test_the_notifier_reads_the_facts_from_the_run():
    from shopflow_airflow.alerts import is_dags_test

    dags_test = SimpleNamespace(run_type="manual", triggering_user_name="dag_test", triggered_by="test")
    scheduled = SimpleNamespace(run_type="scheduled", triggering_user_name=None)
    assert is_dags_test({"dag_run": dags_test}) is True
    assert is_dags_test({"dag_run": scheduled}) is False
    assert is_dags_test({}) is False
