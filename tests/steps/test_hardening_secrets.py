"""Hardening of secrets and of the store connection: redaction of stored and printed errors, pseudonymisation key
hygiene (weak keys refused, a fingerprint that never reveals the key), PostgreSQL timeouts, and the UI plugin's
answer to bad stored data."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import signal
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path

import pytest
import yaml
from shopflow import cli
from shopflow.common.redaction import ENV_DUMP, redact
from shopflow.config.settings import ConfigurationError, Settings
from shopflow.ingest.pseudonym import FINGERPRINT_MESSAGE, key_fingerprint
from shopflow.sources import load_sources
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore, engine_for
from ui_client import record_fake_report

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "hardening-test-pseudonym-key-0123456789abcdef"
DB_PASSWORD = "Db-Passw0rd-4711"
CONN_PASSWORD = "Conn-Passw0rd-0815"
JWT_SECRET = "jwt-secret-value-abcdef123456"
API_SECRET = "api-secret-key-value-987654321"


# ---- 1. one redaction step for stored and printed errors -------------------------------------------------------
@pytest.fixture
def secret_env(tmp_path, monkeypatch) -> Settings:
    for name in ("SHOPFLOW_STORE_URL", "SHOPFLOW_PSEUDONYM_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHOPFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHOPFLOW_PSEUDONYM_KEY", STRONG_KEY)
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("AIRFLOW__API__SECRET_KEY", API_SECRET)
    monkeypatch.setenv("AIRFLOW_CONN_SHOPFLOW_STORE", f"postgresql://shopflow:{CONN_PASSWORD}@postgres:5432/shopflow")
    conf = Settings.from_env()
    conf.home.mkdir(parents=True)
    migrate.upgrade(conf.store_url)
    store = MetadataStore(conf.store_url)
    for spec in load_sources().values():
        store.register_dataset(spec)
    return conf


def leaky_message() -> str:
    environ = f"PATH=/usr/bin\0HOME=/root\0AIRFLOW__API_AUTH__JWT_SECRET={JWT_SECRET}\0LANG=C.UTF-8\0"
    return (f"could not open postgresql+psycopg2://shopflow:{DB_PASSWORD}@db:5432/shopflow with key {STRONG_KEY}; "
            f"conn password {CONN_PASSWORD}, api {API_SECRET}; environment: {environ} and as bytes "
            f"{environ.encode()!r}; tail " + "x" * 5000)


SECRETS = (STRONG_KEY, DB_PASSWORD, CONN_PASSWORD, JWT_SECRET, API_SECRET, "HOME=/root", "LANG=C.UTF-8")


def assert_clean(text: str, limit: int) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert "\0" not in text and "\\x00" not in text
    assert all(ch.isprintable() or ch in "\n\t" for ch in text)
    assert len(text) <= limit


def test_redact_masks_secrets_urls_and_environment_dumps(secret_env):
    text = redact(leaky_message())
    assert_clean(text, 1000)
    assert "postgresql+psycopg2://shopflow:***@db:5432/shopflow" in text and ENV_DUMP in text
    assert redact("ds=2015-12-01: 3 rows quarantined") == "ds=2015-12-01: 3 rows quarantined"
    assert redact("MY_API_TOKEN=abc12345xyz failed") == "MY_API_TOKEN=*** failed"


def test_failures_are_stored_and_printed_without_secrets(secret_env, monkeypatch, capsys):
    store = MetadataStore(secret_env.store_url)
    store.record_failure("orders", date(2010, 12, 1), step="ingest", error=leaky_message(), run_id="r1")
    [partition] = store.partitions("orders", date(2010, 12, 1))
    assert partition.error.startswith("ingest: could not open")
    assert_clean(partition.error, 4000)

    from shopflow.steps import partition as pipeline

    def failing_ingest(*_args, **_kwargs):
        raise RuntimeError(leaky_message())

    monkeypatch.setattr(pipeline, "ingest", failing_ingest)
    assert cli.main(["run", "2010-12-01", "--source", "orders"]) == 1
    printed = capsys.readouterr().err
    assert "could not open" in printed
    assert_clean(printed, 1200)


# ---- 2. pseudonymisation key hygiene ---------------------------------------------------------------------------
WEAK = ["change-me", "CHANGEME", "Password", "admin", "SECRET", "test", "Default", "example", "k",
        "model-fixture-pseudonym-key", "a" * 40, "x" * 31]


@pytest.mark.parametrize("weak", WEAK)
def test_weak_and_short_keys_are_refused_without_echoing_them(tmp_path, weak):
    conf = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path), "SHOPFLOW_PSEUDONYM_KEY": weak})
    with pytest.raises(ConfigurationError, match="SHOPFLOW_PSEUDONYM_KEY (is a placeholder|is too short|has fewer than)") as err:
        conf.resolve_pseudonym_key()
    assert len(weak) < 5 or weak not in str(err.value)
    key_file = tmp_path / "weak.key"
    key_file.write_text(weak + "\n")
    from_file = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path), "SHOPFLOW_PSEUDONYM_KEY_FILE": str(key_file)})
    with pytest.raises(ConfigurationError, match="key file"):
        from_file.resolve_pseudonym_key()


def test_strong_keys_and_init_key_are_accepted(tmp_path):
    assert Settings.from_env({"SHOPFLOW_PSEUDONYM_KEY": STRONG_KEY}).resolve_pseudonym_key() == STRONG_KEY.encode()
    conf = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path)})
    assert cli.cmd_init_key(conf, None) == 0
    assert len(conf.resolve_pseudonym_key()) == 64


def test_key_fingerprint_identifies_the_key_without_revealing_it():
    fingerprint = key_fingerprint(STRONG_KEY.encode())
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    assert fingerprint == key_fingerprint(STRONG_KEY.encode())
    assert fingerprint != key_fingerprint(STRONG_KEY.encode() + b"2")
    assert fingerprint == hmac.new(STRONG_KEY.encode(), FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]
    assert STRONG_KEY not in fingerprint and fingerprint not in STRONG_KEY.encode().hex()


def compose_key_guard() -> str:
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    script = compose["services"]["airflow-init"]["command"][-1]
    return re.search(r"python - <<'PY'\n(.*?)\nPY\n", script, re.S).group(1)


@pytest.mark.parametrize("key,refused", [("change-me", True), ("Change-Me", True), ("CHANGEME", True),
                                         ("Secret", True), ("short-key", True), (STRONG_KEY, False)])
def test_compose_refuses_weak_keys_case_insensitively(key, refused):
    env = {"PATH": os.environ.get("PATH", ""), "SHOPFLOW_PSEUDONYM_KEY": key}
    result = subprocess.run([sys.executable, "-c", compose_key_guard()], env=env, capture_output=True, text=True)
    assert (result.returncode != 0) is refused, result.stderr
    if refused:
        assert "refusing to start" in result.stderr and (key not in result.stderr or key == "change-me")


# ---- 3. PostgreSQL timeouts ------------------------------------------------------------------------------------
def test_postgres_connect_args_are_applied(postgres_server, monkeypatch):
    url = postgres_server.create_database("shopflow_hardening_timeouts")
    for name in ("SHOPFLOW_DB_CONNECT_TIMEOUT_S", "SHOPFLOW_DB_STATEMENT_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    with MetadataStore(url).engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "30s"
        dsn = connection.connection.dbapi_connection.dsn
    for part in ("connect_timeout=10", "keepalives=1", "keepalives_idle=30", "keepalives_interval=10",
                 "keepalives_count=3"):
        assert part in dsn
    monkeypatch.setenv("SHOPFLOW_DB_STATEMENT_TIMEOUT_S", "7")
    with MetadataStore(url).engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "7s"
    monkeypatch.setenv("SHOPFLOW_DB_CONNECT_TIMEOUT_S", "soon")
    with pytest.raises(ConfigurationError, match="SHOPFLOW_DB_CONNECT_TIMEOUT_S"):
        MetadataStore(url)
    assert Settings.from_env({}).db_connect_timeout_s == 10 and Settings.from_env({}).db_statement_timeout_s == 30


def test_a_frozen_server_fails_a_store_call_quickly(postgres_server, monkeypatch):
    url = postgres_server.create_database("shopflow_hardening_frozen")
    migrate.upgrade(url)
    monkeypatch.setenv("SHOPFLOW_DB_CONNECT_TIMEOUT_S", "3")
    monkeypatch.delenv("SHOPFLOW_DB_STATEMENT_TIMEOUT_S", raising=False)
    engine_for.cache_clear()  # a fresh pool: no connection to a backend that is still running
    store = MetadataStore(url)
    postmaster = int((Path(postgres_server.socket_dir).parent / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGSTOP)
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            store.partitions()
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - the error is what is under test
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    try:
        caller.start()
        caller.join(timeout=300)  # a guard against a hang only: the store's own timeouts end the call
    finally:
        os.kill(postmaster, signal.SIGCONT)
    caller.join(timeout=60)
    assert outcome, "a store call against a frozen server hung"
    error = outcome[0]
    assert error is not None and re.search("(?i)timeout", str(error)), error
    assert "postgres" in str(error).lower() or "server" in str(error).lower()
    engine_for.cache_clear()
    assert MetadataStore(url).partitions() == []  # thawed: it works again


# ---- 4. the UI plugin never answers 500 for bad stored data ----------------------------------------------------
@pytest.mark.parametrize("accept", ["text/html", "application/json"])
@pytest.mark.parametrize("suffix", ["", ".json"])
def test_a_nul_byte_in_a_stored_report_path_is_a_404_with_the_csp(viewer, settings, accept, suffix):  # noqa: F811
    record_fake_report(settings, "2015-12-05", {"catalog": "validated"}, None)
    store = MetadataStore(settings.store_url)
    record = store.report(date(2015, 12, 5))
    store.record_report(record.ds, status=record.status, datasets=record.datasets, summary=record.summary,
                        html_path="ds=2015-12-05/rep\0ort.html", json_path="ds=2015-12-05/rep\0ort.json",
                        html_sha256=record.html_sha256, json_sha256=record.json_sha256, run_id=None)
    response = viewer.get(f"/reports/2015-12-05{suffix}", headers={"Accept": accept})
    assert response.status_code in (404, 422)
    assert "default-src" in response.headers["Content-Security-Policy"]
    assert "FAKE-REPORT" not in response.text and "\0" not in response.text


def test_ingest_records_the_key_fingerprint_and_refuses_a_changed_key(tmp_path, capsys):
    from shopflow.steps import partition as pipeline

    env = {"SHOPFLOW_HOME": str(tmp_path / "home"), "SHOPFLOW_PSEUDONYM_KEY": STRONG_KEY}
    conf = Settings.from_env(env)
    conf.home.mkdir(parents=True)
    migrate.upgrade(conf.store_url)
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    for day in ("2010-12-01", "2010-12-02"):
        path = conf.landing_dir / "orders" / f"ds={day}" / "orders.csv"
        path.parent.mkdir(parents=True)
        path.write_text(header + f"536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,{day} 08:26:00,2.55,17850.0,"
                                 "United Kingdom\n")
    pipeline.ingest(conf, "orders", date(2010, 12, 1))
    store = MetadataStore(conf.store_url)
    assert store.key_fingerprints("orders") == {key_fingerprint(STRONG_KEY.encode())}
    pipeline.ingest(conf, "orders", date(2010, 12, 1))  # a re-run under the same key is fine

    new_key = STRONG_KEY[::-1]
    rekeyed = Settings.from_env({**env, "SHOPFLOW_PSEUDONYM_KEY": new_key})
    with pytest.raises(ConfigurationError, match="pseudonymisation key changed.*rekey --new-epoch") as err:
        pipeline.ingest(rekeyed, "orders", date(2010, 12, 2))
    assert new_key not in str(err.value) and STRONG_KEY not in str(err.value)
    assert all(p.raw_path is None and p.key_fingerprint is None  # nothing ingested under the new key
               for p in store.partitions("orders", date(2010, 12, 2)))
    # SHOPFLOW_ALLOW_REKEY lets one run through; `rekey --new-epoch` starts the new epoch for good.
    pipeline.ingest(Settings.from_env({**env, "SHOPFLOW_PSEUDONYM_KEY": new_key, "SHOPFLOW_ALLOW_REKEY": "true"}),
                    "orders", date(2010, 12, 2))
    assert cli.cmd_rekey(rekeyed, cli.build_parser().parse_args(["rekey", "--new-epoch"])) == 0
    assert "forgot" in capsys.readouterr().out
    assert store.key_fingerprints("orders") == set()
    pipeline.ingest(rekeyed, "orders", date(2010, 12, 1))
    pipeline.ingest(rekeyed, "orders", date(2010, 12, 2))
    assert store.key_fingerprints("orders") == {key_fingerprint(new_key.encode())}


def test_paths_named_like_secrets_are_not_masked(tmp_path):
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text(STRONG_KEY + "\n")
    env = {"SHOPFLOW_PSEUDONYM_KEY_FILE": str(key_file)}
    assert redact(f"create {key_file} first; the key is {STRONG_KEY}", env=env) == f"create {key_file} first; the key is ***"


# ---- 5. a landed environment dump, end to end: nothing secret in the log, the store or the report --------------
@pytest.mark.parametrize("landed", ["symlink_to_proc_environ", "copy_of_the_environment", "env_output_as_csv"])
def test_a_landed_environment_dump_leaks_no_secret_to_log_store_or_report(tmp_path, landed):
    home = tmp_path / "home"
    db_url = f"postgresql://shopflow:{DB_PASSWORD}@db.invalid:5432/shopflow"
    env = {**os.environ, "SHOPFLOW_HOME": str(home), "SHOPFLOW_PSEUDONYM_KEY": STRONG_KEY,
           "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET, "AIRFLOW__API__SECRET_KEY": API_SECRET,
           "AIRFLOW_CONN_SHOPFLOW_STORE": f"postgresql://shopflow:{CONN_PASSWORD}@postgres:5432/shopflow",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url}
    env.pop("SHOPFLOW_STORE_URL", None)
    run = lambda *args: subprocess.run([sys.executable, "-m", "shopflow", *args], env=env, capture_output=True,  # noqa: E731
                                       text=True, timeout=300)
    assert run("db", "upgrade").returncode == 0
    folder = home / "landing" / "orders" / "ds=2010-12-01"
    folder.mkdir(parents=True)
    dump = "\0".join(f"{name}={value}" for name, value in env.items()).encode()
    if landed == "symlink_to_proc_environ":
        (folder / "orders.csv").symlink_to("/proc/self/environ")
    elif landed == "copy_of_the_environment":
        (folder / "orders.csv").write_bytes(dump)
    else:  # `env > orders.csv`: one NAME=value per line
        (folder / "orders.csv").write_bytes(dump.replace(b"\0", b"\n"))

    failed = run("run", "2010-12-01", "--source", "orders")
    assert failed.returncode == 1 and "orders.csv" in failed.stderr
    report = run("report", "2010-12-01")
    status = run("status", "--dataset", "orders")
    [partition] = MetadataStore(f"sqlite:///{home / 'shopflow.db'}").partitions("orders", date(2010, 12, 1))
    assert partition.status == "failed" and "orders.csv" in partition.error

    stored = "\n".join(str(value) for value in vars(partition).values())
    written = "\n".join(p.read_text(errors="replace") for p in (home / "reports").rglob("*") if p.is_file())
    assert written, report.stderr[-2000:]
    for text in (failed.stdout + failed.stderr, status.stdout + status.stderr, report.stdout + report.stderr,
                 stored, written):
        for secret in (*SECRETS, DB_PASSWORD):
            assert secret not in text and secret[:12] not in text
