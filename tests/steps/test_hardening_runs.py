"""Hardening of partition runs: one failure path for every entry point, one writer per partition, dead writers'
temp files swept, control characters in ids quarantined, an unbalanced quote reported where it opened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path

import pytest
from orders_days import KEY, ORDERS_FILE, land_orders_day, real_orders_lines  # noqa: F401
from shopflow.common.landing_file import LandingFileError
from shopflow.common.parquet import read_parquet
from shopflow.config.settings import Settings
from shopflow.lake import zones as lake
from shopflow.steps import partition as pipeline
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

DAY = date(2010, 12, 1)


def _env(tmp_path: Path, source_data: Path, store_url: str | None = None) -> dict[str, str]:
    env = {"SHOPFLOW_HOME": str(tmp_path / "home"), "SHOPFLOW_SOURCE_DATA": str(source_data),
           "SHOPFLOW_PSEUDONYM_KEY": KEY}
    if store_url:
        env["SHOPFLOW_STORE_URL"] = store_url
    return env


def _settings(env: dict[str, str]) -> Settings:
    settings = Settings.from_env(env)
    settings.home.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.store_url)
    return settings


@pytest.fixture()
def env(tmp_path, source_data) -> dict[str, str]:
    return _env(tmp_path, source_data)


@pytest.fixture()
def settings(env) -> Settings:
    return _settings(env)


def shopflow_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shopflow", *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=300)


# ---- 1. one failure path ---------------------------------------------------------------------------------------
def test_failed_cli_run_is_recorded_and_status_shows_it_over_the_last_good(env, settings, source_data):
    lines = real_orders_lines(source_data)
    landing = land_orders_day(settings, DAY, lines)
    good = shopflow_cli(env, "run", DAY.isoformat(), "--source", "orders")
    assert good.returncode == 0, good.stderr[-3000:]
    store = MetadataStore(settings.store_url)
    [before] = store.partitions("orders", DAY)
    assert before.status == "validated" and before.rows_in == 60 and before.airflow_run_id.startswith("cli__")

    # The same real file, corrupted: line 31 (a real invoice line) loses two of its fields.
    bad = list(lines)
    bad[30] = bad[30].split(",", 2)[2]
    landing.write_text("".join(bad))
    failed = shopflow_cli(env, "run", DAY.isoformat(), "--source", "orders")
    assert failed.returncode == 1 and "line 31" in failed.stderr

    [after] = store.partitions("orders", DAY)
    assert after.status == "failed"
    assert after.error.startswith("ingest: ") and "line 31" in after.error
    assert after.airflow_run_id.startswith("cli__")
    last_good = after.timings["last_good"]
    assert last_good["status"] == "validated" and last_good["run_id"] == before.airflow_run_id
    assert last_good["rows_in"] == 60 and Path(last_good["clean_path"]).is_file()  # the last good outputs stay

    status = shopflow_cli(env, "status", "--dataset", "orders")
    assert status.returncode == 0, status.stderr[-3000:]
    row = next(line for line in status.stdout.splitlines() if line.startswith("orders "))
    assert row.split()[2] == "failed"  # the failure is the current state
    assert "current: failed at ingest: " in status.stdout and "line 31" in status.stdout
    assert f"last good (not current): validated by run {before.airflow_run_id}" in status.stdout
    [as_json] = json.loads(shopflow_cli(env, "status", "--dataset", "orders", "--json").stdout)
    assert as_json["status"] == "failed" and as_json["last_good"]["run_id"] == before.airflow_run_id

    # The report shows the failure as current, not the last good run's results as today's "pass".
    from shopflow.report.build import build_report

    report = build_report(settings, DAY)
    assert report["status"] == "failed" and report["sections"]["quality"] == "failed"
    quality = next(s for s in json.loads(Path(report["json"]).read_text())["sections"] if s["id"] == "quality")
    assert quality["summary"]["orders"] == {"failed_step": "ingest"}
    block = json.dumps(quality)
    assert "The current run (cli__" in block and "failed: ingest: " in block and "line 31" in block
    assert f"Last good (not current): validated by run {before.airflow_run_id}" in block
    ledger_row = next(r for r in quality["blocks"][0]["rows"] if r["dataset"] == "orders")
    assert ledger_row == {"dataset": "orders", "state": "failed"}  # not the last good run's counts as today's

    # A never-run day: the failure is recorded too (before, nothing was).
    other = date(2010, 12, 2)
    land_orders_day(settings, other, bad)
    assert shopflow_cli(env, "run", other.isoformat(), "--source", "orders").returncode == 1
    [never_run] = store.partitions("orders", other)
    assert never_run.status == "failed" and never_run.error.startswith("ingest: ") and "line 31" in never_run.error
    assert never_run.timings is None or "last_good" not in never_run.timings


def test_library_steps_record_their_own_failure(settings):
    # clean of a day never ingested: no raw partition. The library call records it like the operators do.
    day = date(2010, 12, 3)
    with pytest.raises(FileNotFoundError):
        pipeline.clean(settings, "orders", day, "manual__lib")
    [partition] = MetadataStore(settings.store_url).partitions("orders", day)
    assert partition.status == "failed" and partition.error.startswith("clean: ")
    assert partition.airflow_run_id == "manual__lib"


# ---- 2. one writer per partition -------------------------------------------------------------------------------
def test_concurrent_validates_of_one_partition_on_postgres(tmp_path, source_data, postgres_server, monkeypatch):
    url = postgres_server.create_database("shopflow_hardening_lock")
    settings = _settings(_env(tmp_path, source_data, store_url=url))
    land_orders_day(settings, DAY, real_orders_lines(source_data))
    pipeline.ingest(settings, "orders", DAY, "run_a")
    pipeline.clean(settings, "orders", DAY, "run_a")
    first = pipeline.validate(settings, "orders", DAY, "run_a")

    # The suite's results once (GX is slow and the same each time); what races is the store's writes.
    from shopflow.validation import runner

    results = runner.validate_frame("orders", read_parquet(lake.lake_file(settings, "clean", "orders", DAY)))
    monkeypatch.setattr(runner, "validate_frame", lambda source, frame, suite=None: [dict(r) for r in results])
    store = MetadataStore(settings.store_url)
    errors: list[BaseException] = []
    for pair in range(10):
        barrier = threading.Barrier(2)

        def run(name: str, barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                pipeline.validate(settings, "orders", DAY, name)
            except BaseException as exc:  # any exception fails the test below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(f"run_{pair}_{side}",)) for side in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        validations = store.validations("orders", DAY)
        assert len(validations) == first["expectations"], f"pair {pair}: {len(validations)} validation rows"
        assert len({v.airflow_run_id for v in validations}) == 1  # one run's set, not a mix
        assert len(store.lineage("orders", DAY)) == 3
    assert not errors, errors
    [partition] = store.partitions("orders", DAY)
    assert partition.status == "validated" and partition.error is None


# ---- 3. dead writers' temp files -------------------------------------------------------------------------------
def test_dead_writers_temp_files_are_swept_on_the_next_write(settings, source_data):
    land_orders_day(settings, DAY, real_orders_lines(source_data))
    folder = lake.lake_file(settings, "raw", "orders", DAY).parent
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        dead_tmp = folder / f".part-0.parquet.tmp-{dead.pid}"
        live_tmp = folder / f".part-0.parquet.tmp-{live.pid}"
        for tmp in (dead_tmp, live_tmp):
            tmp.write_bytes(b"PAR1 half written")
        pipeline.ingest(settings, "orders", DAY)
        assert not dead_tmp.exists()
        assert live_tmp.exists()  # a live writer's file is never touched
        assert (folder / "part-0.parquet").is_file()
    finally:
        live.kill()
        live.wait()


# ---- 4. control characters in ids ------------------------------------------------------------------------------
def test_control_character_in_customer_id_is_quarantined(settings, source_data):
    lines = real_orders_lines(source_data)
    assert ",17850.0,United Kingdom" in lines[2]
    lines[2] = lines[2].replace(",17850.0,", ",17850\x00,")
    land_orders_day(settings, DAY, lines)
    pipeline.ingest(settings, "orders", DAY)
    summary = pipeline.clean(settings, "orders", DAY)
    assert summary["quarantined_by_reason"] == {"control_character_in_id": 1}
    quarantine = read_parquet(lake.lake_file(settings, "quarantine", "orders", DAY))
    [row] = quarantine.to_dict("records")
    assert row["_source_line"] == 3 and row["_field"] == "CustomerID"
    assert "17850" not in str(row)  # neither the raw id nor a token of it
    clean = read_parquet(lake.lake_file(settings, "clean", "orders", DAY))
    assert len(clean) == 59 and clean["customer_key"].dropna().str.fullmatch("[0-9a-f]{24}").all()
    assert clean.loc[clean["source_line"] == 2, "customer_key"].iloc[0] in set(clean["customer_key"])
    assert pipeline.validate(settings, "orders", DAY)["success"]


# ---- 5. an unbalanced quote ------------------------------------------------------------------------------------
def test_unbalanced_quote_is_reported_where_it_opened(settings, source_data):
    lines = real_orders_lines(source_data)
    # Line 7 of the file (header = line 1): the description gets an opening quote and no closing one.
    assert lines[6].startswith("536365,22752,SET 7 BABUSHKA NESTING BOXES,")
    lines[6] = lines[6].replace(",SET 7 BABUSHKA", ',"SET 7 BABUSHKA')
    land_orders_day(settings, DAY, lines)
    with pytest.raises(LandingFileError) as caught:
        pipeline.ingest(settings, "orders", DAY)
    assert caught.value.line == 7, str(caught.value)
    assert "line 7:" in str(caught.value) and "runs to line 61" in str(caught.value)

    # The quote closes on line 41 instead, followed by text: still the record that began on line 7.
    lines[40] = lines[40].replace(",", '" x,', 1)
    land_orders_day(settings, DAY, lines)
    with pytest.raises(LandingFileError) as caught:
        pipeline.ingest(settings, "orders", DAY)
    assert caught.value.line == 7, str(caught.value)
