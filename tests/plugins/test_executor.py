"""The preloading executor: the modules a task process needs are imported once in the long-lived worker process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_CHILD = """
import os, sys
from shopflow_airflow.executor import PreloadingLocalExecutor, preload_task_modules
from shopflow.steps.preload import STEP_MODULES
from airflow.executors.local_executor import LocalExecutor
assert issubclass(PreloadingLocalExecutor, LocalExecutor)
assert "great_expectations" not in sys.modules
names = preload_task_modules()
assert set(STEP_MODULES) <= set(names) and "airflow.sdk.execution_time.task_runner" in names, names
pid = os.fork()
if pid == 0:  # a forked task process has them without importing anything
    os._exit(0 if "great_expectations" in sys.modules and "shopflow.steps.partition" in sys.modules else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
print("ok")
"""


def test_a_forked_task_process_inherits_the_preloaded_modules(tmp_path):
    env = {"PYTHONPATH": f"{REPO / 'plugins'}:{REPO / 'include'}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "AIRFLOW_HOME": str(tmp_path / "airflow")}
    done = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_the_celery_configuration_is_airflows_default_plus_the_preload():
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
    from celery.signals import worker_init
    from shopflow_airflow import executor

    assert executor.CELERY_CONFIG is DEFAULT_CELERY_CONFIG
    assert any(key[0] == "shopflow-preload" for key, _ in worker_init.receivers)
