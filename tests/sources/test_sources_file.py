"""The sources file: validated on load with errors naming the source and the key, `SHOPFLOW_SOURCES` chooses it,
`python -m shopflow sources list|check` print it, and a landing folder holds only declared files (nothing ignored
silently: unmatched names, two files for one declared file and links are errors that name them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from shopflow.ingest.folder import LandingFolderError, partition_files
from shopflow.sources import DEFAULT_SOURCES_FILE, SourcesFileError, load_sources
from shopflow.sources.spec import LandingFileSpec, parse_sources

SHIPPED = yaml.safe_load(DEFAULT_SOURCES_FILE.read_text())


def _with(source: str, **changes) -> dict:
    entry = {**SHIPPED[source], **changes}
    return {source: entry}


def _error(raw: dict) -> str:
    with pytest.raises(SourcesFileError) as error:
        parse_sources(raw, "sources file test.yaml")
    return str(error.value)


def test_the_shipped_file_is_valid_and_describes_the_sample_sources():
    sources = load_sources()
    assert set(sources) >= {"orders", "behavior", "catalog", "search"}
    assert sources["behavior"].files[0].header is False and sources["catalog"].snapshot_file in (
        f.name for f in sources["catalog"].files)


@pytest.mark.parametrize(("raw", "expected"), [
    (_with("orders", timezone="Europe/Londn"), "orders.timezone: unknown time zone 'Europe/Londn'"),
    (_with("orders", currency="pounds"), "orders.currency: 'pounds' is not an ISO 4217 code"),
    (_with("orders", colour="blue"), "orders.colour: Extra inputs are not permitted"),
    (_with("orders", owner=None), "orders.owner: Input should be a valid string"),
    (_with("orders", files=[{"name": "orders.csv", "columns": ["a"], "format": "xlsx"}]), "orders.files.0.format:"),
    (_with("orders", files=[{"name": "orders.csv", "columns": ["a", "a"]}]), "columns are not unique"),
    (_with("orders", files=[{"name": "o.csv", "columns": ["a"], "records": "events"}]),
     "records/fields apply to jsonl files only"),
    (_with("orders", files=[{"name": "o.jsonl", "columns": ["a"], "fields": {"b": "x.y"}}]),
     "fields names columns that are not declared in columns: ['b']"),
    (_with("orders", files=[{"name": "o.jsonl", "columns": ["a"], "fields": {"a": "x..y"}}]), "is not a field path"),
    (_with("orders", files=[{"name": "o.csv", "columns": ["a"], "encoding": "klingon"}]), "unknown encoding"),
    (_with("orders", pseudonymise={"CustomerId": "customer_key"}), "pseudonymise names columns no file declares"),
    (_with("catalog", snapshot_file="nope.csv"), "catalog: snapshot_file 'nope.csv' is not one of the files"),
    ({"Orders": SHIPPED["orders"]}, "'Orders': a source name is lower-case"),
    ({"orders": ["not", "a", "mapping"]}, "orders: expected a mapping of keys, got list"),
])
def test_an_invalid_entry_names_the_source_the_key_and_the_problem(raw, expected):
    message = _error(raw)
    assert message.startswith("sources file test.yaml is not a valid sources file:")
    assert expected in message, message


def test_every_problem_is_reported_at_once():
    message = _error({**_with("orders", timezone="Mars/Olympus"), **_with("behavior", owner=7)})
    assert "orders.timezone" in message and "behavior.owner" in message


def test_formats_and_delimiters_resolve_from_names():
    assert LandingFileSpec(name="a.tsv.gz", columns=["x"]).resolved_delimiter == "\t"
    assert LandingFileSpec(name="events-*.jsonl.zst", columns=["x"]).resolved_format == "jsonl"
    assert LandingFileSpec(name="p.parquet", columns=["x"]).resolved_format == "parquet"
    assert LandingFileSpec(name="export.txt", columns=["x"], format="tsv").resolved_delimiter == "\t"
    spec = LandingFileSpec(name="sessions.jsonl", columns=["session_id", "ts"], records="events",
                           fields={"session_id": "session_id"})
    assert spec.field_path("ts") == "events[].ts" and spec.field_path("session_id") == "session_id"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shopflow", "sources", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_sources_check_and_list_use_shopflow_sources(tmp_path):
    custom = tmp_path / "sources.yaml"
    custom.write_text(yaml.safe_dump({"orders": SHIPPED["orders"]}))
    env = {**os.environ, "SHOPFLOW_SOURCES": str(custom), "SHOPFLOW_HOME": str(tmp_path / "home")}
    listed = _cli(env, "list")
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].startswith("orders ")
    assert len(listed.stdout.splitlines()) == 1
    checked = _cli(env, "check")
    assert checked.returncode == 0, checked.stderr
    assert "orders.csv: csv, header=yes, delimiter=','" in checked.stdout
    assert "dedup key: invoice_no" in checked.stdout and "critical ExpectTableRowCountToBeBetween" in checked.stdout
    assert checked.stdout.rstrip().endswith(f"{custom}: 1 sources, valid")

    custom.write_text(yaml.safe_dump(_with("orders", timezone="Nowhere/City")))
    broken = _cli(env, "check")
    assert broken.returncode == 1 and "orders.timezone: unknown time zone 'Nowhere/City'" in broken.stderr


# ---- the landing folder ------------------------------------------------------------------------------------------
def _folder(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "ds=2010-12-01"
    folder.mkdir()
    for name in names:
        (folder / name).write_text("x\n")
    return folder


def test_declared_files_are_found_compressed_or_not(tmp_path):
    [orders] = partition_files(_folder(tmp_path, "orders.csv.gz"), load_sources()["orders"])
    assert orders.path.name == "orders.csv.gz" and orders.spec.name == "orders.csv"
    assert partition_files(tmp_path / "absent", load_sources()["orders"]) == []


@pytest.mark.parametrize("stray", ["orders (1).csv", "ordérs.csv", "orders.csv ", "orders.CSV", ".orders.csv.tmp-12"])
def test_a_file_no_declaration_matches_fails_the_partition_by_name(tmp_path, stray):
    with pytest.raises(LandingFolderError) as error:
        partition_files(_folder(tmp_path, "orders.csv", stray), load_sources()["orders"])
    assert repr(stray) in str(error.value) and "no declared landing file matches" in str(error.value)


def test_two_files_for_one_declared_file_fail(tmp_path):
    with pytest.raises(LandingFolderError) as error:
        partition_files(_folder(tmp_path, "orders.csv", "orders.csv.gz"), load_sources()["orders"])
    assert "2 files for the one declared file 'orders.csv': ['orders.csv', 'orders.csv.gz']" in str(error.value)


def test_a_symlink_is_never_read(tmp_path):
    folder = _folder(tmp_path)
    (folder / "orders.csv").symlink_to("/etc/passwd")
    with pytest.raises(LandingFolderError) as error:
        partition_files(folder, load_sources()["orders"])
    assert "not regular files" in str(error.value) and "orders.csv" in str(error.value)


def test_sidecar_files_are_kept_and_a_glob_takes_every_match(tmp_path):
    spec = parse_sources({"clicks": {"description": "d", "owner": "o", "cleaner": "shopflow.sources.orders",
                                     "sidecar_files": ["*.txt"],
                                     "files": [{"name": "clicks-*.jsonl", "columns": ["a"]}]}}, "t")["clicks"]
    found = partition_files(_folder(tmp_path, "clicks-2.jsonl", "clicks-1.jsonl.gz", "README.txt"), spec)
    assert [f.path.name for f in found] == ["clicks-1.jsonl.gz", "clicks-2.jsonl"]
