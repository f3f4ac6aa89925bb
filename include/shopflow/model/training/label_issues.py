"""Label issues: labelled products whose given category is probably wrong, found by confident learning (the
`cleanlab` package) on OUT-OF-FOLD predicted probabilities, never on a model's answers for products it learned from.

At training (`shopflow.model.worker`) the grouped cross-validation gives every labelled product a probability per
class from a model that did not see it (nor its near-identical listings: folds are by product group).
`find_label_issues` runs cleanlab's `filter.find_label_issues` (confident joint, pruned by the estimated noise rate)
on them and scores each product with cleanlab's label quality (`rank.get_label_quality_scores`, self-confidence:
the out-of-fold probability of the given label; the lower, the likelier an error). A product is FLAGGED when
cleanlab finds an issue, it is no reviewer's gold label (a person decided it), its given label is not the fold-in
class (which names no category), and the likeliest other class, its suggestion, is not the fold-in class either.
The model directory keeps every labelled product's row (`LABEL_ISSUES`) and the class thresholds of the confident
joint (the mean out-of-fold self-confidence of each class).

At repair (`shopflow.governance.repair`), `flag_products` decides per intact product of the day:
- a product trained on, with the category it was trained on: flagged iff it was found an issue at training, with
  its suggestion and score;
- any other (new since the training, or recategorised since): confident learning's own rule on the serving
  model's probabilities (out-of-sample for a product the model has not seen): its likeliest class among those at
  or above their class threshold is another class than the given one. Suggestion: that class; score: the
  probability of the given label.

cleanlab's authors measured that about half of its flags on real test sets are true errors, so flags go to the
review queue and never change data; a reviewer's decision on one becomes a gold label (`governance.review`).
`bench/train.py` measures precision and recall on injected noise; tests/data/label_issues_checked.csv holds 100 real
flags checked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

LABEL_ISSUES = "label_issues.parquet"
METHOD = "cleanlab find_label_issues (prune_by_noise_rate) on out-of-fold probabilities"
PAIRS_SHOWN = 10


@dataclass
class LabelIssues:
    """Every labelled product of a training with its out-of-fold verdict."""

    rows: pd.DataFrame  # uniq_id, given, suggested, label_quality, suggested_probability, issue
    class_thresholds: dict[str, float]

    @property
    def found(self) -> int:
        return int(self.rows["issue"].sum())

    def pairs(self, top: int = PAIRS_SHOWN) -> list[dict]:
        """The most frequent (given, suggested) pairs among the issues: a pair with many products is usually two
        branches of the taxonomy that hold the same kind of product, which a merchandiser settles once."""
        issues = self.rows[self.rows["issue"]]
        counted = issues.groupby(["given", "suggested"], observed=True).size().sort_values(ascending=False,
                                                                                          kind="stable")
        return [{"given": g, "suggested": s, "products": int(n)} for (g, s), n in counted.head(top).items()]

    def describe(self, recipe: str) -> dict:
        return {"file": LABEL_ISSUES, "method": METHOD, "recipe": recipe, "products": len(self.rows),
                "found": self.found, "pairs": self.pairs(), "class_thresholds": self.class_thresholds}

    def save(self, model_dir: Path) -> Path:
        path = Path(model_dir) / LABEL_ISSUES
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rows.to_parquet(path, index=False)
        return path


def normalised(probabilities: np.ndarray) -> np.ndarray:
    """Rows that sum to one (cleanlab checks it), with no zero a log would trip on."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, None)
    return p / p.sum(1, keepdims=True)


