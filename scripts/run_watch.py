"""Watch a DAG's runs through Airflow's REST API: what is running (task, day, and for training the step, loss,
samples/s and ETA read from its task log), and whether anything still progresses.

Used by `local_airflow.backfill` (the demo and the backfill test). There is no deadline: a wait fails only when
nothing has progressed (no run finished, no task started or ended, no task log grew) for `stall_seconds`, and the
error names the stuck task and its log file. A slow or busy machine therefore only makes the wait longer.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# The training loop's progress line (shopflow.model.training.loop.train).
TRAINING_STEP = re.compile(r"step (?P<step>\d+)/(?P<total>\d+) loss (?P<loss>[\d.]+) .*?(?P<rate>[\d.]+) samples/s"
                           r"(?: eta (?P<eta>\d+)s)?")
ACTIVE_STATES = ("running", "queued", "scheduled", "up_for_retry", "deferred")


class Stalled(RuntimeError):
    """Nothing progressed for the stall time; the message names what was running and where its log is."""


class AirflowApi:
    """A bearer-token client of the api-server (simple auth manager: the admin password from the Airflow home)."""

    def __init__(self, env: dict[str, str], timeout: float = 15):
        self.base = env["AIRFLOW__API__BASE_URL"].rstrip("/")
        self.airflow_home = Path(env["AIRFLOW_HOME"])
        self.timeout = timeout
        self._token: str | None = None

    def _login(self) -> str:
        passwords = json.loads((self.airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
        request = urllib.request.Request(f"{self.base}/auth/token", method="POST",
                                         data=json.dumps({"username": "admin", "password": passwords["admin"]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.load(response)["access_token"]

    def get(self, path: str, params: list[tuple[str, str]] | None = None) -> dict:
        url = f"{self.base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        for attempt in range(2):
            self._token = self._token or self._login()
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self._token}",
                                                           "Accept": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.load(response)
            except urllib.error.HTTPError as error:
                if error.code != 401 or attempt:
                    raise
                self._token = None  # expired: log in again
        raise AssertionError("unreachable")

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns", [("limit", "1000")])["dag_runs"]

    def active_task_instances(self, dag_id: str) -> list[dict]:
        params = [("limit", "200"), *(("state", state) for state in ACTIVE_STATES)]
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances", params)["task_instances"]


@dataclass(frozen=True)
class ActiveTask:
    day: str
    task_id: str
    state: str
    log: Path
    log_size: int
    training: str | None  # "step 120/515 loss 0.8123, 95.1 samples/s, ETA 60s" while a model trains

    def describe(self) -> str:
        return f"{self.day} {self.task_id}" + ("" if self.state == "running" else f" ({self.state})") + (
            f" [{self.training}]" if self.training else "")


def task_log_path(airflow_home: Path, dag_id: str, instance: dict) -> Path:
    """Where the LocalExecutor's task runner writes this try's log (Airflow's default log_filename_template)."""
    path = airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={instance['dag_run_id']}" / f"task_id={instance['task_id']}"
    if instance.get("map_index", -1) >= 0:
        path = path / f"map_index={instance['map_index']}"
    return path / f"attempt={max(1, instance.get('try_number') or 1)}.log"


def last_training_progress(log: Path, tail_bytes: int = 65536) -> str | None:
    """The last training progress line of a task log (JSON lines, the message in `event`), formatted short."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - tail_bytes))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            message = json.loads(line).get("event", "")
        except (ValueError, AttributeError):
            message = line
        match = TRAINING_STEP.search(str(message))
        if match:
            eta = f", ETA {match['eta']}s" if match["eta"] else ""
            return f"step {match['step']}/{match['total']} loss {match['loss']}, {match['rate']} samples/s{eta}"
    return None


def last_lines(log: Path, count: int = 8) -> list[str]:
    try:
        lines = log.read_text(errors="replace").splitlines()[-count:]
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(str(json.loads(line).get("event", line)))
        except (ValueError, AttributeError):
            out.append(line)
    return out


class RunWatch:
    """Polls one DAG's runs for a set of days and tells progress from a stall."""

    def __init__(self, env: dict[str, str], dag_id: str, days: set[str], *, stall_seconds: float,
                 progress=print, poll_seconds: float = 5, service_logs: Path | None = None):
        self.api = AirflowApi(env)
        self.service_logs = service_logs
        self.airflow_home = Path(env["AIRFLOW_HOME"])
        self.dag_id, self.days = dag_id, days
        self.stall_seconds, self.poll_seconds, self.progress = stall_seconds, poll_seconds, progress
        self.active: list[ActiveTask] = []

    def runs(self) -> dict[str, dict]:
        return {r["logical_date"][:10]: {**r, "run_id": r["dag_run_id"]} for r in self.api.dag_runs(self.dag_id)
                if (r.get("logical_date") or "")[:10] in self.days}

    def active_tasks(self) -> list[ActiveTask]:
        tasks = []
        for instance in self.api.active_task_instances(self.dag_id):
            day = (instance.get("logical_date") or instance.get("dag_run_id") or "")
            day = re.search(r"\d{4}-\d{2}-\d{2}", day)
            if not day or day.group(0) not in self.days:
                continue
            log = task_log_path(self.airflow_home, self.dag_id, instance)
            size = log.stat().st_size if log.exists() else 0
            training = last_training_progress(log) if instance["state"] == "running" else None
            tasks.append(ActiveTask(day.group(0), instance["task_id"], instance["state"], log, size, training))
        return sorted(tasks, key=lambda t: (t.state != "running", t.day, t.task_id))

    def wait(self) -> dict[str, dict]:
        """Until every day's run has finished; returns the runs by day. Raises Stalled."""
        last_change, last_fingerprint, last_line = time.monotonic(), None, ""
        while True:
            try:
                runs, self.active = self.runs(), self.active_tasks()
            except (OSError, ValueError, KeyError) as error:  # api-server busy or restarting: not progress, not fatal
                runs, error_text = None, f"(api-server did not answer: {error})"
            else:
                error_text = ""
            if runs is not None:
                finished = {day: r["state"] for day, r in runs.items() if r["state"] in ("success", "failed")}
                fingerprint = (tuple(sorted(finished.items())),
                               tuple((t.day, t.task_id, t.state, t.log_size) for t in self.active))
                if fingerprint != last_fingerprint:
                    last_change, last_fingerprint = time.monotonic(), fingerprint
                failed = sum(1 for state in finished.values() if state == "failed")
                running = [t.describe() for t in self.active if t.state == "running"]
                waiting = sum(1 for t in self.active if t.state != "running")
                line = (f"  {len(finished)}/{len(self.days)} runs finished" + (f" ({failed} failed)" if failed else "")
                        + (f"; running: {'; '.join(running)}" if running else "")
                        + (f"; {waiting} waiting" if waiting else ""))
                if line != last_line:
                    self.progress(line)
                    last_line = line
                if len(finished) == len(self.days):
                    return runs
            idle = time.monotonic() - last_change
            if idle > self.stall_seconds:
                raise Stalled(self._stall_message(idle, error_text))
            time.sleep(self.poll_seconds)

    def _stall_message(self, idle: float, error_text: str) -> str:
        head = f"no progress for {idle:.0f}s (no run finished, no task started or ended, no task log grew) {error_text}"
        if not self.active:
            where = self.service_logs / "scheduler.log" if self.service_logs else "the scheduler's log"
            return f"{head}: no task of the remaining days is running or queued; see {where}"
        stuck = self.active[0]
        tail = "\n    ".join(last_lines(stuck.log))
        return (f"{head}: {stuck.describe()} is {stuck.state}; its log: {stuck.log}\n    {tail}"
                + "".join(f"\n  also {t.describe()}: {t.log}" for t in self.active[1:]))
