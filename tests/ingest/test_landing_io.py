"""read_delimited on landing files built from real rows: line numbers, errors that name file and line, no writes."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from datetime import date

import pandas as pd
import pytest
from sample_rows import (
    BEHAVIOR_FILE,
    CATALOG_FULL,
    CATALOG_NAMES,
    CATALOG_PRICES,
    OLIST_TRANSLATION,
    data_path,
    orders_frame,
    orders_header,
    orders_lines,
    records,
    write_landing,
)
from shopflow.common.landing_file import SOURCE_FILE, SOURCE_LINE, LandingFileError
from shopflow.ingest.readers import read_delimited
from shopflow.sources import get_source
from shopflow.sources.catalog import combine
from shopflow.sources.cleaning import REASON, clean_partition

ORDERS_COLUMNS = get_source("orders").files[0].columns
BEHAVIOR_COLUMNS = get_source("behavior").files[0].columns
CATALOG_FILES = {f.name: f for f in get_source("catalog").files}
FULL_COLUMNS = CATALOG_FILES["flipkart_full_columns.csv"].columns


def _first_orders_lines(n: int = 20) -> list[str]:
    return orders_lines(range(2, 2 + n))


def _full_records_with_multiline(count: int = 3):
    """The first real full-columns records, up to and including `count` whose description spans several lines."""
    chosen, multiline = [], 0
    for record in records(CATALOG_FULL)[1:]:
        chosen.append(record)
        multiline += record.end_line > record.line
        if multiline == count:
            return chosen
    raise AssertionError("the full-columns file was expected to hold multi-line records")


# --- the happy path keeps every value as text, and each record's physical line -----------------------------------


def test_real_orders_rows_read_as_strings_with_lines(tmp_path):
    lines = _first_orders_lines(30)
    path = write_landing(tmp_path, "orders.csv", lines, header=orders_header())
    frame = read_delimited(path, ORDERS_COLUMNS, has_header=True)
    assert list(frame.columns) == [SOURCE_FILE, *ORDERS_COLUMNS, SOURCE_LINE]
    assert len(frame) == 30
    assert frame[SOURCE_LINE].tolist() == list(range(2, 32))
    assert set(frame[SOURCE_FILE]) == {"orders.csv"}
    expected = orders_frame().iloc[:30]
    for column in ORDERS_COLUMNS:
        assert frame[column].tolist() == expected[column].tolist(), column
        assert isinstance(frame[column].dtype, pd.StringDtype)
    assert frame["CustomerID"].iloc[0] == "17850.0"  # no numeric parsing before cleaning


def test_empty_values_stay_empty_strings_not_null(tmp_path):
    row = orders_frame()
    hit = row[(row["Description"] == "") & (row["CustomerID"] == "")].iloc[0]
    path = write_landing(tmp_path, "orders.csv", orders_lines([hit["line"]]), header=orders_header())
    frame = read_delimited(path, ORDERS_COLUMNS, has_header=True)
    assert frame.loc[0, "Description"] == "" and frame.loc[0, "CustomerID"] == ""
    assert not frame[ORDERS_COLUMNS].isna().any().any()


def test_header_less_behavior_file_keeps_first_row_as_data(tmp_path):
    rows = records(BEHAVIOR_FILE)[:5]
    path = write_landing(tmp_path, "behavior.csv", [r.text for r in rows])
    frame = read_delimited(path, BEHAVIOR_COLUMNS, has_header=False)
    assert frame[SOURCE_LINE].tolist() == [1, 2, 3, 4, 5]
    assert tuple(frame.loc[0, BEHAVIOR_COLUMNS]) == rows[0].fields


def test_quoted_newlines_keep_the_physical_start_line(tmp_path):
    chosen = _full_records_with_multiline(3)
    header = records(CATALOG_FULL)[0].text
    path = write_landing(tmp_path, "flipkart_full_columns.csv", [r.text for r in chosen], header=header)
    frame = read_delimited(path, FULL_COLUMNS, has_header=True)
    # Start lines computed independently: header is line 1, each record advances by its own newline count.
    expected, line = [], 2
    for record in chosen:
        expected.append(line)
        line += record.text.count("\n")
    assert frame[SOURCE_LINE].tolist() == expected
    assert expected != list(range(2, 2 + len(chosen))), "the sample must contain multi-line records"
    assert [tuple(r) for r in frame[FULL_COLUMNS].itertuples(index=False)] == [r.fields for r in chosen]
    assert any("\n" in d for d in frame["description"])


def test_whole_full_columns_file_lines_match_the_source(tmp_path):
    # The real file: CRLF line ends, 270 multi-line records and 3,995 blank rows ending at physical line 5994.
    landed = tmp_path / "flipkart_full_columns.csv.gz"
    shutil.copyfile(data_path(CATALOG_FULL), landed)
    frame = read_delimited(landed, FULL_COLUMNS, has_header=True)
    source = records(CATALOG_FULL)[1:]
    assert len(frame) == len(source) == 4804
    assert frame[SOURCE_LINE].tolist() == [r.line for r in source]
    assert frame[SOURCE_LINE].iloc[-1] == 5994
    assert not frame["product_specifications"].str.endswith("\r").any()


def test_crlf_prices_file_leaves_no_carriage_returns(tmp_path):
    landed = tmp_path / "flipkart_prices_brand.csv.gz"
    shutil.copyfile(data_path(CATALOG_PRICES), landed)
    frame = read_delimited(landed, CATALOG_FILES["flipkart_prices_brand.csv"].columns, has_header=True)
    assert len(frame) == 16028
    assert frame[SOURCE_LINE].tolist() == list(range(2, 16030))
    assert not frame["brand"].str.contains("\r").any()


def test_header_with_utf8_bom_is_accepted(tmp_path):
    # The Olist translation file's header starts with a BOM (SOURCES.md).
    landed = tmp_path / "translation.csv.gz"
    shutil.copyfile(data_path(OLIST_TRANSLATION), landed)
    assert gzip.decompress(landed.read_bytes()).startswith(b"\xef\xbb\xbf")
    frame = read_delimited(landed, ["product_category_name", "product_category_name_english"], has_header=True)
    assert len(frame) == 71
    assert not frame["product_category_name"].str.startswith("\ufeff").any()


def test_gzip_landing_file_reads_like_the_plain_one(tmp_path):
    lines = _first_orders_lines(25)
    plain = write_landing(tmp_path, "orders.csv", lines, header=orders_header())
    packed = tmp_path / "gz" / "orders.csv.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a = read_delimited(plain, ORDERS_COLUMNS, has_header=True)
    b = read_delimited(packed, ORDERS_COLUMNS, has_header=True)
    pd.testing.assert_frame_equal(a.drop(columns=[SOURCE_FILE]), b.drop(columns=[SOURCE_FILE]))
    assert set(b[SOURCE_FILE]) == {"orders.csv.gz"}


def test_blank_line_is_kept_as_an_empty_row_at_its_line(tmp_path):
    lines = _first_orders_lines(4)
    path = write_landing(tmp_path, "orders.csv", lines[:2] + ["\n"] + lines[2:], header=orders_header())
    frame = read_delimited(path, ORDERS_COLUMNS, has_header=True)
    assert frame[SOURCE_LINE].tolist() == [2, 3, 4, 5, 6]
    assert (frame.loc[2, ORDERS_COLUMNS] == "").all()
    assert frame.loc[3, "StockCode"] == orders_frame().iloc[2]["StockCode"]


def test_empty_files(tmp_path):
    with_header = tmp_path / "orders.csv"
    with_header.write_bytes(b"")
    with pytest.raises(LandingFileError) as caught:
        read_delimited(with_header, ORDERS_COLUMNS, has_header=True)
    assert caught.value.line == 1
    header_less = tmp_path / "behavior.csv"
    header_less.write_bytes(b"")
    frame = read_delimited(header_less, BEHAVIOR_COLUMNS, has_header=False)
    assert len(frame) == 0 and list(frame.columns) == [SOURCE_FILE, *BEHAVIOR_COLUMNS, SOURCE_LINE]


# --- errors name the file and the physical line ---------------------------------------------------------------------


def _drop_last_field(line: str) -> str:
    body = line.rstrip("\r\n")
    return body.rsplit(",", 1)[0] + line[len(body):]


@pytest.mark.parametrize("bad_at", [0, 7, 19])
def test_wrong_field_count_names_file_and_line(tmp_path, bad_at):
    lines = _first_orders_lines(20)
    lines[bad_at] = _drop_last_field(lines[bad_at])
    path = write_landing(tmp_path, "orders.csv", lines, header=orders_header())
    with pytest.raises(LandingFileError) as caught:
        read_delimited(path, ORDERS_COLUMNS, has_header=True)
    assert caught.value.line == bad_at + 2
    assert caught.value.path == str(path)
    assert f"orders.csv, line {bad_at + 2}:" in str(caught.value)
    assert "expected 8 fields, found 7" in str(caught.value)


def test_extra_field_in_header_less_file_names_the_line(tmp_path):
    rows = [r.text for r in records(BEHAVIOR_FILE)[:10]]
    rows[4] = rows[4].rstrip("\n") + ",extra\n"
    path = write_landing(tmp_path, "behavior.csv", rows)
    with pytest.raises(LandingFileError, match=r"behavior\.csv, line 5: expected 5 fields, found 6"):
        read_delimited(path, BEHAVIOR_COLUMNS, has_header=False)


def test_wrong_field_count_after_multiline_records_names_the_physical_line(tmp_path):
    chosen = _full_records_with_multiline(2)
    header = records(CATALOG_FULL)[0].text
    bad = chosen[-1].text.replace(",", ";", 1)  # uniq_id;crawl_timestamp: one field fewer
    texts = [r.text for r in chosen[:-1]] + [bad]
    path = write_landing(tmp_path, "flipkart_full_columns.csv", texts, header=header)
    expected_line = 2 + sum(r.text.count("\n") for r in chosen[:-1])
    assert expected_line > len(chosen) + 1  # records before it span more than one line each on average
    with pytest.raises(LandingFileError) as caught:
        read_delimited(path, FULL_COLUMNS, has_header=True)
    assert caught.value.line == expected_line


def test_wrong_header_fails_at_line_1(tmp_path):
    header = orders_header().replace("Quantity,InvoiceDate", "InvoiceDate,Quantity")
    path = write_landing(tmp_path, "orders.csv", _first_orders_lines(3), header=header)
    with pytest.raises(LandingFileError) as caught:
        read_delimited(path, ORDERS_COLUMNS, has_header=True)
    assert caught.value.line == 1
    assert "orders.csv, line 1: header" in str(caught.value)


def test_header_row_in_a_header_less_file_is_data_and_fails_cleaning_not_reading(tmp_path):
    # The names file has no header; a copy that gained one still reads (the header is a data row at line 1) and
    # cleaning quarantines that row with its line. Read as a header-bearing file, the wrong header fails at line 1.
    rows = [r.text for r in records(CATALOG_NAMES)[:3]]
    path = write_landing(tmp_path, "flipkart_name_category_tree.csv", rows,
                         header="uniq_id,product_name,product_category_tree\n")
    frame = read_delimited(path, CATALOG_FILES["flipkart_name_category_tree.csv"].columns, has_header=False)
    assert frame.loc[0, "uniq_id"] == "uniq_id" and frame.loc[0, SOURCE_LINE] == 1
    raw = combine({"flipkart_name_category_tree.csv": frame})
    result = clean_partition(get_source("catalog"), raw, date(2015, 12, 3))
    assert result.quarantine[[REASON, SOURCE_LINE]].values.tolist() == [["invalid_key", 1]]
    assert result.ledger.rows_clean == 3
    with pytest.raises(LandingFileError) as caught:
        read_delimited(path, ORDERS_COLUMNS, has_header=True)
    assert caught.value.line == 1


@pytest.mark.parametrize("bad_at", [0, 11])
def test_invalid_utf8_names_the_line(tmp_path, bad_at):
    lines = _first_orders_lines(15)
    path = tmp_path / "orders.csv"
    data = [orders_header().encode()] + [line.encode() for line in lines]
    data[bad_at + 1] = data[bad_at + 1].replace(b",", b",\xe9", 1)  # a Latin-1 'é' at the start of StockCode
    path.write_bytes(b"".join(data))
    with pytest.raises(LandingFileError) as caught:
        read_delimited(path, ORDERS_COLUMNS, has_header=True)
    assert caught.value.line == bad_at + 2
    assert "not valid UTF-8" in str(caught.value)


def test_invalid_utf8_after_multiline_records_names_the_physical_line(tmp_path):
    chosen = _full_records_with_multiline(2)
    header = records(CATALOG_FULL)[0].text.encode()
    body = [r.text.encode() for r in chosen]
    body[-1] = body[-1].replace(b"http", b"\xc3(ttp", 1)
    path = tmp_path / "flipkart_full_columns.csv"
    path.write_bytes(header + b"".join(body))
    with pytest.raises(LandingFileError) as caught:
        read_delimited(path, FULL_COLUMNS, has_header=True)
    assert caught.value.line == 2 + sum(r.text.count("\n") for r in chosen[:-1])


def test_invalid_utf8_in_header_names_line_1(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_bytes(orders_header().replace("Country", "Countr\xff").encode("latin-1") + b"".join(
        line.encode() for line in _first_orders_lines(2)))
    with pytest.raises(LandingFileError) as caught:
        read_delimited(path, ORDERS_COLUMNS, has_header=True)
    assert caught.value.line == 1


def test_unterminated_quote_fails_cleanly(tmp_path):
    lines = _first_orders_lines(5)
    lines[3] = lines[3].replace(",", ',"', 2)
    path = write_landing(tmp_path, "orders.csv", lines, header=orders_header())
    with pytest.raises(LandingFileError) as caught:
        read_delimited(path, ORDERS_COLUMNS, has_header=True)
    assert caught.value.line is not None and caught.value.line >= 5


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda gz: b"this is not gzip at all", id="not-gzip"),
        pytest.param(lambda gz: gz[: len(gz) // 2], id="truncated"),
        pytest.param(lambda gz: gz[:10], id="header-only"),
        pytest.param(lambda gz: gz[:-8] + b"\0" * 8, id="bad-crc"),
        pytest.param(lambda gz: b"", id="empty"),
    ],
)
def test_bad_gzip_fails_cleanly(tmp_path, damage):
    plain = "".join([orders_header(), *_first_orders_lines(200)]).encode()
    path = tmp_path / "orders.csv.gz"
    path.write_bytes(damage(gzip.compress(plain)))
    with pytest.raises(LandingFileError) as caught:
        read_delimited(path, ORDERS_COLUMNS, has_header=True)
    assert "orders.csv.gz" in str(caught.value)


def test_gzip_with_corrupt_body_fails_cleanly(tmp_path):
    plain = "".join([orders_header(), *_first_orders_lines(200)]).encode()
    packed = gzip.compress(plain)
    corrupt = packed[:10] + bytes(b ^ 0xFF for b in packed[10:-8]) + packed[-8:]
    path = tmp_path / "orders.csv.gz"
    path.write_bytes(corrupt)
    with pytest.raises(LandingFileError, match=r"orders.csv.gz: not a readable gzip/zstd file \(gzip: "):
        read_delimited(path, ORDERS_COLUMNS, has_header=True)


def test_bare_carriage_return_in_header_fails_cleanly(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_bytes(orders_header().replace("Quantity", "Quan\rtity").encode() + _first_orders_lines(1)[0].encode())
    with pytest.raises(LandingFileError, match="orders.csv, line 1"):
        read_delimited(path, ORDERS_COLUMNS, has_header=True)


# --- landing files are read, never modified ------------------------------------------------------------------------


@pytest.mark.parametrize("broken", [False, True])
def test_landing_file_is_unchanged_after_reading(tmp_path, broken):
    lines = _first_orders_lines(50)
    if broken:
        lines[10] = _drop_last_field(lines[10])
    path = write_landing(tmp_path, "orders.csv", lines, header=orders_header())
    os.chmod(path, 0o444)  # a write attempt would fail loudly
    before = (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_size)
    digest = hashlib.sha256(before[0]).hexdigest()
    try:
        read_delimited(path, ORDERS_COLUMNS, has_header=True)
    except LandingFileError:
        assert broken
    after = (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_size)
    assert after == before and hashlib.sha256(after[0]).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders.csv"]  # no temporary or side files


def test_real_source_files_read_directly_are_unchanged():
    source = data_path(BEHAVIOR_FILE)
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    frame = read_delimited(source, BEHAVIOR_COLUMNS, has_header=False)
    assert len(frame) == 4321
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    assert before == "e5fec7993da3406b3358ea20ba9d53694ad5f942867a09f1cbfde00c07c2328b"  # SOURCES.md
