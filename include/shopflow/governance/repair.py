"""Repair of the model catalogue: its top-level and second-level category (model fills), its brand (read from the
title) and a check of its prices (flags only).

The model catalogue is the catalog-role source the model branch serves (`shopflow.sources.roles.model_catalog`; `catalog`
in the shipped sources file); its columns are read through its catalog role (the top-level category is its first
category level, a product's state its category_status, or for a source without one `ok` when it has a category
and `missing` when not: see `shopflow.sources.role_frames`).

Owns the `repaired` zone of the lake (`lake/repaired/<source>/ds=…/part-0.parquet`) and the `repair_runs` and
`repair_audit` rows of the metadata store. The clean catalogue is NEVER overwritten: the repaired version of a
day is written beside it, with every clean column unchanged plus

| column                   | meaning                                                                          |
|--------------------------|----------------------------------------------------------------------------------|
| category_top_repaired    | the category to use: the given one, or the model's fill                          |
| category_source          | given | model_fill | needs_review | reverted, or a reviewer's decision:          |
|                          | reviewer_accepted | reviewer_rejected | reviewer_corrected (shopflow.governance.review)   |
| suggested_category       | the model's category for filled, review and flagged products (else null)        |
| suggestion_confidence    | its calibrated confidence                                                        |
| suspected_miscategorised | a label issue: the given category is probably wrong (data left unchanged)       |

and, for the fields the source's catalog role maps (a column set is left out for a field it does not map):

| column                   | meaning                                                                          |
|--------------------------|----------------------------------------------------------------------------------|
| category_l2_repaired     | the second level to use: the given one, or the model's second-level fill         |
| category_l2_source       | given | model_fill | missing | reverted                                          |
| brand_repaired           | the brand to use: the given one, or the one the title names (`brand_fill`)       |
| brand_source             | given | title_match | missing | reverted                                         |
| price_anomaly            | the price is far off its category's, or at the floor (`price_check`); a flag only |
| price_anomaly_reason     | floor | high | low (null when not flagged)                                         |

The rule for the top-level category, per product of the day's clean partition:
- no usable category (status name_only or missing): a prediction with confidence >= repair_threshold FILLS it;
  below the threshold (or a prediction of the fold-in class, which names no category: the predictor answers no
  label, and the audit no suggestion) it goes to REVIEW, unchanged, with the suggestion kept;
- an intact category (ok or truncated_leaf) that confident learning finds a label issue is FLAGGED: listed with
  the likeliest other class as its suggestion and its label-quality score, never changed
  (`shopflow.model.training.label_issues`: found at training on out-of-fold probabilities, so a model refit on
  every label still flags honestly; products new since the training are judged by the class thresholds). A model
  saved without label issues flags a disagreement at confidence >= flag_threshold instead;
- everything else is unchanged.

The other fields:
- second level: a product without one whose top level is known (given, or filled above) gets the model's
  second-level prediction ("Top > Second") when its confidence reaches the threshold (the predictor's calibrated
  `repair_threshold`, else the policy's) AND its "Top" is the product's top level; the fold-in class fills nothing. Needs a
  predictor that answers `predict(texts, level="l2")`; with an older one the second level is left as it is;
- brand: a product without one gets the brand its title names, matched against the brands the catalogue as of the
  day itself knows (`shopflow.governance.brand_fill`; confidence: the brand's calibrated precision);
- price: every price is checked against its top-level category (given or filled) in the catalogue as of the day
  (`shopflow.governance.price_check`); a flag, never a change.

Every fill, review and flag is audited (product, action, the field = the clean column it concerns, before, after
or suggestion, confidence, model version, run); a price flag's `after` says why. Re-running a day replaces its
audit rows and run row, except fills a person reverted: those stay reverted. `revert` undoes fills of one field
from the audit trail (reverting a top-level fill also reverts the second-level fill that relied on it).

Precision is measured on every run, not assumed: the held-out test-split products with an intact category (the
model never trained on them; its calibration was fitted on the validation split) have their category hidden, the
same fill rule runs on them, and precision = correct fills / fills is stored with the run. The second level is
measured the same way on the products with a known second level in the held-out test split of the GROUPED split
(`shopflow.model.training.data.grouped_split`), their top level given; the brand on the test split's products with a
brand, hidden, with a vocabulary built from the other products (`brand_fill.masked_brand_evaluation`).
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import date
from typing import Iterable

import numpy as np
import pandas as pd

from shopflow.common.errors import PartitionNotValidatedError
from shopflow.common.parquet import read_parquet, write_parquet_atomic
from shopflow.config.settings import Settings
from shopflow.governance import brand_fill, price_check
from shopflow.governance.actions import FILL, FLAG, REVIEW, UNCHANGED
from shopflow.governance.review import repaired_partition_lock, with_decisions
from shopflow.lake import zones as lake
from shopflow.lake.catalog_view import catalog_as_of
from shopflow.model.training.data import grouped_split, product_text
from shopflow.sources import SourceSpec, roles
from shopflow.sources.role_frames import (
    INTACT_STATUS,
    LEVEL_SEPARATOR,
    brand_field,
    categories,
    category_field,
    category_status,
    l2_field,
    price_field,
)
from shopflow.store.models import product_key_text
from shopflow.store.repository import MetadataStore

log = logging.getLogger("shopflow.governance.repair")

BROKEN = ("name_only", "missing")
INTACT = ("ok", "truncated_leaf")
DEFAULT_REPAIR_THRESHOLD = 0.9
GIVEN, MODEL_FILL, NEEDS_REVIEW, REVERTED = "given", "model_fill", "needs_review", "reverted"
MISSING, TITLE_MATCH = brand_fill.MISSING, brand_fill.TITLE_MATCH
REPAIR_COLUMNS = ["category_top_repaired", "category_source", "suggested_category", "suggestion_confidence",
                  "suspected_miscategorised"]
L2_COLUMNS = ["category_l2_repaired", "category_l2_source"]
BRAND_COLUMNS = ["brand_repaired", "brand_source"]
PRICE_COLUMNS = ["price_anomaly", "price_anomaly_reason"]
RULE_CONFIDENCE = 1.0  # the confidence audited with a price flag: a rule, not a model
FIELD_RUN_COLUMNS = ("rows_l2_filled", "rows_brand_filled", "rows_price_flagged", "l2_masked_n", "l2_masked_filled",
                     "l2_masked_precision", "brand_masked_n", "brand_masked_filled", "brand_masked_precision")


class RepairLedgerMismatch(AssertionError):
    """The repaired partition's rows do not add up to the clean partition's."""


def intact_categories(status: pd.Series, given: pd.Series) -> np.ndarray:
    """The products with a usable given top-level category: the ones a flag may concern."""
    return status.isin(INTACT).to_numpy() & given.notna().to_numpy()


def repair_actions(status: pd.Series, given: pd.Series, predicted: pd.Series, confidence: pd.Series,
                   repair_threshold: float, flag_threshold: float, label_issues: np.ndarray | None = None) -> pd.Series:
    """The action per product: fill, review, flag or unchanged (see the module docstring). `label_issues`: the
    products confident learning flags (`label_issue_flags`); without it (a model saved before label issues, or
    trained without cross-validation) a flag is a disagreement at confidence >= flag_threshold."""
    broken = status.isin(BROKEN).to_numpy()
    intact = intact_categories(status, given)
    predicted_category = predicted.astype("string").notna().to_numpy(dtype=bool)  # missing: the fold-in class
    confidence = confidence.to_numpy(dtype="float64")
    action = np.full(len(status), UNCHANGED, dtype=object)
    action[broken] = REVIEW
    action[broken & predicted_category & (confidence >= repair_threshold)] = FILL
    if label_issues is not None:
        action[intact & np.asarray(label_issues, dtype=bool)] = FLAG
    else:
        disagrees = (predicted.astype("string") != given.astype("string")).fillna(True).to_numpy(dtype=bool)
        action[intact & predicted_category & disagrees & (confidence >= flag_threshold)] = FLAG
    return pd.Series(action, index=status.index, dtype="object")


def label_issue_flags(predictor, keys: pd.Series, given: pd.Series, status: pd.Series,
                      texts: list[str]) -> pd.DataFrame | None:
    """The day's label-issue flags (shopflow.model.training.label_issues.flag_products) for a predictor whose
    training found them; None for one without (the confidence rule then flags)."""
    from shopflow.model.training import label_issues

    found = predictor.label_issues() if callable(getattr(predictor, "label_issues", None)) else None
    if found is None:
        return None
    rows, thresholds = found
    return label_issues.flag_products(
        keys.astype("string"), given, intact_categories(status, given), rows, thresholds, list(predictor.labels),
        lambda positions: predictor.probabilities([texts[i] for i in positions]),
        fold_in=(getattr(predictor, "fold_in", None) or {}).get("top"))


def repair_columns(spec: SourceSpec) -> list[str]:
    """The columns a repaired partition of the source adds to its clean columns, in order."""
    return (REPAIR_COLUMNS + (L2_COLUMNS if l2_field(spec) else []) + (BRAND_COLUMNS if brand_field(spec) else [])
            + (PRICE_COLUMNS if price_field(spec) else []))


def revertible_fields(spec: SourceSpec) -> dict[str, tuple[str, str, str, str | None]]:
    """Per field whose fills `revert` undoes: its value column, its source column, the run counter its fills are
    counted in and the one a reverted fill moves to (None: a fill reverted is a product without the value)."""
    fields = {category_field(spec): ("category_top_repaired", "category_source", "rows_filled", "rows_unchanged")}
    if l2_field(spec):
        fields[l2_field(spec)] = ("category_l2_repaired", "category_l2_source", "rows_l2_filled", None)
    if brand_field(spec):
        fields[brand_field(spec)] = ("brand_repaired", "brand_source", "rows_brand_filled", None)
    return fields


def predicts_l2(predictor) -> bool:
    """Whether the predictor answers the second level (`predict(texts, level="l2")`, `labels_l2`)."""
    try:
        parameters = inspect.signature(predictor.predict).parameters
    except (TypeError, ValueError):
        return False
    return "level" in parameters and bool(getattr(predictor, "labels_l2", None))


def fill_threshold(predictor, policy) -> float:
    """The fill threshold: SHOPFLOW_REPAIR_THRESHOLD when set, else the one calibrated at training time (the lowest
    confidence whose fills on unseen titles have a Clopper-Pearson lower precision bound >= 0.97; a model for
    which none reached it fills nothing), else the documented default."""
    if policy.repair_threshold is not None:
        return float(policy.repair_threshold)
    calibrated = getattr(predictor, "repair_threshold", None)
    return float(DEFAULT_REPAIR_THRESHOLD if calibrated is None else calibrated)


l2_threshold = fill_threshold  # the second level is filled at the same calibrated confidence


def split_l2(labels: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The top and second level of second-level labels ("Top > Second"); NA for a missing label (the fold-in
    class: no category)."""
    labels = labels.astype("string")
    parts = labels.str.split(LEVEL_SEPARATOR, n=1, regex=False)
    both = (parts.str.len() == 2).fillna(False).astype(bool)
    return parts.str[0].astype("string").where(both), parts.str[1].astype("string").where(both)


