"""The review pages of the shopflow app (mounted under /shopflow): reviewers decide the catalogue repair's items.

| route                               | what                                                                    |
|-------------------------------------|-------------------------------------------------------------------------|
| GET  /review/                       | the repaired days, newest first, with their pending items               |
| GET  /review/{ds}                   | the day's items: `?state=pending|decided|all&action=fill|review|flag&page=N` |
| POST /review/{ds}                   | the form: many decisions at once (`d.<id>`, `v.<id>`; clusters: `g.`, `gv.`, `gm.`) |
| POST /review/{ds}/accept-pending    | the page's bulk form: accept every pending suggestion at >= min_confidence |
| GET  /review/{ds}.json              | the day's items, counts and `clusters` as JSON (same filters; `counts.total`) |
| POST /review/{ds}/decisions         | JSON `{"decisions": [{"uniq_id", "decision", "value"}]}` (uniq_id: text or integer) |

A near-duplicate cluster's listed items are one card on the page (`shopflow.governance.review.cards`): one decision for
the card (`g.<cluster>`, with `gv.<cluster>` for a correction) is recorded for each of its items (`gm.<cluster>`, one
field per item shown), except an item decided on its own in the same form (`d.<id>`), whose own decision wins. Pages
hold PER_PAGE cards, so a cluster is never split across two pages.

Why a page and not only Airflow's human-in-the-loop form: see `shopflow.governance.review`. Reading needs what every route of
the app needs (may read shopflow_daily's runs); deciding needs the right to answer shopflow_daily's human-in-the-loop
requests (`is_authorized_dag(PUT, HITL_DETAIL)`; the simple auth manager's `user` role and up), and a browser's
cross-site POST is refused (the `_token` cookie is SameSite=Lax; an `Origin` other than the server's own, compared as
scheme, host and port, is a 403 as well, and so is the opaque `Origin: null` of sandboxed frames and redirects). The
reviewer recorded is the Airflow user. Invalid decisions (an unknown product, a correction to no known category) are
a 422 with the reason, and nothing of the batch is recorded.

Requests are bounded and answers never echo what was submitted: a body over SHOPFLOW_REVIEW_MAX_BODY_BYTES is a 413
before it is parsed (`RequestBodyLimit`, the app's middleware), a refusal names the product and the reason but not
the submitted decision or value (`ReviewError.public`), and a malformed request's 422 lists where and what is wrong
without pydantic's copy of the input (app.py).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.configuration import conf
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, BeforeValidator, Field
from shopflow.config import options
from shopflow.governance import review
from shopflow.sources import roles

from shopflow_ui.deps import DAG_ID, SettingsDep, StoreDep, query_store, render_page

PER_PAGE = 100
MAX_ID_CHARACTERS = 64
MAX_VALUE_CHARACTERS = 500  # a correction names a category, "Top > Second" at most
DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # scheme, host, port


def origin_of(url: str, *, bare: bool = False) -> Origin | None:
    """(scheme, host, port) of an http(s) origin or URL, the scheme's default port filled in; None for anything else
    (`null`, another scheme, no host, a port that is not a number). `bare`: only an origin as a browser sends it,
    `scheme://host[:port]`, without user, path, query or fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if bare and ("@" in parts.netloc or parts.path or parts.query or parts.fragment):
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def own_origins(request: Request) -> set[Origin]:
    """The origins this server answers as: the request's own (its scheme, and its Host header, which the server
    routed it by) and the api-server's configured `[api] base_url` (the public URL, e.g. behind a TLS proxy)."""
    found = {origin_of(str(request.base_url)), origin_of(conf.get("api", "base_url", fallback="") or "")}
    found.discard(None)
    return found


def require_reviewer(user: GetUserDep, request: Request) -> BaseUser:
    """A user who may answer shopflow_daily's human-in-the-loop requests, on a same-origin request: a browser's
    `Origin` must be the server's own (scheme, host and port); a client that sends none (a script) is not a
    browser and passes."""
    origin = request.headers.get("origin")
    if origin is not None and origin_of(origin, bare=True) not in own_origins(request):
        raise HTTPException(403, "Forbidden: a review decision must come from the shopflow page itself")
    allowed = get_auth_manager().is_authorized_dag(
        method="PUT", access_entity=DagAccessEntity.HITL_DETAIL, details=DagDetails(id=DAG_ID), user=user)
    if not allowed:
        raise HTTPException(403, "Forbidden: you may not decide reviews of shopflow_daily (you need the right to "
                                 "answer its human-in-the-loop requests)")
    return user


ReviewerDep = Annotated[BaseUser, Depends(require_reviewer)]
router = APIRouter(prefix="/review")


