"""Model-driven repair of the model catalogue's top-level category.

The model catalogue is the catalog-role source the model branch serves (`shopflow.roles.model_catalog`; `catalog`
in the shipped sources file); its columns are read through its catalog role (the top-level category is its first
category level, a product's state its category_status, or for a source without one `ok` when it has a category
and `missing` when not: see `shopflow.role_frames`).

Owns the `repaired` zone of the lake (`lake/repaired/<source>/ds=…/part-0.parquet`) and the `repair_runs` and
`repair_audit` rows of the metadata store. The clean catalogue is NEVER overwritten: the repaired version of a
day is written beside it, with every clean column unchanged plus

| column                   | meaning                                                                          |
|--------------------------|----------------------------------------------------------------------------------|
| category_top_repaired    | the category to use: the given one, or the model's fill                          |
| category_source          | given | model_fill | needs_review | reverted                                     |
| suggested_category       | the model's category for filled, review and flagged products (else null)        |
| suggestion_confidence    | its calibrated confidence                                                        |
| suspected_miscategorised | the given category disagrees with a very confident model (data left unchanged)  |

The rule, per product of the day's clean partition:
- no usable category (status name_only or missing): a prediction with confidence >= repair_threshold FILLS it;
  below the threshold (or a prediction of the catch-all class `other`, which names no category) it goes to
  REVIEW, unchanged, with the suggestion kept;
- an intact category (ok or truncated_leaf) that disagrees with a prediction of confidence >= flag_threshold is
  FLAGGED: listed, never changed;
- everything else is unchanged.

Every fill, review and flag is audited (product, action, before, after or suggestion, confidence, model version,
run). Re-running a day replaces its audit rows and run row, except fills a person reverted: those stay reverted.
`revert` undoes fills from the audit trail.

Precision is measured on every run, not assumed: the held-out test-split products with an intact category (the
model never trained on them; its calibration was fitted on the validation split) have their category hidden, the
same fill rule runs on them, and precision = correct fills / fills is stored with the run.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Iterable

import numpy as np
import pandas as pd

from shopflow import lake, roles
from shopflow.catalog_view import catalog_as_of
from shopflow.landing_io import read_parquet, write_parquet_atomic
from shopflow.role_frames import INTACT_STATUS, categories, category_status
from shopflow.settings import Settings
from shopflow.sources import SourceSpec
from shopflow.store.repository import MetadataStore
from shopflow.training.data import OTHER, product_text, split_of

log = logging.getLogger("shopflow.repair")

BROKEN = ("name_only", "missing")
INTACT = ("ok", "truncated_leaf")
FILL, REVIEW, FLAG, UNCHANGED = "fill", "review", "flag", "unchanged"
GIVEN, MODEL_FILL, NEEDS_REVIEW, REVERTED = "given", "model_fill", "needs_review", "reverted"
REPAIR_COLUMNS = ["category_top_repaired", "category_source", "suggested_category", "suggestion_confidence",
                  "suspected_miscategorised"]


class RepairLedgerMismatch(AssertionError):
    """The repaired partition's rows do not add up to the clean partition's."""


class PartitionNotValidated(RuntimeError):
    """The day's partition is not validated: it must not be repaired or attributed (nor flow anywhere)."""


def decide(status: pd.Series, given: pd.Series, predicted: pd.Series, confidence: pd.Series,
           repair_threshold: float, flag_threshold: float) -> pd.Series:
    """The action per product: fill, review, flag or unchanged (see the module docstring)."""
    broken = status.isin(BROKEN).to_numpy()
    intact = status.isin(INTACT).to_numpy() & given.notna().to_numpy()
    predicted_category = (predicted.astype("string") != OTHER).fillna(False).to_numpy(dtype=bool)
    confidence = confidence.to_numpy(dtype="float64")
    disagrees = (predicted.astype("string") != given.astype("string")).fillna(True).to_numpy(dtype=bool)
    action = np.full(len(status), UNCHANGED, dtype=object)
    action[broken] = REVIEW
    action[broken & predicted_category & (confidence >= repair_threshold)] = FILL
    action[intact & predicted_category & disagrees & (confidence >= flag_threshold)] = FLAG
    return pd.Series(action, index=status.index, dtype="object")


def category_field(spec: SourceSpec) -> str:
    """The clean column the repair fills and audits: the first category level, else the category path."""
    return (spec.role.columns("category_levels") or [spec.role_column("category_path")])[0]


def _validated(store: MetadataStore, source: str, ds: date) -> None:
    partitions = store.partitions(source, ds)
    if not partitions or partitions[0].status != "validated":
        status = partitions[0].status if partitions else "not recorded"
        raise PartitionNotValidated(f"{source} {ds}: partition is {status}, only a validated partition is repaired")


