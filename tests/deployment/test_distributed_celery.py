"""The distributed mode of docker-compose.yaml, for real but without containers.

PostgreSQL (Airflow's database, the Celery result backend and, in a second database, the shopflow store), Redis
(the Celery broker), the api-server, scheduler and dag-processor with the CeleryExecutor, and two Celery workers,
one for the `default` queue and one for `gpu`, all run as local processes. A manual run of `shopflow_daily` for
the catalogue snapshot day must succeed with the training task on the `gpu` worker and every other task on the
default one, read from the task instances' `queue` and `hostname` columns and from the workers' own logs.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import date

import psycopg2
import pytest
import redis
from conftest import MODEL_ENV, make_postgres_sandbox
from local_airflow import DAG_ID, Services, celery_env, free_port, trigger
from model_fixtures import small_shop_data
from shopflow.model.registry import models
from shopflow.store.repository import MetadataStore

pytestmark = [pytest.mark.postgres, pytest.mark.airflow, pytest.mark.slow]

# The full catalogue snapshot (the training gate trains on it) and a generated search partition; orders and
# behaviour have no landing files that day and are recorded as missing.
DAY = "2015-12-03"
DEFAULT_WORKER, GPU_WORKER = "worker-default", "worker-gpu"
TRAIN = "model.train"
# A Celery worker's log line for each task it runs (airflow.providers.celery.executors.celery_executor_utils).
EXECUTED = re.compile(r"Executing workload in Celery: .*?\btask_id='([^']+)'")


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if not found:
        pytest.skip("redis-server not found: install Debian's redis-server package (make test does where it can)")
    return found


def _wait_for_redis(port: int, services: Services, timeout: float = 30) -> None:
    client, deadline = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2), time.monotonic() + timeout
    while time.monotonic() < deadline:
        services.raise_if_dead()
        try:
            if client.ping():
                return
        except redis.exceptions.ConnectionError:
            time.sleep(0.5)
    raise TimeoutError(f"redis-server did not answer on port {port} in {timeout}s")


def _query(dsn: str, sql: str, *params) -> list[tuple]:
    """Read-only look into Airflow's database."""
    connection = psycopg2.connect(dsn)
    try:
        connection.set_session(readonly=True, autocommit=True)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        connection.close()


def _wait_for_run(dsn: str, run_id: str, services: Services, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        services.raise_if_dead()
        [(state,)] = _query(dsn, "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG_ID, run_id)
        if state in ("success", "failed"):
            return state
        time.sleep(10)
    raise TimeoutError(f"{run_id} did not finish in {timeout}s")


def test_celery_workers_per_queue_run_the_daily_dag(tmp_path, source_data, postgres_server):
    # The catalogue day on a slice of the real catalogue: the queues are under test, not the model on 16,028 products.
    sandbox = make_postgres_sandbox(tmp_path, small_shop_data(source_data, tmp_path / "data"), postgres_server,
                                    "celery")
    airflow_db = sandbox.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    dsn = airflow_db.replace("postgresql+psycopg2://", "postgresql://")
    redis_port = free_port()
    env = celery_env(sandbox.env, broker_url=f"redis://127.0.0.1:{redis_port}/0", result_backend="db+" + airflow_db)
    env.update(MODEL_ENV)  # a 30-step CPU training, a bless floor any model meets
    # This test is about queues and workers: the TF-IDF baseline and the fine-tune only (no embedding candidates, no
    # grouped CV), which the end-to-end DAG tests cover.
    env["SHOPFLOW_TRAIN_LINEAR_CANDIDATES"] = "false"
    env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"  # only the manual run below: no run for "yesterday"
    env["AIRFLOW__CORE__PARALLELISM"] = "3"  # both workers busy at once (2 + 1), no more: 2 shared cores here

    logs = tmp_path / "service-logs"
    broker = Services(env, logs)
    cluster = Services(env, logs)
    try:
        (tmp_path / "redis").mkdir()
        broker.spawn("redis", ["--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(tmp_path / "redis")], program=_redis_server())
        _wait_for_redis(redis_port, broker)
        cluster.start("api-server", "scheduler", "dag-processor")
        cluster.start_celery_worker("default", DEFAULT_WORKER, concurrency=2)
        cluster.start_celery_worker("gpu", GPU_WORKER, concurrency=1)
        cluster.wait_healthy(timeout=300)
        run_id = trigger(env, DAY)
        state = _wait_for_run(dsn, run_id, cluster, timeout=1500)
    finally:
        cluster.stop()
        broker.stop()

    instances = {task_id: (ti_state, queue, hostname) for task_id, ti_state, queue, hostname in _query(
        dsn, "SELECT task_id, state, queue, hostname FROM task_instance WHERE dag_id = %s AND run_id = %s",
        DAG_ID, run_id)}
    assert state == "success", {t: s for t, (s, _, _) in instances.items()}

    # Training ran on the gpu queue's worker, everything else that ran on the default worker.
    assert instances[TRAIN] == ("success", "gpu", GPU_WORKER)
    ran = {task_id: row for task_id, row in instances.items() if row[2]}
    assert {f"{source}.{step}" for source in ("catalog", "search") for step in ("ingest", "clean", "validate")} | {
        "plan_day", "model.training_gate", TRAIN, "model.bless", "model.repair", "model.search_intent"} <= set(ran)
    for task_id, (ti_state, queue, hostname) in ran.items():
        if task_id != TRAIN:
            assert (queue, hostname) == ("default", DEFAULT_WORKER), task_id
            assert ti_state in ("success", "skipped"), task_id
    # No landing files: plan_day skipped their groups, so no worker ever ran them.
    for source in ("orders", "behavior"):
        assert instances[f"{source}.ingest"][0] == "skipped" and f"{source}.ingest" not in ran

    # The workers' own logs agree: each executed exactly the tasks recorded with its name.
    executed = {worker: set(EXECUTED.findall((logs / f"{worker}.log").read_text(errors="replace")))
                for worker in (DEFAULT_WORKER, GPU_WORKER)}
    assert executed[GPU_WORKER] == {TRAIN}
    assert executed[DEFAULT_WORKER] == set(ran) - {TRAIN}

    # And the work itself: the catalogue validated, a model trained (on this machine's CPU) and blessed.
    store = MetadataStore(sandbox.store_url)
    [catalog] = store.partitions("catalog", date.fromisoformat(DAY))
    assert catalog.status == "validated" and catalog.airflow_run_id == run_id
    [model] = models(store)
    assert model.trained_on_ds == date.fromisoformat(DAY) and model.status == "champion"
    assert model.training["steps"] == int(MODEL_ENV["SHOPFLOW_TRAIN_CPU_MAX_STEPS"])
