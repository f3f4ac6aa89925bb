"""Classification metrics for a model or the baseline: accuracy, macro-F1, per-class P/R/F1, ECE, confusion
matrix, and temperature scaling fitted on the validation split (so confidences mean what they say)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising validation NLL (a 1-D grid is enough and cannot diverge)."""
    if len(labels) == 0:
        return 1.0
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))
    nll = [-np.log(softmax(logits, t)[np.arange(len(labels)), labels] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def classification_report(labels: np.ndarray, probabilities: np.ndarray, names: list[str]) -> dict:
    predicted = probabilities.argmax(axis=1)
    present = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=present, zero_division=0)
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=sorted(set(labels.tolist())), average="macro", zero_division=0)),
        "ece": expected_calibration_error(probabilities, labels),
        "per_class": {
            names[i]: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                       "support": int(support[i])}
            for i in present
        },
        "confusion_matrix": {"labels": names, "matrix": confusion_matrix(labels, predicted, labels=present).tolist()},
    }


def format_table(report: dict, baseline: dict | None = None) -> str:
    """The evaluation table for a task log."""
    lines = [f"{'class':<32} {'prec':>6} {'recall':>6} {'f1':>6} {'support':>7}"]
    for name, row in sorted(report["per_class"].items(), key=lambda kv: -kv[1]["support"]):
        lines.append(f"{name[:32]:<32} {row['precision']:6.3f} {row['recall']:6.3f} {row['f1']:6.3f} {row['support']:7d}")
    lines.append(f"model:    accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  ECE {report['ece']:.4f}"
                 f"  (n={report['n']})")
    if baseline:
        lines.append(f"baseline: accuracy {baseline['accuracy']:.4f}  macro-F1 {baseline['macro_f1']:.4f}  "
                     f"ECE {baseline['ece']:.4f}  (TF-IDF + logistic regression)")
    return "\n".join(lines)
