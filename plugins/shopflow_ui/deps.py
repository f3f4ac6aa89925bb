"""What every route of the reports app shares: the DAG whose readers may see it, the settings and metadata-store
dependencies, the page templates and the store query guard. app.py and review_pages.py both import it (and never
each other's helpers)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from shopflow.common.redaction import redact
from shopflow.config.settings import Settings
from shopflow.store.repository import MetadataStore
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

DAG_ID = "shopflow_daily"
STATUS_CLASS = {  # report status and partition status -> badge colour (class names never come from data)
    "ok": "good", "validated": "good", "cleaned": "info", "ingested": "info",
    "warning": "warn", "empty": "muted", "missing": "muted", "not run": "muted",
    "failed": "bad", "failed_validation": "bad",
}

templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(default=True, default_for_string=True))
templates.filters["badge"] = lambda status: STATUS_CLASS.get(str(status), "other")


def get_settings() -> Settings:
    return Settings.from_env()


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_store(settings: SettingsDep) -> MetadataStore:
    return MetadataStore(settings.store_url)


StoreDep = Annotated[MetadataStore, Depends(get_store)]


def render_page(template: str, status_code: int, headers: dict | None = None, **context) -> HTMLResponse:
    return HTMLResponse(templates.get_template(template).render(**context), status_code=status_code,
                        headers=headers)


def query_store(method, *args):
    try:
        return method(*args)
    except SQLAlchemyError as exc:
        log.warning("shopflow metadata store error (answered 503): %s", redact(str(exc).splitlines()[0]))
        raise HTTPException(503, "The shopflow metadata store is not reachable or not migrated "
                                 "(run `python -m shopflow db upgrade`).") from None
