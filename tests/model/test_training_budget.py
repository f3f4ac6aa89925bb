"""The CPU training's budget savers keep its answers: the TF-IDF vectorisers shared between candidates, heads and
cross-validation folds give the same logits as each model fitting its own, and a fine-tune far below the linear
candidates on a CPU skips its ensembles, says so and records it (never on CUDA). Real Flipkart titles, a few hundred
of them; no timing is asserted."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from shopflow.model.training import candidates

CATALOG_FILES = {  # landing file name (sources.yaml) -> file in the sample data (as bench/train_loop.py)
    "flipkart_name_category_tree.csv": "flipkart_name_category_tree.csv.gz",
    "flipkart_prices_brand.csv": "flipkart_prices_brand.csv.gz",
    "flipkart_full_columns.csv": "flipkart_full_columns_first999.csv.gz",
}


@pytest.fixture(scope="module")
def small_examples(source_data):
    """About 400 labelled examples of the real catalogue: 80 of each of its five biggest top-level classes, plus the
    fold-in class, chosen by a stable order (uniq_id)."""
    from shopflow.ingest.readers import read_delimited
    from shopflow.model.training.data import labelled_examples
    from shopflow.sources import get_source
    from shopflow.sources.catalog import combine
    from shopflow.sources.cleaning import clean_partition

    spec = get_source("catalog")
    frames = {f.name: read_delimited(source_data / "catalog" / CATALOG_FILES[f.name], f.columns,
                                     has_header=f.header, delimiter=f.delimiter) for f in spec.files}
    clean = clean_partition(spec, combine(frames), date(2015, 12, 3)).clean
    examples = labelled_examples(clean, 40).sort_values("uniq_id")
    biggest = examples["label_top"].value_counts().index[:5]
    picked = examples[examples["label_top"].isin(biggest)].groupby("label_top", group_keys=False).head(80)
    return picked.reset_index(drop=True)


def _texts_and_labels(examples):
    train = examples[examples["split"] != "test"]
    test = examples[examples["split"] == "test"]
    top = {name: i for i, name in enumerate(sorted(examples["label_top"].unique()))}
    l2 = {name: i for i, name in enumerate(sorted(examples["label_l2"].unique()))}
    return (train["text"].tolist(), test["text"].tolist(), train["label_top"].map(top).to_numpy(),
            train["label_l2"].map(l2).to_numpy(), len(top), len(l2))


def test_shared_vectorisers_give_the_same_logits_as_fitting_them_per_candidate(small_examples):
    train, test, y_top, y_l2, n_top, n_l2 = _texts_and_labels(small_examples)
    rng = np.random.default_rng(7)  # stand-in embeddings: what is compared is the TF-IDF half of the features
    vectors = rng.normal(size=(len(train) + len(test), 16)).astype(np.float32)
    train_vectors, test_vectors = vectors[: len(train)], vectors[len(train):]
    shared = candidates.TextFeatures(train)
    test_matrix = shared.transform(test)
    for name in ("tfidf", "tfidf_embeddings"):
        for labels, n in ((y_top, n_top), (y_l2, n_l2)):  # one vectoriser fit serves both levels' heads
            alone = candidates.fit_linear(name, n, train, train_vectors, labels)
            together = candidates.fit_linear(name, n, train, train_vectors, labels, text_features=shared)
            expected = alone.logits(test, test_vectors)
            assert np.array_equal(expected, together.logits(test, test_vectors)), name
            assert np.array_equal(expected, together.logits(test, test_vectors, text_matrix=test_matrix)), name
            assert together.words is shared.words and together.chars is shared.chars
    # a cross-validation fold: both TF-IDF candidates on one vectoriser fit, the same probabilities as alone
    # (fold 1 is the test rows, held out from a fit on fold 0, the train rows; the test rows' stand-in labels only
    # train fold 0, whose answers are not compared)
    names = ("tfidf", "tfidf_embeddings", "embeddings")
    folds = np.array([0] * len(train) + [1] * len(test))
    both = candidates.cross_validated_probabilities(
        names, n_top, train + test, np.concatenate([train_vectors, test_vectors]),
        np.concatenate([y_top, np.zeros(len(test), dtype=y_top.dtype)]), folds)
    fold = {name: probs[folds == 1] for name, probs in both.items()}
    for name in names:
        alone = candidates.fit_linear(name, n_top, train, train_vectors, y_top)
        logits = alone.logits(test, test_vectors)
        expected = np.exp(logits - logits.max(1, keepdims=True))
        expected = (expected / expected.sum(1, keepdims=True)).astype(np.float32)
        np.testing.assert_allclose(fold[name], expected, rtol=0, atol=1e-6, err_msg=name)
        assert (fold[name].argmax(1) == expected.argmax(1)).all()
    with pytest.raises(ValueError, match="shared TF-IDF features"):
        candidates.fit_linear("tfidf", n_top, train[:-1], None, y_top[:-1], text_features=shared)


def test_a_fine_tune_far_below_the_linear_candidates_on_a_cpu_skips_its_ensembles(small_examples, tmp_path,
                                                                                   capsys):
    import json

    from shopflow.model import worker
    from shopflow.model.training.config import TrainingConfig

    path = tmp_path / "examples.parquet"
    small_examples.to_parquet(path, index=False)
    # 2 steps of 8: the fine-tune learns next to nothing; no time budget, so nothing depends on the machine's speed
    config = TrainingConfig(cpu_max_steps=2, cpu_batch_size=8, cpu_time_budget_s=0, device="cpu", log_every=1,
                            bootstrap_rounds=50, refit_on_all_labels=False)
    job = {"examples": str(path), "output_dir": str(tmp_path / "model"), "config": config.as_dict(),
           "embedding_cache_dir": str(tmp_path / "cache")}
    result = worker.run(job)
    table = result["candidates"]
    skipped = result["training"]["ensembles_skipped"]
    best = max(candidates.LINEAR, key=lambda name: table[name]["validation_macro_f1"])
    assert table[best]["validation_macro_f1"] - table[candidates.FINETUNE]["validation_macro_f1"] > 0.05
    assert skipped is not None and skipped["best_linear"] == best and skipped["margin"] == 0.05
    assert skipped["finetune_validation_macro_f1"] == round(table[candidates.FINETUNE]["validation_macro_f1"], 6)
    assert skipped["skipped"] == [f"ensemble_{candidates.FINETUNE}+{name}" for name in candidates.LINEAR]
    assert not any(name.startswith("ensemble_") for name in table)  # not built, not measured
    assert result["selected"] in candidates.LINEAR
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ensembles skipped")]
    assert len(lines) == 1
    assert f"{skipped['finetune_validation_macro_f1']:.4f}" in lines[0]
    assert f"{skipped['best_linear_validation_macro_f1']:.4f}" in lines[0]
    assert json.loads((tmp_path / "model" / "result.json").read_text())["training"]["ensembles_skipped"] == skipped
    # the label issues still come from the cross-validation's out-of-fold probabilities
    assert result["label_issues"]["products"] == len(small_examples)

    # the rule itself: never on CUDA; a margin of 1 always builds them
    class Stats:
        steps = 2

    assert worker._ensembles_skipped("cuda", table, list(candidates.LINEAR), 0.05, Stats()) is None
    assert worker._ensembles_skipped("cpu", table, list(candidates.LINEAR), 1.0, Stats()) is None
    assert worker._ensembles_skipped("cpu", table, list(candidates.LINEAR), 0.05, Stats())["best_linear"] == best


def test_fits_side_by_side_are_the_fits_one_after_the_other(small_examples):
    train, test, y_top, y_l2, n_top, n_l2 = _texts_and_labels(small_examples)
    shared = candidates.TextFeatures(train)
    fits = [candidates.Fit("tfidf", n_top, train, None, y_top, 13, shared),
            candidates.Fit("tfidf", n_l2, train, None, y_l2, 13, shared),
            candidates.Fit("tfidf", n_top, train, None, y_top, 13)]  # its own vectorisers, fitted in the worker
    side_by_side = candidates.fit_many(fits, n_jobs=2)
    for fit, model in zip(fits, side_by_side):
        alone = candidates.fit_linear(fit.features, fit.n_classes, train, None, fit.labels)
        assert np.array_equal(alone.logits(test, None), model.logits(test, None))
    assert side_by_side[0].words is shared.words and side_by_side[2].words is not shared.words


def test_repeated_sequences_are_predicted_once_with_the_same_logits():
    import torch
    from shopflow.model.training import loop

    class Heads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.embed = torch.nn.Embedding(50, 8)
            self.top, self.l2 = torch.nn.Linear(8, 3), torch.nn.Linear(8, 5)
            self.calls = 0

        def forward(self, input_ids, mask):
            self.calls += len(input_ids)
            pooled = (self.embed(input_ids) * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
            return self.top(pooled), self.l2(pooled)

    ids = [[1, 2, 3], [4, 5], [1, 2, 3], [6], [4, 5], [7, 8, 9, 10]]
    model = Heads()
    top, l2 = loop.predict_logits(model, ids, 0, 2, torch.device("cpu"))
    assert model.calls == 4 and top.shape == (6, 3) and l2.shape == (6, 5)
    for i, sequence in enumerate(ids):
        one_top, one_l2 = loop.predict_logits(model, [sequence], 0, 2, torch.device("cpu"))
        np.testing.assert_allclose(top[i], one_top[0], atol=1e-6)
        np.testing.assert_allclose(l2[i], one_l2[0], atol=1e-6)
    assert np.array_equal(top[0], top[2]) and np.array_equal(l2[1], l2[4])
