"""Run shopflow's Airflow locally as real services (api-server, scheduler, dag-processor) and drive backfills.

Used by the demo (`make demo`), the backfill test and the distributed (CeleryExecutor) test, which adds Celery
workers per queue (`Services.start_celery_worker`, settings from `celery_env`). The services run in their own
process groups and are stopped with SIGTERM (twice: the scheduler sometimes needs a second one), then SIGKILL as a
last resort.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "shopflow_daily"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PRELOADING_EXECUTOR = "shopflow_airflow.executor.PreloadingLocalExecutor"


def airflow_env(airflow_home: Path, shopflow_home: Path, *, airflow_db_url: str | None = None,
                store_url: str | None = None, port: int = 8080, parallelism: int = 4,
                executor: str = PRELOADING_EXECUTOR) -> dict[str, str]:
    """Environment for an embedded Airflow that runs this repo's DAGs against one shopflow home; its executor is
    the LocalExecutor whose workers hold the step modules before they fork the task processes (see
    shopflow_airflow.executor), or `executor`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update({
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": env.get("AIRFLOW__API_AUTH__JWT_SECRET") or os.urandom(48).hex(),
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "SHOPFLOW_HOME": str(shopflow_home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "plugins"), str(REPO / "scripts"), os.environ.get("PYTHONPATH")])),
        "TQDM_DISABLE": "1",
    })
    if airflow_db_url:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = airflow_db_url
    if not airflow_db_url or airflow_db_url.startswith("sqlite"):
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = "airflow_sqlite.CONNECT_ARGS"
    if store_url:
        env["SHOPFLOW_STORE_URL"] = store_url
    return env


def celery_env(env: dict[str, str], *, broker_url: str, result_backend: str) -> dict[str, str]:
    """The same Airflow with the CeleryExecutor: the scheduler sends tasks through the broker (e.g. Redis) to
    `airflow celery worker` processes, each listening on some queues; states come back through the result backend
    (`db+postgresql://…`)."""
    return {**env, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "shopflow_airflow.executor.CELERY_CONFIG",
            "AIRFLOW__CELERY__RESULT_BACKEND": result_backend, "AIRFLOW__OPERATORS__DEFAULT_QUEUE": "default"}


WORKER_HOSTNAME_VARIABLE = "LOCAL_AIRFLOW_WORKER_HOSTNAME"


def worker_hostname() -> str:
    """`[core] hostname_callable` of the local Celery workers: on one machine every worker has the same host name,
    so each gets its own (as each container of docker-compose.yaml does) and task instances record which one ran
    them (`task_instance.hostname`)."""
    return os.environ[WORKER_HOSTNAME_VARIABLE]


