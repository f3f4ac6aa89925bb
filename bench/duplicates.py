"""Benchmark: the near-duplicate search (`shopflow.governance.duplicates`) on the real catalogue: exact search time against an
established nearest-neighbour library, recall on the data's own ground truth and on synthetic near-duplicates, and
precision on the hand-checked sample.

    .venv/bin/python bench/duplicates.py [--sizes 16028,100000] [--k 10] [--noise 0.01] [--synthetic 300]
                                         [--queries N] [--cache DIR]

It prints numbers and never asserts on them.

Data: the real Flipkart catalogue ($SHOPFLOW_SOURCE_DATA/catalog, default ../shared/data), cleaned by the library
without Airflow or a store (the three landing files read whole and cleaned as the 2015-12-03 snapshot, as in
bench/train.py): 16,028 products. Their titles are embedded with `shopflow.model.embeddings.Embedder` (all-MiniLM-L6-v2,
mean-pooled, L2-normalised), cached in --cache (default: the settings' embedding cache), so only a cold first run
pays for the encoder.

1. Exact search time, the same k (top --k other rows per row) on the same L2-normalised float32 vectors:
   (a) `shopflow.governance.duplicates.exact_knn` (one blocked matrix multiply per block of rows; with the production threshold,
       and with none, i.e. plain top-k);
   (b) `sklearn.neighbors.NearestNeighbors(algorithm="brute", metric="cosine")`, fit + kneighbors(k+1) (it returns
       each row itself first), its defaults otherwise (working_memory 1 GiB chunks, all cores it is allowed).
   At the real size (the product vectors) and at each larger size of --sizes, built by replicating the real vectors
   with Gaussian noise (sd --noise per dimension) and normalising again. --queries times that many query rows
   against the whole set (both sides: exact_knn's query_rows, sklearn's kneighbors on those rows; brute force is
   linear in the queries) and scales the times to all rows: "scaled" says so.
   Agreement: the share of rows whose k nearest similarities (a) and (b) find equal (within 1e-4; with ties
   between identical vectors they may name different rows).
2. Recall on ground truth: pairs of products that share the catalog role's `group` field (Flipkart pid) in the clean
   catalogue, and the same count in the raw files before cleaning (each file, and across the two files that hold
   pids); recall = such pairs whose two products land in one cluster.
3. Recall on synthetic near-duplicates: --synthetic real products get a copy whose title is changed the way the data
   itself shows near-duplicates (two words joined or a word split, a letter typo, two adjacent words swapped, a
   plural s, a repeated word, or only case and punctuation), all other fields kept; recall = copies clustered with
   their original, by kind of change.
4. Precision: tests/data/duplicate_pairs_checked.csv, 207 accepted pairs read by eye (150 random same-title pairs and
   every distinct title pair the embedding rule accepted on the real catalogue): duplicate / all (strict) and
   (duplicate + variant) / all (same product line), per rule, and how many of those pairs the code still accepts.
5. Approximate search (`approximate_knn`, the faiss IVF index used from SHOPFLOW_DUPLICATES_EXACT_BELOW distinct
   titles on) against the exact one, at each size of --ann-sizes products, each size in a fresh process: the index's
   seconds (wall, build and search) and the process's peak memory (resident set, the vectors included), and its
   recall = the share of the exact search's (title, neighbour) pairs it finds (top --k, similarity >= the policy's
   threshold). At the real size the titles are the catalogue's 10,494 distinct titles and the exact search runs
   whole. A larger size adds (size - 16,028) synthetic products, each its own title, whose vectors are NOT
   embedded (embedding a million titles on CPU is not what is measured): a real title's vector plus Gaussian noise
   (sd per dimension drawn per copy from 0.005..0.04: cosine 0.99..0.8 to its original), normalised again, seeded.
   There the exact reference is computed for --ann-queries random titles only (recall on them; its time scaled to
   all titles: "est."). --sections 5 runs this part alone.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import date
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
CHECKED = REPO / "tests" / "data" / "duplicate_pairs_checked.csv"
CATALOG_FILES = {  # landing file name (sources.yaml) -> file in the sample data
    "flipkart_name_category_tree.csv": "flipkart_name_category_tree.csv.gz",
    "flipkart_prices_brand.csv": "flipkart_prices_brand.csv.gz",
    "flipkart_full_columns.csv": "flipkart_full_columns_first999.csv.gz",
}


def source_data_dir() -> Path:
    return Path(os.environ.get("SHOPFLOW_SOURCE_DATA", REPO.parent / "shared" / "data")).resolve()


def real_catalogue(data_dir: Path):
    from shopflow.ingest.readers import read_delimited
    from shopflow.sources import get_source
    from shopflow.sources.catalog import combine
    from shopflow.sources.cleaning import clean_partition

    spec = get_source("catalog")
    frames = {f.name: read_delimited(data_dir / "catalog" / CATALOG_FILES[f.name], f.columns, has_header=f.header,
                                     delimiter=f.delimiter) for f in spec.files}
    return spec, frames, clean_partition(spec, combine(frames), date(2015, 12, 3)).clean


# ---- 1. search time ----------------------------------------------------------------------------------------------
def noisy_copies(vectors: np.ndarray, size: int, noise: float, seed: int = 0) -> np.ndarray:
    """`size` rows: the real vectors in turn, each plus Gaussian noise, normalised again (float32)."""
    rng = np.random.default_rng(seed)
    out = vectors[np.arange(size) % len(vectors)] + rng.normal(0.0, noise, (size, vectors.shape[1])).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def time_search(vectors: np.ndarray, k: int, threshold: float, queries: int | None) -> dict:
    from shopflow.governance.duplicates import exact_knn
    from sklearn.neighbors import NearestNeighbors

    n = len(vectors)
    rows = n if not queries or queries >= n else queries
    scale = n / rows
    result = {"n": n, "query_rows": rows, "scaled": rows < n}
    wall, cpu = time.perf_counter(), time.process_time()

    def lap(name: str) -> None:  # wall and CPU (all threads of this process) seconds, scaled to all rows
        nonlocal wall, cpu
        result[f"{name}_s"] = (time.perf_counter() - wall) * scale
        result[f"{name}_cpu_s"] = (time.process_time() - cpu) * scale
        wall, cpu = time.perf_counter(), time.process_time()

    exact_knn(vectors, k, threshold, query_rows=rows)
    lap("exact_knn_threshold")
    r, _, sims = exact_knn(vectors, k, -1.0, query_rows=rows)
    lap("exact_knn_topk")
    our_sims = [np.sort(part)[::-1] for part in np.split(sims, np.flatnonzero(np.diff(r)) + 1)]
    wall, cpu = time.perf_counter(), time.process_time()
    index = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric="cosine").fit(vectors)
    distances, theirs = index.kneighbors(vectors[:rows], n_neighbors=k + 1)
    lap("sklearn_brute")
    # Exact searches agree on the similarities of each row's k nearest (which of several tied rows they name may
    # differ: identical titles have identical vectors). sklearn returns the row itself among them: drop one 0.
    their_sims = [np.sort(1.0 - np.delete(d, np.argmin(d)))[::-1][:k] for d in distances]
    result["agreement"] = float(np.mean([len(a) == len(b) and np.allclose(a, b, atol=1e-4)
                                         for a, b in zip(our_sims, their_sims)]))
    return result


# ---- 5. approximate against exact ------------------------------------------------------------------------------
SYNTHETIC_NOISE = (0.005, 0.04)  # per-copy sd of the Gaussian noise per dimension


def synthetic_titles(real: np.ndarray, count: int, seed: int = 20151203) -> np.ndarray:
    """`real` followed by `count` noisy copies of randomly chosen rows of it (float32, L2-normalised)."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(real) + count, real.shape[1]), np.float32)
    out[:len(real)] = real
    for start in range(0, count, 100_000):  # in slices, so the noise never needs a second full-size array
        size = min(100_000, count - start)
        sd = rng.uniform(*SYNTHETIC_NOISE, size).astype(np.float32)[:, None]
        copies = real[rng.integers(0, len(real), size)] + rng.standard_normal((size, real.shape[1]), np.float32) * sd
        copies /= np.linalg.norm(copies, axis=1, keepdims=True)
        out[len(real) + start:len(real) + start + size] = copies
    return out


