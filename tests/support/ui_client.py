"""The reports app's test client and what its tests share: real Airflow JWTs minted for a role (`mint`), a
`viewer` client, settings on a fresh home and fake reports recorded in the store (`record_fake_report`, `DAYS`).
Imported by the plugin, review, object-storage and hardening tests for their fixtures."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from shopflow.config.settings import Settings
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

RUN_DEC3 = "scheduled__2015-12-03T00:00:00+00:00"
EVIL = "<script>alert('x')</script>"
DAYS = {  # ds -> (datasets, run id)
    "2015-12-03": ({"catalog": "validated", "search": "validated", "orders": "missing"}, RUN_DEC3),
    "2010-12-01": ({"orders": "validated", "behavior": EVIL}, "backfill__2010-12-01T00:00:00+00:00"),
}


def record_fake_report(settings: Settings, ds: str, datasets: dict, run_id: str | None, *,
                       html_path: Path | None = None) -> tuple[bytes, bytes]:
    """Write a small report.html/report.json of the day under the reports dir and record them; return both bodies."""
    folder = settings.reports_dir / f"ds={ds}"
    folder.mkdir(parents=True, exist_ok=True)
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>shopflow report {ds}</title></head><body>"
            f"<h1 id='headline'>shop report {ds}</h1><p class='marker'>FAKE-REPORT-{ds}</p></body></html>").encode()
    body = json.dumps({"ds": ds, "datasets": datasets, "marker": f"FAKE-REPORT-{ds}"}).encode()
    html_file, json_file = html_path or folder / "report.html", folder / "report.json"
    html_file.write_bytes(html)
    json_file.write_bytes(body)
    status = "ok" if all(s == "validated" for s in datasets.values()) else "warning"
    MetadataStore(settings.store_url).record_report(
        date.fromisoformat(ds), status=status, datasets=datasets, summary={"orders": 1},
        html_path=str(html_file), json_path=str(json_file), html_sha256=hashlib.sha256(html).hexdigest(),
        json_sha256=hashlib.sha256(body).hexdigest(), run_id=run_id,
        generated_at=datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc))
    return html, body


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """A migrated SQLite store in a fresh SHOPFLOW_HOME (what the app reads through Settings.from_env())."""
    for name in ("SHOPFLOW_STORE_URL", "SHOPFLOW_REPORTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHOPFLOW_HOME", str(tmp_path / "shopflow"))
    settings = Settings.from_env()
    settings.home.mkdir(parents=True)
    migrate.upgrade(settings.store_url)
    return settings


@pytest.fixture
def reports(settings) -> dict[str, tuple[bytes, bytes]]:
    return {ds: record_fake_report(settings, ds, datasets, run_id) for ds, (datasets, run_id) in DAYS.items()}


@pytest.fixture
def mint(monkeypatch):
    """A function role -> JWT, issued by the simple auth manager exactly as `POST /auth/token` issues it."""
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.revoked_token import RevokedToken

    def clear_key_caches():  # signer and validator are cached per class: drop keys of other tests
        SimpleAuthManager._get_token_signer.__func__.cache_clear()
        SimpleAuthManager._get_token_validator.__func__.cache_clear()

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_hex(32))
    monkeypatch.setattr(api_app._AuthManagerState, "instance", SimpleAuthManager())
    monkeypatch.setattr(RevokedToken, "is_revoked", classmethod(lambda cls, jti, session=None: False))
    clear_key_caches()

    def token(role: str | None = "viewer", **kwargs) -> str:
        user = SimpleAuthManagerUser(username=role or "nobody", role=role)
        return api_app.get_auth_manager().generate_jwt(user, **kwargs)

    yield token
    clear_key_caches()


@pytest.fixture
def client():
    from fastapi.testclient import TestClient
    from shopflow_ui.app import app

    assert not app.dependency_overrides  # the real authentication, always
    with TestClient(app, follow_redirects=False) as client:
        yield client


@pytest.fixture
def viewer(client, mint):
    """The test client with a viewer's bearer token."""
    client.headers["Authorization"] = f"Bearer {mint('viewer')}"
    return client
