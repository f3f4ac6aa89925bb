"""Sentence embeddings of product texts from a frozen encoder, cached by (model, text hash).

`Embedder(model_dir, cache_dir).embed(texts)` returns one L2-normalised, mean-pooled vector per text (float32, in
input order). all-MiniLM-L6-v2 was trained with mean pooling; its checkpoint's pooler was never trained.

The cache is content-addressed: a folder per model fingerprint (a hash of the model's config and weight files'
names and sizes, plus max_length) holding append-only shards of (sha1 of the text, vector). A daily run embeds only
texts no earlier run has seen, so a catalogue that changed by a few hundred products costs a few hundred forward
passes. Shards are written to a temporary name and renamed, so a killed writer never leaves a half shard that a
reader would trust. `stats` says how many texts were hits and misses in the last call.

torch and transformers are imported when an Embedder is made, not when this module is imported.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from shopflow.common import storage

log = logging.getLogger("shopflow.model.embeddings")

BATCH_SIZE = 128
MAX_LENGTH = 64
PROGRESS_EVERY = 4096


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


def model_fingerprint(model_dir: Path, max_length: int) -> str:
    """Changes when the model's files or the truncation length change; cheap (sizes, not contents)."""
    model_dir = Path(model_dir)
    parts = [f"max_length={max_length}"]
    for path in sorted(model_dir.glob("*")):
        if path.is_file() and (path.suffix in (".json", ".safetensors", ".bin", ".txt")):
            parts.append(f"{path.name}:{path.stat().st_size}")
    config = model_dir / "config.json"
    if config.is_file():
        parts.append(hashlib.sha1(config.read_bytes()).hexdigest())
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


class EmbeddingCache:
    """Append-only shards of (text sha1, vector) in one folder per model fingerprint."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._index: dict[bytes, np.ndarray] | None = None

    def _load(self) -> dict[bytes, np.ndarray]:
        if self._index is None:
            self._index = {}
            for shard in sorted(self.folder.glob("shard-*.npz")):
                with np.load(shard) as data:
                    keys, vectors = data["keys"], data["vectors"]
                for key, vector in zip(keys, vectors):
                    self._index[bytes(key)] = vector
        return self._index

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        index = self._load()
        return {k: index[k] for k in keys if k in index}

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(b"".join(keys)).hexdigest()[:16]
        final = self.folder / f"shard-{time.time_ns()}-{name}.npz"
        temporary = self.folder / storage.temporary_name(final.name)  # this writer's own, thread included
        with open(temporary, "wb") as handle:
            np.savez(handle, keys=np.array([np.frombuffer(k, dtype=np.uint8) for k in keys]),
                     vectors=vectors.astype(np.float32))
        os.replace(temporary, final)
        index = self._load()
        for key, vector in zip(keys, vectors):
            index[key] = vector.astype(np.float32)

    def __len__(self) -> int:
        return len(self._load())


class Embedder:
    """A frozen encoder (default: the base model of training) that embeds texts through the cache."""

    def __init__(self, model_dir: Path | str | None = None, cache_dir: Path | None = None, device: str = "auto",
                 max_length: int = MAX_LENGTH, batch_size: int = BATCH_SIZE, log_line: Callable[[str], None] | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from shopflow.model.training.config import default_base_model

        self.model_dir = Path(model_dir or default_base_model())
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.max_length, self.batch_size = max_length, batch_size
        self.fingerprint = model_fingerprint(self.model_dir, max_length)
        self.cache = EmbeddingCache(Path(cache_dir) / self.fingerprint) if cache_dir else None
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModel.from_pretrained(self.model_dir, dtype=torch.float32).to(self.device).eval()
        self.dimension = int(self.model.config.hidden_size)
        self.stats = {"texts": 0, "distinct": 0, "cache_hits": 0, "embedded": 0, "seconds": 0.0}
        self._log = log_line or log.info

    def describe(self) -> dict:
        return {"model_dir": str(self.model_dir), "fingerprint": self.fingerprint, "max_length": self.max_length,
                "dimension": self.dimension}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        texts = ["" if t is None or (isinstance(t, float) and t != t) else str(t) for t in texts]
        keys = [text_key(t) for t in texts]
        distinct = dict(zip(keys, texts))
        known = self.cache.get(list(distinct)) if self.cache else {}
        todo = [k for k in distinct if k not in known]
        fresh = self._forward([distinct[k] for k in todo]) if todo else np.zeros((0, self.dimension), np.float32)
        if self.cache is not None:
            self.cache.add(todo, fresh)
        vectors = {**known, **dict(zip(todo, fresh))}
        seconds = time.perf_counter() - started
        self.stats = {"texts": len(texts), "distinct": len(distinct), "cache_hits": len(known),
                      "embedded": len(todo), "seconds": round(seconds, 3)}
        self._log(f"embedded {len(texts):,} texts ({len(distinct):,} distinct): {len(known):,} from the cache, "
                  f"{len(todo):,} through the encoder in {seconds:.1f}s on {self.device.type}")
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        return np.stack([vectors[k] for k in keys]).astype(np.float32)

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dimension), np.float32)
        started = time.perf_counter()
        cuda = self.device.type == "cuda"
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in rows], truncation=True, max_length=self.max_length,
                                       padding=True, return_tensors="pt").to(self.device)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
                    hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled.float(), dim=1)
                out[rows] = pooled.cpu().numpy()
                done = start + len(rows)
                if len(texts) > PROGRESS_EVERY and (done // PROGRESS_EVERY) != ((done - len(rows)) // PROGRESS_EVERY):
                    elapsed = time.perf_counter() - started
                    self._log(f"embedding: {done:,}/{len(texts):,} texts ({done / elapsed:.0f} texts/s)")
        return out


def describe_cache(cache_dir: Path) -> dict:
    """Entries per model fingerprint (for status and tests)."""
    folders = sorted(p for p in Path(cache_dir).glob("*") if p.is_dir()) if Path(cache_dir).is_dir() else []
    return {folder.name: len(EmbeddingCache(folder)) for folder in folders}


__all__ = ["Embedder", "EmbeddingCache", "describe_cache", "model_fingerprint", "text_key"]
