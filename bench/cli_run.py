"""Benchmark: `python -m shopflow run` of many days, one process per day against one process for the range.

    .venv/bin/python bench/cli_run.py [--source orders] [--days 60] [--keep]

It prints numbers and never asserts on them. In this one run, each variant on its own fresh home (the sample landed
alike, the same pseudonymisation key):

  per day  `python -m shopflow run DAY --source S` once for each of the last N days with landing files of S, as a
           shell loop or an operator would: every process imports pandas, pyarrow and Great Expectations afresh.
  range    `python -m shopflow run FIRST --to LAST --source S` once over the same span (its calendar days without
           files are recorded as missing, as a daily schedule would record them).

For both: wall, CPU (the reaped children's rusage), and wall per day with files; then the ratios, and whether the
two homes recorded the same partitions (status and row ledger of every day of S).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEY = "bench-pseudonym-key-not-a-secret"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _home(root: Path, source_data: Path) -> dict[str, str]:
    env = {**os.environ, "SHOPFLOW_HOME": str(root), "SHOPFLOW_SOURCE_DATA": str(source_data),
           "SHOPFLOW_PSEUDONYM_KEY": KEY, "PYTHONPATH": str(REPO / "include")}
    for args in (["db", "upgrade"], ["land"]):
        subprocess.run([sys.executable, "-m", "shopflow", *args], env=env, check=True, capture_output=True)
    return env


def _shopflow(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "shopflow", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  shopflow {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    return time.perf_counter() - started


def _ledgers(root: Path, source: str) -> dict[str, tuple]:
    os.environ["SHOPFLOW_HOME"] = str(root)
    from shopflow.config.settings import Settings
    from shopflow.store.repository import MetadataStore

    store = MetadataStore(Settings.from_env().store_url)
    return {p.ds.isoformat(): (p.status, p.rows_in, p.rows_clean, p.rows_quarantined, p.rows_duplicate)
            for p in store.partitions(source)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="orders")
    parser.add_argument("--days", type=int, default=60, help="the last N days with landing files (default 60)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "include"))
    source_data = Path(os.environ.get("SHOPFLOW_SOURCE_DATA", REPO.parent / "shared" / "data")).resolve()
    root = Path(tempfile.mkdtemp(prefix="shopflow-cli-run-"))
    try:
        per_day_env = _home(root / "per-day", source_data)
        range_env = _home(root / "range", source_data)
        landed = sorted(p.name.removeprefix("ds=") for p in (root / "per-day" / "landing" / args.source).iterdir())
        days = landed[-args.days:]
        print(f"== per day: {len(days)} processes, {args.source} {days[0]} .. {days[-1]} ...", flush=True)
        cpu = _children_cpu()
        walls = [_shopflow(per_day_env, "run", day, "--source", args.source) for day in days]
        per_day = {"wall": sum(walls), "cpu": _children_cpu() - cpu}
        print(f"== range: one process, {days[0]} --to {days[-1]} ...", flush=True)
        cpu = _children_cpu()
        wall = _shopflow(range_env, "run", days[0], "--to", days[-1], "--source", args.source, "--max-days", "100000")
        one = {"wall": wall, "cpu": _children_cpu() - cpu}

        print(f"\n{len(days)} days of {args.source} with landing files, {days[0]} .. {days[-1]} (2 cores):")
        print(f"{'variant':10s} {'processes':>9s} {'wall s':>8s} {'CPU s':>8s} {'wall s/day':>10s}")
        print(f"{'per day':10s} {len(days):9d} {per_day['wall']:8.1f} {per_day['cpu']:8.1f} "
              f"{per_day['wall'] / len(days):10.2f}   (one day: median {statistics.median(walls):.2f} s, "
              f"{min(walls):.2f} .. {max(walls):.2f})")
        print(f"{'range':10s} {1:9d} {one['wall']:8.1f} {one['cpu']:8.1f} {one['wall'] / len(days):10.2f}")
        print(f"per day / range: wall {per_day['wall'] / one['wall']:.1f}, CPU {per_day['cpu'] / one['cpu']:.1f}")
        per_day_ledgers = _ledgers(root / "per-day", args.source)
        range_ledgers = {ds: ledger for ds, ledger in _ledgers(root / "range", args.source).items() if ds in days}
        same = {ds: per_day_ledgers.get(ds) for ds in days} == range_ledgers
        print(f"the same status and ledger for every day with files: {'yes' if same else 'NO'}")
        return 0 if same else 1
    finally:
        if args.keep:
            print(f"homes kept under {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
