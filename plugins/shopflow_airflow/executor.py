"""Task processes that start with the step modules already imported: the preloading LocalExecutor, and the same
preload for Celery workers.

An Airflow task process is a fork of a long-lived worker process (a LocalExecutor worker, itself a fork of the
scheduler; a Celery pool process, a fork of the Celery worker). `preload_task_modules` imports, once in that
long-lived process, `shopflow.steps.preload.STEP_MODULES` and what every task process imports on Airflow's side
(the task runner, shopflow's operators); each task process inherits them instead of importing pandas, pyarrow and
Great Expectations again. `bench/run_overhead.py` measures what it buys.

- LocalExecutor: `AIRFLOW__CORE__EXECUTOR=shopflow_airflow.executor.PreloadingLocalExecutor` (what the demo and
  the tests' embedded Airflow use). Nothing else differs from LocalExecutor.
- Celery: `AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=shopflow_airflow.executor.CELERY_CONFIG` (docker-compose.yaml):
  Airflow's default Celery configuration, and the preload in each worker's main process before it forks its pool.
"""

from __future__ import annotations

import importlib
import logging
import time

from airflow.executors.local_executor import LocalExecutor

log = logging.getLogger(__name__)

# What a task process imports on Airflow's side: the task runner, and the operators the DAG file builds on.
TASK_MODULES = ("airflow.sdk.execution_time.task_runner", "shopflow_airflow.operators", "shopflow_airflow.planning",
                "shopflow_airflow.alerts")


def preload_task_modules() -> list[str]:
    """Import the step modules and TASK_MODULES in this process (see the module docstring); the names imported."""
    from shopflow.steps.preload import import_step_modules

    started = time.perf_counter()
    names = list(import_step_modules())
    for name in TASK_MODULES:
        importlib.import_module(name)
        names.append(name)
    log.info("preloaded %d modules for the task processes in %.1fs", len(names), time.perf_counter() - started)
    return names


class PreloadingLocalExecutor(LocalExecutor):
    """LocalExecutor that imports the task modules before its workers fork (see the module docstring)."""

    def start(self) -> None:
        preload_task_modules()
        super().start()


def _celery_config() -> dict:
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
    from celery.signals import worker_init

    worker_init.connect(lambda **_: preload_task_modules(), weak=False, dispatch_uid="shopflow-preload")
    return DEFAULT_CELERY_CONFIG


def __getattr__(name: str):
    # CELERY_CONFIG is built on first use: the LocalExecutor above must not need the Celery provider.
    if name == "CELERY_CONFIG":
        return _celery_config()
    raise AttributeError(name)
