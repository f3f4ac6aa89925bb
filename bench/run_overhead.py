"""Benchmark: what Airflow's orchestration costs a day of small partitions, with and without the plan_day task.

    .venv/bin/python bench/run_overhead.py [--windows 2010-12-01:2010-12-05,...] [--keep]

It prints numbers and never asserts on them. Over the demo's windows (13 days; default as `make demo`, training
switched off so that orchestration, not the CPU fine-tune, is what is measured) it measures, in this one run:

  work     the steps' own work: the same library calls a run makes (plan, ingest/clean/validate of each source with
           landing files, the model steps, the report), called directly in this process for every day, with the
           modules already imported: the time a perfect orchestrator would need.
  before   `shopflow_daily` with SHOPFLOW_PLAN_DAY=false, backfilled by a real scheduler (LocalExecutor, SQLite,
           parallelism 4, 2 runs at a time, as the demo): every source's ingest task starts a worker process and,
           on a day without landing files, skips.
  plan_day the same with the plan_day task (the default): absent sources' groups are skipped without starting.
  preload  the same with the executor the demo uses (shopflow_airflow.executor.PreloadingLocalExecutor): the
           worker processes import the step modules (pandas, pyarrow, Great Expectations, ...) once, before they
           fork the task processes, which inherit them instead of importing them again.

For each Airflow variant: the wall time of the backfill (first run start to last run end, per window, summed) and
wall / work; the CPU seconds of the Airflow services and every task process they started (reaped children's
rusage) and CPU / work; the task instances that started (a task skipped after starting, as an absent source's
ingest before, is counted) and that never started (skipped by the branch or by trigger rule); and the mean
per-task overhead = (CPU - work) / tasks started. A task's own duration leaves out its process start, which is
why CPU, not the durations, is the measure of overhead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from local_airflow import (  # noqa: E402
    DAG_ID,
    PRELOADING_EXECUTOR,
    airflow,
    airflow_env,
    backfill,
    free_port,
    running_airflow,
)

DEMO_WINDOWS = "2010-12-01:2010-12-05,2015-12-03:2015-12-07,2017-11-25:2017-11-27"
KEY = "bench-pseudonym-key-not-a-secret"
BENCH_ENV = {"SHOPFLOW_TRAIN_ENABLED": "false", "SHOPFLOW_PSEUDONYM_KEY": KEY}
# (name, plan_day on, executor): what each change bought, in the order the changes were made.
VARIANTS = (
    ("before (no plan_day)", False, "LocalExecutor"),
    ("plan_day", True, "LocalExecutor"),
    ("preload (plan_day + preloading executor)", True, PRELOADING_EXECUTOR),
)
PARALLELISM = 4  # [core] parallelism: task processes at a time, as the demo
MAX_ACTIVE_RUNS = 2  # runs of a backfill at a time, as the demo


def _days(windows: list[tuple[str, str]]) -> list[date]:
    days = []
    for first, last in windows:
        day = date.fromisoformat(first)
        while day <= date.fromisoformat(last):
            days.append(day)
            day += timedelta(days=1)
    return days


def direct_work(root: Path, source_data: Path, days: list[date]) -> float:
    """Seconds of the library's own work for every day, called in this process (modules imported beforehand)."""
    env = {"SHOPFLOW_HOME": str(root), "SHOPFLOW_SOURCE_DATA": str(source_data), **BENCH_ENV}
    os.environ.update(env)
    from shopflow.config.settings import Settings
    from shopflow.landing.sample_data import land_all
    from shopflow.report.build import build_report
    from shopflow.steps import model_branch as model_pipeline
    from shopflow.steps import partition as pipeline
    from shopflow.store import migrate

    settings = Settings.from_env(env)
    root.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.store_url)
    land_all(settings)
    total = 0.0
    for day in days:
        started = time.perf_counter()
        plan = pipeline.plan_day(settings, day)
        for source in plan["present"]:
            try:
                for step in (pipeline.ingest, pipeline.clean, pipeline.validate):
                    step(settings, source, day)
            except Exception as exc:  # a failing partition costs its work too, as in a run
                print(f"  (direct) {source} {day}: {type(exc).__name__}: {exc}"[:200])
        for step in ("training_gate", "repair", "search_intent"):
            try:
                getattr(model_pipeline, step)(settings, day)
            except model_pipeline.NothingToDo:
                pass
        build_report(settings, day)
        total += time.perf_counter() - started
    return total


