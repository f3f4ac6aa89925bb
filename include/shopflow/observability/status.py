"""The status table printed by `python -m shopflow status` and at the end of the demo, read from the store; the
quarantined rows of a partition (`python -m shopflow quarantine DAY --source X`); the model registry (`models`)."""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass
from datetime import date

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
            "rerun": rerun_hint(p.dataset.name, p.ds) if p.status in _FAILING else None,
        })
    return rows


def rerun_hint(source: str, ds: date) -> str:
    """The commands that re-run a failed partition: without Airflow, and in Airflow (clear the day's failed tasks of
    the scheduled run, or run the whole day once with `airflow dags test`)."""
    day = ds.isoformat()
    return (f"python -m shopflow run {day} --source {source}; in Airflow: airflow tasks clear shopflow_daily "
            f"-s {day} -e {day} --only-failed --yes (or airflow dags test shopflow_daily {day})")


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
        if r["rerun"]:
            lines.append(f"    ^ re-run: {r['rerun']}")
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


def masked_result(precision: float | None, filled: int | None, n: int | None) -> str:
    """A repair's masked evaluation with precision and coverage labelled apart: "precision 1.000 (1,379/1,379),
    coverage 0.900 (1,379/1,532)". The correct count is not stored; it is precision x filled, rounded."""
    if not n or filled is None:
        return "-"
    coverage = f"coverage {filled / n:.3f} ({filled:,}/{n:,})"
    if precision is None:  # nothing filled: no precision to state
        return f"precision - (nothing filled), {coverage}"
    return f"precision {precision:.3f} ({round(precision * filled):,}/{filled:,}), {coverage}"


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
    fmt = "{:<10} {:>3} {:>9} {:>7} {:>7} {:>7} {:>9}  {}"
    lines.append(fmt.format("ds", "v", "threshold", "filled", "review", "flagged", "unchanged",
                            "masked test products: precision (correct/filled), coverage (filled/masked)"))
    for r in repairs:
        lines.append(fmt.format(r.ds.isoformat(), r.model_version, f"{r.threshold:.2f}", f"{r.rows_filled:,}",
                                f"{r.rows_review:,}", f"{r.rows_flagged:,}", f"{r.rows_unchanged:,}",
                                masked_result(r.masked_precision, r.masked_filled, r.masked_n)))
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



# ---- the quarantined rows of a partition ---------------------------------------------------------------------------
class QuarantineLookupError(ValueError):
    """The source or day asked for has no quarantine to show; the message is one line that says why."""


QUARANTINE_COLUMNS = ["file", "line", "reason", "field", "value"]


@dataclass
class Quarantined:
    source: str
    ds: date
    path: str
    rows_in: int | None
    total: int
    by_reason: dict
    rows: list[dict]  # the first `limit`, sorted by file and line: QUARANTINE_COLUMNS plus the row's other columns

    @property
    def more(self) -> int:
        return self.total - len(self.rows)


def quarantined_rows(settings: Settings, source: str, ds: date, limit: int = 50) -> Quarantined:
    """The day's quarantined rows of a source from the quarantine Parquet its partition record points at, each with
    its reason, the field at fault, the landing file and the line in it. Raises QuarantineLookupError (one line)
    for an unknown source, a day without a partition, or a partition that was not cleaned."""
    from shopflow.common.parquet import read_parquet
    from shopflow.sources import load_sources

    store = MetadataStore(settings.store_url)
    found = store.partitions(source, ds)
    if not found:
        known = sorted(set(load_sources()) | {p.dataset.name for p in store.partitions()})
        if source not in known:
            close = difflib.get_close_matches(source, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise QuarantineLookupError(f"unknown source {source!r}{hint}; the sources are: {', '.join(known)}")
        raise QuarantineLookupError(f"{source} has no partition for {ds.isoformat()} (python -m shopflow status "
                                    f"--dataset {source} lists its days)")
    [partition] = found
    if partition.status == "missing":
        raise QuarantineLookupError(f"{source} {ds.isoformat()}: no landing files that day (recorded as missing)")
    if not partition.quarantine_path:
        error = f": {_cut(partition.error, 120)}" if partition.error else ""
        raise QuarantineLookupError(f"{source} {ds.isoformat()} was not cleaned (status {partition.status}{error}); "
                                    f"re-run: {rerun_hint(source, ds)}")
    try:
        frame = read_parquet(partition.quarantine_path)
    except (FileNotFoundError, OSError) as exc:
        raise QuarantineLookupError(f"{source} {ds.isoformat()}: cannot read its quarantine file "
                                    f"{partition.quarantine_path} ({exc})") from None
    by_reason = (frame["_reason"].value_counts().to_dict() if "_reason" in frame and len(frame)
                 else dict(partition.quarantined_by_reason or {}))
    sort = [c for c in ("_source_file", "_source_line") if c in frame]
    if sort:
        frame = frame.sort_values(sort, kind="stable")
    head = frame.head(limit)
    rows = []
    for record in head.to_dict("records"):
        field = _text(record.get("_field"))
        row = {"file": _text(record.get("_source_file")).rsplit("/", 1)[-1],
               "line": _text(record.get("_source_line")), "reason": _text(record.get("_reason")), "field": field,
               "value": _text(record.get(field)) if field and field in record else ""}
        row.update({k: _text(v) for k, v in record.items() if not k.startswith("_")})
        rows.append(row)
    return Quarantined(source, ds, partition.quarantine_path, partition.rows_in, len(frame),
                       {str(k): int(v) for k, v in by_reason.items()}, rows)


def _text(value) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return ""
    return str(value)


def render_quarantine(found: Quarantined, as_csv: bool = False, width: int = 48) -> str:
    """An aligned table (reason, field, file, line and the field's value; long values cut) or, with `as_csv`, CSV
    with the row's columns as well. Says how many rows are not shown (the table in its last line; for CSV the
    caller prints `more_note` apart, so that the CSV stays clean)."""
    if as_csv:
        out = io.StringIO()
        columns = QUARANTINE_COLUMNS + [c for c in (found.rows[0] if found.rows else {}) if c not in QUARANTINE_COLUMNS]
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(found.rows)
        return out.getvalue().rstrip("\n")
    reasons = ", ".join(f"{k}={v:,}" for k, v in found.by_reason.items())
    of = f" of {found.rows_in:,} rows in" if found.rows_in is not None else ""
    lines = [f"{found.source} {found.ds.isoformat()}: {found.total:,} quarantined rows{of}"
             + (f" ({reasons})" if reasons else "") + f"; {found.path}"]
    if found.rows:
        cells = [[_cut(r[c], width) for c in QUARANTINE_COLUMNS] for r in found.rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(QUARANTINE_COLUMNS)]
        right = {"line"}
        for row in [QUARANTINE_COLUMNS, *cells]:
            lines.append("  ".join(v.rjust(w) if c in right else v.ljust(w)
                                   for c, v, w in zip(QUARANTINE_COLUMNS, row, widths)).rstrip())
    if found.more:
        lines.append(more_note(found))
    return "\n".join(lines)


def more_note(found: Quarantined) -> str:
    return (f"... {found.more:,} more quarantined rows not shown (--limit {found.total} shows all; --csv for every "
            "column)") if found.more else ""
