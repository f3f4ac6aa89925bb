"""`PreloadingLocalExecutor`: Airflow's LocalExecutor whose worker processes already hold the step modules.

Set `AIRFLOW__CORE__EXECUTOR=shopflow_airflow.executor.PreloadingLocalExecutor`. Before the executor starts its
worker processes (forks of the scheduler), it imports `shopflow.steps.preload.STEP_MODULES` once, and Airflow's
task runner and shopflow's operators (what every task process imports before its first line of work); each task
process, a fork of a worker, inherits them instead of importing pandas, pyarrow and Great Expectations again.
Nothing else differs from LocalExecutor (same parallelism, same supervisor, same logs).
"""

from __future__ import annotations

import importlib
import time

from airflow.executors.local_executor import LocalExecutor

# What a task process imports on Airflow's side: the task runner, and the operators the DAG file builds on.
TASK_MODULES = ("airflow.sdk.execution_time.task_runner", "shopflow_airflow.operators", "shopflow_airflow.planning",
                "shopflow_airflow.alerts")


class PreloadingLocalExecutor(LocalExecutor):
    """LocalExecutor that imports the step modules before its workers fork (see the module docstring)."""

    def start(self) -> None:
        from shopflow.steps.preload import import_step_modules

        started = time.perf_counter()
        took = import_step_modules()
        for name in TASK_MODULES:
            importlib.import_module(name)
        self.log.info("preloaded %d modules for the task processes in %.1fs", len(took) + len(TASK_MODULES),
                      time.perf_counter() - started)
        super().start()
