"""Processes that embed the same texts at once share the work through chunk locks in the embedding cache: together
they embed each text once, get the same vectors bit for bit as one process alone, a holder killed with SIGKILL blocks
no one, a live holder is waited for only so long, and a cache that cannot be locked (a URL) works as before.

Real processes (subprocess), the real all-MiniLM-L6-v2 encoder and real Flipkart titles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shopflow.model.embeddings import ChunkLock, Embedder, EmbeddingCache, can_lock, text_key

pytestmark = pytest.mark.slow
CHUNK = 64
INCLUDE = str(Path(__file__).resolve().parents[2] / "include")

# A child process: load the encoder, say "ready", wait for the go file, embed, write vectors and stats.
# With "hold": embeds nothing, but says "holding" from inside its first chunk (its lock taken) and sleeps there.
CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from shopflow.model.embeddings import Embedder

cache, titles_file, out, go, mode = sys.argv[1:6]
titles = json.loads(Path(titles_file).read_text())
embedder = Embedder(cache_dir=cache, device="cpu", chunk_size=int(sys.argv[6]), log_line=lambda line: None)
if mode == "hold":
    def hold(texts):
        print("holding", flush=True)
        time.sleep(600)
    embedder._forward = hold
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.005)
vectors = embedder.embed(titles)
np.save(out + ".npy", vectors)
Path(out + ".json").write_text(json.dumps(embedder.stats))
"""


@pytest.fixture(scope="module")
def titles(source_data) -> list[str]:
    frame = pd.read_csv(source_data / "catalog" / "flipkart_name_category_tree.csv.gz", header=None,
                        compression="gzip", usecols=[1], nrows=2000)
    distinct = list(dict.fromkeys(frame[1].dropna().astype(str)))[:560]
    return distinct + distinct[:40]  # 600 titles, 560 distinct: repeats are embedded once


@pytest.fixture(scope="module")
def single():
    """One process, no cache: the reference vectors of a set of texts (vectors depend, by ~1e-7, on the chunk a text
    is embedded with, and the chunks on the set of missing texts)."""
    embedder = Embedder(device="cpu", chunk_size=CHUNK, log_line=lambda line: None)
    return embedder.embed


@pytest.fixture(scope="module")
def alone(titles, single) -> np.ndarray:
    return single(titles)


def _child(cache: Path, titles_file: Path, out: Path, go: Path, mode: str = "embed") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([INCLUDE, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(cache), str(titles_file), str(out), str(go), mode,
                             str(CHUNK)], stdout=subprocess.PIPE, text=True, env=env)


def _expect(process: subprocess.Popen, line: str) -> None:
    got = process.stdout.readline().strip()
    assert got == line, f"the child said {got!r}, not {line!r} (exit code {process.poll()})"


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_two_processes_at_once_embed_each_text_once_and_agree_bit_for_bit(titles, alone, tmp_path):
    (tmp_path / "titles.json").write_text(json.dumps(titles))
    go = tmp_path / "go"
    children = [_child(tmp_path / "cache", tmp_path / "titles.json", tmp_path / f"out{n}", go) for n in range(2)]
    try:
        for child in children:
            _expect(child, "ready")
        go.touch()  # both start now, each missing every title
        assert [child.wait(timeout=120) for child in children] == [0, 0]
    finally:
        for child in children:
            child.kill()
            child.wait()
    stats = [json.loads((tmp_path / f"out{n}.json").read_text()) for n in range(2)]
    vectors = [np.load(tmp_path / f"out{n}.npy") for n in range(2)]
    distinct = len(set(titles))
    # Each text through the encoder exactly once, whatever the interleaving. How the chunks fall between the two (one
    # may even start after the other finished, on a busy machine) is the scheduler's business: not asserted.
    assert sum(s["embedded"] for s in stats) == distinct, stats
    for s in stats:
        assert s["texts"] == len(titles) and s["distinct"] == distinct
        assert s["embedded"] + s["shared_from_other_process"] + s["cache_hits"] == distinct, stats
    assert np.array_equal(vectors[0], vectors[1]) and np.array_equal(vectors[0], alone)
    cache = tmp_path / "cache"
    assert not [name for name in _files(cache) if not name.startswith("shard-")], "no lock or temporary file left"
    again = Embedder(cache_dir=cache, device="cpu", chunk_size=CHUNK, log_line=lambda line: None)
    assert np.array_equal(again.embed(titles), alone) and again.stats["cache_hits"] == distinct
    assert again.stats["embedded"] == again.stats["shared_from_other_process"] == 0


