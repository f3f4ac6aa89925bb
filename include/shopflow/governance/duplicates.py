"""Near-duplicate products of a catalogue: candidate pairs, agreement checks, clusters.

Owns the `duplicates` zone of the lake (`lake/duplicates/<source>/ds=…/part-0.parquet` and `pairs.parquet` beside
it, written by `shopflow.steps.model_branch.find_duplicates`), the governed dataset `catalog_duplicates` (its GX suite
is `SUITE`) and the rules that decide when two listings are one product. Columns are read through the source's
catalog role (id, title, brand, price, category levels or path, group), so another shop's catalogue works as is.
`find_duplicates` is pure (frames and vectors in, frames out); `publish_duplicates` reads the catalogue as of a day
from the store, embeds it (`shopflow.model.embeddings`, cached), writes the lake zone, validates it with `SUITE` and
records the run (`duplicate_runs`). Nothing here knows of Airflow.

Candidates come from two rules:
- `same_title`: products whose normalised titles are equal (`shopflow.model.training.data.normalised_title`; case,
  accents, punctuation and spacing folded) are paired, every pair of a title block (a block larger than
  `max_block` is chained instead, after sorting by brand, category, price and id, so it stays linear);
- `embedding`: one vector per distinct normalised title (the title of its smallest product id), its cosine
  k-nearest neighbours (top `top_k` other titles with similarity >= `threshold`), every product of one title against
  every product of the other. `nearest_titles` picks the search: below `exact_below` distinct titles (the shipped
  catalogue has 10,494) `exact_knn`, a blocked matrix multiply, exact and the reference; from there on
  `approximate_knn`, a faiss IVF index (k-means cells, each title searched in its `ANN_PROBES` nearest cells), which
  finds >= 0.98 of the exact search's pairs (measured: bench/duplicates.py; tests/governance/test_duplicates_ann.py).
  Exact search is quadratic (7.5 s at 16k titles, 285 s at 100k); the index is about linear (1M titles in minutes).

Every candidate then passes agreement checks, each `agree`, `missing` (a value absent: not evidence against) or
`disagree` (the pair is rejected, `rejected_by` names the first failed check):
- brand: equal after normalisation (or equal without spaces), or one missing;
- price: the larger price is at most `price_band` times the smaller, or a price missing;
- category: the top-level categories equal, or one missing;
- leaf: the deepest category levels (`category_leaf`) agree like titles do (below), or the paths differ in depth
  or one is missing (not comparable): a Flipkart leaf is often the listing's name with its colour or size;
- embedding pairs only, on the titles: identifiers (words holding a digit: model numbers, sizes, pack counts) are
  the same set, and words agree (every word of one title is a word of the other or spelled nearly like one,
  SequenceMatcher ratio >= `word_similarity`, or the titles are equal without spaces). Title embeddings alone put
  a product next to its siblings (another model number, another colour); these two checks keep those apart.

Accepted pairs are edges; connected components of size >= 2 are clusters, each named by its smallest product id.
Output, one row per member product (`MEMBER_COLUMNS`): its cluster, the cluster's size, its nearest accepted
neighbour, their similarity (cosine of the products' own title vectors, 0..1) and the rule and reason of that
edge. The files name the product key after the source's declared id column (`key_column`: `sku`, `nearest_sku`,
`sku_a`, `sku_b` for a source keyed by sku; `uniq_id` for the shipped catalogue); the library's frames use
`uniq_id`, and `read_members` reads a file of either naming (files written before the rename say `uniq_id`).
Every product is accounted for: it is a member of a cluster or a singleton (`DuplicateResult.counts`).
Connected components are transitive: a cluster may hold two products that do not agree directly (a chain of
prices each within the band); the pairs table says which pairs were checked and accepted.

Measured on the real Flipkart catalogue (16,028 products; `bench/duplicates.py`): 1,582 clusters holding 6,580
products; the one pair of the data that shares a pid is found; 88% of synthetic near-duplicates (a typo, a joined
or split word, reordered words, a plural, a repeated word, case) are found; of 207 accepted pairs read by eye
(tests/data/duplicate_pairs_checked.csv) 86% are the same listing and 97% the same product line (the rest:
another colour, size or model under nearly one title). The approximate search against the exact one (bench section 5,
2 shared CPU cores; synthetic titles beyond the real ones are noisy copies of real title vectors): recall 0.9998 at
the real 10,494 titles, 0.9995 at 100k products and 1.0000 at 1M (on 2,000 sampled titles), 1M in 412 s and 4.2 GiB
against an estimated 8 hours exact.
"""

from __future__ import annotations

import difflib
import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping

import numpy as np
import pandas as pd

from shopflow.config.options import default, values_of
from shopflow.model.training.data import normalised_title
from shopflow.sources import SourceSpec
from shopflow.sources.ledger import LedgerMismatch
from shopflow.sources.role_frames import CATEGORY_PATH_SEPARATOR, categories

log = logging.getLogger("shopflow.governance.duplicates")

DATASET = "catalog_duplicates"
ZONE = "duplicates"
SAME_TITLE, EMBEDDING = "same_title", "embedding"
AGREE, MISSING, DISAGREE = "agree", "missing", "disagree"
CHECKS = ("brand", "price", "category", "leaf", "identifiers", "words")
KEY = "uniq_id"  # the product key's name in the library's frames (and in files written before keys were named)
OUTPUT_COLUMNS = ("cluster_id", "cluster_size", "similarity", "rule", "reason")


