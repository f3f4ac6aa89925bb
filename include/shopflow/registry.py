"""The model registry's rules: when to train, how a candidate is recorded, and the blessing gate.

Blessing (as TFX's Evaluator does): a candidate becomes champion only if its test macro-F1 is at least an
absolute floor and at least the champion's macro-F1 minus a small tolerance; the first model needs only the
floor. Every decision and its reason is stored with the candidate.

Training follows the model catalogue (`shopflow.roles.model_catalog`): the first catalog-role source with a title
and categories. Without one the gate never trains, and its reason names each catalog source and what it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from sqlalchemy import select

from shopflow import roles
from shopflow.landing_io import read_parquet
from shopflow.role_frames import INTACT_STATUS, category_status
from shopflow.sources import SourceSpec
from shopflow.storage import StoragePath
from shopflow.store.models import ModelVersion, Partition
from shopflow.store.repository import MetadataStore

MODEL_NAME = "category_classifier"


@dataclass(frozen=True)
class TrainingPolicy:
    enabled: bool = True
    min_changed_products: int = 500
    max_age_days: int = 30
    macro_f1_floor: float = 0.5
    tolerance: float = 0.01
    repair_threshold: float = 0.9
    flag_threshold: float = 0.97

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "TrainingPolicy":
        fields = {
            "min_changed_products": ("SHOPFLOW_TRAIN_MIN_CHANGED", int),
            "max_age_days": ("SHOPFLOW_TRAIN_MAX_AGE_DAYS", int),
            "macro_f1_floor": ("SHOPFLOW_BLESS_MACRO_F1_FLOOR", float),
            "tolerance": ("SHOPFLOW_BLESS_TOLERANCE", float),
            "repair_threshold": ("SHOPFLOW_REPAIR_THRESHOLD", float),
            "flag_threshold": ("SHOPFLOW_FLAG_THRESHOLD", float),
        }
        values = {name: cast(env[var]) for name, (var, cast) in fields.items() if env.get(var)}
        enabled = env.get("SHOPFLOW_TRAIN_ENABLED", "true").strip().lower() not in ("0", "false", "no", "off")
        return cls(enabled=enabled, **values)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def blessing_decision(candidate_f1: float, champion_f1: float | None, floor: float, tolerance: float) -> Decision:
    if candidate_f1 < floor:
        return Decision(False, f"macro-F1 {candidate_f1:.4f} is below the floor {floor:.4f}")
    if champion_f1 is None:
        return Decision(True, f"first model: macro-F1 {candidate_f1:.4f} meets the floor {floor:.4f}")
    if candidate_f1 < champion_f1 - tolerance:
        return Decision(False, f"macro-F1 {candidate_f1:.4f} is worse than the champion's {champion_f1:.4f} "
                               f"by more than the tolerance {tolerance:.4f}")
    return Decision(True, f"macro-F1 {candidate_f1:.4f} >= champion {champion_f1:.4f} - tolerance {tolerance:.4f}")


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
    """Products of a partition with an intact category (see shopflow.training.data), reading only what that needs."""
    status_column = spec.role_column("category_status")
    category_column = (spec.role.columns("category_levels") or [spec.role_column("category_path")])[0]
    frame = read_parquet(partition.clean_path, columns=[status_column or category_column])
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


def training_due(store: MetadataStore, ds: date, policy: TrainingPolicy, source: SourceSpec | None = None) -> Decision:
    """Whether to train a candidate on the model catalogue (or `source`) as of ds, and why."""
    if not policy.enabled:
        return Decision(False, "training is disabled (SHOPFLOW_TRAIN_ENABLED=false)")
    if source is None:
        catalogue = roles.model_catalog()
        if catalogue.source is None:
            return Decision(False, catalogue.explain())
        source = catalogue.source
    elif obstacle := roles.training_obstacle(source):
        return Decision(False, obstacle)
    last = latest_model(store)
    changed, partitions = changed_labelled_products(store, last.trained_on_ds if last else None, ds, source)
    if last is None:
        if changed == 0:
            return Decision(False, f"no validated {source.name} partition up to {ds}: nothing to train on")
        return Decision(True, f"no model yet; {changed:,} labelled products in {len(partitions)} {source.name} "
                              f"partitions")
    age = (ds - last.trained_on_ds).days
    if changed >= policy.min_changed_products:
        return Decision(True, f"{changed:,} new or changed labelled products since v{last.version} "
                              f"(threshold {policy.min_changed_products:,})")
    if age >= policy.max_age_days:
        return Decision(True, f"v{last.version} is {age} days old (maximum {policy.max_age_days})")
    return Decision(False, f"only {changed:,} new or changed labelled products since v{last.version} "
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
            hyperparameters=result["config"], data_lineage=lineage, metrics=result["metrics"],
            baseline_metrics=result["baseline"], training=result["training"],
            macro_f1=result["metrics"]["top"]["macro_f1"], artifact_path=result["artifact_path"],
            trained_on_ds=ds, airflow_run_id=run_id, created_at=_now(),
        ))
    return version


def bless(store: MetadataStore, version: int, policy: TrainingPolicy) -> Decision:
    """Apply the blessing gate to a candidate and record the outcome (promotion retires the old champion)."""
    with store.session() as session, session.begin():
        candidate = session.scalar(select(ModelVersion).where(ModelVersion.name == MODEL_NAME,
                                                              ModelVersion.version == version))
        current = session.scalar(select(ModelVersion).where(ModelVersion.name == MODEL_NAME,
                                                            ModelVersion.status == "champion"))
        decision = blessing_decision(candidate.macro_f1, current.macro_f1 if current else None,
                                     policy.macro_f1_floor, policy.tolerance)
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
