"""Batched, calibrated inference with a saved model directory (shopflow.model.worker writes them).

A `Predictor` loads a model directory once (CUDA when available, else CPU) and answers, for a list of texts, the
top-level category (or, with level="l2", the second level), its calibrated confidence (so a confidence of 0.9 means
right about nine times in ten) and the three most likely categories. What serves is the directory's
`champion.json`: one candidate (the TF-IDF baseline, a linear model on frozen embeddings, the fine-tune) or a
calibrated ensemble of them; `repair_threshold` is the fill threshold set at training time. Texts are deduplicated
before the model sees them and answers (both levels) are kept in a bounded cache, so the many identical titles of a
catalogue (size and colour variants) and a repeated call on the same day cost one pass each.

The fold-in class (rare classes folded together at training, shopflow.model.training.data.fold_in_label) names no
category: where it is the most likely class, `label` is missing and `fold_in` is true ("the model knows no class for
this"); in `top3` it is None. A model saved before the card recorded its name folded into `other`.

A model directory on an object store (an `s3://...` artifact path) is downloaded once into a local cache folder
(`Settings.model_cache_dir`, see shopflow.common.storage.local_copy) and loaded from there.

torch and transformers are imported when a Predictor is made, not when this module is imported.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

log = logging.getLogger("shopflow.model.inference")

BATCH_SIZE = 256
CHUNK = 8192  # texts tokenized and predicted per progress line
CACHE_SIZE = 200_000
DECIMALS = 6
CARD = "champion.json"
HELD_OUT = "held_out.npz"  # shopflow.model.worker: the test split's answers before the serving refit
LEVELS = ("top", "l2")  # confidences are rounded so a stored value and the decision taken on it are the same number


class Predictor:
    """A loaded model directory: `predict(texts, level)` -> label, confidence and top-3 per text, in input order.

    The directory's `champion.json` (shopflow.model.worker) says what serves: one member or a weighted,
    calibrated ensemble of members -- the fine-tune (`finetune/`) and linear models (`linear/*.joblib`, the TF-IDF
    baseline among them; members on embeddings use the frozen encoder through shopflow.model.embeddings)."""

    def __init__(self, model_dir: Path | str, device: str = "auto", batch_size: int = BATCH_SIZE,
                 cache_size: int = CACHE_SIZE, cache_root: Path | None = None, embedding_cache_dir: Path | None = None):
        import torch

        from shopflow.common import storage

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.source = str(model_dir)
        if storage.is_remote(storage.as_path(model_dir)) and cache_root is None:
            from shopflow.config.settings import Settings

            cache_root = Settings.from_env().model_cache_dir
        self.model_dir = Path(storage.local_copy(model_dir, cache_root))
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.cache_size = cache_size
        started = time.perf_counter()
        card_path = self.model_dir / CARD
        if not card_path.is_file():
            raise FileNotFoundError(f"{self.source}: no {CARD}; not a model directory of this shopflow version")
        self.card = json.loads(card_path.read_text())
        self.labels: list[str] = list(self.card["labels"]["top"])
        self.labels_l2: list[str] = list(self.card["labels"]["l2"])
        legacy = {level: "other" for level in LEVELS}  # a card written before the fold-in class had its own name
        self.fold_in: dict[str, str | None] = self.card["labels"].get("fold_in", legacy)
        self.refit: dict | None = self.card.get("refit")  # the serving members were refit on every label
        self.selected: str = self.card["selected"]
        self.repair_threshold: float | None = self.card.get("repair_threshold")
        self.temperature: float = float(self.card["temperature_top"])
        self._members = [self._load_member(m, embedding_cache_dir) for m in self.card["members"]]
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        log.info("loaded %s on %s in %.1fs: serving %s, %d top-level and %d second-level classes, repair threshold %s",
                 self.source, self.device.type, time.perf_counter() - started, self.selected, len(self.labels),
                 len(self.labels_l2), self.repair_threshold)

    def _load_member(self, member: dict, embedding_cache_dir: Path | None) -> dict:
        name = member["name"]
        loaded = {"name": name, "weight": float(member["weight"]), "t_top": float(member["temperature_top"]),
                  "t_l2": float(member["temperature_l2"])}
        if name == "finetune":
            from shopflow.model.training import model as model_io

            loaded["model"], loaded["tokenizer"], _ = model_io.load(self.model_dir / "finetune", device=str(self.device))
            return loaded
        from shopflow.model.training.candidates import load_linear

        loaded["top"] = load_linear(self.model_dir / "linear" / f"{name}_top.joblib")
        loaded["l2"] = load_linear(self.model_dir / "linear" / f"{name}_l2.joblib")
        if loaded["top"].uses_embeddings:
            loaded["embedder"] = self._embedder(embedding_cache_dir)
        return loaded

    def _embedder(self, embedding_cache_dir: Path | None):
        from shopflow.model.embeddings import Embedder, model_fingerprint
        from shopflow.model.training.config import default_base_model

        recorded = self.card.get("embedding") or {}
        model_dir = Path(recorded.get("model_dir") or default_base_model())
        if not model_dir.is_dir():  # trained elsewhere (another machine's path): the same base model here
            model_dir = Path(default_base_model())
        max_length = int(recorded.get("max_length", self.card.get("max_length", 64)))
        if recorded.get("fingerprint") and model_fingerprint(model_dir, max_length) != recorded["fingerprint"]:
            raise ValueError(f"{self.source}: its embedding model {recorded.get('model_dir')} is not available here "
                             f"({model_dir} has another fingerprint); set SHOPFLOW_BASE_MODEL to it")
        return Embedder(model_dir, cache_dir=embedding_cache_dir, device=self.device.type, max_length=max_length)

    def _member_probabilities(self, member: dict, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        from shopflow.model.training import loop, metrics

        if "model" in member:
            ids = loop.tokenize(member["tokenizer"], texts, self.card["max_length"])
            top, l2 = loop.predict_logits(member["model"], ids, member["tokenizer"].pad_token_id, self.batch_size,
                                          self.device)
        else:
            vectors = member["embedder"].embed(texts) if "embedder" in member else None
            top, l2 = member["top"].logits(texts, vectors), member["l2"].logits(texts, vectors)
        return metrics.softmax(top, member["t_top"]), metrics.softmax(l2, member["t_l2"])

    def _forward(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        from shopflow.model.training import metrics
        from shopflow.model.training.candidates import ensemble_log_mean

        outputs = [self._member_probabilities(m, texts) for m in self._members]
        if len(outputs) == 1:
            return outputs[0]
        weights = [m["weight"] for m in self._members]
        top = metrics.softmax(ensemble_log_mean([o[0] for o in outputs], weights), self.temperature)
        l2 = metrics.softmax(ensemble_log_mean([o[1] for o in outputs], weights), float(self.card["temperature_l2"]))
        return top, l2

    def probabilities(self, texts: Sequence[str], level: str = "top") -> np.ndarray:
        """Calibrated class probabilities, one row per text (columns in the order of `self.labels`, or of
        `self.labels_l2` for level "l2")."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
        texts = ["" if t is None or (isinstance(t, float) and t != t) else str(t) for t in texts]
        width = len(self.labels if level == "top" else self.labels_l2)
        if not texts:
            return np.zeros((0, width))
        distinct = list(dict.fromkeys(texts))
        answers = {t: self._lookup(t) for t in distinct if t in self._cache}
        todo = [t for t in distinct if t not in answers]
        started = time.perf_counter()
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            top, l2 = self._forward(chunk)
            for text, row_top, row_l2 in zip(chunk, top, l2):
                answers[text] = (row_top, row_l2)
                self._remember(text, (row_top, row_l2))
            done = start + len(chunk)
            if len(todo) > CHUNK:
                elapsed = time.perf_counter() - started
                log.info("predicted %d/%d texts (%.0f texts/s)", done, len(todo), done / elapsed if elapsed else 0.0)
        seconds = time.perf_counter() - started
        log.info("predicted %d texts (%d distinct, %d through the model) in %.2fs on %s%s", len(texts), len(distinct),
                 len(todo), seconds, self.device.type,
                 f", {len(todo) / seconds:.0f} texts/s" if todo and seconds else "")
        column = LEVELS.index(level)
        return np.stack([answers[t][column] for t in texts])

    def predict(self, texts: Sequence[str], level: str = "top") -> pd.DataFrame:
        """label, confidence, fold_in and top3 ((label, probability) x 3, most likely first) for each text, in input
        order; `level` "l2" answers the second level ("Top > Second"). Where the fold-in class is the most likely,
        label is missing and fold_in true."""
        probabilities = self.probabilities(texts, level)
        if len(probabilities) == 0:
            return pd.DataFrame({"label": pd.Series([], dtype="string"), "confidence": pd.Series([], dtype="float64"),
                                 "fold_in": pd.Series([], dtype=bool), "top3": pd.Series([], dtype="object")})
        k = min(3, probabilities.shape[1])
        # A stable sort on the negated probabilities: ties go to the earlier label, the same on every run.
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(probabilities, order, axis=1).round(DECIMALS)
        names = np.array(self.labels if level == "top" else self.labels_l2, dtype=object)
        fold_in = self.fold_in.get(level)
        names = np.where(names == fold_in, None, names) if fold_in is not None else names
        top3 = [tuple((names[c], float(p)) for c, p in zip(row_classes, row_probs))
                for row_classes, row_probs in zip(order, best)]
        label = pd.array(names[order[:, 0]], dtype="string")
        return pd.DataFrame({
            "label": label,
            "confidence": best[:, 0].astype("float64"),
            "fold_in": label.isna(),
            "top3": top3,
        })

    def held_out(self, level: str, threshold: float) -> dict | None:
        """The repair's masked figures at `threshold` (n, filled, correct, precision, coverage) from the answers the
        same recipe gave at training on the test split, before the serving members were refit on every label; None
        for a model that was not refit (its own answers on held-out products are still held out). A refit model has
        seen every labelled product, so measuring it on them again would be in-sample."""
        path = self.model_dir / HELD_OUT
        if not self.refit or not path.is_file():
            return None
        with np.load(path) as saved:
            confidence, correct, fillable = (saved[f"{level}_{part}"] for part in ("confidence", "correct", "fillable"))
        filled = fillable & (confidence >= threshold)
        n, k, right = len(confidence), int(filled.sum()), int((filled & correct).sum())
        return {"masked_n": n, "masked_filled": k, "masked_correct": right,
                "masked_precision": right / k if k else None, "masked_coverage": k / n if n else None}

    def label_issues(self) -> tuple[pd.DataFrame, dict[str, float]] | None:
        """What the training found by confident learning on out-of-fold probabilities (every labelled product's
        row, and the class thresholds; shopflow.model.training.label_issues); None for a model saved before, or
        trained without cross-validation."""
        from shopflow.model.training import label_issues

        described = self.card.get("label_issues")
        rows = label_issues.load(self.model_dir) if described else None
        return None if rows is None else (rows, dict(described.get("class_thresholds") or {}))

    def _remember(self, text: str, row: tuple[np.ndarray, np.ndarray]) -> None:
        self._cache[text] = row
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _lookup(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        self._cache.move_to_end(text)
        return self._cache[text]
