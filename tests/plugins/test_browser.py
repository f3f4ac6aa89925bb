"""The browser driver itself: what `console_errors` reports is real, so the pages' `== []` checks mean something."""

from __future__ import annotations

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
