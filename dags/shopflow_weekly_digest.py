"""shopflow_weekly_digest: an example downstream DAG scheduled on shopflow's Assets.

Wiring and docs only: the work is in `include/shopflow/digest.py`, the Asset names in `plugins/shopflow_airflow`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import AssetAny, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException
from shopflow.sources import load_sources
from shopflow_airflow.assets import clean_asset, dataset_of

DOC = """
### shopflow_weekly_digest

An example **consumer** of shopflow's data: it runs when `shopflow_daily` publishes a validated clean partition and
digests exactly the partitions it was triggered for.

**Schedule:** `AssetAny(shopflow_clean_<dataset>, ...)`, one Asset per source of the sources file. The validate
task of each source emits an event on its Asset only when the partition passed its critical expectations, with
`extra = {ds, row_count, warning_failures}`; a failed, missing or quarantined-away day emits nothing, so it never
triggers this DAG. Several events that arrive before a run starts are consumed by one run.

**Which days:** never "today" nor the run's own date: the triggering Asset events name them (`extra["ds"]`, else
the event's partition key). For each `(dataset, ds)` the store must still record the partition as `validated`
(else it is listed as skipped); its clean Parquet is read and a day entry written (rows; for an orders-role source
order lines, orders, customers, revenue and net revenue in its currency; for an events-role source users and events
per type). Then the ISO week's digest is rebuilt from every day entry written for that week:
`$SHOPFLOW_REPORTS_DIR/digests/week=YYYY-Www/digest.json` (day entries beside it in `ds=YYYY-MM-DD/<dataset>.json`),
and logged. XCom carries only the list of partitions and the summary.

**Why plain asset-aware scheduling and not partitioned assets (`PartitionedAssetTimetable` with
`StartOfWeekMapper` / `RollupMapper(WeekWindow)`):** in Airflow 3.3 an event that carries a partition key does not
queue DAGs scheduled on the plain Asset (apache/airflow#63734, fixed by #63848), and `shopflow_daily` runs on
daily data intervals (`CronDataIntervalTimetable`, backfills by logical date), so its events carry no partition
key. Making them partitioned would need `add_partitions` in the validate operator and would silently stop every
existing `schedule=[shopflow_clean_...]` consumer. A weekly rollup window (`WaitForAll`, the default) would also
wait forever on days that never validate (the orders source has no trading on Saturdays: recorded missing, no
event), and a `MinimumCount` policy would have to guess how many days a week has. The day is already in the
event's `extra`, so a plain Asset schedule gets the same information with no change to the producer, and the
digest is weekly by where it writes (the ISO week of each triggered day), not by when it runs.

`max_active_runs=1`: runs that rebuild the same week never overlap (the scheduler defers an Asset-triggered run
while one is active; the queued events wait for it). A manual run has no triggering events and is skipped.
"""

CLEAN_ASSETS = [clean_asset(name) for name in load_sources()]


@dag(
    dag_id="shopflow_weekly_digest",
    schedule=AssetAny(*CLEAN_ASSETS),
    start_date=datetime(2010, 12, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["shopflow", "digest", "consumer"],
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(minutes=30),
    },
)
def shopflow_weekly_digest():
    write_digest(triggered_partitions())


@task
def triggered_partitions() -> dict:
    """The `(dataset, ds)` partitions named by this run's triggering Asset events (a small list)."""
    from shopflow.report.digest import triggered_partitions as partitions_of

    events = [
        {"dataset": dataset_of(asset.name), "asset": asset.name, "extra": dict(event.extra or {}),
         "partition_key": event.partition_key, "source_run_id": event.source_run_id}
        for asset, asset_events in get_current_context()["triggering_asset_events"].items()
        for event in asset_events
    ]
    partitions, ignored = partitions_of(events)
    for reason in ignored:
        print(f"ignored: {reason}")
    if not partitions:
        raise AirflowSkipException(f"no triggering Asset event names a partition ({len(events)} event(s)): nothing "
                                   "to digest; this DAG runs on shopflow's clean Assets, not by hand")
    print(f"{len(partitions)} partition(s) from {len(events)} event(s): "
          + ", ".join(f"{p['dataset']} {p['ds']}" for p in partitions))
    return {"partitions": partitions, "ignored": ignored}


@task
def write_digest(triggered: dict) -> dict:
    """Read each partition's validated clean data, write its day entry and rebuild the week's digest."""
    from shopflow.report.digest import write_digests
    from shopflow_airflow.connections import task_settings

    return write_digests(task_settings(), triggered["partitions"], run_id=get_current_context()["run_id"])


shopflow_weekly_digest()
