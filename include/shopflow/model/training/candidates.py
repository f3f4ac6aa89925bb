"""The linear candidates every training trains beside the fine-tune, on the same split, and their ensembles.

| name               | features                                                                  |
|--------------------|---------------------------------------------------------------------------|
| tfidf              | TF-IDF word 1-2 grams + char_wb 3-5 grams (the BASELINE every model faces) |
| embeddings         | frozen-encoder sentence embeddings (shopflow.model.embeddings)                   |
| tfidf_embeddings   | both, concatenated (embeddings weighted x2 against the unit-norm TF-IDF)   |

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

BASELINE = "tfidf"
LINEAR = ("tfidf", "embeddings", "tfidf_embeddings")
EMBEDDING_WEIGHT = 2.0
FINETUNE = "finetune"


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

    @property
    def uses_text(self) -> bool:
        return self.features != "embeddings"

    @property
    def uses_embeddings(self) -> bool:
        return self.features != "tfidf"

    def _matrix(self, texts: list[str] | None, embeddings: np.ndarray | None, fit: bool):
        parts = []
        if self.uses_text:
            if fit:
                self.words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
                self.chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3, sublinear_tf=True,
                                             max_features=100_000)
                parts += [self.words.fit_transform(texts), self.chars.fit_transform(texts)]
            else:
                parts += [self.words.transform(texts), self.chars.transform(texts)]
        if self.uses_embeddings:
            dense = np.asarray(embeddings, dtype=np.float32)
            if not self.uses_text:
                return dense
            parts.append(csr_matrix(dense * EMBEDDING_WEIGHT))
        return hstack(parts).tocsr()

    def fit(self, texts: list[str] | None, embeddings: np.ndarray | None, labels: np.ndarray) -> "LinearCandidate":
        present = np.unique(labels)
        if len(present) == 1:
            self.only_class = int(present[0])
            return self
        self.classifier = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
        self.classifier.fit(self._matrix(texts, embeddings, fit=True), labels)
        return self

    def logits(self, texts: list[str] | None, embeddings: np.ndarray | None) -> np.ndarray:
        """Log-probabilities over all n_classes (absent classes: a very low value), for temperature scaling."""
        n = len(texts) if texts is not None else len(embeddings)
        out = np.full((n, self.n_classes), -30.0)
        if n and self.only_class is not None:
            out[:, self.only_class] = 0.0
        elif n:
            out[:, self.classifier.classes_] = self.classifier.predict_log_proba(self._matrix(texts, embeddings, False))
        return out


def fit_linear(features: str, n_classes: int, texts: list[str], embeddings: np.ndarray | None, labels: np.ndarray,
               seed: int = 13) -> LinearCandidate:
    return LinearCandidate(features, n_classes, seed=seed).fit(
        texts if features != "embeddings" else None, embeddings if features != "tfidf" else None, labels)


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
