"""The linear candidates every training trains beside the fine-tune, on the same split, and their ensembles.

| name               | features                                                                  |
|--------------------|---------------------------------------------------------------------------|
| tfidf              | TF-IDF word 1-2 grams + char_wb 3-5 grams (the BASELINE every model faces) |
| embeddings         | frozen-encoder sentence embeddings (shopflow.model.embeddings)                   |
| tfidf_embeddings   | both, concatenated (embeddings weighted x2 against the unit-norm TF-IDF)   |

The TF-IDF vectorisers of `tfidf` and `tfidf_embeddings` are identical, and a head's vectorisers depend on its
texts only (not its labels): `TextFeatures` fits them once per set of training texts and every candidate and head
trained on that set (both levels) shares them and their matrices. Sharing gives the same model as fitting them
again, bit for bit (the vectorisers are deterministic), in one fit instead of several.

Each is a multinomial logistic regression. A candidate predicts probabilities over the full label list (classes the
train split lacks get 0), is calibrated by a temperature fitted on the validation split, and is saved with joblib.
An ensemble is a weighted mean of calibrated member probabilities with its own temperature on the log-mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

BASELINE = "tfidf"
LINEAR = ("tfidf", "embeddings", "tfidf_embeddings")
EMBEDDING_WEIGHT = 2.0
FINETUNE = "finetune"


class TextFeatures:
    """The TF-IDF vectorisers (word 1-2 grams + char_wb 3-5 grams) fitted on `texts`, and those texts' matrix.
    `transform(texts)` gives another set's matrix (cached by the caller when several models read it)."""

    def __init__(self, texts: list[str]):
        self.words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        self.chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3, sublinear_tf=True,
                                     max_features=100_000)
        self.matrix = hstack([self.words.fit_transform(texts), self.chars.fit_transform(texts)]).tocsr()
        self.n = len(texts)

    def transform(self, texts: list[str]):
        return hstack([self.words.transform(texts), self.chars.transform(texts)]).tocsr()


@dataclass
class LinearCandidate:
    features: str
    n_classes: int
    seed: int = 13
    C: float = 10.0
    words: TfidfVectorizer | None = None
    chars: TfidfVectorizer | None = None
    classifier: LogisticRegression | None = field(default=None, repr=False)
    # The one class of a head that has only one (a catalogue with one category level: every second-level label is
    # the fold-in class): answered with certainty, nothing to fit.
    only_class: int | None = None
    fit_seconds: float = 0.0  # the fit's own time (in the worker process that ran it, for `fit_many`)

    @property
    def uses_text(self) -> bool:
        return self.features != "embeddings"

    @property
    def uses_embeddings(self) -> bool:
        return self.features != "tfidf"

    def _matrix(self, texts: list[str] | None, embeddings: np.ndarray | None, fit: bool, text_matrix=None):
        """The feature matrix; `text_matrix`: these texts' TF-IDF matrix, already computed with this candidate's
        vectorisers (a shared `TextFeatures`)."""
        parts = []
        if self.uses_text:
            if text_matrix is not None:
                parts.append(text_matrix)
            elif fit:
                shared = TextFeatures(texts)
                self.words, self.chars = shared.words, shared.chars
                parts.append(shared.matrix)
            else:
                parts += [self.words.transform(texts), self.chars.transform(texts)]
        if self.uses_embeddings:
            dense = np.asarray(embeddings, dtype=np.float32)
            if not self.uses_text:
                return dense
            parts.append(csr_matrix(dense * EMBEDDING_WEIGHT))
        return parts[0] if len(parts) == 1 else hstack(parts).tocsr()

    def fit(self, texts: list[str] | None, embeddings: np.ndarray | None, labels: np.ndarray,
            text_features: TextFeatures | None = None) -> "LinearCandidate":
        """`text_features`: vectorisers already fitted on these same `texts` (shared with other candidates)."""
        import time

        started = time.perf_counter()
        present = np.unique(labels)
        if len(present) == 1:
            self.only_class = int(present[0])
            return self
        text_matrix = None
        if self.uses_text and text_features is not None:
            if text_features.n != len(labels):
                raise ValueError(f"shared TF-IDF features of {text_features.n} texts for {len(labels)} labels")
            self.words, self.chars, text_matrix = text_features.words, text_features.chars, text_features.matrix
        matrix = self._matrix(texts, embeddings, fit=True, text_matrix=text_matrix)
        self.classifier = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
        # One BLAS thread: L-BFGS-B's own bookkeeping (scipy's setulb, small BLAS calls on ~1M coefficients) runs
        # ~2.5x slower with OpenBLAS's 2 threads than with 1 on a 2-core machine (10 s vs 26 s for the 44-class
        # second-level head of the real catalogue), and the sparse products are single-threaded anyway. The same
        # optimisation (a BLAS thread count changes only the rounding of its sums).
        with threadpool_limits(1):
            self.classifier.fit(matrix, labels)
        self.fit_seconds = time.perf_counter() - started
        return self

    def logits(self, texts: list[str] | None, embeddings: np.ndarray | None, text_matrix=None) -> np.ndarray:
        """Log-probabilities over all n_classes (absent classes: a very low value), for temperature scaling.
        `text_matrix`: the texts' TF-IDF matrix from the `TextFeatures` this candidate was fitted with."""
        n = (text_matrix.shape[0] if text_matrix is not None and self.uses_text
             else len(texts) if texts is not None else len(embeddings))
        out = np.full((n, self.n_classes), -30.0)
        if n and self.only_class is not None:
            out[:, self.only_class] = 0.0
        elif n:
            matrix = self._matrix(texts, embeddings, False, text_matrix=text_matrix if self.uses_text else None)
            out[:, self.classifier.classes_] = self.classifier.predict_log_proba(matrix)
        return out


