"""The shopflow UI plugin in a real `airflow api-server` (own AIRFLOW_HOME, SQLite, free port, simple auth manager).

The api-server loads plugins/ and mounts the reports app under /shopflow; requests carry the admin's JWT from
`POST /auth/token`, either as a bearer header (API clients) or as the `_token` cookie (the Airflow UI, whose iframe
sends cookies only). The browser test logs in with the UI's own form, then opens the UI's "shopflow" navigation page,
the listing, a report and a DAG run's "shopflow report" tab in headless chromium (screenshots in its tmp dir).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
from browser import chromium  # noqa: F401 - the fixture
from local_airflow import Services, airflow, airflow_env, free_port
from shopflow.config.settings import Settings
from shopflow.store import migrate
from ui_client import DAYS, RUN_DEC3, record_fake_report

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


@dataclass
class ApiServer:
    base: str
    token: str
    password: str
    reports: dict[str, tuple[bytes, bytes]]  # ds -> (html, json) as recorded

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base, follow_redirects=False, timeout=60, **kwargs)

    def bearer(self) -> httpx.Client:
        return self.client(headers={"Authorization": f"Bearer {self.token}"})


def _wait_healthy(services: Services, base: str, timeout: float = 240) -> None:
    process, deadline = services.processes["api-server"], time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"api-server exited with {process.returncode}; see {services.log_dir}")
        try:
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"api-server not healthy in {timeout}s; see {services.log_dir}")


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin-apiserver")
    port = free_port()
    env = airflow_env(root / "airflow", root / "shopflow", port=port, parallelism=2)
    env["AIRFLOW__API__HOST"] = "127.0.0.1"  # the default binds every interface
    settings = Settings.from_env(env)
    settings.home.mkdir(parents=True)
    migrate.upgrade(settings.store_url)
    reports = {ds: record_fake_report(settings, ds, datasets, run_id) for ds, (datasets, run_id) in DAYS.items()}
    airflow(env, "db", "migrate", timeout=600)
    services, base = Services(env, root / "logs"), env["AIRFLOW__API__BASE_URL"]
    try:
        services.start("api-server")
        _wait_healthy(services, base)
        passwords = json.loads((root / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        login = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": passwords["admin"]},
                           timeout=60)
        assert login.status_code == 201, login.text
        yield ApiServer(base, login.json()["access_token"], passwords["admin"], reports)
    finally:
        services.stop()  # SIGTERM (twice), then SIGKILL, to the api-server's process group


def test_plugin_is_loaded_with_its_views(api_server):
    with api_server.bearer() as client:
        plugins = client.get("/api/v2/plugins").json()["plugins"]
        assert client.get("/api/v2/plugins/importErrors").json()["import_errors"] == []
    [plugin] = [p for p in plugins if p["name"] == "shopflow"]
    assert plugin["source"].endswith("shopflow_ui/reports_plugin.py")
    assert [(a["url_prefix"], a["name"]) for a in plugin["fastapi_apps"]] == [("/shopflow", "shopflow reports")]
    views = {view["destination"]: view for view in plugin["external_views"]}
    assert (views["nav"]["name"], views["nav"]["href"], views["nav"]["url_route"]) == ("shopflow", "shopflow/",
                                                                                       "shopflow")
    assert views["dag_run"]["href"] == "shopflow/runs/{RUN_ID}?dag_id={DAG_ID}"


def test_bearer_cookie_and_anonymous(api_server):
    html, body = api_server.reports["2015-12-03"]
    with api_server.bearer() as client:
        listing = client.get("/shopflow/")
        assert listing.status_code == 200 and 'id="reports"' in listing.text and "2010-12-01" in listing.text
        assert client.get("/shopflow/reports/2015-12-03").content == html
        assert client.get("/shopflow/reports/2015-12-03.json").content == body
        assert client.get("/shopflow/reports/2099-01-01").status_code == 404
        run = client.get(f"/shopflow/runs/{quote(RUN_DEC3, safe='')}", params={"dag_id": "shopflow_daily"})
        assert run.status_code == 307 and run.headers["location"] == "/shopflow/reports/2015-12-03"
    with api_server.client(cookies={"_token": api_server.token}) as client:
        assert client.get("/shopflow/").status_code == 200
        assert client.get("/shopflow/reports/2015-12-03").content == html
    with api_server.client() as client:
        for route in ("/shopflow/", "/shopflow/?dataset=orders", "/shopflow/reports/2015-12-03",
                      "/shopflow/reports/2015-12-03.json", f"/shopflow/runs/{RUN_DEC3}"):
            response = client.get(route)
            assert response.status_code == 401, route
            assert "FAKE-REPORT" not in response.text and "catalog" not in response.text, route
        for credentials in ({"headers": {"Authorization": "Bearer forged"}}, {"cookies": {"_token": "forged"}}):
            with api_server.client(**credentials) as forged:
                assert forged.get("/shopflow/reports/2015-12-03").status_code in (401, 403)


def test_pages_in_chromium(api_server, chromium, tmp_path):  # noqa: F811 - the fixture
    base, plugin_url = api_server.base, f"{api_server.base}/shopflow/"
    frame_h1 = ("(() => { const f = document.querySelector('iframe');"
                " const h = f && f.contentDocument && f.contentDocument.querySelector('h1');"
                " return h && f.contentDocument.readyState === 'complete' && h.textContent; })()")
    # Log in with the Airflow UI's own form: it sets the `_token` cookie, which the UI's iframe sends to the plugin
    ui = chromium.open(f"{base}/plugin/shopflow")
    ui.wait_for("!!document.querySelector('input[type=password]')")
    ui.type_into("input:not([type=password])", "admin")
    ui.type_into("input[type=password]", api_server.password)
    ui.wait_for("!document.querySelector('button[type=submit]').disabled")
    ui.evaluate("document.querySelector('button[type=submit]').click()")
    # the "shopflow" navigation entry shows the listing in its iframe (relative href, cookie)
    assert ui.wait_for(frame_h1) == "shopflow reports"
    assert "_token=" in ui.evaluate("document.cookie")
    assert ui.evaluate("[...document.querySelectorAll('a')].some(a => a.textContent.trim() === 'shopflow')")
    ui.screenshot(tmp_path / "ui-nav.png")
    assert [e for e in ui.console_errors() if plugin_url in e] == []  # the UI logs 401s before the login
    # the listing on its own, with the login cookie: no console errors, the headline elements
    page = chromium.open(plugin_url, wait_for="!!document.querySelector('h1')")
    page.screenshot(tmp_path / "listing.png")
    assert page.console_errors() == []
    assert page.evaluate("document.querySelector('h1').textContent") == "shopflow reports"
    assert page.evaluate("[...document.querySelectorAll('#reports tbody tr')].map(r => r.dataset.ds)") == [
        "2015-12-03", "2010-12-01"]
    assert page.evaluate("document.querySelectorAll('#reports a.dataset').length") == 5
    assert page.evaluate("document.querySelector('select#dataset') !== null")
    # a report through the app (its Content-Security-Policy must not break a self-contained page)
    report = chromium.open(f"{plugin_url}reports/2015-12-03", wait_for="!!document.querySelector('h1')")
    assert report.evaluate("document.querySelector('h1').textContent") == "shop report 2015-12-03"
    assert report.console_errors() == []
    # a DAG run's "shopflow report" tab: the UI puts the run id into the href, the app redirects to the day's report
    run_tab = chromium.open(f"{base}/dags/shopflow_daily/runs/{quote(RUN_DEC3, safe=':')}/plugin/shopflow-report")
    assert run_tab.wait_for(frame_h1) == "shop report 2015-12-03"
    assert run_tab.evaluate("document.querySelector('iframe').contentWindow.location.pathname") == \
        "/shopflow/reports/2015-12-03"
    run_tab.screenshot(tmp_path / "ui-run-report.png")
    # the UI itself logs 404s here (this sandbox has no serialized DAG or run); none may come from the plugin
    assert [e for e in run_tab.console_errors() if plugin_url in e] == []
    for name in ("listing.png", "ui-nav.png", "ui-run-report.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
