"""shopflow.ingest.readers on landing files built from real rows: every format and compression gives the CSV read's values.

The real rows (UCI Online Retail orders, Taobao behaviour, WANDS queries) are converted here with csv/json/pyarrow,
never with the code under test, into TSV, JSON lines (flat, and nested per user), Parquet, gzip and zstd.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import string
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shopflow.common.landing_file import SOURCE_FILE, SOURCE_LINE, LandingFileError
from shopflow.ingest.readers import read_landing, read_landing_file
from shopflow.sources.spec import LandingFileSpec

ORDERS = "events/online_retail_2010-12-01_to_2011-09-30.csv.gz"
BEHAVIOR = "events/taobao_user_behavior_sample.csv.gz"
WANDS = "search/wands_query.tsv.gz"
ORDERS_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID",
                  "Country"]
ORDERS_NUMBERS = {"Quantity", "UnitPrice", "CustomerID"}
BEHAVIOR_COLUMNS = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
JSON_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- real rows and the files built from them ----------------------------------------------------------------------


def _physical_lines(source_data: Path, relative: str, count: int | None = None) -> list[str]:
    text = gzip.decompress((source_data / relative).read_bytes()).decode("utf-8")
    lines = text.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    return lines[:count] if count else lines


@pytest.fixture(scope="module")
def orders_lines(source_data) -> list[str]:
    """The header and the first 299 records of the orders file (one record per physical line)."""
    return _physical_lines(source_data, ORDERS, 300)


@pytest.fixture(scope="module")
def orders_rows(orders_lines) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO("".join(orders_lines), newline="")))
    assert rows[0] == ORDERS_COLUMNS and len(rows) == 300
    return rows[1:]


@pytest.fixture(scope="module")
def behavior_lines(source_data) -> list[str]:
    return _physical_lines(source_data, BEHAVIOR, 300)


@pytest.fixture(scope="module")
def behavior_rows(behavior_lines) -> list[list[str]]:
    return [line.rstrip("\n").split(",") for line in behavior_lines]


def _spec(name: str, columns: list[str], **options) -> LandingFileSpec:
    return LandingFileSpec(name=name, columns=columns, **options)


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.output_stream(sink, compression="zstd") as stream:
        stream.write(data)
    return sink.getvalue().to_pybytes()


COMPRESSIONS = {"": lambda data: data, ".gz": gzip.compress, ".zst": _zstd}


def _tsv(header: list[str] | None, rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerows(([header] if header else []) + rows)
    return buffer.getvalue().encode("utf-8")


def _json_member(column: str, value: str, numbers: set[str]) -> str:
    if column in numbers and value == "":
        return f"{json.dumps(column)}: null"
    if column in numbers and JSON_NUMBER.fullmatch(value):
        return f"{json.dumps(column)}: {value}"  # the literal text, as a JSON number
    return f"{json.dumps(column)}: {json.dumps(value, ensure_ascii=False)}"


def _jsonl(columns: list[str], rows: list[list[str]], numbers: set[str]) -> bytes:
    lines = ["{" + ", ".join(_json_member(c, v, numbers) for c, v in zip(columns, row)) + "}\n" for row in rows]
    return "".join(lines).encode("utf-8")


def _parquet(columns: list[str], rows: list[list[str]]) -> bytes:
    table = pa.table({c: pa.array([row[i] for row in rows], type=pa.string()) for i, c in enumerate(columns)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _values(frame: pd.DataFrame, columns: list[str]) -> list[list[str]]:
    return frame[columns].values.tolist()


def _assert_contract(frame: pd.DataFrame, columns: list[str], file_name: str) -> None:
    assert list(frame.columns) == [SOURCE_FILE, *columns, SOURCE_LINE]
    assert set(frame[SOURCE_FILE]) <= {file_name}
    for column in columns:
        assert frame[column].dtype == pd.StringDtype()
        assert not frame[column].isna().any()
    assert frame[SOURCE_LINE].dtype == "int64"
    assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0


# --- csv: what landing_io reads today ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_default_csv_is_exactly_what_landing_io_reads(tmp_path, orders_lines, behavior_lines, suffix):
    compress = COMPRESSIONS[suffix]
    orders = _write(tmp_path, f"orders.csv{suffix}", compress("".join(orders_lines).encode()))
    blank_line_6 = "".join(orders_lines[:5] + ["\n"] + orders_lines[5:])
    with_blank = _write(tmp_path, f"blank.csv{suffix}", compress(blank_line_6.encode()))
    behavior = _write(tmp_path, f"behavior.csv{suffix}", compress("".join(behavior_lines).encode()))
    cases = [(orders, _spec("orders.csv", ORDERS_COLUMNS)), (with_blank, _spec("blank.csv", ORDERS_COLUMNS)),
             (behavior, _spec("behavior.csv", BEHAVIOR_COLUMNS, header=False))]
    for path, spec in cases:
        facts, frame = read_landing(path, spec)
        expected_facts, expected = read_landing_file(path, spec.columns, has_header=spec.header,
                                                     delimiter=spec.resolved_delimiter)
        assert facts == expected_facts
        pd.testing.assert_frame_equal(frame, expected)
        _assert_contract(frame, spec.columns, path.name)
    frame = read_landing(with_blank, _spec("blank.csv", ORDERS_COLUMNS))[1]
    assert frame[SOURCE_LINE].tolist() == list(range(2, 302))  # the blank line 6 is kept as a row
    assert frame.loc[4, ORDERS_COLUMNS].tolist() == [""] * len(ORDERS_COLUMNS)


def test_facts_are_of_the_bytes_as_landed(tmp_path, orders_lines):
    packed = gzip.compress("".join(orders_lines).encode())
    path = _write(tmp_path, "orders.csv.gz", packed)
    facts, frame = read_landing(path, _spec("orders.csv", ORDERS_COLUMNS))
    assert (facts.name, facts.size_bytes, facts.sha256) == ("orders.csv.gz", len(packed),
                                                            hashlib.sha256(packed).hexdigest())
    assert len(frame) == 299


# --- every other format and compression gives the CSV's values ---------------------------------------------------


def _orders_file(fmt: str, rows: list[list[str]], orders_lines: list[str]) -> tuple[bytes, LandingFileSpec, list[int]]:
    """The orders rows as `fmt`, its spec, and each row's expected `_source_line`."""
    if fmt == "csv":
        return "".join(orders_lines).encode(), _spec("orders.csv", ORDERS_COLUMNS), list(range(2, 301))
    if fmt == "tsv":
        return _tsv(ORDERS_COLUMNS, rows), _spec("orders.tsv", ORDERS_COLUMNS), list(range(2, 301))
    if fmt == "jsonl":
        return _jsonl(ORDERS_COLUMNS, rows, ORDERS_NUMBERS), _spec("orders.jsonl", ORDERS_COLUMNS), list(range(1, 300))
    return _parquet(ORDERS_COLUMNS, rows), _spec("orders.parquet", ORDERS_COLUMNS), list(range(1, 300))