def airflow_variant(root: Path, source_data: Path, windows: list[tuple[str, str]], plan: bool, *,
                    extra_env: dict[str, str] | None = None, progress=None) -> dict:
    """Backfill `windows` with a real scheduler in a fresh home under `root`; `extra_env` is added to the services'
    environment, `progress` (default: silent) gets the backfill's progress lines."""
    env = airflow_env(root / "airflow", root / "shopflow", port=free_port(), parallelism=PARALLELISM)
    env.update({"SHOPFLOW_SOURCE_DATA": str(source_data), "SHOPFLOW_PLAN_DAY": "true" if plan else "false",
                **BENCH_ENV, **(extra_env or {})})
    python = [sys.executable, "-m", "shopflow"]
    for args in (["db", "upgrade"], ["land"]):
        subprocess.run([*python, *args], env=env, check=True, capture_output=True)
    airflow(env, "db", "migrate", timeout=600)
    cpu_before = _children_cpu()
    with running_airflow(env, root / "service-logs"):
        from run_watch import AirflowApi

        runs = backfill(env, windows, max_active_runs=MAX_ACTIVE_RUNS, stall_seconds=600,
                        progress=progress or (lambda line: None))
        instances = _all_task_instances(AirflowApi(env))
    # The services and every task process they started have exited and been reaped: their CPU is in our children's.
    cpu = _children_cpu() - cpu_before
    wall = 0.0
    for first, last in windows:
        inside = [r for r in runs if first <= r["logical_date"][:10] <= last]
        starts = [_time(r["start_date"]) for r in inside if r.get("start_date")]
        ends = [_time(r["end_date"]) for r in inside if r.get("end_date")]
        wall += (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    days = {d.isoformat() for d in _days(windows)}
    ours = [i for i in instances if (i.get("logical_date") or "")[:10] in days]
    started = [i for i in ours if (i.get("duration") or 0) > 0 or i["state"] in ("success", "failed")]
    never = [i for i in ours if i not in started]
    return {"runs": len(runs), "failed_runs": sum(1 for r in runs if r["state"] != "success"), "wall": wall,
            "cpu": cpu, "started": len(started), "never_started": len(never),
            "started_seconds": sum(i.get("duration") or 0 for i in started),
            "skipped_after_start": sum(1 for i in started if i["state"] == "skipped")}


def idle_services(root: Path, idle_seconds: list[float] = (5.0, 65.0)) -> dict:
    """What the Airflow services cost with no run at all, in CPU seconds: started, left idle for each of
    `idle_seconds` (a fresh start each), stopped. From two idle times: `per_second` (the services' polling while they
    wait) and `start_stop` (migrated database, start, health, stop): the part of a backfill's CPU that is no task's."""
    measured = []
    for seconds in idle_seconds:
        env = airflow_env(root / f"idle-{seconds:g}" / "airflow", root / f"idle-{seconds:g}" / "shopflow",
                          port=free_port(), parallelism=PARALLELISM)
        airflow(env, "db", "migrate", timeout=600)
        cpu_before, started = _children_cpu(), time.perf_counter()
        with running_airflow(env, root / f"idle-{seconds:g}" / "service-logs"):
            time.sleep(seconds)
        measured.append((seconds, _children_cpu() - cpu_before, time.perf_counter() - started))
    (short, short_cpu, short_elapsed), (long, long_cpu, _) = measured[0], measured[-1]
    per_second = (long_cpu - short_cpu) / (long - short)
    return {"per_second": per_second, "start_stop": short_cpu - per_second * short,
            "start_stop_elapsed": short_elapsed - short}


def _all_task_instances(api) -> list[dict]:
    """Every task instance of the DAG, page by page (the API returns at most 100 a page)."""
    instances: list[dict] = []
    while True:
        page = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/~/taskInstances",
                       [("limit", "100"), ("offset", str(len(instances)))])
        instances += page["task_instances"]
        if not page["task_instances"] or len(instances) >= page["total_entries"]:
            return instances


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", default=os.environ.get("SHOPFLOW_DEMO_WINDOWS", DEMO_WINDOWS))
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes")
    args = parser.parse_args()
    windows = [tuple(w.split(":")) for w in args.windows.split(",")]
    source_data = Path(os.environ.get("SHOPFLOW_SOURCE_DATA", REPO.parent / "shared" / "data")).resolve()
    root = Path(tempfile.mkdtemp(prefix="shopflow-overhead-"))
    try:
        results = {}
        for name, plan, executor in VARIANTS:
            print(f"== {name}: backfilling {args.windows} with a real scheduler ...", flush=True)
            results[name] = airflow_variant(root / name.split()[0], source_data, windows, plan,
                                            extra_env={"AIRFLOW__CORE__EXECUTOR": executor})
        print("== work: the same library calls, in this process ...", flush=True)
        work = direct_work(root / "direct", source_data, _days(windows))
        print(f"\nsteps' own work (direct, {len(_days(windows))} days): {work:.1f} s\n")
        header = (f"{'variant':22s} {'runs':>4s} {'wall s':>7s} {'wall/work':>9s} {'CPU s':>7s} {'CPU/work':>8s} "
                  f"{'started':>7s} {'(skipped)':>9s} {'never':>5s} {'task s':>7s} {'overhead/task s':>15s}")
        print(header)
        for name, r in results.items():
            overhead = (r["cpu"] - work) / r["started"] if r["started"] else float("nan")
            print(f"{name:22s} {r['runs']:4d} {r['wall']:7.1f} {r['wall'] / work:9.1f} {r['cpu']:7.1f} "
                  f"{r['cpu'] / work:8.1f} {r['started']:7d} {r['skipped_after_start']:9d} {r['never_started']:5d} "
                  f"{r['started_seconds']:7.1f} {overhead:15.2f}"
                  + (f"  ({r['failed_runs']} runs failed)" if r["failed_runs"] else ""))
        before = next(iter(results.values()))
        for name, r in list(results.items())[1:]:
            print(f"{name.split()[0]} / before: wall {r['wall'] / before['wall']:.2f}, CPU {r['cpu'] / before['cpu']:.2f}, "
                  f"tasks started {r['started']}/{before['started']}")
        print("CPU s: all CPU of the Airflow services and their task processes (api-server, scheduler, dag-processor"
              " included); overhead/task = (CPU - work) / tasks started; task s: the started tasks' own durations")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
