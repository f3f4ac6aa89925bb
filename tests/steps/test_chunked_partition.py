"""A day bigger than one chunk streams through ingest, clean and validate (SHOPFLOW_CHUNK_BYTES made small here):
the outputs, the ledger and the validation are those of the same day read whole; duplicates that fall in different
chunks are still duplicates; a malformed line in a late chunk is named with its file and line, and nothing is lost."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select
from shopflow.common.errors import LandingFileError
from shopflow.common.parquet import parquet_row_groups, read_parquet
from shopflow.config.settings import Settings
from shopflow.lake import zones as lake
from shopflow.steps import partition as pipeline
from shopflow.store import migrate
from shopflow.store.models import PartitionFile
from shopflow.store.repository import MetadataStore

KEY = "chunked-test-key-not-a-secret-32bytes"
DAY = date(2010, 12, 1)
CHUNK_BYTES = 16 * 1024
ORDERS_FILE = "events/online_retail_2010-12-01_to_2011-09-30.csv.gz"


def _home(root: Path, source_data: Path) -> Settings:
    settings = Settings.from_env({"SHOPFLOW_HOME": str(root), "SHOPFLOW_SOURCE_DATA": str(source_data),
                                  "SHOPFLOW_PSEUDONYM_KEY": KEY})
    settings.home.mkdir(parents=True)
    migrate.upgrade(settings.store_url)
    return settings


@pytest.fixture(scope="module")
def day_lines(source_data) -> tuple[str, list[str]]:
    """The header and the real lines of the first trading day (3,108 invoice lines, dirt included)."""
    with gzip.open(source_data / ORDERS_FILE, "rt", encoding="utf-8", newline="") as handle:
        header = handle.readline()
        lines = [line for line in handle if f",{DAY.isoformat()} " in line]
    assert len(lines) > 3000
    return header, lines


def _day_content(header: str, lines: list[str]) -> str:
    """The day with what chunking could get wrong: copies of its first lines at its end (duplicates in different
    chunks), a blank line and a record whose quoted description holds a comma, doubled quotes and a line feed,
    both in late chunks."""
    late = len(lines) * 3 // 4
    quoted = '536999,22222,"HEART, ""RED""\nHOLDER",2,2010-12-01 15:00:00,1.25,17850.0,United Kingdom\n'
    body = lines[:late] + ["\n", quoted] + lines[late:] + lines[:60]
    return header + "".join(body)


def _land(settings: Settings, content: str) -> Path:
    path = settings.landing_dir / "orders" / f"ds={DAY.isoformat()}" / "orders.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def _run(settings: Settings) -> tuple[dict, dict, dict]:
    return (pipeline.ingest(settings, "orders", DAY), pipeline.clean(settings, "orders", DAY),
            pipeline.validate(settings, "orders", DAY))


def _validations(settings: Settings) -> list[tuple]:
    return [(v.expectation, v.column_name, v.severity, v.success, v.observed_value, v.unexpected_percent, v.result)
            for v in MetadataStore(settings.store_url).validations("orders", DAY)]


def test_a_day_bigger_than_a_chunk_streams_to_the_same_outputs(tmp_path, source_data, day_lines, monkeypatch):
    content = _day_content(*day_lines)
    whole = _home(tmp_path / "whole", source_data)
    _land(whole, content)
    whole_steps = _run(whole)

    monkeypatch.setenv("SHOPFLOW_CHUNK_BYTES", str(CHUNK_BYTES))
    chunked = _home(tmp_path / "chunked", source_data)
    _land(chunked, content)
    chunked_steps = _run(chunked)

    chunks = parquet_row_groups(lake.lake_file(chunked, "raw", "orders", DAY))
    assert chunks >= len(content) // CHUNK_BYTES - 1 and parquet_row_groups(lake.lake_file(whole, "raw", "orders", DAY)) == 1
    ingested, cleaned, validated = chunked_steps
    assert ingested["rows_in"] == whole_steps[0]["rows_in"] == len(day_lines[1]) + 60 + 2
    ledger_keys = ("rows_in", "rows_clean", "rows_quarantined", "rows_duplicate", "quarantined_by_reason")
    assert {k: cleaned[k] for k in ledger_keys} == {k: whole_steps[1][k] for k in ledger_keys}
    # The 60 copies at the end lie chunks away from their originals, and are duplicates all the same.
    assert cleaned["rows_duplicate"] >= 60
    assert cleaned["quarantined_by_reason"]["blank_row"] == 1
    assert validated == whole_steps[2] and validated["success"]
    for zone in ("raw", "clean", "quarantine"):
        pd.testing.assert_frame_equal(read_parquet(lake.lake_file(chunked, zone, "orders", DAY)),
                                      read_parquet(lake.lake_file(whole, zone, "orders", DAY)))
    assert _validations(chunked) == _validations(whole)
    quoted = read_parquet(lake.lake_file(chunked, "clean", "orders", DAY)).query("invoice_no == '536999'")
    assert quoted["description"].tolist() == ['HEART, "RED" HOLDER']


def test_a_malformed_line_in_a_late_chunk_is_named_and_nothing_is_lost(tmp_path, source_data, day_lines,
                                                                       monkeypatch):
    header, lines = day_lines
    at = len(lines) - 50  # in the last chunks
    broken = lines[:at] + ["536365,85123A,TOO,FEW FIELDS\n"] + lines[at:]
    monkeypatch.setenv("SHOPFLOW_CHUNK_BYTES", str(CHUNK_BYTES))
    settings = _home(tmp_path / "home", source_data)
    landed = _land(settings, header + "".join(broken))
    before = landed.read_bytes()
    with pytest.raises(LandingFileError) as raised:
        pipeline.ingest(settings, "orders", DAY)
    assert raised.value.path == str(landed) and raised.value.line == at + 2  # the header is line 1
    assert "expected 8 fields, found 4" in str(raised.value)
    assert landed.read_bytes() == before
    raw = lake.lake_file(settings, "raw", "orders", DAY)
    assert not raw.exists() and not list(raw.parent.glob(".*tmp*"))  # the chunks written before it are gone
    [partition] = MetadataStore(settings.store_url).partitions("orders", DAY)
    assert partition.status == "failed" and f"line {at + 2}" in partition.error



def test_a_day_of_several_files_streams_file_after_file(tmp_path, source_data, day_lines, monkeypatch):
    """A declared file that is a pattern (`orders-*.csv`): a day landed as three files streams them in the order the
    whole read concatenates them, with each file's facts and rows recorded as the whole read records them."""
    import yaml
    from shopflow.sources import DEFAULT_SOURCES_FILE

    sources = yaml.safe_load(DEFAULT_SOURCES_FILE.read_text())
    sources["orders"]["files"][0]["name"] = "orders-*.csv"
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(yaml.safe_dump(sources))
    monkeypatch.setenv("SHOPFLOW_SOURCES", str(sources_file))
    header, lines = day_lines
    third = len(lines) // 3
    parts = [lines[:third], lines[third:2 * third], lines[2 * third:] + lines[:40]]

    def run(name: str) -> tuple[Settings, tuple]:
        settings = _home(tmp_path / name, source_data)
        folder = settings.landing_dir / "orders" / f"ds={DAY.isoformat()}"
        folder.mkdir(parents=True)
        for number, part in enumerate(parts, start=1):
            (folder / f"orders-{number}.csv").write_text(header + "".join(part), encoding="utf-8")
        return settings, _run(settings)

    whole, whole_steps = run("whole")
    monkeypatch.setenv("SHOPFLOW_CHUNK_BYTES", str(CHUNK_BYTES))
    chunked, chunked_steps = run("chunked")
    assert parquet_row_groups(lake.lake_file(chunked, "raw", "orders", DAY)) > 3
    def without_paths(steps: tuple) -> list[dict]:
        return [{k: v for k, v in step.items() if not k.endswith("_path")} for step in steps]

    assert without_paths(chunked_steps) == without_paths(whole_steps)
    assert chunked_steps[0]["files"] == whole_steps[0]["files"] == ["orders-1.csv", "orders-2.csv", "orders-3.csv"]
    assert chunked_steps[1]["rows_duplicate"] >= 40
    for zone in ("raw", "clean", "quarantine"):
        pd.testing.assert_frame_equal(read_parquet(lake.lake_file(chunked, zone, "orders", DAY)),
                                      read_parquet(lake.lake_file(whole, zone, "orders", DAY)))
    recorded = []
    for settings in (chunked, whole):
        with MetadataStore(settings.store_url).session() as session:
            recorded.append(session.execute(select(PartitionFile.name, PartitionFile.size_bytes, PartitionFile.sha256,
                                                   PartitionFile.rows).order_by(PartitionFile.name)).all())
    assert recorded[0] == recorded[1] and len(recorded[0]) == 3