def airflow(env: dict[str, str], *args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "airflow"), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@dataclass
class Services:
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, *components: str) -> None:
        for component in components:
            self.spawn(component, [component])

    def spawn(self, name: str, args: list[str], *, env: dict[str, str] | None = None,
              program: str | None = None) -> None:
        """`airflow ARGS` (or `program ARGS`) in its own process group, output to LOG_DIR/NAME.log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            [program or str(Path(sys.executable).parent / "airflow"), *args], env=self.env if env is None else env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def start_celery_worker(self, queue: str, hostname: str, *, concurrency: int = 1) -> None:
        """`airflow celery worker` for one queue (CeleryExecutor, see `celery_env`). Task instances it runs record
        `hostname`; its log server gets a free port, so that several workers fit on one machine."""
        env = {**self.env, "AIRFLOW__CORE__HOSTNAME_CALLABLE": "local_airflow.worker_hostname",
               WORKER_HOSTNAME_VARIABLE: hostname, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        self.spawn(hostname, ["celery", "worker", "--queues", queue, "--concurrency", str(concurrency),
                              "--celery-hostname", hostname], env=env)

    def wait_healthy(self, timeout: float = 120) -> None:
        url = self.env["AIRFLOW__API__BASE_URL"] + "/api/v2/monitor/health"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.raise_if_dead()
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    health = json.load(response)
                if health.get("scheduler", {}).get("status") == "healthy":
                    return
            except OSError:
                pass
            time.sleep(2)
        raise TimeoutError(f"Airflow did not become healthy in {timeout}s; logs in {self.log_dir}")

    def raise_if_dead(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {self.log_dir / (name + '.log')}")

    def stop(self, grace: float = 30) -> None:
        for _attempt in range(2):
            for process in self.processes.values():
                if process.poll() is None:
                    try:
                        os.killpg(process.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + grace / 2
            while time.monotonic() < deadline and any(p.poll() is None for p in self.processes.values()):
                time.sleep(0.5)
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(10)


@contextmanager
def running_airflow(env: dict[str, str], log_dir: Path):
    services = Services(env, log_dir)
    try:
        services.start("api-server", "scheduler", "dag-processor")
        services.wait_healthy()
        yield services
    finally:
        services.stop()


def wait_for_dag(env: dict[str, str], timeout: float = 120) -> None:
    """Until the dag-processor has serialised the DAG (backfill needs it in the database)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if airflow(env, "dags", "details", DAG_ID, check=False).returncode == 0:
            return
        time.sleep(3)
    raise TimeoutError(f"{DAG_ID} was not parsed within {timeout}s")


def backfill(env: dict[str, str], windows: list[tuple[str, str]], *, max_active_runs: int = 2,
             stall_seconds: float = 900, progress=print, service_logs: Path | None = None) -> list[dict]:
    """Backfill each (from, to) window in turn (Airflow allows one active backfill per DAG); return all runs.

    No deadline: each window is waited for until its runs finish, and the wait fails only when nothing progressed
    for `stall_seconds` (run_watch.RunWatch names the stuck task and its log). Progress lines say what runs."""
    from run_watch import RunWatch

    wait_for_dag(env)
    runs: dict[str, dict] = {}
    for first, last in windows:
        # Paused while the backfill's runs are created: the scheduler starts no queued run of a paused DAG. Airflow
        # commits the runs one by one and, when a database lock interrupts the creation, deletes those it made;
        # a scheduler that had started one of them then stopped on it (ObjectDeletedError).
        airflow(env, "dags", "pause", DAG_ID)
        # Retried for a while: on SQLite the scheduler can hold the write lock, and the scheduler marks the previous
        # window's backfill complete a loop after its last run ends (until then: AlreadyRunningBackfill).
        give_up = time.monotonic() + 180
        while True:
            last_try = time.monotonic() > give_up
            result = airflow(env, "backfill", "create", "--dag-id", DAG_ID, "--from-date", first, "--to-date", last,
                             "--max-active-runs", str(max_active_runs), "--reprocess-behavior", "completed",
                             check=last_try)
            if result.returncode == 0:
                break
            time.sleep(5)
        airflow(env, "dags", "unpause", DAG_ID)
        progress(f"backfill created: {DAG_ID} {first} .. {last}")
        runs.update(RunWatch(env, DAG_ID, _days(first, last), stall_seconds=stall_seconds, progress=progress,
                             service_logs=service_logs).wait())
    return list(runs.values())


def trigger(env: dict[str, str], day: str) -> str:
    """A manual run of the DAG for `day` (logical date, midnight UTC); unpauses the DAG. Returns the run id."""
    wait_for_dag(env)
    airflow(env, "dags", "unpause", DAG_ID)
    run_id = f"manual__{day}"
    airflow(env, "dags", "trigger", DAG_ID, "--logical-date", f"{day}T00:00:00+00:00", "--run-id", run_id)
    return run_id


def _days(first: str, last: str) -> set[str]:
    from datetime import date, timedelta

    day, end, days = date.fromisoformat(first), date.fromisoformat(last), set()
    while day <= end:
        days.add(day.isoformat())
        day += timedelta(days=1)
    return days
