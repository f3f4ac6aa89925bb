"""The browser driver itself: what `console_errors` reports is real, so the pages' `== []` checks mean something; and
the review page in chromium: a near-duplicate cluster decided once, every item of it decided."""

from __future__ import annotations

import time

import pytest
from browser import chromium  # noqa: F401 - the fixture


def test_console_errors_exceptions_and_csp_violations_are_reported(chromium, tmp_path):  # noqa: F811 - the fixture
    page_file = tmp_path / "broken.html"
    page_file.write_text(
        "<!doctype html><html><head><meta http-equiv='Content-Security-Policy' content=\"img-src 'none'\"></head>"
        "<body><h1>broken</h1><img src='data:image/png;base64,iVBORw0KGgo='>"
        "<script>console.error('boom'); setTimeout(() => { throw new Error('uncaught'); }, 0);</script></body></html>")
    page = chromium.open(page_file.as_uri(), wait_for="document.querySelector('h1').textContent", settle=1.0)
    errors = " | ".join(page.console_errors())
    assert "boom" in errors and "uncaught" in errors, errors
    assert "Content Security Policy" in errors, errors
    clean = chromium.open("data:text/html,<h1>fine</h1>", wait_for="!!document.querySelector('h1')")
    assert clean.console_errors() == []
    assert page.evaluate("document.title") == "" and clean.evaluate("document.querySelector('h1').textContent") == "fine"


# ---- the review page in a real browser ---------------------------------------------------------------------------
@pytest.fixture
def review_server(tmp_path, source_data, monkeypatch):
    """The shopflow app (uvicorn, in this process) on a repaired day with near-duplicate clusters
    (tests/support/review_days.py): (base URL, the day)."""
    import os
    import socket
    import threading

    import uvicorn
    from review_days import publish_same_title_duplicates, review_day
    from shopflow_ui.app import app

    day = review_day(tmp_path / "day", source_data, integer_keys=True)
    publish_same_title_duplicates(day)
    for name in [n for n in os.environ if n.startswith("SHOPFLOW_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SHOPFLOW_HOME", str(day.settings.home))
    monkeypatch.setenv("SHOPFLOW_SOURCE_DATA", str(day.settings.source_data))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", day
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_a_near_duplicate_cluster_is_decided_once_in_the_browser(review_server, chromium, mint, tmp_path):  # noqa: F811
    from shopflow.governance import review

    base, day = review_server
    found = review.items(day.settings, day.store, day.ds, state="pending")
    card = next(c for c in review.cards(found) if c.cluster_id is not None and c.acceptable)
    url = f"{base}/review/{day.ds.isoformat()}?state=all"
    page = chromium.open(url, headers={"Authorization": f"Bearer {mint('user')}"},
                         wait_for="!!document.querySelector('#items')")
    row = f"tr.cluster[data-cluster='{card.cluster_id}']"
    assert page.evaluate(f"[...document.querySelectorAll(\"{row} td:first-child li[data-id]\")].map(li => li.dataset.id)") \
        == card.ids
    page.evaluate(f"document.querySelector(\"{row} input[name='g.{card.cluster_id}'][value='accept']\").click()")
    page.evaluate("document.querySelector('#decisions button[type=submit]').click()")
    saved = page.wait_for("document.querySelector('#saved') && document.querySelector('#saved').textContent")
    assert saved == f"{len(card.ids)} decisions saved"
    states = page.evaluate(f"[...document.querySelectorAll(\"{row} li.now\")].map(li => li.textContent.trim())")
    assert len(states) == len(card.ids) and all(s.startswith("accept") for s in states), states
    assert page.evaluate(f"document.querySelector(\"{row} input[name='g.{card.cluster_id}'][value='accept']\").checked")
    assert page.console_errors() == []
    page.screenshot(tmp_path / "review-cluster.png")
    decisions = {d.uniq_id: d.decision for d in day.store.review_decisions("catalog", day.ds)}
    assert decisions == dict.fromkeys(card.ids, "accept"), "one decision row per item of the cluster"
