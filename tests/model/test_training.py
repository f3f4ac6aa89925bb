"""CPU training on a small real subset (the session's trained_model): every candidate is trained and measured, the
loss falls, the saved directory is complete and its label map round-trips, the grouped split keeps near-identical
listings together, the embedding cache is hit on a second day, and registering writes the registry row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from shopflow.model.registry import MODEL_NAME, models, register_candidate
from shopflow.model.training import selection
from shopflow.model.training.candidates import BASELINE, FINETUNE, LINEAR
from shopflow.model.training.data import labelled_examples, normalised_title, product_groups, split_of
from shopflow.model.training.model import HEADS, LABEL_MAP, LabelMap


def test_loss_goes_down(trained_model):
    training = trained_model.result["training"]
    assert training["device"] == "cpu" and training["steps"] == 12
    assert training["final_loss"] < training["first_loss"], training


def test_saved_model_directory_and_label_map_round_trip(trained_model):
    directory = trained_model.model_dir
    for name in ("champion.json", "result.json", "finetune/config.json", "finetune/model.safetensors",
                 "finetune/tokenizer.json", f"finetune/{LABEL_MAP}", f"finetune/{HEADS}"):
        assert (directory / name).is_file(), name
    card = json.loads((directory / "champion.json").read_text())
    labels = LabelMap.read(directory / "finetune")
    assert labels.top == trained_model.result["labels"]["top"] == card["labels"]["top"]
    assert labels.l2 == trained_model.result["labels"]["l2"] == card["labels"]["l2"]
    assert labels.top == sorted(labels.top) and "other" in labels.top + labels.l2
    assert card["labels"]["fold_in"] == {"top": "other" if "other" in labels.top else None, "l2": "other"}
    assert labels.temperature_top > 0 and labels.temperature_l2 > 0
    assert card["selected"] == trained_model.result["selected"]
    for member in card["members"]:  # what serves is saved: linear members as joblib files
        if member["name"] != FINETUNE:
            assert (directory / "linear" / f"{member['name']}_top.joblib").is_file()
            assert (directory / "linear" / f"{member['name']}_l2.joblib").is_file()


def test_every_candidate_is_trained_and_measured_beside_the_baseline(trained_model):
    table = trained_model.result["candidates"]
    assert set(LINEAR) | {FINETUNE} <= set(table)
    assert {f"ensemble_{FINETUNE}+{name}" for name in LINEAR} <= set(table)
    for name, row in table.items():
        assert {"accuracy", "macro_f1", "ece", "per_class"} <= set(row["test"]), name
        assert 0 <= row["validation_macro_f1"] <= 1 and row["train_seconds"] >= 0
        assert (row.get("versus_baseline") is None) == (name == BASELINE)
    assert trained_model.result["metrics"]["top"]["n"] == trained_model.result["split_sizes"]["test"]
    assert trained_model.result["baseline"]["top"] == table[BASELINE]["test"]
    assert 0 <= trained_model.result["baseline"]["row_split_top"]["macro_f1"] <= 1
    # The proposal is the baseline, or a model whose gain over it is significant.
    selected = trained_model.result["selected"]
    assert selected == BASELINE or selection.significant(table[selected]["versus_baseline"])
    threshold = trained_model.result["repair_threshold"]["validation"]
    assert threshold["threshold"] is None or threshold["precision_lower_bound"] >= 0.97


def test_the_grouped_split_is_stable_and_keeps_same_title_listings_together(trained_model):
    examples = labelled_examples(trained_model.catalog, 40)
    assert examples["split"].tolist() == [split_of(g) for g in examples["group"]]
    assert examples["row_split"].tolist() == [split_of(u) for u in examples["uniq_id"]]
    titles = examples["text"].str.split(" | ", regex=False).str[0].map(normalised_title)
    assert (examples.groupby(titles)["split"].nunique() == 1).all()
    shares = examples["split"].value_counts(normalize=True)
    assert 0.7 < shares["train"] < 0.9 and 0.04 < shares["test"] < 0.16
    unlabelled = trained_model.catalog["category_status"].isin(["name_only", "missing"])
    assert set(examples["uniq_id"]).isdisjoint(trained_model.catalog.loc[unlabelled, "uniq_id"])
    truncated = trained_model.catalog.loc[trained_model.catalog["category_status"] == "truncated_leaf", "uniq_id"]
    assert set(truncated) <= set(examples["uniq_id"])  # the top level of a truncated tree is intact: learned from
    assert again_equal(examples, labelled_examples(trained_model.catalog.sample(frac=1, random_state=3), 40))


def again_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return a.reset_index(drop=True).equals(b.reset_index(drop=True))


_TITLE = st.text(alphabet=st.sampled_from("Ab c-D,é 1"), min_size=0, max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_TITLE, st.one_of(st.none(), st.sampled_from(["P1", "P2", "P3"]))), min_size=1,
                max_size=30))
def test_product_groups_join_equal_titles_and_equal_group_ids(rows):
    titles = pd.Series([t for t, _ in rows])
    group_ids = pd.Series([g for _, g in rows], dtype="object")
    ids = pd.Series([f"id{i}" for i in range(len(rows))])
    groups = product_groups(titles, group_ids, ids)
    for i, (title_i, gid_i) in enumerate(rows):
        for j, (title_j, gid_j) in enumerate(rows):
            same_title = normalised_title(title_i) == normalised_title(title_j) != ""
            if same_title or (gid_i is not None and gid_i == gid_j):
                assert groups[i] == groups[j]
    # A permutation of the rows gives every product the same group key.
    order = list(reversed(range(len(rows))))
    again = product_groups(titles[order].reset_index(drop=True), group_ids[order].reset_index(drop=True),
                           ids[order].reset_index(drop=True))
    assert again.tolist() == groups[order].tolist()


def test_paired_bootstrap_sees_a_real_gain_and_not_a_coin_flip():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 3000)
    groups = np.arange(3000) // 3
    weak = np.where(rng.random(3000) < 0.8, y, (y + 1) % 5)
    strong = np.where(rng.random(3000) < 0.95, y, (y + 1) % 5)
    clear = selection.paired_bootstrap(y, strong, weak, groups, 5, rounds=300)
    assert clear["gain"] > 0.1 and selection.significant(clear)
    noise = np.where(rng.random(3000) < 0.8, y, (y + 1) % 5)
    assert not selection.significant(selection.paired_bootstrap(y, noise, weak, groups, 5, rounds=300))
    assert selection.macro_f1(y, y, 5) == 1.0


def test_repair_threshold_meets_its_clopper_pearson_bound():
    rng = np.random.default_rng(1)
    confidence = rng.beta(30, 1, 20000)  # most answers confident, as a trained classifier's are
    correct = rng.random(20000) < confidence  # calibrated: right with probability = confidence
    fit = selection.repair_threshold(confidence, correct, np.ones(20000, bool), target=0.97)
    assert fit["threshold"] is not None and fit["precision_lower_bound"] >= 0.97
    assert 0.9 < fit["threshold"] < 1.0 and fit["filled"] > 1000
    lower = selection.precision_at(confidence, correct, np.ones(20000, bool), fit["threshold"] - 0.01)
    assert lower["precision_lower_bound"] < 0.97  # the lowest threshold that meets the bound (coverage is not wasted)
    assert selection.repair_threshold(confidence, np.zeros(20000, bool), np.ones(20000, bool))["threshold"] is None
    assert selection.clopper_pearson_lower(97, 100) < 0.97 < selection.clopper_pearson_lower(995, 1000)


def test_the_embedding_cache_is_hit_on_a_second_day(trained_model, tmp_path):
    from shopflow.model.embeddings import Embedder, describe_cache

    titles = trained_model.catalog["product_name"].head(60).tolist()
    first = Embedder(cache_dir=tmp_path, device="cpu")
    vectors = first.embed(titles[:40])
    assert first.stats["embedded"] == len(set(titles[:40])) and first.stats["cache_hits"] == 0
    second = Embedder(cache_dir=tmp_path, device="cpu")  # a new process on the next day
    again = second.embed(titles)
    assert second.stats["cache_hits"] == len(set(titles[:40])) and second.stats["embedded"] == len(set(titles)) - len(
        set(titles[:40]))
    assert np.allclose(again[:40], vectors, atol=1e-6) and np.allclose(np.linalg.norm(again, axis=1), 1, atol=1e-4)
    assert list(describe_cache(tmp_path).values()) == [len(set(titles))]


def test_registering_writes_the_registry_row_with_lineage(trained_model, tmp_path):
    from shopflow.store import migrate
    from shopflow.store.repository import MetadataStore

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    migrate.upgrade(url)
    store = MetadataStore(url)
    lineage = {"catalog_partitions": [{"ds": trained_model.ds.isoformat()}], "examples": 1}
    version = register_candidate(store, result=trained_model.result, ds=trained_model.ds, lineage=lineage, run_id="run-1")
    [row] = models(store)
    assert (row.name, row.version, row.status) == (MODEL_NAME, version, "candidate")
    assert row.artifact_path == trained_model.result["artifact_path"] and row.data_lineage == lineage
    assert row.hyperparameters["cpu_max_steps"] == 12 and row.airflow_run_id == "run-1"
    assert row.macro_f1 == trained_model.result["metrics"]["top"]["macro_f1"]


class _TinyClassifier:
    """Two linear heads over a mean of token embeddings: the loop's contract (ids + mask -> two logits) in 1 ms."""

    def __new__(cls):
        import torch
        from torch import nn

        class Tiny(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(50, 8)
                self.top, self.l2 = nn.Linear(8, 3), nn.Linear(8, 4)

            def forward(self, input_ids, mask):
                pooled = (self.embed(input_ids) * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
                return self.top(pooled), self.l2(pooled)

        torch.manual_seed(0)
        return Tiny()


def _tiny_training(**config_values):
    import numpy as np
    from shopflow.model.training import loop
    from shopflow.model.training.config import TrainingConfig

    ids = [[1 + (i % 40), 2 + (i % 7), 3] for i in range(400)]
    top, l2 = np.array([i % 3 for i in range(400)]), np.array([i % 4 for i in range(400)])
    lines: list[str] = []
    config = TrainingConfig(**{"base_model": "", "cpu_batch_size": 8, "log_every": 5, "device": "cpu", **config_values})
    stats = loop.train(_TinyClassifier(), ids, top, l2, 0, config, log=lines.append)
    return stats, lines


def test_cpu_training_stops_when_its_time_budget_is_spent():
    stats, lines = _tiny_training(cpu_time_budget_s=0.3, cpu_max_steps=10**7, log_every=1)
    assert 1 <= stats.steps < 10**7  # stopped by the budget, however many steps this machine managed
    assert lines[-1] == f"CPU time budget of 0s spent after {stats.steps} of 10000000 steps", lines[-3:]
    progress = [line for line in lines if line.startswith("step ")]
    assert progress and all(" samples/s eta " in line for line in progress), lines


def test_cpu_step_cap_applies_when_it_comes_before_the_budget():
    stats, lines = _tiny_training(cpu_time_budget_s=3600, cpu_max_steps=20)
    assert stats.steps == 20 and stats.samples == 160
    assert lines[-1].startswith("step 20/20 ")