def repair_l2_mask(given_l2: pd.Series, top: pd.Series, predicted: pd.Series, confidence: pd.Series,
              threshold: float) -> pd.Series:
    """Whether to fill each product's second level: none given, a known top level (given or filled), and a
    prediction of a category (not the fold-in class) with confidence >= threshold whose top level is the product's."""
    predicted_top, predicted_second = split_l2(predicted)
    top = top.astype("string")
    fill = (given_l2.isna().to_numpy(dtype=bool) & top.notna().to_numpy(dtype=bool)
            & (predicted_top == top).fillna(False).to_numpy(dtype=bool)
            & predicted_second.notna().to_numpy(dtype=bool)
            & (confidence.to_numpy(dtype="float64", na_value=np.nan) >= threshold))
    return pd.Series(fill, index=given_l2.index, dtype=bool)


def masked_l2_evaluation(top: pd.Series, second: pd.Series, predictions: pd.DataFrame, threshold: float) -> dict:
    """Precision and coverage of the second-level fill on products whose second level is known but hidden (their
    top level given): a fill of "T > S" is right iff T and S are the product's two levels."""
    top = top.astype("string").reset_index(drop=True)
    truth = (top + LEVEL_SEPARATOR + second.astype("string").reset_index(drop=True)).to_numpy(dtype=object)
    fill = repair_l2_mask(pd.Series(pd.NA, index=top.index, dtype="string"), top, predictions["label"],
                     predictions["confidence"], threshold).to_numpy()
    # A fold-in answer (no class, a missing label) is never right.
    same = predictions["label"].astype("string").reset_index(drop=True) == pd.Series(truth, dtype="string")
    right = fill & same.fillna(False).to_numpy(dtype=bool)
    n, n_filled, n_right = len(truth), int(fill.sum()), int(right.sum())
    return {"l2_masked_n": n, "l2_masked_filled": n_filled, "l2_masked_correct": n_right,
            "l2_masked_precision": n_right / n_filled if n_filled else None,
            "l2_masked_coverage": n_filled / n if n else None}


