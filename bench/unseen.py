"""Benchmark: the served champion against a plain TF-IDF on products the whole training never saw.

    .venv/bin/python bench/unseen.py [--examples PATH] [--unseen-percent 20] [--out DIR] [--cpu-budget S]

It prints numbers and never asserts on them.

The issue's question: a new user's catalogue grows by products nobody trained on; is the model shopflow serves (the
proposal, refit on every labelled product) ever below a TF-IDF + logistic regression (word 1-2-grams + character 3-5
grams, C=10) fitted on the same labelled products? The answer needs products outside the training altogether, not
its test split (which the refit learns from):
  1. the real catalogue's labelled examples (as bench/train.py), cut by product GROUP (a hash with its own salt, so
     near-identical listings stay on one side) into the shop's catalogue and `--unseen-percent` of unseen products;
  2. the production training job (`shopflow.model.training.runner.run_training`, the worker the DAG runs: every
     candidate, cross-validation, selection, the serving refit) on the shop's catalogue alone;
  3. the same catalogue's plain TF-IDF fitted on all its labelled products, and on its train split only (what served
     before the refit);
  4. all of them predict the unseen products: macro-F1 and accuracy, and the champion's paired group-bootstrap gain
     over the plain TF-IDF with its 95% interval.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))


def unseen_mask(groups, percent: int):
    import numpy as np

    return np.array([int(hashlib.sha256(f"unseen:{g}".encode()).hexdigest()[:8], 16) % 100 < percent
                     for g in groups])


def main(argv: list[str]) -> int:
    import numpy as np
    import pandas as pd

    from shopflow.model.inference import Predictor
    from shopflow.model.training import candidates, selection
    from shopflow.model.training.config import TrainingConfig
    from shopflow.model.training.runner import run_training

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=Path, help="labelled examples parquet (default: the real catalogue)")
    parser.add_argument("--unseen-percent", type=int, default=20)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cpu-budget", type=float, default=None, help="fine-tune seconds on CPU (default: config)")
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="shopflow-bench-unseen-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.examples:
        examples = pd.read_parquet(args.examples)
    else:
        from train_loop import catalogue_examples, source_data_dir

        examples = catalogue_examples(source_data_dir(), 40)
    groups = (examples["group"] if "group" in examples else examples["uniq_id"]).astype(str).to_numpy()
    hidden = unseen_mask(groups, args.unseen_percent)
    shop, unseen = examples[~hidden].reset_index(drop=True), examples[hidden].reset_index(drop=True)
    print(f"{len(examples):,} labelled products: {len(shop):,} in the shop's catalogue, {len(unseen):,} unseen "
          f"({args.unseen_percent}% of the product groups)")

    config = TrainingConfig(**({"cpu_time_budget_s": args.cpu_budget} if args.cpu_budget is not None else {}))
    started = time.perf_counter()
    result = run_training(shop, out / "model", config, log=lambda line: None,
                          embedding_cache_dir=out / "embedding-cache")
    trained = time.perf_counter() - started
    predictor = Predictor(out / "model", device="cpu", embedding_cache_dir=out / "embedding-cache")
    labels = list(predictor.labels)
    index = {name: i for i, name in enumerate(labels)}
    fold_in = predictor.fold_in.get("top")
    truth = unseen["label_top"].map(lambda name: index.get(name, index.get(fold_in, -1))).to_numpy()
    texts = unseen["text"].tolist()
    answers = predictor.predict(texts)
    served = np.array([index.get(fold_in, -1) if pd.isna(name) else index[name] for name in answers["label"]])

    y_shop = shop["label_top"].map(index).to_numpy()
    plain_all = candidates.fit_linear(candidates.BASELINE, len(labels), shop["text"].tolist(), None, y_shop)
    train = (shop["split"] == "train").to_numpy()
    plain_train = candidates.fit_linear(candidates.BASELINE, len(labels), shop.loc[train, "text"].tolist(), None,
                                        y_shop[train])
    rows = {"served champion (" + result["selected"] + (", refit" if result.get("refit") else "") + ")": served,
            "plain TF-IDF, every labelled product": plain_all.logits(texts, None).argmax(1),
            "plain TF-IDF, train split only": plain_train.logits(texts, None).argmax(1)}
    unseen_groups = groups[hidden]
    print(f"\ntraining job: {trained:.0f}s; proposal {result['selected']} -- {result['selection_reason']}")
    print(f"\n{'on the ' + format(len(unseen), ',') + ' unseen products':<48} {'macro-F1':>9} {'accuracy':>9}  "
          "gain of the champion (95% CI)")
    champion = next(iter(rows.values()))
    for name, predicted in rows.items():
        f1 = selection.macro_f1(truth, predicted, len(labels))
        accuracy = float((truth == predicted).mean())
        if predicted is champion:
            gain = ""
        else:
            boot = selection.paired_bootstrap(truth, champion, predicted, unseen_groups, len(labels),
                                              rounds=args.rounds)
            gain = f"{boot['gain']:+.4f} [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}]"
        print(f"{name:<48} {f1:9.4f} {accuracy:9.4f}  {gain}")
    print(f"model directory: {out / 'model'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
