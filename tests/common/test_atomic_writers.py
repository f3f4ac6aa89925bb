"""Writers of one file that cannot collide (shopflow.common.storage): many threads of one process writing the same lake
file at once through the atomic writer, while others read it, always leave (and show) a whole file, one writer's;
each writer's temporary name is its own, and the sweep of dead writers' temporary files still tells a dead writer's
file (its pid first) from a live one's. The embedding cache's shards, written the same way, too."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from shopflow.common import storage
from shopflow.common.parquet import TEXT_TYPES, read_parquet
from shopflow.model.embeddings import EmbeddingCache

WRITERS = 16
WRITES_EACH = 6
ROWS = 2000


def _table(writer: int) -> pa.Table:
    """A table only this writer writes: its number in every row, and enough rows that a write takes a while."""
    return pa.table({"writer": pa.array([writer] * ROWS, pa.int32()),
                     "text": pa.array([f"writer {writer} row {i} " + "x" * 40 for i in range(ROWS)])})


def test_threads_writing_one_file_at_once_always_leave_it_whole(tmp_path):
    path = tmp_path / "lake" / "repaired" / "catalog" / "ds=2015-12-03" / "part-0.parquet"
    tables = {writer: _table(writer) for writer in range(WRITERS)}
    frames = {writer: table.to_pandas(types_mapper=TEXT_TYPES.get) for writer, table in tables.items()}
    start = threading.Barrier(WRITERS + 1)
    writing = threading.Event()
    writing.set()
    reads: list[int] = []

    def write(writer: int) -> None:
        start.wait()
        for _ in range(WRITES_EACH):
            storage.write_parquet(tables[writer], path, compression="zstd")

    def read_while_writing() -> None:
        start.wait()
        while writing.is_set():
            if path.exists():
                frame = read_parquet(path)  # the lake's reader: never a half-written or interleaved file
                writers = set(frame["writer"].tolist())
                assert len(writers) == 1 and frame.equals(frames[writers.pop()])
                reads.append(1)

    with ThreadPoolExecutor(WRITERS + 1) as pool:
        reader = pool.submit(read_while_writing)
        writes = [pool.submit(write, writer) for writer in range(WRITERS)]
        for done in writes:
            done.result()  # a writer's error (e.g. its temporary file renamed away by another) fails the test
        writing.clear()
        reader.result()
    final = pq.read_table(path)
    assert final.equals(tables[final.column("writer")[0].as_py()])
    assert reads, "the reader read the file at least once while the writers wrote"
    assert [p.name for p in path.parent.iterdir()] == ["part-0.parquet"], "no temporary file is left"


def test_write_bytes_from_many_threads_is_whole_too(tmp_path):
    path = tmp_path / "report.json"
    bodies = [f'{{"writer": {n}, "pad": "{"y" * 200_000}"}}'.encode() for n in range(WRITERS)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda body: storage.write_bytes(path, body), bodies * 3))
    assert path.read_bytes() in bodies
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_each_writer_has_its_own_temporary_name_with_its_pid_first():
    names = {storage.temporary_name("part-0.parquet") for _ in range(1000)}
    assert len(names) == 1000
    name = names.pop()
    assert name.startswith(f".part-0.parquet.tmp-{os.getpid()}-")
    assert storage.writer_pid(name) == os.getpid()
    assert storage.writer_pid(".part-0.parquet.tmp-4242") == 4242  # what writers before the suffix left
    assert storage.writer_pid(".part-0.parquet.tmp-²") is None
    assert storage.writer_pid("part-0.parquet") is None


def test_the_sweep_removes_a_dead_writers_file_and_keeps_live_ones(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        files = {
            "dead": tmp_path / f".part-0.parquet.tmp-{dead.pid}-0123456789abcdef",
            "dead, older name": tmp_path / f".part-1.parquet.tmp-{dead.pid}",
            "live": tmp_path / f".part-0.parquet.tmp-{live.pid}-fedcba9876543210",
            "this process": tmp_path / storage.temporary_name("part-0.parquet"),
            "not a writer's": tmp_path / ".part-0.parquet.tmp-notapid",
        }
        for file in files.values():
            file.write_bytes(b"PAR1 half written")
        removed = storage.sweep_dead_temp_files(tmp_path)
        assert sorted(removed) == sorted([files["dead"], files["dead, older name"]])
        assert all(files[kept].exists() for kept in ("live", "this process", "not a writer's"))
    finally:
        live.kill()
        live.wait()


def test_embedding_cache_shards_written_by_threads_at_once_all_load(tmp_path):
    keys = [bytes([n]) * 20 for n in range(50)]
    vectors = np.arange(50 * 8, dtype=np.float32).reshape(50, 8)
    caches = [EmbeddingCache(tmp_path) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:  # the same keys at once: before, one temporary name for all of them
        list(pool.map(lambda cache: cache.add(keys, vectors), caches))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary file is left"
    loaded = EmbeddingCache(tmp_path).get(keys)
    assert len(loaded) == 50 and all(np.array_equal(loaded[k], v) for k, v in zip(keys, vectors))
