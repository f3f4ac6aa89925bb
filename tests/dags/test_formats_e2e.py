"""The same real partitions landed as TSV, JSON lines (flat and nested sessions), Parquet, gzip and zstd give the
same clean rows, quarantine and ledger through ingest -> clean as the CSV they came from; only the sources file
says how each is read (SHOPFLOW_SOURCES), no code changes.

Behaviour (header-less CSV, 2017-11-25 with the stray out-of-window row) and one real orders day are used. Where the
format keeps the physical lines (TSV, compressed CSV, Parquet of a header-less file) the outputs are
byte-identical Parquet; nested JSON groups events by user, so rows are compared in a canonical order and without
the line columns (each row keeps its JSON line, which the test checks separately)."""

from __future__ import annotations

import copy
import gzip
import io
import json
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from shopflow.common.parquet import read_parquet
from shopflow.config.settings import Settings
from shopflow.lake import zones as lake
from shopflow.landing.sample_data import land_behavior, land_orders
from shopflow.sources import DEFAULT_SOURCES_FILE
from shopflow.steps import partition as pipeline
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

KEY = "test-pseudonym-key-not-a-secret-32bytes+"
BEHAVIOR_DAY, ORDERS_DAY = date(2017, 11, 25), date(2010, 12, 1)
BEHAVIOR_COLUMNS = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
SHIPPED = yaml.safe_load(DEFAULT_SOURCES_FILE.read_text())


def _zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.output_stream(sink, compression="zstd") as stream:
        stream.write(data)
    return sink.getvalue().to_pybytes()


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    return buffer.getvalue()


def _csv_frame(data: bytes, columns: list[str], header: bool) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), header=0 if header else None, names=None if header else columns,
                       dtype=str, keep_default_na=False)


def _run(tmp_path: Path, monkeypatch, name: str, source: str, day: date, landed: bytes, file_entry: dict | None,
         file_name: str) -> dict:
    """Land `landed` as `file_name` for (source, day), read as `file_entry` declares; ingest + clean."""
    home = tmp_path / name
    sources = copy.deepcopy(SHIPPED)
    if file_entry is not None:
        sources[source]["files"] = [file_entry]
    sources_file = home / "sources.yaml"
    home.mkdir()
    sources_file.write_text(yaml.safe_dump(sources))
    monkeypatch.setenv("SHOPFLOW_SOURCES", str(sources_file))
    settings = Settings.from_env({"SHOPFLOW_HOME": str(home), "SHOPFLOW_PSEUDONYM_KEY": KEY,
                                  "SHOPFLOW_SOURCES": str(sources_file)})
    migrate.upgrade(settings.store_url)
    folder = lake.landing_dir(settings, source, day)
    folder.mkdir(parents=True)
    (folder / file_name).write_bytes(landed)
    pipeline.ingest(settings, source, day)
    pipeline.clean(settings, source, day)
    [partition] = MetadataStore(settings.store_url).partitions(source, day)
    return {
        "clean": lake.lake_file(settings, "clean", source, day),
        "quarantine": lake.lake_file(settings, "quarantine", source, day),
        "ledger": (partition.rows_in, partition.rows_clean, partition.rows_quarantined, partition.rows_duplicate),
        "reasons": partition.quarantined_by_reason,
    }


@pytest.fixture(scope="module")
def behavior_csv(tmp_path_factory, source_data) -> bytes:
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path_factory.mktemp("land")),
                                  "SHOPFLOW_SOURCE_DATA": str(source_data)})
    land_behavior(settings)
    return (lake.landing_dir(settings, "behavior", BEHAVIOR_DAY) / "behavior.csv").read_bytes()


@pytest.fixture(scope="module")
def orders_csv(tmp_path_factory, source_data) -> bytes:
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path_factory.mktemp("land")),
                                  "SHOPFLOW_SOURCE_DATA": str(source_data)})
    land_orders(settings)
    return (lake.landing_dir(settings, "orders", ORDERS_DAY) / "orders.csv").read_bytes()


def _behavior_variants(data: bytes) -> dict[str, tuple[str, bytes, dict]]:
    frame = _csv_frame(data, BEHAVIOR_COLUMNS, header=False)
    base = {"columns": BEHAVIOR_COLUMNS, "header": False}
    tsv = frame.to_csv(sep="\t", header=False, index=False, lineterminator="\n").encode()
    flat = "".join(json.dumps(dict(zip(BEHAVIOR_COLUMNS, row))) + "\n" for row in frame.itertuples(index=False))
    return {
        "tsv": ("behavior.tsv", tsv, {**base, "name": "behavior.tsv"}),
        "csv.gz": ("behavior.csv.gz", gzip.compress(data), {**base, "name": "behavior.csv"}),
        "csv.zst": ("behavior.csv.zst", _zstd(data), {**base, "name": "behavior.csv"}),
        "tsv, zstd by magic bytes only": ("behavior.tsv", _zstd(tsv), {**base, "name": "behavior.tsv"}),
        "parquet": ("behavior.parquet", _parquet(frame), {"name": "behavior.parquet", "columns": BEHAVIOR_COLUMNS}),
        "jsonl": ("behavior.jsonl", flat.encode(), {"name": "behavior.jsonl", "columns": BEHAVIOR_COLUMNS}),
    }


