"""Benchmark: the library's ingest + clean + validate of one big `orders` partition against a bare pandas.read_csv.

    .venv/bin/python bench/pipeline.py [--rows 1000000 4000000 20000000] [--whole-max-rows N] [--repeat N] [--keep]
                                       [--format csv|parquet]

It prints numbers and never asserts on them. For each size it builds an `orders` landing partition by resampling
(with replacement, fixed seed) REAL lines of the UCI Online Retail extract in shared/data: every line is copied
byte for byte, dirt included, except InvoiceDate. What is drawn is an invoice: a run of consecutive source lines
with the same InvoiceNo field (18,787 runs; a real invoice's lines share one timestamp), and the draw's lines are
written in order until the file has the requested number of rows (the last draw is cut short). In every line of a
draw, InvoiceDate's date part is rewritten to one real trading day, so all rows belong to one partition, and its
time of day is replaced by one deterministic random second between 07:00:00 and 19:59:59 drawn for that draw (same
fixed seed). Without the new time, a line drawn twice would be an exact duplicate of itself, so most of the
partition (about 65% at 1M rows, 90% at 4M) would be dropped as duplicates and the clean frame would stay near 350k
rows whatever the size. With it, rows are exact duplicates only where the source itself repeats a line inside an
invoice (2,848 of the 370,931 source lines, about 0.8%, all within one invoice, so kept at their real share) or,
rarely, where two draws of one invoice land on the same second; the clean frame grows with the input as a real,
larger partition would. The file is written with the source header as
$SHOPFLOW_LANDING_DIR/orders/ds=YYYY-MM-DD/orders.csv in a temporary folder. With `--format parquet` the same rows
are converted, a block at a time, into `orders.parquet` (every column text, as the CSV holds it; row groups of 1Mi
rows; snappy), orders is declared with that file in a copy of the sources file (SHOPFLOW_SOURCES), and (a) is
`pandas.read_parquet` of it.

Each measurement runs in a fresh interpreter (subprocess of this script in a worker mode):
  (a) `pandas.read_csv(path)` of the landing file, defaults only: the baseline;
  (b) `shopflow.steps.partition.ingest`, `clean` and `validate` of the partition as it runs in production: a day
      bigger than SHOPFLOW_CHUNK_BYTES (64 MiB) streams through the steps a chunk (one Parquet row group) at a time;
  (c) the same with the whole day read at once (SHOPFLOW_CHUNK_BYTES and SHOPFLOW_MAX_EXPANDED_BYTES set above the
      file's size): how every day ran before chunking, measured in the same run up to --whole-max-rows (4M); its
      raw, clean and quarantine zones, ledger and validation summary are compared with (b)'s.
(b) and (c) get a fresh temp SHOPFLOW_HOME, a fresh SQLite store migrated with `shopflow.store.migrate.upgrade(url)`
(done by the parent, outside the measurement) and a pseudonym key from SHOPFLOW_PSEUDONYM_KEY.
Modules (pandas; shopflow.steps.partition, its validation runner and great_expectations) are imported before the clock
starts; the import time is printed separately. Peak RSS is the worker's VmHWM (/proc/self/status; not ru_maxrss,
which a spawned process inherits from its parent), nothing subtracted, also read after each step; an idle
interpreter that imported the same modules gives the baseline so that the increment is visible.

Process CPU seconds (all threads, `time.process_time`) are the measure of cost, the wall-clock seconds beside them
(best of --repeat).

Targets (printed with each number, never enforced): (b)/(a) CPU time <= 5; peak RSS of (b) <= 2 GiB at any size
(the 20M-row day is about 1.7 GB of CSV); time(20M)/time(1M) for (b) <= 22.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = Path(os.environ.get("SHOPFLOW_SOURCE_DATA", REPO.parent / "shared" / "data")) / "events" / (
    "online_retail_2010-12-01_to_2011-09-30.csv.gz"
)
HEADER = b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
RESULT_PREFIX = "BENCH_RESULT "
SEED = 20110510
TARGET_CPU_RATIO = 5.0  # (b)/(a) in CPU seconds
TARGET_PEAK_GIB = 2.0  # peak RSS of (b), whatever the day's size
TARGET_SCALING_PER_ROW = 22 / 20  # time(20M)/time(1M) <= 22
# What makes a run read the day whole (as before chunking): a chunk and a ceiling bigger than any day here.
WHOLE_DAY = {"SHOPFLOW_CHUNK_BYTES": str(2**40), "SHOPFLOW_MAX_EXPANDED_BYTES": str(2**40)}
# `,YYYY-MM-DD HH:MM:SS,` is the InvoiceDate field; checked below to occur exactly once per source line.
_INVOICE_DATE = re.compile(rb",\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},")
# The sampled rows' times of day: a random second in [07:00:00, 20:00:00) local time on the benchmark day.
DAY_START_S, DAY_END_S = 7 * 3600, 20 * 3600


# --------------------------------------------------------------------------------------------- landing data


def as_parquet(csv_path: Path) -> Path:
    """The CSV landing file converted to `orders.parquet` beside it (the CSV removed), every column text, streamed
    a block at a time so that the conversion holds one block."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    columns = HEADER.decode().split(",")
    path = csv_path.with_name("orders.parquet")
    reader = pacsv.open_csv(csv_path, read_options=pacsv.ReadOptions(block_size=64 << 20),
                            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                                                 strings_can_be_null=False))
    with pq.ParquetWriter(path, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch, row_group_size=1 << 20)
    csv_path.unlink()
    return path


