"""The chaos suite: a run of a real day killed (SIGKILL) at every write point, or its PostgreSQL store stopped or
frozen mid-run, and then run again, must leave exactly what an undisturbed run leaves: the same bytes in every lake
and landing file, the same rows in the metadata store, no temp files.

The faults come from tests/chaos/chaos_child.py, which runs `python -m shopflow run` with the library patched from
outside at one write point (the landing read, the clean rows, a Parquet temp file half or fully written, the rename,
the store's flush, before and after its commits). A census of an undisturbed run counts each point's hits; every
hit of every point is one case.

The suite's shopflow processes are forked from tests/chaos/fork_server.py, which has imported the library once: a
child is a real process (its own environment, connections and SIGKILL) without the seconds of a fresh interpreter's
imports. The DAG-run case starts Airflow the ordinary way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from chaos_child import postgres_pids
from conftest import PostgresCluster
from fork_server import ForkServer
from orders_days import KEY, land_orders_day, real_orders_lines
from sqlalchemy import create_engine, text
from store_snapshot import store_rows

pytestmark = pytest.mark.slow  # every case runs shopflow two or three times, each in a process forked for it

CHILD = Path(__file__).with_name("chaos_child.py")
DAY = date(2010, 12, 1)
RUN = ["run", DAY.isoformat(), "--source", "orders"]

# What an undisturbed run of one orders day hits, as a rerun over the day's good outputs and as the day's first run
# (test_the_cases_cover_every_hit_of_every_write_point keeps both true). Every hit is a case on a rerun; the first
# run's cases are its ingest (where the partition is created).
CENSUS = {
    "ingest/ingest_read": 1, "ingest/parquet_partial": 1, "ingest/parquet_temp": 1, "ingest/rename": 1,
    "ingest/flush": 4, "ingest/commit_before": 3, "ingest/commit_after": 3,
    "clean/clean_rows": 1, "clean/parquet_partial": 2, "clean/parquet_temp": 2, "clean/rename": 2,
    "clean/flush": 2, "clean/commit_before": 2, "clean/commit_after": 2,
    "validate/flush": 2, "validate/commit_before": 2, "validate/commit_after": 2,
}
FIRST_RUN_CENSUS = {**CENSUS, "ingest/flush": 5}
KILLS = [("rerun", *key.split("/"), at) for key, hits in CENSUS.items() for at in range(1, hits + 1)] + \
    [("first_run", *key.split("/"), at) for key, hits in FIRST_RUN_CENSUS.items() if key.startswith("ingest/")
     for at in range(1, hits + 1)]


_forks: list[ForkServer] = []  # this module's fork server (fork_server.py), started by the fixture below


@pytest.fixture(scope="module", autouse=True)
def fork_server(tmp_path_factory):
    server = ForkServer(tmp_path_factory.mktemp("forks"))
    _forks.append(server)
    try:
        yield server
    finally:
        _forks.remove(server)
        server.close()


def child(env: dict[str, str], *args: str, fault: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """chaos_child.py with `args` (a `shopflow` command line) and the fault, in a process of its own."""
    return _forks[0].run([str(CHILD), *args], {**os.environ, **env, **(fault or {})})


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`python -m shopflow args`, in a process of its own."""
    return _forks[0].run(["shopflow", *args], {**os.environ, **env})


def home_env(home: Path, source_data: Path, store_url: str | None = None) -> dict[str, str]:
    env = {"SHOPFLOW_HOME": str(home), "SHOPFLOW_SOURCE_DATA": str(source_data), "SHOPFLOW_PSEUDONYM_KEY": KEY,
           "SHOPFLOW_STORE_URL": store_url or f"sqlite:///{home / 'shopflow.db'}"}
    return env


def files_state(home: Path) -> dict[str, str]:
    """sha256 of every file of the landing zone and the lake (temp files included, so that a leftover shows)."""
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("landing", "lake") for p in sorted((home / folder).rglob("*")) if p.is_file()}


def state(home: Path, store_url: str, template: Path | None = None) -> tuple[dict, dict]:
    """The files and the store's rows, the homes' paths (this one's, the template's it was copied from) as <home>."""
    rows = json.dumps(store_rows(store_url))
    for root in filter(None, (home, template)):
        rows = rows.replace(json.dumps(str(root))[1:-1], "<home>")
    return files_state(home), json.loads(rows)