@dataclass
class FieldRepair:
    """What one field's repair adds: columns of the repaired frame, audit rows, its run-row values, summary."""

    columns: dict[str, pd.Series] = dataclass_field(default_factory=dict)
    audit: list[dict] = dataclass_field(default_factory=list)
    run: dict = dataclass_field(default_factory=dict)
    summary: dict = dataclass_field(default_factory=dict)


def _text(value) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def product_keys(ids: pd.Series) -> pd.Series:
    """A key column as the text the store records its keys in (`shopflow.store.models.product_key_text`): what the
    audit trail's and the reviewers' keys are compared with, whatever the source's key type."""
    return ids.map(product_key_text).astype("object")


def _l2_repair(catalog: pd.DataFrame, as_of: pd.DataFrame, spec: SourceSpec, top: pd.Series, texts: list[str],
               as_of_split: pd.Series, predictor, policy, reverted: set, model_version: int) -> FieldRepair:
    column, product_id = l2_field(spec), spec.role_column("id")
    given = categories(catalog, spec)[1].astype("string")
    source = pd.Series(np.where(given.notna(), GIVEN, MISSING), index=catalog.index, dtype="string")
    result = FieldRepair(run={"rows_l2_filled": 0, "l2_masked_n": None, "l2_masked_filled": None,
                              "l2_masked_precision": None})
    if not predicts_l2(predictor):
        log.info("second level (%s) not repaired: the predictor answers no second level (predict(texts, level=...))",
                 column)
        result.columns = {"category_l2_repaired": given, "category_l2_source": source}
        result.summary = {"l2_threshold": None, "l2_skipped": "the predictor answers no second level"}
        return result
    threshold = l2_threshold(predictor, policy)
    candidates = (given.isna() & top.notna()).to_numpy(dtype=bool)
    as_of_top, as_of_l2 = categories(as_of, spec)
    masked = as_of[((category_status(as_of, spec) == INTACT_STATUS) & as_of_top.notna() & as_of_l2.notna()
                    & (as_of_split == "test")).to_numpy(dtype=bool)]
    candidate_texts = [t for t, c in zip(texts, candidates) if c]
    answers = predictor.predict(candidate_texts + product_text(masked, spec).tolist(), level="l2")
    label = pd.Series(pd.NA, index=catalog.index, dtype="string")
    confidence = pd.Series(np.nan, index=catalog.index, dtype="float64")
    label[candidates] = answers["label"].iloc[:len(candidate_texts)].to_numpy()
    confidence[candidates] = answers["confidence"].iloc[:len(candidate_texts)].to_numpy()
    fill = repair_l2_mask(given, top, label, confidence, threshold)
    kept_reverted = fill & product_keys(catalog[product_id]).isin(reverted)
    fill &= ~kept_reverted
    second = split_l2(label)[1]
    result.columns = {"category_l2_repaired": given.where(~fill, second),
                      "category_l2_source": source.mask(fill, MODEL_FILL).mask(kept_reverted, REVERTED)}
    result.audit = [{"uniq_id": uid, "action": FILL, "field": column, "before": None, "after": str(value),
                     "confidence": float(conf), "model_version": model_version}
                    for uid, value, conf in zip(catalog[product_id][fill], second[fill], confidence[fill])]
    masked_answers = answers.iloc[len(candidate_texts):].reset_index(drop=True)
    measured = held_out_figures(predictor, "l2", threshold, prefix="l2_") or masked_l2_evaluation(
        categories(masked, spec)[0], categories(masked, spec)[1], masked_answers, threshold)
    result.run = {"rows_l2_filled": int(fill.sum()), "l2_masked_n": measured["l2_masked_n"],
                  "l2_masked_filled": measured["l2_masked_filled"],
                  "l2_masked_precision": measured["l2_masked_precision"]}
    result.summary = {"l2_threshold": threshold, "l2_candidates": int(candidates.sum()),
                      "l2_reverted_kept": int(kept_reverted.sum()), **measured}
    return result