def parquet_sources(root: Path) -> Path:
    """A copy of the default sources file with orders declared as one `orders.parquet` file."""
    import yaml

    sys.path.insert(0, str(REPO / "include"))
    from shopflow.sources import DEFAULT_SOURCES_FILE

    sources = yaml.safe_load(DEFAULT_SOURCES_FILE.read_text())
    sources["orders"]["files"][0] = {"name": "orders.parquet", "columns": sources["orders"]["files"][0]["columns"]}
    path = root / "sources-parquet.yaml"
    path.write_text(yaml.safe_dump(sources))
    return path


def load_source_lines(source: Path, ds: date) -> list[list[tuple[bytes, bytes]]]:
    """The source's data lines grouped into invoices (runs of consecutive lines with the same InvoiceNo field), each
    line split around its InvoiceDate time of day: (text up to and including `,YYYY-MM-DD ` with the date set to
    `ds`, text from the `,` after the time). Everything else is kept byte for byte."""
    data = gzip.decompress(source.read_bytes())
    lines = data.split(b"\n")
    if lines[0].lstrip(b"\xef\xbb\xbf").rstrip(b"\r") != HEADER:
        raise SystemExit(f"{source}: unexpected header {lines[0][:120]!r}")
    if lines[-1] == b"":
        lines.pop()
    day = b"," + ds.isoformat().encode() + b" "
    invoices: list[list[tuple[bytes, bytes]]] = []
    previous = None
    for number, line in enumerate(lines[1:], start=2):
        if line.count(b'"') % 2:
            raise SystemExit(f"{source}, line {number}: a quoted newline; line-wise resampling would split a record")
        found = list(_INVOICE_DATE.finditer(line))
        if len(found) != 1:
            raise SystemExit(f"{source}, line {number}: expected one InvoiceDate field, found {len(found)}: {line[:120]!r}")
        m = found[0]
        invoice_no = line.split(b",", 1)[0]
        if invoice_no != previous or not invoices:
            invoices.append([])
            previous = invoice_no
        invoices[-1].append((line[: m.start()] + day, line[m.end() - 1 :]))
    return invoices


