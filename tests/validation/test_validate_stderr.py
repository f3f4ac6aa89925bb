"""A validate task's stderr stays empty (issue 19): the Airflow UI shows a task's stderr as `error` lines, and
Great Expectations draws its "Calculating Metrics" tqdm bars there unless its context turns them off."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
from shopflow.config.settings import Settings
from shopflow.landing.sample_data import land_orders
from shopflow.steps import partition as pipeline
from shopflow.store import migrate
from shopflow.validation.runner import quiet_context, validate_frame
from shopflow.validation.suites import ExpectationSpec

REPO = Path(__file__).resolve().parents[2]
KEY = "validate-stderr-test-key-not-a-secret-32b"
DAY = date(2010, 12, 1)

VALIDATE = """
import json, sys
from datetime import date
from shopflow.config.settings import Settings
from shopflow.steps import partition
summary = partition.validate(Settings.from_env(), "orders", date.fromisoformat(sys.argv[1]), "stderr_test")
print(json.dumps({"success": summary["success"], "expectations": summary["expectations"]}))
"""


def test_the_gx_context_has_its_progress_bars_off():
    context = quiet_context()
    assert context.progress_bars["globally"] is False and context.progress_bars["metric_calculations"] is False


def test_validate_frame_writes_nothing_to_stderr(capfd):
    frame = pd.DataFrame({"a": [1.0, 2.0, None] * 50, "b": ["x", "y", "z"] * 50})
    specs = [ExpectationSpec("critical", "ExpectColumnValuesToBeInSet", {"column": "b", "value_set": ["x", "y"]}),
             ExpectationSpec("warning", "ExpectColumnValuesToBeBetween", {"column": "a", "min_value": 0, "max_value": 5}),
             ExpectationSpec("critical", "ExpectTableRowCountToBeBetween", {"min_value": 1})]
    assert [r["success"] for r in validate_frame("stderr_demo", frame, specs)] == [False, True, True]
    err = capfd.readouterr().err
    assert "Calculating Metrics" not in err and "it/s" not in err, err


def test_a_real_orders_day_validates_with_an_empty_stderr(tmp_path, source_data):
    env = {"SHOPFLOW_HOME": str(tmp_path / "home"), "SHOPFLOW_SOURCE_DATA": str(source_data),
           "SHOPFLOW_PSEUDONYM_KEY": KEY}
    settings = Settings.from_env(env)
    settings.home.mkdir(parents=True)
    migrate.upgrade(settings.store_url)
    land_orders(settings)
    pipeline.ingest(settings, "orders", DAY)
    assert pipeline.clean(settings, "orders", DAY)["rows_clean"] > 1000

    child_env = {key: value for key, value in os.environ.items()
                 if not key.startswith(("SHOPFLOW_", "TQDM_", "PYTHONWARNINGS"))}
    child_env.update(env, PYTHONPATH=os.pathsep.join(str(REPO / p) for p in ("include", "plugins")))
    done = subprocess.run([sys.executable, "-c", VALIDATE, DAY.isoformat()], env=child_env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"success": true' in done.stdout
    assert "Calculating Metrics" not in done.stderr and "%|" not in done.stderr
    assert done.stderr.strip() == "", done.stderr[-3000:]  # no library warning either
