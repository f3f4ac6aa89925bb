"""The model steps of a day: the training gate, training a candidate, the blessing gate, repair, search intent
and the catalogue's near-duplicate clusters (`find_duplicates`).

Like `shopflow.steps.partition`, each step reads the store and the lake, records what it did, and returns a small dict.
`NothingToDo` means the step has no work today (no catalogue change, no champion, no partition): a skip.

The steps serve the model catalogue (`shopflow.sources.roles.model_catalog`: the first catalog-role source with a title
and categories) and every search-role source; the training gate logs, for each other catalog source, why it is
not trained on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from datetime import date
from typing import Iterator

from shopflow.common.errors import ModelInputError
from shopflow.config.settings import Settings
from shopflow.governance import review
from shopflow.lake import zones as lake
from shopflow.model.registry import (
    MODEL_NAME,
    TrainingPolicy,
    bless,
    catalogue_lineage,
    champion,
    finetune_dirs,
    latest_model,
    register_candidate,
    training_due,
)
from shopflow.sources import roles
from shopflow.store.repository import MetadataStore

log = logging.getLogger("shopflow.model")


class NothingToDo(Exception):
    """The step has nothing to do for this day; the reason is the message."""


@contextlib.contextmanager
def catalogue_as_declared(source) -> Iterator[None]:
    """Turns a missing column of the catalogue's clean partition (a KeyError from reading its role fields) into a
    ModelInputError naming the source and the field that maps it: deterministic, so the operator does not retry."""
    try:
        yield
    except KeyError as exc:
        column = exc.args[0] if exc.args else "?"
        fields = [name for name, mapped in source.role.fields.items()
                  if mapped == column or (isinstance(mapped, list) and column in mapped)]
        played = f" (role field {', '.join(fields)})" if fields else ""
        raise ModelInputError(f"{source.name}: column {column!r}{played} is not in its clean partition; check the "
                              f"role mapping in the sources file (`python -m shopflow sources check`)") from exc


def _store(settings: Settings) -> MetadataStore:
    store = MetadataStore(settings.store_url)
    store.check_schema()
    return store


def policy() -> TrainingPolicy:
    return TrainingPolicy.from_env(dict(os.environ))


# The model steps a day's plan may start (task ids of the DAG's `model` group).
MODEL_STEPS = ("training_gate", "repair", "search_intent", "duplicates")


def plan_model_steps(present: list[str]) -> list[str]:
    """The model steps that may have work on a day whose landed sources are `present` (`partition.plan_day`); each
    other one would only find nothing to do (NothingToDo), so the plan skips it without starting it. The rules are
    the steps' own: repair and duplicates need a validated partition of the model catalogue for the day, search
    intent one of a search source, both only possible when it landed; the training gate runs whenever training is
    enabled (a model can be due by its age alone)."""
    catalogue = roles.model_catalog()
    planned = []
    if policy().enabled and catalogue.source is not None:
        planned.append("training_gate")
    if catalogue.source is not None and catalogue.name in present:
        planned += ["repair", "duplicates"]
    if any(spec.name in present for spec in roles.sources_of("search")):
        planned.append("search_intent")
    return [step for step in MODEL_STEPS if step in planned]


def training_gate(settings: Settings, ds: date, run_id: str | None = None) -> dict:
    catalogue = roles.model_catalog()
    for reason in catalogue.passed_over.values():
        log.info("training gate for %s: %s", ds, reason)
    with catalogue_as_declared(catalogue.source):
        decision = training_due(_store(settings), ds, policy(), catalogue.source)
    log.info("training gate for %s: %s (%s)", ds, "train" if decision.promote else "skip", decision.reason)
    not_trained = [reason for reason in catalogue.passed_over.values() if reason not in decision.reason]
    if not decision.promote:
        raise NothingToDo("; ".join([decision.reason, *not_trained]))
    return {"ds": ds.isoformat(), "train": True, "reason": decision.reason, "catalog": catalogue.name,
            "not_trained": catalogue.passed_over}


def train(settings: Settings, ds: date, run_id: str | None = None, config=None) -> dict:
    from shopflow.lake.catalog_view import catalog_as_of
    from shopflow.model.training.config import TrainingConfig
    from shopflow.model.training.data import labelled_examples
    from shopflow.model.training.runner import run_training

    store = _store(settings)
    catalogue = roles.model_catalog()
    decision = training_due(store, ds, policy(), catalogue.source)  # again: another run may have trained meanwhile
    if not decision.promote:
        raise NothingToDo(decision.reason)
    source = catalogue.source
    config = config or TrainingConfig.from_env()
    catalog = catalog_as_of(store, ds, source=source.name)
    gold = review.gold_labels(store, source.name)
    with catalogue_as_declared(source):
        examples = labelled_examples(catalog, config.rare_class_min, source, gold=gold)
    if examples.empty:
        fields = source.role.columns("category_levels") or [source.role_column("category_path") or "?"]
        raise ModelInputError(f"{source.name}: no product of its catalogue as of {ds} has a usable category "
                              f"({', '.join(fields)}): nothing to learn from")
    tag = hashlib.sha1(f"{ds}|{run_id}".encode()).hexdigest()[:8]
    output = settings.models_dir / MODEL_NAME / f"trained_{ds.isoformat()}_{tag}"
    current = champion(store)
    warm_start = _warm_start(settings, store, config.base_model)
    log.info("training candidates on the %s catalogue as of %s: %s labelled products of %s (%s gold labels from "
             "reviewers); base model %s; warm start %s; champion %s", source.name, ds, f"{len(examples):,}",
             f"{len(catalog):,}", f"{int(examples['gold'].sum()):,}", config.base_model, warm_start or "none",
             f"v{current.version}" if current else "none")
    result = run_training(examples, output, config, log=log.info, warm_start=warm_start,
                          champion={"version": current.version, "path": _local_model(settings, current.artifact_path)}
                          if current else None, embedding_cache_dir=settings.embedding_cache_dir)
    lineage = {"catalog_source": source.name, "catalog_partitions": catalogue_lineage(store, ds, source),
               "examples": len(examples), "splits": result["split_sizes"], "gold_labels": result["gold_labels"],
               "warm_start": warm_start}
    version = register_candidate(store, result=result, ds=ds, lineage=lineage, run_id=run_id)
    store.record_lineage(source.name, ds, task="train", inputs=[p["path"] for p in lineage["catalog_partitions"]],
                         outputs=[result["artifact_path"]], run_id=run_id)
    summary = {"version": version, "selected": result["selected"], "macro_f1": result["metrics"]["top"]["macro_f1"],
               "baseline_macro_f1": result["baseline"]["top"]["macro_f1"], "artifact_path": result["artifact_path"],
               "device": result["training"]["device"], "samples_per_second": round(result["training"]["samples_per_second"], 1)}
    log.info("registered candidate v%s: %s", version, summary)
    return summary


def _local_model(settings: Settings, artifact_path: str) -> str:
    from shopflow.common import storage

    path = storage.as_path(artifact_path)
    return str(storage.local_copy(path, settings.model_cache_dir) if storage.is_remote(path) else path)


def _warm_start(settings: Settings, store: MetadataStore, base_model: str | None = None) -> str | None:
    """The newest registered model's fine-tune (whatever its status): CPU budgets of successive days add up. Only one
    of the same encoder as `base_model` (SHOPFLOW_ENCODER / SHOPFLOW_BASE_MODEL): after the encoder changes, the
    fine-tune starts from the new one instead of carrying on with the old."""
    from pathlib import Path

    wanted = _architecture(Path(base_model)) if base_model else None
    for version, artifact_path in finetune_dirs(store):
        try:
            finetune = Path(_local_model(settings, artifact_path)) / "finetune"
        except Exception as exc:  # a vanished artifact: try the one before
            log.warning("v%s's artifact %s is unreadable for a warm start: %s", version, artifact_path, exc)
            continue
        if not (finetune / "heads.pt").is_file():
            continue
        if wanted is not None and _architecture(finetune) != wanted:
            log.info("v%s's fine-tune is another encoder than %s: no warm start from it", version, base_model)
            continue
        return str(finetune)
    return None


def _architecture(model_dir) -> tuple | None:
    """What makes two model directories the same encoder (config.json's type and shape); None when unreadable."""
    import json

    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return tuple(config.get(k) for k in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size"))


def bless_candidate(settings: Settings, ds: date, run_id: str | None = None) -> dict:
    store = _store(settings)
    candidate = latest_model(store)
    if candidate is None or candidate.status != "candidate" or candidate.trained_on_ds != ds:
        raise NothingToDo(f"no candidate trained on {ds} awaits a decision")
    decision = bless(store, candidate.version, policy())
    log.info("v%s %s: %s", candidate.version, "PROMOTED to champion" if decision.promote else "rejected", decision.reason)
    return {"version": candidate.version, "promoted": decision.promote, "reason": decision.reason}


def _predictor(settings: Settings, store: MetadataStore):
    from shopflow.model.inference import Predictor

    current = champion(store)
    if current is None:
        raise NothingToDo("no champion model yet")
    return Predictor(current.artifact_path, cache_root=settings.model_cache_dir,
                     embedding_cache_dir=settings.embedding_cache_dir), current.version


def repair(settings: Settings, ds: date, run_id: str | None = None) -> dict:
    from shopflow.governance.repair import repair_partition

    store = _store(settings)
    catalogue = roles.model_catalog()
    if catalogue.source is None:
        raise NothingToDo(catalogue.explain())
    source = catalogue.name
    partitions = [p for p in store.partitions(source, ds) if p.status == "validated"]
    if not partitions:
        raise NothingToDo(f"no validated {source} partition for {ds}")
    predictor, version = _predictor(settings, store)
    with catalogue_as_declared(catalogue.source):
        summary = repair_partition(settings, store, ds, predictor, version, policy(), run_id=run_id, source=source)
    store.record_lineage(source, ds, task="repair", inputs=[partitions[0].clean_path],
                         outputs=[str(lake.lake_file(settings, "repaired", source, ds))], run_id=run_id)
    return summary


def search_intent(settings: Settings, ds: date, run_id: str | None = None) -> dict:
    from shopflow.model.search_intent import classify_queries

    store = _store(settings)
    sources = [spec.name for spec in roles.sources_of("search")]
    validated = [name for name in sources if any(p.status == "validated" for p in store.partitions(name, ds))]
    for name in sorted(set(sources) - set(validated)):
        log.info("search intent for %s: %s has no validated partition; its queries are not attributed", ds, name)
    if not validated:
        raise NothingToDo(f"no validated partition of a search source ({', '.join(sources) or 'none declared'}) "
                          f"for {ds}")
    predictor, version = _predictor(settings, store)
    return classify_queries(settings, store, ds, predictor, version, run_id=run_id, sources=validated)


def find_duplicates(settings: Settings, ds: date, run_id: str | None = None) -> dict:
    """Near-duplicate clusters of the model catalogue as of ds (`shopflow.governance.duplicates`): the lake zone
    `duplicates/<source>/ds=<ds>/`, its ledger and GX results in the store, its lineage. Skipped on a day without a
    validated catalogue partition (the clusters cannot have changed)."""
    from shopflow.governance.duplicates import as_of_partitions, pairs_file, publish_duplicates

    store = _store(settings)
    catalogue = roles.model_catalog()
    if catalogue.source is None:
        raise NothingToDo(catalogue.explain())
    source = catalogue.name
    if not any(p.status == "validated" for p in store.partitions(source, ds)):
        raise NothingToDo(f"no validated {source} partition for {ds}: its duplicates are unchanged")
    with catalogue_as_declared(catalogue.source):
        summary = publish_duplicates(settings, store, ds, catalogue.source, run_id=run_id)
    output = lake.lake_file(settings, "duplicates", source, ds)
    store.record_lineage(source, ds, task="duplicates",
                         inputs=[p.clean_path for p in as_of_partitions(store, source, ds)],
                         outputs=[str(output), str(pairs_file(output))], run_id=run_id)
    return summary
