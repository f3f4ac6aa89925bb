"""Human review of the catalogue repair: reviewers accept, reject or correct what the repair step could not decide.

The repair (`shopflow.governance.repair`) audits three kinds of items per day: `fill` (a confident model filled a missing
category), `review` (no confident fill: the category stays missing, the suggestion is kept) and `flag` (a confident
model disagrees with the given category, which is left unchanged). Review and flag items are the **pending** ones: a
person has to look at them. Fills may be reviewed too (a rejected fill goes back to the value before it).

Decisions
---------
| decision | on a fill                 | on a review item          | on a flag                           |
|----------|---------------------------|---------------------------|-------------------------------------|
| accept   | keeps the model's fill    | sets the suggestion       | sets the suggestion                 |
| reject   | reverts to the value before (none) | stays without a category | keeps the given category      |
| correct  | sets the reviewer's value | sets the reviewer's value | sets the reviewer's value           |

`category_top_repaired` gets the decision's value and `category_source` becomes `reviewer_accepted`,
`reviewer_rejected` or `reviewer_corrected`. A correction must be a category the catalogue knows (a top-level
category of an intact product, or "Top > Second" for a second level it knows; case and spacing are forgiven, the
catalogue's spelling is stored). A real class of the catalogue is a category whatever its name (`other` too). The
model's fold-in class (classes under the training's minimum size folded together,
`shopflow.model.training.data.fold_in_label`) names no category: the repair audits no suggestion for a product the
model puts there, and such an item is one the model knows no class for (`Item.fold_in`): it offers nothing to accept
(`Item.acceptable` is false, an accept is refused, the bulk accept leaves it), a reviewer corrects or rejects it. A
product without an audited item that day is an unknown item: a clear error, and nothing of the batch is recorded.

Product keys are compared as text whatever the source's key type (`shopflow.store.models.product_key_text`: the
store records an integer key 72 as "72", and `--id 72`, a page's form field and a JSON `"uniq_id": 72` or `"72"`
all name it).

Near-duplicate clusters
-----------------------
Listings of one product (`shopflow.governance.duplicates`: the day's members file in the lake's `duplicates` zone)
are decided once: `Item.cluster_id` names the item's cluster, and `cards(items)` groups the listed items of one
cluster into one `Card`, which the review page shows with one decision for all of them (accept only where every
item suggests the same category). The decision is recorded per item (one `review_decisions` row each, each
re-decidable on its own); a day without a duplicates output has no clusters and every card is one item.

Decisions are stored in the metadata store (`review_decisions`: product, field, decision, value, reviewer, via,
decided_at, the repair's run id; one current decision per day, product and field, a re-decision replaces it and keeps
the replaced one in its history; deciding the same again changes nothing). They are applied at once to the day's
repaired partition (all of the day's decisions, read from the store and written with write_parquet_atomic under the
partition's lock, `repaired_partition_lock`: reviewers deciding the same day at once, in threads of one api-server
or in several processes, apply one after the other, and each applies every decision recorded before it) and on
every re-run of the repair for that day (`repair_partition` applies them before it writes: decisions survive a
re-run, as reverted fills do). The run's ledger (`repair_runs`) keeps describing what the model did; the decisions
are counted beside it.

A refusal (ReviewError) names what was submitted for the command line, whose user typed it (cut to a few dozen
characters); its `public` text says the same without the submitted value, for answers to web requests, which never
echo one back.

`gold_labels(store, source)` turns the decisions that name a category (accept, correct, and a rejected flag, which
confirms the given category) into training labels: uniq_id, label_top, label_l2 (None where the reviewer did not
set the second level; a confirmed flag keeps the catalogue's). The latest decision of a product wins across days.
`shopflow.model.training.data.labelled_examples(..., gold=...)` marks those rows `gold`.

Where reviewers work, and why
-----------------------------
A day can hold hundreds of items (255 on the real snapshot day). Airflow's human-in-the-loop operators
(providers-standard 1.21: HITLOperator, ApprovalOperator, HITLEntryOperator; on Airflow 3.3 the task waits in
`awaiting_input`, holds no worker slot, and the scheduler applies `defaults` when `response_timeout` passes, or fails
the task when there are none) ask **one** question per task instance: a list of options plus a form of Dag params.
Hundreds of per-item decisions do not fit in that form (one JSON blob, no product titles, no suggestion beside each
item, one submit per task, a 409 for any second answer). So:

- per-item decisions are made on the **review page** of the shopflow UI plugin (`/shopflow/review/<ds>`: a table of
  the day's items with title, given category, suggestion and confidence, filterable and paged, one form that saves
  many decisions at once, a bulk "accept every pending suggestion at confidence >= x"; JSON routes for scripts) or
  with `python -m shopflow review list|decide` for people without the UI;
- the DAG's `model.review` task (`shopflow_airflow.review.ReviewGateOperator`, a HITLOperator) **announces** the day's
  batch in Airflow's Required Actions inbox with its counts and the page's link, and waits at most
  `response_timeout` (SHOPFLOW_REVIEW_TIMEOUT_MINUTES). Answering "Reviewed" (optionally with a bulk-accept
  confidence) closes it; the timeout answers "Later" by default: the items stay unreviewed, the run goes on. The
  report never waits for it, backfills and `airflow dags test` runs (no scheduler applies a timeout there) do not
  wait at all, and a day with nothing pending skips it.

This module knows nothing of Airflow.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Iterable

import numpy as np
import pandas as pd

from shopflow.common import storage
from shopflow.common.parquet import parquet_columns, read_parquet, write_parquet_atomic
from shopflow.config.settings import Settings
from shopflow.governance import duplicates
from shopflow.governance.actions import ACTIONS, FILL, FLAG, PENDING_ACTIONS, REVIEW  # noqa: F401 - ACTIONS for callers
from shopflow.lake import zones as lake
from shopflow.sources import SourceSpec, roles
from shopflow.sources.role_frames import CATEGORY_PATH_SEPARATOR, LEVEL_SEPARATOR, categories, category_field, category_status
from shopflow.store.models import product_key_text
from shopflow.store.repository import MetadataStore

log = logging.getLogger("shopflow.governance.review")

ACCEPT, REJECT, CORRECT = "accept", "reject", "correct"
DECISIONS = (ACCEPT, REJECT, CORRECT)
REVIEWER_ACCEPTED, REVIEWER_REJECTED, REVIEWER_CORRECTED = "reviewer_accepted", "reviewer_rejected", "reviewer_corrected"
CATEGORY_SOURCE = {ACCEPT: REVIEWER_ACCEPTED, REJECT: REVIEWER_REJECTED, CORRECT: REVIEWER_CORRECTED}
VIAS = ("page", "api", "cli", "hitl")
STATES = ("pending", "decided", "all")


class ReviewError(ValueError):
    """A decision that cannot be recorded; the message says why. Nothing of its batch was recorded.

    `public`: the reason without the submitted value (the same as the message when it names none)."""

    def __init__(self, message: str, public: str | None = None):
        super().__init__(message)
        self.public = message if public is None else public


class UnknownItem(ReviewError):
    """The product has no audited repair item that day."""


class InvalidDecision(ReviewError):
    """Not a decision, a correction to no known category, or an accept of a suggestion that names none."""


@dataclass(frozen=True)
class ItemDecision:
    uniq_id: str  # the product's key; any other type (an int from a JSON body) is taken as its text
    decision: str  # accept | reject | correct
    value: str | None = None  # the correction (correct only)

    def __post_init__(self):
        if not isinstance(self.uniq_id, str):
            object.__setattr__(self, "uniq_id", product_key_text(self.uniq_id))


@dataclass
class Item:
    """One audited repair item of a day, with its current decision (if any)."""

    uniq_id: str
    action: str  # fill | review | flag
    field: str
    before: str | None
    suggestion: str | None
    confidence: float
    model_version: int
    airflow_run_id: str | None
    reverted: bool  # a fill undone with `revert-repair`
    title: str | None = None
    decision: str | None = None
    value: str | None = None
    value_l2: str | None = None
    reviewer: str | None = None
    via: str | None = None
    decided_at: datetime | None = None
    revision: int | None = None
    cluster_id: str | None = None  # its near-duplicate cluster that day (shopflow.governance.duplicates), if any
    # a label-issue flag's label quality (out-of-fold probability of the given category; lowest: likeliest error)
    label_quality: float | None = None

    @property
    def pending(self) -> bool:
        return self.decision is None and self.action in PENDING_ACTIONS

    @property
    def fold_in(self) -> bool:
        """No suggestion: the model's answer was its fold-in class, it knows no class for this product."""
        return self.suggestion is None

    @property
    def acceptable(self) -> bool:
        """Accepting names a category: there is a suggestion (the fold-in class is none)."""
        return not self.fold_in

    def as_dict(self) -> dict:
        data = asdict(self)
        data["decided_at"] = self.decided_at.isoformat() if self.decided_at else None
        data["pending"] = self.pending
        data["acceptable"] = self.acceptable
        data["fold_in"] = self.fold_in
        return data