def build_landing(invoices: list[list[tuple[bytes, bytes]]], rows: int, landing_dir: Path, ds: date) -> Path:
    """Draw invoices with replacement (fixed seed), one random second of [07:00, 20:00) per draw, until `rows` lines."""
    import numpy as np

    rng = np.random.default_rng(SEED + rows)
    clock = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}".encode() for s in range(DAY_END_S)]
    path = landing_dir / "orders" / f"ds={ds.isoformat()}" / "orders.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "wb") as handle:
        handle.write(HEADER + b"\n")
        while written < rows:
            picks = rng.integers(0, len(invoices), size=4096).tolist()
            seconds = rng.integers(DAY_START_S, DAY_END_S, size=4096).tolist()
            part = []
            for i, second in zip(picks, seconds):
                time_of_day = clock[second]
                part.extend(head + time_of_day + tail for head, tail in invoices[i][: rows - written - len(part)])
                if written + len(part) >= rows:
                    break
            handle.write(b"\n".join(part) + b"\n")
            written += len(part)
    return path


# ------------------------------------------------------------------------------------------------- workers


def _peak_rss_bytes() -> int:
    """This process's peak resident set: VmHWM, not ru_maxrss, which a spawned process inherits from its parent
    (the parent that converted a 20M-row day to Parquet holds about 2 GB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: KiB


def _import_a() -> float:
    started = time.perf_counter()
    import pandas  # noqa: F401

    return time.perf_counter() - started


def _import_b() -> float:
    started = time.perf_counter()
    import great_expectations  # noqa: F401
    import pandas  # noqa: F401
    import shopflow.steps.partition  # noqa: F401
    import shopflow.validation.runner  # noqa: F401

    return time.perf_counter() - started


class _StatementCounter:
    """Counts the SQL statements every engine of this process sends (the metadata store's round trips)."""

    def __init__(self):
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        self.count = 0
        event.listen(Engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args) -> None:
        self.count += 1

    def pop(self) -> int:
        count, self.count = self.count, 0
        return count


def worker(mode: str, args: dict) -> dict:
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    if mode == "idle_a":
        seconds = _import_a()
        return {"import_s": seconds, "peak_rss": _peak_rss_bytes()}
    if mode == "idle_b":
        seconds = _import_b()
        return {"import_s": seconds, "peak_rss": _peak_rss_bytes()}
    if mode == "read_csv":
        import_s = _import_a()
        import pandas as pd

        started, cpu = time.perf_counter(), time.process_time()
        frame = pd.read_parquet(args["path"]) if args["path"].endswith(".parquet") else pd.read_csv(args["path"])
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return {"import_s": import_s, "seconds": seconds, "cpu": cpu, "rows": len(frame), "peak_rss": _peak_rss_bytes(),
                "frame_memory": int(frame.memory_usage(deep=True).sum())}
    if mode == "pipeline":
        import_s = _import_b()
        from shopflow.common.parquet import read_parquet
        from shopflow.config.settings import Settings
        from shopflow.lake import zones as lake
        from shopflow.steps import partition as pipeline

        settings = Settings.from_env(args["env"])
        ds = date.fromisoformat(args["ds"])
        statements = _StatementCounter()
        steps, cpu_steps, round_trips, peaks = {}, {}, {}, {}
        started, cpu_started = time.perf_counter(), time.process_time()
        ingested = pipeline.ingest(settings, "orders", ds, run_id="bench")
        steps["ingest"], cpu_steps["ingest"] = time.perf_counter() - started, time.process_time() - cpu_started
        round_trips["ingest"] = statements.pop()
        peaks["ingest"] = _peak_rss_bytes()
        mark, cpu_mark = time.perf_counter(), time.process_time()
        cleaned = pipeline.clean(settings, "orders", ds, run_id="bench")
        steps["clean"], cpu_steps["clean"] = time.perf_counter() - mark, time.process_time() - cpu_mark
        round_trips["clean"] = statements.pop()
        peaks["clean"] = _peak_rss_bytes()
        mark, cpu_mark = time.perf_counter(), time.process_time()
        validated = pipeline.validate(settings, "orders", ds, run_id="bench")
        steps["validate"], cpu_steps["validate"] = time.perf_counter() - mark, time.process_time() - cpu_mark
        round_trips["validate"] = statements.pop()
        peaks["validate"] = _peak_rss_bytes()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        peak = _peak_rss_bytes()  # read before anything else is loaded in this process
        from shopflow.common.parquet import parquet_row_groups

        outputs = {zone: str(lake.lake_file(settings, zone, "orders", ds)) for zone in lake.ZONES}
        result = {"import_s": import_s, "seconds": seconds, "cpu": cpu, "steps": steps, "cpu_steps": cpu_steps,
                  "rows": ingested["rows_in"], "peak_rss": peak, "chunks": parquet_row_groups(outputs["raw"]),
                  "round_trips": round_trips, "peaks": peaks,
                  "ledger": {k: cleaned[k] for k in (
                      "rows_in", "rows_clean", "rows_quarantined", "rows_duplicate", "quarantined_by_reason")},
                  "validation": validated, "outputs": outputs}
        if args.get("measure_frames"):
            clean_frame = read_parquet(outputs["clean"])
            result.update(clean_frame_memory=int(clean_frame.memory_usage(deep=True).sum()), clean_rows=len(clean_frame))
        return result
    raise SystemExit(f"unknown worker mode {mode!r}")


def run_worker(mode: str, args: dict, timeout: float, environ: dict | None = None) -> dict:
    """Run `mode` in a fresh interpreter (with `environ` added to its environment) and return its result dict."""
    env = {**os.environ, "TQDM_DISABLE": "1", "GX_ANALYTICS_ENABLED": "False", **(environ or {})}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, json.dumps(args)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(REPO))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
    raise SystemExit(f"worker {mode} failed (exit {proc.returncode})")