@pytest.mark.parametrize("suffix", list(COMPRESSIONS))
@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_every_format_and_compression_reads_the_real_orders_rows(tmp_path, orders_rows, orders_lines, fmt, suffix):
    data, spec, lines = _orders_file(fmt, orders_rows, orders_lines)
    landed = COMPRESSIONS[suffix](data)
    path = _write(tmp_path, spec.name + suffix, landed)
    facts, frame = read_landing(path, spec)
    assert facts.size_bytes == len(landed) and facts.sha256 == hashlib.sha256(landed).hexdigest()
    _assert_contract(frame, ORDERS_COLUMNS, path.name)
    assert _values(frame, ORDERS_COLUMNS) == orders_rows
    assert frame[SOURCE_LINE].tolist() == lines
    assert (frame[SOURCE_FILE] == path.name).all()


def test_jsonl_numbers_keep_their_literal_text(tmp_path, source_data, orders_rows):
    without_customer = [line for line in _physical_lines(source_data, ORDERS)[1:] if ",," in line][:20]
    assert without_customer, "the orders file was expected to hold rows without CustomerID"
    rows = orders_rows[:10] + list(csv.reader(without_customer))
    path = _write(tmp_path, "orders.jsonl", _jsonl(ORDERS_COLUMNS, rows, ORDERS_NUMBERS))
    first = path.read_text().split("\n")[0]
    assert '"CustomerID": 17850.0' in first and '"UnitPrice": 2.55' in first and '"Quantity": 6' in first
    assert '"CustomerID": null' in path.read_text()
    frame = read_landing(path, _spec("orders.jsonl", ORDERS_COLUMNS))[1]
    assert frame.loc[0, ["Quantity", "UnitPrice", "CustomerID"]].tolist() == ["6", "2.55", "17850.0"]
    assert _values(frame, ORDERS_COLUMNS) == rows


