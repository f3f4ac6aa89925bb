"""Choosing among candidates with the uncertainty in view: a paired group bootstrap of macro-F1 differences, the
selection rule, and the repair threshold with a Clopper-Pearson bound.

- `paired_bootstrap(y, pred_a, pred_b, groups)`: resamples whole product groups (listings of one product never
  split across resamples, as in the grouped split) and returns the macro-F1 gain of a over b with a 95% interval.
- `choose(...)`: the candidate with the best validation macro-F1 is proposed; it replaces the TF-IDF baseline only
  when its gain over the baseline on the test split has a 95% interval above zero. Otherwise the baseline itself is
  the proposal: a weaker or merely-equal model never silently takes the baseline's place.
- `choose_with_cv(...)`: with grouped K-fold cross-validation of the linear candidates (out-of-fold predictions
  for every labelled product, ten times the test split), the linear proposal is the best cross-validated one if
  its out-of-fold gain over the baseline has a 95% interval above zero, else the baseline; a fine-tune or an
  ensemble then replaces it only if it beats it on the test split beyond the uncertainty.
- `repair_threshold(...)`: the lowest confidence at which fills on an out-of-distribution slice (unseen titles:
  the grouped validation split, truncated-leaf products included) have a one-sided 95% Clopper-Pearson lower
  bound of precision >= the target.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta


def macro_f1_weighted(y: np.ndarray, predicted: np.ndarray, n_classes: int, weights: np.ndarray) -> np.ndarray:
    """Macro-F1 (over classes with support) for each row of `weights` (rounds x rows); predicted -1 is wrong."""
    weights = np.atleast_2d(weights).astype(np.float64)
    onehot_true = np.eye(n_classes + 1)[np.where(y < 0, n_classes, y)][:, :n_classes]
    onehot_pred = np.eye(n_classes + 1)[np.where(predicted < 0, n_classes, predicted)][:, :n_classes]
    correct = (y == predicted)[:, None] * onehot_true
    tp, support, called = weights @ correct, weights @ onehot_true, weights @ onehot_pred
    denominator = support + called
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    present = support > 0
    return (f1 * present).sum(1) / np.maximum(present.sum(1), 1)


def macro_f1(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    return float(macro_f1_weighted(y, predicted, n_classes, np.ones(len(y)))[0])


def paired_bootstrap(y: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray, groups: np.ndarray,
                     n_classes: int, rounds: int = 1000, seed: int = 13) -> dict:
    """gain = macro-F1(a) - macro-F1(b) on the whole set, and its 95% percentile interval over group resamples."""
    y, predicted_a, predicted_b = np.asarray(y), np.asarray(predicted_a), np.asarray(predicted_b)
    gain = macro_f1(y, predicted_a, n_classes) - macro_f1(y, predicted_b, n_classes)
    if len(y) == 0 or rounds <= 0:
        return {"gain": gain, "ci_low": None, "ci_high": None, "rounds": 0, "groups": 0}
    _, group_index = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = int(group_index.max()) + 1
    rng = np.random.default_rng(seed)
    gains = []
    for start in range(0, rounds, 200):  # 200 rounds at a time keeps the weight matrix small
        batch = min(200, rounds - start)
        counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=batch)
        weights = counts[:, group_index]
        gains.append(macro_f1_weighted(y, predicted_a, n_classes, weights)
                     - macro_f1_weighted(y, predicted_b, n_classes, weights))
    gains = np.concatenate(gains)
    low, high = np.percentile(gains, [2.5, 97.5])
    return {"gain": round(float(gain), 6), "ci_low": round(float(low), 6), "ci_high": round(float(high), 6),
            "rounds": rounds, "groups": n_groups}


def significant(bootstrap: dict) -> bool:
    return bootstrap.get("ci_low") is not None and bootstrap["ci_low"] > 0


def choose(validation_f1: dict[str, float], test_bootstrap_vs_baseline: dict[str, dict], baseline: str,
           order: list[str]) -> tuple[str, str, str]:
    """(best by validation, proposal, reason). Ties on validation go to the earlier (simpler) name in `order`."""
    best = max(order, key=lambda name: (round(validation_f1[name], 6), -order.index(name)))
    if best == baseline:
        return best, baseline, f"{baseline} has the best validation macro-F1 ({validation_f1[best]:.4f})"
    boot = test_bootstrap_vs_baseline[best]
    interval = f"gain {boot['gain']:+.4f}, 95% CI [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}]"
    if significant(boot):
        return best, best, (f"{best} has the best validation macro-F1 ({validation_f1[best]:.4f}) and beats "
                            f"{baseline} on the test split ({interval})")
    return best, baseline, (f"{best} has the best validation macro-F1 ({validation_f1[best]:.4f}) but its gain over "
                            f"{baseline} on the test split is within the uncertainty ({interval}): {baseline} is kept")


def fold_of(group: str, folds: int) -> int:
    """A stable fold per product group (a different hash salt from the split's)."""
    import hashlib

    return int(hashlib.sha256(f"fold:{group}".encode()).hexdigest()[:8], 16) % folds


def choose_with_cv(cv_f1: dict[str, float], cv_bootstrap_vs_baseline: dict[str, dict], validation_f1: dict[str, float],
                   test_bootstrap_vs: dict[str, dict], baseline: str, linear: list[str],
                   others: list[str]) -> tuple[str, str, str, str]:
    """(best, proposal, reason, linear proposal): see the module docstring. `test_bootstrap_vs[name]` is `name`'s gain over the
    linear proposal on the test split, for every name in `others` (computed by the caller for each linear
    proposal it may face: a dict keyed by proposal, then by name)."""
    linear_best = max(linear, key=lambda n: (round(cv_f1[n], 6), -linear.index(n)))
    if linear_best == baseline:
        linear_proposal, reason = baseline, (f"{baseline} has the best cross-validated macro-F1 among the linear "
                                             f"candidates ({cv_f1[baseline]:.4f})")
    else:
        boot = cv_bootstrap_vs_baseline[linear_best]
        interval = _interval(boot)
        if significant(boot):
            linear_proposal, reason = linear_best, (
                f"{linear_best} beats {baseline} in grouped cross-validation (macro-F1 {cv_f1[linear_best]:.4f} vs "
                f"{cv_f1[baseline]:.4f}, out-of-fold {interval})")
        else:
            linear_proposal, reason = baseline, (
                f"{linear_best} has the best cross-validated macro-F1 ({cv_f1[linear_best]:.4f}) but its gain over "
                f"{baseline} is within the uncertainty ({interval}): {baseline} is kept")
    if not others:
        return linear_best, linear_proposal, reason, linear_proposal
    best_other = max(others, key=lambda n: (round(validation_f1[n], 6), -others.index(n)))
    boot = test_bootstrap_vs[linear_proposal][best_other]
    if significant(boot):
        return best_other, best_other, (f"{reason}; {best_other} (best validation macro-F1 of the fine-tuned "
                                        f"candidates, {validation_f1[best_other]:.4f}) beats it on the test split "
                                        f"({_interval(boot)})"), linear_proposal
    return best_other, linear_proposal, (f"{reason}; {best_other} (best validation macro-F1 of the fine-tuned "
                                         f"candidates) does not beat {linear_proposal} on the test split beyond the "
                                         f"uncertainty ({_interval(boot)})"), linear_proposal


def _interval(boot: dict) -> str:
    return f"gain {boot['gain']:+.4f}, 95% CI [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}]"


def clopper_pearson_lower(correct: int, n: int, alpha: float = 0.05) -> float:
    """One-sided (1 - alpha) lower bound of a binomial proportion."""
    if n == 0 or correct == 0:
        return 0.0
    return float(beta.ppf(alpha, correct, n - correct + 1))


def precision_at(confidence: np.ndarray, correct: np.ndarray, fillable: np.ndarray, threshold: float) -> dict:
    filled = fillable & (confidence >= threshold)
    n, k = int(filled.sum()), int((filled & correct).sum())
    return {"threshold": float(threshold), "filled": n, "correct": k, "n": int(len(confidence)),
            "precision": k / n if n else None, "precision_lower_bound": clopper_pearson_lower(k, n),
            "coverage": n / len(confidence) if len(confidence) else None}


def repair_threshold(confidence: np.ndarray, correct: np.ndarray, fillable: np.ndarray,
                     target: float = 0.97) -> dict:
    """The lowest threshold whose fills on this slice have a Clopper-Pearson lower bound >= target (None: no
    threshold reaches it; then nothing should be filled)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    candidates = np.unique(np.round(confidence[fillable], 6))
    # From the top down, fills accumulate: cumulative counts give every threshold's bound in one pass.
    order = np.argsort(-confidence, kind="stable")
    conf_sorted = confidence[order]
    filled_cum = np.cumsum(fillable[order])
    correct_cum = np.cumsum((fillable & correct)[order])
    best = None
    for threshold in candidates[::-1]:  # descending: coverage grows
        last = np.searchsorted(-conf_sorted, -threshold, side="right") - 1
        n, k = int(filled_cum[last]), int(correct_cum[last])
        if clopper_pearson_lower(k, n) >= target:
            best = float(threshold)
    if best is None:
        return {"threshold": None, "target": target, **{k: v for k, v in precision_at(
            confidence, correct, fillable, 1.01).items() if k != "threshold"}}
    return {"target": target, **precision_at(confidence, correct, fillable, best)}
