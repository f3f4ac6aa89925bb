"""The model registry's rules: when to train, how a candidate is recorded, and the blessing gate.

Blessing (as TFX's Evaluator does, with the uncertainty in view): a candidate's proposal (the model its training
chose: the TF-IDF baseline, or a model that beat the baseline beyond a paired bootstrap's 95% interval, see
shopflow.model.training.selection) becomes champion only if its test macro-F1 meets an absolute floor and, when there is a
champion, its macro-F1 gain over the champion on the same test split has a 95% interval above zero. A gain inside
the interval is no evidence of a better model: the champion stays. The first model needs only the floor. Every
decision and its reason is stored with the candidate.

Training follows the model catalogue (`shopflow.sources.roles.model_catalog`): the first catalog-role source with a title
and categories. Without one the gate never trains, and its reason names each catalog source and what it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Mapping

from sqlalchemy import select

from shopflow.common.parquet import read_parquet
from shopflow.common.storage import StoragePath
from shopflow.config.options import default, values_of
from shopflow.sources import SourceSpec, roles
from shopflow.sources.role_frames import INTACT_STATUS, category_columns, category_status
from shopflow.store.models import ModelVersion, Partition
from shopflow.store.repository import MetadataStore

MODEL_NAME = "category_classifier"


@dataclass(frozen=True)
class TrainingPolicy:
    """When to train and what to bless, fill and flag; each field is a setting (shopflow.config.options, which
    holds the defaults): SHOPFLOW_TRAIN_ENABLED, _MIN_CHANGED, _MAX_AGE_DAYS, SHOPFLOW_BLESS_MACRO_F1_FLOOR,
    SHOPFLOW_REPAIR_THRESHOLD, SHOPFLOW_FLAG_THRESHOLD."""

    enabled: bool = default("SHOPFLOW_TRAIN_ENABLED")
    min_changed_products: int = default("SHOPFLOW_TRAIN_MIN_CHANGED")
    max_age_days: int = default("SHOPFLOW_TRAIN_MAX_AGE_DAYS")
    macro_f1_floor: float = default("SHOPFLOW_BLESS_MACRO_F1_FLOOR")
    # None: the model's calibrated threshold (shopflow.governance.repair.fill_threshold)
    repair_threshold: float | None = default("SHOPFLOW_REPAIR_THRESHOLD")
    flag_threshold: float = default("SHOPFLOW_FLAG_THRESHOLD")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "TrainingPolicy":
        return cls(**values_of("TrainingPolicy", env))


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def blessing_decision(candidate_f1: float, floor: float, *, champion_version: int | None = None,
                      versus_champion: dict | None = None, versus_baseline: dict | None = None,
                      selected: str = "tfidf", champion_f1: float | None = None) -> GateDecision:
    if candidate_f1 < floor:
        return GateDecision(False, f"macro-F1 {candidate_f1:.4f} is below the floor {floor:.4f}")
    if selected != "tfidf" and versus_baseline is not None and not _above_zero(versus_baseline):
        return GateDecision(False, f"{selected} does not beat the TF-IDF baseline beyond the uncertainty "
                               f"({_interval(versus_baseline)})")
    if champion_version is None:
        return GateDecision(True, f"first model: {selected}, macro-F1 {candidate_f1:.4f} meets the floor {floor:.4f}")
    if not versus_champion or versus_champion.get("ci_low") is None:
        # No paired comparison (the champion could not be loaded): the point estimates decide, and say so.
        if champion_f1 is not None and candidate_f1 <= champion_f1:
            return GateDecision(False, f"macro-F1 {candidate_f1:.4f} is not above champion v{champion_version}'s "
                                   f"{champion_f1:.4f} (no paired comparison was possible)")
        return GateDecision(True, f"macro-F1 {candidate_f1:.4f} above champion v{champion_version}'s {champion_f1} "
                              f"(no paired comparison was possible)")
    if _above_zero(versus_champion):
        return GateDecision(True, f"{selected} beats champion v{champion_version} on today's test split "
                              f"({_interval(versus_champion)})")
    return GateDecision(False, f"{selected}'s gain over champion v{champion_version} on today's test split is within the "
                           f"uncertainty ({_interval(versus_champion)}): the champion stays")


def _above_zero(bootstrap: dict) -> bool:
    return bootstrap.get("ci_low") is not None and bootstrap["ci_low"] > 0


def _interval(bootstrap: dict) -> str:
    return f"gain {bootstrap['gain']:+.4f}, 95% CI [{bootstrap['ci_low']:+.4f}, {bootstrap['ci_high']:+.4f}]"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def latest_model(store: MetadataStore) -> ModelVersion | None:
    with store.session() as session:
        return session.scalar(select(ModelVersion).where(ModelVersion.name == MODEL_NAME)
                              .order_by(ModelVersion.version.desc()).limit(1))


def champion(store: MetadataStore) -> ModelVersion | None:
    with store.session() as session:
        return session.scalar(select(ModelVersion).where(ModelVersion.name == MODEL_NAME,
                                                         ModelVersion.status == "champion"))


def models(store: MetadataStore) -> list[ModelVersion]:
    with store.session() as session:
        return list(session.scalars(select(ModelVersion).where(ModelVersion.name == MODEL_NAME)
                                    .order_by(ModelVersion.version)))


def _labelled(partition: Partition, spec: SourceSpec) -> int:
    """Products of a partition with an intact category (see shopflow.model.training.data), reading only what that needs."""
    frame = read_parquet(partition.clean_path, columns=category_columns(spec))
    return int((category_status(frame, spec) == INTACT_STATUS).sum())


def changed_labelled_products(store: MetadataStore, after: date | None, until: date,
                              source: SourceSpec | None = None) -> tuple[int, list[str]]:
    """Labelled products in validated partitions of the model catalogue (or `source`) with after < ds <= until, and
    those partitions."""
    spec = source or roles.model_catalog_source()
    count, used = 0, []
    for partition in store.partitions(spec.name):
        if partition.status != "validated" or partition.ds > until or (after is not None and partition.ds <= after):
            continue
        count += _labelled(partition, spec)
        used.append(partition.ds.isoformat())
    return count, used


def training_due(store: MetadataStore, ds: date, policy: TrainingPolicy, source: SourceSpec | None = None) -> GateDecision:
    """Whether to train a candidate on the model catalogue (or `source`) as of ds, and why."""
    if not policy.enabled:
        return GateDecision(False, "training is disabled (SHOPFLOW_TRAIN_ENABLED=false)")
    if source is None:
        catalogue = roles.model_catalog()
        if catalogue.source is None:
            return GateDecision(False, catalogue.explain())
        source = catalogue.source
    elif obstacle := roles.training_obstacle(source):
        return GateDecision(False, obstacle)
    last = latest_model(store)
    changed, partitions = changed_labelled_products(store, last.trained_on_ds if last else None, ds, source)
    if last is None:
        if changed == 0:
            return GateDecision(False, f"no validated {source.name} partition up to {ds}: nothing to train on")
        return GateDecision(True, f"no model yet; {changed:,} labelled products in {len(partitions)} {source.name} "
                              f"partitions")
    age = (ds - last.trained_on_ds).days
    if changed >= policy.min_changed_products:
        return GateDecision(True, f"{changed:,} new or changed labelled products since v{last.version} "
                              f"(threshold {policy.min_changed_products:,})")
    if age >= policy.max_age_days:
        return GateDecision(True, f"v{last.version} is {age} days old (maximum {policy.max_age_days})")
    return GateDecision(False, f"only {changed:,} new or changed labelled products since v{last.version} "
                           f"(threshold {policy.min_changed_products:,}) and it is {age} days old "
                           f"(maximum {policy.max_age_days})")


def catalogue_lineage(store: MetadataStore, ds: date, source: SourceSpec | None = None) -> list[dict]:
    """The partitions of the model catalogue (or `source`), validated and up to ds, that a model trained on ds
    learns from."""
    spec = source or roles.model_catalog_source()
    return [{"ds": p.ds.isoformat(), "load_kind": p.load_kind, "rows_clean": p.rows_clean, "path": p.clean_path}
            for p in store.partitions(spec.name) if p.status == "validated" and p.ds <= ds]


def register_candidate(store: MetadataStore, *, result: dict, ds: date, lineage: dict, run_id: str | None) -> int:
    with store.session() as session, session.begin():
        last = session.scalar(select(ModelVersion.version).where(ModelVersion.name == MODEL_NAME)
                              .order_by(ModelVersion.version.desc()).limit(1))
        version = (last or 0) + 1
        session.add(ModelVersion(
            name=MODEL_NAME, version=version, status="candidate", base_model=result["config"]["base_model"],
            hyperparameters=result["config"], data_lineage=lineage, metrics=registry_metrics(result),
            baseline_metrics=result["baseline"], training=result["training"],
            macro_f1=result["metrics"]["top"]["macro_f1"], artifact_path=result["artifact_path"],
            trained_on_ds=ds, airflow_run_id=run_id, created_at=_now(),
        ))
    return version


def registry_metrics(result: dict) -> dict:
    """What the registry keeps of a training's result: the proposal's metrics (top, l2), which candidate it is and
    why, every candidate's figures, the comparison with the champion and the repair threshold."""
    return {**result["metrics"], **{key: result.get(key) for key in (
        "selected", "selection_reason", "best_on_validation", "candidates", "versus_champion", "repair_threshold",
        "embeddings", "gold_labels", "split", "cross_validation", "evidence")}}


