"""Benchmark: every candidate of a training, side by side, on the grouped split and on the row split, in one run.

    .venv/bin/python bench/train.py [--device auto|cpu|cuda] [--cpu-budget S] [--gpu-epochs E] [--examples PATH]
                                    [--out DIR] [--rounds N]

It prints numbers and never asserts on them.

Data: the labelled examples of the real Flipkart catalogue (shopflow.model.training.data.labelled_examples; cleaned by the
library without Airflow or a store, see bench/train_loop.py `catalogue_examples`), or --examples PATH.parquet.
What runs: the production training job (`python -m shopflow.model.worker`, a fresh interpreter per job) twice:
  1. on the GROUPED split (`split`: listings with the same normalised title or product group id stay together),
     with an empty embedding cache (cold);
  2. on the ROW split (`row_split`: a hash of the product id, the split before groups), with the cache the first
     job filled (warm).
Then bench/label_noise.py on the same examples: the label-issue flags' precision and recall on injected noise (2% and
5% of the grouped test products' labels flipped), and the precision of 100 real flags checked by hand.
Each job trains the TF-IDF baseline, embeddings + LR, TF-IDF + embeddings, the fine-tune (CPU: the time budget
of TrainingConfig, default 60 s; CUDA: whole epochs) and the calibrated ensembles, and measures each on its test
split: macro-F1, accuracy, ECE, training seconds, inference rate, the job's peak RSS after that candidate, and the
paired group-bootstrap gain over TF-IDF with its 95% interval. Also printed: the proposal and why, the repair
threshold and its Clopper-Pearson bound, the embedding cache cold and warm, and each job's total seconds against
the 3-minute CPU target for a daily training.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
CPU_TARGET_SECONDS = 180


def _job(examples: Path, out: Path, cache: Path, split: str, args) -> dict:
    from shopflow.model.training.config import TrainingConfig

    config = TrainingConfig(device=args.device, cpu_time_budget_s=args.cpu_budget, bootstrap_rounds=args.rounds,
                            **({"gpu_epochs": args.gpu_epochs} if args.gpu_epochs else {}))
    out.mkdir(parents=True, exist_ok=True)
    job = {"examples": str(examples), "output_dir": str(out), "config": config.as_dict(), "split_column": split,
           "embedding_cache_dir": str(cache)}
    (out / "job.json").write_text(json.dumps(job, indent=2))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'include'}:{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "shopflow.model.worker", str(out / "job.json")], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"training job on {split} failed ({done.returncode})")
    result = json.loads((out / "result.json").read_text())
    result["wall_seconds"] = time.perf_counter() - started
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--cpu-budget", type=float, default=None, help="fine-tune seconds on CPU (default: config)")
    parser.add_argument("--gpu-epochs", type=int, default=None)
    parser.add_argument("--examples", type=Path, help="labelled examples parquet (default: the real catalogue)")
    parser.add_argument("--out", type=Path, help="where the two model directories go (default: a temporary folder)")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds")
    parser.add_argument("--noise-rates", type=float, nargs="+", default=[0.02, 0.05],
                        help="label noise injected into the grouped test products (bench/label_noise.py)")
    args = parser.parse_args(argv)
    if args.cpu_budget is None:
        from shopflow.model.training.config import TrainingConfig

        args.cpu_budget = TrainingConfig(base_model="").cpu_time_budget_s
    out = args.out or Path(tempfile.mkdtemp(prefix="shopflow-bench-train-"))
    out.mkdir(parents=True, exist_ok=True)
    examples_path = args.examples
    if examples_path is None:
        from train_loop import catalogue_examples, source_data_dir

        examples_path = out / "examples.parquet"
        catalogue_examples(source_data_dir(), 40).to_parquet(examples_path, index=False)
    cache = out / "embedding-cache"
    results = {split: _job(examples_path, out / split, cache, split, args) for split in ("split", "row_split")}
    grouped, rows = results["split"], results["row_split"]

    cv = (grouped.get("cross_validation") or {}).get("macro_f1", {})
    print(f"\n{'candidate':<38} {'grouped':>8} {'grouped':>8} {'grouped':>8} {'row':>7} {'acc':>6} {'ECE':>6} "
          f"{'train s':>8} {'infer/s':>8} {'RSS MiB':>8}  gain over TF-IDF, grouped (95% CI)")
    print(f"{'':<38} {'CV F1':>8} {'val F1':>8} {'test F1':>8} {'test F1':>7} {'(grp)':>6} {'(grp)':>6}")
    for name, row in grouped["candidates"].items():
        other = rows["candidates"].get(name, {}).get("test", {})
        boot = row.get("versus_baseline")
        gain = "baseline" if boot is None else f"{boot['gain']:+.4f} [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}]"
        cv_f1 = f"{cv[name]:8.4f}" if name in cv else f"{'-':>8}"
        print(f"{name[:38]:<38} {cv_f1} {row['validation_macro_f1']:8.4f} {row['test']['macro_f1']:8.4f} "
              f"{other.get('macro_f1', float('nan')):7.4f} {row['test']['accuracy']:6.3f} {row['test']['ece']:6.3f} "
              f"{row['train_seconds']:8.1f} {row['inference_per_second'] or 0:8.0f} {row['peak_rss_mib']:8.0f}  {gain}")
    for label, result in (("grouped", grouped), ("row", rows)):
        training = result["training"]
        threshold = result["repair_threshold"]
        print(f"\n{label} split: proposal {result['selected']} -- {result['selection_reason']}")
        print(f"  second level ({result['selected']}): macro-F1 {result['metrics']['l2']['macro_f1']:.4f} accuracy "
              f"{result['metrics']['l2']['accuracy']:.4f}")
        fit = threshold["validation"]
        print(f"  repair threshold {fit['threshold']}: validation precision "
              f"{fit['precision']} (Clopper-Pearson lower {fit['precision_lower_bound']:.4f}), "
              f"test precision {threshold['test']['precision']} (lower {threshold['test']['precision_lower_bound']:.4f}) "
              f"coverage {threshold['test']['coverage']}")
        refit = result.get("refit")
        print("  serving fit: " + (f"{', '.join(refit['members'])} refit on all {refit['products']:,} labelled products "
                                   f"({refit['held_out_products']:,} held out before) in {refit['seconds']}s; the "
                                   "figures above are the held-out ones" if refit else "none (served as selected)"))
        skipped = training.get("ensembles_skipped")
        if skipped:
            print(f"  {skipped['message']}")
        issues = result.get("label_issues")
        if issues:
            print(f"  label issues: {issues['found']:,} of {issues['products']:,} labelled products ({issues['recipe']}, "
                  f"out of fold)")
        print(f"  fine-tune: {training['steps']} steps on {training['device']}, {training['samples_per_second']:.1f} "
              f"samples/s; stages {training['stages_seconds']}")
        embeddings = result["embeddings"] or {}
        print(f"  embeddings: {embeddings.get('embedded')} through the encoder, {embeddings.get('cache_hits')} from the "
              f"cache in {embeddings.get('seconds')}s ({'cold' if label == 'grouped' else 'warm'} cache)")
        target = f" (CPU target {CPU_TARGET_SECONDS}s)" if training["device"] == "cpu" else ""
        print(f"  whole training job: {training['total_seconds']:.0f}s in the worker, {result['wall_seconds']:.0f}s "
              f"wall{target}; peak RSS {training['peak_rss_mib']:.0f} MiB; peak GPU "
              f"{training['peak_gpu_memory_bytes'] or 0:,} bytes")
    print(f"\nTF-IDF test macro-F1: grouped {grouped['baseline']['top']['macro_f1']:.4f}, row split "
          f"{rows['baseline']['top']['macro_f1']:.4f} (the row split puts listings of one product on both sides)")
    import label_noise
    import pandas as pd

    label_noise.print_figures(label_noise.noise_figures(pd.read_parquet(examples_path), args.noise_rates),
                              label_noise.hand_checked())
    print(f"model directories: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