def assert_lake_readable(home: Path) -> None:
    """Every lake file in place is a whole Parquet file: a kill never leaves a torn file under a real name."""
    for path in (home / "lake").rglob("*.parquet"):
        pq.read_metadata(path)


@pytest.fixture(scope="module")
def good(tmp_path_factory, source_data):
    """Homes of one real orders day (SQLite store): "first_run" landed and never run, "rerun" after an undisturbed
    run; the state an undisturbed run leaves; and the census of a first run and of a rerun."""
    root = tmp_path_factory.mktemp("chaos-good")
    home = root / "rerun"
    env = home_env(home, source_data)
    home.mkdir()
    assert cli(env, "db", "upgrade").returncode == 0
    from shopflow.config.settings import Settings

    land_orders_day(Settings.from_env(env), DAY, real_orders_lines(source_data))
    shutil.copytree(home, root / "first_run")
    census = {}
    for name in ("first_run", "rerun"):
        run = child(env, *RUN, fault={"CHAOS_CENSUS": str(root / f"{name}.json")})
        assert run.returncode == 0, run.stderr[-3000:]
        census[name] = json.loads((root / f"{name}.json").read_text())
    return root, state(home, env["SHOPFLOW_STORE_URL"]), census


def test_the_cases_cover_every_hit_of_every_write_point(good):
    _, _, census = good
    message = "a write point was added or removed: update the census (each hit is one chaos case)"
    assert census["rerun"] == CENSUS, message
    assert census["first_run"] == FIRST_RUN_CENSUS, message


@pytest.mark.parametrize("scenario,step,point,at", KILLS, ids=["-".join(map(str, case)) for case in KILLS])
def test_a_kill_at_a_write_point_then_a_rerun_leaves_the_undisturbed_bytes(good, tmp_path, source_data, scenario,
                                                                            step, point, at):
    root, expected, _ = good
    template, home = root / scenario, tmp_path / "home"
    shutil.copytree(template, home)  # a day landed (first_run) or run once (rerun); this run of it is killed
    env = home_env(home, source_data)
    if scenario == "rerun":
        assert state(home, env["SHOPFLOW_STORE_URL"], template) == expected

    killed = child(env, *RUN, fault={"CHAOS_POINT": point, "CHAOS_STEP": step, "CHAOS_AT": str(at)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert f"chaos: kill at {step}/{point} #{at}" in killed.stderr
    assert_lake_readable(home)
    assert cli(env, "status", "--dataset", "orders").returncode == 0  # the store is readable after the kill

    rerun = cli(env, *RUN)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert state(home, env["SHOPFLOW_STORE_URL"], template) == expected
    assert not [p for p in (home / "lake").rglob("*") if ".tmp-" in p.name]


# ---- PostgreSQL killed under, stopped and frozen mid-run --------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    """A cluster of this module's own, since its tests stop and freeze it."""
    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="shopflow-chaos-pg-")))
    cluster.start()
    try:
        yield cluster
    finally:
        for pid in _pids(cluster):
            os.kill(pid, signal.SIGCONT)
        cluster.remove()


def _pids(cluster: PostgresCluster) -> list[int]:
    return postgres_pids(cluster.data) if (cluster.data / "postmaster.pid").exists() else []