def _key_as_text(value: Any) -> Any:
    """A product key sent as a JSON integer is its text (the store compares keys as text); anything else is left
    for the str check."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class DecisionIn(BaseModel):
    uniq_id: Annotated[str, BeforeValidator(_key_as_text)] = Field(min_length=1, max_length=MAX_ID_CHARACTERS)
    decision: str = Field(max_length=16)
    value: str | None = Field(default=None, max_length=MAX_VALUE_CHARACTERS)


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
    clusters = [card.as_dict() for card in review.cards(found) if card.cluster_id is not None]
    return JSONResponse({"ds": day.isoformat(), "counts": _reviewing(review.summary, settings, store, day),
                         "items": [item.as_dict() for item in found], "clusters": clusters})


@router.get("/{ds}", response_class=HTMLResponse, name="review_day")
def review_day(ds: str, request: Request, store: StoreDep, settings: SettingsDep, state: str = "pending",
               action: str | None = None, page: int = 1, saved: int | None = None) -> HTMLResponse:
    day = _day(ds)
    found = _reviewing(review.items, settings, store, day, action=action or None, state=state)
    counts = _reviewing(review.summary, settings, store, day)
    shown = review.cards(found)
    pages = max((len(shown) + PER_PAGE - 1) // PER_PAGE, 1)
    page = min(max(page, 1), pages)
    known = _reviewing(review.known_categories, store, day, counts["source"])
    filters = {"state": state, "action": action or ""}
    return render_page("review.html", 200, ds=day.isoformat(), counts=counts,
                 cards=shown[(page - 1) * PER_PAGE:page * PER_PAGE], items=found,
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
            uniq_id = _id_of(key[2:])
            value = form.get(f"v.{uniq_id}") if choice == review.CORRECT else None
            decisions.append(review.ItemDecision(uniq_id, str(choice), str(value) if value is not None else None))
    decided_alone = {d.uniq_id for d in decisions}
    for key, choice in form.multi_items():
        if key.startswith("g.") and choice:
            cluster = _id_of(key[2:])
            value = form.get(f"gv.{cluster}") if choice == review.CORRECT else None
            members = [_id_of(str(m)) for m in form.getlist(f"gm.{cluster}")]
            decisions += review.cluster_decisions([m for m in members if m not in decided_alone], str(choice),
                                                  str(value) if value is not None else None)
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
def _id_of(text: str) -> str:
    """A product or cluster id named by a form field, refused when longer than any key."""
    if len(text) > MAX_ID_CHARACTERS:
        raise HTTPException(422, f"a product id has at most {MAX_ID_CHARACTERS} characters; nothing was recorded")
    return text


def _day(ds: str) -> date:
    try:
        return date.fromisoformat(ds)
    except ValueError:
        raise HTTPException(404, "Not a day: a review page's day is written YYYY-MM-DD.") from None


def _reviewing(function, *args, **kwargs):
    """The library call; its refusals are a 422 with the reason (an unknown product a 404), without the submitted
    values (`ReviewError.public`); the store's a 503."""
    try:
        return query_store(lambda: function(*args, **kwargs))
    except review.UnknownItem as exc:
        raise HTTPException(404, exc.public) from None
    except review.ReviewError as exc:
        raise HTTPException(422, exc.public) from None
    except LookupError as exc:  # no validated catalogue snapshot to know categories from
        raise HTTPException(404, str(exc)) from None


def _back(request: Request, day: date, form, result: dict) -> RedirectResponse:
    query = {k: form.get(k) for k in ("state", "action", "page") if form.get(k)}
    query["saved"] = result["recorded"] + result["replaced"]
    target = request.url_for("review_day", ds=day.isoformat()).path
    return RedirectResponse(f"{target}?{urlencode(query)}", status_code=303)


# ---- bounded request bodies -----------------------------------------------------------------------------------
def max_body_bytes() -> int:
    return options.value("SHOPFLOW_REVIEW_MAX_BODY_BYTES")


def _body_too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"The request body is larger than {limit} bytes (SHOPFLOW_REVIEW_MAX_BODY_BYTES); "
                              "nothing was recorded.")


class RequestBodyLimit:
    """ASGI middleware of the app (only the review routes take a body): a request body over
    SHOPFLOW_REVIEW_MAX_BODY_BYTES is refused with 413 as soon as that is known, from its Content-Length before a
    byte of it is read, or else (a chunked body) once the bytes received pass the limit; it is never parsed nor kept.

    The 413 is raised where the route reads the body, so the app's error handler answers it (a page or JSON, with
    the app's security headers)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = max_body_bytes()
        declared = dict(scope["headers"]).get(b"content-length", b"")
        received = 0

        async def bounded_receive():
            nonlocal received
            if declared.isdigit() and int(declared) > limit:
                raise _body_too_large(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _body_too_large(limit)
            return message

        await self.app(scope, bounded_receive, send)
