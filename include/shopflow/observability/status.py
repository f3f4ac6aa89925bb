"""The status table printed by `python -m shopflow status` and at the end of the demo, read from the store."""

from __future__ import annotations

import json

from shopflow.config.settings import Settings
from shopflow.store.repository import MetadataStore

_FAILING = ("failed", "failed_validation")


def status_rows(store: MetadataStore, dataset: str | None = None) -> list[dict]:
    rows = []
    for p in store.partitions(dataset):
        rows.append({
            "dataset": p.dataset.name + (" (generated)" if p.dataset.generated else ""),
            "ds": p.ds.isoformat(),
            "status": p.status,
            "load": p.load_kind or "",
            "rows_in": p.rows_in,
            "clean": p.rows_clean,
            "quarantined": p.rows_quarantined,
            "duplicate": p.rows_duplicate,
            "reference": p.rows_reference,
            "reasons": p.quarantined_by_reason or {},
            "validation": {True: "pass", False: "FAIL", None: "-"}[p.validation_success],
            "warnings": p.warning_failures,
            "run_id": p.airflow_run_id,
            # The current state's error ("<step>: <message>") and, while failing, what the last good run left.
            "error": p.error,
            "last_good": (p.timings or {}).get("last_good") if p.status in _FAILING else None,
        })
    return rows


def render_status(settings: Settings, dataset: str | None = None, as_json: bool = False, show_missing: bool = False) -> str:
    store = MetadataStore(settings.store_url)
    rows = status_rows(store, dataset)
    if as_json:
        return json.dumps(rows, indent=2)
    missing = [r for r in rows if r["status"] == "missing"]
    if not show_missing:
        rows = [r for r in rows if r["status"] != "missing"]
    fmt = "{:<20} {:<10} {:<17} {:<8} {:>9} {:>9} {:>8} {:>6} {:>6} {:<6} {:>4}  {}"
    lines = [fmt.format("dataset", "ds", "status", "load", "rows_in", "clean", "quarant.", "dups", "ref.", "valid.",
                        "warn", "quarantine reasons")]
    for r in rows:
        reasons = ", ".join(f"{k}={v:,}" for k, v in r["reasons"].items())
        lines.append(fmt.format(r["dataset"], r["ds"], r["status"], r["load"], _n(r["rows_in"]), _n(r["clean"]),
                                _n(r["quarantined"]), _n(r["duplicate"]), _n(r["reference"]), r["validation"],
                                _n(r["warnings"]), reasons))
        if r["status"] in _FAILING and r["error"]:
            lines.append(f"    ^ current: {r['status']} at {_cut(r['error'])} (run {r['run_id'] or '-'})")
        if r["last_good"]:
            good = r["last_good"]
            lines.append(f"    ^ last good (not current): {good['status']} by run {good['run_id'] or '-'} at {good['at']}: "
                         f"{_n(good['rows_in'])} rows in, {_n(good['rows_clean'])} clean, "
                         f"{_n(good['rows_quarantined'])} quarantined; outputs {good['clean_path'] or '-'}")
    if any(r["reference"] for r in rows):
        lines.append("(ref. = rows of lookup files joined onto the rows: accounted for, not part of rows_in)")
    if missing and not show_missing:
        lines.append(f"(+ {len(missing)} partitions recorded as missing: the source had no landing files that day; "
                     "--all lists them)")
    lines.append(f"\nstore: {store.engine.url.render_as_string(hide_password=True)}")
    lines.append(f"lake:  {settings.lake_dir} (raw/, clean/, quarantine/ by dataset and ds)")
    return "\n".join(lines)


def _cut(text: str, width: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _n(value) -> str:
    return "-" if value is None else f"{value:,}"


def render_models(settings: Settings) -> str:
    """The model registry, the repairs and the search-intent attributions recorded in the store."""
    from collections import Counter

    from sqlalchemy import select

    from shopflow.store.models import ModelVersion, RepairRun, SearchIntent

    store = MetadataStore(settings.store_url)
    with store.session() as session:
        versions = list(session.scalars(select(ModelVersion).order_by(ModelVersion.version)))
        repairs = list(session.scalars(select(RepairRun).order_by(RepairRun.ds)))
        intents = list(session.scalars(select(SearchIntent).order_by(SearchIntent.ds)))
    lines = ["model registry (category_classifier, grouped test split, top level)"]
    fmt = "{:>3} {:<9} {:<10} {:<38} {:<6} {:>9} {:>9} {:>10}  {}"
    lines.append(fmt.format("v", "status", "trained", "serving", "device", "macro-F1", "accuracy", "TF-IDF F1",
                            "decision"))
    for m in versions:
        lines.append(fmt.format(m.version, m.status, m.trained_on_ds.isoformat(), m.metrics.get("selected", "?"),
                                m.training.get("device", "?"),
                                f"{m.macro_f1:.4f}", f"{m.metrics['top']['accuracy']:.4f}",
                                f"{m.baseline_metrics['top']['macro_f1']:.4f}", m.decision_reason or "-"))
    if not versions:
        lines.append("  (no model trained yet)")
    lines.append("\ncatalogue repairs (a repaired copy beside the clean catalogue; precision measured on masked test products)")
    fmt = "{:<10} {:>3} {:>9} {:>7} {:>7} {:>7} {:>9} {:>16}"
    lines.append(fmt.format("ds", "v", "threshold", "filled", "review", "flagged", "unchanged", "masked precision"))
    for r in repairs:
        precision = "-" if r.masked_precision is None else f"{r.masked_precision:.3f} ({r.masked_filled}/{r.masked_n})"
        lines.append(fmt.format(r.ds.isoformat(), r.model_version, f"{r.threshold:.2f}", f"{r.rows_filled:,}",
                                f"{r.rows_review:,}", f"{r.rows_flagged:,}", f"{r.rows_unchanged:,}", precision))
    if not repairs:
        lines.append("  (no repair yet)")
    lines.append("\nsearch intent (GENERATED search log), top categories by searches")
    by_day: dict = {}
    for intent in intents:
        by_day.setdefault(intent.ds, Counter())[intent.category] += intent.searches
    for ds, counter in by_day.items():
        top = ", ".join(f"{c} {n:,}" for c, n in counter.most_common(3))
        queries = sum(1 for i in intents if i.ds == ds)
        lines.append(f"{ds.isoformat()}: {sum(counter.values()):,} searches, {queries:,} queries; {top}")
    if not intents:
        lines.append("  (no search intents yet)")
    return "\n".join(lines)