def _brand_repair(catalog: pd.DataFrame, as_of: pd.DataFrame, spec: SourceSpec, as_of_split: pd.Series,
                  reverted: set, model_version: int) -> FieldRepair:
    column, title, product_id = brand_field(spec), spec.role_column("title"), spec.role_column("id")
    known = as_of[column].astype("string").str.strip().fillna("").ne("").to_numpy(dtype=bool)
    vocabulary = brand_fill.build_vocabulary(as_of.loc[known, title], as_of.loc[known, column])
    filled = brand_fill.fill_brands(catalog[title], catalog[column], vocabulary)
    fill = (filled["brand_source"] == TITLE_MATCH).to_numpy(dtype=bool)
    kept_reverted = fill & product_keys(catalog[product_id]).isin(reverted).to_numpy(dtype=bool)
    fill &= ~kept_reverted
    value = filled["brand_repaired"].where(~kept_reverted, pd.NA)
    source = filled["brand_source"].mask(kept_reverted, REVERTED)
    measured = brand_fill.masked_brand_evaluation(as_of[title], as_of[column], as_of_split == "test")
    audit = [{"uniq_id": uid, "action": FILL, "field": column, "before": _text(before), "after": str(after),
              "confidence": float(conf), "model_version": model_version}
             for uid, before, after, conf in zip(catalog[product_id][fill], catalog[column][fill], value[fill],
                                                 filled["confidence"][fill])]
    return FieldRepair(
        columns={"brand_repaired": value, "brand_source": source}, audit=audit,
        run={"rows_brand_filled": int(fill.sum()), "brand_masked_n": measured["masked_n"],
             "brand_masked_filled": measured["masked_filled"], "brand_masked_precision": measured["masked_precision"]},
        summary={"brand_vocabulary": len(vocabulary), "brand_reverted_kept": int(kept_reverted.sum()),
                 **{f"brand_{k}": v for k, v in measured.items() if k != "vocabulary"}})


