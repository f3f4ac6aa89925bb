"""The status table printed by `python -m shopflow status` and at the end of the demo, read from the store."""

from __future__ import annotations

import json

from shopflow.settings import Settings
from shopflow.store.repository import MetadataStore


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
            "reasons": p.quarantined_by_reason or {},
            "validation": {True: "pass", False: "FAIL", None: "-"}[p.validation_success],
            "warnings": p.warning_failures,
            "run_id": p.airflow_run_id,
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
    fmt = "{:<20} {:<10} {:<17} {:<8} {:>9} {:>9} {:>8} {:>6} {:<6} {:>4}  {}"
    lines = [fmt.format("dataset", "ds", "status", "load", "rows_in", "clean", "quarant.", "dups", "valid.", "warn",
                        "quarantine reasons")]
    for r in rows:
        reasons = ", ".join(f"{k}={v:,}" for k, v in r["reasons"].items())
        lines.append(fmt.format(r["dataset"], r["ds"], r["status"], r["load"], _n(r["rows_in"]), _n(r["clean"]),
                                _n(r["quarantined"]), _n(r["duplicate"]), r["validation"], _n(r["warnings"]), reasons))
    if missing and not show_missing:
        lines.append(f"(+ {len(missing)} partitions recorded as missing: the source had no landing files that day; --all lists them)")
    lines.append(f"\nstore: {store.engine.url.render_as_string(hide_password=True)}")
    lines.append(f"lake:  {settings.lake_dir} (raw/, clean/, quarantine/ by dataset and ds)")
    return "\n".join(lines)


def _n(value) -> str:
    return "-" if value is None else f"{value:,}"
