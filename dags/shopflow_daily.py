"""shopflow_daily: land -> ingest -> clean -> Great Expectations gate, one task group per source.

Wiring and docs only: the work is in `include/shopflow`, the operators in `plugins/shopflow_airflow`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, TaskGroup, TriggerRule, dag, task
from airflow.sdk.exceptions import AirflowFailException
from shopflow.sources import load_sources
from shopflow.sources.roles import model_catalog, sources_of
from shopflow_airflow.alerts import ShopflowRunFailureNotifier
from shopflow_airflow.assets import clean_asset, duplicates_asset, report_asset
from shopflow_airflow.operators import (
    BlessCandidateOperator,
    CleanPartitionOperator,
    DailyReportOperator,
    FindDuplicatesOperator,
    IngestPartitionOperator,
    RepairCatalogOperator,
    SearchIntentOperator,
    TrainCandidatesOperator,
    TrainingGateOperator,
    ValidatePartitionOperator,
)
from shopflow_airflow.planning import PlanDayOperator, plan_day_enabled
from shopflow_airflow.review import ReviewGateOperator

DOC = """
### shopflow_daily

Turns each source's landing files for **one day** into validated clean data.

**Which day a run processes:** the run's logical date (`ds`). The schedule uses daily data intervals, so the
scheduled run for day D has logical date D and starts after D has ended (00:00 UTC of D+1); a manual run or a
backfill for D processes D too. `ds` is each source's own business day in its own time zone (orders: UK time,
behaviour: China time, catalogue and search: UTC).

**plan_day** first looks at every source's landing folder (nothing is read) and branches to the ingest of the
sources with files that day; the others are recorded as missing and their groups are skipped without a task ever
starting (`SHOPFLOW_PLAN_DAY=false` turns this off).

Per source (task group): **ingest** (landing files -> raw Parquet, user ids pseudonymised, files and checksums
recorded; a missing day is recorded and the group is skipped) -> **clean** (typed, normalised, deduplicated;
bad rows quarantined with a reason; the row ledger must add up) -> **validate** (the dataset's Great Expectations
suite; a failed *critical* expectation fails the task, warnings are recorded). A validated partition updates the
dataset's Asset (`shopflow_clean_<dataset>`) with its row count.

**Model branch** (task group `model`): it serves the *model catalogue*, the first catalog-role source of the
sources file with a title and categories (`catalog` in the shipped file; `shopflow.sources.roles.model_catalog`), and
every search-role source. `training_gate` logs why each other catalog source is not trained on, and decides from
the store whether the model catalogue changed enough since the last model (or the model is too old); `train`
fine-tunes a candidate on queue `gpu` (a spawned subprocess; CUDA when present, a bounded CPU budget otherwise);
`bless` promotes it only if it beats the floor and the champion; `repair` fills missing categories of the day's
model-catalogue partition with the champion and flags suspected miscategorisations (a repaired copy, never an
overwrite); `search_intent` attributes the day's queries to categories. Without a champion, repair and search
intent are skipped. `duplicates` (after the catalogue's validate, no model needed) clusters the
model catalogue's near-duplicate listings as of the day (same title, or embedding neighbours whose brand, price and
category agree) into the lake's `duplicates` zone, checks its ledger and GX suite and updates the Asset
`catalog_duplicates`.

**Review** (`model.review`, after repair): the repair's items a person must decide (sent to review, flagged) are
decided per item on the **catalogue review** page of the shopflow UI (`/shopflow/review/<ds>`) or with
`python -m shopflow review list|decide`; decisions apply at once to the repaired partition, survive re-runs, and
become gold labels for the next training. The task announces the batch in Airflow's *Required Actions* and waits at
most 12 hours (`SHOPFLOW_REVIEW_TIMEOUT_MINUTES`; 0: no wait) for **Reviewed** (optionally accepting every pending
suggestion at or above a confidence); the timeout answers **Later**, leaves the items unreviewed and the run goes
on. The report does not wait for it; backfills and `airflow dags test` runs never wait; a day with nothing pending
skips it.

