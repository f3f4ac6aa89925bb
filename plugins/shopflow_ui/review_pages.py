"""The review pages of the shopflow app (mounted under /shopflow): reviewers decide the catalogue repair's items.

| route                               | what                                                                    |
|-------------------------------------|-------------------------------------------------------------------------|
| GET  /review/                       | the repaired days, newest first, with their pending items               |
| GET  /review/{ds}                   | the day's items: `?state=pending|decided|all&action=fill|review|flag&page=N` |
| POST /review/{ds}                   | the page's form: many decisions at once (`d.<id>`, `v.<id>` fields)     |
| POST /review/{ds}/accept-pending    | the page's bulk form: accept every pending suggestion at >= min_confidence |
| GET  /review/{ds}.json              | the day's items and counts as JSON (same filters)                      |
| POST /review/{ds}/decisions         | JSON `{"decisions": [{"uniq_id", "decision", "value"}]}`                |

Why a page and not only Airflow's human-in-the-loop form: see `shopflow.governance.review`. Reading needs what every route of
the app needs (may read shopflow_daily's runs); deciding needs the right to answer shopflow_daily's human-in-the-loop
requests (`is_authorized_dag(PUT, HITL_DETAIL)`; the simple auth manager's `user` role and up), and a browser's
cross-site POST is refused (the `_token` cookie is SameSite=Lax; a foreign Origin is a 403 as well). The reviewer
recorded is the Airflow user. Invalid decisions (an unknown product, a correction to no known category) are a 422
with the reason, and nothing of the batch is recorded.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated
from urllib.parse import urlencode, urlparse

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from shopflow.governance import review
from shopflow.sources import roles

from shopflow_ui.deps import DAG_ID, SettingsDep, StoreDep, query_store, render_page

PER_PAGE = 100


def require_reviewer(user: GetUserDep, request: Request) -> BaseUser:
    """A user who may answer shopflow_daily's human-in-the-loop requests, on a same-origin request."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlparse(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "Forbidden: a review decision must come from the shopflow page itself")
    allowed = get_auth_manager().is_authorized_dag(
        method="PUT", access_entity=DagAccessEntity.HITL_DETAIL, details=DagDetails(id=DAG_ID), user=user)
    if not allowed:
        raise HTTPException(403, "Forbidden: you may not decide reviews of shopflow_daily (you need the right to "
                                 "answer its human-in-the-loop requests)")
    return user


ReviewerDep = Annotated[BaseUser, Depends(require_reviewer)]
router = APIRouter(prefix="/review")


class DecisionIn(BaseModel):
    uniq_id: str = Field(min_length=1, max_length=64)
    decision: str
    value: str | None = None


class DecisionsIn(BaseModel):
    decisions: list[DecisionIn] = Field(max_length=5000)


@router.get("/", response_class=HTMLResponse, name="review_index")
def review_index(store: StoreDep) -> HTMLResponse:
    runs = query_store(store.repair_runs)
    source = roles.model_catalog().name
    decided = {}
    for d in query_store(store.review_decisions, source):
        if d.audit_action in review.PENDING_ACTIONS:
            decided[d.ds] = decided.get(d.ds, 0) + 1
    days = [{"ds": run.ds.isoformat(), "review": run.rows_review, "flagged": run.rows_flagged,
             "filled": run.rows_filled, "model_version": run.model_version,
             "pending": max(run.rows_review + run.rows_flagged - decided.get(run.ds, 0), 0)} for run in runs]
    return render_page("review_index.html", 200, days=days, source=source)


@router.get("/{ds}.json", name="review_json")
def review_json(ds: str, store: StoreDep, settings: SettingsDep, state: str = "all",
                action: str | None = None) -> JSONResponse:
    day = _day(ds)
    found = _reviewing(review.items, settings, store, day, action=action or None, state=state)
    return JSONResponse({"ds": day.isoformat(), "counts": _reviewing(review.summary, settings, store, day),
                         "items": [item.as_dict() for item in found]})


