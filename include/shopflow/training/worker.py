"""Training job entry point, run in a fresh interpreter: `python -m shopflow.training.worker JOB.json`.

Reads the labelled examples, fine-tunes the classifier, fits the calibration on the validation split, evaluates the
model and the TF-IDF baseline on the test split, saves the model directory and writes `result.json` beside it.
Progress goes to stdout, one line at a time, for the parent to relay into the task log.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def log(message: str) -> None:
    print(message, flush=True)


def run(job: dict) -> dict:
    import pandas as pd
    import torch

    from shopflow.training import baseline, loop, metrics, model as model_io
    from shopflow.training.config import TrainingConfig

    config = TrainingConfig.from_dict(job["config"])
    output = Path(job["output_dir"])
    examples = pd.read_parquet(job["examples"])
    labels = model_io.LabelMap(top=sorted(examples["label_top"].unique()), l2=sorted(examples["label_l2"].unique()),
                               max_length=config.max_length)
    top_id = {name: i for i, name in enumerate(labels.top)}
    l2_id = {name: i for i, name in enumerate(labels.l2)}
    examples["y_top"] = examples["label_top"].map(top_id)
    examples["y_l2"] = examples["label_l2"].map(l2_id)
    parts = {name: examples[examples["split"] == name].reset_index(drop=True) for name in ("train", "validation", "test")}
    log("examples: " + ", ".join(f"{k} {len(v):,}" for k, v in parts.items())
        + f"; {len(labels.top)} top-level classes, {len(labels.l2)} second-level classes")

    device = loop.pick_device(config)
    torch.manual_seed(config.seed)  # the new heads' initialisation, so a rerun trains the same model
    classifier, tokenizer = model_io.build(config.base_model, labels)
    pad_id = tokenizer.pad_token_id
    ids = {name: loop.tokenize(tokenizer, part["text"].tolist(), config.max_length) for name, part in parts.items()}
    stats = loop.train(classifier, ids["train"], parts["train"]["y_top"].to_numpy(), parts["train"]["y_l2"].to_numpy(),
                       pad_id, config, log=log, device=device)
    peak_memory = torch.cuda.max_memory_allocated() if device.type == "cuda" else None

    val_top, val_l2 = loop.predict_logits(classifier, ids["validation"], pad_id, config.eval_batch_size, device)
    labels.temperature_top = metrics.fit_temperature(val_top, parts["validation"]["y_top"].to_numpy())
    labels.temperature_l2 = metrics.fit_temperature(val_l2, parts["validation"]["y_l2"].to_numpy())
    started = time.perf_counter()
    test_top, test_l2 = loop.predict_logits(classifier, ids["test"], pad_id, config.eval_batch_size, device)
    inference_seconds = time.perf_counter() - started
    report_top = metrics.classification_report(parts["test"]["y_top"].to_numpy(),
                                               metrics.softmax(test_top, labels.temperature_top), labels.top)
    report_l2 = metrics.classification_report(parts["test"]["y_l2"].to_numpy(),
                                              metrics.softmax(test_l2, labels.temperature_l2), labels.l2)
    report_l2.pop("confusion_matrix")  # dozens of classes: the per-class table is what a reader uses
    base = metrics.classification_report(
        parts["test"]["y_top"].to_numpy(),
        baseline.train_and_predict(parts["train"]["text"].tolist(), parts["train"]["y_top"].to_numpy(),
                                   parts["test"]["text"].tolist(), seed=config.seed),
        labels.top)
    log("evaluation on the test split (top level):\n" + metrics.format_table(report_top, base))
    log(f"second level: accuracy {report_l2['accuracy']:.4f} macro-F1 {report_l2['macro_f1']:.4f}")

    model_io.save(classifier.cpu(), tokenizer, labels, output)
    result = {
        "metrics": {"top": report_top, "l2": report_l2},
        "baseline": {"top": base},
        "training": {**stats.__dict__, "samples_per_second": stats.samples_per_second,
                     "tokens_per_second": stats.tokens / stats.seconds if stats.seconds else 0.0,
                     "peak_gpu_memory_bytes": peak_memory,
                     "test_inference_samples_per_second": len(ids["test"]) / inference_seconds if inference_seconds else None},
        "labels": {"top": labels.top, "l2": labels.l2, "temperature_top": labels.temperature_top,
                   "temperature_l2": labels.temperature_l2},
        "split_sizes": {k: len(v) for k, v in parts.items()},
        "config": config.as_dict(),
        "artifact_path": str(output),
    }
    (output / "result.json").write_text(json.dumps(result, indent=2, default=str))
    log(f"saved model to {output}")
    return result


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    run(job)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