def class_thresholds(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Confident learning's per-class threshold: the mean self-confidence of the products labelled with the class
    (a class without any: 1, never reached)."""
    n_classes = probabilities.shape[1]
    thresholds = np.ones(n_classes)
    for k in range(n_classes):
        members = labels == k
        if members.any():
            thresholds[k] = probabilities[members, k].mean()
    return thresholds


def find_label_issues(ids: list[str], labels: np.ndarray, probabilities: np.ndarray, class_names: list[str],
                      fold_in: str | None = None, gold: np.ndarray | None = None) -> LabelIssues:
    """Confident learning on out-of-fold `probabilities` (products x classes) against the given `labels` (class
    indices); see the module docstring for what is flagged."""
    from cleanlab.filter import find_label_issues as cleanlab_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=np.int64)
    p = normalised(probabilities)
    names = np.asarray(class_names, dtype=object)
    n = len(labels)
    if n == 0:
        rows = pd.DataFrame({"uniq_id": pd.Series([], dtype="string"), "given": pd.Series([], dtype="string"),
                             "suggested": pd.Series([], dtype="string"), "label_quality": [],
                             "suggested_probability": [], "issue": pd.Series([], dtype=bool)})
        return LabelIssues(rows, {})
    present = np.unique(labels)
    if len(present) < 2:  # one class: nothing to confuse it with
        issue = np.zeros(n, dtype=bool)
    else:
        issue = cleanlab_issues(labels=labels, pred_probs=p, filter_by="prune_by_noise_rate", n_jobs=1)
    quality = get_label_quality_scores(labels, p, method="self_confidence")
    others = p.copy()
    others[np.arange(n), labels] = -1.0
    suggested = others.argmax(1)
    actionable = np.ones(n, dtype=bool)
    if fold_in is not None:
        actionable &= (names[labels] != fold_in) & (names[suggested] != fold_in)
    if gold is not None:
        actionable &= ~np.asarray(gold, dtype=bool)
    rows = pd.DataFrame({
        "uniq_id": pd.Series([str(i) for i in ids], dtype="string"),
        "given": pd.Series(names[labels], dtype="string"),
        "suggested": pd.Series(names[suggested], dtype="string"),
        "label_quality": quality.astype(np.float64),
        "suggested_probability": p[np.arange(n), suggested],
        "issue": np.asarray(issue, dtype=bool) & actionable,
    })
    thresholds = class_thresholds(labels, p)
    return LabelIssues(rows, {str(name): round(float(t), 6) for name, t in zip(class_names, thresholds)})


def load(model_dir: Path) -> pd.DataFrame | None:
    """The label-issue rows a training saved, None for a model saved before they were computed (or without
    cross-validation)."""
    path = Path(model_dir) / LABEL_ISSUES
    return pd.read_parquet(path) if path.is_file() else None


def flag_products(ids: pd.Series, given: pd.Series, candidates: np.ndarray, rows: pd.DataFrame,
                  thresholds: dict[str, float], class_names: list[str], probabilities_of,
                  fold_in: str | None = None) -> pd.DataFrame:
    """Which of the day's products to flag (see the module docstring). `ids` and `given` (the given top-level
    category) describe the day's products; `candidates` is a boolean mask of the ones that may be flagged (an
    intact category); `rows` and `thresholds` are what the training saved; `probabilities_of(positions)` returns
    the serving model's probabilities (columns in the order of `class_names`) of the products at those positions,
    called only for products the training did not judge. Returns a frame aligned with `ids`: flagged, suggested,
    suggested_probability, label_quality (NaN where the product was not judged)."""
    n = len(ids)
    out = pd.DataFrame({"flagged": np.zeros(n, dtype=bool), "suggested": pd.Series([pd.NA] * n, dtype="string"),
                        "suggested_probability": np.full(n, np.nan), "label_quality": np.full(n, np.nan)})
    keys = ids.astype("string").reset_index(drop=True)
    given = given.astype("string").reset_index(drop=True)
    candidates = np.asarray(candidates, dtype=bool)
    judged = rows.drop_duplicates("uniq_id", keep="last").set_index("uniq_id")
    known = keys.isin(judged.index).to_numpy(dtype=bool) & candidates
    if known.any():
        positions = np.flatnonzero(known)
        found = judged.loc[keys.iloc[positions]]
        same = found["given"].to_numpy(dtype=object) == given.iloc[positions].to_numpy(dtype=object)
        still, found = positions[same], found[same]
        out.loc[still, "flagged"] = found["issue"].to_numpy(dtype=bool)
        out.loc[still, "suggested"] = found["suggested"].to_numpy(dtype=object)
        out.loc[still, "suggested_probability"] = found["suggested_probability"].to_numpy(dtype=np.float64)
        out.loc[still, "label_quality"] = found["label_quality"].to_numpy(dtype=np.float64)
        known[positions[~same]] = False  # recategorised since the training: judged afresh below
    fresh = np.flatnonzero(candidates & ~known)
    if len(fresh) and thresholds:
        p = np.asarray(probabilities_of(fresh), dtype=np.float64)
        names = np.asarray(class_names, dtype=object)
        t = np.array([thresholds.get(str(c), 1.0) for c in class_names])
        above = np.where(p >= t, p, -1.0)
        best = above.argmax(1)
        column = {str(c): i for i, c in enumerate(class_names)}
        fresh_given = given.iloc[fresh].to_numpy(dtype=object)
        given_index = np.array([column.get(str(g), -1) for g in fresh_given], dtype=np.int64)
        rows_at = np.arange(len(fresh))
        flagged = ((above.max(1) >= 0) & (given_index >= 0) & (best != given_index)
                   & (names[given_index] != fold_in) & (names[best] != fold_in))
        out.loc[fresh, "flagged"] = flagged
        out.loc[fresh, "suggested"] = pd.array(np.where(flagged, names[best], None), dtype="string")
        out.loc[fresh, "suggested_probability"] = np.where(flagged, p[rows_at, best], np.nan)
        out.loc[fresh, "label_quality"] = np.where(given_index >= 0, p[rows_at, np.maximum(given_index, 0)], np.nan)
    return out