@router.get("/{ds}", response_class=HTMLResponse, name="review_day")
def review_day(ds: str, request: Request, store: StoreDep, settings: SettingsDep, state: str = "pending",
               action: str | None = None, page: int = 1, saved: int | None = None) -> HTMLResponse:
    day = _day(ds)
    found = _reviewing(review.items, settings, store, day, action=action or None, state=state)
    counts = _reviewing(review.summary, settings, store, day)
    pages = max((len(found) + PER_PAGE - 1) // PER_PAGE, 1)
    page = min(max(page, 1), pages)
    known = _reviewing(review.known_categories, store, day, counts["source"])
    filters = {"state": state, "action": action or ""}
    return render_page("review.html", 200, ds=day.isoformat(), counts=counts, items=found[(page - 1) * PER_PAGE:page * PER_PAGE],
                 total=len(found), page=page, pages=pages, filters=filters, query=urlencode(filters),
                 categories=known.choices(), saved=saved, states=review.STATES, actions=review.ACTIONS)


@router.post("/{ds}", name="review_decide_form")
async def review_decide_form(ds: str, request: Request, store: StoreDep, settings: SettingsDep,
                             user: ReviewerDep) -> RedirectResponse:
    day = _day(ds)
    form = await request.form()
    decisions = []
    for key, choice in form.multi_items():
        if key.startswith("d.") and choice:
            uniq_id = key[2:]
            value = form.get(f"v.{uniq_id}") if choice == review.CORRECT else None
            decisions.append(review.ItemDecision(uniq_id, str(choice), str(value) if value is not None else None))
    result = _reviewing(review.decide, settings, store, day, decisions, user.get_name(), via="page")
    return _back(request, day, form, result)


@router.post("/{ds}/accept-pending", name="review_accept_pending")
async def review_accept_pending(ds: str, request: Request, store: StoreDep, settings: SettingsDep,
                                user: ReviewerDep) -> RedirectResponse:
    day = _day(ds)
    form = await request.form()
    try:
        minimum = float(form.get("min_confidence", ""))
    except ValueError:
        raise HTTPException(422, "min_confidence must be a number between 0 and 1") from None
    result = _reviewing(review.accept_pending, settings, store, day, minimum, user.get_name(), via="page")
    return _back(request, day, form, result)


@router.post("/{ds}/decisions", name="review_decisions")
def review_decisions(ds: str, body: DecisionsIn, store: StoreDep, settings: SettingsDep,
                     user: ReviewerDep) -> JSONResponse:
    day = _day(ds)
    decisions = [review.ItemDecision(d.uniq_id, d.decision, d.value) for d in body.decisions]
    return JSONResponse(_reviewing(review.decide, settings, store, day, decisions, user.get_name(), via="api"))


# ---- helpers --------------------------------------------------------------------------------------------------
def _day(ds: str) -> date:
    try:
        return date.fromisoformat(ds)
    except ValueError:
        raise HTTPException(404, f"{ds!r} is not a day (YYYY-MM-DD).") from None


def _reviewing(function, *args, **kwargs):
    """The library call; its refusals are a 422 with the reason (an unknown product a 404), the store's a 503."""
    try:
        return query_store(lambda: function(*args, **kwargs))
    except review.UnknownItem as exc:
        raise HTTPException(404, str(exc)) from None
    except review.ReviewError as exc:
        raise HTTPException(422, str(exc)) from None
    except LookupError as exc:  # no validated catalogue snapshot to know categories from
        raise HTTPException(404, str(exc)) from None


def _back(request: Request, day: date, form, result: dict) -> RedirectResponse:
    query = {k: form.get(k) for k in ("state", "action", "page") if form.get(k)}
    query["saved"] = result["recorded"] + result["replaced"]
    target = request.url_for("review_day", ds=day.isoformat()).path
    return RedirectResponse(f"{target}?{urlencode(query)}", status_code=303)

