"""The browser tests' driver: Selenium (a maintained WebDriver client) on Debian's chromium and chromedriver,
headless, a fresh profile; nothing is downloaded (the driver and browser paths are given, so Selenium Manager never
runs).

    from browser import chromium

    def test_page(chromium, tmp_path):        # the `chromium` fixture: started here, always quit afterwards
        page = chromium.open("file:///…/report.html", wait_for="!!document.querySelector('h1')")
        assert page.console_errors() == []
        assert page.evaluate("document.querySelector('h1').textContent") == "…"
        page.screenshot(tmp_path / "report.png")

Console errors are the browser log's SEVERE entries: `console.error`/`console.assert` calls, uncaught exceptions,
failed resource loads and Content-Security-Policy violations. A test module gets the fixture with
`from browser import chromium  # noqa: F401`. Without chromium or chromedriver the fixture skips the test, naming
the Debian package (SHOPFLOW_CHROMIUM / SHOPFLOW_CHROMEDRIVER choose other binaries).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--no-default-browser-check", "--disable-dev-shm-usage", "--disable-extensions", "--disable-component-update",
         "--disable-sync", "--disable-quic", "--hide-scrollbars", "--window-size=1280,900"]


def _binary(variable: str, *names: str) -> str | None:
    for candidate in (os.environ.get(variable), *(shutil.which(n) for n in names), *(f"/usr/bin/{n}" for n in names)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def chromium_binary() -> str | None:
    return _binary("SHOPFLOW_CHROMIUM", "chromium")


def chromedriver_binary() -> str | None:
    return _binary("SHOPFLOW_CHROMEDRIVER", "chromedriver")


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless chromium under chromedriver; each `open` is a new window, and each Page switches to its own."""

    def __init__(self, directory: Path, *, binary: str | None = None, driver: str | None = None):
        self.directory = Path(directory)
        self.binary, self.driver_path = binary or chromium_binary(), driver or chromedriver_binary()
        if self.binary is None or self.driver_path is None:
            raise FileNotFoundError("chromium / chromedriver not found (Debian packages chromium, chromium-driver)")
        self.driver = None
        self._logs: dict[str, list[dict]] = {}
        self._current: str | None = None

    def __enter__(self) -> "Chromium":
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.directory.mkdir(parents=True, exist_ok=True)
        options = webdriver.ChromeOptions()
        options.binary_location = self.binary
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='profile-', dir=self.directory)}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=self.driver_path, log_output=str(self.directory / "chromedriver.log"))
        self.driver = webdriver.Chrome(options=options, service=service)
        self._current = self.driver.current_window_handle
        return self

    def __exit__(self, *exc) -> None:
        if self.driver is not None:
            self.driver.quit()

    def _switch(self, handle: str) -> None:
        """Make `handle` the driver's window, first filing the browser log read so far under the current one."""
        self._drain()
        if handle != self._current:
            self.driver.switch_to.window(handle)
            self._current = handle

    def _drain(self) -> None:
        if self._current is not None:
            self._logs.setdefault(self._current, []).extend(self.driver.get_log("browser"))

    def open(self, url: str, *, cookies: list[dict] | None = None, headers: dict[str, str] | None = None,
             wait_for: str | None = None, timeout: float = 60, settle: float = 0.5) -> "Page":
        """A new window on `url` once it has loaded (and, with `wait_for`, once that JS expression is truthy).

        cookies: CDP Network.setCookie parameters, e.g. {"name": "_token", "value": jwt, "url": "http://…"};
        headers: extra HTTP headers for every request (e.g. Authorization).
        """
        self._drain()
        self.driver.switch_to.new_window("tab")
        self._current = self.driver.current_window_handle
        self.driver.get_log("browser")  # what the blank tab logged is nobody's
        self._logs[self._current] = []
        for cookie in cookies or []:
            if not self.driver.execute_cdp_cmd("Network.setCookie", cookie).get("success", True):
                raise BrowserError(f"cookie refused: {cookie.get('name')}")
        if headers:
            self.driver.execute_cdp_cmd("Network.enable", {})
            self.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})
        self.driver.set_page_load_timeout(timeout)
        self.driver.get(url)
        page = Page(self, self._current)
        if wait_for:
            page.wait_for(wait_for, timeout=timeout)
        time.sleep(settle)  # late resource loads and CSP reports reach the log
        return page


class Page:
    def __init__(self, browser: Chromium, handle: str):
        self.browser, self.handle = browser, handle

    @property
    def _driver(self):
        self.browser._switch(self.handle)
        return self.browser.driver

    def evaluate(self, expression: str):
        """The value of a JS expression in the page (promises awaited); raises BrowserError on a JS exception."""
        from selenium.common.exceptions import JavascriptException

        try:
            return self._driver.execute_script(f"return (async () => ({expression}))();")
        except JavascriptException as exc:
            raise BrowserError(f"{expression!r}: {exc.msg}") from exc

    def wait_for(self, expression: str, timeout: float = 60, interval: float = 0.25):
        """Poll until the expression's value is truthy; returns it. Test elements with `!!document.querySelector(…)`
        or return their text."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except BrowserError:  # e.g. the element is not there yet
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still falsy after {timeout}s")
            time.sleep(interval)

    def type_into(self, selector: str, text: str) -> None:
        """Type text into the element as keyboard input (frameworks such as React see real input events)."""
        from selenium.common.exceptions import NoSuchElementException
        from selenium.webdriver.common.by import By

        try:
            self._driver.find_element(By.CSS_SELECTOR, selector).send_keys(text)
        except NoSuchElementException as exc:
            raise BrowserError(f"no element {selector!r}") from exc

    def screenshot(self, path: Path) -> Path:
        path = Path(path)
        if not self._driver.save_screenshot(str(path)):
            raise BrowserError(f"screenshot to {path} failed")
        return path

    def console_errors(self) -> list[str]:
        """This window's SEVERE browser log entries (console errors, exceptions, failed loads, CSP), as text."""
        self.browser._switch(self.handle)
        self.browser._drain()
        return [f"{entry.get('source', 'log')}: {entry['message']}"
                for entry in self.browser._logs.get(self.handle, []) if entry.get("level") == "SEVERE"]


@pytest.fixture
def chromium(tmp_path):
    """A started headless chromium under chromedriver (fresh profile under tmp_path); quit after the test."""
    if chromium_binary() is None:
        pytest.skip("chromium is not installed (Debian package `chromium`; make test installs it where it can)")
    if chromedriver_binary() is None:
        pytest.skip("chromedriver is not installed (Debian package `chromium-driver`; make test installs it where it can)")
    with Chromium(tmp_path / "chromium") as browser:
        yield browser