def test_jsonl_blank_lines_are_skipped_and_lines_are_physical(tmp_path, orders_rows):
    records = _jsonl(ORDERS_COLUMNS, orders_rows[:4], ORDERS_NUMBERS).decode().splitlines()
    text = "\n" + records[0] + "\n  \n" + records[1] + "\r\n" + records[2] + "\n\n\n" + records[3]  # no final newline
    path = _write(tmp_path, "orders.jsonl", text.encode())
    frame = read_landing(path, _spec("orders.jsonl", ORDERS_COLUMNS))[1]
    assert frame[SOURCE_LINE].tolist() == [2, 4, 5, 8]
    assert _values(frame, ORDERS_COLUMNS) == orders_rows[:4]


def test_tsv_of_the_real_wands_queries(tmp_path, source_data):
    lines = _physical_lines(source_data, WANDS)
    columns = lines[0].rstrip("\n").split("\t")
    path = _write(tmp_path, "queries.tsv", "".join(lines).encode())
    frame = read_landing(path, _spec("queries.tsv", columns))[1]
    expected = list(csv.reader(io.StringIO("".join(lines[1:]), newline=""), delimiter="\t"))
    assert _values(frame, columns) == expected
    assert frame[SOURCE_LINE].tolist() == list(range(2, len(lines) + 1))
    assert 'fawkes 36" blue vanity' in frame["query"].tolist()


# --- nested JSON: one line per user, its behaviour events exploded ----------------------------------------------


def _sessions_by_user(behavior_rows: list[list[str]]) -> tuple[bytes, dict[str, int]]:
    """One JSON line per user (in order of first appearance): ids as JSON numbers, the events as a list."""
    users: dict[str, list[dict]] = {}
    for user_id, item_id, category_id, behavior_type, timestamp in behavior_rows:
        users.setdefault(user_id, []).append({"item_id": int(item_id), "category_id": int(category_id),
                                              "behavior_type": behavior_type, "ts": int(timestamp)})
    lines = [json.dumps({"user_id": int(user), "device": {"os": "android"}, "events": events}) + "\n"
             for user, events in users.items()]
    return "".join(lines).encode(), {user: number for number, user in enumerate(users, start=1)}


NESTED_BEHAVIOR = dict(records="events", fields={"user_id": "user_id", "timestamp": "events[].ts"})


@pytest.mark.parametrize("suffix", list(COMPRESSIONS))
def test_nested_sessions_explode_to_the_real_behaviour_rows(tmp_path, behavior_rows, behavior_lines, suffix):
    data, line_of_user = _sessions_by_user(behavior_rows)
    assert len(line_of_user) > 1, "the first behaviour rows were expected to span several users"
    path = _write(tmp_path, "sessions.jsonl" + suffix, COMPRESSIONS[suffix](data))
    frame = read_landing(path, _spec("sessions.jsonl", BEHAVIOR_COLUMNS, **NESTED_BEHAVIOR))[1]
    _assert_contract(frame, BEHAVIOR_COLUMNS, path.name)
    csv_frame = read_landing(_write(tmp_path, "behavior.csv", "".join(behavior_lines).encode()),
                             _spec("behavior.csv", BEHAVIOR_COLUMNS, header=False))[1]
    assert sorted(_values(frame, BEHAVIOR_COLUMNS)) == sorted(_values(csv_frame, BEHAVIOR_COLUMNS))
    assert frame[SOURCE_LINE].tolist() == [line_of_user[user] for user in frame["user_id"]]


