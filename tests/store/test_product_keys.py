"""Product keys are recorded as their text whatever their type (`shopflow.store.models.ProductKey`), on SQLite and on
PostgreSQL alike: a numpy int64 from a catalogue keyed by integers was an 8-byte blob on SQLite (the report showed
b'\\xb3\\x06…', `review decide --id 72` found nothing) and refused by psycopg2. Queries compare the same way: the text
"72", the int 72 and numpy's int64 72 name one product. Migration 0009 turns the blobs of an older SQLite store into
their text."""

from __future__ import annotations

import secrets
import sqlite3
from datetime import date

import numpy as np
import pytest
from shopflow.store import migrate
from shopflow.store.models import product_key_text
from shopflow.store.repository import MetadataStore

DAY = date(2015, 12, 3)
KEYS = [np.int64(72), 1234567890123, "é-ü-键-42", np.str_("sku-7"), np.int32(5)]
TEXTS = ["72", "1234567890123", "é-ü-键-42", "sku-7", "5"]
RUN = {"model_version": 1, "threshold": 0.9, "rows_in": 5, "rows_filled": 5, "rows_review": 0, "rows_flagged": 0,
       "rows_unchanged": 0, "output_path": "/nowhere"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> MetadataStore:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shopflow.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(f"keys_{secrets.token_hex(4)}")
    migrate.upgrade(url)
    return MetadataStore(url)


def _fill(key) -> dict:
    return {"uniq_id": key, "action": "fill", "field": "category_top", "before": None, "after": "Clothing",
            "confidence": 0.95, "model_version": 1}


def _decision(key, decision="accept") -> dict:
    return {"source": "catalog", "ds": DAY, "uniq_id": key, "field": "category_top", "audit_action": "fill",
            "decision": decision, "value": "Clothing" if decision == "accept" else None, "value_l2": None,
            "before": None, "suggestion": "Clothing", "confidence": 0.95, "model_version": 1, "reviewer": "ana",
            "via": "cli", "airflow_run_id": "repair-run"}


def test_the_text_form_of_a_key():
    assert [product_key_text(k) for k in KEYS] == TEXTS
    assert product_key_text(b"abc") == "abc" and product_key_text(np.int64(-3)) == "-3"


def test_audit_and_decisions_record_every_key_type_as_text(store):
    store.record_repair(DAY, run=RUN, audit=[_fill(k) for k in KEYS], run_id="repair-run")
    recorded = store.repair_audit(DAY)
    assert sorted(a.uniq_id for a in recorded) == sorted(TEXTS)
    assert all(type(a.uniq_id) is str for a in recorded)
    # every type names the same product: the int, numpy's int64 and the text
    assert store.mark_reverted(DAY, [72], field="category_top") == 1
    assert store.mark_reverted(DAY, ["72", np.int64(72)], field="category_top") == 0, "already reverted"
    assert store.mark_reverted(DAY, ["é-ü-键-42"], field="category_top") == 1
    assert {a.uniq_id for a in store.repair_audit(DAY) if a.reverted_at is not None} == {"72", "é-ü-键-42"}

    assert store.record_review_decisions([_decision(np.int64(72))]) == {"recorded": 1, "replaced": 0, "unchanged": 0}
    assert store.record_review_decisions([_decision("72")])["unchanged"] == 1, "the text names the same product"
    assert store.record_review_decisions([_decision(72, "reject")])["replaced"] == 1
    (decision,) = store.review_decisions("catalog", DAY)
    assert (decision.uniq_id, decision.decision, decision.revision) == ("72", "reject", 2)


def test_migration_0009_turns_the_blobs_of_an_older_store_into_text(tmp_path):
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url, "0008")
    with sqlite3.connect(path) as db:  # what SQLite kept of a numpy int64 before the store converted keys
        for table, extra in (("repair_audit", "action, field, confidence, model_version, recorded_at"),
                             ("review_decisions", "source, audit_action, field, decision, reviewer, via, revision, "
                                                  "history, decided_at")):
            values = {"repair_audit": "'fill', 'category_top', 0.9, 1, '2026-01-01'",
                      "review_decisions": "'catalog', 'fill', 'category_top', 'accept', 'ana', 'cli', 1, '[]', "
                                          "'2026-01-01'"}[table]
            db.execute(f"INSERT INTO {table} (ds, uniq_id, {extra}) VALUES ('2015-12-03', ?, {values})",
                       (memoryview(np.int64(1715)),))
            db.execute(f"INSERT INTO {table} (ds, uniq_id, {extra}) VALUES ('2015-12-03', ?, {values})", ("ab12",))
        assert db.execute("SELECT typeof(uniq_id) FROM repair_audit ORDER BY id").fetchall() == [("blob",), ("text",)]
    migrate.upgrade(url)
    store = MetadataStore(url)
    assert sorted(a.uniq_id for a in store.repair_audit(DAY)) == ["1715", "ab12"]
    assert sorted(d.uniq_id for d in store.review_decisions("catalog", DAY)) == ["1715", "ab12"]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT DISTINCT typeof(uniq_id) FROM repair_audit").fetchall() == [("text",)]