def fit_linear(features: str, n_classes: int, texts: list[str], embeddings: np.ndarray | None, labels: np.ndarray,
               seed: int = 13, text_features: TextFeatures | None = None) -> LinearCandidate:
    """`text_features`: a `TextFeatures` fitted on `texts`, shared with the other candidates and heads trained on
    them (the same model as without it, without fitting the vectorisers again)."""
    return LinearCandidate(features, n_classes, seed=seed).fit(
        texts if features != "embeddings" else None, embeddings if features != "tfidf" else None, labels,
        text_features=text_features if features != "embeddings" else None)


@dataclass
class Fit:
    """One linear model to fit: `fit_linear`'s arguments."""

    features: str
    n_classes: int
    texts: list[str] | None
    embeddings: np.ndarray | None
    labels: np.ndarray
    seed: int = 13
    text_features: TextFeatures | None = None


def cpu_cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fit_many(fits: list[Fit], n_jobs: int | None = None) -> list[LinearCandidate]:
    """`fit_linear` of each of `fits`, side by side in worker processes, one per CPU core (`n_jobs`, default all):
    a sparse logistic regression keeps one core busy, so on 2 cores two fits take about the time of one. Each
    worker is single-threaded. A shared `TextFeatures` travels as its matrix only; the models come back with its
    vectorisers. The same models as `fit_linear` one after the other."""
    n_jobs = max(1, min(len(fits), n_jobs or cpu_cores()))
    if n_jobs == 1:
        return [fit_linear(f.features, f.n_classes, f.texts, f.embeddings, f.labels, seed=f.seed,
                           text_features=f.text_features) for f in fits]
    from joblib import Parallel, delayed

    # the biggest first (rows x classes: a fit's cost grows with both), so the last one to finish is a small one
    order = sorted(range(len(fits)), key=lambda i: -len(fits[i].labels) * fits[i].n_classes)
    done = Parallel(n_jobs=n_jobs, backend="loky")(delayed(_fit_single_threaded)(matrix_only(fits[i])) for i in order)
    models = [None] * len(fits)
    for i, model in zip(order, done):
        models[i] = model
    for fit, model in zip(fits, models):
        if fit.text_features is not None and model.uses_text:
            model.words, model.chars = fit.text_features.words, fit.text_features.chars
    return models


def _fit_single_threaded(fit: Fit) -> LinearCandidate:
    with threadpool_limits(1):
        return fit_linear(fit.features, fit.n_classes, fit.texts, fit.embeddings, fit.labels, seed=fit.seed,
                          text_features=fit.text_features)