def finetune_dirs(store: MetadataStore) -> list[tuple[int, str]]:
    """(version, artifact path) of every registered model, newest first: where a warm start may come from."""
    return [(m.version, m.artifact_path) for m in reversed(models(store)) if m.artifact_path]


def bless(store: MetadataStore, version: int, policy: TrainingPolicy) -> GateDecision:
    """Apply the blessing gate to a candidate and record the outcome (promotion retires the old champion)."""
    with store.session() as session, session.begin():
        candidate = session.scalar(select(ModelVersion).where(ModelVersion.name == MODEL_NAME,
                                                              ModelVersion.version == version))
        current = session.scalar(select(ModelVersion).where(ModelVersion.name == MODEL_NAME,
                                                            ModelVersion.status == "champion"))
        metrics = candidate.metrics or {}
        selected = metrics.get("selected", "tfidf")
        evidence = metrics.get("evidence")
        versus_baseline = evidence["bootstrap"] if evidence else (
            ((metrics.get("candidates") or {}).get(selected) or {}).get("versus_baseline"))
        versus_champion = metrics.get("versus_champion")
        if current is not None and (versus_champion or {}).get("version") != current.version:
            versus_champion = None  # measured against another model than today's champion
        decision = blessing_decision(candidate.macro_f1, policy.macro_f1_floor,
                                     champion_version=current.version if current else None,
                                     versus_champion=versus_champion, versus_baseline=versus_baseline,
                                     selected=selected, champion_f1=current.macro_f1 if current else None)
        if decision.promote:
            if current is not None:
                current.status = "retired"
            candidate.status = "champion"
        else:
            candidate.status = "rejected"
        candidate.decision_reason = decision.reason
        candidate.decided_at = _now()
    return decision


def model_dir(models_root: StoragePath, version: int) -> StoragePath:
    return models_root / MODEL_NAME / f"v{version}"