def _price_repair(catalog: pd.DataFrame, as_of: pd.DataFrame, spec: SourceSpec, top: pd.Series,
                  model_version: int) -> FieldRepair:
    column, product_id = price_field(spec), spec.role_column("id")
    as_of_top = categories(as_of, spec)[0]
    checked = price_check.check_prices(catalog[column], top, reference_prices=as_of[column],
                                       reference_groups=as_of_top)
    flagged = checked["price_anomaly"].to_numpy(dtype=bool)
    audit = [{"uniq_id": uid, "action": FLAG, "field": column, "before": f"{price:.12g}",
              "after": price_check.describe(price, reason, group, median, z), "confidence": RULE_CONFIDENCE,
              "model_version": model_version}
             for uid, price, reason, group, median, z in zip(
                 catalog[product_id][flagged], catalog[column][flagged].astype("float64"),
                 checked["price_anomaly_reason"][flagged], checked["group"][flagged],
                 checked["group_median"][flagged], checked["robust_z"][flagged])]
    reasons = checked["price_anomaly_reason"].value_counts()
    return FieldRepair(
        columns={"price_anomaly": checked["price_anomaly"].astype(bool),
                 "price_anomaly_reason": checked["price_anomaly_reason"]},
        audit=audit, run={"rows_price_flagged": int(flagged.sum())},
        summary={"price_flagged_by_reason": {str(k): int(v) for k, v in reasons.sort_index().items()},
                 "price_checked": int(catalog[column].notna().sum())})


def _validated(store: MetadataStore, source: str, ds: date) -> None:
    partitions = store.partitions(source, ds)
    if not partitions or partitions[0].status != "validated":
        status = partitions[0].status if partitions else "not recorded"
        raise PartitionNotValidatedError(f"{source} {ds}: partition is {status}, only a validated partition is repaired")


def held_out_figures(predictor, level: str, threshold: float, prefix: str = "") -> dict | None:
    """The masked figures at `threshold` from the predictor's held-out answers saved at training, where its serving
    members were refit on every label (the masked products are then in its training data); None otherwise."""
    held_out = getattr(predictor, "held_out", None)
    figures = held_out(level, threshold) if callable(held_out) else None
    return None if figures is None else {f"{prefix}{name}": value for name, value in figures.items()}


def masked_category_evaluation(truth: pd.Series, predictions: pd.DataFrame, repair_threshold: float) -> dict:
    """Precision and coverage of the fill rule on products whose true category is known but hidden.

    `truth` holds the true top-level categories of the masked products (test split, intact category) and
    `predictions` their predictions, row for row. A fill of X is correct iff X equals the true category.
    """
    truth = truth.astype("string").to_numpy(dtype=object)
    predicted = predictions["label"].astype("string")
    filled = (predicted.notna() & (predictions["confidence"] >= repair_threshold)).to_numpy(dtype=bool)
    correct = filled & (predicted.reset_index(drop=True) == pd.Series(truth, dtype="string")).fillna(False).to_numpy(bool)
    n, n_filled, n_correct = len(truth), int(filled.sum()), int(correct.sum())
    return {"masked_n": n, "masked_filled": n_filled, "masked_correct": n_correct,
            "masked_precision": n_correct / n_filled if n_filled else None,
            "masked_coverage": n_filled / n if n else None}


