"""Benchmark: a year of history, measured: every day of the sample data with landing files, backfilled by Airflow.

    SHOPFLOW_SOURCE_DATA=../shared/data .venv/bin/python bench/backfill.py [--windows 2010-12-01:2011-09-30,...]
        [--max-days N] [--max-gap 14] [--keep]

It prints numbers and never asserts on them. The sample data is landed once (shopflow.landing.sample_data.land_all)
and the days that hold landing files (landing/<source>/ds=YYYY-MM-DD/) become the windows: landed days at most
--max-gap days apart share a window, so the orders' 245 trading days are one window, 2010-12-01:2011-09-30
(weekends and the Christmas break included: a run of a day without files plans nothing and skips every source),
and the catalogue snapshot/delta days (with the generated search log and the Olist snapshot) and the Taobao
behaviour days, the demo's other windows, are the others. --windows replaces them; --max-days N keeps the first
N days (a smoke test). Training is switched off, so that orchestration, not the CPU fine-tune, is what is measured.
In this one run it measures:

  airflow  `shopflow_daily` (with plan_day, the default) backfilled window by window by a real scheduler
           (LocalExecutor, SQLite, bench/run_overhead.py's PARALLELISM task processes and MAX_ACTIVE_RUNS runs at a
           time, as the demo): runs and failed runs; task instances that started (a task skipped after starting is
           counted) and that never started (skipped by the branch or by trigger rule); the wall time (first run start
           to last run end, per window, summed) and days per minute = days backfilled / wall minutes; the CPU
           seconds of the Airflow services and every task process they started (reaped children's rusage).
  work     the steps' own work: the same library calls a run makes (plan, ingest/clean/validate of each source with
           landing files, the model steps, the report), called directly in this process for every day, with the
           modules already imported: the time a perfect orchestrator would need (bench/run_overhead.direct_work).

  services the Airflow services alone, started, left idle and stopped, twice (5 s and 65 s idle): their CPU per
           second of waiting and for a start and stop (bench/run_overhead.idle_services), hence their share of the
           backfill's CPU (start + stop + per second x the backfill's elapsed time).

and the ratios wall / work and CPU / work, and the mean per-task overhead = (CPU - work) / tasks started, also with
the services' share taken out (what each task process costs the orchestrator). It also
prints the elapsed time of the whole Airflow part (landing, services' start and stop, the waits between windows'
backfills), which the wall time leaves out.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_overhead  # noqa: E402
from run_overhead import REPO, _days, airflow_variant, direct_work, idle_services  # noqa: E402

# A backfill of one month at a time, so that each `airflow backfill create` is quick (local_airflow.backfill also
# pauses the DAG while it runs: an attempt that a database lock interrupts deletes the runs it made).
MAX_WINDOW_DAYS = 31
MAX_GAP_DAYS = 14  # the orders' longest break (Christmas 2010) is 12 days: one window for the orders
# The API caps every list at [api] maximum_page_limit (default 100); the backfill's watch lists the DAG's runs in one
# page of up to 1000, so a window of more than 100 days needs the cap raised.
EXTRA_ENV = {"AIRFLOW__API__MAXIMUM_PAGE_LIMIT": "1000"}


def landed_days(home: Path, source_data: Path) -> dict[str, set[date]]:
    """Land the sample data into `home`; return, per source, the days whose landing folder holds a file."""
    from shopflow.config.settings import Settings
    from shopflow.landing.sample_data import land_all

    settings = Settings.from_env({"SHOPFLOW_HOME": str(home), "SHOPFLOW_SOURCE_DATA": str(source_data),
                                  **run_overhead.BENCH_ENV})
    home.mkdir(parents=True, exist_ok=True)
    land_all(settings)
    days: dict[str, set[date]] = {}
    for folder in sorted(Path(settings.landing_dir).glob("*/ds=*")):
        if folder.is_dir() and any(p.is_file() for p in folder.rglob("*")):
            days.setdefault(folder.parent.name, set()).add(date.fromisoformat(folder.name.removeprefix("ds=")))
    return days


def windows_of(days: set[date], max_gap: int, max_days: int = MAX_WINDOW_DAYS) -> list[tuple[str, str]]:
    """Contiguous `first:last` windows over `days`: a new window starts where the next day is over max_gap days on,
    or where the window would span more than `max_days` days."""
    windows: list[list[date]] = []
    for day in sorted(days):
        if windows and (day - windows[-1][1]).days <= max_gap and (day - windows[-1][0]).days < max_days:
            windows[-1][1] = day
        else:
            windows.append([day, day])
    return [(first.isoformat(), last.isoformat()) for first, last in windows]


def first_days(windows: list[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    """The windows cut to their first `count` days."""
    kept = []
    for first, last in windows:
        inside = _days([(first, last)])[:count - len(_days(kept))]
        if inside:
            kept.append((first, inside[-1].isoformat()))
    return kept


def _progress_printer(every: float = 60):
    """Progress lines: each window's start, and the watch's state at most every `every` seconds."""
    last = [0.0]

    def progress(line: str) -> None:
        now = time.monotonic()
        if line.startswith("backfill created") or now - last[0] >= every:
            last[0] = now
            print(f"  {time.strftime('%H:%M:%S')} {line.strip()}"[:220], flush=True)

    return progress


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", help="first:last,... (default: the landed days' windows)")
    parser.add_argument("--max-days", type=int, help="backfill only the first N days of the windows (a smoke test)")
    parser.add_argument("--max-gap", type=int, default=MAX_GAP_DAYS,
                        help=f"landed days at most this many days apart share a window (default {MAX_GAP_DAYS})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes")
    args = parser.parse_args()
    source_data = Path(os.environ.get("SHOPFLOW_SOURCE_DATA", REPO.parent / "shared" / "data")).resolve()
    root = Path(tempfile.mkdtemp(prefix="shopflow-backfill-"))
    try:
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, apache-airflow "
              f"{metadata.version('apache-airflow')}, {platform.platform()}", flush=True)
        # Landed in the direct work's home: direct_work lands there again (idempotent) before it measures.
        landed = landed_days(root / "direct", source_data)
        all_landed = set().union(*landed.values())
        for source, days in sorted(landed.items()):
            print(f"landed {source:14s} {len(days):4d} days  {min(days)} .. {max(days)}")
        if args.windows:
            windows = [tuple(w.split(":")) for w in args.windows.split(",")]
        else:
            windows = windows_of(all_landed, args.max_gap)
        if args.max_days is not None:
            windows = first_days(windows, args.max_days)
        days = _days(windows)
        with_files = sum(1 for d in days if d in all_landed)
        print(f"windows: {','.join(f'{a}:{b}' for a, b in windows)}\n"
              f"  {len(days)} days, {with_files} of them with landing files; LocalExecutor, parallelism "
              f"{run_overhead.PARALLELISM}, {run_overhead.MAX_ACTIVE_RUNS} runs at a time (backfill "
              f"--max-active-runs), training off", flush=True)

        print("== airflow: backfilling with a real scheduler ...", flush=True)
        started = time.perf_counter()
        result = airflow_variant(root / "airflow", source_data, windows, plan=True, extra_env=EXTRA_ENV,
                                 progress=_progress_printer())
        elapsed = time.perf_counter() - started
        print("== work: the same library calls, in this process ...", flush=True)
        work = direct_work(root / "direct", source_data, days)
        print("== the services alone: started, idle, stopped ...", flush=True)
        idle = idle_services(root / "idle")
        # The part of the CPU that no task caused: the services' start and stop, and their polling while the
        # backfill ran (elapsed, less the start and stop).
        services = idle["start_stop"] + idle["per_second"] * max(elapsed - idle["start_stop_elapsed"], 0.0)

        wall, cpu, tasks = result["wall"], result["cpu"], result["started"]
        rows = [
            ("days backfilled", f"{len(days)}"),
            ("  of them with landing files", f"{with_files}"),
            ("runs", f"{result['runs']}"),
            ("failed runs", f"{result['failed_runs']}"),
            ("task instances started", f"{tasks}"),
            ("  of them skipped after starting", f"{result['skipped_after_start']}"),
            ("task instances never started", f"{result['never_started']}"),
            ("wall s", f"{wall:.1f}"),
            ("days per minute", f"{len(days) / (wall / 60):.2f}" if wall else "nan"),
            ("CPU s (services + task processes)", f"{cpu:.1f}"),
            ("task s (started tasks' durations)", f"{result['started_seconds']:.1f}"),
            ("work s (direct, in-process)", f"{work:.1f}"),
            ("wall / work", f"{wall / work:.1f}" if work else "nan"),
            ("CPU / work", f"{cpu / work:.1f}" if work else "nan"),
            ("(CPU - work) / tasks started, s", f"{(cpu - work) / tasks:.2f}" if tasks else "nan"),
            ("services alone: start + stop, CPU s", f"{idle['start_stop']:.1f}"),
            ("services alone: idle, CPU s per s", f"{idle['per_second']:.3f}"),
            ("  their share of CPU s here", f"{services:.1f}"),
            ("(CPU - work - services) / tasks, s", f"{(cpu - work - services) / tasks:.2f}" if tasks else "nan"),
            ("(CPU - services) / work", f"{(cpu - services) / work:.1f}" if work else "nan"),
            ("elapsed s of the airflow part", f"{elapsed:.1f}"),
        ]
        print()
        for name, value in rows:
            print(f"{name:36s} {value:>10s}")
        print("\nwall s: first run start to last run end, per window, summed; elapsed adds landing, the services' start"
              " and stop and the waits between windows. CPU s: all CPU of the Airflow services (api-server,"
              " scheduler, dag-processor) and their task processes; work: the steps' own work, the baseline.")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
