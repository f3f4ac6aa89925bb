"""Benchmark: the daily training job's time at catalogue scale, against its CPU targets, cold and warm embedding cache.

    .venv/bin/python bench/train_scale.py [--sizes real,50000] [--runs cold,warm] [--out DIR] [--include DIR]
                                          [--compare SUMMARY.json] [--rounds N]

It prints numbers and never asserts on them.

Data:
  real   the labelled examples of the real Flipkart catalogue (~15.8k of ~16k products; bench/train_loop.py
         `catalogue_examples(source_data_dir(), 40)`, the data in $SHOPFLOW_SOURCE_DATA, default ../shared/data).
  N      (e.g. 50000) a synthetic catalogue of N labelled products made from the real ones (`synthetic`): every real
         example once, as it is, plus perturbed copies of real examples until there are N. A copy keeps its
         original's labels and product group (so the grouped split keeps near-copies of one product together, on the
         original's side) and gets a new uniq_id (md5 of "<uniq_id>:<copy>", so the row split is redrawn). Its
         title (the text before " | ") is changed by 1-2 light, deterministic edits drawn from a seeded hash of
         (uniq_id, copy): drop a word (titles of 3+ words), swap two neighbouring words, or append a size token
         ("Size M", "XL", "500 ml", ...) or a colour ("Black", "Navy Blue", ...). Which originals get a 2nd or 3rd
         copy is decided by the same hash, so the catalogue is the same on every run.
What runs: per catalogue, the production training job (`python -m shopflow.model.worker JOB.json`, a fresh
interpreter, TrainingConfig defaults, grouped split) twice: with an empty embedding cache (cold), then with the cache
the first run filled (warm). Printed per run: the worker's stages (result.json `training.stages_seconds`) and total
seconds, the wall clock, the job's peak RSS, fine-tune steps, whether the fine-tune ensembles were skipped, the
proposal's and the TF-IDF baseline's grouped test macro-F1, and the ratio of the total to the target (a 2-core CPU:
180 s for the ~16k real catalogue, 480 s for 50k). --include DIR runs the job on another copy of the library (e.g. a
snapshot of include/ before a change); --compare prints a previous run's summary.json beside this one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
TARGETS = {"real": 180.0, "50000": 480.0}  # seconds on an idle 2-core machine
SIZES = ("S", "M", "L", "XL", "XXL", "Size M", "Size L", "Free Size", "500 ml", "1 L", "Pack of 2", "32 GB")
COLOURS = ("Black", "White", "Red", "Blue", "Navy Blue", "Green", "Grey", "Pink", "Brown", "Multicolor")


def _draws(key: str) -> list[int]:
    digest = hashlib.sha256(key.encode()).digest()
    return list(digest)


def perturb(text: str, key: str) -> str:
    """1-2 light edits of the title part of `text` (before ' | '), decided by a hash of `key`."""
    title, sep, rest = text.partition(" | ")
    words = title.split()
    draws = _draws(key)
    edits = 1 + draws[0] % 2
    for e in range(edits):
        kind, a, b = draws[1 + 3 * e] % 4, draws[2 + 3 * e], draws[3 + 3 * e]
        if kind == 0 and len(words) >= 3:
            del words[1 + a % (len(words) - 1)]  # never the first word (often the brand)
        elif kind == 1 and len(words) >= 2:
            i = a % (len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif kind == 2:
            words.append(SIZES[b % len(SIZES)])
        else:
            words.append(COLOURS[b % len(COLOURS)])
    return " ".join(words) + sep + rest


def synthetic(real, size: int):
    """`size` labelled examples: the real ones plus perturbed copies (see the module docstring)."""
    import pandas as pd

    from shopflow.model.training.data import split_of

    copies, k = [], 1
    while len(real) + sum(len(c) for c in copies) < size:
        need = size - len(real) - sum(len(c) for c in copies)
        copy = real.copy()
        copy["_order"] = [hashlib.sha256(f"order:{u}:{k}".encode()).hexdigest() for u in copy["uniq_id"]]
        copy = copy.sort_values("_order").head(need).drop(columns="_order")
        copy["text"] = [perturb(t, f"{u}:{k}") for t, u in zip(copy["text"], copy["uniq_id"])]
        copy["uniq_id"] = [hashlib.md5(f"{u}:{k}".encode()).hexdigest() for u in copy["uniq_id"]]
        copy["row_split"] = [split_of(u) for u in copy["uniq_id"]]
        if "gold" in copy:
            copy["gold"] = False
        copies.append(copy)
        k += 1
    out = pd.concat([real, *copies], ignore_index=True)
    out["text"] = out["text"].astype(real["text"].dtype)
    return out


def _job(examples: Path, out: Path, cache: Path, args) -> dict:
    from shopflow.model.training.config import TrainingConfig

    config = TrainingConfig(bootstrap_rounds=args.rounds)
    out.mkdir(parents=True, exist_ok=True)
    job = {"examples": str(examples), "output_dir": str(out), "config": config.as_dict(), "split_column": "split",
           "embedding_cache_dir": str(cache)}
    (out / "job.json").write_text(json.dumps(job, indent=2))
    include = str(args.include or REPO / "include")
    env = {**os.environ, "PYTHONPATH": f"{include}:{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    with open(out / "worker.log", "w") as log:
        done = subprocess.run([sys.executable, "-m", "shopflow.model.worker", str(out / "job.json")], env=env,
                              stdout=log, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write((out / "worker.log").read_text()[-4000:])
        raise SystemExit(f"training job in {out} failed ({done.returncode})")
    result = json.loads((out / "result.json").read_text())
    return {"wall_seconds": round(wall, 1), "total_seconds": result["training"]["total_seconds"],
            "stages_seconds": result["training"]["stages_seconds"],
            "peak_rss_mib": result["training"]["peak_rss_mib"],
            "children_max_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "steps": result["training"]["steps"], "selected": result["selected"],
            "proposal_test_macro_f1": result["metrics"]["top"]["macro_f1"],
            "tfidf_test_macro_f1": result["baseline"]["top"]["macro_f1"],
            "finetune_validation_macro_f1": result["candidates"].get("finetune", {}).get("validation_macro_f1"),
            "cv_macro_f1": (result.get("cross_validation") or {}).get("macro_f1"),
            "ensembles_skipped": result["training"].get("ensembles_skipped"),
            "products": sum(result["split_sizes"].values()),
            "embeddings": result.get("embeddings")}


def _print(label: str, row: dict, target: float, before: dict | None) -> None:
    stages = ", ".join(f"{k} {v:.1f}" for k, v in row["stages_seconds"].items())
    print(f"{label:<14} total {row['total_seconds']:7.1f}s wall {row['wall_seconds']:7.1f}s "
          f"({row['total_seconds'] / target:.2f}x of the {target:.0f}s target) peak RSS {row['peak_rss_mib']:.0f} MiB; "
          f"{row['steps']} fine-tune steps")
    print(f"{'':<14} stages: {stages}")
    print(f"{'':<14} proposal {row['selected']}: grouped test macro-F1 {row['proposal_test_macro_f1']:.4f}; "
          f"tfidf {row['tfidf_test_macro_f1']:.4f}; fine-tune validation {row['finetune_validation_macro_f1']}"
          + (f"; ensembles skipped: {row['ensembles_skipped']['reason']}" if row.get("ensembles_skipped") else ""))
    if row.get("cv_macro_f1"):
        print(f"{'':<14} cross-validated macro-F1: "
              + ", ".join(f"{k} {v:.4f}" for k, v in row["cv_macro_f1"].items()))
    if before:
        print(f"{'':<14} before: total {before['total_seconds']:.1f}s wall {before['wall_seconds']:.1f}s, stages "
              + ", ".join(f"{k} {v:.1f}" for k, v in before["stages_seconds"].items())
              + f"; proposal {before['selected']} {before['proposal_test_macro_f1']:.4f}, tfidf "
              f"{before['tfidf_test_macro_f1']:.4f} -> speed-up {before['total_seconds'] / row['total_seconds']:.2f}x")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="real,50000", help="comma-separated: real and/or a product count")
    parser.add_argument("--runs", default="cold,warm", help="cold and/or warm (warm needs a cold run first)")
    parser.add_argument("--out", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--include", type=Path, help="the library to run the job with (default: this repo's)")
    parser.add_argument("--compare", type=Path, help="a previous run's summary.json, printed beside")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.include or REPO / "include"))
    from train_loop import catalogue_examples, source_data_dir

    out = args.out or Path(tempfile.mkdtemp(prefix="shopflow-bench-scale-"))
    out.mkdir(parents=True, exist_ok=True)
    real = catalogue_examples(source_data_dir(), 40)
    before = json.loads(args.compare.read_text()) if args.compare else {}
    summary: dict[str, dict] = {}
    for size in args.sizes.split(","):
        frame = real if size == "real" else synthetic(real, int(size))
        path = out / f"examples-{size}.parquet"
        frame.to_parquet(path, index=False)
        cache = out / f"embedding-cache-{size}"
        print(f"\n{size}: {len(frame):,} labelled products, {frame['group'].nunique():,} groups "
              f"(split: {frame['split'].value_counts().to_dict()})", flush=True)
        for run in args.runs.split(","):
            if run == "cold":
                import shutil

                shutil.rmtree(cache, ignore_errors=True)
            key = f"{size}/{run}"
            summary[key] = _job(path, out / size / run, cache, args)
            _print(f"{size} {run}", summary[key], TARGETS.get(size, 480.0), before.get(key))
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nsummary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
