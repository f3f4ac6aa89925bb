"""Sentence embeddings of product texts from a frozen encoder, cached by (model, text hash).

`Embedder(model_dir, cache_dir).embed(texts)` returns one L2-normalised, mean-pooled vector per text (float32, in
input order). all-MiniLM-L6-v2 was trained with mean pooling; its checkpoint's pooler was never trained.

The cache is content-addressed: a folder per model fingerprint (a hash of the model's config and weight files'
names and sizes, plus max_length) holding append-only shards of (sha1 of the text, vector). A daily run embeds only
texts no earlier run has seen, so a catalogue that changed by a few hundred products costs a few hundred forward
passes. Shards are written to a temporary name (`.shard-….npz.tmp-<pid>-<random>`, which the `shard-*.npz` listing
never matches), fsynced and renamed, so a killed writer never leaves a half shard that a reader would trust, and a
reader that lists the folder while another process renames sees a shard whole or not at all.
`EmbeddingCache.refresh` reads only the shards that appeared since it last looked.

Processes that embed the same texts at the same time share the work (`model.train` and `model.duplicates` start
together on the first day and both miss the cache on the same catalogue titles). The missing texts, sorted by key,
are cut into chunks of `chunk_size` (two processes with the same missing set cut the same chunks); each chunk is
embedded under a non-blocking `fcntl.flock` on `.chunk-<hash of its keys>.lock` in the model's cache folder. A chunk
whose lock another process holds is skipped; the holder writes it to the cache. After one pass over the chunks the
skipped ones are waited for (a bounded wait: `lock_wait` seconds), re-read from the cache and whatever is still
missing is embedded here: a holder that died released its lock with its process and wrote nothing, and one that
hangs past the wait is worked around. The lock file is removed by its holder before it unlocks, and a lock taken on
a file that was removed meanwhile is retaken on the new one. A cache given as a URL (an fsspec location) is not
locked: each process embeds all that it misses, as before.

Vectors depend (in float32, by ~1e-7) on the batch a text is padded with, so a chunk is always embedded on its own
(its texts sorted by length, in batches of `batch_size`): the same missing set gives bit-identical vectors whether
one process embeds it or several share it, and without a cache the same chunking is used. `stats` says how many
texts were cache hits at the start, embedded here, and embedded by another process while this one ran.

torch and transformers are imported when an Embedder is made, not when this module is imported.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import time
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from shopflow.common import storage

log = logging.getLogger("shopflow.model.embeddings")

BATCH_SIZE = 128
MAX_LENGTH = 64
PROGRESS_EVERY = 4096
CHUNK_SIZE = 1024  # texts per chunk of shared work (one lock, one shard)
LOCK_WAIT_SECONDS = 1800.0  # the longest wait for a chunk another (live) process holds, then it is embedded here
LOCK_POLL_SECONDS = 0.05


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


def can_lock(cache_dir) -> bool:
    """Whether processes sharing `cache_dir` can share work through lock files: a local folder, not an fsspec URL."""
    return cache_dir is not None and not storage.is_remote(cache_dir) and "://" not in os.fspath(cache_dir)


class EmbeddingCache:
    """Append-only shards of (text sha1, vector) in one folder per model fingerprint."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._index: dict[bytes, np.ndarray] | None = None
        self._read: set[str] = set()  # shard names already in the index (or found unreadable)

    def _load(self) -> dict[bytes, np.ndarray]:
        if self._index is None:
            self._index = {}
            self._read_new_shards()
        return self._index

    def refresh(self) -> int:
        """Read the shards written since the last look (by other processes); returns how many entries were added."""
        if self._index is None:
            return len(self._load())
        return self._read_new_shards()

    def _read_new_shards(self) -> int:
        index, before = self._index, len(self._index)
        # `shard-*.npz` never matches a writer's temporary name (`.shard-….npz.tmp-…`); a final name is only ever made
        # by a rename of a whole file, and shards are never removed, so a listing taken during a rename is fine
        for shard in sorted(self.folder.glob("shard-*.npz")):  # by name: by time written, later shards win
            if shard.name in self._read:
                continue
            try:
                with np.load(shard) as data:
                    keys, vectors = data["keys"], data["vectors"]
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                log.warning("embedding cache: %s is not a readable shard (%s); skipped", shard, exc)
                self._read.add(shard.name)
                continue
            for key, vector in zip(keys, vectors):
                index[bytes(key)] = vector
            self._read.add(shard.name)
        return len(index) - before

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        index = self._load()
        return {k: index[k] for k in keys if k in index}

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        index = self._load()
        self.folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(b"".join(keys)).hexdigest()[:16]
        final = self.folder / f"shard-{time.time_ns()}-{name}.npz"
        temporary = self.folder / storage.temporary_name(final.name)  # this writer's own, thread included
        try:
            with open(temporary, "wb") as handle:
                np.savez(handle, keys=np.array([np.frombuffer(k, dtype=np.uint8) for k in keys]),
                         vectors=vectors.astype(np.float32))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        finally:
            if temporary.exists():
                temporary.unlink()
        self._read.add(final.name)
        for key, vector in zip(keys, vectors):
            index[key] = vector.astype(np.float32)

    def __len__(self) -> int:
        return len(self._load())