def test_a_holder_killed_with_sigkill_does_not_block_the_other(titles, single, tmp_path):
    part = titles[:140]
    (tmp_path / "titles.json").write_text(json.dumps(part))
    go = tmp_path / "go"
    go.touch()
    holder = _child(tmp_path / "cache", tmp_path / "titles.json", tmp_path / "out", go, mode="hold")
    lines: list[str] = []

    def log_line(line: str) -> None:
        lines.append(line)
        if "waiting for" in line:  # its first pass is done: now the holder dies, lock in hand
            os.kill(holder.pid, signal.SIGKILL)

    try:
        _expect(holder, "ready")
        _expect(holder, "holding")  # inside its first chunk, the chunk's lock held
        embedder = Embedder(cache_dir=tmp_path / "cache", device="cpu", chunk_size=CHUNK, log_line=log_line)
        vectors = embedder.embed(part)  # returns at all: the dead holder's lock did not block it
        assert holder.wait(timeout=10) == -signal.SIGKILL
    finally:
        holder.kill()
        holder.wait()
    distinct = len(set(part))
    assert embedder.stats["embedded"] == distinct and embedder.stats["shared_from_other_process"] == 0
    assert any("waiting for 1 chunks" in line for line in lines), lines
    assert "embedded by another process" in lines[-1] and f"{distinct:,} embedded here" in lines[-1]
    assert np.array_equal(vectors, single(part))
    assert not [name for name in _files(tmp_path / "cache") if not name.startswith("shard-")]


def test_a_live_holder_is_waited_for_only_lock_wait_seconds(titles, single, tmp_path):
    part = titles[:150]
    embedder = Embedder(cache_dir=tmp_path, device="cpu", chunk_size=CHUNK, lock_wait=0.5, log_line=lambda line: None)
    first_chunk = sorted({text_key(t) for t in part})[:CHUNK]
    held = ChunkLock(embedder.cache.folder, first_chunk)
    assert held.acquire(0)  # another open file: flock conflicts with it even in this process
    try:
        vectors = embedder.embed(part)
    finally:
        held.release()
    assert embedder.stats["embedded"] == len(set(part)) and embedder.stats["waited_seconds"] >= 0.5
    assert np.array_equal(vectors, single(part))


def test_without_locks_a_process_embeds_all_it_misses_as_before(titles, single, tmp_path):
    assert can_lock(tmp_path) and can_lock(str(tmp_path))
    assert not can_lock("s3://bucket/cache") and not can_lock("file:///tmp/cache") and not can_lock(None)
    from upath import UPath

    assert not can_lock(UPath("memory://bucket/cache"))
    part = titles[:150]
    embedder = Embedder(cache_dir=tmp_path, device="cpu", chunk_size=CHUNK, share_work=False,
                        log_line=lambda line: None)
    assert not embedder.share_work
    held = ChunkLock(embedder.cache.folder, sorted({text_key(t) for t in part})[:CHUNK])
    assert held.acquire(0)
    try:
        vectors = embedder.embed(part)  # takes no lock, so it never waits
    finally:
        held.release()
    assert embedder.stats["embedded"] == len(set(part)) and embedder.stats["waited_seconds"] == 0
    assert embedder.stats["shared_from_other_process"] == 0
    assert np.array_equal(vectors, single(part))
    assert all(name.startswith("shard-") for name in _files(tmp_path))


def test_the_cache_reads_only_new_whole_shards(tmp_path):
    keys = [bytes([n]) * 20 for n in range(30)]
    vectors = np.arange(30 * 4, dtype=np.float32).reshape(30, 4)
    reader, writer = EmbeddingCache(tmp_path), EmbeddingCache(tmp_path)
    writer.add(keys[:10], vectors[:10])
    assert len(reader) == 10
    (tmp_path / ".shard-1-x.npz.tmp-1-abcd").write_bytes(b"PK half written")  # a writer's temporary file
    writer.add(keys[10:], vectors[10:])
    assert reader.refresh() == 20 and reader.refresh() == 0
    found = reader.get(keys)
    assert len(found) == 30 and all(np.array_equal(found[k], v) for k, v in zip(keys, vectors))
    (tmp_path / "shard-9999999999999999999-broken.npz").write_bytes(b"not a zip")  # e.g. a power cut before fsync
    assert reader.refresh() == 0 and len(EmbeddingCache(tmp_path)) == 30
