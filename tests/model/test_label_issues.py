"""Label issues (shopflow.model.training.label_issues): confident learning on out-of-fold probabilities at training,
and the repair's per-product decision from what the training saved."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from shopflow.model.training import label_issues

CLASSES = ["Clothing", "Footwear", "Jewellery", "other"]


def _probabilities(labels: np.ndarray, rng: np.random.Generator, sharp: float = 8.0) -> np.ndarray:
    logits = rng.normal(size=(len(labels), len(CLASSES)))
    logits[np.arange(len(labels)), labels] += sharp
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


@pytest.mark.filterwarnings("ignore:May not flag all label issues:UserWarning")  # the fold-in class has no examples
def test_flipped_labels_are_found_and_suggest_the_true_class():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, size=600)
    given_labels = truth.copy()
    flipped = rng.choice(600, size=30, replace=False)
    given_labels[flipped] = (truth[flipped] + 1) % 3
    found = label_issues.find_label_issues([f"p{i}" for i in range(600)], given_labels, _probabilities(truth, rng),
                                           CLASSES, fold_in="other")
    rows = found.rows
    issues = set(np.flatnonzero(rows["issue"].to_numpy()))
    assert issues == set(flipped.tolist())
    assert rows.loc[flipped, "suggested"].tolist() == [CLASSES[k] for k in truth[flipped]]
    assert rows.loc[rows["issue"], "label_quality"].max() < rows.loc[~rows["issue"], "label_quality"].min()
    assert set(found.class_thresholds) == set(CLASSES)
    pairs = found.pairs()
    assert sum(p["products"] for p in pairs) == 30 and pairs[0]["products"] >= pairs[-1]["products"]
    assert found.describe("tfidf")["pairs"] == pairs and found.describe("tfidf")["found"] == 30


def test_gold_labels_and_the_fold_in_class_are_never_flagged():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 4, size=400)
    given_labels = truth.copy()
    given_labels[:40] = (truth[:40] + 1) % 4  # some flips into and out of the fold-in class
    gold = np.zeros(400, dtype=bool)
    gold[:10] = True
    found = label_issues.find_label_issues([str(i) for i in range(400)], given_labels, _probabilities(truth, rng),
                                           CLASSES, fold_in="other", gold=gold)
    rows = found.rows
    assert not rows["issue"][:10].any(), "a reviewer's gold label is not flagged again"
    assert not rows.loc[rows["issue"], ["given", "suggested"]].isin(["other"]).any().any()
    assert rows["issue"][10:40].sum() >= 15


def test_one_class_and_nothing_labelled():
    assert label_issues.find_label_issues(["a", "b"], np.array([0, 0]), np.array([[1.0, 0.0], [0.9, 0.1]]),
                                          ["only", "other"]).found == 0
    assert len(label_issues.find_label_issues([], np.array([], dtype=int), np.zeros((0, 2)), ["a", "b"]).rows) == 0


def test_the_repair_uses_the_training_verdict_and_judges_the_rest_by_class_thresholds():
    rows = pd.DataFrame({"uniq_id": ["known-bad", "known-good", "recategorised"],
                         "given": ["Clothing", "Clothing", "Clothing"], "suggested": ["Footwear"] * 3,
                         "label_quality": [0.01, 0.9, 0.02], "suggested_probability": [0.95, 0.05, 0.9],
                         "issue": [True, False, True]})
    thresholds = {"Clothing": 0.8, "Footwear": 0.7, "Jewellery": 0.7, "other": 0.6}
    ids = pd.Series(["known-bad", "known-good", "recategorised", "new-bad", "new-good", "new-unsure",
                     "new-to-other", "broken"])
    given_now = pd.Series(["Clothing", "Clothing", "Jewellery", "Clothing", "Clothing", "Clothing", "Clothing", None],
                          dtype="string")
    probabilities = {  # the serving model's, for products the training did not judge
        "recategorised": [0.05, 0.05, 0.9, 0.0], "new-bad": [0.1, 0.85, 0.05, 0.0],
        "new-good": [0.9, 0.05, 0.05, 0.0], "new-unsure": [0.4, 0.5, 0.1, 0.0], "new-to-other": [0.1, 0.1, 0.1, 0.7]}
    asked = []

    def probabilities_of(positions):
        asked.extend(ids.iloc[positions])
        return np.array([probabilities[ids.iloc[i]] for i in positions])

    candidates = given_now.notna().to_numpy()
    out = label_issues.flag_products(ids, given_now, candidates, rows, thresholds, CLASSES, probabilities_of,
                                     fold_in="other")
    flagged = dict(zip(ids, out["flagged"]))
    assert flagged == {"known-bad": True, "known-good": False, "recategorised": False, "new-bad": True,
                       "new-good": False, "new-unsure": False, "new-to-other": False, "broken": False}
    assert sorted(asked) == sorted(["recategorised", "new-bad", "new-good", "new-unsure", "new-to-other"])
    assert out.loc[0, "suggested"] == "Footwear" and out.loc[0, "label_quality"] == 0.01
    assert out.loc[3, "suggested"] == "Footwear" and abs(out.loc[3, "label_quality"] - 0.1) < 1e-9
    assert pd.isna(out.loc[7, "label_quality"])


@given(st.lists(st.tuples(st.sampled_from(CLASSES + ["Rare"]), st.lists(st.floats(0, 1), min_size=4, max_size=4)),
                max_size=30))
def test_a_fresh_flag_always_names_a_known_other_class(products):
    ids = pd.Series([f"p{i}" for i in range(len(products))])
    given_now = pd.Series([g for g, _ in products], dtype="string")
    p = np.array([row for _, row in products]).reshape(len(products), 4)
    empty = pd.DataFrame({"uniq_id": [], "given": [], "suggested": [], "label_quality": [],
                          "suggested_probability": [], "issue": []})
    out = label_issues.flag_products(ids, given_now, np.ones(len(products), dtype=bool), empty,
                                     dict(zip(CLASSES, [0.5, 0.5, 0.5, 0.5])), CLASSES, lambda pos: p[pos],
                                     fold_in="other")
    assert len(out) == len(products)
    for (given_class, _), (_, row) in zip(products, out.iterrows()):
        if row["flagged"]:
            assert row["suggested"] in CLASSES[:3] and row["suggested"] != given_class
            assert given_class in CLASSES[:3]
        else:
            assert pd.isna(row["suggested"])


def test_the_hand_checked_flags_are_committed_and_read_by_the_benchmark():
    """100 real flags of the Flipkart catalogue (a seeded random sample of bench/label_noise.py --write-sample), each
    read with its given category tree: the precision bench/train.py prints comes from them."""
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("label_noise", repo / "bench" / "label_noise.py")
    label_noise = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(label_noise)
    path = repo / "tests" / "data" / "label_issues_checked.csv"
    checked = pd.read_csv(path, dtype=str)
    assert list(checked.columns) == ["uniq_id", "text", "given_tree", "given", "suggested", "label_quality",
                                     "suggested_probability", "verdict", "why"]
    assert len(checked) == 100 and not checked["uniq_id"].duplicated().any()
    assert set(checked["verdict"]) <= {"wrong_given", "wrong_both", "ambiguous", "right_given"}
    assert checked["why"].str.len().min() > 10
    assert (checked["given"] != checked["suggested"]).all()
    assert checked["given_tree"].str.split(" >> ").str[0].eq(checked["given"]).all()
    figures = label_noise.hand_checked(path)
    assert figures["n"] == 100 and 0 <= figures["precision"] <= figures["precision_counting_ambiguous"] <= 1