def masked_evaluation(truth: pd.Series, predictions: pd.DataFrame, repair_threshold: float) -> dict:
    """Precision and coverage of the fill rule on products whose true category is known but hidden.

    `truth` holds the true top-level categories of the masked products (test split, intact category) and
    `predictions` their predictions, row for row. A fill of X is correct iff X equals the true category.
    """
    truth = truth.astype("string").to_numpy(dtype=object)
    predicted = predictions["label"].astype("string")
    filled = ((predicted != OTHER).fillna(False) & (predictions["confidence"] >= repair_threshold)).to_numpy(dtype=bool)
    correct = filled & (predicted.to_numpy(dtype=object) == truth)
    n, n_filled, n_correct = len(truth), int(filled.sum()), int(correct.sum())
    return {"masked_n": n, "masked_filled": n_filled, "masked_correct": n_correct,
            "masked_precision": n_correct / n_filled if n_filled else None,
            "masked_coverage": n_filled / n if n else None}


def repair_partition(settings: Settings, store: MetadataStore, ds: date, predictor, model_version: int, policy,
                     run_id: str | None = None, source: str | None = None) -> dict:
    """Repair the top-level category of the day's clean partition of the model catalogue (or of `source`, a catalog
    source that can train) into the repaired zone; audit it and measure the fill rule's precision on masked test
    products. `policy` gives repair_threshold and flag_threshold (a registry.TrainingPolicy). Returns the run's
    summary."""
    started = time.perf_counter()
    spec = roles.model_catalog_source(source)
    product_id = spec.role_column("id")
    _validated(store, spec.name, ds)
    clean_path = lake.lake_file(settings, "clean", spec.name, ds)
    catalog = read_parquet(clean_path).sort_values(product_id, kind="stable").reset_index(drop=True)
    given, _ = categories(catalog, spec)
    status = category_status(catalog, spec)
    as_of = catalog_as_of(store, ds, source=spec.name)
    as_of_top, _ = categories(as_of, spec)
    masked = as_of[(category_status(as_of, spec) == INTACT_STATUS) & as_of_top.notna()
                   & (as_of[product_id].astype(str).map(split_of) == "test")].reset_index(drop=True)
    broken = int(status.isin(BROKEN).sum())
    log.info("repairing %s %s with model v%d: %d products (%d without a category), fill at >= %.3f, flag at "
             ">= %.3f; %d masked test products for the precision check", spec.name, ds, model_version, len(catalog),
             broken, policy.repair_threshold, policy.flag_threshold, len(masked))

    # One pass over both sets: the masked products are usually in today's partition too, same text, same answer.
    texts = product_text(catalog, spec).tolist()
    masked_texts = product_text(masked, spec).tolist()
    predict_started = time.perf_counter()
    everything = predictor.predict(texts + masked_texts)
    predict_seconds = time.perf_counter() - predict_started
    predictions = everything.iloc[: len(texts)].reset_index(drop=True)
    masked_predictions = everything.iloc[len(texts):].reset_index(drop=True)
    log.info("predicted %d products in %.2fs (%.0f products/s)", len(everything), predict_seconds,
             len(everything) / predict_seconds if predict_seconds else 0.0)

    action = decide(status, given, predictions["label"], predictions["confidence"], policy.repair_threshold,
                    policy.flag_threshold)
    reverted = {a.uniq_id for a in store.repair_audit(ds, FILL) if a.reverted_at is not None}
    kept_reverted = (action == FILL) & catalog[product_id].isin(reverted)
    action = action.mask(kept_reverted, UNCHANGED)

    repaired = _repaired_frame(catalog, given, predictions, action, kept_reverted)
    counts = {name: int((action == name).sum()) for name in (FILL, REVIEW, FLAG, UNCHANGED)}
    _check_ledger(repaired, counts, len(catalog), spec.name, ds)

    masked_result = masked_evaluation(categories(masked, spec)[0], masked_predictions, policy.repair_threshold)
    output = lake.lake_file(settings, "repaired", spec.name, ds)
    write_parquet_atomic(repaired, output)
    audited = action != UNCHANGED
    field = category_field(spec)
    audit = [
        {"uniq_id": uid, "action": act, "field": field, "before": None if pd.isna(before) else str(before),
         "after": str(after), "confidence": float(conf), "model_version": model_version}
        for uid, act, before, after, conf in zip(
            catalog[product_id][audited], action[audited], given[audited],
            predictions["label"][audited], predictions["confidence"][audited])
    ]
    run = {"model_version": model_version, "threshold": float(policy.repair_threshold), "rows_in": len(catalog),
           "rows_filled": counts[FILL], "rows_review": counts[REVIEW], "rows_flagged": counts[FLAG],
           "rows_unchanged": counts[UNCHANGED], "masked_n": masked_result["masked_n"],
           "masked_filled": masked_result["masked_filled"], "masked_precision": masked_result["masked_precision"],
           "output_path": str(output)}
    store.record_repair(ds, run=run, audit=audit, run_id=run_id)

    log.info("%s %s: %d filled, %d to review, %d flagged, %d unchanged (%d of them reverted fills kept "
             "reverted) of %d -> %s", spec.name, ds, counts[FILL], counts[REVIEW], counts[FLAG], counts[UNCHANGED],
             int(kept_reverted.sum()), len(catalog), output)
    precision, coverage = masked_result["masked_precision"], masked_result["masked_coverage"]
    log.info("masked precision at threshold %.3f: %s (%d correct of %d filled; coverage %s of %d held-out "
             "test products)", policy.repair_threshold,
             "n/a (nothing filled)" if precision is None else f"{precision:.4f}", masked_result["masked_correct"],
             masked_result["masked_filled"], "n/a" if coverage is None else f"{coverage:.4f}",
             masked_result["masked_n"])
    seconds = time.perf_counter() - started
    return {"ds": ds.isoformat(), **run, "flag_threshold": float(policy.flag_threshold),
            "rows_reverted_kept": int(kept_reverted.sum()), **masked_result, "seconds": round(seconds, 3),
            "products_per_second": round(len(everything) / predict_seconds, 1) if predict_seconds else None}


