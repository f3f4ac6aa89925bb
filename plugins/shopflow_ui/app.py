"""The shopflow reports app, mounted by the Airflow api-server under /shopflow (see reports_plugin.py).

| route                         | what                                                                          |
|-------------------------------|-------------------------------------------------------------------------------|
| GET /                         | the reports by day, newest first: status, dataset badges, links; `?dataset=` |
| GET /reports/{ds}             | the stored HTML report of day ds (YYYY-MM-DD)                                 |
| GET /reports/{ds}.json        | its JSON                                                                      |
| GET /runs/{run_id}[?dag_id=]  | redirect to the report of an Airflow run (the "shopflow report" tab of a run)|
| /review/…                     | the catalogue review: decide the repair's items (review_pages.py)             |

Data comes from shopflow's metadata store (`Settings.from_env()`, `MetadataStore`), never from Airflow's database;
report files are read through shopflow.common.storage and served only from inside the reports folder
(`SHOPFLOW_REPORTS_DIR`, or `$SHOPFLOW_STORAGE_URL/reports` on an object store).

Every route needs a user that may read shopflow_daily's runs: Airflow's own `get_user` dependency authenticates the
JWT of an `Authorization: Bearer` header or, in the browser (the UI shows this app in an iframe), of the `_token`
cookie the Airflow UI sets at login; the auth manager then decides `is_authorized_dag(GET, RUN, shopflow_daily)`.
Anonymous callers get 401 (an expired token too), an invalid token 403, before any store access.

A request body over SHOPFLOW_REVIEW_MAX_BODY_BYTES is a 413 (`RequestBodyLimit`, review_pages.py); a malformed request
is a 422 that says where and what is wrong, never with a copy of what was submitted.
"""

from __future__ import annotations

from datetime import date

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from shopflow.common import storage
from shopflow.config.settings import Settings
from shopflow.store.models import Report
from shopflow.store.repository import MetadataStore
from starlette.exceptions import HTTPException as StarletteHTTPException

from shopflow_ui.deps import DAG_ID, SettingsDep, StoreDep, query_store, render_page
from shopflow_ui.review_pages import RequestBodyLimit
from shopflow_ui.review_pages import router as review_router

# Report pages are self-contained: inline CSS and data: images only, no script, shown in the Airflow UI's iframe.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'self'")

# ---- dependencies ---------------------------------------------------------------------------------------------
def require_reader(user: GetUserDep) -> BaseUser:
    """Airflow's authenticated user (Bearer header or `_token` cookie), allowed to read shopflow_daily's runs."""
    allowed = get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=DAG_ID), user=user)
    if not allowed:
        raise HTTPException(status_code=403, detail="Forbidden: you may not read the runs of shopflow_daily")
    return user


# ---- the app --------------------------------------------------------------------------------------------------
app = FastAPI(title="shopflow reports", dependencies=[Depends(require_reader)],
              docs_url=None, redoc_url=None, openapi_url=None)
app.add_middleware(RequestBodyLimit)  # added first: inside the security headers, so that a 413 carries them too


@app.middleware("http")
async def _security_headers(request: Request, call_next):
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"  # shop data: never in a shared cache
    return response


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException):
    """A readable page for browsers (the iframe), JSON for API clients."""
    if "text/html" in request.headers.get("accept", ""):
        try:
            index_path = request.url_for("index").path
        except Exception:  # noqa: BLE001 - an error page must render even without a router
            index_path = "./"
        return render_page("message.html", exc.status_code, title=_TITLES.get(exc.status_code, "Error"),
                     message=str(exc.detail), status=exc.status_code, index_path=index_path, headers=exc.headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


_TITLES = {401: "Not logged in", 403: "Not allowed", 404: "Not found", 413: "Request too large",
           422: "Not a valid request", 503: "Store not available"}


@app.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError):
    """A 422 listing where (`loc`) and what (`msg`, `type`) is wrong, without pydantic's `input` and `ctx`, which
    would echo what was submitted (a refused 300 MiB value whole)."""
    problems = [{"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}
                for error in exc.errors()]
    if "text/html" in request.headers.get("accept", ""):
        said = "; ".join(f"{'.'.join(str(part) for part in p['loc'])}: {p['msg']}" for p in problems)
        return await _http_error(request, StarletteHTTPException(422, f"The request is not valid: {said}"))
    return JSONResponse({"detail": problems}, status_code=422)


@app.get("/", response_class=HTMLResponse, name="index")
def index(store: StoreDep, dataset: str | None = None) -> HTMLResponse:
    dataset = dataset or None  # the filter form sends an empty value for "all datasets"
    everything = query_store(store.reports)
    shown = everything if dataset is None else query_store(store.reports, dataset)
    datasets = sorted({name for report in everything for name in (report.datasets or {})})
    return render_page("index.html", 200, reports=shown, datasets=datasets, dataset=dataset, total=len(everything))


@app.get("/reports/{ds}.json", name="report_json")
def report_json(ds: str, store: StoreDep, settings: SettingsDep) -> Response:
    report = _report_of_day(store, ds)
    return Response(_report_file(settings, report.json_path, ds), media_type="application/json")


@app.get("/reports/{ds}", response_class=HTMLResponse, name="report_html")
def report_html(ds: str, store: StoreDep, settings: SettingsDep) -> Response:
    report = _report_of_day(store, ds)
    return HTMLResponse(_report_file(settings, report.html_path, ds))


@app.get("/runs/{run_id:path}", name="run_report")
def run_report(run_id: str, request: Request, store: StoreDep, dag_id: str | None = None) -> Response:
    """The report recorded for this run (by its `report` task or a later `python -m shopflow report`).

    The day is never guessed from the run id: Airflow names scheduled and backfill runs after their run-after
    time, which for a daily data interval is the day after the one the run processes."""
    if dag_id not in (None, DAG_ID):
        raise HTTPException(404, f"shopflow writes reports for the runs of {DAG_ID} only, not of {dag_id}.")
    report = query_store(store.report_for_run, run_id)
    if report is None:
        raise HTTPException(404, f"The report of run {run_id} is not written yet (its report task has not run).")
    return RedirectResponse(request.url_for("report_html", ds=report.ds.isoformat()).path, status_code=307)


# ---- helpers --------------------------------------------------------------------------------------------------
def _report_of_day(store: MetadataStore, ds: str) -> Report:
    try:
        day = date.fromisoformat(ds)
    except ValueError:
        raise HTTPException(404, f"{ds!r} is not a day (YYYY-MM-DD).") from None
    report = query_store(store.report, day)
    if report is None:
        raise HTTPException(404, f"There is no report for {day.isoformat()}.")
    return report


def _report_file(settings: Settings, stored_path: str, ds: str) -> bytes:
    """The recorded file's bytes, only if it lies inside the reports folder (relative paths are relative to it).

    Bad stored data (no path, a NUL byte or other unusable characters, an unreadable file) is a 404, never a 500."""
    unusable = HTTPException(404, f"The report file of {ds} recorded in the store is not a usable path; it is not served.")
    if not isinstance(stored_path, str) or not stored_path or "\x00" in stored_path:
        raise unusable
    try:
        path = storage.contained(settings.reports_dir, stored_path)
        if path is None:
            raise HTTPException(404, f"The report file of {ds} is outside the reports directory; it is not served.")
        if not storage.is_file(path):
            raise HTTPException(404, f"The report of {ds} is recorded but its file is missing.")
        return storage.read_bytes(path)
    except (ValueError, TypeError, UnicodeError, OSError):
        raise unusable from None


app.include_router(review_router)  # /review/…, review_pages.py