def repair_partition(settings: Settings, store: MetadataStore, ds: date, predictor, model_version: int, policy,
                     run_id: str | None = None, source: str | None = None) -> dict:
    """Repair the day's clean partition of the model catalogue (or of `source`, a catalog source that can train)
    into the repaired zone: its top-level and second-level category, its brand and a check of its prices (see the
    module docstring); audit it and measure the fills' precision on masked held-out products. `policy` gives
    repair_threshold and flag_threshold (a registry.TrainingPolicy). Returns the run's summary."""
    started = time.perf_counter()
    threshold_top = fill_threshold(predictor, policy)
    spec = roles.model_catalog_source(source)
    product_id = spec.role_column("id")
    _validated(store, spec.name, ds)
    clean_path = lake.lake_file(settings, "clean", spec.name, ds)
    catalog = read_parquet(clean_path).sort_values(product_id, kind="stable").reset_index(drop=True)
    given, _ = categories(catalog, spec)
    status = category_status(catalog, spec)
    as_of = catalog_as_of(store, ds, source=spec.name)
    as_of_top, _ = categories(as_of, spec)
    # The grouped split the model was trained on: its test products (and their near-identical listings) were never
    # learned from.
    as_of_split = grouped_split(as_of, spec)
    masked = as_of[(category_status(as_of, spec) == INTACT_STATUS) & as_of_top.notna()
                   & (as_of_split == "test")].reset_index(drop=True)
    broken = int(status.isin(BROKEN).sum())
    log.info("repairing %s %s with model v%d: %d products (%d without a category), fill at >= %.3f, flag at "
             ">= %.3f; %d masked test products for the precision check", spec.name, ds, model_version, len(catalog),
             broken, threshold_top, policy.flag_threshold, len(masked))

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

    field = category_field(spec)
    flags = label_issue_flags(predictor, product_keys(catalog[product_id]), given, status, texts)
    action = repair_actions(status, given, predictions["label"], predictions["confidence"], threshold_top,
                            policy.flag_threshold, None if flags is None else flags["flagged"].to_numpy())
    label_quality = pd.Series(np.nan, index=catalog.index)
    if flags is not None:  # a flag suggests the likeliest other class, with its out-of-fold probability
        flagged = (action == FLAG).to_numpy()
        predictions = predictions.copy()
        predictions.loc[flagged, "label"] = flags.loc[flagged, "suggested"]
        predictions.loc[flagged, "confidence"] = flags.loc[flagged, "suggested_probability"].round(6)
        label_quality = flags["label_quality"].where(flagged)
    reverted = _reverted_fills(store, ds)
    kept_reverted = (action == FILL) & product_keys(catalog[product_id]).isin(reverted.get(field, set()))
    action = action.mask(kept_reverted, UNCHANGED)

    repaired = _repaired_frame(catalog, given, predictions, action, kept_reverted)
    counts = {name: int((action == name).sum()) for name in (FILL, REVIEW, FLAG, UNCHANGED)}
    _check_ledger(repaired, counts, len(catalog), spec.name, ds)

    # The other fields, on the top level as repaired: given, or filled just now.
    top = repaired["category_top_repaired"]
    parts = []
    if l2_field(spec):
        parts.append(_l2_repair(catalog, as_of, spec, top, texts, as_of_split, predictor, policy,
                                reverted.get(l2_field(spec), set()), model_version))
    if brand_field(spec):
        parts.append(_brand_repair(catalog, as_of, spec, as_of_split, reverted.get(brand_field(spec), set()),
                                   model_version))
    if price_field(spec):
        parts.append(_price_repair(catalog, as_of, spec, top, model_version))
    for part in parts:
        for name, values in part.columns.items():
            repaired[name] = values
    field_audit = [row for part in parts for row in part.audit]
    _check_field_ledger(repaired, catalog, spec, field_audit, spec.name, ds)
    masked_result = held_out_figures(predictor, "top", threshold_top) or masked_category_evaluation(
        categories(masked, spec)[0], masked_predictions, threshold_top)
    output = lake.lake_file(settings, "repaired", spec.name, ds)
    with repaired_partition_lock(store, spec.name, ds):  # a reviewer's decision lands before or after, never lost
        repaired = with_decisions(store, spec, ds, repaired)  # reviewers' decisions survive a re-run
        write_parquet_atomic(repaired, output)
    audited = action != UNCHANGED
    audit = [
        {"uniq_id": uid, "action": act, "field": field, "before": None if pd.isna(before) else str(before),
         "after": None if pd.isna(after) else str(after), "confidence": float(conf), "model_version": model_version,
         "label_quality": None if pd.isna(quality) else round(float(quality), 6)}
        for uid, act, before, after, conf, quality in zip(
            catalog[product_id][audited], action[audited], given[audited],
            predictions["label"][audited], predictions["confidence"][audited], label_quality[audited])
    ] + field_audit
    run = {"model_version": model_version, "threshold": float(threshold_top), "rows_in": len(catalog),
           "rows_filled": counts[FILL], "rows_review": counts[REVIEW], "rows_flagged": counts[FLAG],
           "rows_unchanged": counts[UNCHANGED], "masked_n": masked_result["masked_n"],
           "masked_filled": masked_result["masked_filled"], "masked_precision": masked_result["masked_precision"],
           "output_path": str(output), **dict.fromkeys(FIELD_RUN_COLUMNS)}  # null: a field the source lacks
    for part in parts:
        run.update(part.run)
    store.record_repair(ds, run=run, audit=audit, run_id=run_id)

    log.info("%s %s: flags by %s", spec.name, ds, "confident learning on out-of-fold probabilities (label issues "
             "found at training; products new since judged by the class thresholds)" if flags is not None
             else f"the confidence rule (model v{model_version} has no label issues)")
    log.info("%s %s: %d filled, %d to review, %d flagged, %d unchanged (%d of them reverted fills kept "
             "reverted) of %d -> %s", spec.name, ds, counts[FILL], counts[REVIEW], counts[FLAG], counts[UNCHANGED],
             int(kept_reverted.sum()), len(catalog), output)
    precision, coverage = masked_result["masked_precision"], masked_result["masked_coverage"]
    log.info("masked precision at threshold %.3f: %s (%d correct of %d filled; coverage %s of %d held-out "
             "test products)", threshold_top,
             "n/a (nothing filled)" if precision is None else f"{precision:.4f}", masked_result["masked_correct"],
             masked_result["masked_filled"], "n/a" if coverage is None else f"{coverage:.4f}",
             masked_result["masked_n"])
    summary = {key: value for part in parts for key, value in {**part.run, **part.summary}.items()}
    _log_fields(spec, ds, summary)
    seconds = time.perf_counter() - started
    return {"ds": ds.isoformat(), **run, "flag_threshold": float(policy.flag_threshold),
            "rows_reverted_kept": int(kept_reverted.sum()), **masked_result, **summary, "seconds": round(seconds, 3),
            "products_per_second": round(len(everything) / predict_seconds, 1) if predict_seconds else None}