def _repaired_frame(catalog: pd.DataFrame, given: pd.Series, predictions: pd.DataFrame, action: pd.Series,
                    kept_reverted: pd.Series) -> pd.DataFrame:
    repaired = catalog.copy()
    fill = (action == FILL).to_numpy()
    suggested = (action != UNCHANGED).to_numpy()
    repaired["category_top_repaired"] = given.astype("string").mask(fill, predictions["label"])
    source = np.full(len(catalog), GIVEN, dtype=object)
    source[fill] = MODEL_FILL
    source[(action == REVIEW).to_numpy()] = NEEDS_REVIEW
    source[kept_reverted.to_numpy()] = REVERTED
    repaired["category_source"] = pd.array(source, dtype="string")
    repaired["suggested_category"] = predictions["label"].astype("string").where(suggested, pd.NA)
    repaired["suggestion_confidence"] = predictions["confidence"].astype("float64").where(suggested, np.nan)
    repaired["suspected_miscategorised"] = (action == FLAG).to_numpy()
    return repaired


def _check_ledger(repaired: pd.DataFrame, counts: dict, rows_in: int, source: str, ds: date) -> None:
    """rows_in = filled + review + flagged + unchanged, and the written columns say the same."""
    source = repaired["category_source"]
    observed = {
        FILL: int((source == MODEL_FILL).sum()),
        REVIEW: int((source == NEEDS_REVIEW).sum()),
        FLAG: int(repaired["suspected_miscategorised"].sum()),
        UNCHANGED: int((source.isin([GIVEN, REVERTED]) & ~repaired["suspected_miscategorised"]).sum()),
    }
    if len(repaired) != rows_in or sum(counts.values()) != rows_in or observed != counts:
        raise RepairLedgerMismatch(f"{source} {ds}: {rows_in} rows in, {len(repaired)} written; actions {counts}, "
                                   f"written columns say {observed}")


def revert(settings: Settings, store: MetadataStore, ds: date, uniq_ids: Iterable[str] | None = None,
           source: str | None = None) -> int:
    """Undo the day's model fills (all, or those of the product ids `uniq_ids`) from the audit trail: the repaired
    partition of the model catalogue (or `source`) gets the value from before the fill back (category_source
    'reverted') and the audit rows are marked reverted. Returns how many fills were reverted."""
    spec = roles.model_catalog_source(source)
    product_id = spec.role_column("id")
    fills = [a for a in store.repair_audit(ds, FILL) if a.reverted_at is None]
    if uniq_ids is not None:
        wanted = set(uniq_ids)
        unknown = wanted - {a.uniq_id for a in fills}
        if unknown:
            log.warning("%s %s: %d products have no fill to revert (e.g. %s)", spec.name, ds, len(unknown),
                        sorted(unknown)[0])
        fills = [a for a in fills if a.uniq_id in wanted]
    if not fills:
        log.info("%s %s: no fill to revert", spec.name, ds)
        return 0
    path = lake.lake_file(settings, "repaired", spec.name, ds)
    repaired = read_parquet(path)
    before = {a.uniq_id: a.before for a in fills}
    rows = repaired[product_id].isin(before).to_numpy()
    restored = repaired.loc[rows, product_id].map(before)
    repaired["category_top_repaired"] = repaired["category_top_repaired"].astype("object")
    repaired.loc[rows, "category_top_repaired"] = restored.where(restored.notna(), None)
    repaired["category_top_repaired"] = repaired["category_top_repaired"].astype("string")
    repaired.loc[rows, "category_source"] = REVERTED
    write_parquet_atomic(repaired, path)  # the file first: a failure before the marks leaves a retryable revert
    marked = store.mark_reverted(ds, before)
    log.info("%s %s: reverted %d model fills in %s", spec.name, ds, marked, path)
    return marked
