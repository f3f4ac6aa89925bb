"""Review requests are bounded and never echoed, and a browser's decision must come from the server's own origin:
the review routes of the reports app (plugins/shopflow_ui/review_pages.py) through FastAPI's test client, with real
JWTs of the simple auth manager (tests/support/ui_client.py) and a fresh SQLite store without repair items.

- a body over SHOPFLOW_REVIEW_MAX_BODY_BYTES is a 413, by its Content-Length or, sent in chunks, by what arrives;
- a malformed decision (a value too long, a wrong type, broken JSON) is a 422 that says where and what, never with
  the submitted value; a path that is not a day is a 404 without it;
- `Origin` is compared as scheme, host and port with the server's own; `null`, another port, another scheme and
  another host are refused before anything is read from the store; no Origin at all (a script) passes.
"""

from __future__ import annotations

import json

import pytest

DAY = "2015-12-03"
DECISIONS = f"/review/{DAY}/decisions"
FORM = f"/review/{DAY}"
MARKER = "SUBMITTED-VALUE-MARKER"


@pytest.fixture
def reviewer(settings, client, mint):
    """The test client with the bearer token of a user who may decide (the simple auth manager's `user` role)."""
    client.headers["Authorization"] = f"Bearer {mint('user')}"
    return client


def _not_echoed(response, marker: str = MARKER) -> None:
    assert marker not in response.text, response.text[:500]
    assert len(response.content) < 4096, "an error answer is short, whatever was submitted"