def _reverted_fills(store: MetadataStore, ds: date) -> dict[str, set]:
    """The products whose fill of each field a person reverted (they stay reverted on a re-run)."""
    reverted: dict[str, set] = {}
    for audit in store.repair_audit(ds, FILL):
        if audit.reverted_at is not None:
            reverted.setdefault(audit.field, set()).add(audit.uniq_id)
    return reverted


def _share(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _log_fields(spec: SourceSpec, ds: date, summary: dict) -> None:
    parts = []
    if l2_field(spec):
        parts.append(f"second level: {summary['rows_l2_filled']} filled" + (
            f" ({summary['l2_skipped']})" if summary.get("l2_skipped") else
            f" at >= {summary['l2_threshold']:.3f} (masked precision {_share(summary['l2_masked_precision'])}, "
            f"{summary['l2_masked_correct']} of {summary['l2_masked_filled']} filled; coverage "
            f"{_share(summary['l2_masked_coverage'])} of {summary['l2_masked_n']})"))
    if brand_field(spec):
        parts.append(f"brand: {summary['rows_brand_filled']} filled from titles with {summary['brand_vocabulary']} "
                     f"known brands (masked precision {_share(summary['brand_masked_precision'])}, "
                     f"{summary['brand_masked_correct']} of {summary['brand_masked_filled']} filled; coverage "
                     f"{_share(summary['brand_masked_coverage'])} of {summary['brand_masked_n']})")
    if price_field(spec):
        reasons = ", ".join(f"{k} {v}" for k, v in summary["price_flagged_by_reason"].items()) or "none"
        parts.append(f"prices: {summary['rows_price_flagged']} of {summary['price_checked']} flagged ({reasons})")
    if parts:
        log.info("%s %s: %s", spec.name, ds, "; ".join(parts))


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


def _check_field_ledger(repaired: pd.DataFrame, catalog: pd.DataFrame, spec: SourceSpec, audit: list[dict],
                        source: str, ds: date) -> None:
    """Per repaired field: every product is given, filled, missing or reverted; a given value is the clean one;
    a filled one is there, a missing or reverted one is not; fills and price flags are as many as their audit
    rows."""
    problems = []
    audited = {}
    for row in audit:
        audited[(row["field"], row["action"])] = audited.get((row["field"], row["action"]), 0) + 1
    for column, value_column, source_column, filled_as in (
            (l2_field(spec), "category_l2_repaired", "category_l2_source", MODEL_FILL),
            (brand_field(spec), "brand_repaired", "brand_source", TITLE_MATCH)):
        if column is None:
            continue
        sources, values = repaired[source_column], repaired[value_column]
        states = {state: int((sources == state).sum()) for state in (GIVEN, filled_as, MISSING, REVERTED)}
        given = (sources == GIVEN).to_numpy(dtype=bool)
        present = values.notna().to_numpy(dtype=bool)
        expected_present = sources.isin([GIVEN, filled_as]).to_numpy(dtype=bool)
        if sum(states.values()) != len(repaired):
            problems.append(f"{source_column}: {states} do not add up to {len(repaired)}")
        if states[filled_as] != audited.get((column, FILL), 0):
            problems.append(f"{column}: {states[filled_as]} fills written, {audited.get((column, FILL), 0)} audited")
        if (present != expected_present).any():
            problems.append(f"{value_column}: {int((present != expected_present).sum())} rows with a value that "
                            f"their {source_column} contradicts")
        clean = catalog[column].astype("string").to_numpy(dtype=object)[given]
        if not (values.astype("string").to_numpy(dtype=object)[given] == clean).all():
            problems.append(f"{value_column}: a given value differs from the clean {column}")
    if price_field(spec):
        flags, reasons = repaired["price_anomaly"], repaired["price_anomaly_reason"]
        if int(flags.sum()) != audited.get((price_field(spec), FLAG), 0) or (flags != reasons.notna()).any():
            problems.append(f"price_anomaly: {int(flags.sum())} flags, {int(reasons.notna().sum())} reasons, "
                            f"{audited.get((price_field(spec), FLAG), 0)} audited")
    if problems:
        raise RepairLedgerMismatch(f"{source} {ds}: " + "; ".join(problems))


def revert(settings: Settings, store: MetadataStore, ds: date, uniq_ids: Iterable[str] | None = None,
           source: str | None = None, field: str | None = None) -> int:
    """Undo the day's fills of one field (default the top-level category; or the second-level or brand column) --
    all, or those of the product ids `uniq_ids` -- from the audit trail: the repaired partition of the model
    catalogue (or `source`) gets the value from before the fill back (its source column says 'reverted') and the
    audit rows are marked reverted. Reverting a top-level fill also reverts the product's second-level fill (it
    was chosen to agree with the top level). Returns how many fills of `field` were reverted."""
    spec = roles.model_catalog_source(source)
    product_id = spec.role_column("id")
    fields = revertible_fields(spec)
    field = field or category_field(spec)
    if field not in fields:
        raise ValueError(f"{spec.name}: {field!r} is not a field the repair fills; those are: {', '.join(fields)}")
    fills = [a for a in store.repair_audit(ds, FILL) if a.reverted_at is None and a.field == field]
    if uniq_ids is not None:
        wanted = {product_key_text(uid) for uid in uniq_ids}
        unknown = wanted - {a.uniq_id for a in fills}
        if unknown:
            log.warning("%s %s: %d products have no %s fill to revert (e.g. %s)", spec.name, ds, len(unknown), field,
                        sorted(unknown)[0])
        fills = [a for a in fills if a.uniq_id in wanted]
    if not fills:
        log.info("%s %s: no %s fill to revert", spec.name, ds, field)
        return 0
    undo = {field: fills}
    second = l2_field(spec)
    if field == category_field(spec) and second:
        ids = {a.uniq_id for a in fills}
        dependent = [a for a in store.repair_audit(ds, FILL)
                     if a.reverted_at is None and a.field == second and a.uniq_id in ids]
        if dependent:
            undo[second] = dependent
    path = lake.lake_file(settings, "repaired", spec.name, ds)
    with repaired_partition_lock(store, spec.name, ds):  # no reviewer's decision is written over
        repaired = read_parquet(path)
        for name, rows in undo.items():
            value_column, source_column, _, _ = fields[name]
            if value_column not in repaired:
                raise LookupError(f"{path} has no {value_column} column: written by a repair without {name} fills")
            _restore(repaired, product_id, rows, value_column, source_column)
        write_parquet_atomic(repaired, path)  # the file first: a failure before the marks leaves a retryable revert
    marked = {}
    for name, rows in undo.items():
        _, _, counter, moves_to = fields[name]
        marked[name] = store.mark_reverted(ds, [a.uniq_id for a in rows], field=name, counter=counter,
                                           moves_to=moves_to)
    log.info("%s %s: reverted %d %s fills in %s%s", spec.name, ds, marked[field], field, path,
             f" (and the {marked[second]} {second} fills that relied on them)" if len(undo) > 1 else "")
    return marked[field]


def _restore(repaired: pd.DataFrame, product_id: str, fills: list, value_column: str, source_column: str) -> None:
    before = {a.uniq_id: a.before for a in fills}
    keys = product_keys(repaired[product_id])
    rows = keys.isin(before).to_numpy()
    restored = keys[rows].map(before)
    repaired[value_column] = repaired[value_column].astype("object")
    repaired.loc[rows, value_column] = restored.where(restored.notna(), None)
    repaired[value_column] = repaired[value_column].astype("string")
    repaired.loc[rows, source_column] = REVERTED
