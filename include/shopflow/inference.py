"""Batched, calibrated inference with a saved category classifier.

A `Predictor` loads a model directory once (CUDA when available, else CPU) and answers, for a list of texts, the
top-level category, its calibrated confidence (softmax at the temperature fitted on the validation split, so a
confidence of 0.9 means right about nine times in ten) and the three most likely categories. Texts are
deduplicated before the model sees them and answers are kept in a bounded cache, so the many identical titles of a
catalogue (size and colour variants) and a repeated call on the same day cost one forward pass each.

A model directory on an object store (an `s3://...` artifact path) is downloaded once into a local cache folder
(`Settings.model_cache_dir`, see shopflow.storage.local_copy) and loaded from there.

torch and transformers are imported when a Predictor is made, not when this module is imported.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

log = logging.getLogger("shopflow.inference")

BATCH_SIZE = 256
CHUNK = 8192  # texts tokenized and predicted per progress line
CACHE_SIZE = 200_000
DECIMALS = 6  # confidences are rounded so a stored value and the decision taken on it are the same number


class Predictor:
    """A loaded classifier: `predict(texts)` -> label, confidence and top-3 per text, in input order."""

    def __init__(self, model_dir: Path | str, device: str = "auto", batch_size: int = BATCH_SIZE,
                 cache_size: int = CACHE_SIZE, cache_root: Path | None = None):
        import torch

        from shopflow import storage
        from shopflow.training import model as model_io

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.source = str(model_dir)
        if storage.is_remote(storage.as_path(model_dir)) and cache_root is None:
            from shopflow.settings import Settings

            cache_root = Settings.from_env().model_cache_dir
        self.model_dir = storage.local_copy(model_dir, cache_root)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.cache_size = cache_size
        started = time.perf_counter()
        self.model, self.tokenizer, self.label_map = model_io.load(self.model_dir, device=str(self.device))
        self.labels: list[str] = list(self.label_map.top)
        self.temperature: float = float(self.label_map.temperature_top)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        log.info("loaded %s on %s in %.1fs: %d top-level classes, temperature %.3f", self.source,
                 self.device.type, time.perf_counter() - started, len(self.labels), self.temperature)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated class probabilities, one row per text (columns in the order of `self.labels`)."""
        from shopflow.training import loop, metrics

        texts = ["" if t is None or (isinstance(t, float) and t != t) else str(t) for t in texts]
        if not texts:
            return np.zeros((0, len(self.labels)))
        distinct = list(dict.fromkeys(texts))
        answers = {t: self._lookup(t) for t in distinct if t in self._cache}
        todo = [t for t in distinct if t not in answers]
        started = time.perf_counter()
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            ids = loop.tokenize(self.tokenizer, chunk, self.label_map.max_length)
            logits, _ = loop.predict_logits(self.model, ids, self.tokenizer.pad_token_id, self.batch_size, self.device)
            for text, row in zip(chunk, metrics.softmax(logits, self.temperature)):
                answers[text] = row
                self._remember(text, row)
            done = start + len(chunk)
            if len(todo) > CHUNK:
                elapsed = time.perf_counter() - started
                log.info("predicted %d/%d texts (%.0f texts/s)", done, len(todo), done / elapsed if elapsed else 0.0)
        seconds = time.perf_counter() - started
        log.info("predicted %d texts (%d distinct, %d through the model) in %.2fs on %s%s", len(texts), len(distinct),
                 len(todo), seconds, self.device.type,
                 f", {len(todo) / seconds:.0f} texts/s" if todo and seconds else "")
        return np.stack([answers[t] for t in texts])

    def predict(self, texts: Sequence[str]) -> pd.DataFrame:
        """label, confidence and top3 ((label, probability) x 3, most likely first) for each text, in input order."""
        probabilities = self.probabilities(texts)
        if len(probabilities) == 0:
            return pd.DataFrame({"label": pd.Series([], dtype="string"), "confidence": pd.Series([], dtype="float64"),
                                 "top3": pd.Series([], dtype="object")})
        k = min(3, probabilities.shape[1])
        # A stable sort on the negated probabilities: ties go to the earlier label, the same on every run.
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(probabilities, order, axis=1).round(DECIMALS)
        names = np.array(self.labels, dtype=object)
        top3 = [tuple((str(names[c]), float(p)) for c, p in zip(row_classes, row_probs))
                for row_classes, row_probs in zip(order, best)]
        return pd.DataFrame({
            "label": pd.array(names[order[:, 0]], dtype="string"),
            "confidence": best[:, 0].astype("float64"),
            "top3": top3,
        })

    def _remember(self, text: str, row: np.ndarray) -> None:
        self._cache[text] = row
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _lookup(self, text: str) -> np.ndarray:
        self._cache.move_to_end(text)
        return self._cache[text]