@dataclass
class Card:
    """What the review page decides at once: one item, or the listed items of one near-duplicate cluster."""

    items: list[Item]
    cluster_id: str | None = None  # set when the card holds a cluster's items (two or more)

    @property
    def ids(self) -> list[str]:
        return [i.uniq_id for i in self.items]

    @property
    def suggestion(self) -> str | None:
        """The items' one suggestion (None when they differ)."""
        suggestions = {i.suggestion for i in self.items}
        return suggestions.pop() if len(suggestions) == 1 else None

    @property
    def acceptable(self) -> bool:
        """Accepting names one category for every item: each is acceptable and they suggest the same."""
        return all(i.acceptable for i in self.items) and self.suggestion is not None

    @property
    def decision(self) -> str | None:
        """The items' one current decision (None when any is undecided or they differ)."""
        decisions = {i.decision for i in self.items}
        return decisions.pop() if len(decisions) == 1 else None

    @property
    def pending(self) -> bool:
        return any(i.pending for i in self.items)

    def as_dict(self) -> dict:
        return {"cluster_id": self.cluster_id, "ids": self.ids, "acceptable": self.acceptable,
                "suggestion": self.suggestion, "decision": self.decision, "pending": self.pending}


def cards(listed: list[Item]) -> list[Card]:
    """The listed items as cards, in the list's order: the items of one cluster (two or more of them listed) in one
    card where the first of them stands, every other item in a card of its own."""
    by_cluster: dict[str, list[Item]] = {}
    for item in listed:
        if item.cluster_id is not None:
            by_cluster.setdefault(item.cluster_id, []).append(item)
    found, placed = [], set()
    for item in listed:
        members = by_cluster.get(item.cluster_id) if item.cluster_id is not None else None
        if members is None or len(members) < 2:
            found.append(Card([item]))
        elif item.cluster_id not in placed:
            placed.add(item.cluster_id)
            found.append(Card(members, cluster_id=item.cluster_id))
    return found


