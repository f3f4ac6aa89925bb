"""The DAG files import cleanly, follow the project's Airflow 3 rules, and stay light at parse time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "shopflow_daily" in dagbag.dags


def test_daily_dag_shape(dagbag):
    dag = dagbag.dags["shopflow_daily"]
    assert set(dag.tags) >= {"shopflow", "daily"}
    assert dag.catchup is False and dag.doc_md
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    from shopflow.sources import load_sources

    groups = {task_id.split(".")[0] for task_id in dag.task_ids if "." in task_id}
    assert groups == {*load_sources(), "model"} >= {"orders", "behavior", "catalog", "search", "olist_catalog"}
    plan = dag.get_task("plan_day")
    assert plan.upstream_task_ids == set() and plan.downstream_task_ids >= {f"{g}.ingest" for g in groups - {"model"}}
    for group in groups - {"model"}:
        ingest, clean, validate = (dag.get_task(f"{group}.{step}") for step in ("ingest", "clean", "validate"))
        assert ingest.upstream_task_ids == {plan.task_id}
        assert clean.upstream_task_ids == {ingest.task_id} and validate.upstream_task_ids == {clean.task_id}
        assert [a.name for a in validate.outlets] == [f"shopflow_clean_{group}"]
    for task in dag.tasks:
        if task.task_id != "fail_if_any_task_failed":  # it fails on purpose; a retry would only fail again
            assert task.retries >= 1 and task.retry_delay.total_seconds() > 0, task.task_id
        assert task.owner == "data-platform"


def test_report_runs_last_and_failures_still_fail_the_run(dagbag):
    dag = dagbag.dags["shopflow_daily"]
    report, watcher = dag.get_task("report"), dag.get_task("fail_if_any_task_failed")
    # plan_day, a branch, is upstream of the ingests only: hanging the report off it would skip the report on a day
    # with nothing landed.
    # model.review waits (bounded) for reviewers: nothing waits for it, the report least of all.
    steps = {t for t in dag.task_ids if t not in (report.task_id, watcher.task_id, "plan_day", "model.review")}
    # The report is written whatever happened upstream; the watcher fails the run when any step failed.
    assert report.trigger_rule == "all_done" and report.upstream_task_ids == steps
    assert watcher.trigger_rule == "one_failed" and watcher.upstream_task_ids == steps
    assert {t.task_id for t in dag.leaves} == {report.task_id, watcher.task_id, "model.review"}
    assert [a.name for a in report.outlets] == ["shopflow_daily_report"]


def test_model_branch_wiring(dagbag):
    dag = dagbag.dags["shopflow_daily"]
    gate, train, bless = (dag.get_task(f"model.{t}") for t in ("training_gate", "train", "bless"))
    repair, intents = dag.get_task("model.repair"), dag.get_task("model.search_intent")
    assert train.queue == "gpu" and {t.queue for t in dag.tasks if t is not train} == {"default"}
    # The day's plan skips, without starting them, the model steps that have nothing to do on the day.
    assert gate.upstream_task_ids == {"catalog.validate", "plan_day"} and train.upstream_task_ids == {gate.task_id}
    assert bless.upstream_task_ids == {train.task_id}
    assert dag.get_task("model.duplicates").upstream_task_ids == {"catalog.validate", "plan_day"}
    # Repair and search intent run with the champion even when training is skipped, never after a failure.
    assert repair.upstream_task_ids == {"catalog.validate", bless.task_id, "plan_day"}
    assert intents.upstream_task_ids == {"search.validate", bless.task_id, "plan_day"}
    assert repair.trigger_rule == intents.trigger_rule == "none_failed"
    assert train.max_active_tis_per_dag == 1
    review = dag.get_task("model.review")  # announces the review batch, waits bounded, answers "Later" by default
    assert review.upstream_task_ids == {repair.task_id} and review.downstream_task_ids == set()
    assert review.response_timeout.total_seconds() > 0 and review.defaults == ["Later"]


def test_a_source_added_to_the_sources_file_is_a_task_group_with_no_code_change(tmp_path):
    import yaml
    from shopflow.sources import DEFAULT_SOURCES_FILE

    sources = yaml.safe_load(DEFAULT_SOURCES_FILE.read_text())
    sources["returns"] = {"description": "Returned order lines.", "owner": "ops@shop.example",
                          "files": [{"name": "returns.jsonl", "columns": ["order_id", "returned_at"]}],
                          "schema": [{"name": "order_id", "required": True},
                                     {"name": "returned_at", "type": "timestamp"}], "key": ["order_id"]}
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(yaml.safe_dump(sources))
    code = ("from airflow.dag_processing.dagbag import DagBag; bag = DagBag(dag_folder='dags');"
            "print(bag.import_errors or sorted(t for t in bag.dags['shopflow_daily'].task_ids if t.startswith('returns.')))")
    path = os.pathsep.join(filter(None, [str(REPO / "plugins"), str(REPO / "scripts"), os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": path, "SHOPFLOW_SOURCES": str(sources_file)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "['returns.clean', 'returns.ingest', 'returns.validate']"


def test_dag_file_has_no_heavy_imports():
    code = (
        "import sys, runpy; runpy.run_path('dags/shopflow_daily.py');"
        "heavy = [m for m in ('pandas', 'torch', 'transformers', 'great_expectations', 'pyarrow') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    # Extend, not replace, PYTHONPATH: `make test` also puts scripts/ there for the SQLite connect args.
    path = os.pathsep.join(filter(None, [str(REPO / "plugins"), str(REPO / "scripts"), os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": path})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "", f"heavy modules imported at DAG parse time: {result.stdout}"


def test_no_airflow2_idioms():
    banned = ("airflow.decorators", "airflow.operators.python", "schedule_interval", "execution_date", "days_ago")
    for path in [*REPO.glob("dags/**/*.py"), *REPO.glob("plugins/**/*.py")]:
        text = path.read_text()
        for word in banned:
            assert word not in text, f"{path.relative_to(REPO)} uses {word}"
