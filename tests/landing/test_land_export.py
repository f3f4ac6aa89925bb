"""`python -m shopflow land --source NAME --from EXPORT --by COLUMN`: real exports split into daily landing
partitions in the source's time zone, the same files the sample landing writes, nothing dropped; an export over too
many days, or a folder of per-day files with one bad entry, lands nothing."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from shopflow.common.landing_file import LandingFileError
from shopflow.config.settings import Settings
from shopflow.landing.export import ExportError, day_of, land_export
from shopflow.sources import get_source
from shopflow.sources.spec import parse_sources

ORDERS = "events/online_retail_2010-12-01_to_2011-09-30.csv.gz"
BEHAVIOR = "events/taobao_user_behavior_sample.csv.gz"


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / "home")})


def _head(path: Path, lines: int) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        return [row for _, row in zip(range(lines), reader)]


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def test_an_orders_export_lands_as_the_sample_landing_does(tmp_path, source_data):
    header, *rows = _head(source_data / ORDERS, 6000)  # the first trading days of the real file
    export = tmp_path / "orders-export.csv"
    export.write_text(_csv([header, *rows]))
    settings = _settings(tmp_path)
    counts = land_export(settings, get_source("orders"), export, by="InvoiceDate")

    expected: dict[date, list[list[str]]] = {}
    for row in rows:
        expected.setdefault(date.fromisoformat(row[4][:10]), []).append(row)
    assert counts == {day: len(day_rows) for day, day_rows in expected.items()}
    assert sum(counts.values()) == len(rows)
    for day, day_rows in expected.items():  # what shopflow.landing.sample_data.land_orders writes for that day
        landed = settings.landing_dir / "orders" / f"ds={day}" / "orders.csv"
        assert landed.read_text() == _csv([header, *day_rows])

    before = {p: p.stat().st_mtime_ns for p in (settings.landing_dir / "orders").rglob("*.csv")}
    land_export(settings, get_source("orders"), export, by="InvoiceDate")
    assert {p: p.stat().st_mtime_ns for p in before} == before  # idempotent: unchanged files are not rewritten


def test_behaviour_epoch_seconds_split_by_the_china_local_day(tmp_path, source_data):
    rows = _head(source_data / BEHAVIOR, 3000)
    export = tmp_path / "behavior.csv.gz"
    export.write_bytes(gzip.compress(_csv(rows).encode()))
    settings = _settings(tmp_path)
    counts = land_export(settings, get_source("behavior"), export, by="timestamp")
    zone = ZoneInfo("Asia/Shanghai")
    expected: dict[date, int] = {}
    for row in rows:
        day = datetime.fromtimestamp(int(row[4]), tz=timezone.utc).astimezone(zone).date()
        expected[day] = expected.get(day, 0) + 1
    assert counts == dict(sorted(expected.items()))


def test_a_record_without_a_day_fails_naming_file_line_and_value_unless_told_where_it_goes(tmp_path, source_data):
    header, *rows = _head(source_data / ORDERS, 50)
    rows[9][4] = "not a date"
    export = tmp_path / "orders.csv"
    export.write_text(_csv([header, *rows]))
    settings = _settings(tmp_path)
    with pytest.raises(ExportError) as error:
        land_export(settings, get_source("orders"), export, by="InvoiceDate")
    assert f"{export}, line 11: InvoiceDate='not a date'" in str(error.value)
    counts = land_export(settings, get_source("orders"), export, by="InvoiceDate", undated_day=date(2010, 12, 1))
    assert sum(counts.values()) == len(rows)


def test_per_day_files_are_copied_unchanged(tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "orders_2010-12-01.csv.gz").write_bytes(gzip.compress(b"InvoiceNo\n"))
    (exports / "orders_2010-12-02.csv").write_text("InvoiceNo\n")
    settings = _settings(tmp_path)
    assert land_export(settings, get_source("orders"), exports, by=None) == {date(2010, 12, 1): 1, date(2010, 12, 2): 1}
    assert (settings.landing_dir / "orders" / "ds=2010-12-01" / "orders.csv.gz").read_bytes() == (
        exports / "orders_2010-12-01.csv.gz").read_bytes()
    assert (settings.landing_dir / "orders" / "ds=2010-12-02" / "orders.csv").is_file()


def test_nested_json_lines_split_by_a_field_path(tmp_path):
    spec = parse_sources({"sessions": {
        "description": "d", "owner": "o", "cleaner": "shopflow.sources.orders", "timezone": "Europe/Berlin",
        "files": [{"name": "sessions.jsonl", "columns": ["session_id", "ts"], "records": "events",
                   "fields": {"session_id": "session_id"}}]}}, "t")["sessions"]
    lines = [{"session_id": "a", "events": [{"ts": "2024-03-01T23:30:00Z"}]},   # 00:30 in Berlin: March 2nd
             {"session_id": "b", "events": [{"ts": 1709251200000}]},            # epoch ms: 2024-03-01 01:00 Berlin
             {"session_id": "c", "events": []}]
    export = tmp_path / "sessions.jsonl"
    export.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with pytest.raises(ExportError, match=r"line 3: ts='' is not a date or timestamp \(no records in 'events'"):
        land_export(_settings(tmp_path), spec, export, by="ts")
    settings = _settings(tmp_path)
    counts = land_export(settings, spec, export, by="ts", undated_day=date(2024, 3, 1))
    assert counts == {date(2024, 3, 1): 1, date(2024, 3, 2): 1}  # records per day; session c holds none
    day1 = settings.landing_dir / "sessions" / "ds=2024-03-01" / "sessions.jsonl"
    day2 = settings.landing_dir / "sessions" / "ds=2024-03-02" / "sessions.jsonl"
    assert [json.loads(line) for line in day1.read_text().splitlines()] == lines[1:]
    assert json.loads(day2.read_text()) == lines[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("2010-12-01 08:26:00", date(2010, 12, 1)),           # naive: local time of the source
    ("2010-12-01T23:30:00+00:00", date(2010, 12, 1)),     # London is UTC in winter
    ("2011-06-30T23:30:00Z", date(2011, 7, 1)),           # ... and UTC+1 in summer
    ("2011-06-30", date(2011, 6, 30)),
    ("1291191960", date(2010, 12, 1)),
    ("", None), ("31/12/2010", None), ("C536379", None),
])
def test_day_of_in_the_source_time_zone(text, expected):
    assert day_of(text, ZoneInfo("Europe/London")) == expected


def test_the_land_command(tmp_path, source_data):
    header, *rows = _head(source_data / ORDERS, 200)
    export = tmp_path / "export.csv"
    export.write_text(_csv([header, *rows]))
    env = {**os.environ, "SHOPFLOW_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "shopflow", "land", "--source", "orders", "--from", str(export)]
    done = subprocess.run([*command, "--by", "InvoiceDate"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"orders: 1 days, {len(rows)} records, 2010-12-01 .. 2010-12-01")
    missing_by = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert missing_by.returncode == 1 and "--by COLUMN is needed" in missing_by.stderr


# ---- bounded: distinct days, per-day folders, one line for every refusal (tests/ingest/test_hostile_inputs.py
# holds the corpus of hostile files) ------------------------------------------------------------------------------
def _landing_entries(settings: Settings) -> list[str]:
    root = settings.landing_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_an_export_over_more_days_than_allowed_lands_nothing_unless_told(tmp_path, source_data, monkeypatch):
    from hostile_inputs import day_spread_export
    from orders_days import real_orders_lines

    export = tmp_path / "orders-by-day.csv"
    export.write_bytes(day_spread_export(real_orders_lines(source_data), 6))
    settings = _settings(tmp_path)
    monkeypatch.setenv("SHOPFLOW_LAND_MAX_DAYS", "5")
    with pytest.raises(ExportError) as refused:
        land_export(settings, get_source("orders"), export, by="InvoiceDate")
    message = str(refused.value)
    for text in (str(export), "6 distinct days of --by InvoiceDate", "more than the 5", "SHOPFLOW_LAND_MAX_DAYS=5",
                 "nothing was landed", "--max-days 6"):
        assert text in message, message
    assert _landing_entries(settings) == []
    counts = land_export(settings, get_source("orders"), export, by="InvoiceDate", max_days=6)
    assert len(counts) == 6 and sum(counts.values()) == 6


def test_json_lines_over_more_days_than_allowed_land_nothing(tmp_path):
    spec = parse_sources({"events": {
        "description": "d", "owner": "o", "cleaner": "shopflow.sources.orders", "timezone": "UTC",
        "files": [{"name": "events.jsonl", "columns": ["id", "ts"]}]}}, "t")["events"]
    export = tmp_path / "events.jsonl"
    export.write_text("".join(json.dumps({"id": n, "ts": f"2024-03-{n:02d}T12:00:00Z"}) + "\n" for n in range(1, 4)))
    settings = _settings(tmp_path)
    with pytest.raises(ExportError, match=r"3 distinct days of --by ts, more than the 2 .*--max-days 3"):
        land_export(settings, spec, export, by="ts", max_days=2)
    assert _landing_entries(settings) == []
    assert len(land_export(settings, spec, export, by="ts", max_days=3)) == 3


def test_a_folder_of_per_day_files_with_one_bad_entry_lands_nothing(tmp_path, monkeypatch):
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "orders_2010-12-01.csv").write_text("InvoiceNo\n1\n")
    os.mkfifo(exports / "orders_2010-12-02.csv")
    (exports / "orders_2010-12-03").mkdir()
    settings = _settings(tmp_path)
    with pytest.raises(ExportError, match=r"not regular files .*\['orders_2010-12-02.csv', 'orders_2010-12-03'\]"):
        land_export(settings, get_source("orders"), exports, by=None)
    (exports / "orders_2010-12-02.csv").unlink()
    (exports / "orders_2010-12-03").rmdir()
    with gzip.open(exports / "orders_2010-12-04.csv.gz", "wb") as bomb:  # checked before the first copy
        bomb.write(b"InvoiceNo\n" + b"1\n" * (2 * 1024 * 1024))
    monkeypatch.setenv("SHOPFLOW_MAX_EXPANDED_BYTES", str(1024 * 1024))
    with pytest.raises(LandingFileError, match=r"orders_2010-12-04.csv.gz: expands to more than 1,048,576 bytes"):
        land_export(settings, get_source("orders"), exports, by=None)
    assert _landing_entries(settings) == []


def test_the_land_command_refuses_in_one_line(tmp_path, source_data, capsys, monkeypatch):
    from hostile_inputs import day_spread_export
    from orders_days import real_orders_lines
    from shopflow.cli import main

    monkeypatch.setenv("SHOPFLOW_HOME", str(tmp_path / "home"))
    export = tmp_path / "orders-by-day.csv"
    export.write_bytes(day_spread_export(real_orders_lines(source_data), 3))
    command = ["land", "--source", "orders", "--from", str(export), "--by", "InvoiceDate"]
    monkeypatch.setenv("SHOPFLOW_LAND_MAX_DAYS", "2")
    assert main(command) == 1
    assert "pass --max-days 3" in capsys.readouterr().err
    assert main([*command, "--max-days", "3"]) == 0
    assert capsys.readouterr().out.startswith("orders: 3 days, 3 records")
    assert main(["land", "--source", "orders", "--from", str(tmp_path / "absent.csv"), "--by", "InvoiceDate"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"{tmp_path / 'absent.csv'}: No such file or directory", err
    with pytest.raises(SystemExit) as usage:
        main([*command, "--max-days", "0"])
    assert usage.value.code == 2 and "'0' is not a whole number of at least 1" in capsys.readouterr().err


# ---- landing replaces: a corrected file for a partition removes the files it replaces (issue 19) ----------------
def test_a_corrected_plain_file_replaces_the_gzip_one_and_the_day_ingests(tmp_path, source_data, monkeypatch, caplog):
    from orders_days import KEY
    from shopflow.ingest.folder import LandingFolderError
    from shopflow.steps import partition as pipeline
    from shopflow.store import migrate

    monkeypatch.setenv("SHOPFLOW_PSEUDONYM_KEY", KEY)
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / "home"), "SHOPFLOW_SOURCE_DATA": str(source_data),
                                  "SHOPFLOW_PSEUDONYM_KEY": KEY})
    settings.home.mkdir(parents=True)
    migrate.upgrade(settings.store_url)
    header, *rows = _head(source_data / ORDERS, 40)
    day = date(2010, 12, 1)
    assert all(row[4].startswith("2010-12-01 ") for row in rows)
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(_csv([header, *rows[:10]]).encode()))
    assert land_export(settings, get_source("orders"), bad, by=None, day=day) == {day: 1}
    folder = settings.landing_dir / "orders" / f"ds={day}"
    (folder / "orders.csv").write_text(_csv([header, *rows[:5]]))  # what a user had put beside it by hand
    with pytest.raises(LandingFolderError, match="2 files for the one declared file 'orders.csv'"):
        pipeline.ingest(settings, "orders", day)

    corrected = tmp_path / "corrected.csv"
    corrected.write_text(_csv([header, *rows]))
    with caplog.at_level("WARNING", logger="shopflow.landing.export"):
        assert land_export(settings, get_source("orders"), corrected, by="InvoiceDate") == {day: len(rows)}
    assert "removed ['orders.csv.gz']" in caplog.text
    assert sorted(p.name for p in folder.iterdir()) == ["orders.csv"]
    assert (folder / "orders.csv").read_text() == _csv([header, *rows])
    ingested = pipeline.ingest(settings, "orders", day)
    assert ingested["rows_in"] == len(rows) and ingested["files"] == ["orders.csv"]

    # ... and the other way round: a per-day gzip file replaces the plain one
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "orders-2010-12-01.csv.gz").write_bytes(gzip.compress(_csv([header, *rows[:20]]).encode()))
    assert land_export(settings, get_source("orders"), exports, by=None) == {day: 1}
    assert sorted(p.name for p in folder.iterdir()) == ["orders.csv.gz"]
    assert pipeline.ingest(settings, "orders", day)["rows_in"] == 20


def test_landing_replaces_only_the_same_declared_file(tmp_path):
    spec = parse_sources({"shop": {
        "description": "d", "owner": "o", "cleaner": "shopflow.sources.orders", "timezone": "UTC",
        "sidecar_files": ["GENERATED.txt"],
        "files": [{"name": "orders.csv", "columns": ["id", "ts"]},
                  {"name": "items-*.csv", "columns": ["id", "sku"], "optional": True}]}}, "t")["shop"]
    from shopflow.ingest.folder import partition_files

    settings = _settings(tmp_path)
    day = date(2024, 3, 1)
    folder = settings.landing_dir / "shop" / f"ds={day}"
    first = tmp_path / "first"
    first.mkdir()
    for name in ("items-2024-03-01-a.csv", "items-2024-03-01-b.csv"):
        (first / name).write_text("id,sku\n1,a\n")
    assert land_export(settings, spec, first, by=None, file_name="items-*.csv") == {day: 2}
    orders = tmp_path / "orders.csv"
    orders.write_text("id,ts\n1,2024-03-01\n")
    land_export(settings, spec, orders, by=None, day=day, file_name="orders.csv")
    (folder / "GENERATED.txt").write_text("notes\n")
    assert sorted(p.name for p in folder.iterdir()) == [
        "GENERATED.txt", "items-2024-03-01-a.csv", "items-2024-03-01-b.csv", "orders.csv"]

    second = tmp_path / "second"  # another match of the glob replaces both earlier matches
    second.mkdir()
    (second / "items-2024-03-01-c.csv").write_text("id,sku\n2,b\n")
    assert land_export(settings, spec, second, by=None, file_name="items-*.csv") == {day: 1}
    assert sorted(p.name for p in folder.iterdir()) == ["GENERATED.txt", "items-2024-03-01-c.csv", "orders.csv"]

    gz = tmp_path / "orders.csv.gz"  # the gzip twin replaces orders.csv; the items file and the sidecar stay
    gz.write_bytes(gzip.compress(b"id,ts\n3,2024-03-01\n"))
    land_export(settings, spec, gz, by=None, day=day, file_name="orders.csv")
    assert sorted(p.name for p in folder.iterdir()) == ["GENERATED.txt", "items-2024-03-01-c.csv", "orders.csv.gz"]
    assert (folder / "GENERATED.txt").read_text() == "notes\n"
    assert [(f.spec.name, f.path.name) for f in partition_files(folder, spec)] == [
        ("orders.csv", "orders.csv.gz"), ("items-*.csv", "items-2024-03-01-c.csv")]


def test_a_pattern_file_landed_with_day_keeps_its_own_matching_name(tmp_path):
    """`--day` with a glob declaration: the file is named as the export (which the pattern must match), never after
    the pattern itself (a file called `items-*.csv`)."""
    spec = parse_sources({"shop": {
        "description": "d", "owner": "o", "cleaner": "shopflow.sources.orders", "timezone": "UTC",
        "files": [{"name": "items-*.csv", "columns": ["id", "sku"]}]}}, "t")["shop"]
    settings = _settings(tmp_path)
    day = date(2024, 3, 1)
    export = tmp_path / "items-march.csv"
    export.write_text("id,sku\n1,a\n")
    assert land_export(settings, spec, export, by=None, day=day) == {day: 1}
    folder = settings.landing_dir / "shop" / f"ds={day}"
    assert [p.name for p in folder.iterdir()] == ["items-march.csv"]
    stray = tmp_path / "orders.csv"
    stray.write_text("id,sku\n1,a\n")
    with pytest.raises(ExportError, match="is a pattern that 'orders.csv' does not match"):
        land_export(settings, spec, stray, by=None, day=day)
    assert [p.name for p in folder.iterdir()] == ["items-march.csv"]