def cluster_decisions(ids: Iterable, decision: str, value: str | None = None) -> list[ItemDecision]:
    """One decision for every item of a cluster's card: one ItemDecision per product (each recorded, and
    re-decidable, on its own)."""
    return [ItemDecision(uid, decision, value) for uid in dict.fromkeys(product_key_text(u) for u in ids)]


def undecided_reviews(store: MetadataStore, ds: date) -> list:
    """The day's repair audit rows sent to review that no reviewer has decided yet: the review backlog (its alert,
    shopflow.observability.alerts, and the report's status read it). A decision ends the wait."""
    decided = {d.uniq_id for d in store.review_decisions(ds=ds)}
    return [a for a in store.repair_audit(ds, action=REVIEW) if a.uniq_id not in decided]


def duplicate_clusters(settings: Settings, spec: SourceSpec, ds: date) -> dict[str, str]:
    """product key -> cluster id of the day's near-duplicate clusters of the catalogue (empty when the duplicates
    step wrote nothing that day)."""
    path = lake.lake_file(settings, duplicates.ZONE, spec.name, ds)
    if not storage.is_file(path):
        return {}
    members = duplicates.read_members(path, spec)
    return dict(zip(members["uniq_id"], members["cluster_id"]))


@dataclass(frozen=True)
class Categories:
    """The categories a correction may name: canonical spellings by folded key."""

    top: dict[str, str]
    pairs: dict[str, tuple[str, str]]  # folded "top > second" -> (top, second)

    def choices(self) -> list[str]:
        """Every top level, then every "Top > Second", sorted (the page's suggestion list)."""
        return sorted(self.top.values()) + sorted(f"{t}{LEVEL_SEPARATOR}{s}" for t, s in self.pairs.values())


