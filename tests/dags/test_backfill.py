"""A backfill over three consecutive real days, run by a real scheduler, with Airflow and the store on PostgreSQL."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from conftest import make_postgres_sandbox
from local_airflow import backfill, running_airflow
from shopflow.store.repository import MetadataStore

pytestmark = [pytest.mark.postgres, pytest.mark.airflow, pytest.mark.slow]


def test_backfill_three_days_with_scheduler_on_postgres(tmp_path, source_data, postgres_server):
    sandbox = make_postgres_sandbox(tmp_path, source_data, postgres_server, "backfill")
    with running_airflow(sandbox.env, tmp_path / "service-logs"):
        runs = backfill(sandbox.env, [("2010-12-01", "2010-12-03")], stall_seconds=600)

    assert sorted(r["logical_date"][:10] for r in runs) == ["2010-12-01", "2010-12-02", "2010-12-03"]
    assert {r["state"] for r in runs} == {"success"}
    assert all(r["run_id"].startswith("backfill__") for r in runs)

    store = MetadataStore(sandbox.store_url)
    for offset in range(3):
        day = date(2010, 12, 1) + timedelta(days=offset)
        [orders] = store.partitions("orders", day)
        assert orders.status == "validated" and orders.airflow_run_id.startswith("backfill__")
        assert orders.rows_in == orders.rows_clean + orders.rows_quarantined + orders.rows_duplicate
        assert {p.status for p in store.partitions(None, day) if p.dataset.name != "orders"} == {"missing"}
    # The scheduler wrote real task logs (the UI reads these).
    logs = list((tmp_path / "airflow" / "logs").rglob("*.log"))
    assert any("orders.clean" in str(p) or "task_id=orders.clean" in str(p) for p in logs)
    assert any("rows in ->" in p.read_text(errors="replace") for p in logs if "orders.clean" in str(p))
    # A successful validate task's log reads as a success: no library's progress bars or warnings on its stderr,
    # which the UI shows as `error` lines.
    validate_logs = [p for p in logs if "orders.validate" in str(p)]
    assert validate_logs
    for path in validate_logs:
        entries = [json.loads(line) for line in path.read_text(errors="replace").splitlines() if line.startswith("{")]
        assert entries and not [e for e in entries if e.get("logger") == "task.stderr" or e.get("level") == "error"]
        assert "Calculating Metrics" not in path.read_text(errors="replace")