def test_paths_outside_the_records_list_repeat_per_row(tmp_path, behavior_rows):
    data, _ = _sessions_by_user(behavior_rows)
    spec = _spec("sessions.jsonl", ["user_id", "os", "behavior_type"], records="events",
                 fields={"user_id": "user_id", "os": "device.os"})
    frame = read_landing(_write(tmp_path, "sessions.jsonl", data), spec)[1]
    assert (frame["os"] == "android").all()
    assert frame["user_id"].tolist() == sorted((row[0] for row in behavior_rows), key=list(
        dict.fromkeys(row[0] for row in behavior_rows)).index)


def test_records_under_an_object_and_a_list_of_scalars(tmp_path):
    lines = [{"session": {"id": "s1", "events": [{"ts": 1}, {"ts": 2.50}]}},
             {"session": {"id": "s2", "events": []}},
             {"session": {"id": "s3"}},
             {"session": {"id": "s4", "events": None}},
             {"session": {"id": "s5", "events": [{"ts": True, "x": {"deep": [1, 2.0, "é"]}}]}}]
    path = _write(tmp_path, "s.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode())
    spec = _spec("s.jsonl", ["id", "ts", "x"], records="session.events", fields={"id": "session.id"})
    frame = read_landing(path, spec)[1]
    assert _values(frame, ["id", "ts", "x"]) == [["s1", "1", ""], ["s1", "2.5", ""],
                                                 ["s5", "true", '{"deep":[1,2.0,"é"]}']]
    assert frame[SOURCE_LINE].tolist() == [1, 1, 5]  # empty, absent and null records lists give no rows

    tags = _write(tmp_path, "t.jsonl", b'{"id": 7, "tags": ["a", 1.50, null, {"k": 1}]}\n')
    frame = read_landing(tags, _spec("t.jsonl", ["id", "tag"], records="tags", fields={"id": "id", "tag": "tags[]"}))[1]
    assert _values(frame, ["id", "tag"]) == [["7", "a"], ["7", "1.50"], ["7", ""], ["7", '{"k":1}']]


def test_nested_values_keep_their_numbers_as_written(tmp_path):
    path = _write(tmp_path, "n.jsonl", b'{"a": {"p": 1.50, "q": [1e5, -0, null, "\\u00e9"]}, "b": 1E-3}\n'
                                       + b'{"a": ' + b"[" * 900 + b"]" * 900 + b"}\n")
    frame = read_landing(path, _spec("n.jsonl", ["a", "b"]))[1]
    assert frame["a"].tolist() == ['{"p":1.50,"q":[1e5,-0,null,"\u00e9"]}', "[" * 900 + "]" * 900]
    assert frame["b"].tolist() == ["1E-3", ""]


def test_empty_jsonl_gives_an_empty_frame_of_the_contract(tmp_path):
    frame = read_landing(_write(tmp_path, "e.jsonl", b"\n \n"), _spec("e.jsonl", ["a", "b"]))[1]
    assert len(frame) == 0
    _assert_contract(frame, ["a", "b"], "e.jsonl")


# --- compression by magic bytes, and files that are not what their name says --------------------------------------


@pytest.mark.parametrize("compression,name", [(".gz", "orders.csv"), (".gz", "orders"), (".gz", "orders.csv.zst"),
                                              (".zst", "orders.csv"), (".zst", "orders.csv.gz"),
                                              (".zst", "orders.dat")])
def test_compression_is_recognised_by_its_magic_bytes(tmp_path, orders_lines, orders_rows, compression, name):
    path = _write(tmp_path, name, COMPRESSIONS[compression]("".join(orders_lines).encode()))
    frame = read_landing(path, _spec("orders.csv", ORDERS_COLUMNS, format="csv"))[1]
    assert _values(frame, ORDERS_COLUMNS) == orders_rows
    assert (frame[SOURCE_FILE] == name).all()


@pytest.mark.parametrize("name", ["orders.csv.gz", "orders.csv.zst", "orders.csv.zstd"])
def test_a_compression_suffix_on_plain_bytes_is_refused(tmp_path, orders_lines, name):
    path = _write(tmp_path, name, "".join(orders_lines).encode())
    with pytest.raises(LandingFileError, match="not a readable gzip/zstd file") as caught:
        read_landing(path, _spec("orders.csv", ORDERS_COLUMNS))
    assert caught.value.line is None and caught.value.path == str(path)


@pytest.mark.parametrize("compression", [".gz", ".zst"])
def test_a_corrupt_compressed_stream_is_refused(tmp_path, orders_lines, compression):
    packed = COMPRESSIONS[compression]("".join(orders_lines).encode())
    for name, data in [("truncated", packed[: len(packed) // 2]), ("garbled", packed[:12] + b"\x00" * 64)]:
        path = _write(tmp_path, f"{name}.csv{compression}", data)
        with pytest.raises(LandingFileError, match=r"not a readable gzip/zstd file \((gzip|zstd): "):
            read_landing(path, _spec("orders.csv", ORDERS_COLUMNS))


# --- JSON errors name the line ----------------------------------------------------------------------------------


def test_invalid_json_names_its_line(tmp_path, orders_rows):
    records = _jsonl(ORDERS_COLUMNS, orders_rows[:6], ORDERS_NUMBERS).decode().splitlines(keepends=True)
    records[4] = records[4][:-10] + "\n"  # line 5 is cut short
    path = _write(tmp_path, "orders.jsonl", "".join(records).encode())
    with pytest.raises(LandingFileError, match=r", line 5: invalid JSON \(") as caught:
        read_landing(path, _spec("orders.jsonl", ORDERS_COLUMNS))
    assert caught.value.line == 5


@pytest.mark.parametrize("bad_line,spec_options,message", [
    ('["a", "b"]', {}, "expected a JSON object, found an array"),
    ('"text"', {}, "expected a JSON object, found a string"),
    ('{"id": "x", "events": {"ts": 1}}', {"records": "events"}, "records path 'events' is an object, not an array"),
    ('{"id": "x", "events": "none"}', {"records": "events"}, "records path 'events' is a string, not an array"),
    ('{"id": {"a": 1}, "session": 3}', {"records": "session.events"}, "crosses 'session', which is a number"),
    ('{"id": "x", "device": "ios"}', {"fields": {"ts": "device.os"}}, "field path 'device.os' crosses 'device'"),
    ('{"id": "x", "events": [{"ts": 1}, [2]]}', {"records": "events", "fields": {"id": "id", "ts": "events[].ts.v"}},
     "crosses 'events[0].ts', which is a number, not an object"),
    ('{"id": "x", "events": [{"ts": {"v": 1}}, [2]]}',
     {"records": "events", "fields": {"id": "id", "ts": "events[].ts.v"}}, "crosses 'events[1]', which is an array"),
])
def test_json_structure_errors_name_the_line(tmp_path, bad_line, spec_options, message):
    good = '{"id": "ok", "device": {"os": "ios"}, "events": [{"ts": {"v": 1}}], "session": {"events": []}}'
    path = _write(tmp_path, "x.jsonl", f"{good}\n\n{bad_line}\n".encode())
    with pytest.raises(LandingFileError, match=", line 3: ") as caught:
        read_landing(path, _spec("x.jsonl", ["id", "ts"], **spec_options))
    assert message in str(caught.value)


def test_a_path_exploding_another_list_is_a_spec_error(tmp_path):
    path = _write(tmp_path, "x.jsonl", b'{"a": [1]}\n')
    with pytest.raises(ValueError, match="explodes a list"):
        read_landing(path, _spec("x.jsonl", ["a"], fields={"a": "a[]"}))


# --- encodings and quoting ----------------------------------------------------------------------------------------


def test_a_latin1_csv_reads_as_its_utf8_twin(tmp_path, source_data, orders_lines):
    pound_lines = [line for line in _physical_lines(source_data, ORDERS) if "£" in line][:5]
    assert pound_lines, "the orders file was expected to hold rows with a £ sign"
    text = orders_lines[0] + "".join(pound_lines) + "".join(orders_lines[1:20])
    latin = read_landing(_write(tmp_path, "latin.csv", text.encode("latin-1")),
                         _spec("latin.csv", ORDERS_COLUMNS, encoding="latin-1"))[1]
    utf8 = read_landing(_write(tmp_path, "utf8.csv", text.encode()), _spec("utf8.csv", ORDERS_COLUMNS))[1]
    assert _values(latin, ORDERS_COLUMNS) == _values(utf8, ORDERS_COLUMNS)
    assert latin[SOURCE_LINE].tolist() == utf8[SOURCE_LINE].tolist()
    assert "Dotcomgiftshop Gift Voucher £40.00" in latin["Description"].tolist()
    with pytest.raises(LandingFileError, match=r", line 2: not valid UTF-8 \(byte 0xa3\)"):
        read_landing(_write(tmp_path, "latin-as-utf8.csv", text.encode("latin-1")), _spec("x.csv", ORDERS_COLUMNS))


def test_a_latin1_jsonl_reads_as_its_utf8_twin(tmp_path, source_data):
    columns = ["query_id", "query", "query_class"]
    rows = [line.rstrip("\n").split("\t") for line in _physical_lines(source_data, WANDS)[1:9]]
    assert any("é" in row[2] for row in rows), "the first WANDS queries were expected to include a Décor class"
    text = _jsonl(columns, rows, {"query_id"}).decode()
    frame = read_landing(_write(tmp_path, "q.jsonl", text.encode("latin-1")),
                         _spec("q.jsonl", columns, encoding="latin-1"))[1]
    assert _values(frame, columns) == rows


def test_an_undecodable_byte_names_its_line(tmp_path, source_data):
    lines = _physical_lines(source_data, WANDS)[1:3]
    data = "".join(lines).encode("cp1252") + b"999\tundefined \x81 byte\tDesks\n"
    spec = _spec("q.tsv", ["query_id", "query", "query_class"], header=False, encoding="cp1252")
    with pytest.raises(LandingFileError, match=r", line 3: not valid cp1252 \(byte 0x81\)") as caught:
        read_landing(_write(tmp_path, "q.tsv", data), spec)
    assert caught.value.line == 3


@pytest.mark.parametrize("blank_line", [False, True], ids=["arrow", "csv-module"])
def test_quotechar_null_keeps_quotes_as_text(tmp_path, source_data, blank_line):
    lines = _physical_lines(source_data, WANDS)
    columns = lines[0].rstrip("\n").split("\t")
    quoted = [line for line in lines[1:] if '"' in line]
    assert quoted, "the WANDS queries were expected to include quoted ones"
    body = lines[1:4] + quoted + (["\n"] if blank_line else []) + lines[4:8]
    path = _write(tmp_path, "queries.tsv", (lines[0] + "".join(body)).encode())
    frame = read_landing(path, _spec("queries.tsv", columns, quotechar=None))[1]
    expected = [line.rstrip("\n").split("\t") if line != "\n" else ["", "", ""] for line in body]
    assert _values(frame, columns) == expected
    assert frame[SOURCE_LINE].tolist() == list(range(2, len(body) + 2))
    assert '"writing desk 48"""' in frame["query"].tolist()


def test_quotechar_null_splits_a_quoted_delimiter(tmp_path, orders_lines):
    quoted = next(n for n, line in enumerate(orders_lines, start=1) if len(line.split(",")) != 8)
    assert '"' in orders_lines[quoted - 1]
    path = _write(tmp_path, "orders.csv", "".join(orders_lines).encode())
    with pytest.raises(LandingFileError, match=rf", line {quoted}: expected 8 fields, found 9"):
        read_landing(path, _spec("orders.csv", ORDERS_COLUMNS, quotechar=None))


def test_another_quotechar(tmp_path, behavior_rows):
    rows = [[f"'{value},x'" if i == 3 else value for i, value in enumerate(row)] for row in behavior_rows[:10]]
    path = _write(tmp_path, "b.csv", "".join(",".join(row) + "\n" for row in rows).encode())
    frame = read_landing(path, _spec("b.csv", BEHAVIOR_COLUMNS, header=False, quotechar="'"))[1]
    assert frame["behavior_type"].tolist() == [f"{row[3]},x" for row in behavior_rows[:10]]


# --- parquet --------------------------------------------------------------------------------------------------------


def test_parquet_missing_a_declared_column(tmp_path, orders_rows):
    path = _write(tmp_path, "orders.parquet", _parquet(ORDERS_COLUMNS[:-1], [row[:-1] for row in orders_rows]))
    with pytest.raises(LandingFileError, match=r"parquet: missing columns \['Country'\]; the file has \[") as caught:
        read_landing(path, _spec("orders.parquet", ORDERS_COLUMNS))
    assert caught.value.line is None


def test_parquet_typed_columns_become_text(tmp_path, orders_rows):
    head = orders_rows[:5]
    table = pa.table({
        "InvoiceDate": pa.array([pd.Timestamp(row[4]) for row in head], type=pa.timestamp("s")),
        "Quantity": pa.array([int(row[3]) for row in head], type=pa.int64()),
        "CustomerID": pa.array([None] + [float(row[6]) for row in head[1:]], type=pa.float64()),
        "extra": pa.array(["ignored"] * 5),
        "line": pa.array([{"stock": row[1], "quantity": int(row[3])} for row in head]),
    })
    sink = io.BytesIO()
    pq.write_table(table, sink)
    frame = read_landing(_write(tmp_path, "typed.parquet", sink.getvalue()),
                         _spec("typed.parquet", ["Quantity", "InvoiceDate", "CustomerID", "line"]))[1]
    _assert_contract(frame, ["Quantity", "InvoiceDate", "CustomerID", "line"], "typed.parquet")
    assert frame["InvoiceDate"].tolist() == [row[4] + ".000" for row in head]  # Parquet keeps seconds as ms
    assert frame["Quantity"].tolist() == [row[3] for row in head]
    assert frame["CustomerID"].tolist() == [""] + [row[6].removesuffix(".0") for row in head[1:]]  # Arrow: 17850
    assert frame["line"].tolist() == [f'{{"stock":"{row[1]}","quantity":{row[3]}}}' for row in head]
    assert frame[SOURCE_LINE].tolist() == [1, 2, 3, 4, 5]


def test_bytes_that_are_not_parquet(tmp_path, orders_lines):
    path = _write(tmp_path, "orders.parquet", "".join(orders_lines).encode())
    with pytest.raises(LandingFileError, match="not a readable Parquet file"):
        read_landing(path, _spec("orders.parquet", ORDERS_COLUMNS))


# --- properties of the JSON path ----------------------------------------------------------------------------------

KEY = st.text(alphabet=string.ascii_letters + string.digits + "_- é", min_size=1, max_size=6).filter(
    lambda key: not key.startswith("_source"))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
                   st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=3), st.dictionaries(KEY, SCALAR, max_size=3))
EVENT = st.fixed_dictionaries({"item": st.integers(min_value=0, max_value=10**12), "kind": st.text(max_size=8)},
                              optional={"price": st.one_of(st.none(), st.floats(allow_nan=False,
                                                                                allow_infinity=False))})
SESSION = st.fixed_dictionaries({"session_id": st.text(max_size=10),
                                 "device": st.one_of(st.none(), st.fixed_dictionaries({"os": st.text(max_size=5)})),
                                 "events": st.lists(EVENT, max_size=5)})


def _expected_text(value) -> str:
    """What a JSON value's literal text is as a column value (json.dumps writes each number as Python reads it)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@PROPERTIES
@given(sessions=st.lists(SESSION, max_size=8), blank_before=st.lists(st.integers(0, 2), min_size=8, max_size=8),
       ascii_only=st.booleans())
def test_random_sessions_explode_one_row_per_event(tmp_path_factory, sessions, blank_before, ascii_only):
    text, line_of = "", []
    for session, blanks in zip(sessions, blank_before):
        text += "\n" * blanks
        line_of.append(text.count("\n") + 1)
        text += json.dumps(session, ensure_ascii=ascii_only) + "\n"
    path = _write(tmp_path_factory.mktemp("sessions"), "s.jsonl", text.encode())
    columns = ["session_id", "os", "item", "kind", "price"]
    spec = _spec("s.jsonl", columns, records="events", fields={"session_id": "session_id", "os": "device.os"})
    frame = read_landing(path, spec)[1]
    expected = [[s["session_id"], _expected_text((s["device"] or {}).get("os")), str(e["item"]), e["kind"],
                 _expected_text(e.get("price")), line]
                for s, line in zip(sessions, line_of) for e in s["events"]]
    assert len(frame) == sum(len(s["events"]) for s in sessions)
    assert frame[[*columns, SOURCE_LINE]].values.tolist() == expected
    _assert_contract(frame, columns, "s.jsonl")


@PROPERTIES
@given(records=st.lists(st.dictionaries(KEY, VALUE, max_size=5), min_size=1, max_size=6), ascii_only=st.booleans())
def test_random_flat_records_round_trip_to_their_literal_text(tmp_path_factory, records, ascii_only):
    columns = list(dict.fromkeys(key for record in records for key in record)) or ["absent"]
    text = "".join(json.dumps(record, ensure_ascii=ascii_only) + "\n" for record in records)
    path = _write(tmp_path_factory.mktemp("flat"), "f.jsonl", text.encode())
    frame = read_landing(path, _spec("f.jsonl", columns))[1]
    assert _values(frame, columns) == [[_expected_text(record.get(c)) for c in columns] for record in records]
    assert frame[SOURCE_LINE].tolist() == list(range(1, len(records) + 1))
    _assert_contract(frame, columns, "f.jsonl")


ANY_BYTES = st.one_of(st.binary(max_size=200), st.lists(st.sampled_from(
    [b"{", b"}", b"[", b"]", b'"a"', b'"events"', b":", b",", b"1", b"null", b"\n", b" ", b"\xff", b"\xc3\xa9", b"PAR1",
     b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b'"', b"\t"]), max_size=40).map(b"".join))


@PROPERTIES
@given(data=ANY_BYTES, name=st.sampled_from(["x.csv", "x.tsv", "x.jsonl", "x.parquet", "x.csv.gz", "x.jsonl.zst"]),
       records=st.booleans(), quotechar=st.sampled_from(['"', None]))
def test_arbitrary_bytes_give_a_frame_or_a_landing_file_error(tmp_path_factory, data, name, records, quotechar):
    fmt = name.split(".")[1]
    options = {"records": "events", "fields": {"a": "a"}} if records and fmt == "jsonl" else {}
    if fmt in ("csv", "tsv"):
        options["quotechar"] = quotechar
    path = _write(tmp_path_factory.mktemp("bytes"), name, data)
    try:
        frame = read_landing(path, _spec(name, ["a", "b"], header=False, **options))[1]
    except LandingFileError as exc:
        assert exc.path == str(path) and (exc.line is None or exc.line >= 1)
        return
    _assert_contract(frame, ["a", "b"], name)
    assert path.read_bytes() == data