def _spec(source: str | None) -> SourceSpec:
    return roles.model_catalog_source(source)


def _field(spec: SourceSpec) -> str:
    return category_field(spec)


def _fold(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def _text(value) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


SHOWN_CHARACTERS = 60


def _shown(value) -> str:
    """A submitted value as a message shows it: its repr, cut to SHOWN_CHARACTERS with its length said."""
    text = repr(value)
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return f"{text[:SHOWN_CHARACTERS]}… ({len(str(value))} characters)"


def repaired_partition_lock(store: MetadataStore, source: str, ds: date):
    """The lock of the day's repaired partition of `source`, held around every read-modify-write of its file."""
    return store.partition_lock("repaired", source, ds.isoformat())


# ---- what there is to review ----------------------------------------------------------------------------------
def items(settings: Settings, store: MetadataStore, ds: date, source: str | None = None, *, action: str | None = None,
          state: str = "all") -> list[Item]:
    """The day's audited repair items of the model catalogue (or `source`) with their decisions, in `rank` order.
    `action`: fill, review or flag only; `state`: pending (review and flag items without a decision), decided, or
    all."""
    if action is not None and action not in ACTIONS:
        raise ReviewError(f"unknown action {_shown(action)}: one of {', '.join(ACTIONS)}",
                          f"unknown action: one of {', '.join(ACTIONS)}")
    if state not in STATES:
        raise ReviewError(f"unknown state {_shown(state)}: one of {', '.join(STATES)}",
                          f"unknown state: one of {', '.join(STATES)}")
    spec = _spec(source)
    field = _field(spec)
    decided = {(d.uniq_id, d.field): d for d in store.review_decisions(spec.name, ds)}
    titles = _product_frame(settings, spec, ds)
    clusters = duplicate_clusters(settings, spec, ds)
    found = []
    for audit in store.repair_audit(ds, action):
        if audit.field != field:
            continue
        item = Item(uniq_id=audit.uniq_id, action=audit.action, field=audit.field, before=audit.before,
                    suggestion=audit.after, confidence=float(audit.confidence), model_version=audit.model_version,
                    airflow_run_id=audit.airflow_run_id, reverted=audit.reverted_at is not None,
                    title=titles.get(audit.uniq_id, {}).get("title"), cluster_id=clusters.get(audit.uniq_id),
                    label_quality=None if audit.label_quality is None else float(audit.label_quality))
        decision = decided.get((audit.uniq_id, audit.field))
        if decision is not None:
            item.decision, item.value, item.value_l2 = decision.decision, decision.value, decision.value_l2
            item.reviewer, item.via, item.decided_at = decision.reviewer, decision.via, decision.decided_at
            item.revision = decision.revision
        if state == "pending" and not item.pending or state == "decided" and item.decision is None:
            continue
        found.append(item)
    return sorted(found, key=rank)


def rank(item: Item) -> tuple:
    """The review order: label issues first, likeliest error (lowest label quality) first; then the other items,
    most confident first."""
    if item.label_quality is not None:
        return (0, item.label_quality, item.uniq_id)
    return (1, -item.confidence, item.uniq_id)


def summary(settings: Settings, store: MetadataStore, ds: date, source: str | None = None) -> dict:
    """Counts of the day's items: `total`, per action, pending per action, and decisions per kind.

    The count of items is `total`, not `items`: in a Jinja template `counts.items` is the dict's method."""
    everything = items(settings, store, ds, source)
    return {
        "ds": ds.isoformat(), "source": _spec(source).name, "total": len(everything),
        "by_action": {a: sum(1 for i in everything if i.action == a) for a in ACTIONS},
        "pending": sum(1 for i in everything if i.pending),
        "pending_by_action": {a: sum(1 for i in everything if i.pending and i.action == a) for a in PENDING_ACTIONS},
        "decided": {d: sum(1 for i in everything if i.decision == d) for d in DECISIONS},
    }


def _product_frame(settings: Settings, spec: SourceSpec, ds: date) -> dict[str, dict]:
    """uniq_id -> title, top and second level of the day's repaired partition (empty when it is not written)."""
    path = lake.lake_file(settings, "repaired", spec.name, ds)
    if not storage.is_file(path):
        return {}
    available = set(parquet_columns(path))
    product_id, title = spec.role_column("id"), spec.role_column("title")
    levels = [c for c in spec.role.columns("category_levels")[:2] if c in available]
    frame = read_parquet(path, columns=[c for c in (product_id, title, *levels) if c and c in available])
    top = frame[levels[0]] if levels else pd.Series(pd.NA, index=frame.index)
    second = frame[levels[1]] if len(levels) > 1 else pd.Series(pd.NA, index=frame.index)
    titles = frame[title] if title in frame else pd.Series(pd.NA, index=frame.index)
    return {product_key_text(uid): {"title": _text(t), "top": _text(a), "l2": _text(b)}
            for uid, t, a, b in zip(frame[product_id], titles, top, second)}


def known_categories(store: MetadataStore, ds: date, source: str | None = None) -> Categories:
    """The categories of the catalogue as of `ds` (its intact products' top and second levels)."""
    spec = _spec(source)
    partitions = tuple((p.ds, p.status, p.updated_at) for p in store.partitions(spec.name) if p.ds <= ds)
    return _known_categories(store.url, spec.name, ds, partitions)


@lru_cache(maxsize=16)
def _known_categories(url: str, source: str, ds: date, _partitions: tuple) -> Categories:
    from shopflow.lake.catalog_view import catalog_as_of

    spec = _spec(source)
    catalog = catalog_as_of(MetadataStore(url), ds, source=source)
    top, second = categories(catalog, spec)
    intact = category_status(catalog, spec).isin(("ok", "truncated_leaf")).to_numpy() & top.notna().to_numpy()
    tops = {}
    for name in top[intact].astype(str).unique():
        tops.setdefault(_fold(name), name)
    pairs = {}
    if second is not None:
        status = category_status(catalog, spec)
        full = intact & second.notna().to_numpy() & (status == "ok").to_numpy()
        for t, s in set(zip(top[full].astype(str), second[full].astype(str))):
            pairs.setdefault(_fold(f"{t}{LEVEL_SEPARATOR}{s}"), (t, s))
    return Categories(top=tops, pairs=pairs)


def normalise_category(value: str, known: Categories, source: str = "catalogue") -> tuple[str, str | None]:
    """A reviewer's category as (top, "Top > Second" or None) in the catalogue's spelling, or InvalidDecision."""
    text = " ".join(str(value or "").split())
    parts = [p.strip() for p in text.split(CATEGORY_PATH_SEPARATOR)]
    if not text or not all(parts):
        raise InvalidDecision(f"a correction needs a category, not {_shown(value)}", "a correction needs a category")
    if len(parts) > 2:
        deeper = "a correction names a top-level category or 'Top > Second', no deeper"
        raise InvalidDecision(f"{_shown(value)}: {deeper}", deeper)
    top = known.top.get(_fold(parts[0]))
    if top is None:
        examples = ", ".join(sorted(known.top.values())[:8])
        known_tops = f"(known top-level categories: {examples}{', …' if len(known.top) > 8 else ''})"
        raise InvalidDecision(f"{_shown(parts[0])} is not a category of the {source} catalogue {known_tops}",
                              f"the correction is not a category of the {source} catalogue {known_tops}")
    if len(parts) == 1:
        return top, None
    pair = known.pairs.get(_fold(f"{top}{LEVEL_SEPARATOR}{parts[1]}"))
    if pair is None:
        seconds = sorted(s for t, s in known.pairs.values() if t == top)
        where = (f"a second-level category of {top!r} in the {source} catalogue "
                 f"(known: {', '.join(seconds[:8]) or 'none'}{', …' if len(seconds) > 8 else ''})")
        raise InvalidDecision(f"{_shown(parts[1])} is not {where}",
                              f"the correction's second level is not {where}")
    return pair[0], f"{pair[0]}{LEVEL_SEPARATOR}{pair[1]}"


# ---- deciding -------------------------------------------------------------------------------------------------
def decide(settings: Settings, store: MetadataStore, ds: date, decisions: Iterable[ItemDecision], reviewer: str, *,
           source: str | None = None, via: str = "api", apply: bool = True) -> dict:
    """Validate and record a batch of decisions on the day's items (all or nothing: an invalid one raises a
    ReviewError and records none), then apply the day's decisions to its repaired partition. Returns counts."""
    spec = _spec(source)
    decisions = list(decisions)
    reviewer = " ".join(str(reviewer or "").split())
    if not reviewer:
        raise ReviewError("a decision needs a reviewer")
    if via not in VIAS:
        raise ReviewError(f"unknown channel {via!r}: one of {', '.join(VIAS)}")
    if not decisions:
        return {"ds": ds.isoformat(), "source": spec.name, "recorded": 0, "replaced": 0, "unchanged": 0,
                "applied": 0}
    field = _field(spec)
    audit = {a.uniq_id: a for a in store.repair_audit(ds) if a.field == field}
    seen = {}
    for d in decisions:
        if d.uniq_id in seen:
            raise InvalidDecision(f"product {d.uniq_id} is decided twice in one batch")
        seen[d.uniq_id] = d
    unknown = sorted(uid for uid in seen if uid not in audit)
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise UnknownItem(f"product {unknown[0]}{more}: no repair item to review on {spec.name} {ds} (only the "
                          f"day's fills, review items and flags can be decided; {len(audit)} that day)")
    products = None
    known = None
    rows = []
    for d in decisions:
        item = audit[d.uniq_id]
        value, value_l2 = _resolve(d, item, spec, ds)
        if d.decision == CORRECT:
            known = known or known_categories(store, ds, spec.name)
            try:
                value, value_l2 = normalise_category(d.value, known, spec.name)
            except InvalidDecision as exc:
                raise InvalidDecision(str(exc), f"product {d.uniq_id}: {exc.public}") from None
        elif d.decision == REJECT and item.action == FLAG:  # the given category, confirmed: keep its second level
            products = products if products is not None else _product_frame(settings, spec, ds)
            given = products.get(d.uniq_id, {})
            if given.get("top") == value and given.get("l2"):
                value_l2 = f"{value}{LEVEL_SEPARATOR}{given['l2']}"
        rows.append({"source": spec.name, "ds": ds, "uniq_id": d.uniq_id, "field": field, "audit_action": item.action,
                     "decision": d.decision, "value": value, "value_l2": value_l2, "before": item.before,
                     "suggestion": item.after, "confidence": float(item.confidence),
                     "model_version": item.model_version, "reviewer": reviewer, "via": via,
                     "airflow_run_id": item.airflow_run_id})
    counts = store.record_review_decisions(rows)
    applied = apply_decisions(settings, store, ds, spec.name) if apply else 0
    log.info("%s %s: %s decided %d items (%d new, %d replaced, %d unchanged) via %s; %d decisions applied",
             spec.name, ds, reviewer, len(rows), counts["recorded"], counts["replaced"], counts["unchanged"], via,
             applied)
    return {"ds": ds.isoformat(), "source": spec.name, **counts, "applied": applied}


def _resolve(d: ItemDecision, item, spec: SourceSpec, ds: date) -> tuple[str | None, str | None]:
    """The value a decision gives the product (a correction is resolved by the caller)."""
    if d.decision not in DECISIONS:
        raise InvalidDecision(f"{_shown(d.decision)} is not a decision: accept, reject or correct",
                              f"product {d.uniq_id}: the decision is not one of accept, reject or correct")
    if d.decision != CORRECT and d.value not in (None, ""):
        raise InvalidDecision(f"product {d.uniq_id}: only a correction takes a value ({d.decision} was given "
                              f"{_shown(d.value)})",
                              f"product {d.uniq_id}: only a correction takes a value ({d.decision} was given one)")
    if d.decision == ACCEPT:
        if item.after is None:
            raise InvalidDecision(f"product {d.uniq_id} on {spec.name} {ds}: the model knows no class for this (its "
                                  "answer is its fold-in class, which names no category), so there is no suggestion "
                                  "to accept; correct or reject it instead")
        return item.after, None
    if d.decision == REJECT:
        return item.before, None  # a fill or review item: the value before (none); a flag: the given category
    if d.value in (None, ""):
        raise InvalidDecision(f"product {d.uniq_id}: a correction needs a category")
    return None, None


def accept_pending(settings: Settings, store: MetadataStore, ds: date, min_confidence: float, reviewer: str, *,
                   source: str | None = None, via: str = "hitl") -> dict:
    """Accept every pending item (review and flag, not decided yet) whose suggestion names a category and has a
    confidence of at least `min_confidence`; the others stay pending."""
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise ReviewError(f"a confidence is between 0 and 1, not {_shown(min_confidence)}",
                          "a confidence is between 0 and 1")
    chosen = [ItemDecision(i.uniq_id, ACCEPT) for i in items(settings, store, ds, source, state="pending")
              if i.acceptable and i.confidence >= float(min_confidence)]
    return decide(settings, store, ds, chosen, reviewer, source=source, via=via)


# ---- applying -------------------------------------------------------------------------------------------------
def with_decisions(store: MetadataStore, spec: SourceSpec, ds: date, repaired: pd.DataFrame) -> pd.DataFrame:
    """The repaired frame of the day with the day's decisions applied (category_top_repaired and category_source);
    `repair_partition` calls it before it writes, so decisions survive a re-run."""
    return _apply(repaired, spec, store.review_decisions(spec.name, ds))


def _apply(repaired: pd.DataFrame, spec: SourceSpec, decisions) -> pd.DataFrame:
    decisions = [d for d in decisions if d.field == _field(spec)]
    if not decisions:
        return repaired
    product_id = spec.role_column("id")
    ids = repaired[product_id].map(product_key_text).astype("object")
    values = {d.uniq_id: d.value for d in decisions}
    sources = {d.uniq_id: CATEGORY_SOURCE[d.decision] for d in decisions}
    rows = ids.isin(values).to_numpy()
    missing = len(values) - int(rows.sum())
    if missing:
        log.warning("%s: %d decided products are not in the repaired partition; not applied", spec.name, missing)
    repaired = repaired.copy()
    previous = repaired["category_top_repaired"].astype("object")
    _set(repaired, "category_top_repaired", rows, ids[rows].map(values))
    _set(repaired, "category_source", rows, ids[rows].map(sources))
    if "category_l2_repaired" in repaired:
        # The second level follows the reviewer: the one a correction names; else, where the top level changed,
        # the given second level if the given top level is the decided one (none otherwise); else it stays.
        levels = spec.role.columns("category_levels")
        clean_top = repaired[levels[0]].astype("object") if levels else pd.Series(None, index=repaired.index)
        clean_l2 = repaired[levels[1]].astype("object") if len(levels) > 1 else pd.Series(None, index=repaired.index)
        named = {d.uniq_id: d.value_l2.split(LEVEL_SEPARATOR, 1)[1] for d in decisions if d.value_l2 and d.decision == CORRECT}
        decided_top = ids.map(values)
        changed = rows & ~_same(previous, decided_top)
        keep_given = _same(clean_top, decided_top) & clean_top.notna().to_numpy()
        second = pd.Series(None, index=repaired.index, dtype="object").mask(keep_given, clean_l2)
        second = second.mask(ids.isin(named).to_numpy(), ids.map(named))
        follows = changed | ids.isin(named).to_numpy()
        _set(repaired, "category_l2_repaired", follows, second[follows])
        if "category_l2_source" in repaired:
            _set(repaired, "category_l2_source", follows, ids[follows].map(sources))
    return repaired


def _same(a: pd.Series, b: pd.Series):
    return np.array([_text(x) == _text(y) for x, y in zip(a, b)], dtype=bool)


def _set(frame: pd.DataFrame, column: str, rows, values: pd.Series) -> None:
    """frame[column][rows] = values (None and NA as missing), keeping the column a string column."""
    current = frame[column].astype("object")
    current[rows] = values.to_numpy()
    frame[column] = pd.array([_text(v) for v in current], dtype="string")


def apply_decisions(settings: Settings, store: MetadataStore, ds: date, source: str | None = None) -> int:
    """Apply the day's decisions to its repaired partition (atomically, with write_parquet_atomic), under the
    partition's lock: the decisions are read once the lock is held, so a reviewer who recorded before this one
    applied is in this write, and one who records meanwhile applies after it. Every decision of the day is applied
    each time, so it is idempotent. Returns how many products carry a decision."""
    spec = _spec(source)
    path = lake.lake_file(settings, "repaired", spec.name, ds)
    with repaired_partition_lock(store, spec.name, ds):
        if not storage.is_file(path):
            raise ReviewError(f"{spec.name} {ds}: the repaired partition {path} is not written (run the repair "
                              "first); the decisions are recorded and apply when it runs",
                              f"{spec.name} {ds}: the repaired partition is not written (run the repair first); "
                              "the decisions are recorded and apply when it runs")
        decisions = store.review_decisions(spec.name, ds)
        write_parquet_atomic(_apply(read_parquet(path), spec, decisions), path)
    return len([d for d in decisions if d.field == _field(spec)])


# ---- gold labels ----------------------------------------------------------------------------------------------
def gold_labels(store, source: str) -> pd.DataFrame:
    """The reviewers' decisions of `source` that name a category, as training labels: uniq_id, label_top, label_l2
    (None where the reviewer did not set the second level). Accepts and corrections name one; a rejected flag
    confirms the given category; a rejected fill or review item names none. The latest decision of a product wins."""
    field, latest = _field(_spec(source)), {}
    for d in sorted(store.review_decisions(source), key=lambda d: (d.decided_at, d.ds, d.id)):
        if d.field != field:
            continue
        names = d.decision in (ACCEPT, CORRECT) or (d.decision == REJECT and d.audit_action == FLAG)
        if names and d.value is not None:
            latest[d.uniq_id] = (d.value, d.value_l2)
        else:
            latest.pop(d.uniq_id, None)
    ids = sorted(latest)
    return pd.DataFrame({"uniq_id": pd.Series(ids, dtype="object"),
                         "label_top": pd.Series([latest[i][0] for i in ids], dtype="object"),
                         "label_l2": pd.Series([latest[i][1] for i in ids], dtype="object")})
