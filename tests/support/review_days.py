"""A repaired catalogue day to review without a trained model: real rows of the shipped catalogue (a slice, landed,
cleaned and validated by `model_fixtures.catalogue_home`), optionally re-keyed with integer product ids, repaired
by a deterministic stand-in predictor, and near-duplicates found by the real step with a stand-in embedder.

    day = review_day(root, source_data, integer_keys=True)   # settings, store, ds, keys
    publish_same_title_duplicates(day)                        # the day's duplicates output (same-title clusters)

Used by the review tests of tests/governance and tests/plugins (integer keys through audit, list, decide, revert;
near-duplicate clusters decided once)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from model_fixtures import SNAPSHOT_DAY, catalogue_home, slice_source_data

KEY = "review-days-pseudonym-key-not-a-secret-32"
VERSION = 1


@dataclass
class ReviewDay:
    settings: object  # shopflow.config.settings.Settings
    store: object  # shopflow.store.repository.MetadataStore
    ds: date
    catalog: pd.DataFrame  # the clean partition as repaired (its keys integers where re-keyed)
    predictor: "TextHashPredictor"
    policy: object  # shopflow.model.registry.TrainingPolicy

    def rerun(self) -> dict:
        from shopflow.governance import repair

        return repair.repair_partition(self.settings, self.store, self.ds, self.predictor, VERSION, self.policy,
                                       run_id="repair-run")


class TextHashPredictor:
    """Answers each text with a known category and a confidence drawn from a hash of the text: the same text (a
    same-title listing) gets the same answer, and the confidences spread over 0..1. No second level."""

    def __init__(self, labels: list[str]):
        self.labels = sorted(labels)

    def predict(self, texts) -> pd.DataFrame:
        digests = [hashlib.sha256(str(t).encode("utf-8")).digest() for t in texts]
        return pd.DataFrame({
            "label": pd.array([self.labels[d[0] % len(self.labels)] for d in digests], dtype="string"),
            "confidence": np.array([int.from_bytes(d[1:5], "big") / 2**32 for d in digests], dtype="float64"),
        })


class HashEmbedder:
    """Title vectors that agree with no other title (random directions, seeded by the text): the duplicates step
    then finds the same-title clusters only."""

    def __init__(self):
        self.stats = {"texts": 0, "distinct": 0, "cache_hits": 0, "embedded": 0, "seconds": 0.0}

    def describe(self) -> dict:
        return {"fingerprint": "hash-embedder-test", "model": "none"}

    def embed(self, texts) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(str(text).encode("utf-8")).digest()[:8], "big")
            vector = np.random.default_rng(seed).standard_normal(256)
            rows.append(vector / np.linalg.norm(vector))
        self.stats = {"texts": len(texts), "distinct": len(set(texts)), "cache_hits": 0, "embedded": len(texts),
                      "seconds": 0.0}
        return np.asarray(rows, dtype=np.float32)


def review_day(root: Path, source_data: Path, *, integer_keys: bool = False) -> ReviewDay:
    """The slice's snapshot day, cleaned and validated, (re-keyed,) repaired at a fill threshold of 0.8 and a flag
    threshold of 0.5: fills, review items and flags with real titles."""
    from shopflow.common.parquet import read_parquet, write_parquet_atomic
    from shopflow.governance import repair
    from shopflow.lake import zones as lake
    from shopflow.model.registry import TrainingPolicy
    from shopflow.sources.role_frames import categories, category_status
    from shopflow.store.repository import MetadataStore

    settings = catalogue_home(root, slice_source_data(source_data, root / "data"), KEY)
    store = MetadataStore(settings.store_url)
    clean = lake.lake_file(settings, "clean", "catalog", SNAPSHOT_DAY)
    catalog = read_parquet(clean)
    if integer_keys:  # the same real rows, keyed by integers as another shop's catalogue would be
        order = catalog["uniq_id"].sort_values(kind="stable").index
        numbers = pd.Series(np.arange(1001, 1001 + len(catalog), dtype=np.int64), index=order)
        catalog["uniq_id"] = numbers.sort_index().to_numpy()
        write_parquet_atomic(catalog, clean)
    top, _ = categories(catalog, repair.roles.model_catalog_source())
    intact = category_status(catalog, repair.roles.model_catalog_source()).isin(repair.INTACT)
    labels = sorted(set(top[intact & top.notna()].astype(str)) - {"other"})
    day = ReviewDay(settings=settings, store=store, ds=SNAPSHOT_DAY, catalog=catalog,
                    predictor=TextHashPredictor(labels), policy=TrainingPolicy(repair_threshold=0.8, flag_threshold=0.5))
    day.rerun()
    return day


def publish_same_title_duplicates(day: ReviewDay) -> dict:
    """The duplicates step on the day (its real search, checks, GX suite and files), with `HashEmbedder`."""
    from shopflow.governance.duplicates import publish_duplicates
    from shopflow.sources import roles

    return publish_duplicates(day.settings, day.store, day.ds, roles.model_catalog_source(), embedder=HashEmbedder())