# -------------------------------------------------------------------------------------------------- parent


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s"


def _verdict(value: float, target: float) -> str:
    return f"(target <= {target:g}: {'met' if value <= target else 'MISSED'})"


def best_of(repeat: int, measure, *args) -> dict:
    """The fastest of `repeat` measurements `measure(*args)`, with the highest peak RSS of them."""
    runs = [measure(*args) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "peak_rss": max(r["peak_rss"] for r in runs)}


def run_pipeline(root: Path, landing: Path, opts, rows: int, name: str, environ: dict, measure_frames: bool) -> dict:
    """Ingest, clean and validate the day in a fresh worker with a fresh home and store; `environ` (settings) is
    added to the worker's environment."""
    home, url = fresh_store(root, f"home-{rows}-{name}")
    env = {"SHOPFLOW_HOME": str(home), "SHOPFLOW_LANDING_DIR": str(landing),
           "SHOPFLOW_STORE_URL": url, "SHOPFLOW_PSEUDONYM_KEY": "bench-pseudonym-key-not-a-secret-32b",
           "SHOPFLOW_SOURCE_DATA": str(opts.source.parent.parent)}
    return run_worker("pipeline", {"env": env, "ds": opts.ds.isoformat(), "measure_frames": measure_frames},
                      opts.timeout, environ)


def same_outputs(b: dict, c: dict) -> dict[str, bool]:
    """Whether the two runs' raw, clean and quarantine zones hold the same rows (read back whole)."""
    from shopflow.common.parquet import read_parquet

    return {zone: read_parquet(b["outputs"][zone]).equals(read_parquet(c["outputs"][zone]))
            for zone in ("raw", "clean", "quarantine")}


