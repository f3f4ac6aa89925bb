"""The approximate neighbour search of the embedding rule (`shopflow.governance.duplicates.approximate_knn`, a faiss
IVF index) against the exact one (`exact_knn`, the reference) on real catalogue titles.

The titles: the distinct normalised titles of the real Flipkart names file chosen by a hash (about one in eight),
embedded once for the module (cached in its tmp home). At the size where the index takes over
(SHOPFLOW_DUPLICATES_EXACT_BELOW) they are topped up with noisy copies of themselves (a real title's vector plus small
Gaussian noise, normalised again), as bench/duplicates.py does at 100k and 1M.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from model_fixtures import NAMES, _read

TITLE_PERCENT = 12
MIN_RECALL = 0.98


def _pairs(rows: np.ndarray, cols: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(np.minimum(rows, cols).tolist(), np.maximum(rows, cols).tolist()))


def _recall(found: set, exact: set) -> float:
    return len(found & exact) / len(exact)


@pytest.fixture(scope="module")
def real_titles(tmp_path_factory, source_data) -> tuple[list[str], np.ndarray]:
    from shopflow.model.embeddings import Embedder
    from shopflow.model.training.data import normalised_title

    titles = {}
    for _uniq_id, title, *_ in _read(source_data / NAMES):
        key = normalised_title(title)
        if key and int(hashlib.sha256(f"ann:{key}".encode()).hexdigest()[:8], 16) % 100 < TITLE_PERCENT:
            titles.setdefault(key, title)
    texts = [titles[key] for key in sorted(titles)]
    embedder = Embedder(cache_dir=tmp_path_factory.mktemp("ann") / "embeddings", device="cpu",
                        log_line=lambda line: None)
    return texts, np.asarray(embedder.embed(texts), dtype=np.float32)


@pytest.fixture(scope="module")
def at_the_switch(real_titles) -> np.ndarray:
    """The real title vectors topped up with noisy copies to the size where the index takes over."""
    from shopflow.governance.duplicates import DuplicatePolicy

    real = real_titles[1]
    size = DuplicatePolicy().exact_below
    rng = np.random.default_rng(3)
    copies = real[rng.integers(0, len(real), size - len(real))]
    copies = copies + rng.normal(0, 1, copies.shape).astype(np.float32) * rng.uniform(0.005, 0.04, (len(copies), 1))
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    return np.vstack([real, copies.astype(np.float32)])


@pytest.mark.slow
def test_the_index_finds_the_exact_pairs_on_real_titles(real_titles, at_the_switch):
    from shopflow.governance.duplicates import DuplicatePolicy, approximate_knn, exact_knn

    policy = DuplicatePolicy()
    for vectors in (real_titles[1], at_the_switch):
        exact_rows, exact_cols, _ = exact_knn(vectors, policy.top_k, policy.threshold)
        rows, cols, sims = approximate_knn(vectors, policy.top_k, policy.threshold)
        exact = _pairs(exact_rows, exact_cols)
        assert len(exact) > 100
        assert _recall(_pairs(rows, cols), exact) >= MIN_RECALL
        # the exact search's contract: sorted by row and neighbour, never itself, at most k, at the threshold
        assert np.array_equal(np.lexsort((cols, rows)), np.arange(len(rows))) and not (rows == cols).any()
        assert np.bincount(rows).max() <= policy.top_k and (sims >= policy.threshold).all()
        assert np.allclose(sims, np.einsum("ij,ij->i", vectors[rows], vectors[cols]), atol=1e-5)


@pytest.mark.slow
def test_the_index_gives_the_same_answer_every_run_and_with_any_thread_count(at_the_switch):
    import faiss

    from shopflow.governance.duplicates import approximate_knn

    first = approximate_knn(at_the_switch, 10, 0.85)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        single = approximate_knn(at_the_switch, 10, 0.85)
    finally:
        faiss.omp_set_num_threads(threads)
    again = approximate_knn(at_the_switch, 10, 0.85)
    for found in (single, again):
        assert all(np.array_equal(a, b) for a, b in zip(first, found))


def test_small_catalogues_keep_the_exact_search():
    from shopflow.governance.duplicates import DuplicatePolicy, approximate_knn, exact_knn, nearest_titles

    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(600, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = exact_knn(vectors, 5, 0.3)
    assert all(np.array_equal(a, b) for a, b in zip(nearest_titles(vectors, DuplicatePolicy(top_k=5, threshold=0.3)),
                                                    exact))
    indexed = nearest_titles(vectors, DuplicatePolicy(top_k=5, threshold=0.3, exact_below=0))
    assert all(np.array_equal(a, b) for a, b in zip(indexed, approximate_knn(vectors, 5, 0.3)))
    assert DuplicatePolicy.from_env({"SHOPFLOW_DUPLICATES_EXACT_BELOW": "5000"}).exact_below == 5000
    empty = approximate_knn(vectors[:1], 5, 0.3)
    assert all(len(part) == 0 for part in empty)


@pytest.mark.slow
def test_cluster_duplicates_through_the_index_keeps_the_exact_candidates(real_titles):
    from shopflow.governance.duplicates import DuplicatePolicy, cluster_duplicates

    texts, vectors = real_titles
    products = pd.DataFrame({
        "uniq_id": pd.array([f"p{i:05d}" for i in range(len(texts))], dtype="string"),
        "title": pd.array(texts, dtype="string"), "brand": pd.array([pd.NA] * len(texts), dtype="string"),
        "price": np.full(len(texts), np.nan), "category_top": pd.array([pd.NA] * len(texts), dtype="string"),
        "category_leaf": pd.array([pd.NA] * len(texts), dtype="string"), "category_depth": np.zeros(len(texts), int),
        "group": pd.array([pd.NA] * len(texts), dtype="string")})
    exact = cluster_duplicates(products, vectors, DuplicatePolicy())
    indexed = cluster_duplicates(products, vectors, DuplicatePolicy(exact_below=0))

    def embedding_candidates(result) -> set[tuple[str, str]]:
        found = result.candidates[result.candidates["rule"] == "embedding"]
        return set(zip(found["uniq_id_a"], found["uniq_id_b"]))

    exact_pairs = embedding_candidates(exact)
    assert len(exact_pairs) > 100
    assert _recall(embedding_candidates(indexed), exact_pairs) >= MIN_RECALL
    assert indexed.counts["products_in"] == exact.counts["products_in"]