# ---- bounded bodies -----------------------------------------------------------------------------------------------
def test_a_body_over_the_default_cap_is_413_and_not_echoed(reviewer):
    value = MARKER * (2 * 1024 * 1024 // len(MARKER))  # 2 MiB, twice the default SHOPFLOW_REVIEW_MAX_BODY_BYTES
    body = json.dumps({"decisions": [{"uniq_id": "a" * 32, "decision": "correct", "value": value}]})
    response = reviewer.post(DECISIONS, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "SHOPFLOW_REVIEW_MAX_BODY_BYTES" in response.json()["detail"]
    _not_echoed(response)
    assert response.headers["Content-Security-Policy"] and response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_the_cap_is_a_setting_and_covers_the_form_and_chunked_bodies(reviewer, monkeypatch, accept):
    monkeypatch.setenv("SHOPFLOW_REVIEW_MAX_BODY_BYTES", "2048")
    small = {"decisions": [{"uniq_id": "a" * 32, "decision": "reject"}]}
    assert reviewer.post(DECISIONS, json=small).status_code == 404  # under the cap: read, no such item that day
    large = {"decisions": [{"uniq_id": "a" * 32, "decision": "correct", "value": MARKER * 200}]}
    response = reviewer.post(DECISIONS, json=large, headers={"Accept": accept})
    assert response.status_code == 413
    _not_echoed(response)
    form = reviewer.post(FORM, data={"d." + "a" * 32: "correct", "v." + "a" * 32: MARKER * 200},
                         headers={"Accept": accept})
    assert form.status_code == 413
    _not_echoed(form)

    def chunks():  # no Content-Length: the limit counts what arrives
        yield b'{"decisions": [{"uniq_id": "' + b"a" * 32 + b'", "decision": "correct", "value": "'
        for _ in range(100):
            yield MARKER.encode() * 10
        yield b'"}]}'

    chunked = reviewer.post(DECISIONS, content=chunks(), headers={"Content-Type": "application/json", "Accept": accept})
    assert chunked.status_code == 413
    _not_echoed(chunked)
    if accept == "text/html":
        assert "<h1>Request too large</h1>" in form.text


# ---- refusals without the submitted values ----------------------------------------------------------------------
@pytest.mark.parametrize("decision", [
    {"uniq_id": "a" * 32, "decision": "correct", "value": MARKER * 1000},  # longer than any category
    {"uniq_id": MARKER * 10, "decision": "reject"},  # longer than a product id
    {"uniq_id": "a" * 32, "decision": MARKER},  # longer than any decision
    {"uniq_id": "a" * 32, "decision": "correct", "value": {"nested": MARKER}},  # not a string
])
def test_a_malformed_decision_is_422_without_the_value(reviewer, decision):
    response = reviewer.post(DECISIONS, json={"decisions": [decision]})
    assert response.status_code == 422
    _not_echoed(response)
    [problem] = response.json()["detail"]
    assert problem["loc"][:3] == ["body", "decisions", 0] and problem["msg"] and "input" not in problem


def test_broken_json_and_a_bad_day_are_refused_without_echo(reviewer):
    broken = reviewer.post(DECISIONS, content=b'{"decisions": [' + MARKER.encode(),
                           headers={"Content-Type": "application/json"})
    assert broken.status_code == 422
    _not_echoed(broken)
    html = reviewer.post(DECISIONS, json={"decisions": [{"uniq_id": "a" * 32, "decision": "x", "value": MARKER * 99}]},
                         headers={"Accept": "text/html"})
    assert html.status_code == 422 and "<h1>Not a valid request</h1>" in html.text
    _not_echoed(html)
    not_a_day = reviewer.get(f"/review/{MARKER}.json")
    assert not_a_day.status_code == 404
    _not_echoed(not_a_day)
    form = reviewer.post(FORM, data={"d." + MARKER * 10: "reject"})
    assert form.status_code == 422
    _not_echoed(form)


def test_a_query_value_is_not_echoed(reviewer, mint):
    response = reviewer.get(f"/review/{DAY}.json", params={"state": MARKER},
                            headers={"Authorization": f"Bearer {mint('viewer')}"})
    assert response.status_code == 422 and "unknown state: one of" in response.json()["detail"]
    _not_echoed(response)


# ---- origins --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("origin", [
    "null",  # a sandboxed frame, a data: page, a cross-origin redirect
    "http://testserver:8080",  # the host, another port
    "https://testserver",  # the host, another scheme
    "http://evil.example",  # another host
    "http://testserver.evil.example",
    "file://testserver",
    "not an origin",
    "http://evil.example@testserver",  # not an origin as a browser sends it
    "http://testserver/path",
])
def test_a_foreign_origin_is_refused(reviewer, origin):
    small = {"decisions": [{"uniq_id": "a" * 32, "decision": "reject"}]}
    response = reviewer.post(DECISIONS, json=small, headers={"Origin": origin})
    assert response.status_code == 403, origin
    assert "must come from the shopflow page itself" in response.json()["detail"]
    form = reviewer.post(FORM, data={"d." + "a" * 32: "reject"}, headers={"Origin": origin})
    assert form.status_code == 403, origin


@pytest.mark.parametrize("origin", ["http://testserver", "http://testserver:80", "HTTP://TestServer", None])
def test_the_servers_own_origin_and_no_origin_pass(reviewer, origin):
    headers = {"Origin": origin} if origin else {}
    response = reviewer.post(DECISIONS, json={"decisions": [{"uniq_id": "a" * 32, "decision": "reject"}]},
                             headers=headers)
    assert response.status_code == 404, response.text  # past the origin check: no such repair item that day
    assert "no repair item to review" in response.json()["detail"]


def test_the_configured_base_url_is_an_own_origin(reviewer, monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://shop.example/airflow")  # behind a TLS proxy
    small = {"decisions": [{"uniq_id": "a" * 32, "decision": "reject"}]}
    assert reviewer.post(DECISIONS, json=small, headers={"Origin": "https://shop.example"}).status_code == 404
    assert reviewer.post(DECISIONS, json=small, headers={"Origin": "https://shop.example:8443"}).status_code == 403
    assert reviewer.post(DECISIONS, json=small, headers={"Origin": "http://shop.example"}).status_code == 403
