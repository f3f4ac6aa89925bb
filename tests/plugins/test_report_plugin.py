"""The shopflow reports app of the Airflow UI plugin (plugins/shopflow_ui), through FastAPI's test client.

The store is a fresh SQLite store with fake reports (small files written here); authentication is Airflow's real
`get_user` dependency with real JWTs from the simple auth manager's token generator (the one behind
`POST /auth/token`), signed with this test's secret. The only stand-in: Airflow's revoked-token lookup, which needs
Airflow's metadata database (the api-server test runs it for real).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from datetime import date

import pytest
from shopflow.store.repository import MetadataStore
from ui_client import EVIL, RUN_DEC3, record_fake_report

ROUTES = ["/", "/?dataset=orders", "/reports/2015-12-03", "/reports/2015-12-03.json", "/reports/2099-01-01",
          "/reports/2099-01-01.json", f"/runs/{RUN_DEC3}", "/runs/manual__2015-12-03T10:00:00+00:00"]


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_anonymous_is_refused_on_every_route(client, reports, mint, accept):
    for route in ROUTES:
        response = client.get(route, headers={"Accept": accept})
        assert response.status_code == 401, route
        assert "FAKE-REPORT" not in response.text and "catalog" not in response.text, route
        assert "location" not in response.headers, route
    page = client.get("/", headers={"Accept": "text/html"})
    assert "<h1>Not logged in</h1>" in page.text and "Log in to Airflow" in page.text


def test_bad_tokens_are_refused(client, reports, mint, monkeypatch):
    old_key = mint("admin")  # signed with this test's secret, which changes below
    expired = mint("admin", expiration_time_in_seconds=-3600)
    cases = {
        "garbage bearer": ({"Authorization": "Bearer not-a-jwt"}, {}),
        "garbage cookie": ({}, {"_token": "not-a-jwt"}),
        "expired": ({"Authorization": f"Bearer {expired}"}, {}),
    }
    for name, (headers, cookies) in cases.items():
        client.cookies.clear()
        client.cookies.update(cookies)
        response = client.get("/", headers=headers)
        assert response.status_code in (401, 403), name
        assert "FAKE-REPORT" not in response.text and "catalog" not in response.text, name
    client.cookies.clear()
    assert client.get("/", headers={"Authorization": f"Bearer {expired}"}).json() == {"detail": "Token Expired"}
    # a token signed with another key
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    assert client.get("/", headers={"Authorization": f"Bearer {old_key}"}).status_code == 200
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_hex(32))
    SimpleAuthManager._get_token_validator.__func__.cache_clear()
    assert client.get("/", headers={"Authorization": f"Bearer {old_key}"}).status_code == 403


def test_a_user_without_a_role_is_forbidden(client, reports, mint):
    response = client.get("/reports/2015-12-03", headers={"Authorization": f"Bearer {mint(None)}"})
    assert response.status_code == 403
    assert "FAKE-REPORT" not in response.text


def test_listing_newest_first_with_badges_and_links(viewer, reports):
    response = viewer.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<h1>shopflow reports</h1>" in page and 'id="reports"' in page
    assert page.index('data-ds="2015-12-03"') < page.index('data-ds="2010-12-01"')
    assert 'href="reports/2015-12-03"' in page and 'href="reports/2015-12-03.json"' in page
    assert 'href="reports/2010-12-01"' in page and 'href="reports/2010-12-01.json"' in page
    assert "catalog: validated" in page and "orders: missing" in page and RUN_DEC3 in page
    assert 'class="badge status good">ok<' not in page  # neither day is all-validated
    assert 'class="badge status warn">warning<' in page
    # data is escaped, never markup: the partition status of "behavior" is a script tag
    assert EVIL not in page and "&lt;script&gt;" in page
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    for option in ("behavior", "catalog", "orders", "search"):
        assert f'<option value="{option}"' in page


def test_dataset_filter(viewer, reports):
    page = viewer.get("/", params={"dataset": "catalog"}).text
    assert 'data-ds="2015-12-03"' in page and 'data-ds="2010-12-01"' not in page
    assert '<option value="catalog" selected>' in page
    page = viewer.get("/", params={"dataset": "orders"}).text  # orders is "missing" on 2015-12-03
    assert 'data-ds="2015-12-03"' not in page and 'data-ds="2010-12-01"' in page
    page = viewer.get("/", params={"dataset": ""}).text  # "all datasets" in the form
    assert 'data-ds="2010-12-01"' in page
    page = viewer.get("/", params={"dataset": "nothing"}).text
    assert 'id="reports"' not in page and 'id="no-reports"' in page


def test_empty_store_lists_nothing(viewer, settings):
    page = viewer.get("/").text
    assert 'id="no-reports"' in page and "No report has been written yet" in page


def test_cookie_authenticates_like_the_ui(client, reports, mint):
    client.cookies.set("_token", mint("viewer"))
    assert client.get("/").status_code == 200
    assert client.get("/reports/2015-12-03").content == reports["2015-12-03"][0]


def test_one_report_and_its_json(viewer, reports):
    html, body = reports["2015-12-03"]
    response = viewer.get("/reports/2015-12-03")
    assert response.status_code == 200 and response.content == html
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src" not in response.headers["content-security-policy"]  # defaults to none
    response = viewer.get("/reports/2015-12-03.json")
    assert response.status_code == 200 and response.content == body
    assert response.headers["content-type"] == "application/json"
    assert response.json()["datasets"]["catalog"] == "validated"


def test_unknown_day_is_a_readable_404(viewer, reports):
    for route in ("/reports/2099-01-01", "/reports/2099-01-01.json", "/reports/not-a-day", "/reports/2015-13-40"):
        assert viewer.get(route).status_code == 404, route
    response = viewer.get("/reports/2099-01-01", headers={"Accept": "text/html"})
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in response.text and "There is no report for 2099-01-01." in response.text
    assert 'href="/"' in response.text  # back to the listing (the app's root; /shopflow/ when mounted)
    assert viewer.get("/reports/2099-01-01").json() == {"detail": "There is no report for 2099-01-01."}


def test_files_outside_the_reports_dir_are_not_served(viewer, settings, tmp_path):
    outside = tmp_path / "elsewhere.html"
    record_fake_report(settings, "2015-12-05", {"catalog": "validated"}, None, html_path=outside)
    response = viewer.get("/reports/2015-12-05")
    assert response.status_code == 404 and "FAKE-REPORT" not in response.text
    assert "outside the reports directory" in response.json()["detail"]
    # a relative path that climbs out of the reports dir, and a recorded file that is gone
    store = MetadataStore(settings.store_url)
    record = store.report(date(2015, 12, 5))
    store.record_report(record.ds, status=record.status, datasets=record.datasets, summary=record.summary,
                        html_path="../../elsewhere.html", json_path="ds=2015-12-05/gone.json",
                        html_sha256=record.html_sha256, json_sha256=record.json_sha256, run_id=None)
    assert viewer.get("/reports/2015-12-05").status_code == 404
    assert "file is missing" in viewer.get("/reports/2015-12-05.json").json()["detail"]
    assert viewer.get("/reports/2015-12-05.json").status_code == 404


def test_run_redirects_to_its_report(viewer, reports):
    # the run recorded with the report; the UI sends run and DAG id URL-encoded
    response = viewer.get("/runs/scheduled__2015-12-03T00%3A00%3A00%2B00%3A00?dag_id=shopflow_daily")
    assert response.status_code == 307 and response.headers["location"] == "/reports/2015-12-03"
    followed = viewer.get(response.headers["location"])
    assert followed.status_code == 200 and followed.content == reports["2015-12-03"][0]


def test_run_without_a_report_is_a_clear_404(viewer, reports):
    response = viewer.get("/runs/scheduled__2017-11-25T00:00:00+00:00", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert "The report of run scheduled__2017-11-25T00:00:00+00:00 is not written yet" in response.text
    # a run id names its run-after time, not the day it processes: never guessed, so another run of a day with a
    # report is still a 404
    assert viewer.get("/runs/manual__2010-12-01T09:30:00.123456+00:00").status_code == 404
    assert "not written yet" in viewer.get("/runs/my_custom_run").json()["detail"]
    response = viewer.get(f"/runs/{RUN_DEC3}", params={"dag_id": "another_dag"})
    assert response.status_code == 404 and "shopflow_daily only" in response.json()["detail"]


def test_store_not_migrated_is_503(viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPFLOW_STORE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    response = viewer.get("/")
    assert response.status_code == 503 and "db upgrade" in response.json()["detail"]


def test_plugin_definition():
    from shopflow_ui.app import app
    from shopflow_ui.reports_plugin import ShopflowReportsPlugin

    plugin = ShopflowReportsPlugin()
    [mounted] = plugin.fastapi_apps
    assert mounted["app"] is app and mounted["url_prefix"] == "/shopflow"
    views = {view["destination"]: view for view in plugin.external_views}
    assert views["nav"]["name"] == "shopflow" and views["nav"]["href"] == "shopflow/"
    assert views["dag_run"]["href"] == "shopflow/runs/{RUN_ID}?dag_id={DAG_ID}"
    for view in views.values():  # relative to the UI's <base href>, like url_route
        assert not view["href"].startswith("/") and not view["url_route"].startswith("/")


def test_plugin_loading_stays_light(tmp_path):
    """Every Airflow component loads the plugins folder: that must not import the app, FastAPI or pandas."""
    from local_airflow import airflow_env

    env = airflow_env(tmp_path / "airflow", tmp_path / "shopflow")
    code = ("import json, sys; from airflow import plugins_manager as pm; plugins, errors = pm._get_plugins(); "
            "print(json.dumps([[p.name for p in plugins], {str(k): str(v) for k, v in errors.items()}, "
            "sorted(m for m in ('shopflow_ui.app', 'fastapi', 'pandas', 'torch') if m in sys.modules)]))")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    names, errors, heavy = json.loads(result.stdout.strip().splitlines()[-1])
    # the OpenLineage provider registers a plugin of its own, through its package's entry point
    assert set(names) <= {"shopflow", "OpenLineageProviderPlugin"} and "shopflow" in names
    assert errors == {} and heavy == []