def _admin(cluster: PostgresCluster, *statements: str) -> None:
    engine = create_engine(cluster.server.url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg_good(cluster, tmp_path_factory, source_data):
    """The undisturbed run on PostgreSQL: its home, and its database kept as a template for every case."""
    home = tmp_path_factory.mktemp("chaos-pg-good") / "home"
    home.mkdir()
    env = home_env(home, source_data, cluster.server.url("chaos_good"))
    _admin(cluster, "CREATE DATABASE chaos_good")
    assert cli(env, "db", "upgrade").returncode == 0
    from shopflow.config.settings import Settings

    land_orders_day(Settings.from_env(env), DAY, real_orders_lines(source_data))
    run = cli(env, *RUN)
    assert run.returncode == 0, run.stderr[-3000:]
    return home, state(home, env["SHOPFLOW_STORE_URL"])


def _pg_case(cluster, pg_good, tmp_path, source_data, name: str) -> tuple[Path, dict[str, str], Path]:
    template, expected = pg_good
    home = tmp_path / "home"
    shutil.copytree(template, home)
    _admin(cluster, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name} TEMPLATE chaos_good")
    env = home_env(home, source_data, cluster.server.url(name))
    env.update({"SHOPFLOW_DB_CONNECT_TIMEOUT_S": "3", "SHOPFLOW_DB_STATEMENT_TIMEOUT_S": "5",
                "CHAOS_PGDATA": str(cluster.data)})
    assert state(home, env["SHOPFLOW_STORE_URL"], template) == expected
    return home, env, template


PG_KILLS = [("ingest", "commit_before", 2), ("ingest", "commit_after", 3), ("clean", "flush", 1),
            ("validate", "commit_before", 1)]


@pytest.mark.parametrize("step,point,at", PG_KILLS, ids=[f"{s}-{p}-{n}" for s, p, n in PG_KILLS])
def test_a_kill_on_postgres_then_a_rerun_leaves_the_undisturbed_rows(cluster, pg_good, tmp_path, source_data, step,
                                                                     point, at):
    home, env, template = _pg_case(cluster, pg_good, tmp_path, source_data, f"chaos_kill_{step}_{point}_{at}")
    killed = child(env, *RUN, fault={"CHAOS_POINT": point, "CHAOS_STEP": step, "CHAOS_AT": str(at)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    rerun = cli(env, *RUN)  # the dead client's advisory lock went with its connection: the rerun does not wait
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert state(home, env["SHOPFLOW_STORE_URL"], template) == pg_good[1]


# Frozen between two transactions (the pooled connection's checkout ping gets no answer) and inside one (after a
# flush: the commit gets no answer).
FREEZES = [("clean", "rename", 2, r"PostgreSQL gave no answer to the ping|timeout expired"),
           ("clean", "flush", 1, r"PostgreSQL gave no answer to the commit within 15 s")]


@pytest.mark.parametrize("step,point,at,says", FREEZES, ids=[f"{s}-{p}-{n}" for s, p, n, _ in FREEZES])
def test_a_frozen_server_fails_the_run_by_its_timeouts_and_the_retry_restores_it(cluster, pg_good, tmp_path,
                                                                                 source_data, step, point, at, says):
    """The run ends with the error of the store's own deadline (ping, connect or statement timeout), not by hanging
    until the child's guard; how long that takes is printed, never asserted (it depends on the machine)."""
    home, env, template = _pg_case(cluster, pg_good, tmp_path, source_data, f"chaos_frozen_{point}")
    started = time.monotonic()
    try:
        frozen = child(env, *RUN, fault={"CHAOS_POINT": point, "CHAOS_STEP": step, "CHAOS_AT": str(at),
                                         "CHAOS_ACTION": "freeze"})
        elapsed = time.monotonic() - started
    finally:
        for pid in _pids(cluster):
            os.kill(pid, signal.SIGCONT)
    assert f"chaos: freeze at {step}/{point} #{at}" in frozen.stderr
    assert frozen.returncode == 1, frozen.stderr[-3000:]
    error = frozen.stderr.rsplit("\norders 2010-12-01: ", 1)[1]
    print(f"frozen server at {step}/{point}: the run failed after {elapsed:.1f} s with: {error[:300]}")
    assert re.search(says, error), error

    retry = cli(env, *RUN)  # the retry after the server came back
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert state(home, env["SHOPFLOW_STORE_URL"], template) == pg_good[1]


def test_a_stopped_server_fails_the_run_clearly_and_the_retry_restores_it(cluster, pg_good, tmp_path, source_data):
    home, env, template = _pg_case(cluster, pg_good, tmp_path, source_data, "chaos_stopped")
    try:
        stopped = child(env, *RUN, fault={"CHAOS_POINT": "rename", "CHAOS_STEP": "ingest", "CHAOS_AT": "1",
                                          "CHAOS_ACTION": "stop"})
    finally:
        cluster.start()
    assert "chaos: stop at ingest/rename #1" in stopped.stderr
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    message = stopped.stderr.split("orders 2010-12-01: ", 1)[1]
    assert "connection" in message.lower() and "Traceback" not in message.splitlines()[0]

    retry = cli(env, *RUN)
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert state(home, env["SHOPFLOW_STORE_URL"], template) == pg_good[1]


def test_ten_concurrent_pairs_of_first_runs_on_postgres_leave_the_undisturbed_rows(cluster, pg_good, tmp_path,
                                                                                   source_data, fork_server):
    """Two whole runs (ingest, clean, validate) of a never-run day at once: the dataset and the partition are created
    under their locks, so neither run dies of a UniqueViolation and no row is written twice."""
    template, expected = pg_good
    _admin(cluster, "DROP DATABASE IF EXISTS chaos_empty", "CREATE DATABASE chaos_empty")
    assert cli(home_env(tmp_path / "migrate", source_data, cluster.server.url("chaos_empty")), "db",
               "upgrade").returncode == 0
    for pair in range(10):
        home = tmp_path / f"pair{pair}"
        shutil.copytree(template / "landing", home / "landing")
        name = f"chaos_pair_{pair}"
        _admin(cluster, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name} TEMPLATE chaos_empty")
        env = home_env(home, source_data, cluster.server.url(name))
        started = [fork_server.start(["shopflow", *RUN], {**os.environ, **env}) for _ in range(2)]
        runs = [fork_server.wait(run, RUN) for run in started]
        assert [run.returncode for run in runs] == [0, 0], [run.stderr[-2000:] for run in runs]
        assert state(home, env["SHOPFLOW_STORE_URL"], template) == expected, f"pair {pair}"


# ---- inside a DAG run: the task fails by its statement timeout, Airflow's retry takes over -----------------------
@pytest.mark.airflow
def test_a_server_frozen_under_a_dag_run_fails_the_task_and_the_retry_completes_the_run(cluster, tmp_path,
                                                                                       source_data):
    from conftest import MODEL_ENV
    from local_airflow import airflow, airflow_env, free_port
    from shopflow.config.settings import Settings
    from shopflow.store.repository import MetadataStore

    _admin(cluster, "CREATE DATABASE chaos_dag")
    env = airflow_env(tmp_path / "airflow", tmp_path / "shopflow", store_url=cluster.server.url("chaos_dag"),
                      port=free_port(), parallelism=2)
    env.update(MODEL_ENV)
    env.update({"SHOPFLOW_SOURCE_DATA": str(source_data), "SHOPFLOW_PSEUDONYM_KEY": KEY,
                "SHOPFLOW_DB_CONNECT_TIMEOUT_S": "3", "SHOPFLOW_DB_STATEMENT_TIMEOUT_S": "5",
                "CHAOS_PGDATA": str(cluster.data), "CHAOS_POINT": "flush", "CHAOS_STEP": "clean", "CHAOS_AT": "1",
                "CHAOS_ACTION": "freeze"})
    (tmp_path / "shopflow").mkdir()
    assert cli(env, "db", "upgrade").returncode == 0
    land_orders_day(Settings.from_env(env), DAY, real_orders_lines(source_data))
    airflow(env, "db", "migrate", timeout=600)

    # `dags test` runs the tasks in its own process, where chaos_child froze the server inside orders.clean's
    # transaction; the server is thawed as soon as the task has failed, before its retry (1 minute later).
    process = subprocess.Popen([sys.executable, str(CHILD), "--airflow", "dags", "test", "shopflow_daily",
                                DAY.isoformat()], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, frozen_at, failed_after = [], None, None
    try:
        for line in process.stdout:
            lines.append(line)
            if "chaos: freeze at clean/flush #1" in line:
                frozen_at = time.monotonic()
            elif frozen_at and failed_after is None and "PostgreSQL gave no answer" in line:
                failed_after = time.monotonic() - frozen_at
                for pid in _pids(cluster):
                    os.kill(pid, signal.SIGCONT)
        process.wait(timeout=600)
    finally:
        process.kill()
        for pid in _pids(cluster):
            os.kill(pid, signal.SIGCONT)
    output = "".join(lines)
    assert frozen_at is not None, output[-5000:]
    assert failed_after is not None, output[-5000:]  # failed by the statement timeout, while the server was frozen
    print(f"frozen server under a DAG run: orders.clean failed {failed_after:.1f} s after the freeze")
    assert "up_for_retry" in output.lower(), output[-5000:]
    assert process.returncode == 0, output[-5000:]

    [partition] = MetadataStore(env["SHOPFLOW_STORE_URL"]).partitions("orders", DAY)
    assert partition.status == "validated" and partition.rows_in == 60, partition.error
    assert partition.rows_in == partition.rows_clean + partition.rows_quarantined + partition.rows_duplicate
    assert partition.airflow_run_id.startswith("manual__")
