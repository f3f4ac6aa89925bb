"""`sources infer`: a draft entry inferred from a bounded sample of an export loads as a sources file and `sources
check` accepts it, for every sample export and for shapes made from their real rows (renamed columns, JSON lines,
nested records, Parquet, zstd, another encoding); hostile input (empty, binary, a folder) is refused in a line."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from shopflow import cli
from shopflow.sources import load_sources
from shopflow.sources.infer import InferError, draft_text, infer_draft
from shopflow.sources.infer import sample as sample_module
from shopflow.sources.infer.draft import flow

EXPORTS = {  # sample export -> the role its draft should play
    "events/online_retail_2010-12-01_to_2011-09-30.csv.gz": "orders",
    "events/taobao_user_behavior_sample.csv.gz": "events",
    "catalog/flipkart_name_category_tree.csv.gz": "catalog",
    "catalog/flipkart_prices_brand.csv.gz": "catalog",
    "catalog/flipkart_full_columns_first999.csv.gz": "catalog",
    "catalog/olist_products_dataset.csv.gz": "catalog",
    "catalog/product_category_name_translation.csv.gz": None,
    "search/wands_query.tsv.gz": "search",
}
ORDER_ROWS = 300
_DRAFTS = itertools.count()


def _loaded(tmp_path: Path, text: str):
    path = tmp_path / f"draft-{next(_DRAFTS)}.yaml"  # a new name each time: sources files are cached by location
    path.write_text(text)
    (spec,) = load_sources(path).values()
    return spec


def _sources_check(tmp_path: Path, text: str, monkeypatch, capsys) -> str:
    path = tmp_path / "check.yaml"
    path.write_text(text)
    monkeypatch.delenv("SHOPFLOW_SOURCES", raising=False)  # --file alone: the draft is checked on its own
    monkeypatch.setenv("SHOPFLOW_HOME", str(tmp_path / "home"))
    code = cli.main(["sources", "check", "--file", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


@pytest.fixture(scope="module")
def order_rows(source_data) -> tuple[list[str], list[list[str]]]:
    """The first rows of the real Online Retail export, read without reading the rest."""
    with gzip.open(source_data / "events/online_retail_2010-12-01_to_2011-09-30.csv.gz", "rt", newline="") as handle:
        header, *rows = itertools.islice(csv.reader(handle), ORDER_ROWS + 1)
    return header, rows


# ---- the sample exports ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("relative", sorted(EXPORTS))
def test_each_sample_export_drafts_an_entry_that_sources_check_accepts(relative, source_data, tmp_path, monkeypatch,
                                                                       capsys):
    text = draft_text(source_data / relative)
    spec = _loaded(tmp_path, text)
    assert (spec.role.name if spec.role else None) == EXPORTS[relative]
    assert f"{spec.name}:" in _sources_check(tmp_path, text, monkeypatch, capsys)
    assert text.count("\n  # ") + text.count("  # ") > 5  # the guesses carry their evidence


def test_the_cli_prints_the_draft(source_data, tmp_path, monkeypatch, capsys):
    code = cli.main(["sources", "infer", "--from", str(source_data / "events/taobao_user_behavior_sample.csv.gz"),
                     "--name", "behaviour_draft"])
    text = capsys.readouterr().out
    assert code == 0
    spec = _loaded(tmp_path, text)
    assert spec.name == "behaviour_draft" and spec.files[0].header is False
    assert spec.pseudonymise == {"user_id": "user_key"} and spec.role.fields["user"] == "user_key"
    event = next(c for c in spec.schema_ if c.name == "event_type")
    assert event.values == {"pv": "view", "fav": "favourite", "cart": "cart", "buy": "buy"}
    stamp = next(c for c in spec.schema_ if c.name == "timestamp")
    assert (stamp.type, stamp.unit, spec.timezone) == ("timestamp", "s", "Asia/Shanghai")


def test_orders_draft_finds_the_null_spellings_cancellations_and_zone(source_data):
    draft = infer_draft(source_data / "events/online_retail_2010-12-01_to_2011-09-30.csv.gz")
    assert draft.sample.truncated and len(draft.sample.rows) <= sample_module.SAMPLE_ROWS  # a bounded sample
    assert draft.zone.zone == "Europe/London" and "United Kingdom" in draft.zone.evidence
    assert [d.expression for d in draft.role.derived] == ['invoice_no.startswith("C")']
    assert len(draft.key.columns) == 8  # no unique column: the whole row
    prices = infer_draft(source_data / "catalog/flipkart_prices_brand.csv.gz")
    rating = next(p for p in prices.profiles if p.raw == "product_rating")
    assert (rating.type, rating.null_values) == ("float", ["No rating available"])
    assert prices.key.columns == ["uniq_id"] and prices.role.fields["group"].columns[0].raw == "pid"


# ---- shapes made from real rows --------------------------------------------------------------------------------------
def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


def _order_types(draft) -> dict[int, str]:
    return {i: ("pseudonymised" if p.raw in draft.pseudonymised else p.type) for i, p in enumerate(draft.profiles)}


def test_renamed_columns_keep_types_and_role(order_rows, tmp_path):
    header, rows = order_rows
    original = infer_draft(_write_csv(tmp_path / "orders.csv", header, rows))
    renamed = ["order_number", "sku", "item_title", "qty", "ordered_at", "price", "client_id", "country"]
    draft = infer_draft(_write_csv(tmp_path / "renamed.csv", renamed, rows))
    assert _order_types(draft) == _order_types(original)
    assert draft.role.name == "orders"
    assert {f: g.columns[0].raw for f, g in draft.role.fields.items() if g.columns}.items() >= {
        "order_id": "order_number", "quantity": "qty", "unit_price": "price", "customer": "client_id",
        "timestamp": "ordered_at", "product": "sku", "product_name": "item_title"}.items()
    _loaded(tmp_path, draft_text(tmp_path / "renamed.csv"))


def _records(order_rows) -> list[dict]:
    header, rows = order_rows
    return [dict(zip(header, row)) for row in rows]


def test_json_lines_parquet_and_zstd_versions_of_a_csv_give_the_same_types(order_rows, tmp_path):
    header, rows = order_rows
    expected = _order_types(infer_draft(_write_csv(tmp_path / "orders.csv", header, rows)))
    jsonl = tmp_path / "orders.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in _records(order_rows)))
    parquet = tmp_path / "orders.parquet"
    pq.write_table(pa.Table.from_pylist(_records(order_rows)), parquet)
    zstd = tmp_path / "orders.csv.zst"
    with pa.CompressedOutputStream(str(zstd), "zstd") as out:
        out.write(b"".join((",".join(f'"{v}"' for v in r) + "\n").encode() for r in [header, *rows]))
    for path, file_format in ((jsonl, "jsonl"), (parquet, "parquet"), (zstd, "csv")):
        draft = infer_draft(path)
        assert (draft.sample.file_format, _order_types(draft), draft.role.name) == (file_format, expected, "orders")
        spec = _loaded(tmp_path, draft_text(path))
        assert spec.files[0].resolved_format == file_format
    assert infer_draft(zstd).sample.compression == "zstd"


def test_nested_json_records_become_one_row_per_item(order_rows, tmp_path):
    by_invoice: dict[str, dict] = {}
    for record in _records(order_rows):
        invoice = by_invoice.setdefault(record["InvoiceNo"], {
            "invoice": record["InvoiceNo"], "placed_at": record["InvoiceDate"],
            "customer": {"id": record["CustomerID"], "country": record["Country"]}, "lines": []})
        invoice["lines"].append({"sku": record["StockCode"], "title": record["Description"],
                                 "qty": int(record["Quantity"]), "price": float(record["UnitPrice"])})
    path = tmp_path / "invoices.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(v) + "\n" for v in by_invoice.values()).encode()))
    draft = infer_draft(path)
    assert draft.sample.records == "lines" and len(draft.sample.rows) == ORDER_ROWS
    assert draft.sample.fields["customer_id"] == "customer.id" and draft.sample.fields["invoice"] == "invoice"
    spec = _loaded(tmp_path, draft_text(path))
    assert spec.role.name == "orders" and spec.files[0].records == "lines"
    assert {c.name: c.type for c in spec.schema_}["qty"] == "int"


def test_another_encoding_is_declared(order_rows, tmp_path):
    header, rows = order_rows
    path = tmp_path / "latin.csv"
    text = io.StringIO()
    csv.writer(text).writerows([header, *[[*r[:2], r[2] + " Ã©tÃ© café", *r[3:]] for r in rows]])
    path.write_bytes(text.getvalue().encode("cp1252"))
    spec = _loaded(tmp_path, draft_text(path))
    assert spec.files[0].encoding != "utf-8"


# ---- hostile and small inputs ----------------------------------------------------------------------------------------
# Named ids, and gzip without its time stamp: parameters are collected by every xdist worker and must be identical.
@pytest.mark.parametrize(("content", "words"), [
    pytest.param(b"", "empty", id="empty"),
    pytest.param(b"\n\n  \n", "blank", id="blank-lines"),
    pytest.param(bytes(range(256)) * 64, "binary", id="binary"),
    pytest.param(gzip.compress(bytes(range(256)) * 64, mtime=0), "binary", id="gzipped-binary"),
    pytest.param(b"\x1f\x8b\x08\x00 not really gzip", "not a readable gzip", id="fake-gzip"),
    pytest.param(b"PAR1 truncated parquet", "cannot be read as parquet", id="truncated-parquet"),
    pytest.param(gzip.compress(b"PAR1 truncated parquet", mtime=0), "cannot be read as parquet",
                 id="gzipped-truncated-parquet"),
])
def test_hostile_files_are_refused_in_a_line(tmp_path, content, words):
    path = tmp_path / "export.csv"
    path.write_bytes(content)
    with pytest.raises(InferError) as error:
        draft_text(path)
    assert words in str(error.value).lower() and "\n" not in str(error.value)


def test_a_folder_is_not_read(tmp_path, capsys):
    assert cli.main(["sources", "infer", "--from", str(tmp_path)]) == 1
    assert "not a regular file" in capsys.readouterr().err


def test_a_single_column_file(tmp_path):
    path = tmp_path / "skus.csv"
    path.write_text("sku\n" + "".join(f"SKU-{i:05d}\n" for i in range(50)))
    spec = _loaded(tmp_path, draft_text(path))
    assert spec.files[0].columns == ["sku"] and spec.key == ["sku"]


def test_integer_keys_are_typed_and_proposed(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,title,price\n" + "".join(f"{i},Blue mug number {i},{i % 7 + 0.5}\n" for i in range(1, 200)))
    spec = _loaded(tmp_path, draft_text(path))
    assert spec.key == ["item_id"] and spec.schema_[0].type == "int" and spec.role.name == "catalog"


def test_the_sample_is_bounded(order_rows, tmp_path, monkeypatch):
    header, rows = order_rows
    path = _write_csv(tmp_path / "orders.csv", header, rows)
    monkeypatch.setattr(sample_module, "SAMPLE_BYTES", 4096)
    draft = infer_draft(path)
    assert draft.sample.truncated and draft.sample.content_bytes <= 4096 and 0 < len(draft.sample.rows) < ORDER_ROWS


# ---- properties ------------------------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none()))
def test_flow_reads_back_as_the_same_value(value):
    assert yaml.safe_load(f"key: {flow(value)}")["key"] == value


cells = st.one_of(st.integers(-10**6, 10**6).map(str), st.text(alphabet="abc ,\"'\n\t;|-:#{}[]>", max_size=8),
                  st.sampled_from(["", "NA", "2020-01-02 03:04:05", "1.5", "true"]))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(alphabet="abcXYZ_ 1", min_size=1, max_size=6), min_size=1, max_size=4, unique=True),
       st.lists(st.lists(cells, min_size=4, max_size=4), min_size=1, max_size=15))
def test_any_small_table_drafts_a_loadable_entry_or_is_refused(tmp_path_factory, header, rows):
    path = tmp_path_factory.mktemp("table") / "table.csv"
    _write_csv(path, header, [r[: len(header)] for r in rows])
    try:
        text = draft_text(path)
    except InferError:
        return
    load_sources(_write_text(path.with_suffix(".yaml"), text))


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_agreement_script_compares_a_source_with_its_hand_written_entry(source_data):
    from infer_agreement import compare

    row, notes = compare("behavior", "behavior.csv", source_data / "events/taobao_user_behavior_sample.csv.gz")
    assert (row["types"], row["key"], row["role"], row["role fields"]) == ("5/5", "yes", "events / events", "4/4")
    assert row["columns"] == "3/5" and any("category_id" in note for note in notes)  # header-less: names guessed
