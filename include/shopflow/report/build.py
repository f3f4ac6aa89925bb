"""Build the report of one day: run every section, judge what needs attention (`shopflow.report.attention`: the
status and the reasons in the header), render HTML and JSON, write them atomically beside each other under
`$SHOPFLOW_REPORTS_DIR/ds=YYYY-MM-DD/` (or `$SHOPFLOW_STORAGE_URL/reports/...`), and record both (paths,
checksums, headline) in the store."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from datetime import date, datetime, timedelta, timezone
from typing import Iterable

from shopflow.common import storage
from shopflow.common.storage import StoragePath
from shopflow.config.settings import Settings
from shopflow.report import attention, blocks, drift, inventory, model_and_repairs, products, quality, search, users
from shopflow.report.context import ReportContext
from shopflow.report.render import render_html
from shopflow.store.repository import MetadataStore

log = logging.getLogger("shopflow.report")

SECTIONS = [
    ("inventory", "Data-asset inventory", inventory.build),
    ("quality", "Data quality", quality.build),
    ("users", "Users", users.build),
    ("products", "Products", products.build),
    ("search", "Search hotspots", search.build),
    ("model", "Model and repairs", model_and_repairs.build),
    ("drift", "Drift", drift.build),
]


class ReportIncomplete(RuntimeError):
    """A section could not be built. The report was still written, with the error in place of the section."""


def report_paths(settings: Settings, ds: date) -> tuple[StoragePath, StoragePath]:
    folder = settings.reports_dir / f"ds={ds.isoformat()}"
    return folder / "report.html", folder / "report.json"


def dataset_states(ctx: ReportContext) -> dict[str, str]:
    """Each dataset's partition state on the report day ('not run' when the store has no record of it)."""
    return {name: (p.status if (p := ctx.partition(name)) else "not run") for name in ctx.specs}


def _build_sections(ctx: ReportContext) -> tuple[list[dict], list[str]]:
    sections, errors = [], []
    for section_id, title, build in SECTIONS:
        started = time.perf_counter()
        try:
            section = build(ctx)
        except Exception as exc:  # one broken section must not hide the other six; the caller raises afterwards
            log.exception("report section %s failed", section_id)
            errors.append(f"{section_id}: {exc!r}")
            section = blocks.section(section_id, title, [blocks.note(
                f"This section could not be built: {exc!r}\n{traceback.format_exc(limit=3)}", "failed")],
                status="failed")
        section.setdefault("id", section_id)
        sections.append(section)
        log.info("report %s: section %-9s %-8s %.1f s", ctx.ds, section_id, section["status"],
                 time.perf_counter() - started)
    return sections, errors


def _previous_failed_tasks(settings: Settings, ds: date, run_id: str | None) -> list[str]:
    """The failed tasks the day's current report was written with, when it was written for the same run: a report
    regenerated from the store (the CLI) keeps what only Airflow knew."""
    path = report_paths(settings, ds)[1]
    if run_id is None or not storage.is_file(path):
        return []
    try:
        previous = json.loads(storage.read_bytes(path))
    except ValueError:
        return []
    return list(previous.get("failed_tasks") or []) if previous.get("airflow_run_id") == run_id else []


def _write(path: StoragePath, text: str) -> tuple[str, int]:
    """Write atomically (shopflow.common.storage); the content's sha256 and size."""
    data = text.encode("utf-8")
    storage.write_bytes(path, data)
    return hashlib.sha256(data).hexdigest(), len(data)


def build_report(settings: Settings, ds: date, *, run_id: str | None = None, store: MetadataStore | None = None,
                 generated_at: datetime | None = None, failed_tasks: Iterable[str] | None = None) -> dict:
    """Write and record the report of `ds`; returns a small summary (paths, status, sections' statuses).
    `failed_tasks`: the task ids of the day's run that failed (Airflow's; None: those of the report it replaces
    for the same run, if any)."""
    store = store or MetadataStore(settings.store_url)
    store.check_schema()
    ctx = ReportContext.from_env(settings, store, ds)
    sections, errors = _build_sections(ctx)
    datasets = dataset_states(ctx)
    failed_tasks = sorted(set(failed_tasks if failed_tasks is not None else _previous_failed_tasks(settings, ds, run_id)))
    judged = attention.assess(ctx, datasets, sections, failed_tasks)
    status = judged.status
    generated_at = (generated_at or datetime.now(timezone.utc)).replace(microsecond=0)
    report = {
        "ds": ds.isoformat(),
        "status": status,
        "headline": judged.headline(datasets),
        "coverage": attention.coverage(datasets),
        "attention": [r.as_dict() for r in judged.reasons],
        "notices": [n.as_dict() for n in judged.notices],
        "failed_tasks": failed_tasks,
        "datasets": datasets,
        "window_days": ctx.window_days,
        "window_start": (ds - timedelta(days=ctx.window_days - 1)).isoformat(),
        "airflow_run_id": run_id,
        "sections": sections,
    }
    html_path, json_path = report_paths(settings, ds)
    html_sha, html_size = _write(html_path, render_html(report, generated_at.isoformat()))
    summary = {**blocks.without_images(report), "generated_at": generated_at.isoformat()}
    json_sha, _ = _write(json_path, json.dumps(summary, indent=1, sort_keys=False, default=str) + "\n")
    headline = {s["id"]: {"status": s["status"], **s["summary"]} for s in sections}
    headline["attention"] = {"status": status, "reasons": report["attention"], "notices": report["notices"]}
    store.record_report(ds, status=status, datasets=datasets, summary=headline, html_path=str(html_path),
                        json_path=str(json_path), html_sha256=html_sha, json_sha256=json_sha, run_id=run_id,
                        generated_at=generated_at)
    log.info("report %s written: %s (%s, %d bytes) and %s", ds, html_path, status, html_size, json_path)
    if errors:
        raise ReportIncomplete(f"report {ds} written to {html_path} without {len(errors)} section(s): {'; '.join(errors)}")
    return {"ds": ds.isoformat(), "status": status, "html": str(html_path), "json": str(json_path),
            "sections": {s["id"]: s["status"] for s in sections}, "attention": [r.what for r in judged.reasons]}
