"""The store's partition lock (`MetadataStore.partition_lock`) serialises a read-modify-write outside the store among
the threads of one process and among processes, on SQLite and on PostgreSQL; and reviewers recording decisions on
one day at once (`record_review_decisions`) all land, the same product's first decision included.

The work under the lock is a deliberately racy read, pause, write of a counter file: without the lock, writers that
overlap lose increments."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

REPO = Path(__file__).resolve().parents[2]
DAY = date(2015, 12, 3)
KEY = ("repaired", "catalog", DAY.isoformat())
PAUSE_S = 0.01


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shopflow.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(f"lock_{secrets.token_hex(4)}")
    migrate.upgrade(url)
    return url


def increment_under_lock(store: MetadataStore, counter: Path) -> None:
    with store.partition_lock(*KEY):
        seen = int(counter.read_text()) if counter.exists() else 0
        time.sleep(PAUSE_S)  # a writer that is not serialised would read the same count meanwhile
        counter.write_text(str(seen + 1))


def test_threads_of_one_process_take_turns(store_url, tmp_path):
    store, counter = MetadataStore(store_url), tmp_path / "counter"
    holders, most = [0], [0]
    guard = threading.Lock()

    def turn(_):
        with store.partition_lock(*KEY):
            with guard:
                holders[0] += 1
                most[0] = max(most[0], holders[0])
            seen = int(counter.read_text()) if counter.exists() else 0
            store.review_decisions("catalog", DAY)  # the holder may read the store
            time.sleep(PAUSE_S)
            counter.write_text(str(seen + 1))
            with guard:
                holders[0] -= 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(turn, range(24)))
    assert int(counter.read_text()) == 24 and most[0] == 1


CHILD = """
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, sys.argv[3])
from test_partition_lock import increment_under_lock
from shopflow.store.repository import MetadataStore

store = MetadataStore(sys.argv[1])
with ThreadPoolExecutor(3) as pool:
    list(pool.map(lambda _: increment_under_lock(store, Path(sys.argv[2])), range(6)))
"""


def test_processes_and_their_threads_take_turns(store_url, tmp_path):
    counter = tmp_path / "counter"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "include"), os.environ.get("PYTHONPATH", "")])}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, store_url, str(counter), str(Path(__file__).parent)],
                                 env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for child in children:
        _, errors = child.communicate(timeout=300)
        assert child.returncode == 0, errors[-3000:]
    assert int(counter.read_text()) == 12


def test_reviewers_recording_one_day_at_once_all_land(store_url):
    store = MetadataStore(store_url)
    products = [f"{n:032x}" for n in range(6)]

    def row(uniq_id: str, reviewer: str, decision: str) -> dict:
        return {"source": "catalog", "ds": DAY, "uniq_id": uniq_id, "field": "category_top", "audit_action": "review",
                "decision": decision, "value": "Clothing" if decision == "correct" else None, "value_l2": None,
                "before": None, "suggestion": "Clothing", "confidence": 0.5, "model_version": 1,
                "reviewer": reviewer, "via": "api", "airflow_run_id": "repair-run"}

    # Two reviewers, each deciding every product (reject or correct: different decisions), six times over, at once.
    batches = [[row(uid, reviewer, decision) for uid in products]
               for reviewer, decision in (("ana", "reject"), ("bea", "correct")) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        counts = list(pool.map(store.record_review_decisions, batches))
    assert sum(c["recorded"] for c in counts) == len(products), "each product's first decision is inserted once"
    stored = store.review_decisions("catalog", DAY)
    assert sorted(d.uniq_id for d in stored) == products
    replaced = sum(c["replaced"] for c in counts)
    assert sum(d.revision - 1 for d in stored) == replaced
    assert sum(len(d.history) for d in stored) == replaced, "every replaced decision is in a history"