def member_columns(key: str = KEY) -> list[str]:
    return ["cluster_id", key, "cluster_size", f"nearest_{key}", "similarity", "rule", "reason"]


def pair_columns(key: str = KEY) -> list[str]:
    return ["cluster_id", f"{key}_a", f"{key}_b", "similarity", "rule", "reason"]


MEMBER_COLUMNS = member_columns()
PAIR_COLUMNS = pair_columns()


def key_column(spec: SourceSpec) -> str:
    """The product key's name in the duplicates files of `spec`: its declared id column (`uniq_id` where it declares
    none, or where that name is one of the files' other columns)."""
    name = spec.role_column("id")
    return name if name and name not in OUTPUT_COLUMNS else KEY


def keyed(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """A members or pairs frame of the library with its key columns named after `key` (the files' naming)."""
    names = {KEY: key, f"nearest_{KEY}": f"nearest_{key}", f"{KEY}_a": f"{key}_a", f"{KEY}_b": f"{key}_b"}
    return frame.rename(columns={old: new for old, new in names.items() if old in frame})


def read_members(path, spec: SourceSpec) -> pd.DataFrame:
    """A members file as the library's frame (key columns `uniq_id`, `nearest_uniq_id`, as text), whether it names
    the key after `spec`'s id column or, written before keys were named, `uniq_id`."""
    from shopflow.common.parquet import parquet_columns, read_parquet

    key = key_column(spec)
    if key not in set(parquet_columns(path)):
        key = KEY
    members = read_parquet(path).rename(columns={key: KEY, f"nearest_{key}": f"nearest_{KEY}"})
    for column in (KEY, f"nearest_{KEY}", "cluster_id"):
        if column in members:
            members[column] = members[column].astype("string")
    return members


def suite(key: str = KEY) -> list[dict]:
    """The GX suite of `catalog_duplicates` (shopflow.validation.suites.expectation_specs) on a members file whose key
    is `key`: expectation dicts as in the sources file, every one critical."""
    return [
        {"expect": "ExpectColumnValuesToNotBeNull", "column": "cluster_id"},
        {"expect": "ExpectColumnValuesToNotBeNull", "column": key},
        {"expect": "ExpectColumnValuesToBeUnique", "column": key},
        {"expect": "ExpectColumnValuesToNotBeNull", "column": f"nearest_{key}"},
        {"expect": "ExpectColumnValuesToBeBetween", "column": "cluster_size", "min_value": 2},
        {"expect": "ExpectColumnValuesToBeBetween", "column": "similarity", "min_value": 0, "max_value": 1},
        {"expect": "ExpectColumnValuesToBeInSet", "column": "rule", "value_set": [SAME_TITLE, EMBEDDING]},
        {"expect": "ExpectColumnValuesToNotBeNull", "column": "reason"},
    ]


SUITE = suite()


class DuplicateLedgerMismatch(LedgerMismatch):
    """Products in != products in clusters + singletons, or the written rows say otherwise."""


class DuplicatesValidationFailed(RuntimeError):
    """A critical expectation of the catalog_duplicates suite failed: nothing was published."""


@dataclass(frozen=True)
class DuplicatePolicy:
    """The knobs of the search and the checks (environment: SHOPFLOW_DUPLICATES_<NAME>, declared with their defaults
    in shopflow.config.options; `block_bytes` is not a setting)."""

    threshold: float = default("SHOPFLOW_DUPLICATES_THRESHOLD")  # cosine similarity for an embedding candidate
    top_k: int = default("SHOPFLOW_DUPLICATES_TOP_K")  # neighbouring titles per title
    price_band: float = default("SHOPFLOW_DUPLICATES_PRICE_BAND")  # max price / min price of a pair
    word_similarity: float = default("SHOPFLOW_DUPLICATES_WORD_SIMILARITY")  # "spelled nearly like" (difflib ratio)
    max_block: int = default("SHOPFLOW_DUPLICATES_MAX_BLOCK")  # a larger same-title block is chained, not all-pairs
    exact_below: int = default("SHOPFLOW_DUPLICATES_EXACT_BELOW")  # fewer distinct titles: exact search, else the index
    block_bytes: int = 256 * 2**20  # memory of one similarity block of the exact search

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "DuplicatePolicy":
        return cls(**values_of("DuplicatePolicy", env))

    def describe(self) -> dict:
        return {"threshold": self.threshold, "top_k": self.top_k, "price_band": self.price_band,
                "word_similarity": self.word_similarity, "max_block": self.max_block, "exact_below": self.exact_below}


@dataclass
class DuplicateResult:
    members: pd.DataFrame  # MEMBER_COLUMNS, one row per product in a cluster, sorted by cluster_id, uniq_id
    pairs: pd.DataFrame  # PAIR_COLUMNS, the accepted pairs, sorted
    candidates: pd.DataFrame  # every candidate pair with its check outcomes, `accepted` and `rejected_by`
    counts: dict = field(default_factory=dict)


# ---- products by role ------------------------------------------------------------------------------------------
def catalogue_products(frame: pd.DataFrame, spec: SourceSpec) -> pd.DataFrame:
    """uniq_id, title, brand, price, category_top and group of every product, read through the catalog role (a field
    the role does not map is all missing), sorted by uniq_id."""
    def column(role_field: str) -> pd.Series:
        name = spec.role_column(role_field)
        if name and name in frame:
            return frame[name]
        return pd.Series(pd.NA, index=frame.index, dtype="object")

    top, _ = categories(frame, spec)
    leaf, depth = category_leaf(frame, spec)
    products = pd.DataFrame({
        "uniq_id": column("id").astype("string"),
        "title": column("title").astype("string"),
        "brand": column("brand").astype("string"),
        "price": pd.to_numeric(column("price"), errors="coerce").astype("float64"),
        "category_top": (top if top is not None else pd.Series(pd.NA, index=frame.index)).astype("string"),
        "category_leaf": leaf,
        "category_depth": depth,
        "group": column("group").astype("string"),
    }, index=frame.index)
    return products.sort_values("uniq_id", kind="stable").reset_index(drop=True)


def category_leaf(frame: pd.DataFrame, spec: SourceSpec) -> tuple[pd.Series, pd.Series]:
    """Each product's deepest category level and the number of levels: the last part of its category_path, else
    its last mapped category level that has a value. A Flipkart tree's leaf is often the product's own name with its
    colour or size ("... > GAGA Canvas Painting (18 inch x 24 inch)"): what tells two same-title listings apart."""
    path = spec.role_column("category_path")
    if path and path in frame:
        parts = frame[path].astype("string").str.split(CATEGORY_PATH_SEPARATOR)
        leaf, depth = parts.str[-1].str.strip(), parts.str.len()
    else:
        levels = [frame[c].astype("string") for c in spec.role.columns("category_levels") if c in frame]
        leaf = pd.Series(pd.NA, index=frame.index, dtype="string")
        depth = pd.Series(0, index=frame.index)
        for number, level in enumerate(levels, start=1):
            present = level.notna() & (level.str.strip() != "")
            leaf, depth = leaf.mask(present, level.str.strip()), depth.mask(present, number)
    return leaf.astype("string"), pd.to_numeric(depth, errors="coerce").fillna(0).astype("int64")


def embedding_texts(products: pd.DataFrame) -> list[str]:
    """What is embedded per product: its title (brand and price are checked, not embedded)."""
    return products["title"].fillna("").astype(str).tolist()


# ---- exact nearest neighbours ----------------------------------------------------------------------------------
def exact_knn(vectors: np.ndarray, k: int, threshold: float, block_bytes: int = 256 * 2**20,
              query_rows: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top `k` other rows of each row of `vectors` (L2-normalised) by cosine similarity, kept where the
    similarity is >= `threshold`: (row, neighbour, similarity) arrays, sorted by row and neighbour. Exact: one
    blocked matrix multiply, each block of rows against all rows, sized to `block_bytes` of similarities.
    `query_rows`: search only the first that many rows (against all of them; for timing a slice)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    k = min(k, n - 1)
    if n < 2 or k < 1:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    rows_per_block = max(1, min(n, block_bytes // (4 * n)))
    found_rows, found_cols, found_sims = [], [], []
    queries = n if query_rows is None else min(n, query_rows)
    for start in range(0, queries, rows_per_block):
        stop = min(queries, start + rows_per_block)
        sims = vectors[start:stop] @ vectors.T
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not its own neighbour
        # Most rows have fewer than k neighbours above the threshold: take those as they are, and select the top k
        # only of the rows that have more (all rows, without a threshold).
        above = sims >= threshold
        crowded = above.sum(axis=1) > k
        if crowded.all():
            top = np.argpartition(sims, -k, axis=1)[:, -k:]
            rows, cols = np.repeat(np.arange(stop - start), k), top.ravel()
            keep = sims[rows, cols] >= threshold
            rows, cols = rows[keep], cols[keep]
        else:
            rows, cols = np.nonzero(above & ~crowded[:, None])
            if crowded.any():
                crowded_rows = np.flatnonzero(crowded)
                top = np.argpartition(sims[crowded_rows], -k, axis=1)[:, -k:]
                rows = np.concatenate([rows, np.repeat(crowded_rows, k)])
                cols = np.concatenate([cols, top.ravel()])
        found_rows.append(rows + start)
        found_cols.append(cols)
        found_sims.append(sims[rows, cols])
    rows, cols, sims = np.concatenate(found_rows), np.concatenate(found_cols), np.concatenate(found_sims)
    order = np.lexsort((cols, rows))
    return rows[order].astype(np.int64), cols[order].astype(np.int64), sims[order]


# ---- approximate nearest neighbours -----------------------------------------------------------------------------
ANN_SEED = 20151203  # k-means' training sample and initial centroids
ANN_TRAINING_PER_CELL = 40  # training vectors per cell (faiss wants at least 39)
ANN_KMEANS_ITERATIONS = 10
ANN_PROBES = 8  # cells searched per title: recall against time (0.9995 at 100k titles, 1.0 at 1M; bench section 5)


def ann_cells(n: int) -> int:
    """Cells of the approximate index for `n` vectors: the power of two nearest 4 * sqrt(n) (a cell holds ~sqrt(n)/4
    vectors, so one probe costs little and the k-means stays affordable), fewer where the training sample is short."""
    cells = 2 ** round(np.log2(max(1.0, 4 * np.sqrt(n))))
    return int(max(1, min(cells, n // ANN_TRAINING_PER_CELL)))


def approximate_knn(vectors: np.ndarray, k: int, threshold: float, probes: int = ANN_PROBES,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`exact_knn`'s answer found through an index: (row, neighbour, similarity) arrays, sorted by row and
    neighbour, each row's top `k` other rows with similarity >= `threshold` among the rows of its `probes` nearest
    cells. The index is faiss `IndexIVFFlat` over inner products (the vectors are L2-normalised, so cosine): k-means
    cells (`ann_cells`) trained on a seeded sample, every vector stored as it is, so a found similarity is exact and
    only a neighbour outside the probed cells can be missed.

    Deterministic, whatever the thread count: the training sample and k-means' start come from `ANN_SEED`; every
    later step is a function of one vector or one cell (a vector goes to its nearest centroid, a cell keeps its
    vectors in row order, a query scans its cells alone), and ties are broken by the smaller row; the test compares
    runs with one and with two threads."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dimensions = vectors.shape
    k = min(k, n - 1)
    if n < 2 or k < 1:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    cells = ann_cells(n)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimensions), dimensions, cells, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed, index.cp.niter = ANN_SEED, ANN_KMEANS_ITERATIONS
    sample = np.random.default_rng(ANN_SEED).choice(n, min(n, cells * ANN_TRAINING_PER_CELL), replace=False)
    index.train(vectors[np.sort(sample)])
    index.add(vectors)
    index.nprobe = min(probes, cells)
    sims, found = index.search(vectors, k + 1)  # k others, and the row itself
    rows = np.repeat(np.arange(n, dtype=np.int64), k + 1)
    cols, sims = found.ravel().astype(np.int64), sims.ravel()
    sims = np.where((cols < 0) | (cols == rows), -np.inf, sims)  # not found, or itself
    order = np.lexsort((cols, -sims, rows))  # by row, then similarity (descending), then neighbour
    rank = np.arange(len(order)) - rows[order] * (k + 1)
    keep = order[(rank < k) & (sims[order] >= threshold)]
    keep = keep[np.lexsort((cols[keep], rows[keep]))]
    return rows[keep], cols[keep], sims[keep].astype(np.float32)


def nearest_titles(vectors: np.ndarray, policy: DuplicatePolicy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The embedding rule's neighbours of each title vector: exact below `policy.exact_below` vectors, else
    approximate (module docstring)."""
    if len(vectors) < policy.exact_below:
        return exact_knn(vectors, policy.top_k, policy.threshold, policy.block_bytes)
    started = time.perf_counter()
    found = approximate_knn(vectors, policy.top_k, policy.threshold)
    log.info("approximate neighbours of %s titles (%d cells, %d probed): %.1fs", f"{len(vectors):,}",
             ann_cells(len(vectors)), ANN_PROBES, time.perf_counter() - started)
    return found


# ---- candidates ------------------------------------------------------------------------------------------------
def _pair_frame(a: np.ndarray, b: np.ndarray, rule: str) -> pd.DataFrame:
    low, high = np.minimum(a, b), np.maximum(a, b)
    return pd.DataFrame({"a": low.astype(np.int64), "b": high.astype(np.int64), "rule": rule})


def _same_title_pairs(keys: np.ndarray, products: pd.DataFrame, max_block: int) -> pd.DataFrame:
    titled = np.flatnonzero(keys != "")
    frame = pd.DataFrame({"row": titled, "key": keys[titled]})
    sizes = frame.groupby("key", sort=True)["row"].transform("size").to_numpy()
    frame = frame[sizes >= 2]
    a_parts, b_parts = [], []
    for _key, rows in frame.groupby("key", sort=True)["row"]:
        rows = rows.to_numpy()
        if len(rows) <= max_block:
            i, j = np.triu_indices(len(rows), 1)
            a_parts.append(rows[i])
            b_parts.append(rows[j])
        else:  # chain, after sorting by what the checks look at, so neighbours in the chain are alike
            block = products.iloc[rows]
            order = block.assign(_brand=block["brand"].map(_brand_key)).sort_values(
                ["_brand", "category_top", "price", "uniq_id"], kind="stable", na_position="last").index.to_numpy()
            a_parts.append(order[:-1])
            b_parts.append(order[1:])
    if not a_parts:
        return _pair_frame(np.zeros(0, np.int64), np.zeros(0, np.int64), SAME_TITLE)
    return _pair_frame(np.concatenate(a_parts), np.concatenate(b_parts), SAME_TITLE)


def _title_representatives(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct title keys, the row of each one's first product): products are sorted by id, so its smallest)."""
    titled = np.flatnonzero(keys != "")
    distinct, first = np.unique(keys[titled], return_index=True)
    return distinct, titled[first]


# ---- checks ----------------------------------------------------------------------------------------------------
def _brand_key(brand) -> str:
    return normalised_title(brand) if isinstance(brand, str) else ""


def _outcome(missing: np.ndarray, agree: np.ndarray) -> np.ndarray:
    return np.where(missing, MISSING, np.where(agree, AGREE, DISAGREE)).astype(object)


def brand_check(brand_a: np.ndarray, brand_b: np.ndarray) -> np.ndarray:
    """agree / missing / disagree per pair of normalised brands ("" = missing)."""
    missing = (brand_a == "") | (brand_b == "")
    squeeze = np.vectorize(lambda s: s.replace(" ", ""), otypes=[object])
    agree = (brand_a == brand_b) | (squeeze(brand_a) == squeeze(brand_b)) if len(brand_a) else np.zeros(0, bool)
    return _outcome(missing, agree)


def prices_within_band(price_a: np.ndarray, price_b: np.ndarray, band: float) -> np.ndarray:
    """agree when max/min <= band; missing when a price is missing or not positive."""
    missing = ~(np.isfinite(price_a) & np.isfinite(price_b) & (price_a > 0) & (price_b > 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.maximum(price_a, price_b) / np.minimum(price_a, price_b)
    return _outcome(missing, ratio <= band)


def category_check(top_a: np.ndarray, top_b: np.ndarray) -> np.ndarray:
    missing = (top_a == "") | (top_b == "")
    return _outcome(missing, top_a == top_b)


def leaf_check(leaf_a: np.ndarray, leaf_b: np.ndarray, depth_a: np.ndarray, depth_b: np.ndarray,
               word_similarity: float) -> np.ndarray:
    """agree / missing (a leaf absent, or paths of different depth) / disagree, per pair of normalised leaves."""
    missing = (leaf_a == "") | (leaf_b == "") | (depth_a != depth_b)
    agree = np.array([x == y or (identifiers(x) == identifiers(y) and words_agree(x, y, word_similarity))
                      for x, y in zip(leaf_a, leaf_b)], dtype=bool)
    return _outcome(missing, agree)


def identifiers(key: str) -> frozenset[str]:
    """The words of a normalised title that hold a digit (model numbers, sizes, pack counts)."""
    return frozenset(word for word in key.split() if any(ch.isdigit() for ch in word))


def words_agree(key_a: str, key_b: str, word_similarity: float) -> bool:
    """Every word of each title is a word of the other or spelled nearly like one of them (digit words excepted:
    `identifiers` compares those), or the titles are equal without spaces."""
    if key_a.replace(" ", "") == key_b.replace(" ", ""):
        return True
    words_a, words_b = set(key_a.split()), set(key_b.split())
    for own, other in ((words_a - words_b, words_b), (words_b - words_a, words_a)):
        for word in own:
            if any(ch.isdigit() for ch in word):
                continue
            if not any(_spelled_alike(word, candidate, word_similarity) for candidate in other):
                return False
    return True


@lru_cache(maxsize=2**16)
def _spelled_alike(word: str, other: str, word_similarity: float) -> bool:
    if 2 * min(len(word), len(other)) < word_similarity * (len(word) + len(other)):
        return False  # the ratio cannot reach the bound (it is at most 2 * shorter / total)
    return difflib.SequenceMatcher(None, word, other).ratio() >= word_similarity


def _reason(rule: str, threshold: float, outcomes: dict[str, str]) -> str:
    if rule == SAME_TITLE:
        agreed = [name for name in ("brand", "price", "category", "leaf") if outcomes[name] == AGREE]
        return SAME_TITLE + (f" {'+'.join(agreed)} agree" if agreed else "")
    agreed = [name for name in CHECKS if outcomes[name] == AGREE]
    missing = [name for name in CHECKS if outcomes[name] == MISSING]
    text = f"embedding>={threshold:.2f} {'+'.join(agreed)} agree"
    return text + (f" ({'+'.join(missing)} missing)" if missing else "")


# ---- the whole search ------------------------------------------------------------------------------------------
def cluster_duplicates(products: pd.DataFrame, vectors: np.ndarray, policy: DuplicatePolicy | None = None,
                    ) -> DuplicateResult:
    """Clusters of near-duplicate products (see the module docstring). `products`: `catalogue_products` (sorted by
    uniq_id, unique ids); `vectors`: their L2-normalised title embeddings, row for row."""
    policy = policy or DuplicatePolicy()
    products = products.reset_index(drop=True)
    if len(vectors) != len(products):
        raise ValueError(f"{len(vectors)} vectors for {len(products)} products")
    if products["uniq_id"].duplicated().any() or products["uniq_id"].isna().any():
        raise ValueError("product ids must be present and unique")
    vectors = np.asarray(vectors, dtype=np.float32)
    keys = np.array([normalised_title(t) if isinstance(t, str) else "" for t in products["title"].tolist()],
                    dtype=object)
    # Same-title pairs.
    same = _same_title_pairs(keys, products, policy.max_block)
    # Embedding pairs between distinct titles, checked on the titles first, then expanded to their products.
    distinct, representatives = _title_representatives(keys)
    rows, cols, _ = nearest_titles(vectors[representatives], policy)
    title_pairs = pd.DataFrame({"ta": np.minimum(rows, cols), "tb": np.maximum(rows, cols)}).drop_duplicates()
    title_pairs = title_pairs.sort_values(["ta", "tb"]).reset_index(drop=True)
    ta, tb = distinct[title_pairs["ta"].to_numpy()], distinct[title_pairs["tb"].to_numpy()]
    title_pairs["identifiers"] = [AGREE if identifiers(x) == identifiers(y) else DISAGREE for x, y in zip(ta, tb)]
    title_pairs["words"] = [AGREE if words_agree(x, y, policy.word_similarity) else DISAGREE for x, y in zip(ta, tb)]
    embedding = _expand(title_pairs, distinct, keys)

    candidates = pd.concat([same, embedding], ignore_index=True)
    for name in ("identifiers", "words"):
        if name not in candidates:
            candidates[name] = AGREE
        candidates[name] = candidates[name].fillna(AGREE)  # same-title pairs: equal titles
    a, b = candidates["a"].to_numpy(), candidates["b"].to_numpy()
    brands = products["brand"].map(_brand_key).to_numpy(dtype=object)
    prices = products["price"].to_numpy(dtype="float64")
    tops = products["category_top"].fillna("").astype(str).str.strip().to_numpy(dtype=object)
    candidates["brand"] = brand_check(brands[a], brands[b])
    candidates["price"] = prices_within_band(prices[a], prices[b], policy.price_band)
    candidates["category"] = category_check(tops[a], tops[b])
    leaves = np.array([normalised_title(v) if isinstance(v, str) else "" for v in products["category_leaf"].tolist()],
                      dtype=object)
    depths = products["category_depth"].to_numpy(dtype=np.int64)
    candidates["leaf"] = leaf_check(leaves[a], leaves[b], depths[a], depths[b], policy.word_similarity)
    outcomes = candidates[list(CHECKS)].to_numpy(dtype=object)
    failed = outcomes == DISAGREE
    candidates["accepted"] = ~failed.any(axis=1)
    first_failure = np.array(CHECKS, dtype=object)[failed.argmax(axis=1)] if len(candidates) else np.array([], object)
    candidates["rejected_by"] = pd.Series(np.where(candidates["accepted"], None, first_failure), dtype="object")
    candidates["similarity"] = _pair_similarity(vectors, a, b)
    candidates["reason"] = [
        _reason(rule, policy.threshold, dict(zip(CHECKS, row))) if ok else None
        for rule, row, ok in zip(candidates["rule"], outcomes, candidates["accepted"])]
    ids = products["uniq_id"].astype(str).to_numpy(dtype=object)
    candidates.insert(2, "uniq_id_a", ids[a])
    candidates.insert(3, "uniq_id_b", ids[b])
    candidates = candidates.sort_values(["a", "b", "rule"], kind="stable").reset_index(drop=True)

    members, pairs = _clusters(products, candidates[candidates["accepted"]], ids)
    counts = ledger(len(products), members, pairs, candidates)
    return DuplicateResult(members=members, pairs=pairs, candidates=candidates, counts=counts)


def _expand(title_pairs: pd.DataFrame, distinct: np.ndarray, keys: np.ndarray) -> pd.DataFrame:
    """Product pairs of every title pair: each product of one title against each of the other. A title pair that
    fails a title check stays one pair (its two representatives), so a rejection is counted once, not multiplied."""
    titled = keys != ""
    title_of = np.full(len(keys), -1, dtype=np.int64)
    title_of[titled] = np.searchsorted(distinct, keys[titled].astype(str))
    order = np.argsort(title_of, kind="stable")  # the rows of each title, in product order, title after title
    counts = np.bincount(title_of[titled], minlength=len(distinct))
    starts = np.searchsorted(title_of[order], np.arange(len(distinct)))
    ta, tb = title_pairs["ta"].to_numpy(np.int64), title_pairs["tb"].to_numpy(np.int64)
    passed = ((title_pairs["identifiers"] == AGREE) & (title_pairs["words"] == AGREE)).to_numpy()
    width_b = np.where(passed, counts[tb], 1)
    sizes = np.where(passed, counts[ta], 1) * width_b
    pair_of = np.repeat(np.arange(len(title_pairs)), sizes)
    local = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    a = order[starts[ta][pair_of] + local // width_b[pair_of]]
    b = order[starts[tb][pair_of] + local % width_b[pair_of]]
    expanded = _pair_frame(a, b, EMBEDDING)
    expanded["identifiers"] = title_pairs["identifiers"].to_numpy(dtype=object)[pair_of]
    expanded["words"] = title_pairs["words"].to_numpy(dtype=object)[pair_of]
    return expanded


def _pair_similarity(vectors: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each pair's vectors, row by row (the same value whatever the batch), in 0..1, 4 decimals."""
    if not len(a):
        return np.zeros(0, np.float64)
    sims = np.einsum("ij,ij->i", vectors[a].astype(np.float64), vectors[b].astype(np.float64))
    return np.clip(np.round(sims, 4), 0.0, 1.0)


def _clusters(products: pd.DataFrame, accepted: pd.DataFrame, ids: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(products)
    a, b = accepted["a"].to_numpy(), accepted["b"].to_numpy()
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels, minlength=labels.max() + 1 if n else 0)
    # The cluster id: the smallest product id of the component (products are sorted by id: its first row).
    first_row = np.full(len(sizes), n, dtype=np.int64)
    np.minimum.at(first_row, labels, np.arange(n))
    cluster_id = ids[first_row[labels]] if n else np.array([], object)

    # Each member's nearest accepted neighbour: highest similarity, then same_title before embedding, then the
    # smaller neighbour id.
    edges = pd.concat([
        pd.DataFrame({"row": a, "other": b}), pd.DataFrame({"row": b, "other": a})], ignore_index=True)
    edges["similarity"] = np.concatenate([accepted["similarity"].to_numpy()] * 2)
    edges["rule"] = np.concatenate([accepted["rule"].to_numpy()] * 2)
    edges["reason"] = np.concatenate([accepted["reason"].to_numpy()] * 2)
    edges["rule_order"] = (edges["rule"] != SAME_TITLE).astype(int)
    edges["other_id"] = ids[edges["other"].to_numpy()] if len(edges) else pd.Series([], dtype=object)
    best = edges.sort_values(["row", "similarity", "rule_order", "other_id"], ascending=[True, False, True, True],
                             kind="stable").drop_duplicates("row")
    members = pd.DataFrame({
        "cluster_id": cluster_id[best["row"].to_numpy()],
        "uniq_id": ids[best["row"].to_numpy()],
        "cluster_size": sizes[labels[best["row"].to_numpy()]].astype(np.int64),
        "nearest_uniq_id": best["other_id"].to_numpy(),
        "similarity": best["similarity"].to_numpy(dtype=np.float64),
        "rule": best["rule"].to_numpy(),
        "reason": best["reason"].to_numpy(),
    })
    members = _typed(members.sort_values(["cluster_id", "uniq_id"]).reset_index(drop=True), MEMBER_COLUMNS)
    pairs = pd.DataFrame({
        "cluster_id": cluster_id[a] if len(a) else np.array([], object),
        "uniq_id_a": accepted["uniq_id_a"].to_numpy(), "uniq_id_b": accepted["uniq_id_b"].to_numpy(),
        "similarity": accepted["similarity"].to_numpy(dtype=np.float64), "rule": accepted["rule"].to_numpy(),
        "reason": accepted["reason"].to_numpy(),
    })
    # One row per product pair (a pair found by both rules keeps same_title, which sorts first).
    pairs = pairs.sort_values(["cluster_id", "uniq_id_a", "uniq_id_b", "rule"], kind="stable")
    pairs = _typed(pairs.drop_duplicates(["uniq_id_a", "uniq_id_b"]).reset_index(drop=True), PAIR_COLUMNS)
    return members, pairs


def _typed(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    frame = frame[columns].copy()
    for column in columns:
        if column == "cluster_size":
            frame[column] = frame[column].astype("int64")
        elif column == "similarity":
            frame[column] = frame[column].astype("float64")
        else:
            frame[column] = frame[column].astype("string")
    return frame


def ledger(products_in: int, members: pd.DataFrame, pairs: pd.DataFrame, candidates: pd.DataFrame) -> dict:
    """The run's counts: products in = products in clusters + singletons (checked), clusters, pairs by rule."""
    clustered = int(members["uniq_id"].nunique())
    clusters = int(members["cluster_id"].nunique())
    counts = {
        "products_in": int(products_in),
        "products_in_clusters": clustered,
        "singletons": int(products_in) - clustered,
        "clusters": clusters,
        "largest_cluster": int(members["cluster_size"].max()) if len(members) else 0,
        "candidate_pairs": int(len(candidates)),
        "accepted_pairs": int(len(pairs)),
        "candidates_by_rule": {rule: int(n) for rule, n in candidates["rule"].value_counts().sort_index().items()},
        "accepted_by_rule": {rule: int(n) for rule, n in pairs["rule"].value_counts().sort_index().items()},
        "rejected_by": {check: int(n) for check, n in candidates["rejected_by"].dropna().value_counts()
                        .sort_index().items()},
    }
    check_ledger(counts, members)
    return counts


def check_ledger(counts: dict, members: pd.DataFrame) -> None:
    """products_in = in clusters + singletons, and the member rows say the same (sizes sum to the members)."""
    sizes = members.groupby("cluster_id")["cluster_size"].agg(["first", "size"]) if len(members) else None
    problems = []
    if counts["products_in_clusters"] + counts["singletons"] != counts["products_in"] or counts["singletons"] < 0:
        problems.append(f"products in {counts['products_in']} != in clusters {counts['products_in_clusters']} + "
                        f"singletons {counts['singletons']}")
    if len(members) != counts["products_in_clusters"]:
        problems.append(f"{len(members)} member rows for {counts['products_in_clusters']} clustered products")
    if sizes is not None and not (sizes["first"] == sizes["size"]).all():
        problems.append("a cluster_size differs from the rows of its cluster")
    if sizes is not None and int((sizes["size"] < 2).sum()):
        problems.append("a cluster has fewer than 2 members")
    if problems:
        raise DuplicateLedgerMismatch("; ".join(problems))


# ---- the pipeline step: store and lake in, lake and store out ---------------------------------------------------
def as_of_partitions(store, source: str, ds) -> list:
    """The validated partitions `shopflow.lake.catalog_view.catalog_as_of` reads for the day: the latest snapshot up to
    ds and the deltas after it (the lineage of the day's duplicates)."""
    partitions = [p for p in store.partitions(source) if p.ds <= ds and p.status == "validated"]
    snapshots = [p for p in partitions if p.load_kind == "snapshot"]
    if not snapshots:
        return []
    base = max(snapshots, key=lambda p: p.ds)
    return [base] + sorted((p for p in partitions if p.load_kind == "delta" and p.ds > base.ds), key=lambda p: p.ds)


def pairs_file(members_path):
    """The pairs table beside the members file of a day."""
    return members_path.parent / "pairs.parquet"


def publish_duplicates(settings, store, ds, spec: SourceSpec, *, run_id: str | None = None, embedder=None,
                       policy: DuplicatePolicy | None = None) -> dict:
    """Find the near-duplicates of the catalogue `spec` as of `ds`, validate them with `SUITE`, write the lake zone
    (members and pairs, atomically) and record the run. Raises DuplicateLedgerMismatch when the products do not add
    up and DuplicatesValidationFailed (after recording the run, before writing anything) on a critical failure."""
    from shopflow.common.parquet import read_parquet, write_parquet_atomic
    from shopflow.lake import zones as lake
    from shopflow.lake.catalog_view import catalog_as_of
    from shopflow.validation.runner import validate_frame
    from shopflow.validation.suites import expectation_specs

    started = time.perf_counter()
    policy = policy or DuplicatePolicy.from_env()
    products = catalogue_products(catalog_as_of(store, ds, source=spec.name), spec)
    if embedder is None:
        from shopflow.model.embeddings import Embedder

        embedder = Embedder(cache_dir=settings.embedding_cache_dir, log_line=log.info)
    log.info("%s as of %s: %s products; embedding their titles (%s)", spec.name, ds, f"{len(products):,}",
             embedder.describe()["fingerprint"])
    vectors = embedder.embed(embedding_texts(products))
    embedding = {**embedder.describe(), **embedder.stats}
    log.info("embedded %s texts (%s distinct): %s cache hits, %s through the encoder, %.1fs",
             f"{embedding['texts']:,}", f"{embedding['distinct']:,}", f"{embedding['cache_hits']:,}",
             f"{embedding['embedded']:,}", embedding["seconds"])
    search_started = time.perf_counter()
    result = cluster_duplicates(products, vectors, policy)
    counts = result.counts
    log.info("%s candidate pairs (%s), %s accepted (%s), rejected by %s; %s clusters holding %s products (largest "
             "%d), %s singletons; %.1fs", f"{counts['candidate_pairs']:,}", counts["candidates_by_rule"],
             f"{counts['accepted_pairs']:,}", counts["accepted_by_rule"], counts["rejected_by"],
             f"{counts['clusters']:,}", f"{counts['products_in_clusters']:,}", counts["largest_cluster"],
             f"{counts['singletons']:,}", time.perf_counter() - search_started)

    output = lake.lake_file(settings, ZONE, spec.name, ds)
    pairs_path = pairs_file(output)
    key = key_column(spec)
    members, pairs = keyed(result.members, key), keyed(result.pairs, key)
    validation_started = time.perf_counter()
    results = validate_frame(DATASET, members, expectation_specs(suite(key)))
    critical = sum(1 for r in results if r["severity"] == "critical" and not r["success"])
    log.info("%s suite: %d expectations, %d critical failures (%.1fs)", DATASET, len(results), critical,
             time.perf_counter() - validation_started)
    run = {key: counts[key] for key in ("products_in", "products_in_clusters", "singletons", "clusters",
                                        "largest_cluster", "candidate_pairs", "accepted_pairs")}
    run.update(counts={key: counts[key] for key in ("candidates_by_rule", "accepted_by_rule", "rejected_by")},
               policy=policy.describe(), embedding=embedding, validation_success=critical == 0,
               critical_failures=critical, validation=results, output_path=str(output), pairs_path=str(pairs_path))
    if critical:
        store.record_duplicates(spec.name, ds, run={**run, "seconds": round(time.perf_counter() - started, 3)},
                                run_id=run_id)
        failed = [f"{r['expectation']}({r['column_name']})" for r in results if not r["success"]]
        raise DuplicatesValidationFailed(f"{DATASET} {spec.name} {ds}: critical expectations failed: {failed}")
    write_parquet_atomic(members, output)
    write_parquet_atomic(pairs, pairs_path)
    written = len(read_parquet(output, columns=[key]))
    if written != counts["products_in_clusters"]:
        raise DuplicateLedgerMismatch(f"{DATASET} {spec.name} {ds}: {written} rows written for "
                                      f"{counts['products_in_clusters']} clustered products")
    seconds = round(time.perf_counter() - started, 3)
    store.record_duplicates(spec.name, ds, run={**run, "seconds": seconds}, run_id=run_id)
    log.info("%s %s -> %s (%s members) and %s (%s pairs) in %.1fs", spec.name, ds, output, f"{written:,}",
             pairs_path, f"{len(result.pairs):,}", seconds)
    return {"ds": ds.isoformat(), "source": spec.name, **{k: v for k, v in run.items() if k not in ("validation",)},
            "seconds": seconds}


__all__ = ["DATASET", "DuplicateLedgerMismatch", "DuplicatePolicy", "DuplicateResult", "DuplicatesValidationFailed",
           "SUITE", "ann_cells", "approximate_knn", "as_of_partitions", "catalogue_products", "category_leaf",
           "check_ledger", "cluster_duplicates", "embedding_texts", "exact_knn", "identifiers", "key_column", "keyed",
           "ledger", "member_columns", "nearest_titles", "pair_columns", "publish_duplicates", "read_members", "suite",
           "words_agree"]