class ChunkLock:
    """An exclusive `flock` on `.chunk-<hash of keys>.lock` in a cache folder: one process embeds a chunk at a time.

    The holder removes the file before it unlocks (no lock file is left behind); a process that was waiting on the
    removed file finds, once it holds the lock, that the path is gone or another file, and locks the path again."""

    def __init__(self, folder: Path, keys: Sequence[bytes]):
        self.path = Path(folder) / f".chunk-{hashlib.sha1(b''.join(keys)).hexdigest()[:20]}.lock"
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0) -> bool:
        """Lock; 0: only if free now; otherwise wait up to `timeout` seconds. False when not locked."""
        deadline = time.monotonic() + timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                            raise
                        if time.monotonic() >= deadline:
                            os.close(fd)
                            return False
                        time.sleep(LOCK_POLL_SECONDS)
                try:
                    current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    current = False
            except BaseException:
                os.close(fd)
                raise
            if current:
                self._fd = fd
                return True
            os.close(fd)  # the file was removed by the holder before us: lock the path's file again

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # before unlocking: a waiter then sees that its file is gone
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class Embedder:
    """A frozen encoder (default: the base model of training) that embeds texts through the cache."""

    def __init__(self, model_dir: Path | str | None = None, cache_dir: Path | None = None, device: str = "auto",
                 max_length: int = MAX_LENGTH, batch_size: int = BATCH_SIZE, log_line: Callable[[str], None] | None = None,
                 chunk_size: int = CHUNK_SIZE, share_work: bool | None = None, lock_wait: float = LOCK_WAIT_SECONDS):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from shopflow.model.training.config import default_base_model

        self.model_dir = Path(model_dir or default_base_model())
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.max_length, self.batch_size = max_length, batch_size
        self.chunk_size, self.lock_wait = max(1, int(chunk_size)), float(lock_wait)
        self.fingerprint = model_fingerprint(self.model_dir, max_length)
        self.cache = EmbeddingCache(Path(cache_dir) / self.fingerprint) if cache_dir else None
        # share work with other processes through lock files: local caches only (None: decide from cache_dir)
        self.share_work = bool(self.cache is not None and (can_lock(cache_dir) if share_work is None else share_work))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModel.from_pretrained(self.model_dir, dtype=torch.float32).to(self.device).eval()
        self.dimension = int(self.model.config.hidden_size)
        self.stats = {"texts": 0, "distinct": 0, "cache_hits": 0, "embedded": 0, "shared_from_other_process": 0,
                      "seconds": 0.0, "waited_seconds": 0.0}
        self._log = log_line or log.info

    def describe(self) -> dict:
        return {"model_dir": str(self.model_dir), "fingerprint": self.fingerprint, "max_length": self.max_length,
                "dimension": self.dimension}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        texts = ["" if t is None or (isinstance(t, float) and t != t) else str(t) for t in texts]
        keys = [text_key(t) for t in texts]
        distinct = dict(zip(keys, texts))
        vectors = self.cache.get(list(distinct)) if self.cache else {}
        hits = len(vectors)
        todo = sorted(k for k in distinct if k not in vectors)  # by key: processes missing the same set cut alike
        chunks = [todo[start:start + self.chunk_size] for start in range(0, len(todo), self.chunk_size)]
        run = {"embedded": 0, "shared": 0, "waited": 0.0, "started": started, "todo": len(todo)}  # this call's
        if self.share_work:
            self._embed_shared(chunks, distinct, vectors, run)
        else:
            for chunk in chunks:
                self._embed_chunk(chunk, distinct, vectors, run)
        seconds = time.perf_counter() - started
        self.stats = {"texts": len(texts), "distinct": len(distinct), "cache_hits": hits, "embedded": run["embedded"],
                      "shared_from_other_process": run["shared"], "seconds": round(seconds, 3),
                      "waited_seconds": round(run["waited"], 3)}
        waited = f", {run['waited']:.1f}s of it waiting for other processes" if run["waited"] >= 0.05 else ""
        self._log(f"embeddings: {len(texts):,} texts ({len(distinct):,} distinct), {run['embedded']:,} embedded here, "
                  f"{run['shared']:,} embedded by another process at the same time, {hits:,} from the cache; "
                  f"{seconds:.1f}s on {self.device.type}{waited}")
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        return np.stack([vectors[k] for k in keys]).astype(np.float32)

    def _embed_shared(self, chunks: list[list[bytes]], distinct: dict[bytes, str], vectors: dict, run: dict) -> None:
        held_elsewhere = []
        for chunk in chunks:
            lock = ChunkLock(self.cache.folder, chunk)
            if not lock.acquire(0):
                held_elsewhere.append(chunk)  # another process embeds it now: read it from the cache afterwards
                continue
            try:
                self._embed_chunk(chunk, distinct, vectors, run, reread=True)
            finally:
                lock.release()
        if held_elsewhere:
            self._log(f"embeddings: waiting for {len(held_elsewhere):,} chunks "
                      f"({sum(map(len, held_elsewhere)):,} texts) that other processes are embedding")
        for chunk in held_elsewhere:
            if self._take_from_cache(chunk, vectors, run) == len(chunk):
                continue
            lock = ChunkLock(self.cache.folder, chunk)
            waiting = time.perf_counter()
            locked = lock.acquire(self.lock_wait)  # a holder that died released its lock with its process
            run["waited"] += time.perf_counter() - waiting
            if not locked:
                self._log(f"embeddings: a chunk of {len(chunk):,} texts was still locked by another process after "
                          f"{self.lock_wait:.0f}s; embedding it here")
            try:
                self._embed_chunk(chunk, distinct, vectors, run, reread=True)
            finally:
                lock.release()

    def _take_from_cache(self, chunk: list[bytes], vectors: dict, run: dict) -> int:
        """Re-read the cache (new shards only) and take the chunk's texts that another process wrote meanwhile."""
        self.cache.refresh()
        found = self.cache.get([k for k in chunk if k not in vectors])
        vectors.update(found)
        run["shared"] += len(found)
        return sum(1 for k in chunk if k in vectors)

    def _embed_chunk(self, chunk: list[bytes], distinct: dict[bytes, str], vectors: dict, run: dict,
                     reread: bool = False) -> None:
        if reread:
            self._take_from_cache(chunk, vectors, run)
        missing = [k for k in chunk if k not in vectors]
        if not missing:
            return
        fresh = self._forward([distinct[k] for k in missing])
        if self.cache is not None:
            self.cache.add(missing, fresh)
        vectors.update(zip(missing, fresh))
        before, run["embedded"] = run["embedded"], run["embedded"] + len(missing)
        if run["todo"] > PROGRESS_EVERY and before // PROGRESS_EVERY != run["embedded"] // PROGRESS_EVERY:
            elapsed = time.perf_counter() - run["started"]
            self._log(f"embedding: {run['embedded']:,} texts embedded here of {run['todo']:,} missing "
                      f"({run['shared']:,} by other processes; {run['embedded'] / max(elapsed, 1e-9):.0f} texts/s)")

    def _forward(self, texts: list[str]) -> np.ndarray:
        """One chunk through the encoder: its texts sorted by length (stable), in batches of `batch_size`; the same
        texts in the same order always give the same batches, hence the same vectors bit for bit."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dimension), np.float32)
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
        return out


def describe_cache(cache_dir: Path) -> dict:
    """Entries per model fingerprint (for status and tests)."""
    folders = sorted(p for p in Path(cache_dir).glob("*") if p.is_dir()) if Path(cache_dir).is_dir() else []
    return {folder.name: len(EmbeddingCache(folder)) for folder in folders}


__all__ = ["CHUNK_SIZE", "ChunkLock", "Embedder", "EmbeddingCache", "can_lock", "describe_cache", "model_fingerprint",
           "text_key"]