def fresh_store(root: Path, name: str) -> tuple[Path, str]:
    from shopflow.store.migrate import upgrade

    home = root / name
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    url = f"sqlite:///{home / 'shopflow.db'}"
    upgrade(url)
    return home, url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000, 20_000_000])
    parser.add_argument("--whole-max-rows", type=int, default=4_000_000,
                        help="also run the whole-day read (the baseline, holding the day) up to this many rows")
    parser.add_argument("--repeat", type=int, default=1, help="take the best time of N runs of each measurement")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (landing + lake + stores)")
    parser.add_argument("--ds", type=date.fromisoformat, default=date(2011, 5, 10),
                        help="the trading day all rows are moved to (default 2011-05-10)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per worker process")
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv",
                        help="the landing file's format (parquet: the same rows converted, every column text)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.worker:
        result = worker(opts.worker[0], json.loads(opts.worker[1]))
        print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
        return 0

    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    bench_started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="shopflow-bench-"))
    print(f"shopflow pipeline benchmark  python {sys.version.split()[0]}  cpus={os.cpu_count()}  repeat={opts.repeat}")
    print(f"temp folder: {root}{' (kept)' if opts.keep else ''}")
    try:
        started = time.perf_counter()
        lines = load_source_lines(opts.source, opts.ds)
        print(f"source: {opts.source} ({sum(map(len, lines)):,} real lines in {len(lines):,} invoices; invoices "
              f"drawn with replacement, InvoiceDate moved to {opts.ds}, each draw at its own random second in "
              f"07:00-20:00) "
              f"in {time.perf_counter() - started:.1f}s")

        idle_a = run_worker("idle_a", {}, opts.timeout)
        idle_b = run_worker("idle_b", {}, opts.timeout)
        print(f"idle interpreter + pandas:                          peak RSS {_mib(idle_a['peak_rss'])} "
              f"(import {idle_a['import_s']:.2f}s)")
        print(f"idle interpreter + shopflow.steps.partition, runner, GX:   peak RSS {_mib(idle_b['peak_rss'])} "
              f"(import {idle_b['import_s']:.2f}s)")

        results = {}
        declared = {"SHOPFLOW_SOURCES": str(parquet_sources(root))} if opts.format == "parquet" else {}
        for rows in opts.rows:
            landing = root / f"landing-{rows}"
            started = time.perf_counter()
            path = build_landing(lines, rows, landing, opts.ds)
            if opts.format == "parquet":
                path = as_parquet(path)
            print(f"\n=== {rows:,} rows: {path} ({path.stat().st_size / 2**20:,.0f} MiB, "
                  f"built in {time.perf_counter() - started:.1f}s)")
            small = rows <= opts.whole_max_rows
            a = best_of(opts.repeat, run_worker, "read_csv", {"path": str(path)}, opts.timeout)
            b = best_of(opts.repeat, run_pipeline, root, landing, opts, rows, "streamed", declared, small)
            c = best_of(opts.repeat, run_pipeline, root, landing, opts, rows, "whole", {**WHOLE_DAY, **declared},
                        small) if small else None
            for r in (a, b, c):
                if r is not None and r["rows"] != rows:
                    raise SystemExit(f"row count mismatch: {r['rows']} rows, expected {rows}")
            results[rows] = (a, b, c)
            print(f"(a) pandas.read_{opts.format}:            {a['seconds']:7.2f}s  {_rate(rows, a['seconds']):>18}  "
                  f"cpu {a['cpu']:6.2f}s  peak RSS {_mib(a['peak_rss'])}")
            for name, r in (("(b) ingest + clean + validate, in chunks", b), ("(c) the same, the day whole (before)", c)):
                if r is None:
                    print(f"{name}: not run above --whole-max-rows {opts.whole_max_rows:,} (it holds the whole day)")
                    continue
                steps, cpu_steps = r["steps"], r["cpu_steps"]
                print(f"{name}: {r['seconds']:7.2f}s  {_rate(rows, r['seconds']):>18}  cpu {r['cpu']:6.2f}s  "
                      f"peak RSS {_mib(r['peak_rss'])} (+{_mib(r['peak_rss'] - idle_b['peak_rss'])} over idle)  "
                      f"{r['chunks']} chunk(s)")
                trips = r["round_trips"]
                print(f"    ingest {steps['ingest']:.2f}s | clean {steps['clean']:.2f}s | validate {steps['validate']:.2f}s"
                      f"   cpu: {cpu_steps['ingest']:.2f}s | {cpu_steps['clean']:.2f}s | {cpu_steps['validate']:.2f}s"
                      f"   store statements: {trips['ingest']} | {trips['clean']} | {trips['validate']}")
                peaks = r["peaks"]
                print(f"    peak RSS so far after ingest {_mib(peaks['ingest'])} | clean {_mib(peaks['clean'])} | "
                      f"validate {_mib(peaks['validate'])}")
            ledger = b["ledger"]
            print(f"    ledger (b): {ledger['rows_in']:,} in = {ledger['rows_clean']:,} clean + "
                  f"{ledger['rows_quarantined']:,} quarantined + {ledger['rows_duplicate']:,} duplicate; "
                  f"validation success={b['validation']['success']} "
                  f"({b['validation']['expectations']} expectations, {b['validation']['warning_failures']} warnings)")
            if c is not None:
                same = same_outputs(b, c)
                print(f"    (b) against (c): ledger {'equal' if b['ledger'] == c['ledger'] else 'DIFFERENT'}, "
                      f"validation {'equal' if b['validation'] == c['validation'] else 'DIFFERENT'}, "
                      + ", ".join(f"{zone} {'equal' if ok else 'DIFFERENT'}" for zone, ok in same.items()))
            cpu_ratio = b["cpu"] / a["cpu"]
            print(f"cpu-time ratio (b)/(a):             {cpu_ratio:7.2f}  {_verdict(cpu_ratio, TARGET_CPU_RATIO)}"
                  f"   [wall ratio {b['seconds'] / a['seconds']:.2f}]"
                  + (f"   [(c)/(a): cpu {c['cpu'] / a['cpu']:.2f}, wall {c['seconds'] / a['seconds']:.2f}]" if c else ""))
            met = "met" if b["peak_rss"] <= TARGET_PEAK_GIB * 2**30 else "MISSED"
            print(f"peak RSS (b):                       {_mib(b['peak_rss'])}  (target <= {TARGET_PEAK_GIB:g} GiB: {met})"
                  + (f"   [(c): {_mib(c['peak_rss'])}]" if c else ""))
            if "clean_frame_memory" in b:
                print(f"    context: clean frame {_mib(b['clean_frame_memory'])} ({b['clean_rows']:,} rows); "
                      f"peak (b) / clean frame {b['peak_rss'] / b['clean_frame_memory']:.2f}"
                      + (f", (c) {c['peak_rss'] / b['clean_frame_memory']:.2f}" if c else ""))
            if not opts.keep:
                shutil.rmtree(landing)

        sizes = sorted(results)
        if len(sizes) >= 2:
            small, big = sizes[0], sizes[-1]
            scale = results[big][1]["seconds"] / results[small][1]["seconds"]
            scale_cpu = results[big][1]["cpu"] / results[small][1]["cpu"]
            target = TARGET_SCALING_PER_ROW * big / small
            print(f"\nscaling (b) time({big:,})/time({small:,}): {scale:.2f}  {_verdict(scale, target)}"
                  f"   [cpu time: {scale_cpu:.2f}; (a): {results[big][0]['seconds'] / results[small][0]['seconds']:.2f}; "
                  f"linear would be {big / small:g}]")
            for step in ("ingest", "clean", "validate"):
                print(f"    {step:8s} {results[big][1]['steps'][step] / results[small][1]['steps'][step]:.2f}")
        print(f"\nwhole benchmark: {time.perf_counter() - bench_started:.0f}s")
    finally:
        if not opts.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
