"""A small Chrome DevTools Protocol driver for the browser tests: Debian's chromium, headless, a fresh profile.

    from browser import Chromium

    def test_page(chromium, tmp_path):        # the `chromium` fixture: started here, always killed afterwards
        page = chromium.open("file:///…/report.html")                     # or http(s)://, see Chromium.open
        assert page.console_errors() == []
        assert page.evaluate("document.querySelector('h1').textContent") == "…"
        page.screenshot(tmp_path / "report.png")

Console errors are `console.error`/`console.assert` calls, uncaught exceptions and the browser's own error log
entries (failed resource loads, CSP violations, …). A test module gets the fixture with
`from browser import chromium  # noqa: F401`, or uses `with Chromium(directory) as browser:` directly. Without a
chromium binary the fixture skips the test (set SHOPFLOW_CHROMIUM to use another binary).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--remote-debugging-port=0", "--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage",
         "--disable-extensions", "--disable-component-update", "--hide-scrollbars", "--window-size=1280,900"]


def chromium_binary() -> str | None:
    candidate = os.environ.get("SHOPFLOW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return candidate if Path(candidate).is_file() and os.access(candidate, os.X_OK) else None


class CDPError(RuntimeError):
    pass


class Chromium:
    """A headless chromium with its own profile directory, driven over one DevTools websocket."""

    def __init__(self, directory: Path, *, binary: str | None = None, start_timeout: float = 90):
        self.directory = Path(directory)
        self.binary = binary or chromium_binary()
        if self.binary is None:
            raise FileNotFoundError("chromium not found (Debian package chromium, or set SHOPFLOW_CHROMIUM)")
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self._socket = None
        self._next_id = 0
        self._events: list[dict] = []

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    def __enter__(self) -> "Chromium":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        from websockets.sync.client import connect

        self.directory.mkdir(parents=True, exist_ok=True)
        profile = Path(tempfile.mkdtemp(prefix="profile-", dir=self.directory))
        self.log_path = self.directory / "chromium.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([self.binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        active_port = profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout
        while not (active_port.is_file() and len(active_port.read_text().split()) >= 2):
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"chromium did not open its DevTools port in {self.start_timeout}s")
            time.sleep(0.1)
        port, path = active_port.read_text().split()[:2]
        self._socket = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, proxy=None, open_timeout=30,
                               ping_interval=None, compression=None, legacy=True)

    def close(self) -> None:
        """Close the DevTools connection and kill chromium's whole process group (renderers, zygote, …)."""
        if self._socket is not None:
            try:
                self._send("Browser.close", timeout=5)
            except Exception:  # noqa: BLE001 - the process group is killed below anyway
                pass
            try:
                self._socket.close()
            except Exception:  # noqa: BLE001
                pass
            self._socket = None
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            break
        deadline = time.monotonic() + 10  # the leader is gone: kill what is left of its group, wait until it is
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    # ---- protocol -----------------------------------------------------------------------------------------------
    def _send(self, method: str, params: dict | None = None, session_id: str | None = None,
              timeout: float = 30) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        self._socket.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply is None:
                raise TimeoutError(f"no reply to {method} in {timeout}s")
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _receive(self, deadline: float) -> dict | None:
        """The next message (events are also kept in self._events); None once the deadline has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            message = json.loads(self._socket.recv(timeout=remaining))
        except TimeoutError:
            return None
        if "method" in message:
            self._events.append(message)
        return message

    def _pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._receive(deadline) is not None:
            pass

    def _wait_event(self, method: str, session_id: str, timeout: float, since: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self._events[since:]:
                if event["method"] == method and event.get("sessionId") == session_id:
                    return event
            since = len(self._events)
            if self._receive(deadline) is None:
                raise TimeoutError(f"no {method} in {timeout}s")

    # ---- pages --------------------------------------------------------------------------------------------------
    def open(self, url: str, *, cookies: list[dict] | None = None, headers: dict[str, str] | None = None,
             wait_for: str | None = None, timeout: float = 60, settle: float = 0.5) -> "Page":
        """A new tab on `url`, after its load event (and, with `wait_for`, once that JS expression is truthy).

        cookies: Network.setCookie parameters, e.g. {"name": "_token", "value": jwt, "url": "http://127.0.0.1:8080"};
        headers: extra HTTP headers for every request of the tab (e.g. Authorization).
        """
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session, first_event=len(self._events))
        for domain in ("Page", "Runtime", "Log", "Network"):
            self._send(f"{domain}.enable", session_id=session)
        for cookie in cookies or []:
            if not self._send("Network.setCookie", cookie, session_id=session).get("success", True):
                raise CDPError(f"cookie refused: {cookie.get('name')}")
        if headers:
            self._send("Network.setExtraHTTPHeaders", {"headers": headers}, session_id=session)
        since = len(self._events)
        navigation = self._send("Page.navigate", {"url": url}, session_id=session, timeout=timeout)
        if navigation.get("errorText"):
            raise CDPError(f"navigation to {url} failed: {navigation['errorText']}")
        self._wait_event("Page.loadEventFired", session, timeout, since=since)
        if wait_for:
            page.wait_for(wait_for, timeout=timeout)
        self._pump(settle)
        return page


class Page:
    def __init__(self, browser: Chromium, target_id: str, session_id: str, first_event: int):
        self.browser, self.target_id, self.session_id, self._first_event = browser, target_id, session_id, first_event

    def evaluate(self, expression: str, timeout: float = 30):
        """The JSON value of a JS expression in the page (promises awaited); raises on a JS exception."""
        result = self.browser._send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                         "awaitPromise": True}, self.session_id, timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CDPError(f"{expression!r}: {details.get('exception', {}).get('description') or details.get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60, interval: float = 0.25):
        """Poll until the expression's JSON value is truthy; returns it. A DOM node's JSON value is {} (falsy
        here): test elements with `!!document.querySelector(…)` or return their text."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except CDPError:  # e.g. the element is not there yet
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still falsy after {timeout}s")
            self.browser._pump(interval)

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type text as keyboard input (frameworks such as React see real input events)."""
        if not self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                             " if (e) e.focus(); return !!e; })()"):
            raise CDPError(f"no element {selector!r}")
        self.browser._send("Input.insertText", {"text": text}, self.session_id)

    def screenshot(self, path: Path) -> Path:
        data = self.browser._send("Page.captureScreenshot", {"format": "png"}, self.session_id, 60)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def console_errors(self) -> list[str]:
        """console.error/assert calls, uncaught exceptions and error log entries of this tab, as text."""
        self.browser._pump(0.1)
        errors = []
        for event in self.browser._events[self._first_event:]:
            if event.get("sessionId") != self.session_id:
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                     for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = details.get("exception", {}).get("description") or details.get("text", "")
                errors.append(f"exception: {text}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".rstrip())
        return errors


@pytest.fixture
def chromium(tmp_path):
    """A started headless chromium (fresh profile under tmp_path); killed after the test. Skips if not installed."""
    if chromium_binary() is None:
        pytest.skip("chromium is not installed (Debian package `chromium`; make test installs it where it can)")
    with Chromium(tmp_path / "chromium") as browser:
        yield browser