**Report** (`report`, trigger rule *all_done*): writes the day's shop report (HTML + JSON, recorded in the store)
whatever happened upstream, so a failed day is reported too; open it from the run's "shopflow report" link or the
**shopflow** entry of the UI menu. `fail_if_any_task_failed` keeps the run's state honest: it fails the run when
any task failed, since the report itself succeeds on a bad day. Regenerate a day: `python -m shopflow report DS`.

**Alerts** (`SHOPFLOW_ALERT_EMAILS`, SMTP connection `smtp_default`): after writing the report, `report` e-mails the
day's failed partitions and critical expectations, DRIFT marks and a repair review backlog over
`SHOPFLOW_ALERT_REVIEW_BACKLOG`; the DAG's `on_failure_callback` e-mails a failed run with each failed task's log link.

Status from the metadata store: `python -m shopflow status`.
"""


@dag(
    dag_id="shopflow_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2010, 12, 1),
    catchup=False,
    max_active_runs=4,
    doc_md=DOC,
    tags=["shopflow", "daily", "data-quality"],
    # A failed run is e-mailed (SHOPFLOW_ALERT_EMAILS) once it is final: every failed task with its log link.
    on_failure_callback=ShopflowRunFailureNotifier(),
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=1),
    },
)
def shopflow_daily():
    sources = load_sources()
    validated, steps = {}, []
    # SHOPFLOW_PLAN_DAY=false: no plan task; each ingest finds out for itself (the benchmark's "before").
    plan = PlanDayOperator(task_id="plan_day", sources=list(sources)) if plan_day_enabled() else None
    for source in sources.values():
        with TaskGroup(group_id=source.name, tooltip=source.description):
            ingest = IngestPartitionOperator(task_id="ingest", dataset=source.name)
            clean = CleanPartitionOperator(task_id="clean", dataset=source.name)
            validate = ValidatePartitionOperator(task_id="validate", dataset=source.name, asset=clean_asset(source.name))
            ingest >> clean >> validate
        if plan is not None:
            plan >> ingest
        validated[source.name] = validate
        steps += [ingest, clean, validate]
    # plan_day is not among `steps`: a branch skips every direct downstream task its branches do not reach, so the
    # report and the failure watcher must not hang off it (on a day with nothing landed they would be skipped). They
    # still run after it, through the ingest tasks; a failed plan makes those upstream_failed, which the watcher sees.

    with TaskGroup(group_id="model", tooltip="train, bless, repair the catalogue, attribute search queries"):
        # none_failed: a day without a new catalogue partition may still train (model too old) or use the champion.
        gate = TrainingGateOperator(task_id="training_gate", trigger_rule=TriggerRule.NONE_FAILED)
        train = TrainCandidatesOperator(task_id="train", queue="gpu", max_active_tis_per_dag=1,
                                        execution_timeout=timedelta(hours=3), retries=1)
        bless = BlessCandidateOperator(task_id="bless")
        repair = RepairCatalogOperator(task_id="repair", trigger_rule=TriggerRule.NONE_FAILED)
        intents = SearchIntentOperator(task_id="search_intent", trigger_rule=TriggerRule.NONE_FAILED)
        # Near-duplicate clusters of the model catalogue as of the day: after its validate, no model needed.
        duplicates = FindDuplicatesOperator(task_id="duplicates", asset=duplicates_asset(),
                                            trigger_rule=TriggerRule.NONE_FAILED)
        # Announces the day's review batch (Required Actions) and waits, bounded; nothing downstream waits for it.
        review = ReviewGateOperator(task_id="review", response_timeout=timedelta(hours=12))
        gate >> train >> bless >> [repair, intents]
        if plan is not None:  # the plan skips, without starting them, the model steps with nothing to do today
            plan >> [gate, repair, intents, duplicates]
        repair >> review
        catalogue = model_catalog()
        if catalogue.source is not None:
            validated[catalogue.name] >> [gate, repair, duplicates]
        for search in sources_of("search"):
            validated[search.name] >> intents
        steps += [gate, train, bless, repair, intents, duplicates]

    report = DailyReportOperator(task_id="report", asset=report_asset(), trigger_rule=TriggerRule.ALL_DONE,
                                 retries=1)
    steps >> report
    steps >> fail_if_any_task_failed()


@task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
def fail_if_any_task_failed():
    raise AirflowFailException("a task of this run failed; see the failed task's log and the day's report")


shopflow_daily()
