"""CPU training on a small real subset (the session's trained_model): the loss falls, the saved directory is
complete and its label map round-trips, the split is stable, and registering it writes the registry row."""

from __future__ import annotations

import json

from shopflow.registry import MODEL_NAME, models, register_candidate
from shopflow.training.data import labelled_examples, split_of
from shopflow.training.model import LABEL_MAP, L2_HEAD, LabelMap


def test_loss_goes_down(trained_model):
    training = trained_model.result["training"]
    assert training["device"] == "cpu" and training["steps"] == 12
    assert training["final_loss"] < training["first_loss"], training


def test_saved_model_directory_and_label_map_round_trip(trained_model):
    directory = trained_model.model_dir
    for name in ("config.json", "model.safetensors", "tokenizer.json", LABEL_MAP, L2_HEAD, "result.json"):
        assert (directory / name).is_file(), name
    labels = LabelMap(**json.loads((directory / LABEL_MAP).read_text()))
    assert labels.top == trained_model.result["labels"]["top"] and labels.l2 == trained_model.result["labels"]["l2"]
    assert labels.top == sorted(labels.top) and "other" in labels.top + labels.l2
    config = json.loads((directory / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(labels.top)}
    assert labels.temperature_top > 0 and labels.temperature_l2 > 0


def test_metrics_cover_model_and_baseline(trained_model):
    top = trained_model.result["metrics"]["top"]
    assert {"accuracy", "macro_f1", "ece", "per_class", "confusion_matrix"} <= set(top)
    matrix = top["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == top["n"] == trained_model.result["split_sizes"]["test"]
    assert 0 <= trained_model.result["baseline"]["top"]["macro_f1"] <= 1


def test_split_is_a_stable_function_of_the_product_id(trained_model):
    examples = labelled_examples(trained_model.catalog, 40)
    assert examples["split"].tolist() == [split_of(u) for u in examples["uniq_id"]]
    shares = examples["split"].value_counts(normalize=True)
    assert 0.75 < shares["train"] < 0.85 and 0.05 < shares["test"] < 0.15
    assert set(examples["uniq_id"]).isdisjoint(
        trained_model.catalog.loc[trained_model.catalog["category_status"] != "ok", "uniq_id"])


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

    from shopflow.training import loop
    from shopflow.training.config import TrainingConfig

    ids = [[1 + (i % 40), 2 + (i % 7), 3] for i in range(400)]
    top, l2 = np.array([i % 3 for i in range(400)]), np.array([i % 4 for i in range(400)])
    lines: list[str] = []
    config = TrainingConfig(**{"base_model": "", "cpu_batch_size": 8, "log_every": 5, "device": "cpu", **config_values})
    stats = loop.train(_TinyClassifier(), ids, top, l2, 0, config, log=lines.append)
    return stats, lines


def test_cpu_training_stops_when_its_time_budget_is_spent():
    stats, lines = _tiny_training(cpu_time_budget_s=0.3, cpu_max_steps=10**7, log_every=1)
    assert 1 <= stats.steps < 10**7 and stats.seconds < 30
    assert lines[-1] == f"CPU time budget of 0s spent after {stats.steps} of 10000000 steps", lines[-3:]
    progress = [line for line in lines if line.startswith("step ")]
    assert progress and all(" samples/s eta " in line for line in progress), lines


def test_cpu_step_cap_applies_when_it_comes_before_the_budget():
    stats, lines = _tiny_training(cpu_time_budget_s=3600, cpu_max_steps=20)
    assert stats.steps == 20 and stats.samples == 160
    assert lines[-1].startswith("step 20/20 ")
