"""Search intent: which product category a day's search queries are after, by the category classifier.

Owns the `search_intents` rows of the metadata store (one per distinct query of a search day: how often it was
searched, its category, the calibrated confidence and the model version). A day's queries are those of every
search-role source (its `query` field), counted together: a query is the same intent whichever log it came from.
A re-run replaces the day's rows. The demo's search log is GENERATED (see shopflow.landing.search_log), so these
attributions describe a generated log.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Sequence

import pandas as pd

from shopflow.common.errors import PartitionNotValidatedError
from shopflow.common.parquet import read_parquet
from shopflow.config.settings import Settings
from shopflow.lake import zones as lake
from shopflow.sources import roles
from shopflow.store.repository import MetadataStore

log = logging.getLogger("shopflow.model.search_intent")

BATCH = 4096  # queries per progress line; the predictor batches for the model itself
TOP_CATEGORIES = 5


def classify_texts(predictor, queries: Sequence[str]) -> pd.DataFrame:
    """query, category, confidence and top3 for each query, in input order (queries as given: normalise first
    with text.normalise_query when they are raw)."""
    queries = list(queries)
    started = time.perf_counter()
    parts = []
    for start in range(0, len(queries), BATCH):
        chunk = queries[start:start + BATCH]
        parts.append(predictor.predict(chunk))
        if len(queries) > BATCH:
            log.info("classified %d/%d queries", start + len(chunk), len(queries))
    predicted = pd.concat(parts, ignore_index=True) if parts else predictor.predict([])
    seconds = time.perf_counter() - started
    log.info("classified %d queries in %.2fs (%.0f queries/s)", len(queries), seconds,
             len(queries) / seconds if seconds else 0.0)
    # A query the model knows no class for is counted under the model's fold-in class, whose name no real class has.
    fold_in = getattr(predictor, "fold_in", {}).get("top") or "other"
    return pd.DataFrame({
        "query": pd.array(queries, dtype="string"),
        "category": predicted["label"].astype("string").fillna(fold_in),
        "confidence": predicted["confidence"].astype("float64"),
        "top3": predicted["top3"],
    })


def query_counts(search: pd.DataFrame, query_column: str = "query") -> pd.DataFrame:
    """Distinct queries (of the clean column playing the search role's query field) with their number of searches,
    most searched first (ties by query)."""
    counts = search[query_column].dropna().astype(str).value_counts()
    frame = pd.DataFrame({"query": counts.index.astype(str), "searches": counts.to_numpy(dtype="int64")})
    return frame.sort_values(["searches", "query"], ascending=[False, True], kind="stable").reset_index(drop=True)


def _summed(counts: list[pd.DataFrame]) -> pd.DataFrame:
    """Query counts of several sources as one, in query_counts' order."""
    total = pd.concat(counts, ignore_index=True).groupby("query", sort=False)["searches"].sum()
    frame = pd.DataFrame({"query": total.index.astype(str), "searches": total.to_numpy(dtype="int64")})
    return frame.sort_values(["searches", "query"], ascending=[False, True], kind="stable").reset_index(drop=True)


def classify_queries(settings: Settings, store: MetadataStore, ds: date, predictor, model_version: int,
                     run_id: str | None = None, sources: Sequence[str] | None = None) -> dict:
    """Attribute the distinct queries of the day's clean partitions of `sources` (default: every search-role
    source) to categories and store them (replacing the day's rows). Every one of them must be validated.
    Returns a small summary: queries, searches and the top categories."""
    specs = [roles.source_of("search", name) for name in sources] if sources else roles.sources_of("search")
    if not specs:
        raise LookupError("the sources file declares no search-role source: no queries to attribute")
    parts = []
    for spec in specs:
        partitions = store.partitions(spec.name, ds)
        if not partitions or partitions[0].status != "validated":
            status = partitions[0].status if partitions else "not recorded"
            raise PartitionNotValidatedError(f"{spec.name} {ds}: partition is {status}, only a validated partition is "
                                        f"attributed")
        query = spec.role_column("query")
        parts.append(query_counts(read_parquet(lake.lake_file(settings, "clean", spec.name, ds), columns=[query]),
                                  query))
    counts = parts[0] if len(parts) == 1 else _summed(parts)
    log.info("%s %s: %d distinct queries in %d searches, model v%d", ", ".join(s.name for s in specs), ds,
             len(counts), int(counts["searches"].sum()), model_version)
    classified = classify_texts(predictor, counts["query"].tolist())
    counts["category"] = classified["category"].astype(str).to_numpy()
    counts["confidence"] = classified["confidence"].to_numpy()
    rows = [{"query": q, "searches": int(n), "category": c, "confidence": float(p)}
            for q, n, c, p in counts[["query", "searches", "category", "confidence"]].itertuples(index=False)]
    store.record_search_intents(ds, rows, model_version=model_version, run_id=run_id)

    searches = int(counts["searches"].sum())
    # groupby sorts by category, so the stable sort leaves ties in alphabetical order
    by_category = counts.groupby("category")["searches"].sum().sort_values(ascending=False, kind="stable")
    top = [{"category": str(c), "searches": int(n), "share": round(n / searches, 4)}
           for c, n in by_category.head(TOP_CATEGORIES).items()]
    weighted_confidence = float((counts["confidence"] * counts["searches"]).sum() / searches) if searches else None
    log.info("search intents %s: top categories by searches: %s", ds,
             ", ".join(f"{t['category']} {t['searches']} ({t['share']:.1%})" for t in top) or "none")
    return {"ds": ds.isoformat(), "model_version": model_version, "queries": len(counts), "searches": searches,
            "top_categories": top,
            "mean_confidence": round(weighted_confidence, 4) if weighted_confidence is not None else None}
