"""Run `python -m shopflow ...` (or, with `--airflow`, `airflow ...`) with a fault at one write point: the chaos
suite's child process (tests/chaos/test_chaos.py).

Environment:
  CHAOS_POINT    the write point (POINTS below), or unset to run without a fault
  CHAOS_STEP     fire only while this pipeline step runs (ingest, clean, validate); unset: any step
  CHAOS_AT       fire at the n-th hit of the point in that step (1-based; default 1)
  CHAOS_ACTION   kill (SIGKILL this process, the default), freeze (SIGSTOP every process of the PostgreSQL cluster
                 in CHAOS_PGDATA, then carry on) or stop (a fast shutdown of that cluster, then carry on)
  CHAOS_CENSUS   a file to write {"<step>/<point>": hits} to at exit (a run without a fault counts the hits)

The faults are installed by patching the library from outside, so shopflow carries no test hooks.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import signal
import sys
import time
from pathlib import Path

POINTS = (
    "ingest_read",     # the landing files are read and combined, nothing written yet
    "clean_rows",      # the clean and quarantine rows are built, nothing written yet
    "parquet_partial", # a lake file's temp file is half written
    "parquet_temp",    # a lake file's temp file is complete and fsynced, not yet renamed
    "rename",          # a lake file was just renamed into place
    "flush",           # the store's session flushed its writes (inside the open transaction)
    "commit_before",   # the store's transaction is about to commit
    "commit_after",    # the store's transaction has just committed
)

point = os.environ.get("CHAOS_POINT")
only_step = os.environ.get("CHAOS_STEP")
fire_at = int(os.environ.get("CHAOS_AT", "1"))
action = os.environ.get("CHAOS_ACTION", "kill")
census_path = os.environ.get("CHAOS_CENSUS")
hits: collections.Counter = collections.Counter()
current_step = ["setup"]


def postgres_pids(data_dir: Path) -> list[int]:
    """The postmaster of the cluster in `data_dir` and every process it forked (its backends)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


def fault() -> None:
    print(f"chaos: {action} at {current_step[0]}/{point} #{fire_at}", file=sys.stderr, flush=True)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    data_dir = Path(os.environ["CHAOS_PGDATA"])
    if action == "freeze":
        for pid in postgres_pids(data_dir):
            os.kill(pid, signal.SIGSTOP)
    elif action == "stop":
        os.kill(postgres_pids(data_dir)[0], signal.SIGINT)  # a fast shutdown
        for _ in range(300):
            if not (data_dir / "postmaster.pid").exists():
                break
            time.sleep(0.05)
    else:
        raise ValueError(f"unknown CHAOS_ACTION {action!r}")


def fires(name: str) -> bool:
    """Whether the next hit of `name` is the one that faults."""
    return (name == point and only_step in (None, current_step[0])
            and hits[f"{current_step[0]}/{name}"] + 1 == fire_at)


def hit(name: str) -> None:
    firing = fires(name)
    hits[f"{current_step[0]}/{name}"] += 1
    if firing:
        fault()


def install() -> None:
    from shopflow.common import storage
    from shopflow.steps import partition as pipeline
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    for step in ("ingest", "clean", "validate"):
        original = getattr(pipeline, step)

        def in_step(*args, _original=original, _step=step, **kwargs):
            current_step[0] = _step
            try:
                return _original(*args, **kwargs)
            finally:
                current_step[0] = "between"
        setattr(pipeline, step, in_step)

    pseudonymise = pipeline._pseudonymise

    def read_done(*args, **kwargs):
        hit("ingest_read")
        return pseudonymise(*args, **kwargs)
    pipeline._pseudonymise = read_done

    clean_partition = pipeline.clean_partition

    def rows_built(*args, **kwargs):
        result = clean_partition(*args, **kwargs)
        hit("clean_rows")
        return result
    pipeline.clean_partition = rows_built

    replace_atomically = storage._replace_atomically

    def faulty_replace(path, write):
        def write_then_fault(tmp):
            result = write(tmp)
            if fires("parquet_partial"):  # what a kill in the middle of the write leaves
                os.truncate(tmp, tmp.stat().st_size // 2)
            hit("parquet_partial")
            return result
        return replace_atomically(path, write_then_fault)
    storage._replace_atomically = faulty_replace

    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if ".tmp-" in os.fspath(src):
            hit("parquet_temp")
            real_replace(src, dst, *args, **kwargs)
            hit("rename")
            return None
        return real_replace(src, dst, *args, **kwargs)
    storage.os.replace = replace

    event.listen(Session, "after_flush", lambda *_: hit("flush"))
    event.listen(Session, "before_commit", lambda *_: hit("commit_before"))
    event.listen(Session, "after_commit", lambda *_: hit("commit_after"))


def write_census() -> None:
    if census_path:
        Path(census_path).write_text(json.dumps(dict(hits), sort_keys=True))


if __name__ == "__main__":
    atexit.register(write_census)
    install()
    if sys.argv[1:2] == ["--airflow"]:  # `airflow ...` in this process (`dags test` runs its tasks in-process)
        from airflow.__main__ import main as airflow_main

        sys.argv = ["airflow", *sys.argv[2:]]
        sys.exit(airflow_main())
    from shopflow.cli import main

    code = main(sys.argv[1:])
    write_census()
    sys.exit(code)
