"""The model registry: the blessing gate (promote / reject / first model, reason recorded) and the training gate."""

from __future__ import annotations

from datetime import date

import pytest
from shopflow.config.settings import Settings
from shopflow.landing.sample_data import land_catalog
from shopflow.model.registry import TrainingPolicy, bless, blessing_decision, champion, models, register_candidate, training_due
from shopflow.steps import partition as pipeline
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

POLICY = TrainingPolicy(min_changed_products=100, max_age_days=30, macro_f1_floor=0.5)


def _boot(gain: float, low: float, high: float, version: int | None = None) -> dict:
    return {"gain": gain, "ci_low": low, "ci_high": high, "rounds": 1000, "groups": 900,
            **({"version": version} if version is not None else {})}


def _result(macro_f1: float, selected: str = "tfidf", versus_champion: dict | None = None,
            versus_baseline: dict | None = None) -> dict:
    candidates = {"tfidf": {"test": {"macro_f1": 0.9}}}
    if selected != "tfidf":
        candidates[selected] = {"test": {"macro_f1": macro_f1}, "versus_baseline": versus_baseline}
    return {"config": {"base_model": "all-MiniLM-L6-v2", "max_length": 64},
            "metrics": {"top": {"macro_f1": macro_f1, "accuracy": macro_f1}}, "selected": selected,
            "candidates": candidates, "versus_champion": versus_champion,
            "baseline": {"top": {"macro_f1": 0.9}}, "training": {"device": "cpu"}, "artifact_path": "/models/x"}


@pytest.mark.parametrize("candidate, kwargs, promote, words", [
    (0.62, {}, True, "first model"),
    (0.40, {}, False, "below the floor"),
    (0.93, {"selected": "tfidf_embeddings", "versus_baseline": _boot(0.02, -0.01, 0.05)}, False,
     "does not beat the TF-IDF baseline"),
    (0.93, {"selected": "tfidf_embeddings", "versus_baseline": _boot(0.02, 0.004, 0.05)}, True, "first model"),
    (0.91, {"champion_version": 3, "versus_champion": _boot(0.012, 0.002, 0.02)}, True, "beats champion v3"),
    (0.91, {"champion_version": 3, "versus_champion": _boot(0.012, -0.006, 0.03)}, False, "within the uncertainty"),
    (0.91, {"champion_version": 3, "versus_champion": _boot(-0.03, -0.05, -0.01)}, False, "within the uncertainty"),
    (0.91, {"champion_version": 3, "champion_f1": 0.92}, False, "no paired comparison"),
    (0.45, {"champion_version": 3, "versus_champion": _boot(0.1, 0.05, 0.2)}, False, "below the floor"),
])
def test_blessing_decision(candidate, kwargs, promote, words):
    decision = blessing_decision(candidate, 0.5, **kwargs)
    assert decision.promote is promote and words in decision.reason, decision.reason


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
    # A clear paired gain over today's champion promotes; a gain inside the uncertainty does not.
    third = register_candidate(store, result=_result(0.80, versus_champion=_boot(0.1, 0.05, 0.15, second)), ds=day,
                               lineage={}, run_id="r3")
    assert bless(store, third, POLICY).promote
    fourth = register_candidate(store, result=_result(0.81, versus_champion=_boot(0.01, -0.01, 0.03, third)), ds=day,
                                lineage={}, run_id="r4")
    assert not bless(store, fourth, POLICY).promote
    # A candidate whose model does not beat the baseline beyond the uncertainty is refused, even with no champion
    # to beat and a higher point estimate.
    fifth = register_candidate(store, result=_result(0.95, "tfidf_embeddings", _boot(0.2, 0.1, 0.3, third),
                                                     _boot(0.01, -0.02, 0.04)), ds=day, lineage={}, run_id="r5")
    assert not bless(store, fifth, POLICY).promote
    rows = {m.version: m for m in models(store)}
    assert [rows[v].status for v in (first, second, third, fourth, fifth)] == [
        "rejected", "retired", "champion", "rejected", "rejected"]
    assert "below the floor" in rows[first].decision_reason
    assert "within the uncertainty" in rows[fourth].decision_reason
    assert "does not beat the TF-IDF baseline" in rows[fifth].decision_reason
    assert rows[fifth].metrics["selected"] == "tfidf_embeddings"
    assert all(m.decided_at is not None and m.airflow_run_id for m in rows.values())


def test_training_gate_follows_catalogue_changes_and_age(tmp_path, source_data):
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path), "SHOPFLOW_SOURCE_DATA": str(source_data),
                                  "SHOPFLOW_PSEUDONYM_KEY": "registry-test-key-not-a-secret-32bytes"})
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