def exact_neighbours_of(vectors: np.ndarray, rows: np.ndarray, k: int, threshold: float) -> dict[int, set[int]]:
    """The exact search's neighbours of `rows` only (what `exact_knn` finds for them), against all rows."""
    found = {}
    for start in range(0, len(rows), 256):
        block = rows[start:start + 256]
        sims = vectors[block] @ vectors.T
        sims[np.arange(len(block)), block] = -np.inf
        top = np.argpartition(sims, -k, axis=1)[:, -k:]
        for i, row in enumerate(block):
            found[int(row)] = {int(c) for c in top[i] if sims[i, c] >= threshold}
    return found


def peak_resident_kib() -> int:
    """This process's peak resident set (VmHWM: not ru_maxrss, which a spawned process inherits from its parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def ann_against_exact(real_titles: np.ndarray, products: int, real_products: int, queries: int, policy, out) -> None:
    """One size of section 5, in its own process (so its peak memory is its own); the figures go to `out`."""
    from shopflow.governance.duplicates import ann_cells, approximate_knn, exact_knn

    vectors = real_titles if products <= real_products else synthetic_titles(real_titles, products - real_products)
    n = len(vectors)
    started = time.perf_counter()
    rows, cols, _ = approximate_knn(vectors, policy.top_k, policy.threshold)
    ann_s = time.perf_counter() - started
    peak_gib = peak_resident_kib() / 2**20
    found = pd.Series(cols).groupby(rows).agg(set).to_dict()
    started = time.perf_counter()
    if queries >= n or products <= real_products:  # the real catalogue: the whole exact search
        e_rows, e_cols, _ = exact_knn(vectors, policy.top_k, policy.threshold, policy.block_bytes)
        exact = pd.Series(e_cols).groupby(e_rows).agg(set).to_dict()
        sample = np.arange(n)
    else:
        sample = np.sort(np.random.default_rng(1).choice(n, queries, replace=False))
        exact = exact_neighbours_of(vectors, sample, policy.top_k, policy.threshold)
    exact_s = (time.perf_counter() - started) * n / len(sample)
    wanted = sum(len(exact.get(int(r), ())) for r in sample)
    hits = sum(len(exact.get(int(r), set()) & found.get(int(r), set())) for r in sample)
    out.put({"products": products, "titles": n, "cells": ann_cells(n), "queries": len(sample), "exact_pairs": wanted,
             "recall": hits / wanted if wanted else 1.0, "ann_s": ann_s, "exact_s": exact_s, "peak_gib": peak_gib})


def approximate_section(real_titles: np.ndarray, sizes: list[int], real_products: int, queries: int, policy) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    print(f"{'products':>10} {'titles':>10} {'cells':>6} {'recall':>8} {'exact pairs':>12} {'index s':>8} "
          f"{'exact s':>12} {'speed-up':>9} {'peak GiB':>9}")
    for size in sizes:
        out = context.Queue()
        worker = context.Process(target=ann_against_exact,
                                 args=(real_titles, size, real_products, queries, policy, out))
        worker.start()
        row = out.get()
        worker.join()
        estimated = row["queries"] < row["titles"]
        exact = f"{row['exact_s']:.1f}" + (" est." if estimated else "")
        print(f"{row['products']:>10,} {row['titles']:>10,} {row['cells']:>6} {row['recall']:>8.4f} "
              f"{row['exact_pairs']:>12,} {row['ann_s']:>8.1f} {exact:>12} {row['exact_s'] / row['ann_s']:>8.1f}x "
              f"{row['peak_gib']:>9.2f}" + (f"  (recall on {row['queries']:,} sampled titles)" if estimated else ""))
    print(f"   load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (a shared machine inflates wall time)")


# ---- 2. ground truth -------------------------------------------------------------------------------------------
def pairs_sharing(values: pd.Series) -> set[tuple[int, int]]:
    groups = pd.Series(values.index, index=values.to_numpy()).groupby(level=0)
    return {pair for _, members in groups if len(members) > 1 for pair in combinations(sorted(members), 2)}


def raw_group_counts(frames: dict) -> dict:
    prices = frames["flipkart_prices_brand.csv"]
    full = frames["flipkart_full_columns.csv"]
    full = full[full["uniq_id"].fillna("").str.strip() != ""]

    def shared(frame):
        pids = frame["pid"].dropna()
        pids = pids[pids.str.strip() != ""]
        counts = pids.value_counts()
        return int((counts * (counts - 1) // 2).sum())
    across = full[["uniq_id", "pid"]].merge(prices[["uniq_id", "pid"]], on="pid", suffixes=("_full", "_prices"))
    return {"prices_file_rows": len(prices), "prices_pid_pairs": shared(prices), "full_file_rows": len(full),
            "full_pid_pairs": shared(full),
            "cross_file_same_pid_other_id": int((across["uniq_id_full"] != across["uniq_id_prices"]).sum())}


# ---- 3. synthetic near-duplicates ------------------------------------------------------------------------------
def perturb(title: str, kind: str, rng: random.Random) -> str | None:
    words = title.split()
    if kind == "spacing":
        long = [i for i, w in enumerate(words) if len(w) >= 8 and w.isalpha()]
        if long:
            i = rng.choice(long)
            cut = rng.randrange(3, len(words[i]) - 3)
            return " ".join(words[:i] + [words[i][:cut], words[i][cut:]] + words[i + 1:])
        pairs = [i for i in range(len(words) - 1) if words[i].isalpha() and words[i + 1].isalpha()]
        if not pairs:
            return None
        i = rng.choice(pairs)
        return " ".join(words[:i] + [words[i] + words[i + 1]] + words[i + 2:])
    if kind == "typo":
        candidates = [i for i, w in enumerate(words) if len(w) >= 6 and w.isalpha()]
        if not candidates:
            return None
        i = rng.choice(candidates)
        w = words[i]
        j = rng.randrange(1, len(w) - 2)
        return " ".join(words[:i] + [w[:j] + w[j + 1] + w[j] + w[j + 2:]] + words[i + 1:])
    if kind == "reorder":
        if len(words) < 3:
            return None
        i = rng.randrange(1, len(words) - 1)
        return " ".join(words[:i] + [words[i + 1], words[i]] + words[i + 2:])
    if kind == "plural":
        last = words[-1]
        return " ".join(words[:-1] + [last[:-1] if last.endswith("s") else last + "s"])
    if kind == "repeat":
        return " ".join(words + [words[-1]])
    if kind == "case_punct":
        return title.upper().replace(" ", " - ", 1)
    raise ValueError(kind)


KINDS = ("spacing", "typo", "reorder", "plural", "repeat", "case_punct")


def synthetic_recall(products: pd.DataFrame, vectors: np.ndarray, embedder, count: int, policy) -> dict:
    from shopflow.governance.duplicates import embedding_texts, cluster_duplicates

    rng = random.Random(20151203)
    chosen = rng.sample(range(len(products)), count)
    copies, originals, kinds = [], [], []
    for n, row in enumerate(chosen):
        kind = KINDS[n % len(KINDS)]
        title = perturb(str(products.at[row, "title"]), kind, rng)
        if title is None or title == products.at[row, "title"]:
            continue
        copy = products.iloc[row].copy()
        copy["uniq_id"], copy["title"], copy["group"] = f"~synthetic{n:05d}", title, pd.NA
        copies.append(copy)
        originals.append(products.at[row, "uniq_id"])
        kinds.append(kind)
    extra = pd.DataFrame(copies).reset_index(drop=True)
    both = pd.concat([products, extra], ignore_index=True)
    all_vectors = np.vstack([vectors, embedder.embed(embedding_texts(extra))])
    order = both["uniq_id"].argsort(kind="stable").to_numpy()
    result = cluster_duplicates(both.iloc[order].reset_index(drop=True), all_vectors[order], policy)
    cluster = result.members.set_index("uniq_id")["cluster_id"]
    found = [cluster.get(c) is not None and cluster.get(c) == cluster.get(o)
             for c, o in zip(extra["uniq_id"], originals)]
    table = pd.DataFrame({"kind": kinds, "found": found})
    return {"copies": len(table), "recall": float(table["found"].mean()),
            "by_kind": {k: f"{int(g['found'].sum())}/{len(g)}" for k, g in table.groupby("kind")}}


# ---- 4. precision ----------------------------------------------------------------------------------------------
def checked_precision(accepted_pairs: set[tuple[str, str]]) -> dict:
    checked = pd.read_csv(CHECKED, dtype=str)
    checked["rule"] = np.where(checked["reason"].str.startswith("same_title"), "same_title", "embedding")
    out = {}
    for rule, group in [("all", checked), *checked.groupby("rule")]:
        out[rule] = {"pairs": len(group), "strict": round(float((group["verdict"] == "duplicate").mean()), 3),
                     "product_line": round(float(group["verdict"].isin(["duplicate", "variant"]).mean()), 3)}
    out["still_accepted"] = int(sum((a, b) in accepted_pairs for a, b in zip(checked["uniq_id_a"], checked["uniq_id_b"])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="16028,100000", help="catalogue sizes to time (the first: the real one)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--synthetic", type=int, default=300)
    parser.add_argument("--queries", type=int, default=None, help="time this many query rows and scale (large sizes)")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--ann-sizes", default="16028,100000,1000000", help="catalogue sizes of section 5")
    parser.add_argument("--ann-queries", type=int, default=2000, help="sampled titles of the exact reference (5)")
    parser.add_argument("--sections", default="1,2,3,4,5", help="which sections to run")
    args = parser.parse_args()

    from shopflow.config.settings import Settings
    from shopflow.governance.duplicates import (DuplicatePolicy, _title_representatives, catalogue_products,
                                                cluster_duplicates, embedding_texts)
    from shopflow.model.training.data import normalised_title
    from shopflow.model.embeddings import Embedder

    policy = DuplicatePolicy.from_env()
    spec, frames, clean = real_catalogue(source_data_dir())
    products = catalogue_products(clean, spec)
    embedder = Embedder(cache_dir=args.cache or Settings.from_env().embedding_cache_dir, device="cpu",
                        log_line=lambda line: None)
    started = time.perf_counter()
    vectors = embedder.embed(embedding_texts(products))
    print(f"catalogue: {len(products):,} products, {embedder.stats['distinct']:,} distinct titles; embedded in "
          f"{time.perf_counter() - started:.1f}s ({embedder.stats['cache_hits']:,} cache hits, "
          f"{embedder.stats['embedded']:,} through the encoder)")
    print(f"policy: {policy.describe()}")
    sections = {int(s) for s in args.sections.split(",") if s.strip()}
    if sections == {5}:
        return approximate_only(args, products, vectors, policy, normalised_title, _title_representatives)

    started = time.perf_counter()
    result = cluster_duplicates(products, vectors, policy)
    counts = result.counts
    print(f"\nfind_duplicates on the real catalogue: {time.perf_counter() - started:.2f}s; {counts['clusters']:,} "
          f"clusters, {counts['products_in_clusters']:,} products in them, {counts['singletons']:,} singletons; "
          f"pairs accepted {counts['accepted_by_rule']} of candidates {counts['candidates_by_rule']}; rejected by "
          f"{counts['rejected_by']}")

    print(f"\n1. exact search, top {args.k} per row: wall seconds (CPU seconds of all threads)")
    print(f"{'n':>8} {'exact_knn thr':>20} {'exact_knn top-k':>20} {'sklearn brute':>20} {'agreement':>10}")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    for size in sizes:
        data = vectors if size == len(vectors) else noisy_copies(vectors, size, args.noise)
        timing = time_search(data, args.k, policy.threshold, args.queries if size > len(vectors) else None)
        cells = [f"{timing[f'{name}_s']:.2f} ({timing[f'{name}_cpu_s']:.2f})"
                 for name in ("exact_knn_threshold", "exact_knn_topk", "sklearn_brute")]
        print(f"{size:>8,} {cells[0]:>20} {cells[1]:>20} {cells[2]:>20} {timing['agreement']:>10.4f}"
              + (f"  (scaled from {timing['query_rows']:,} query rows)" if timing["scaled"] else ""))
    print(f"   load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (a shared machine inflates wall time)")

    print("\n2. recall on the data's own ground truth (products sharing the group field, Flipkart pid)")
    members = result.members.set_index("uniq_id")["cluster_id"]
    group = products["group"].dropna()
    truth = pairs_sharing(group[group.str.strip() != ""])
    ids = products["uniq_id"]
    found = sum(1 for a, b in truth if members.get(ids[a]) is not None and members.get(ids[a]) == members.get(ids[b]))
    print(f"   clean catalogue: {len(truth)} pair(s) share a pid; found in one cluster: {found}/{len(truth)}")
    print(f"   raw files before cleaning: {raw_group_counts(frames)}")

    print(f"\n3. recall on {args.synthetic} synthetic near-duplicates (a changed title, other fields kept)")
    synthetic = synthetic_recall(products, vectors, embedder, args.synthetic, policy)
    print(f"   {synthetic['copies']} copies, recall {synthetic['recall']:.3f}; by kind {synthetic['by_kind']}")

    print(f"\n4. precision on the checked sample ({CHECKED.relative_to(REPO)})")
    accepted = set(zip(result.pairs["uniq_id_a"], result.pairs["uniq_id_b"]))
    for key, value in checked_precision(accepted).items():
        print(f"   {key}: {value}")
    if 5 in sections:
        approximate_only(args, products, vectors, policy, normalised_title, _title_representatives)


def approximate_only(args, products, vectors, policy, normalised_title, title_representatives) -> None:
    from shopflow.governance.duplicates import ANN_PROBES

    keys = np.array([normalised_title(t) if isinstance(t, str) else "" for t in products["title"].tolist()], object)
    _, representatives = title_representatives(keys)
    sizes = [int(s) for s in args.ann_sizes.split(",") if s.strip()]
    print(f"\n5. approximate search (faiss IVF, {ANN_PROBES} cells probed) against the exact one, top {policy.top_k}"
          f" titles with similarity >= {policy.threshold}; each size in its own process")
    approximate_section(np.asarray(vectors, np.float32)[representatives], sizes, len(products), args.ann_queries,
                        policy)


if __name__ == "__main__":
    main()