def matrix_only(fit: Fit) -> Fit:
    """`fit` as it travels to a worker process: a shared `TextFeatures` as its matrix alone (the vectorisers, with
    their vocabularies, stay here: `fit_many` gives them back to the fitted model), no texts where the matrix
    stands for them, no embeddings for the TF-IDF-only model."""
    uses_text = fit.features != "embeddings"
    shared = fit.text_features if uses_text else None
    light = None
    if shared is not None:
        light = TextFeatures.__new__(TextFeatures)
        light.words = light.chars = None
        light.matrix, light.n = shared.matrix, shared.n
    return Fit(fit.features, fit.n_classes, None if shared is not None or not uses_text else fit.texts,
               fit.embeddings if fit.features != "tfidf" else None, fit.labels, fit.seed, light)


def held_out_probabilities(fit: Fit, held_texts: list[str] | None, held_vectors: np.ndarray | None,
                           held_matrix=None) -> np.ndarray:
    """One cross-validation fit: the model of `fit` (the fold's training rows) and its probabilities (float32) on
    the held-out rows; `held_matrix`: their TF-IDF matrix from `fit.text_features`. Single-threaded."""
    from shopflow.model.training import metrics

    with threadpool_limits(1):
        model = fit_linear(fit.features, fit.n_classes, fit.texts, fit.embeddings, fit.labels, seed=fit.seed,
                           text_features=fit.text_features)
        logits = model.logits(held_texts if model.uses_text else None,
                              held_vectors if model.uses_embeddings else None,
                              text_matrix=held_matrix if model.uses_text else None)
    return metrics.softmax(logits).astype(np.float32)


def cross_validated_probabilities(names: tuple[str, ...], n_classes: int, texts: list[str],
                                  vectors: np.ndarray | None, labels: np.ndarray, folds: np.ndarray, seed: int = 13,
                                  on_fold=None) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities (float32, rows as given) of each of `names` for every row: for each fold id of
    `folds` (one per row), each candidate fitted on the other folds' rows, its probabilities on that fold's rows
    (`held_out_probabilities`). The fits run side by side, one per CPU core (each single-threaded), in worker
    processes; per fold, the candidates that use TF-IDF share one vectoriser fit. The same models as fitting each
    alone, one after the other. `on_fold(fold, held_rows)` is called as each fold's last candidate is done."""
    from joblib import Parallel, delayed

    labels = np.asarray(labels)
    fold_ids = sorted(int(f) for f in np.unique(folds))
    held_of = {fold: np.flatnonzero(folds == fold) for fold in fold_ids}
    probabilities = {name: np.zeros((len(labels), n_classes), dtype=np.float32) for name in names}
    jobs = max(1, min(len(fold_ids) * len(names), cpu_cores()))
    order = [(fold, name) for fold in fold_ids for name in names]

    def tasks():
        # a fold's vectorisers are fitted here while the workers fit the previous fold's models (tasks are drawn as
        # they are needed)
        for fold in fold_ids:
            train, held = np.flatnonzero(folds != fold), held_of[fold]
            train_texts, held_texts = [texts[i] for i in train], [texts[i] for i in held]
            shared = held_matrix = None
            if any(name != "embeddings" for name in names):
                shared = TextFeatures(train_texts)
                held_matrix = shared.transform(held_texts)
            for name in names:
                fit = Fit(name, n_classes, train_texts, vectors[train] if vectors is not None else None,
                          labels[train], seed, shared)
                yield delayed(held_out_probabilities)(
                    matrix_only(fit), None if shared is not None else held_texts,
                    vectors[held] if vectors is not None and name != "tfidf" else None, held_matrix)

    results = Parallel(n_jobs=jobs, backend="loky" if jobs > 1 else "sequential", return_as="generator")(tasks())
    for (fold, name), probs in zip(order, results):
        probabilities[name][held_of[fold]] = probs
        if on_fold is not None and name == names[-1]:
            on_fold(fold, held_of[fold])
    return probabilities


def save_linear(candidate: LinearCandidate, path: Path) -> Path:
    import joblib

    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(candidate, path, compress=3)
    return path


def load_linear(path: Path) -> LinearCandidate:
    import joblib

    return joblib.load(path)


def ensemble_log_mean(probabilities: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """log of the weighted mean of member probabilities: an ensemble's 'logits' for its temperature."""
    mixed = sum(w * p for w, p in zip(weights, probabilities)) / sum(weights)
    return np.log(np.clip(mixed, 1e-12, 1.0))
