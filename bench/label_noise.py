"""Benchmark: how well the label-issue flags find wrong categories (shopflow.model.training.label_issues).

    .venv/bin/python bench/label_noise.py [--examples PATH] [--rates 0.02 0.05] [--folds 3] [--recipe tfidf]
                                          [--write-sample N CSV]

It prints numbers and never asserts on them. bench/train.py runs it after its training jobs.

Data: the labelled examples of the real Flipkart catalogue (as bench/train.py), or --examples PATH.parquet.
What runs, for the real labels and then for each noise rate:
  1. grouped K-fold out-of-fold probabilities of the recipe over every labelled product (the folds of the training's
     cross-validation: listings of one product never on both sides), and confident learning on them, as the
     training does;
  2. noise: `rate` of the grouped TEST products (the fold-in class neither flipped nor flipped to: it names no
     category) get a uniformly random other class; precision = flipped among the test products' flags, recall =
     flipped products flagged. Real catalogues have real label errors, which the flags find too and which count
     against precision here, so the precision net of the flags already raised on the real labels is printed beside.
Also printed: the precision of the real flags checked by hand (tests/data/label_issues_checked.csv; made with
--write-sample: a seeded random sample of the real labels' flags, then read one by one).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
CHECKED = REPO / "tests" / "data" / "label_issues_checked.csv"
SEED = 20


def _arrays(examples):
    import numpy as np

    names = sorted(examples["label_top"].unique())
    index = {name: i for i, name in enumerate(names)}
    y = examples["label_top"].map(index).to_numpy()
    groups = (examples["group"] if "group" in examples else examples["uniq_id"]).astype(str).to_numpy()
    folded = examples["top_folded"].to_numpy(dtype=bool) if "top_folded" in examples else np.zeros(len(y), bool)
    fold_in = str(examples.loc[folded, "label_top"].iloc[0]) if folded.any() else None
    return names, y, groups, fold_in


def flags(examples, y, names, groups, fold_in, folds: int, recipe: str):
    """The label issues of `examples` labelled `y` (and the seconds it took)."""
    import numpy as np

    from shopflow.model.training import candidates, label_issues, selection

    started = time.perf_counter()
    fold_of = np.array([selection.fold_of(str(g), folds) for g in groups])
    probabilities = candidates.cross_validated_probabilities((recipe,), len(names), examples["text"].tolist(), None,
                                                             y, fold_of)[recipe]
    found = label_issues.find_label_issues(examples["uniq_id"].astype(str).tolist(), y, probabilities, names,
                                           fold_in=fold_in)
    return found, time.perf_counter() - started


def noise_figures(examples, rates: list[float], folds: int = 3, recipe: str = "tfidf", seed: int = SEED) -> dict:
    """Flags on the real labels, then precision and recall on each injected noise rate (see the module docstring)."""
    import numpy as np

    names, y, groups, fold_in = _arrays(examples)
    real, seconds = flags(examples, y, names, groups, fold_in, folds, recipe)
    real_issue = real.rows["issue"].to_numpy(dtype=bool)
    test = examples["split"].to_numpy() == "test"
    figures = {"products": len(y), "test_products": int(test.sum()), "classes": len(names), "recipe": recipe,
               "folds": folds, "real": {"flags": int(real_issue.sum()), "test_flags": int((real_issue & test).sum()),
                                        "seconds": round(seconds, 1), "pairs": real.pairs(5)}, "noise": {}}
    rng = np.random.default_rng(seed)
    fold_in_index = names.index(fold_in) if fold_in in names else -1
    targets = [k for k in range(len(names)) if k != fold_in_index]
    for rate in rates:
        eligible = np.flatnonzero(test & (y != fold_in_index))
        flipped = rng.choice(eligible, size=max(1, round(rate * test.sum())), replace=False)
        noisy = y.copy()
        for i in flipped:
            noisy[i] = rng.choice([k for k in targets if k != y[i]])
        found, seconds = flags(examples, noisy, names, groups, fold_in, folds, recipe)
        issue = found.rows["issue"].to_numpy(dtype=bool)
        is_flipped = np.zeros(len(y), dtype=bool)
        is_flipped[flipped] = True
        raised = issue & test
        hits = raised & is_flipped
        new = raised & ~real_issue
        figures["noise"][rate] = {
            "flipped": int(is_flipped.sum()), "test_flags": int(raised.sum()), "found": int(hits.sum()),
            "precision": hits.sum() / raised.sum() if raised.sum() else None,
            "recall": hits.sum() / is_flipped.sum(),
            "net_precision": (hits & new).sum() / new.sum() if new.sum() else None,
            "suggested_right": float((found.rows["suggested"].to_numpy()[hits]
                                      == np.asarray(names, dtype=object)[y[hits]]).mean()) if hits.any() else None,
            "seconds": round(seconds, 1)}
    return {**figures, "real_rows": real.rows}


def hand_checked(path: Path = CHECKED) -> dict | None:
    """Precision of the real flags read by hand: `verdict` wrong_given (the suggestion is right), wrong_both (the
    given category is wrong, the suggestion too), ambiguous (both defensible), right_given (a false flag)."""
    import pandas as pd

    if not path.is_file():
        return None
    checked = pd.read_csv(path, dtype=str)
    counts = checked["verdict"].value_counts().to_dict()
    n = len(checked)
    errors = counts.get("wrong_given", 0) + counts.get("wrong_both", 0)
    return {"n": n, "counts": counts, "precision": errors / n if n else None,
            "precision_counting_ambiguous": (errors + counts.get("ambiguous", 0)) / n if n else None,
            "suggestion_right": counts.get("wrong_given", 0) / n if n else None}


def print_figures(figures: dict, checked: dict | None) -> None:
    print(f"\nlabel issues ({figures['recipe']}, {figures['folds']}-fold grouped out-of-fold probabilities, confident "
          f"learning): {figures['products']:,} labelled products, {figures['classes']} classes")
    real = figures["real"]
    print(f"  real labels: {real['flags']:,} flags ({real['flags'] / figures['products']:.2%} of the products; "
          f"{real['test_flags']} among the {figures['test_products']:,} grouped test products) in {real['seconds']}s")
    print("  most frequent pairs (given -> suggested): " + "; ".join(
        f"{p['given']} -> {p['suggested']} {p['products']}" for p in real["pairs"]))
    print(f"  {'noise':>6} {'flipped':>8} {'flags':>6} {'found':>6} {'precision':>10} {'recall':>7} "
          f"{'net prec.':>10} {'suggestion right':>17}")
    for rate, row in figures["noise"].items():
        precision = "n/a" if row["precision"] is None else f"{row['precision']:.3f}"
        net = "n/a" if row["net_precision"] is None else f"{row['net_precision']:.3f}"
        right = "n/a" if row["suggested_right"] is None else f"{row['suggested_right']:.3f}"
        print(f"  {rate:>6.0%} {row['flipped']:>8} {row['test_flags']:>6} {row['found']:>6} {precision:>10} "
              f"{row['recall']:>7.3f} {net:>10} {right:>17}")
    if checked:
        print(f"  {checked['n']} real flags checked by hand ({CHECKED.relative_to(REPO)}): precision "
              f"{checked['precision']:.2f} (given category wrong), {checked['precision_counting_ambiguous']:.2f} "
              f"counting the ambiguous ones; the suggestion is the right category for {checked['suggestion_right']:.2f}"
              f"; {checked['counts']}")


def write_sample(examples, rows, n: int, path: Path, seed: int = SEED) -> None:
    """A seeded random sample of `n` real flags with what a reader needs, for reading by hand."""
    flagged = rows[rows["issue"]].merge(examples[["uniq_id", "text"]].astype({"uniq_id": str}), on="uniq_id")
    sample = flagged.sample(n=min(n, len(flagged)), random_state=seed).sort_values("label_quality")
    sample = sample.assign(verdict="", why="")[["uniq_id", "text", "given", "suggested", "label_quality",
                                                 "suggested_probability", "verdict", "why"]]
    sample["label_quality"] = sample["label_quality"].round(4)
    sample["suggested_probability"] = sample["suggested_probability"].round(4)
    sample.to_csv(path, index=False)
    print(f"wrote {len(sample)} flags to {path}")


def main(argv: list[str]) -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=Path, help="labelled examples parquet (default: the real catalogue)")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.02, 0.05])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--recipe", default="tfidf", choices=["tfidf"],
                        help="the linear recipe (the embedding recipes need the encoder's vectors: bench/train.py)")
    parser.add_argument("--write-sample", nargs=2, metavar=("N", "CSV"))
    args = parser.parse_args(argv)
    if args.examples:
        examples = pd.read_parquet(args.examples)
    else:
        from train_loop import catalogue_examples, source_data_dir

        examples = catalogue_examples(source_data_dir(), 40)
    figures = noise_figures(examples, args.rates, args.folds, args.recipe)
    print_figures(figures, hand_checked())
    if args.write_sample:
        write_sample(examples, figures["real_rows"], int(args.write_sample[0]), Path(args.write_sample[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
