"""The cheap, strong reference every model is judged against: TF-IDF (word 1-2 grams + char 3-5 grams) and a
logistic regression, trained on the same split."""

from __future__ import annotations

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression


def train_and_predict(train_text: list[str], train_labels: np.ndarray, test_text: list[str], seed: int = 13) -> np.ndarray:
    """Probabilities on `test_text` over the label ids 0..max(train_labels)."""
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3, sublinear_tf=True, max_features=100_000)
    train_x = hstack([words.fit_transform(train_text), chars.fit_transform(train_text)]).tocsr()
    test_x = hstack([words.transform(test_text), chars.transform(test_text)]).tocsr()
    classifier = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    classifier.fit(train_x, train_labels)
    probabilities = np.zeros((len(test_text), int(train_labels.max()) + 1))
    probabilities[:, classifier.classes_] = classifier.predict_proba(test_x)
    return probabilities
