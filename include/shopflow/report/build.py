"""Build the report of one day: run every section, render HTML and JSON, write them atomically beside each other
under `$SHOPFLOW_REPORTS_DIR/ds=YYYY-MM-DD/` (or `$SHOPFLOW_STORAGE_URL/reports/...`), and record both (paths,
checksums, headline) in the store."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from datetime import date, datetime, timedelta, timezone

from shopflow.common import storage
from shopflow.common.storage import StoragePath
from shopflow.config.settings import Settings
from shopflow.report import blocks, drift, inventory, model_and_repairs, products, quality, search, users
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


def overall_status(datasets: dict[str, str], sections: list[dict]) -> str:
    if any(state.startswith("failed") for state in datasets.values()) or any(s["status"] == "failed" for s in sections):
        return "failed"
    warned = any(s["status"] == "warning" for s in sections)  # e.g. a source due by its cadence is stale
    if all(state in ("missing", "not run") for state in datasets.values()):
        return "warning" if warned else "no_data"
    return "warning" if warned else "ok"


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


def _headline(datasets: dict[str, str], sections: list[dict]) -> str:
    present = [name for name, state in datasets.items() if state not in ("missing", "not run")]
    flagged = [s["title"] for s in sections if s["status"] in ("warning", "failed")]
    text = f"{len(present)} of {len(datasets)} datasets have a partition today"
    return text + (f"; needs attention: {', '.join(flagged)}" if flagged else "; nothing needs attention")


def _write(path: StoragePath, text: str) -> tuple[str, int]:
    """Write atomically (shopflow.common.storage); the content's sha256 and size."""
    data = text.encode("utf-8")
    storage.write_bytes(path, data)
    return hashlib.sha256(data).hexdigest(), len(data)


def build_report(settings: Settings, ds: date, *, run_id: str | None = None, store: MetadataStore | None = None,
                 generated_at: datetime | None = None) -> dict:
    """Write and record the report of `ds`; returns a small summary (paths, status, sections' statuses)."""
    store = store or MetadataStore(settings.store_url)
    store.check_schema()
    ctx = ReportContext.from_env(settings, store, ds)
    sections, errors = _build_sections(ctx)
    datasets = dataset_states(ctx)
    status = overall_status(datasets, sections)
    generated_at = (generated_at or datetime.now(timezone.utc)).replace(microsecond=0)
    report = {
        "ds": ds.isoformat(),
        "status": status,
        "headline": _headline(datasets, sections),
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
    store.record_report(ds, status=status, datasets=datasets, summary=headline, html_path=str(html_path),
                        json_path=str(json_path), html_sha256=html_sha, json_sha256=json_sha, run_id=run_id,
                        generated_at=generated_at)
    log.info("report %s written: %s (%s, %d bytes) and %s", ds, html_path, status, html_size, json_path)
    if errors:
        raise ReportIncomplete(f"report {ds} written to {html_path} without {len(errors)} section(s): {'; '.join(errors)}")
    return {"ds": ds.isoformat(), "status": status, "html": str(html_path), "json": str(json_path),
            "sections": {s["id"]: s["status"] for s in sections}}
