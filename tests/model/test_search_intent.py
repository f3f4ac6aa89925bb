"""Batched, calibrated inference and search intent: save -> reload gives the same answers, the real WANDS queries are
all classified, and a search day's distinct queries are attributed and stored (replacing the day's rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from shopflow.common.parquet import read_parquet
from shopflow.common.text import normalise_query
from shopflow.lake import zones as lake
from shopflow.landing.sample_data import land_search
from shopflow.model.inference import Predictor
from shopflow.model.search_intent import classify_queries, classify_texts
from shopflow.steps import partition as pipeline

pytestmark = pytest.mark.slow
VERSION = 1


@pytest.fixture(scope="module")
def wands_queries(trained_model) -> list[str]:
    raw = pd.read_csv(trained_model.source_data / "search" / "wands_query.tsv.gz", sep="\t", dtype=str)
    queries = [normalise_query(q) for q in raw["query"]]
    return [q for q in queries if q]


def test_save_and_reload_give_identical_predictions(trained_model, model_predictor, wands_queries, tmp_path):
    import json
    import shutil

    texts = wands_queries[:64] + trained_model.catalog["product_name"].head(64).tolist()
    first = Predictor(trained_model.model_dir, device="cpu").predict(texts)
    shutil.copytree(trained_model.model_dir, tmp_path / "copy")
    again = Predictor(tmp_path / "copy", device="cpu").predict(texts)
    pd.testing.assert_frame_equal(first, again)
    card = json.loads((trained_model.model_dir / "champion.json").read_text())
    assert model_predictor.labels == trained_model.result["labels"]["top"] == card["labels"]["top"]
    assert model_predictor.temperature == card["temperature_top"] and model_predictor.selected == card["selected"]
    second = model_predictor.predict(texts, level="l2")
    assert set(second["label"].dropna()) <= set(model_predictor.labels_l2)  # missing: the fold-in class
    assert np.allclose(model_predictor.probabilities(texts, "l2").sum(axis=1), 1.0)

    # The confidence is the calibrated probability of the label, and top3 is ordered, led by the label.
    probabilities = model_predictor.probabilities(texts)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert np.allclose(first["confidence"], probabilities.max(axis=1), atol=1e-6)
    for label, confidence, top3 in first[["label", "confidence", "top3"]].itertuples(index=False):
        assert top3[0] == (None if pd.isna(label) else label, confidence) and len(top3) == 3
        assert [p for _, p in top3] == sorted((p for _, p in top3), reverse=True)


def test_every_wands_query_is_classified(model_predictor, wands_queries):
    assert len(wands_queries) > 300
    classified = classify_texts(model_predictor, wands_queries)
    assert classified["query"].tolist() == wands_queries
    assert classified["category"].isin(model_predictor.labels).all()
    assert ((classified["confidence"] > 0) & (classified["confidence"] <= 1)).all()
    assert classify_texts(model_predictor, []).empty


def test_search_day_queries_are_attributed_and_stored(trained_model, model_predictor):
    tm = trained_model
    land_search(tm.settings, tm.ds, tm.ds)
    for step in (pipeline.ingest, pipeline.clean, pipeline.validate):
        step(tm.settings, "search", tm.ds)
    searches = read_parquet(lake.lake_file(tm.settings, "clean", "search", tm.ds))["query"]

    summary = classify_queries(tm.settings, tm.store, tm.ds, model_predictor, VERSION, run_id="intent-run")
    stored = tm.store.search_intents(tm.ds)
    assert summary["queries"] == len(stored) == searches.nunique() > 0
    assert summary["searches"] == sum(i.searches for i in stored) == searches.notna().sum()
    counts = searches.value_counts()
    assert all(i.searches == counts[i.query] for i in stored)
    assert all(i.category in model_predictor.labels and 0 < i.confidence <= 1 for i in stored)
    assert {(i.model_version, i.airflow_run_id) for i in stored} == {(VERSION, "intent-run")}
    top = summary["top_categories"]
    assert top and top[0]["searches"] == max(t["searches"] for t in top)
    assert sum(t["searches"] for t in top) <= summary["searches"]

    # A re-run replaces the day's rows instead of adding to them.
    again = classify_queries(tm.settings, tm.store, tm.ds, model_predictor, VERSION, run_id="intent-run-2")
    assert again["queries"] == summary["queries"]
    assert [(i.query, i.searches, i.category, i.confidence) for i in tm.store.search_intents(tm.ds)] == \
           [(i.query, i.searches, i.category, i.confidence) for i in stored]