def test_a_quote_inside_an_unquoted_field_does_not_stop_the_chunks(tmp_path, source_data, day_lines, monkeypatch):
    """`WOODEN 6" RULER`: the parsers take the quote as a character, so the quotes before every later line feed stay
    odd; the cut falls back to a line feed once they have been odd for SHOPFLOW_MAX_LINE_BYTES past the chunk."""
    header, lines = day_lines
    stray = '536366,22633,WOODEN 6" RULER,6,2010-12-01 08:28:00,1.85,17850.0,United Kingdom\n'
    content = header + "".join(lines[:200] + [stray] + lines[200:])
    whole = _home(tmp_path / "whole", source_data)
    _land(whole, content)
    whole_steps = _run(whole)
    monkeypatch.setenv("SHOPFLOW_CHUNK_BYTES", str(CHUNK_BYTES))
    monkeypatch.setenv("SHOPFLOW_MAX_LINE_BYTES", "4096")
    chunked = _home(tmp_path / "chunked", source_data)
    _land(chunked, content)
    chunked_steps = _run(chunked)
    assert parquet_row_groups(lake.lake_file(chunked, "raw", "orders", DAY)) > 5
    assert chunked_steps[1]["rows_clean"] == whole_steps[1]["rows_clean"]
    for zone in ("raw", "clean", "quarantine"):
        pd.testing.assert_frame_equal(read_parquet(lake.lake_file(chunked, zone, "orders", DAY)),
                                      read_parquet(lake.lake_file(whole, zone, "orders", DAY)))
    ruler = read_parquet(lake.lake_file(chunked, "clean", "orders", DAY)).query("invoice_no == '536366'")
    assert 'WOODEN 6" RULER' in ruler["description"].tolist()


