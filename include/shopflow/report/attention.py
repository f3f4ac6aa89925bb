"""What needs attention on the report's day, and why: the reasons behind the report's status and headline.

A reason has a level, and the day's status is the worst of them:

- `failed`, a step failed outright: a partition failed (ingest, clean, validate or a critical expectation), a
  model step failed (a failed `model.*` task of the run, or a near-duplicate search whose critical expectations
  failed, as recorded in the store), another task of the run failed, or a section could not be built;
- `warning`, a limit was crossed or a mark made: a source quarantined a larger share of its rows than its
  `max_quarantine_share` (sources file, default 5%; blank records are not rows), the run raised an alert (the
  catalogue repair's review backlog above SHOPFLOW_ALERT_REVIEW_BACKLOG), a DRIFT mark, a source due by its cadence
  is stale, or another section warns (warning-severity expectations, the repair's masked precision).

Notices are shown in the header too but change nothing: a slow SHIFT (a standing fact for weeks) and a source
with no history yet to compare with. `ok` means no reason at all; `no_data`, no partition today and no reason.

The run's failed tasks come from Airflow (the report task runs last, trigger rule all_done); the store records
no failure of train, bless, repair or search_intent, so a report regenerated without them keeps those of the
report it replaces (see `shopflow.report.build`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from shopflow.config.options import value
from shopflow.governance.review import undecided_reviews
from shopflow.report.blocks import worst
from shopflow.report.context import ReportContext
from shopflow.sources import roles
from shopflow.sources.cleaning import BLANK_ROW_REASON

ABSENT = ("missing", "not run")
MODEL_GROUP = "model"  # the task group of the model steps in the daily DAG
SHOWN_MARKS = 3  # marks named per dataset in the header (the drift section lists every one)


@dataclass(frozen=True)
class Reason:
    level: str  # failed | warning | notice
    kind: str  # partition_failed | model_step_failed | task_failed | section_failed | quarantine | alert | drift |
    #            stale | section_warning | shift | no_history
    what: str
    dataset: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Attention:
    status: str
    reasons: list[Reason]  # what makes the day warning or failed, worst first
    notices: list[Reason]  # shown, but the day may still be ok

    def headline(self, datasets: dict[str, str]) -> str:
        text = coverage(datasets)
        text += ("; needs attention: " + "; ".join(r.what for r in self.reasons)) if self.reasons \
            else "; nothing needs attention"
        return text + ("; also: " + "; ".join(n.what for n in self.notices) if self.notices else "")


def coverage(datasets: dict[str, str]) -> str:
    present = [name for name, state in datasets.items() if state not in ABSENT]
    return f"{len(present)} of {len(datasets)} datasets have a partition today"


def assess(ctx: ReportContext, datasets: dict[str, str], sections: list[dict],
           failed_tasks: Iterable[str] = ()) -> Attention:
    """The day's status, reasons and notices from the store, the built sections and the run's failed tasks."""
    by_id = {s["id"]: s for s in sections}
    reasons = _partition_failures(ctx, datasets)
    failed_datasets = {r.dataset for r in reasons}
    reasons += _step_failures(ctx, sorted(set(failed_tasks)), failed_datasets)
    reasons += _quarantine(ctx)
    reasons += _review_backlog(ctx)
    reasons += _drift(by_id.get("drift"))
    reasons += _stale(by_id.get("inventory"))
    reasons += _other_sections(sections, explained=bool(failed_datasets))
    notices = _shifts(by_id.get("drift")) + _no_history(by_id.get("drift"))
    reasons.sort(key=lambda r: r.level != "failed")  # stable: failures first, each group in the order above
    if reasons:
        status = worst(r.level for r in reasons)
    else:
        status = "no_data" if all(state in ABSENT for state in datasets.values()) else "ok"
    return Attention(status, reasons, notices)


def _partition_failures(ctx: ReportContext, datasets: dict[str, str]) -> list[Reason]:
    found = []
    for name, state in datasets.items():
        if not state.startswith("failed"):
            continue
        partition = ctx.partition(name)
        if state == "failed_validation":
            what = f"{name}: {partition.critical_failures or 'a'} critical expectation(s) failed"
        else:
            step, _, error = (partition.error or "unknown: no error recorded").partition(": ")
            what = f"{name}: partition failed at {step} ({_short(error)})"
        found.append(Reason("failed", "partition_failed", what, name))
    return found


def _step_failures(ctx: ReportContext, failed_tasks: list[str], failed_datasets: set) -> list[Reason]:
    found = []
    for task in failed_tasks:
        group, _, step = task.partition(".")
        if group == MODEL_GROUP:
            found.append(Reason("failed", "model_step_failed", f"model step {step} failed (task {task})"))
        elif group not in failed_datasets:  # a source's failed step is told by its partition's reason
            found.append(Reason("failed", "task_failed", f"task {task} failed", group if group in ctx.specs else None))
    catalogue = roles.model_catalog(ctx.specs)
    if catalogue.source is not None and f"{MODEL_GROUP}.duplicates" not in failed_tasks:
        run = ctx.store.duplicate_run(catalogue.name, ctx.ds)
        if run is not None and not run.validation_success:
            found.append(Reason("failed", "model_step_failed",
                                f"model step duplicates failed: {run.critical_failures} critical expectation(s) of "
                                f"the near-duplicate clusters of {catalogue.name}", catalogue.name))
    return found


def _quarantine(ctx: ReportContext) -> list[Reason]:
    found = []
    for name, spec in ctx.specs.items():
        partition = ctx.partition(name)
        if partition is None or not partition.rows_in or partition.rows_quarantined is None:
            continue
        by_reason = dict(partition.quarantined_by_reason or {})
        # Blank records (only delimiters, e.g. the catalogue's ~20% padding lines) hold no data to lose.
        blank = by_reason.pop(BLANK_ROW_REASON, 0)
        rows, quarantined = partition.rows_in - blank, partition.rows_quarantined - blank
        if rows <= 0 or quarantined / rows <= spec.max_quarantine_share:
            continue
        top = ", ".join(f"{reason} {count:,}" for reason, count in
                        sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
        found.append(Reason("warning", "quarantine",
                            f"{name}: {quarantined / rows:.1%} of rows quarantined ({quarantined:,} of {rows:,}"
                            + (f", not counting {blank:,} blank records" if blank else "")
                            + f"; limit {spec.max_quarantine_share:.0%})" + (f": {top}" if top else ""), name))
    return found


def _review_backlog(ctx: ReportContext) -> list[Reason]:
    """The alert the run raises on the catalogue repair's review backlog (shopflow.observability.alerts): products
    sent to review and not yet decided, above SHOPFLOW_ALERT_REVIEW_BACKLOG."""
    run = ctx.store.repair_run(ctx.ds)
    if run is None:
        return []
    threshold = value("SHOPFLOW_ALERT_REVIEW_BACKLOG")
    backlog = len(undecided_reviews(ctx.store, ctx.ds))
    if backlog <= threshold:
        return []
    catalogue = roles.model_catalog(ctx.specs).name
    return [Reason("warning", "alert", f"alert: repair review backlog of {backlog:,} products (threshold "
                                       f"{threshold:,}, model v{run.model_version})", catalogue)]


def _drift(section: dict | None) -> list[Reason]:
    return [Reason("warning", "drift", f"{name}: DRIFT on {entry['drifted']} metric(s): " + _marks(entry, "DRIFT"),
                   name) for name, entry in _drift_entries(section) if entry.get("drifted")]


def _shifts(section: dict | None) -> list[Reason]:
    return [Reason("notice", "shift", f"{name}: slow SHIFT on {entry['shifted']} metric(s): " + _marks(entry, "SHIFT"),
                   name) for name, entry in _drift_entries(section) if entry.get("shifted")]


def _no_history(section: dict | None) -> list[Reason]:
    found = []
    for name, entry in _drift_entries(section):
        history = entry.get("history") or {}
        if history.get("young"):
            found.append(Reason("notice", "no_history", f"{name}: no history yet: {history['days']} days of "
                                                        f"{history['needed']} needed", name))
    return found


def _stale(section: dict | None) -> list[Reason]:
    summary = (section or {}).get("summary", {})
    return [Reason("warning", "stale", f"{name}: stale ({entry['freshness']})", name)
            for name, entry in summary.items() if isinstance(entry, dict) and entry.get("stale")]


def _other_sections(sections: list[dict], *, explained: bool) -> list[Reason]:
    """A section that warns or failed for a reason of its own (the drift and inventory sections' warnings are the
    DRIFT and stale reasons; the inventory and quality sections fail with a failed partition)."""
    found = []
    for section in sections:
        if section["status"] == "failed" and not (explained and section["id"] in ("inventory", "quality")):
            found.append(Reason("failed", "section_failed", f"section {section['title']} failed (see the section)"))
        elif section["status"] == "warning" and section["id"] == "quality":
            found += [Reason("warning", "section_warning", f"{name}: {entry['warning_failures']} expectation(s) of "
                                                           f"warning severity failed", name)
                      for name, entry in section["summary"].items()
                      if isinstance(entry, dict) and entry.get("warning_failures")]
        elif section["status"] == "warning" and section["id"] not in ("drift", "inventory"):
            precision = section["summary"].get("masked_precision") if section["id"] == "model" else None
            found.append(Reason("warning", "section_warning",
                                f"model: masked repair precision {precision:.1%}" if precision is not None
                                else f"section {section['title']} warns (see the section)"))
    return found


def _drift_entries(section: dict | None) -> list[tuple[str, dict]]:
    summary = (section or {}).get("summary", {})
    return [(name, entry) for name, entry in summary.items() if isinstance(entry, dict)]


def _marks(entry: dict, marker: str) -> str:
    """The first marks of a kind: 'p50 of unit_price_gbp +9,900.0% (×100), ...'."""
    marks = [m for m in entry.get("marked", []) if m["marker"] == marker]
    shown = [(f"{m['measure']} of {m['column']}" if m["column"] else m["measure"]) + f" {m['change']}"
             for m in marks[:SHOWN_MARKS]]
    more = len(marks) - SHOWN_MARKS
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