@pytest.mark.parametrize("variant", ["tsv", "csv.gz", "csv.zst", "tsv, zstd by magic bytes only", "parquet", "jsonl"])
def test_behaviour_in_every_flat_format_gives_byte_identical_outputs(tmp_path, monkeypatch, behavior_csv, variant):
    reference = _run(tmp_path, monkeypatch, "csv", "behavior", BEHAVIOR_DAY, behavior_csv, None, "behavior.csv")
    file_name, landed, entry = _behavior_variants(behavior_csv)[variant]
    result = _run(tmp_path, monkeypatch, "variant", "behavior", BEHAVIOR_DAY, landed, entry, file_name)
    assert result["ledger"] == reference["ledger"] and result["reasons"] == reference["reasons"]
    assert reference["ledger"][2] >= 1  # the stray out-of-window row is quarantined in every format
    assert result["clean"].read_bytes() == reference["clean"].read_bytes()
    quarantined = read_parquet(result["quarantine"]).drop(columns=["_source_file"])
    expected = read_parquet(reference["quarantine"]).drop(columns=["_source_file"])
    pd.testing.assert_frame_equal(quarantined, expected)


def _canonical(path: Path, drop: list[str]) -> pd.DataFrame:
    frame = read_parquet(path).drop(columns=[c for c in drop if c in read_parquet(path).columns])
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_behaviour_as_nested_sessions_gives_the_same_rows_and_ledger(tmp_path, monkeypatch, behavior_csv):
    frame = _csv_frame(behavior_csv, BEHAVIOR_COLUMNS, header=False)
    sessions = [{"user_id": user, "events": [
        {"item": r.item_id, "category_id": r.category_id, "type": r.behavior_type, "ts": r.timestamp}
        for r in group.itertuples(index=False)]} for user, group in frame.groupby("user_id", sort=True)]
    landed = "".join(json.dumps(s) + "\n" for s in sessions).encode()
    entry = {"name": "sessions.jsonl.gz", "columns": BEHAVIOR_COLUMNS, "records": "events",
             "fields": {"user_id": "user_id", "item_id": "events[].item", "behavior_type": "events[].type",
                        "timestamp": "events[].ts"}}
    reference = _run(tmp_path, monkeypatch, "csv", "behavior", BEHAVIOR_DAY, behavior_csv, None, "behavior.csv")
    result = _run(tmp_path, monkeypatch, "nested", "behavior", BEHAVIOR_DAY, gzip.compress(landed), entry,
                  "sessions.jsonl.gz")
    assert result["ledger"] == reference["ledger"] and result["reasons"] == reference["reasons"]
    pd.testing.assert_frame_equal(_canonical(result["clean"], ["source_line"]),
                                  _canonical(reference["clean"], ["source_line"]))
    # every clean row keeps the line of its session: the line of its user
    clean = read_parquet(result["clean"])
    line_of_user = clean.groupby("user_key")["source_line"].nunique()
    assert (line_of_user == 1).all() and clean["source_line"].between(1, len(sessions)).all()


def test_an_orders_day_as_parquet_and_tsv_gives_the_same_rows_and_ledger(tmp_path, monkeypatch, orders_csv):
    columns = SHIPPED["orders"]["files"][0]["columns"]
    frame = _csv_frame(orders_csv, columns, header=True)
    reference = _run(tmp_path, monkeypatch, "csv", "orders", ORDERS_DAY, orders_csv, None, "orders.csv")
    tsv = frame.to_csv(sep="\t", index=False, lineterminator="\n").encode()
    as_tsv = _run(tmp_path, monkeypatch, "tsv", "orders", ORDERS_DAY, tsv, {"name": "orders.tsv", "columns": columns},
                  "orders.tsv")
    assert as_tsv["clean"].read_bytes() == reference["clean"].read_bytes()
    as_parquet = _run(tmp_path, monkeypatch, "parquet", "orders", ORDERS_DAY, _parquet(frame),
                      {"name": "orders.parquet", "columns": columns}, "orders.parquet")
    for result in (as_tsv, as_parquet):
        assert result["ledger"] == reference["ledger"] and result["reasons"] == reference["reasons"]
    # Parquet has no header line: its rows are numbered from 1, the CSV's lines from 2
    pd.testing.assert_frame_equal(_canonical(as_parquet["clean"], ["source_line"]),
                                  _canonical(reference["clean"], ["source_line"]))
    assert (read_parquet(as_parquet["clean"])["source_line"] + 1).equals(read_parquet(reference["clean"])["source_line"])