def _parquet_orders(tmp_path: Path, monkeypatch) -> None:
    """Orders declared as a Parquet export (`orders.parquet`), the sources file otherwise the default."""
    import yaml
    from shopflow.sources import DEFAULT_SOURCES_FILE

    sources = yaml.safe_load(DEFAULT_SOURCES_FILE.read_text())
    sources["orders"]["files"][0] = {"name": "orders.parquet", "columns": sources["orders"]["files"][0]["columns"]}
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(yaml.safe_dump(sources))
    monkeypatch.setenv("SHOPFLOW_SOURCES", str(sources_file))


def _land_parquet(settings: Settings, frame: pd.DataFrame, row_group_rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = settings.landing_dir / "orders" / f"ds={DAY.isoformat()}" / "orders.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_rows)
    return path


def test_a_parquet_day_bigger_than_a_chunk_streams_in_row_batches_to_the_same_outputs(
        tmp_path, source_data, day_lines, monkeypatch):
    """A typed Parquet export (integer quantities, float prices, nulls) of the real day with copies of its first rows
    at its end: read in batches of rows (about a chunk of the declared columns' pages each, across row groups), its
    outputs, ledger, validation and file facts are those of the day read whole."""
    import io

    header, lines = day_lines
    frame = pd.read_csv(io.StringIO(header + "".join(lines + lines[:60])), dtype={"InvoiceNo": str, "StockCode": str,
                                                                                   "CustomerID": "Int64"})
    assert frame["Quantity"].dtype == "int64" and frame["CustomerID"].isna().any()
    _parquet_orders(tmp_path, monkeypatch)
    whole = _home(tmp_path / "whole", source_data)
    _land_parquet(whole, frame, row_group_rows=700)
    whole_steps = _run(whole)
    monkeypatch.setenv("SHOPFLOW_CHUNK_BYTES", str(CHUNK_BYTES))
    chunked = _home(tmp_path / "chunked", source_data)
    _land_parquet(chunked, frame, row_group_rows=700)
    chunked_steps = _run(chunked)

    assert parquet_row_groups(lake.lake_file(whole, "raw", "orders", DAY)) == 1
    assert parquet_row_groups(lake.lake_file(chunked, "raw", "orders", DAY)) > 5
    assert chunked_steps[0]["rows_in"] == len(frame)
    without_paths = [{k: v for k, v in step.items() if not k.endswith("_path")} for step in chunked_steps]
    assert without_paths == [{k: v for k, v in step.items() if not k.endswith("_path")} for step in whole_steps]
    assert chunked_steps[1]["rows_duplicate"] >= 60 and chunked_steps[2]["success"]
    for zone in ("raw", "clean", "quarantine"):
        pd.testing.assert_frame_equal(read_parquet(lake.lake_file(chunked, zone, "orders", DAY)),
                                      read_parquet(lake.lake_file(whole, zone, "orders", DAY)))
    raw = read_parquet(lake.lake_file(chunked, "raw", "orders", DAY))
    assert raw["_source_line"].tolist() == list(range(1, len(frame) + 1))  # the row in the file, across batches
    assert _validations(chunked) == _validations(whole)
    recorded = []
    for settings in (chunked, whole):
        with MetadataStore(settings.store_url).session() as session:
            recorded.append(session.execute(select(PartitionFile.name, PartitionFile.size_bytes, PartitionFile.sha256,
                                                   PartitionFile.rows)).all())
    assert recorded[0] == recorded[1] and recorded[0][0].rows == len(frame)


def test_a_streamed_parquet_day_stops_at_the_streamed_ceiling(tmp_path, source_data, day_lines, monkeypatch):
    import io

    header, lines = day_lines
    frame = pd.read_csv(io.StringIO(header + "".join(lines)), dtype=str, keep_default_na=False)
    _parquet_orders(tmp_path, monkeypatch)
    monkeypatch.setenv("SHOPFLOW_CHUNK_BYTES", str(CHUNK_BYTES))
    monkeypatch.setenv("SHOPFLOW_MAX_STREAMED_BYTES", str(CHUNK_BYTES * 2))
    settings = _home(tmp_path / "home", source_data)
    landed = _land_parquet(settings, frame, row_group_rows=700)
    with pytest.raises(LandingFileError, match="SHOPFLOW_MAX_STREAMED_BYTES") as raised:
        pipeline.ingest(settings, "orders", DAY)
    assert raised.value.path == str(landed)
    assert not lake.lake_file(settings, "raw", "orders", DAY).exists()
    [partition] = MetadataStore(settings.store_url).partitions("orders", DAY)
    assert partition.status == "failed" and "SHOPFLOW_MAX_STREAMED_BYTES" in partition.error
