"""The modules a step's process needs, imported once by a long-lived process that starts task processes by fork.

A task process of Airflow's LocalExecutor (and of a Celery worker) is a fork of a long-lived worker process. A
module that worker has imported is already in every task it starts; any other is imported again by each task
(pandas, pyarrow and Great Expectations cost about 3 s of CPU a task). `import_step_modules` is what
`shopflow_airflow.executor.PreloadingLocalExecutor` calls before its workers fork. The list is fixed here (a
setting that named modules to import would be configuration that runs code); the model's heavy frameworks (torch,
transformers) are left out: only the training and embedding tasks need them, and they would grow every worker.
"""

from __future__ import annotations

import importlib
import logging
import os
import time

log = logging.getLogger(__name__)

STEP_MODULES = (
    "pandas",
    "pyarrow.parquet",
    "sqlalchemy",
    "great_expectations",
    "great_expectations.validator.v1_validator",
    "great_expectations.expectations.expectation",
    "sklearn.linear_model",
    "shopflow.store.repository",
    "shopflow.steps.partition",
    "shopflow.steps.model_branch",
    "shopflow.validation.runner",
    "shopflow.governance.repair",
    "shopflow.model.inference",
    "shopflow.report.build",
    "shopflow.observability.alerts",
)


def import_step_modules() -> dict[str, float]:
    """Import STEP_MODULES (those not imported yet); seconds each took. A module that fails to import is logged and
    skipped: the task that needs it imports it itself, and fails there with its own error."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    took = {}
    for name in STEP_MODULES:
        started = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a preload is an optimisation; the task reports the real error
            log.warning("could not preload %s", name, exc_info=True)
            continue
        took[name] = time.perf_counter() - started
    return took
