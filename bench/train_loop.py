"""Benchmark: the project's training loop against a plain transformers `Trainer`, same model, data, length and device.

    .venv/bin/python bench/train_loop.py [--device auto|cpu|cuda] [--steps N] [--epochs E] [--max-length 64]
                                    [--base-model DIR] [--examples PATH.parquet] [--out DIR]
    .venv/bin/python bench/train_loop.py --prepare-device DIR   # fp16 copy of the base model + labelled examples

It prints numbers and never asserts on them.

Model: all-MiniLM-L6-v2 (`shopflow.model.training.config.default_base_model()`, or --base-model DIR: any local Hugging Face
model directory; weights are always loaded as float32, so an fp16 copy trains with fp32 master weights).
Data: the labelled examples (`shopflow.model.training.data.labelled_examples`, rare classes -> 'other', hash split) of the
real Flipkart catalogue, cleaned here WITHOUT the Airflow/store machinery: the three landing files of
$SHOPFLOW_SOURCE_DATA/catalog (default ../shared/data) are read whole with `shopflow.common.parquet.read_delimited`, joined
with `shopflow.sources.catalog.combine` and cleaned with `shopflow.sources.cleaning.clean_partition(catalog, raw, 2015-12-03)`;
or --examples PATH.parquet of precomputed labelled examples. Both sides train on the train split, top-level labels.

Each side runs in its own fresh interpreter, one after the other (subprocesses of this script):
  (a) the project's loop, `shopflow.model.training.loop.train`, on the two-head `CategoryClassifier` (`model.build`) with
      the project's defaults (`TrainingConfig`): on CPU `cpu_batch_size` 32 for --steps steps (default 150, which
      keeps the whole CPU benchmark within ~6 minutes on 2 shared cores; the config's own `cpu_max_steps` may be
      larger) in fp32; on CUDA `gpu_batch_size` 128 for --epochs whole epochs (default: the config's
      `gpu_epochs`, 4) with bf16 autocast, TF32 and fused AdamW. This is the whole training run whose model is scored.
  (b) `transformers.Trainer` with DEFAULT TrainingArguments (per-device batch size 8, fp32, lr 5e-5, linear decay,
      default optimizer, no length grouping, single-process data loading) on a single-head
      AutoModelForSequenceClassification with the same top-level labels. What is set, and why:
        output_dir      a temporary folder (required)
        report_to       "none" (no experiment trackers)
        save_strategy   "no" (no checkpoint writes inside the timed run)
        max_steps       ceil(samples of (a) / 8): the same number of training samples as (a)
        disable_tqdm    True (no progress bar output; only removes work from (b))
        use_cpu         True, only when --device cpu (else Trainer would take a GPU that is there)
      Data: the same texts tokenized with truncation to the same max_length and no padding; the collator is
      `DataCollatorWithPadding(tokenizer, max_length=max_length)` with its default padding="longest", i.e. dynamic
      padding to the longest sequence of each batch (padding every batch to max_length would only slow (b) down).
Timing: (a) is `TrainStats.seconds` (first step to last, synchronised on CUDA); (b) is a callback's clock from
`on_train_begin` to `on_train_end` (synchronised on CUDA); Trainer's own `train_runtime`, which also counts its
set-up, is printed beside it. Neither side excludes warm-up steps. Tokens are real, non-pad tokens (the attention
mask's sum over the batches each side trained on). Peak memory: the peak RSS of each side's interpreter
(`ru_maxrss`, everything included); on CUDA also `torch.cuda.max_memory_allocated()` from just before training
(weights, gradients, optimizer state, activations). MFU on CUDA = 6 * parameters * tokens/s / peak dense bf16
FLOP/s (H100/H200 SXM: 989e12; --peak-flops to override), printed with all parameters and with the non-embedding
ones; it ignores attention's sequence-length term, so it is a rough figure for short sequences.
Quality: test macro-F1 (top level) of (a)'s model after its whole run (CPU: the bounded step budget; CUDA: whole
epochs -- printed which), of (b)'s model, and of the TF-IDF + logistic-regression baseline
(`shopflow.model.training.baseline`) trained on the same train split, all on the same test split.

Targets (printed, never enforced): samples/s (a)/(b) >= 1.3 on CPU, >= 2 on an H100.

The Trainer needs the `accelerate` package; where it is missing, (b) is reported as not run and (a), the F1 scores and
the baseline are still measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH_RESULT "
TRAINER_BATCH = 8  # TrainingArguments' default per_device_train_batch_size
# CPU: project-loop steps of the benchmark (both sides together stay within ~6 minutes on 2 shared cores; the
# project's own CPU budget, TrainingConfig.cpu_max_steps, may be larger: --steps to match it).
BENCH_CPU_STEPS = 150
TARGET_CPU, TARGET_GPU = 1.3, 2.0
PEAK_BF16 = {"H100": 989e12, "H200": 989e12}
CATALOG_FILES = {  # landing file name (sources.yaml) -> file in the sample data
    "flipkart_name_category_tree.csv": "flipkart_name_category_tree.csv.gz",
    "flipkart_prices_brand.csv": "flipkart_prices_brand.csv.gz",
    "flipkart_full_columns.csv": "flipkart_full_columns_first999.csv.gz",
}
FORBIDDEN = ("airflow", "great_expectations", "sqlalchemy")


def source_data_dir() -> Path:
    return Path(os.environ.get("SHOPFLOW_SOURCE_DATA", REPO.parent / "shared" / "data")).resolve()


def catalogue_examples(data_dir: Path, rare_class_min: int):
    """Labelled examples from the real Flipkart files, cleaned by the library without Airflow or a store."""
    from shopflow.ingest.readers import read_delimited
    from shopflow.model.training.data import labelled_examples
    from shopflow.sources import get_source
    from shopflow.sources.catalog import combine
    from shopflow.sources.cleaning import clean_partition

    spec = get_source("catalog")
    frames = {f.name: read_delimited(data_dir / "catalog" / CATALOG_FILES[f.name], f.columns, has_header=f.header,
                                     delimiter=f.delimiter) for f in spec.files}
    clean = clean_partition(spec, combine(frames), date(2015, 12, 3)).clean
    return labelled_examples(clean, rare_class_min)


# --------------------------------------------------------------------------------------------- workers


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _parts(job: dict):
    import pandas as pd

    examples = pd.read_parquet(job["examples"])
    top = sorted(examples["label_top"].unique())
    l2 = sorted(examples["label_l2"].unique())
    examples["y_top"] = examples["label_top"].map({n: i for i, n in enumerate(top)})
    examples["y_l2"] = examples["label_l2"].map({n: i for i, n in enumerate(l2)})
    parts = {s: examples[examples["split"] == s].reset_index(drop=True) for s in ("train", "test")}
    return parts, top, l2


def _device(job: dict):
    import torch

    if job["device"] == "cuda" or (job["device"] == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _params(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    return total, total - embeddings


def _macro_f1(labels, logits, names) -> float:
    from shopflow.model.training import metrics

    return metrics.classification_report(labels, metrics.softmax(logits), names)["macro_f1"]


def worker_project(job: dict) -> dict:
    import torch
    from shopflow.model.training import loop
    from shopflow.model.training import model as model_io
    from shopflow.model.training.config import TrainingConfig

    parts, top, l2 = _parts(job)
    device = _device(job)
    config = TrainingConfig(base_model=job["base_model"], max_length=job["max_length"], device=device.type,
                            cpu_max_steps=job["steps"], gpu_epochs=job["epochs"], log_every=job["log_every"])
    labels = model_io.LabelMap(top=top, l2=l2, max_length=config.max_length)
    classifier, tokenizer = model_io.build(config.base_model, labels)
    ids = {s: loop.tokenize(tokenizer, p["text"].tolist(), config.max_length) for s, p in parts.items()}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stats = loop.train(classifier, ids["train"], parts["train"]["y_top"].to_numpy(),
                       parts["train"]["y_l2"].to_numpy(), tokenizer.pad_token_id, config,
                       log=lambda m: print(m, flush=True), device=device)
    peak_gpu = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    test_top, _ = loop.predict_logits(classifier, ids["test"], tokenizer.pad_token_id, config.eval_batch_size, device)
    total, non_embedding = _params(classifier)
    return {
        "side": "project", "device": device.type, "batch_size": config.gpu_batch_size if device.type == "cuda"
        else config.cpu_batch_size, "steps": stats.steps, "samples": stats.samples, "tokens": stats.tokens,
        "seconds": stats.seconds, "first_loss": stats.first_loss, "final_loss": stats.final_loss,
        "params": total, "params_non_embedding": non_embedding, "peak_gpu_bytes": peak_gpu,
        "peak_rss_bytes": _peak_rss_bytes(),
        "test_macro_f1": _macro_f1(parts["test"]["y_top"].to_numpy(), test_top, top),
        "gpu_name": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "forbidden_modules": sorted({m.split(".")[0] for m in sys.modules} & set(FORBIDDEN)),
    }


def worker_trainer(job: dict) -> dict:
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    parts, top, _ = _parts(job)
    device = _device(job)
    cuda = device.type == "cuda"
    tokenizer = AutoTokenizer.from_pretrained(job["base_model"])
    model = AutoModelForSequenceClassification.from_pretrained(
        job["base_model"], num_labels=len(top), id2label=dict(enumerate(top)),
        label2id={n: i for i, n in enumerate(top)}, dtype=torch.float32)
    encoded = tokenizer(parts["train"]["text"].tolist(), truncation=True, max_length=job["max_length"])
    y = parts["train"]["y_top"].to_numpy()
    train = [{**{k: v[i] for k, v in encoded.items()}, "labels": int(y[i])} for i in range(len(y))]

    counted = {"samples": 0, "tokens": 0}
    pad = DataCollatorWithPadding(tokenizer, max_length=job["max_length"])

    def collate(features):
        batch = pad(features)
        counted["samples"] += len(features)
        counted["tokens"] += int(batch["attention_mask"].sum())
        return batch

    clock = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock["start"] = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            clock["end"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(output_dir=output_dir, report_to="none", save_strategy="no",
                                 max_steps=job["trainer_steps"], disable_tqdm=True,
                                 **({} if cuda else {"use_cpu": True}))  # CPU asked for on a machine with a GPU
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collate, callbacks=[Clock()])
        output = trainer.train()
        peak_gpu = torch.cuda.max_memory_allocated() if cuda else None

    # Test macro-F1 of (b)'s model (plain fp32 forward passes, batches sorted by length).
    model.eval()
    test = tokenizer(parts["test"]["text"].tolist(), truncation=True, max_length=job["max_length"])["input_ids"]
    order = sorted(range(len(test)), key=lambda i: len(test[i]))
    logits = np.zeros((len(test), len(top)), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), 256):
            rows = order[start:start + 256]
            batch = pad([{"input_ids": test[r]} for r in rows])
            out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
            logits[rows] = out.logits.float().cpu().numpy()
    total, non_embedding = _params(model)
    return {
        "side": "trainer", "device": device.type, "batch_size": args.per_device_train_batch_size,
        "steps": int(output.global_step), "samples": counted["samples"], "tokens": counted["tokens"],
        "seconds": clock["end"] - clock["start"], "train_runtime": output.metrics.get("train_runtime"),
        "final_loss": float(output.training_loss), "params": total, "params_non_embedding": non_embedding,
        "peak_gpu_bytes": peak_gpu, "peak_rss_bytes": _peak_rss_bytes(),
        "test_macro_f1": _macro_f1(parts["test"]["y_top"].to_numpy(), logits, top),
        "optim": str(args.optim), "learning_rate": args.learning_rate, "fp32": not (args.bf16 or args.fp16),
    }


def run_worker(mode: str, job: dict) -> dict | None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "include"),
                                                                               os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, json.dumps(job)]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(REPO))
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
        elif line.startswith(("training on", "step ")) and mode == "project":
            print(f"    {line}")
    if proc.returncode != 0 or result is None:
        print(f"  ({mode} worker failed, exit {proc.returncode}; last lines:)")
        for line in (proc.stdout + proc.stderr).strip().splitlines()[-15:]:
            print(f"    {line}")
        return None
    result["wall_seconds"] = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------------------------- device copy


def prepare_device(directory: Path, base_model: str, examples_path: Path | None, rare_class_min: int) -> None:
    """An fp16 copy of the base model (config, tokenizer, weights) and the labelled examples, to carry to a machine
    where neither the weights package nor the sample data is installed."""
    import pandas as pd
    import torch
    from transformers import AutoModel, AutoTokenizer

    model_dir = directory / "base_model"
    model_dir.mkdir(parents=True, exist_ok=True)
    AutoModel.from_pretrained(base_model, dtype=torch.float32).half().save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(base_model).save_pretrained(model_dir)
    examples = pd.read_parquet(examples_path) if examples_path else catalogue_examples(source_data_dir(), rare_class_min)
    examples.to_parquet(directory / "examples.parquet", index=False)
    print(f"wrote {model_dir} and {directory / 'examples.parquet'} ({len(examples):,} examples)")


# --------------------------------------------------------------------------------------------- report


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=None, help="CPU: steps of the project loop (its step budget)")
    parser.add_argument("--epochs", type=int, default=None, help="CUDA: whole epochs of the project loop")
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--base-model", default=None)
    parser.add_argument("--examples", type=Path, default=None, help="precomputed labelled examples (parquet)")
    parser.add_argument("--peak-flops", type=float, default=None, help="peak dense bf16 FLOP/s for the MFU")
    parser.add_argument("--skip-trainer", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers to this file")
    parser.add_argument("--prepare-device", type=Path, default=None, metavar="DIR")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "JOB"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        mode, job = args.worker[0], json.loads(args.worker[1])
        result = (worker_project if mode == "project" else worker_trainer)(job)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    from shopflow.model.training.config import TrainingConfig, default_base_model

    defaults = TrainingConfig.__dataclass_fields__
    base_model = args.base_model or default_base_model()
    if args.prepare_device:
        prepare_device(args.prepare_device, base_model, args.examples, defaults["rare_class_min"].default)
        return 0

    import pandas as pd

    started = time.perf_counter()
    if args.examples:
        examples = pd.read_parquet(args.examples)
        origin = str(args.examples)
    else:
        examples = catalogue_examples(source_data_dir(), defaults["rare_class_min"].default)
        origin = f"{source_data_dir()}/catalog, cleaned without the store"
    print(f"examples: {len(examples):,} from {origin} ({time.perf_counter() - started:.1f}s); "
          + ", ".join(f"{s} {n:,}" for s, n in examples["split"].value_counts().items())
          + f"; {examples['label_top'].nunique()} top-level classes")

    import torch

    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = "cuda" if cuda else "cpu"
    max_length = args.max_length or defaults["max_length"].default
    steps = args.steps or BENCH_CPU_STEPS
    epochs = args.epochs or defaults["gpu_epochs"].default
    print(f"device {device}" + ("" if cuda else  # (the parent never initialises CUDA; the workers name the GPU)
                                f" ({torch.get_num_threads()} torch threads, {len(os.sched_getaffinity(0))} of "
                                f"{os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())})")
          + f"; base model {base_model}; max_length {max_length}; torch {torch.__version__}")

    with tempfile.TemporaryDirectory(prefix="shopflow-bench-train-") as tmp:
        path = Path(tmp) / "examples.parquet"
        examples.to_parquet(path, index=False)
        job = {"examples": str(path), "base_model": base_model, "max_length": max_length, "device": device,
               "steps": steps, "epochs": epochs, "log_every": 50 if cuda else 25}
        print("(a) project loop (shopflow.model.training.loop.train) "
              + (f"{epochs} whole epochs" if cuda else f"CPU step budget {steps}") + " ...")
        a = run_worker("project", job)
        b = None
        if a and not args.skip_trainer:
            try:
                import accelerate  # noqa: F401  (Trainer needs it)
                have_accelerate = True
            except ImportError:
                have_accelerate = False
            if have_accelerate:
                job["trainer_steps"] = math.ceil(a["samples"] / TRAINER_BATCH)
                print(f"(b) transformers Trainer, default TrainingArguments, max_steps {job['trainer_steps']} "
                      f"x batch {TRAINER_BATCH} ...")
                b = run_worker("trainer", job)
            else:
                print("(b) transformers Trainer: NOT RUN -- the `accelerate` package, which Trainer requires, is not "
                      "installed in this environment")
        base = None
        if not args.skip_baseline:
            from shopflow.model.training import baseline, metrics

            top = sorted(examples["label_top"].unique())
            y = examples["label_top"].map({n: i for i, n in enumerate(top)})
            train, test = examples["split"] == "train", examples["split"] == "test"
            t0 = time.perf_counter()
            probabilities = baseline.train_and_predict(examples.loc[train, "text"].tolist(), y[train].to_numpy(),
                                                       examples.loc[test, "text"].tolist())
            base = {"test_macro_f1": metrics.classification_report(y[test].to_numpy(), probabilities, top)["macro_f1"],
                    "seconds": time.perf_counter() - t0}

    peak = args.peak_flops
    if cuda and peak is None and a and a.get("gpu_name"):
        peak = next((v for k, v in PEAK_BF16.items() if k in a["gpu_name"]), None)
    print()
    print(f"{'':<34} {'(a) project loop':>22} {'(b) Trainer defaults':>22}")

    def row(name, fn):
        cells = [fn(r) if r else "-" for r in (a, b)]
        print(f"{name:<34} {cells[0]:>22} {cells[1]:>22}")

    row("batch size x steps", lambda r: f"{r['batch_size']} x {r['steps']}")
    row("samples", lambda r: f"{r['samples']:,}")
    row("real (non-pad) tokens", lambda r: f"{r['tokens']:,}")
    row("training seconds", lambda r: f"{r['seconds']:.2f}")
    row("samples/s", lambda r: f"{r['samples'] / r['seconds']:,.1f}")
    row("tokens/s", lambda r: f"{r['tokens'] / r['seconds']:,.0f}")
    row("peak RSS of the interpreter", lambda r: _mib(r["peak_rss_bytes"]))
    if cuda:
        row("torch.cuda.max_memory_allocated", lambda r: _mib(r["peak_gpu_bytes"]))
        if peak:
            row("MFU, 6*N_all*tok/s / peak",
                lambda r: f"{6 * r['params'] * r['tokens'] / r['seconds'] / peak:.2%}")
            row("MFU, 6*N_non_embedding*tok/s",
                lambda r: f"{6 * r['params_non_embedding'] * r['tokens'] / r['seconds'] / peak:.2%}")
    row("parameters (all / non-embedding)", lambda r: f"{r['params'] / 1e6:.1f}M / {r['params_non_embedding'] / 1e6:.1f}M")
    row("loss first -> last", lambda r: f"{r.get('first_loss', float('nan')):.3f} -> {r['final_loss']:.3f}")
    row("test macro-F1 (top level)", lambda r: f"{r['test_macro_f1']:.4f}")
    row("interpreter wall seconds", lambda r: f"{r['wall_seconds']:.1f}")
    if b:
        print(f"(b) Trainer's own train_runtime (with its set-up): {b['train_runtime']:.2f}s; optimizer {b['optim']}, "
              f"lr {b['learning_rate']}, fp32 {b['fp32']}")
    if a and a.get("gpu_name"):
        print(f"GPU: {a['gpu_name']}")
    if a:
        print("(a) macro-F1 is after " + (f"{epochs} whole epochs on CUDA (the project's GPU setting)" if cuda else
                                          f"the benchmark's bounded CPU budget of {a['steps']} steps x "
                                          f"{a['batch_size']} (the project's CPU default: "
                                          f"{defaults['cpu_max_steps'].default} steps)"))
        if a.get("forbidden_modules"):
            print(f"WARNING: the training path imported {a['forbidden_modules']}")
    if base:
        print(f"TF-IDF + logistic regression baseline: test macro-F1 {base['test_macro_f1']:.4f} "
              f"(fit + predict {base['seconds']:.1f}s)")
    ratio = None
    if a and b:
        ratio = (a["samples"] / a["seconds"]) / (b["samples"] / b["seconds"])
        target = TARGET_GPU if cuda else TARGET_CPU
        print(f"throughput ratio (a)/(b): {ratio:.2f}x samples/s, "
              f"{(a['tokens'] / a['seconds']) / (b['tokens'] / b['seconds']):.2f}x tokens/s "
              f"(target >= {target} on {'an H100' if cuda else 'CPU'}: {'met' if ratio >= target else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps({"project": a, "trainer": b, "baseline": base, "ratio": ratio,
                                         "device": device, "max_length": max_length, "peak_flops": peak}, indent=2))
    return 0 if a else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
