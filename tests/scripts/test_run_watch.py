"""The demo's and backfill test's run watcher: training progress read from a real-format task log, a stall that names
the stuck task and its log, and a growing log that counts as progress (no deadline). The REST calls themselves are
exercised for real by tests/dags/test_backfill.py."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from run_watch import ActiveTask, RunWatch, Stalled, last_training_progress, task_log_path

DAYS = {"2015-12-03"}


def _log_line(event: str) -> str:
    # The shape of a line of an Airflow 3 task log file (structlog JSON).
    return json.dumps({"timestamp": "2026-12-01T08:58:18.945107Z", "level": "info", "event": event,
                       "logger": "shopflow.model", "task_id": "model.train"})


def test_training_progress_is_read_from_the_task_log(tmp_path):
    log = tmp_path / "attempt=1.log"
    log.write_text("\n".join([
        _log_line("training on cpu: 14,012 examples, up to 1000 steps of 32 (fp32, fused AdamW, CPU budget 150s)"),
        _log_line("step 20/1000 loss 2.1034 lr 1.00e-04 95.3 samples/s eta 143s"),
        _log_line("step 40/1000 loss 1.5012 lr 2.00e-04 101.7 samples/s eta 137s"),
        _log_line("Task instance is in running state"),
    ]) + "\n")
    assert last_training_progress(log) == "step 40/1000 loss 1.5012, 101.7 samples/s, ETA 137s"
    assert last_training_progress(tmp_path / "absent.log") is None


def test_task_log_path_follows_airflows_template(tmp_path):
    instance = {"dag_run_id": "backfill__2015-12-03T00:00:00+00:00", "task_id": "model.train", "try_number": 2,
                "map_index": -1}
    assert task_log_path(tmp_path, "shopflow_daily", instance) == (
        tmp_path / "logs" / "dag_id=shopflow_daily" / "run_id=backfill__2015-12-03T00:00:00+00:00"
        / "task_id=model.train" / "attempt=2.log")


class _ScriptedWatch(RunWatch):
    """The watcher's decisions over scripted answers instead of an api-server."""

    def __init__(self, tmp_path: Path, log: Path, *, finish_after: float | None, stall_seconds: float):
        env = {"AIRFLOW__API__BASE_URL": "http://127.0.0.1:9", "AIRFLOW_HOME": str(tmp_path)}
        self.lines: list[str] = []
        super().__init__(env, "shopflow_daily", DAYS, stall_seconds=stall_seconds, poll_seconds=0.05,
                         progress=self.lines.append)
        self.log, self.started, self.finish_after = log, time.monotonic(), finish_after

    def runs(self):
        done = self.finish_after is not None and time.monotonic() - self.started > self.finish_after
        return {"2015-12-03": {"state": "success" if done else "running", "run_id": "backfill__2015-12-03"}}

    def active_tasks(self):
        size = self.log.stat().st_size
        return [ActiveTask("2015-12-03", "model.train", "running", self.log, size, last_training_progress(self.log))]


def test_a_stall_names_the_stuck_task_and_its_log(tmp_path):
    log = tmp_path / "attempt=1.log"
    log.write_text(_log_line("step 20/1000 loss 2.1034 lr 1.00e-04 95.3 samples/s eta 143s") + "\n")
    watch = _ScriptedWatch(tmp_path, log, finish_after=None, stall_seconds=0.3)
    with pytest.raises(Stalled) as stalled:
        watch.wait()
    message = str(stalled.value)
    assert "no progress for" in message and "2015-12-03 model.train" in message and str(log) in message
    assert "step 20/1000 loss 2.1034" in message  # the log's last lines
    assert watch.lines == ["  0/1 runs finished; running: 2015-12-03 model.train "
                           "[step 20/1000 loss 2.1034, 95.3 samples/s, ETA 143s]"]


def test_a_growing_task_log_is_progress_however_long_the_run_takes(tmp_path):
    log = tmp_path / "attempt=1.log"
    log.write_text("")
    stop = threading.Event()

    def train():  # a log line every 0.1 s for 1.2 s: four times the stall time, never idle for that long
        for step in range(1, 13):
            if stop.wait(0.1):
                return
            with log.open("a") as handle:
                handle.write(_log_line(f"step {step * 20}/240 loss 1.0 lr 1e-4 90.0 samples/s eta 1s") + "\n")

    writer = threading.Thread(target=train)
    writer.start()
    try:
        runs = _ScriptedWatch(tmp_path, log, finish_after=1.3, stall_seconds=0.3).wait()
    finally:
        stop.set()
        writer.join()
    assert runs["2015-12-03"]["state"] == "success"
