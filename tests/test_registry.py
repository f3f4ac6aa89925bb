"""The model registry: the blessing gate (promote / reject / first model, reason recorded) and the training gate."""

from __future__ import annotations

from datetime import date

import pytest

from shopflow import pipeline
from shopflow.landing import land_catalog
from shopflow.registry import (TrainingPolicy, bless, blessing_decision, champion, models, register_candidate,
                               training_due)
from shopflow.settings import Settings
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

POLICY = TrainingPolicy(min_changed_products=100, max_age_days=30, macro_f1_floor=0.5, tolerance=0.01)


def _result(macro_f1: float) -> dict:
    return {"config": {"base_model": "all-MiniLM-L6-v2", "max_length": 64},
            "metrics": {"top": {"macro_f1": macro_f1, "accuracy": macro_f1}},
            "baseline": {"top": {"macro_f1": 0.9}}, "training": {"device": "cpu"}, "artifact_path": "/models/x"}


@pytest.mark.parametrize("candidate, champion_f1, promote, words", [
    (0.62, None, True, "first model"),
    (0.40, None, False, "below the floor"),
    (0.80, 0.79, True, ">= champion"),
    (0.785, 0.79, True, ">= champion"),  # within the tolerance
    (0.70, 0.79, False, "worse than the champion"),
    (0.45, 0.30, False, "below the floor"),
])
def test_blessing_decision(candidate, champion_f1, promote, words):
    decision = blessing_decision(candidate, champion_f1, floor=0.5, tolerance=0.01)
    assert decision.promote is promote and words in decision.reason


@pytest.fixture()
def store(tmp_path) -> MetadataStore:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(url)
    return MetadataStore(url)


def test_bless_records_promotions_rejections_and_reasons(store):
    day = date(2015, 12, 3)
    first = register_candidate(store, result=_result(0.40), ds=day, lineage={}, run_id="r1")
    assert not bless(store, first, POLICY).promote and champion(store) is None
    second = register_candidate(store, result=_result(0.70), ds=day, lineage={}, run_id="r2")
    assert bless(store, second, POLICY).promote and champion(store).version == second
    third = register_candidate(store, result=_result(0.80), ds=day, lineage={}, run_id="r3")
    assert bless(store, third, POLICY).promote
    fourth = register_candidate(store, result=_result(0.60), ds=day, lineage={}, run_id="r4")
    assert not bless(store, fourth, POLICY).promote
    rows = {m.version: m for m in models(store)}
    assert [rows[v].status for v in (first, second, third, fourth)] == ["rejected", "retired", "champion", "rejected"]
    assert "below the floor" in rows[first].decision_reason
    assert "worse than the champion" in rows[fourth].decision_reason
    assert all(m.decided_at is not None and m.airflow_run_id for m in rows.values())


def test_training_gate_follows_catalogue_changes_and_age(tmp_path, source_data):
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path), "SHOPFLOW_SOURCE_DATA": str(source_data),
                                  "SHOPFLOW_PSEUDONYM_KEY": "k"})
    migrate.upgrade(settings.store_url)
    store = MetadataStore(settings.store_url)
    assert not training_due(store, date(2015, 12, 3), POLICY).promote  # nothing landed yet

    land_catalog(settings)
    for day in (date(2015, 12, 3), date(2015, 12, 4)):
        for step in (pipeline.ingest, pipeline.clean, pipeline.validate):
            step(settings, "catalog", day)
    first = training_due(store, date(2015, 12, 3), POLICY)
    assert first.promote and "no model yet" in first.reason

    register_candidate(store, result=_result(0.7), ds=date(2015, 12, 3), lineage={}, run_id="r")
    again = training_due(store, date(2015, 12, 3), POLICY)
    assert not again.promote and "only 0" in again.reason  # idempotent: the same day does not train twice
    delta = training_due(store, date(2015, 12, 4), POLICY)  # 161 re-crawled products, most with intact trees
    assert delta.promote and "new or changed labelled products" in delta.reason
    strict = TrainingPolicy(min_changed_products=10_000, max_age_days=30)
    assert not training_due(store, date(2015, 12, 4), strict).promote
    assert "days old" in training_due(store, date(2016, 1, 10), strict).reason
    assert training_due(store, date(2016, 1, 10), strict).promote
    disabled = TrainingPolicy.from_env({"SHOPFLOW_TRAIN_ENABLED": "false"})
    assert "disabled" in training_due(store, date(2016, 1, 10), disabled).reason
