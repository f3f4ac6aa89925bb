"""A generated corpus of malformed landing files, each with its expected outcome (tests/ingest/test_malformed_corpus.py).

Every case is built at test time from a few REAL rows of its source (read from the sample data, SOURCES.md; nothing
is copied into the repository), rendered in one of the formats a landing file may be declared in (csv, tsv, jsonl,
parquet; gzip or zstd compressed; a declared encoding), then broken in one way. Its outcome is stated up front:

* `Fails`: ingest (or clean) raises the named exception, whose message names the file and, where there is one, the
  line and the field; the partition is then recorded `failed` with that error, and no error text holds the
  pseudonymisation key;
* `Balanced`: ingest + clean succeed and the ledger adds up: `rows_in` is the number of data rows written, and each
  of them is clean, quarantined with the named reason (and field), or counted as a duplicate.

Each case runs as its own source, a copy of the shipped source's entry with the case's landing file declaration (so
every case has its own partition and landing folder on the source's real day, and the real rows stay inside the
source's window and partition rules). The sources file of the whole corpus is `sources_file(CASES)`.
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from shopflow.common.landing_file import LandingFileError
from shopflow.ingest.folder import LandingFolderError
from shopflow.landing.sample_data import (
    BEHAVIOR_FILE,
    CATALOG_FULL,
    CATALOG_NAMES,
    CATALOG_PRICES,
    OLIST_PRODUCTS,
    OLIST_TRANSLATION,
    ORDERS_FILE,
)
from shopflow.sources import DEFAULT_SOURCES_FILE
from shopflow.steps.partition import RequiredPartitionMissing

SHIPPED = yaml.safe_load(DEFAULT_SOURCES_FILE.read_text())
SOURCES = ("orders", "behavior", "catalog", "search", "olist_catalog")
FORMATS = ("csv", "tsv", "jsonl", "parquet")
SUFFIX = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "parquet": ".parquet"}
COMPRESSIONS = {"gz": ".gz", "zst": ".zst"}
# The real day each source's rows are taken from (and the partition each case lands in).
DAYS = {"orders": date(2010, 12, 1), "behavior": date(2017, 11, 25), "catalog": date(2015, 12, 3),
        "search": date(2015, 12, 3), "olist_catalog": date(2015, 12, 3)}
# The file a case breaks unless it says otherwise.
MAIN_FILE = {"orders": "orders.csv", "behavior": "behavior.csv", "catalog": "flipkart_prices_brand.csv",
             "search": "search_log.csv", "olist_catalog": "olist_products_dataset.csv"}
ROWS = {"orders": 40, "behavior": 30, "catalog": 30, "search": 30, "olist_catalog": 30}

HEX32 = re.compile(r"[0-9a-f]{32}")


# ---- the real rows ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    """Real rows of one landing file: its declared columns, whether it has a header row, the rows as text."""

    columns: list[str]
    header: bool
    rows: list[list[str]]


def _csv_records(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def _first(rows, keep: Callable[[list[str]], bool], count: int) -> list[list[str]]:
    chosen, seen = [], set()
    for row in rows:
        if keep(row) and tuple(row) not in seen:
            seen.add(tuple(row))
            chosen.append(list(row))
            if len(chosen) == count:
                return chosen
    raise AssertionError(f"only {len(chosen)} real rows fit, {count} wanted")


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def load_samples(source_data: Path) -> dict[str, Table]:
    """A few real, clean rows of every declared landing file (by its shipped name)."""
    from shopflow.landing.search_log import HEADER, generate_search_log, load_catalogue_titles

    def columns(source: str, name: str) -> list[str]:
        return next(f["columns"] for f in SHIPPED[source]["files"] if f["name"] == name)

    samples: dict[str, Table] = {}
    header, *orders = _csv_records(source_data / ORDERS_FILE)[:400]
    assert header == columns("orders", "orders.csv")

    def good_order(row):
        quantity, price = _number(row[3]), _number(row[5])
        return (not row[0].startswith("C") and quantity is not None and quantity > 0 and quantity == int(quantity)
                and price is not None and price > 0 and row[6] != "" and row[4].startswith("2010-12-01 "))

    samples["orders.csv"] = Table(header, True, _first(orders, good_order, ROWS["orders"]))

    china = timezone(timedelta(hours=8))

    def on_day(row):
        return datetime.fromtimestamp(int(row[4]), tz=china).date() == DAYS["behavior"]

    samples["behavior.csv"] = Table(columns("behavior", "behavior.csv"), False,
                                    _first(_csv_records(source_data / BEHAVIOR_FILE), on_day, ROWS["behavior"]))

    prices_header, *prices = _csv_records(source_data / CATALOG_PRICES)

    def good_price_row(row):
        retail, discounted = _number(row[3]), _number(row[4])
        return (HEX32.fullmatch(row[0]) is not None and row[1].strip() != "" and retail is not None and retail > 0
                and discounted is not None and discounted > 0)

    samples["flipkart_prices_brand.csv"] = Table(prices_header, True, _first(prices, good_price_row, ROWS["catalog"]))
    names = _csv_records(source_data / CATALOG_NAMES)
    samples["flipkart_name_category_tree.csv"] = Table(
        columns("catalog", "flipkart_name_category_tree.csv"), False,
        _first(names, lambda r: HEX32.fullmatch(r[0]) is not None and r[1].strip() != "", ROWS["catalog"]))
    full_header, *full = _csv_records(source_data / CATALOG_FULL)

    def good_full_row(row):
        retail, discounted = _number(row[6]), _number(row[7])
        return (HEX32.fullmatch(row[0]) is not None and row[3].strip() != "" and row[1].strip() != ""
                and retail is not None and retail > 0 and discounted is not None and discounted > 0)

    samples["flipkart_full_columns.csv"] = Table(full_header, True, _first(full, good_full_row, 20))
    samples["_flipkart_blank_rows"] = Table(full_header, True,
                                            [row for row in full if not any(v.strip() for v in row)][:3])

    products_header, *products = _csv_records(source_data / OLIST_PRODUCTS)
    samples["olist_products_dataset.csv"] = Table(
        products_header, True,
        _first(products, lambda r: HEX32.fullmatch(r[0]) is not None and all(v != "" for v in r), ROWS["olist_catalog"]))
    translation_header, *translation = _csv_records(source_data / OLIST_TRANSLATION)
    samples["product_category_name_translation.csv"] = Table(translation_header, True, translation)

    # search: the GENERATED log of the day, built from the real catalogue titles (no real log exists)
    _, generated = generate_search_log(load_catalogue_titles(source_data), DAYS["search"])
    day = DAYS["search"].isoformat()
    samples["search_log.csv"] = Table(list(HEADER), True, _first(
        generated, lambda r: r[0].startswith(day) and r[3].strip() != "" and r[2] != "", ROWS["search"]))
    return samples


# ---- rendering ----------------------------------------------------------------------------------------------------
def delimited(columns: list[str] | None, rows: list[list[str]], *, delimiter: str = ",", newline: str = "\n") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline)
    if columns is not None:
        writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def json_lines(records: list) -> bytes:
    """One JSON value per line, non-ASCII as it is (a record holding a lone surrogate: \\u-escaped, as JSON allows)."""
    def line(record) -> str:
        text = json.dumps(record, ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(record)
        return text + "\n"

    return "".join(line(record) for record in records).encode("utf-8")


def parquet(columns: dict[str, list] | pa.Table) -> bytes:
    table = columns if isinstance(columns, pa.Table) else pa.table(columns)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.output_stream(sink, compression="zstd") as stream:
        stream.write(data)
    return sink.getvalue().to_pybytes()


def compress(data: bytes, compression: str | None) -> bytes:
    if compression == "gz":
        return gzip.compress(data, mtime=0)
    if compression == "zst":
        return zstd(data)
    return data


@dataclass(frozen=True)
class Link:
    """A symbolic link in the landing folder, to a file (with these bytes) outside the landing zone."""

    content: bytes


@dataclass(frozen=True)
class Folder:
    """A sub-folder in the landing folder (holding one file)."""


Landed = dict[str, "bytes | Link | Folder"]


# ---- expectations -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fails:
    """The step raises `error`; its message names the landed file (unless `names_file` is false: a missing file is
    named by its declared name in `names`), each of `names`, and `line` (a physical line) or `row` (a data row's
    index, turned into its line by the format) where given."""

    error: type[Exception]
    names: tuple[str, ...] = ()
    line: int | None = None
    row: int | None = None
    step: str = "ingest"
    names_file: bool = True

    kind = "error"


@dataclass(frozen=True)
class Balanced:
    """ingest + clean succeed: `rows_in` rows in; `reasons` are the quarantine reasons and counts (exactly);
    `fields` the field each reason names; `rows` the data-row indexes quarantined per reason (their lines are
    checked); `duplicate` the rows counted as exact duplicates. The rest are clean."""

    rows_in: int
    reasons: dict[str, int] = field(default_factory=dict)
    duplicate: int = 0
    fields: dict[str, str] = field(default_factory=dict)
    rows: dict[str, list[int]] = field(default_factory=dict)
    rows_reference: int | None = None

    kind = "ledger"

    @property
    def rows_clean(self) -> int:
        return self.rows_in - sum(self.reasons.values()) - self.duplicate


# ---- cases --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    source: str  # the shipped source it is a copy of
    fmt: str  # the format the broken file is declared in
    build: Callable[["Ctx"], Landed]
    expect: Fails | Balanced
    compression: str | None = None
    target: str | None = None  # the shipped file name it breaks (default MAIN_FILE)
    declare: dict = field(default_factory=dict)  # overrides of the target's declaration (encoding, ...)
    xfail: str | None = None
    number: int = 0  # its place in CASES: names its source (and so its partition and landing folder)

    @property
    def source_name(self) -> str:
        return f"{self.source}_{self.number:03d}"

    @property
    def target_file(self) -> str:
        return self.target or MAIN_FILE[self.source]

    @property
    def day(self) -> date:
        return DAYS[self.source]

    def declared_name(self, shipped: str | None = None) -> str:
        shipped = shipped or self.target_file
        if shipped != self.target_file:
            return shipped
        return shipped.removesuffix(".csv") + SUFFIX[self.fmt]

    def entry(self) -> dict:
        """The case's source entry: the shipped one, with the target file declared in the case's format."""
        entry = copy.deepcopy(SHIPPED[self.source])
        renamed = self.declared_name()
        for declared in entry["files"]:
            if declared["name"] == self.target_file:
                declared["name"] = renamed
                if self.fmt in ("jsonl", "parquet"):
                    declared.pop("header", None)
                declared.update(self.declare)
        if entry.get("snapshot_file") == self.target_file:
            entry["snapshot_file"] = renamed
        for join in entry.get("joins", []):
            if join["file"] == self.target_file:
                join["file"] = renamed
        return entry


@dataclass
class Ctx:
    """What a case's builder works with: the real rows and the case's format."""

    case: Case
    samples: dict[str, Table]
    secret: str = ""  # the pseudonymisation key of the run (for a case that lands it by mistake)

    @property
    def table(self) -> Table:
        return self.samples[self.case.target_file]

    @property
    def columns(self) -> list[str]:
        return list(self.table.columns)

    @property
    def name(self) -> str:
        """The landed name of the target file (declared name plus the compression suffix)."""
        return self.case.declared_name() + (COMPRESSIONS[self.case.compression] if self.case.compression else "")

    @property
    def has_header_line(self) -> bool:
        return self.case.fmt in ("csv", "tsv") and self.table.header

    def rows(self, file: str | None = None) -> list[list[str]]:
        return copy.deepcopy(self.samples[file or self.case.target_file].rows)

    def line(self, row: int) -> int:
        """The physical line (Parquet: the row number) of data row `row` in a file `render` wrote."""
        return row + (2 if self.has_header_line else 1)

    def render(self, rows: list[list[str]] | None = None, *, columns: list[str] | None = None,
               newline: str = "\n") -> bytes:
        """Rows (default: the real ones) as the case's format, uncompressed; `columns` replaces the header/keys."""
        rows = self.rows() if rows is None else rows
        columns = self.columns if columns is None else columns
        fmt = self.case.fmt
        if fmt in ("csv", "tsv"):
            return delimited(columns if self.table.header else None, rows, delimiter="\t" if fmt == "tsv" else ",",
                             newline=newline)
        if fmt == "jsonl":
            return json_lines([dict(zip(columns, row)) for row in rows])
        return parquet({column: pa.array([row[i] for row in rows], pa.string()) for i, column in enumerate(columns)})

    def landed(self, data: bytes | None = None, name: str | None = None, *, compressed: bool = True) -> Landed:
        """The target file (its rows rendered when `data` is None), compressed as the case says, plus the source's
        other required files as their real rows (olist's translation file)."""
        data = self.render() if data is None else data
        files: Landed = {name or self.name: compress(data, self.case.compression) if compressed else data}
        return {**self.companions(), **files}

    def companions(self) -> Landed:
        files: Landed = {}
        for declared in SHIPPED[self.case.source]["files"]:
            if declared["name"] != self.case.target_file and not declared.get("optional", False):
                table = self.samples[declared["name"]]
                files[declared["name"]] = delimited(table.columns if table.header else None, table.rows)
        return files


def set_cell(rows: list[list[str]], columns: list[str], row: int, column: str, value: str) -> None:
    rows[row][columns.index(column)] = value


CASES: list[Case] = []


def case(case_id: str, source: str, expect: Fails | Balanced, fmt: str = "csv", **options):
    def register(build: Callable[[Ctx], Landed]) -> Callable[[Ctx], Landed]:
        label = fmt + (f".{options['compression']}" if options.get("compression") else "")
        CASES.append(Case(id=f"{source}-{label}-{case_id}", source=source, fmt=fmt, build=build, expect=expect,
                          number=len(CASES), **options))
        return build
    return register


def cells(source: str, changes: dict[tuple[int, str], str]):
    """A builder: the real rows with some values replaced."""
    def build(c: Ctx) -> Landed:
        rows = c.rows()
        for (row, column), value in changes.items():
            set_cell(rows, c.columns, row, column, value)
        return c.landed(c.render(rows))
    return build


def value_case(case_id: str, source: str, changes: dict[tuple[int, str], str], reasons: dict[str, int],
               fields: dict[str, str], *, fmt: str = "csv", rows_in: int | None = None, **options) -> None:
    """A row-level case: some real values replaced; the rows they are in are quarantined with `reasons`."""
    rows: dict[str, list[int]] = {}
    if len(reasons) == 1:
        [reason] = reasons
        rows = {reason: sorted({row for row, _ in changes})}
    case(case_id, source, Balanced(rows_in or ROWS[source], reasons, fields=fields, rows=rows), fmt=fmt, **options)(
        cells(source, changes))


# == baselines: every source in every format it is declared in (the real rows are clean) ==========================
for _source in SOURCES:
    for _fmt in FORMATS:
        case("baseline", _source, Balanced(ROWS[_source]), fmt=_fmt)(lambda c: c.landed())
for _source, _fmt, _compression in [("orders", "csv", "gz"), ("orders", "csv", "zst"), ("behavior", "tsv", "zst"),
                                    ("behavior", "jsonl", "gz"), ("search", "jsonl", "zst"),
                                    ("olist_catalog", "csv", "gz"), ("catalog", "parquet", "gz")]:
    case("baseline", _source, Balanced(ROWS[_source]), fmt=_fmt, compression=_compression)(lambda c: c.landed())


# == the file as a whole: empty, header only, compression ===========================================================
for _source, _fmt in [("orders", "csv"), ("search", "tsv"), ("olist_catalog", "csv")]:
    case("empty-file", _source, Fails(LandingFileError, ("file is empty",), line=1), fmt=_fmt)(
        lambda c: c.landed(b""))
case("empty-file", "behavior", Balanced(0))(lambda c: c.landed(b""))  # no header declared: an empty day
case("empty-file", "behavior", Balanced(0), fmt="jsonl")(lambda c: c.landed(b""))
case("empty-file", "catalog", Fails(LandingFileError, ("not a readable Parquet file",)), fmt="parquet")(
    lambda c: c.landed(b""))
case("whitespace-only-file", "orders", Fails(LandingFileError, ("file is empty",), line=1))(
    lambda c: c.landed(b"\n\n  \n"))
for _source, _fmt in [("orders", "csv"), ("catalog", "tsv"), ("search", "csv"), ("olist_catalog", "tsv")]:
    case("header-only", _source, Balanced(0), fmt=_fmt)(lambda c: c.landed(c.render([])))
case("zero-rows", "behavior", Balanced(0), fmt="parquet")(lambda c: c.landed(c.render([])))

_COMPRESSED_NOTE = ("not a readable gzip/zstd file",)
case("truncated-stream", "orders", Fails(LandingFileError, _COMPRESSED_NOTE + ("gzip",)), compression="gz")(
    lambda c: c.landed(gzip.compress(c.render(), mtime=0)[:-200], compressed=False))
case("truncated-stream", "behavior", Fails(LandingFileError, _COMPRESSED_NOTE + ("zstd",)), compression="zst")(
    lambda c: c.landed(zstd(c.render())[:-100], compressed=False))
case("truncated-stream", "search", Fails(LandingFileError, _COMPRESSED_NOTE + ("gzip",)), fmt="jsonl",
     compression="gz")(lambda c: c.landed(gzip.compress(c.render(), mtime=0)[:40], compressed=False))
case("gzip-magic-on-plain-text", "orders", Fails(LandingFileError, _COMPRESSED_NOTE + ("gzip",)))(
    lambda c: c.landed(b"\x1f\x8b" + c.render()))
case("zstd-magic-on-plain-text", "olist_catalog", Fails(LandingFileError, _COMPRESSED_NOTE + ("zstd",)))(
    lambda c: c.landed(b"\x28\xb5\x2f\xfd" + c.render()))
case("gz-name-on-plain-text", "catalog", Fails(LandingFileError, _COMPRESSED_NOTE + (".gz",)), compression="gz")(
    lambda c: c.landed(c.render(), compressed=False))
case("zst-name-on-gzip-content", "behavior", Balanced(ROWS["behavior"]), compression="zst")(  # magic bytes win
    lambda c: c.landed(gzip.compress(c.render(), mtime=0), compressed=False))
case("zero-byte-compressed-file", "orders", Fails(LandingFileError, ("file is empty",), line=1), compression="gz")(
    lambda c: c.landed(b"", compressed=False))
case("compressed-empty-content", "behavior", Balanced(0), fmt="tsv", compression="zst")(lambda c: c.landed(b""))
case("double-gzip", "orders", Fails(LandingFileError, ("not valid UTF-8",), line=1), compression="gz")(
    lambda c: c.landed(gzip.compress(gzip.compress(c.render(), mtime=0), mtime=0), compressed=False))
case("parquet-truncated-footer", "behavior", Fails(LandingFileError, ("not a readable Parquet file",)), fmt="parquet")(
    lambda c: c.landed(c.render()[:-30]))
case("parquet-name-on-csv-content", "orders", Fails(LandingFileError, ("not a readable Parquet file",)),
     fmt="parquet")(lambda c: c.landed(delimited(c.columns, c.rows())))
case("parquet-gzipped", "search", Balanced(ROWS["search"]), fmt="parquet", compression="gz")(lambda c: c.landed())


# == header ========================================================================================================
def _header_case(case_id: str, source: str, header: Callable[[list[str]], list[str]], names: tuple[str, ...],
                 fmt: str = "csv", **options) -> None:
    case(case_id, source, Fails(LandingFileError, ("header",) + names, line=1), fmt=fmt, **options)(
        lambda c: c.landed(c.render(columns=header(c.columns))))


_header_case("missing-header-column", "orders", lambda h: [x for x in h if x != "Country"], ("missing ['Country']",))
_header_case("extra-header-column", "search", lambda h: h + ["referrer"], ("unexpected ['referrer']",))
_header_case("duplicated-header-column", "olist_catalog", lambda h: h[:3] + [h[2]] + h[4:],
             ("repeated ['product_name_lenght']", "missing ['product_description_lenght']"))
_header_case("renamed-header-column", "catalog", lambda h: [x.replace("retail_price", "mrp") for x in h],
             ("missing ['retail_price']", "unexpected ['mrp']"))
_header_case("case-changed-header", "orders", lambda h: [x.lower() for x in h], ("'invoiceno'", "letter case"),
             fmt="tsv")
_header_case("reordered-header", "search", lambda h: [h[1], h[0], *h[2:]], ("the same columns in another order",))
_header_case("misspelling-fixed-in-header", "olist_catalog", lambda h: [x.replace("lenght", "length") for x in h],
             ("unexpected ['product_name_length', 'product_description_length']",), compression="zst")
# A secret landed by mistake: the error shows the header it found, never the key (nor a prefix of it).
case("secret-assignment-as-header", "orders", Fails(LandingFileError, ("header", "SHOPFLOW_PSEUDONYM_KEY="), line=1))(
    lambda c: c.landed(f"SHOPFLOW_PSEUDONYM_KEY={c.secret}\n".encode() + c.render()))
case("key-file-landed-as-data", "search", Fails(LandingFileError, ("header", "***"), line=1))(
    lambda c: c.landed(f"{c.secret}\n".encode()))
case("missing-column", "behavior", Fails(LandingFileError, ("missing columns", "'timestamp'")), fmt="parquet")(
    lambda c: c.landed(parquet({col: [r[i] for r in c.rows()] for i, col in enumerate(c.columns[:-1])})))
case("duplicated-column", "olist_catalog", Fails(LandingFileError, ("more than once", "'product_id'")),
     fmt="parquet")(
    lambda c: c.landed(parquet(pa.Table.from_arrays(
        [pa.array([r[i] for r in c.rows()]) for i in range(len(c.columns))] + [pa.array([r[0] for r in c.rows()])],
        names=c.columns + ["product_id"]))))
case("header-line-in-headerless-file", "behavior",
     Balanced(ROWS["behavior"] + 1, {"invalid_item_id": 1}, fields={"invalid_item_id": "item_id"}))(
    lambda c: c.landed(delimited(c.columns, c.rows())))
case("header-line-in-headerless-file", "catalog",
     Balanced(ROWS["catalog"] + 1, {"invalid_key": 1}, fields={"invalid_key": "uniq_id"}),
     target="flipkart_name_category_tree.csv")(lambda c: c.landed(delimited(c.columns, c.rows())))
case("header-repeated-mid-file", "orders",
     Balanced(ROWS["orders"] + 1, {"invalid_invoice_no": 1}, fields={"invalid_invoice_no": "InvoiceNo"}))(
    lambda c: c.landed(delimited(c.columns, c.rows()[:20]) + delimited(c.columns, c.rows()[20:])))


# == encoding and bytes ============================================================================================
def _latin1_row(c: Ctx, row: int, column: str, text: str) -> Landed:
    data = c.render()
    original = c.rows()[row][c.columns.index(column)]
    line = data.split(b"\n")[c.line(row) - 1]
    broken = line.replace(original.encode(), text.encode("latin-1"), 1)
    return c.landed(data.replace(line, broken, 1))


case("bom", "orders", Balanced(ROWS["orders"]))(lambda c: c.landed(b"\xef\xbb\xbf" + c.render()))
case("bom", "behavior", Balanced(ROWS["behavior"]), fmt="jsonl")(lambda c: c.landed(b"\xef\xbb\xbf" + c.render()))
case("real-bom-in-lookup-header", "olist_catalog", Balanced(ROWS["olist_catalog"]),
     target="product_category_name_translation.csv")(lambda c: c.landed(b"\xef\xbb\xbf" + c.render()))
case("utf16-undeclared", "search", Fails(LandingFileError, ("not valid UTF-8",), line=1))(
    lambda c: c.landed(c.render().decode().encode("utf-16")))
case("utf16-declared", "orders", Balanced(ROWS["orders"]), declare={"encoding": "utf-16"})(
    lambda c: c.landed(c.render().decode().encode("utf-16")))
case("utf16-declared", "behavior", Balanced(ROWS["behavior"]), fmt="jsonl", declare={"encoding": "utf-16"})(
    lambda c: c.landed(c.render().decode().encode("utf-16")))
case("latin1-bytes-in-utf8-file", "orders", Fails(LandingFileError, ("not valid UTF-8", "0xc9"), row=5))(
    lambda c: _latin1_row(c, 5, "Description", "CAFÉ SET"))
case("latin1-bytes-in-utf8-file", "catalog", Fails(LandingFileError, ("not valid UTF-8", "0xe9"), row=12),
     fmt="tsv")(lambda c: _latin1_row(c, 12, "brand", "Café"))
case("latin1-bytes-in-utf8-file", "search", Fails(LandingFileError, ("not valid UTF-8", "0xe8"), row=3), fmt="jsonl")(
    lambda c: c.landed(c.render().replace(c.rows()[3][3].encode(), "crème".encode("latin-1"), 1)))
case("latin1-declared", "olist_catalog", Balanced(ROWS["olist_catalog"]), declare={"encoding": "latin-1"},
     target="product_category_name_translation.csv")(
    lambda c: c.landed(c.render(c.rows() + [["cama_mesa_banho_ção", "bed bath"]]).decode().encode("latin-1")))
case("invalid-utf8-mid-file", "behavior", Fails(LandingFileError, ("not valid UTF-8", "0xff"), row=17))(
    lambda c: c.landed(b"\n".join(line + b"\xff" if n == 17 else line for n, line in
                                  enumerate(c.render().split(b"\n")))))
case("invalid-utf8-in-parquet-text", "orders",
     Fails(LandingFileError, ("column 'Description'", "cannot be read as text")), fmt="parquet")(
    lambda c: c.landed(parquet({col: pa.array([r[i].encode() if col != "Description" or n != 3 else b"\xff\xfe"
                                               for n, r in enumerate(c.rows())], pa.binary())
                                for i, col in enumerate(c.columns)})))
value_case("nul-byte-in-invoice-no", "orders", {(9, "InvoiceNo"): "5363\x0065"}, {"invalid_invoice_no": 1},
           {"invalid_invoice_no": "InvoiceNo"})
value_case("nul-byte-in-user-id", "behavior", {(4, "user_id"): "10\x0001"}, {"control_character_in_id": 1},
           {"control_character_in_id": "user_id"}, fmt="tsv")
case("nul-byte-in-description-is-cleaned", "orders", Balanced(ROWS["orders"]))(
    cells("orders", {(2, "Description"): "WHITE\x00 METAL LANTERN"}))
value_case("control-characters-in-query-are-normalised", "search", {(6, "query"): "sofa\x1b[31m bed\x07"}, {}, {})
def _cr_only(c: Ctx) -> Landed:  # classic Mac line endings: read like any others, lines counted by them
    rows = c.rows()
    set_cell(rows, c.columns, 7, "Quantity", "seven")
    return c.landed(c.render(rows, newline="\r"))


case("cr-only-line-endings", "orders",
     Balanced(ROWS["orders"], {"invalid_quantity": 1}, fields={"invalid_quantity": "Quantity"},
              rows={"invalid_quantity": [7]}))(_cr_only)
case("crlf-line-endings", "search", Balanced(ROWS["search"]))(lambda c: c.landed(c.render(newline="\r\n")))
case("crlf-line-endings", "behavior", Balanced(ROWS["behavior"]), fmt="jsonl")(
    lambda c: c.landed(c.render().replace(b"\n", b"\r\n")))
case("mixed-line-endings", "catalog", Balanced(ROWS["catalog"]))(
    lambda c: c.landed(b"".join(line + (b"\r\n" if n % 3 else b"\n") for n, line in
                                enumerate(c.render().split(b"\n")[:-1]))))
case("no-final-newline", "olist_catalog", Balanced(ROWS["olist_catalog"]))(lambda c: c.landed(c.render()[:-1]))


# == records: fields, quotes, blank lines ==========================================================================
def _line_edit(c: Ctx, row: int, edit: Callable[[str], str]) -> Landed:
    lines = c.render().decode().split("\n")
    lines[c.line(row) - 1] = edit(lines[c.line(row) - 1])
    return c.landed("\n".join(lines).encode())


case("too-many-fields", "orders", Fails(LandingFileError, ("expected 8 fields, found 9",), row=10))(
    lambda c: _line_edit(c, 10, lambda line: line + ",extra"))
case("too-few-fields", "orders", Fails(LandingFileError, ("expected 8 fields, found 6",), row=29))(
    lambda c: _line_edit(c, 29, lambda line: line.split(",", 2)[2]))
case("too-many-fields", "behavior", Fails(LandingFileError, ("expected 5 fields, found 6",), row=3), fmt="tsv")(
    lambda c: _line_edit(c, 3, lambda line: line + "\t1"))
case("too-few-fields", "catalog", Fails(LandingFileError, ("expected 3 fields, found 2",), row=7),
     target="flipkart_name_category_tree.csv")(lambda c: _line_edit(c, 7, lambda line: line.rsplit(",", 1)[0]))
case("comma-separated-tsv", "search", Fails(LandingFileError, ("expected 5 fields, found 1",), line=2), fmt="tsv")(
    lambda c: c.landed(c.render().split(b"\n", 1)[0] + b"\n" + delimited(None, c.rows())))
case("unbalanced-quote", "orders", Fails(LandingFileError, ("unbalanced quote", "runs to line"), row=5))(
    lambda c: _line_edit(c, 5, lambda line: line.replace(",", ',"', 2).replace(',"', ",", 1)))
case("unbalanced-quote", "catalog", Fails(LandingFileError, ("malformed CSV",), row=14),
     target="flipkart_full_columns.csv")(
    lambda c: _line_edit(c, 14, lambda line: line.replace('http', '"http', 1)))
case("quoted-newline-in-description", "orders", Balanced(ROWS["orders"]))(
    cells("orders", {(4, "Description"): "RED WOOLLY\nHOTTIE WHITE HEART."}))
case("quoted-delimiter-and-quotes", "catalog", Balanced(ROWS["catalog"]), fmt="tsv")(
    cells("catalog", {(3, "product_name"): 'Tab\there, "quoted", and, commas'}))
case("blank-line-mid-file", "orders",
     Balanced(ROWS["orders"] + 1, {"blank_row": 1}, fields={"blank_row": "*"}, rows={"blank_row": [12]}))(
    lambda c: c.landed(delimited(c.columns, c.rows()[:12]) + b"\n" + delimited(None, c.rows()[12:])))
case("blank-lines", "search", Balanced(ROWS["search"]), fmt="jsonl")(  # JSON lines skip blank lines
    lambda c: c.landed(c.render().replace(b"\n", b"\n\n", 5)))
case("trailing-blank-lines", "behavior",
     Balanced(ROWS["behavior"] + 2, {"blank_row": 2}, fields={"blank_row": "*"}))(
    lambda c: c.landed(c.render() + b"\n\n"))
case("blank-rows", "catalog", Balanced(20 + 3, {"blank_row": 3}, fields={"blank_row": "*"}),
     target="flipkart_full_columns.csv")(
    lambda c: c.landed(c.render(c.rows() + c.rows("_flipkart_blank_rows"))))
case("very-long-field", "orders", Balanced(ROWS["orders"]))(
    cells("orders", {(8, "Description"): "LONG " * 60_000}))
case("very-long-field", "search", Balanced(ROWS["search"]), fmt="jsonl")(
    cells("search", {(8, "query"): "q" * 2_500_000}))
case("very-long-field-over-a-block", "catalog", Balanced(20), target="flipkart_full_columns.csv")(
    cells("catalog", {(2, "description"): "A long description. " * 80_000}))


# == values: orders ================================================================================================
def _orders(case_id, changes, reason, field_name="Quantity", fmt="csv", **options):
    value_case(case_id, "orders", changes, {reason: len({r for r, _ in changes})}, {reason: field_name}, fmt=fmt,
               **options)


_orders("non-numeric-quantity", {(3, "Quantity"): "six", (17, "Quantity"): "1O"}, "invalid_quantity")
_orders("empty-quantity", {(5, "Quantity"): "", (6, "Quantity"): "  "}, "invalid_quantity", fmt="jsonl")
_orders("fractional-quantity", {(8, "Quantity"): "1.5"}, "invalid_quantity", fmt="parquet")
_orders("huge-quantity", {(2, "Quantity"): "1e20", (3, "Quantity"): "inf"}, "invalid_quantity")
_orders("zero-quantity", {(11, "Quantity"): "0", (12, "Quantity"): "-0"}, "zero_quantity")
_orders("non-numeric-price", {(4, "UnitPrice"): "£2.55", (9, "UnitPrice"): "two"}, "invalid_price", "UnitPrice")
_orders("decimal-comma-price", {(14, "UnitPrice"): "2,55"}, "invalid_price", "UnitPrice", fmt="tsv")
_orders("nan-price", {(15, "UnitPrice"): "NaN", (16, "UnitPrice"): "Infinity"}, "invalid_price", "UnitPrice")
_orders("zero-or-negative-price", {(1, "UnitPrice"): "0", (2, "UnitPrice"): "-1.25"}, "non_positive_price",
        "UnitPrice")
_orders("cancellation-with-positive-quantity", {(7, "InvoiceNo"): "C536367"}, "cancellation_with_positive_quantity")
_orders("date-in-wrong-format", {(0, "InvoiceDate"): "01/12/2010 08:26", (1, "InvoiceDate"): "2010-12-01T08:26:00"},
        "invalid_timestamp", "InvoiceDate")
_orders("timestamp-out-of-range", {(2, "InvoiceDate"): "0000-01-01 00:00:00", (3, "InvoiceDate"): "9999-12-31 23:59:59"},
        "invalid_timestamp", "InvoiceDate", fmt="jsonl")
_orders("date-of-another-day", {(20, "InvoiceDate"): "2010-12-02 09:00:00"}, "outside_partition", "InvoiceDate")
_orders("empty-invoice-no", {(21, "InvoiceNo"): "", (22, "InvoiceNo"): "   "}, "missing_invoice_no", "InvoiceNo")
_orders("malformed-invoice-no", {(23, "InvoiceNo"): "INV-536365"}, "invalid_invoice_no", "InvoiceNo")
_orders("whitespace-only-stock-code", {(24, "StockCode"): " \t "}, "missing_stock_code", "StockCode")
value_case("empty-customer-id-is-kept", "orders", {(25, "CustomerID"): ""}, {}, {}, fmt="parquet")
value_case("negative-quantity-adjustment-is-kept", "orders", {(26, "Quantity"): "-2"}, {}, {})
value_case("several-reasons-first-rule-wins", "orders",
           {(30, "InvoiceNo"): "", (30, "Quantity"): "x", (31, "Quantity"): "x", (31, "UnitPrice"): "0"},
           {"missing_invoice_no": 1, "invalid_quantity": 1},
           {"missing_invoice_no": "InvoiceNo", "invalid_quantity": "Quantity"})
case("duplicate-rows", "orders", Balanced(ROWS["orders"] + 3, duplicate=3))(
    lambda c: c.landed(c.render(c.rows() + c.rows()[5:8])))
case("duplicate-rows-differing-in-whitespace", "orders", Balanced(ROWS["orders"] + 1, duplicate=1), fmt="jsonl")(
    lambda c: c.landed(c.render(c.rows() + [[v + " " for v in c.rows()[0]]])))


# == values: behavior ==============================================================================================
def _behavior(case_id, changes, reason, field_name, fmt="csv", **options):
    value_case(case_id, "behavior", changes, {reason: len({r for r, _ in changes})}, {reason: field_name}, fmt=fmt,
               **options)


_behavior("unknown-event-type", {(2, "behavior_type"): "click", (3, "behavior_type"): ""}, "unknown_event_type",
          "behavior_type")
value_case("event-type-case-and-space-is-normalised", "behavior", {(4, "behavior_type"): " PV "}, {}, {}, fmt="tsv")
_behavior("empty-user-id", {(5, "user_id"): ""}, "missing_user_id", "user_id", fmt="jsonl")
_behavior("whitespace-only-user-id", {(6, "user_id"): "   "}, "missing_user_id", "user_id")
_behavior("non-numeric-item-id", {(7, "item_id"): "abc", (8, "item_id"): "1.5"}, "invalid_item_id", "item_id")
_behavior("zero-or-negative-item-id", {(9, "item_id"): "0", (10, "item_id"): "-5"}, "invalid_item_id", "item_id",
          fmt="parquet")
_behavior("item-id-beyond-exact-integers", {(11, "item_id"): str(2**60)}, "invalid_item_id", "item_id")
_behavior("empty-category-id", {(12, "category_id"): ""}, "invalid_category_id", "category_id", fmt="tsv")
_behavior("non-numeric-timestamp", {(13, "timestamp"): "2017-11-25 10:00:00"}, "invalid_timestamp", "timestamp")
_behavior("timestamp-in-milliseconds", {(14, "timestamp"): "1511568000000"}, "invalid_timestamp", "timestamp",
          fmt="jsonl")
_behavior("fractional-timestamp", {(15, "timestamp"): "1511568000.5"}, "invalid_timestamp", "timestamp")
_behavior("negative-timestamp", {(16, "timestamp"): "-1"}, "invalid_timestamp", "timestamp", fmt="parquet")
_behavior("timestamp-out-of-window", {(17, "timestamp"): "1505125000"}, "timestamp_out_of_window", "timestamp")
_behavior("timestamp-of-another-day", {(18, "timestamp"): "1511700000"}, "outside_partition", "timestamp", fmt="tsv")
case("duplicate-events", "behavior", Balanced(ROWS["behavior"] + 2, duplicate=2), fmt="parquet")(
    lambda c: c.landed(c.render(c.rows() + c.rows()[:2])))


# == JSON lines ====================================================================================================
def _json_edit(c: Ctx, row: int, edit: Callable[[dict], object]) -> Landed:
    records = [dict(zip(c.columns, r)) for r in c.rows()]
    records[row] = edit(records[row])
    return c.landed(json_lines(records))


def _replace(record: dict, **values) -> dict:
    return {**record, **values}


case("broken-json-line", "behavior", Fails(LandingFileError, ("invalid JSON",), row=9), fmt="jsonl")(
    lambda c: c.landed(b"".join(line[:-7] + b"\n" if n == 9 else line for n, line in
                                enumerate(c.render().splitlines(keepends=True)))))
case("truncated-last-json-line", "search", Fails(LandingFileError, ("invalid JSON",), row=29), fmt="jsonl")(
    lambda c: c.landed(c.render()[:-20]))
case("json-array-instead-of-lines", "behavior", Fails(LandingFileError, ("expected a JSON object", "an array"),
                                                      line=1), fmt="jsonl")(
    lambda c: c.landed(json.dumps([dict(zip(c.columns, r)) for r in c.rows()]).encode()))
case("pretty-printed-json-array", "search", Fails(LandingFileError, ("invalid JSON",), line=1), fmt="jsonl")(
    lambda c: c.landed(json.dumps([dict(zip(c.columns, r)) for r in c.rows()], indent=2).encode()))
case("non-object-json-line", "behavior", Fails(LandingFileError, ("expected a JSON object", "a number"), row=4),
     fmt="jsonl")(lambda c: _json_edit(c, 4, lambda r: 42))
case("null-json-line", "search", Fails(LandingFileError, ("expected a JSON object", "null"), row=2), fmt="jsonl")(
    lambda c: _json_edit(c, 2, lambda r: None))
case("csv-content-in-jsonl-file", "orders", Fails(LandingFileError, ("invalid JSON",), line=1), fmt="jsonl")(
    lambda c: c.landed(delimited(c.columns, c.rows())))
case("json-numbers-for-ids", "behavior", Balanced(ROWS["behavior"]), fmt="jsonl")(
    lambda c: c.landed(json_lines([{**dict(zip(c.columns, r)), "item_id": int(r[1]), "category_id": int(r[2]),
                                    "timestamp": int(r[4])} for r in c.rows()])))
case("json-wrong-types", "behavior",
     Balanced(ROWS["behavior"], {"invalid_item_id": 2, "invalid_timestamp": 1, "unknown_event_type": 1},
              fields={"invalid_item_id": "item_id", "invalid_timestamp": "timestamp",
                      "unknown_event_type": "behavior_type"},
              rows={"invalid_item_id": [1, 2], "invalid_timestamp": [3], "unknown_event_type": [4]}), fmt="jsonl")(
    lambda c: c.landed(json_lines([
        _replace(dict(zip(c.columns, r)), **({1: {"item_id": True}, 2: {"item_id": {"id": r[1]}},
                                              3: {"timestamp": None}, 4: {"behavior_type": ["pv"]}}.get(n, {})))
        for n, r in enumerate(c.rows())])))
case("json-missing-key", "search",
     Balanced(ROWS["search"], {"missing_session_id": 1}, fields={"missing_session_id": "session_id"},
              rows={"missing_session_id": [7]}), fmt="jsonl")(
    lambda c: _json_edit(c, 7, lambda r: {k: v for k, v in r.items() if k != "session_id"}))
case("json-extra-keys-are-ignored", "olist_catalog", Balanced(ROWS["olist_catalog"]), fmt="jsonl")(
    lambda c: c.landed(json_lines([{**dict(zip(c.columns, r)), "seller": "x"} for r in c.rows()])))
case("json-nan-literal", "olist_catalog",
     Balanced(ROWS["olist_catalog"], {"invalid_weight_g": 1}, fields={"invalid_weight_g": "product_weight_g"},
              rows={"invalid_weight_g": [5]}), fmt="jsonl")(
    lambda c: c.landed(c.render().replace(f'"product_weight_g": "{c.rows()[5][5]}"'.encode(),
                                          b'"product_weight_g": NaN', 1)))


# == Parquet typed columns =========================================================================================
def _typed_behavior(c: Ctx) -> bytes:
    rows = c.rows()
    return parquet({"user_id": pa.array([int(r[0]) for r in rows], pa.int64()),
                    "item_id": pa.array([int(r[1]) for r in rows], pa.int64()),
                    "category_id": pa.array([int(r[2]) for r in rows], pa.int32()),
                    "behavior_type": pa.array([r[3] for r in rows]),
                    "timestamp": pa.array([float(r[4]) for r in rows], pa.float64())})


case("typed-columns", "behavior", Balanced(ROWS["behavior"]), fmt="parquet")(lambda c: c.landed(_typed_behavior(c)))
case("typed-numeric-columns", "olist_catalog", Balanced(ROWS["olist_catalog"]), fmt="parquet")(
    lambda c: c.landed(parquet({col: pa.array([float(r[i]) for r in c.rows()]) if i >= 2 else
                                pa.array([r[i] for r in c.rows()]) for i, col in enumerate(c.columns)})))
case("nulls-in-parquet", "search",
     Balanced(ROWS["search"], {"empty_query": 1, "missing_session_id": 1},
              fields={"empty_query": "query", "missing_session_id": "session_id"},
              rows={"empty_query": [4], "missing_session_id": [5]}), fmt="parquet")(
    lambda c: c.landed(parquet({col: pa.array([None if (n, col) in {(4, "query"), (5, "session_id")} else r[i]
                                               for n, r in enumerate(c.rows())], pa.string())
                                for i, col in enumerate(c.columns)})))


# == values: catalog, search, olist ================================================================================
value_case("invalid-uniq-id", "catalog", {(2, "uniq_id"): "not-an-id", (3, "uniq_id"): "c2d766ca982eca8304150849735ffe"},
           {"invalid_key": 2}, {"invalid_key": "uniq_id"})
case("upper-case-uniq-id-is-normalised", "catalog", Balanced(ROWS["catalog"]), fmt="jsonl")(
    lambda c: c.landed(c.render([[r[0].upper(), *r[1:]] if n == 4 else r for n, r in enumerate(c.rows())])))
value_case("empty-uniq-id", "catalog", {(5, "uniq_id"): "  "}, {"missing_key": 1}, {"missing_key": "uniq_id"},
           fmt="parquet")
value_case("empty-product-name", "catalog", {(6, "product_name"): ""}, {"missing_product_name": 1},
           {"missing_product_name": "product_name"})
value_case("currency-symbol-in-price", "catalog", {(7, "retail_price"): "₹1,299"}, {"invalid_price": 1},
           {"invalid_price": "retail_price"}, fmt="tsv")
value_case("zero-or-negative-price", "catalog", {(8, "discounted_price"): "0", (9, "retail_price"): "-10"},
           {"non_positive_price": 2}, {})
value_case("bad-crawl-timestamp", "catalog", {(1, "crawl_timestamp"): "2016/03/25 22:59"}, {"invalid_timestamp": 1},
           {"invalid_timestamp": "crawl_timestamp"}, target="flipkart_full_columns.csv", rows_in=20)
case("duplicate-uniq-id", "catalog", Balanced(ROWS["catalog"] + 2, duplicate=2), fmt="parquet")(
    lambda c: c.landed(c.render(c.rows() + c.rows()[10:12])))
value_case("empty-query", "search", {(1, "query"): "", (2, "query"): "   "}, {"empty_query": 2},
           {"empty_query": "query"})
value_case("empty-session-id", "search", {(3, "session_id"): ""}, {"missing_session_id": 1},
           {"missing_session_id": "session_id"}, fmt="tsv")
value_case("garbage-event-time", "search", {(4, "event_time"): "yesterday", (5, "event_time"): "2015-13-45T00:00:00Z"},
           {"invalid_timestamp": 2}, {"invalid_timestamp": "event_time"})
value_case("event-time-of-another-day", "search", {(6, "event_time"): "2015-12-02T23:59:59Z"},
           {"outside_partition": 1}, {"outside_partition": "event_time"}, fmt="jsonl")
value_case("event-time-with-offset-is-converted", "search", {(7, "event_time"): "2015-12-03T12:00:00+05:30"}, {}, {})
value_case("invalid-clicked-product-id", "search", {(8, "clicked_product_id"): "p-123"},
           {"invalid_clicked_product_id": 1}, {"invalid_clicked_product_id": "clicked_product_id"}, fmt="parquet")
case("repeated-event", "search", Balanced(ROWS["search"] + 1, duplicate=1))(
    lambda c: c.landed(c.render(c.rows() + c.rows()[:1])))
value_case("invalid-product-id", "olist_catalog", {(1, "product_id"): "1e5", (2, "product_id"): ""},
           {"invalid_product_id": 1, "missing_product_id": 1},
           {"invalid_product_id": "product_id", "missing_product_id": "product_id"})
value_case("negative-weight", "olist_catalog", {(3, "product_weight_g"): "-100"}, {"invalid_weight_g": 1},
           {"invalid_weight_g": "product_weight_g"}, fmt="tsv")
value_case("fractional-photo-count", "olist_catalog", {(4, "product_photos_qty"): "1.5", (5, "product_photos_qty"): "a"},
           {"invalid_photos": 2}, {"invalid_photos": "product_photos_qty"})
value_case("unknown-category-is-kept", "olist_catalog", {(6, "product_category_name"): "not_a_category"}, {}, {},
           fmt="jsonl")
case("duplicate-product-id", "olist_catalog", Balanced(ROWS["olist_catalog"] + 1, duplicate=1))(
    lambda c: c.landed(c.render(c.rows() + [c.rows()[0][:1] + c.rows()[1][1:]])))
case("duplicate-lookup-key", "olist_catalog", Fails(LandingFileError, ("appears more than once",), row=71),
     target="product_category_name_translation.csv")(
    lambda c: c.landed(c.render(c.rows() + [[c.rows()[0][0], "bed, bath & table"]])))
case("lookup-header-only", "olist_catalog", Balanced(ROWS["olist_catalog"], rows_reference=0),
     target="product_category_name_translation.csv")(lambda c: c.landed(c.render([])))


# == the landing folder ============================================================================================
def _folder_case(case_id: str, source: str, names: tuple[str, ...], build: Callable[[Ctx], Landed], **options):
    case(case_id, source, Fails(LandingFolderError, names, names_file=False), **options)(build)


_folder_case("copy-suffix-in-name", "orders", ("orders (1).csv",), lambda c: c.landed(name="orders (1).csv"))
_folder_case("trailing-space-in-name", "behavior", ("'behavior.csv '",), lambda c: c.landed(name="behavior.csv "))
_folder_case("upper-case-name", "search", ("SEARCH_LOG.CSV",), lambda c: c.landed(name="SEARCH_LOG.CSV"))
_folder_case("two-files-for-one-name", "orders", ("2 files", "orders.csv", "orders.csv.gz"),
             lambda c: {**c.landed(), "orders.csv.gz": gzip.compress(c.render(), mtime=0)})
_folder_case("two-files-for-one-name", "catalog", ("2 files", "flipkart_prices_brand.jsonl"),
             lambda c: {**c.landed(), c.name + ".zst": zstd(c.render())}, fmt="jsonl")
_folder_case("sub-folder", "behavior", ("not regular files", "late"), lambda c: {**c.landed(), "late": Folder()})
_folder_case("symlink", "orders", ("not regular files", "orders.csv"), lambda c: {"orders.csv": Link(c.render())})
_folder_case("hidden-editor-file", "olist_catalog", (".olist_products_dataset.csv.swp",),
             lambda c: {**c.landed(), ".olist_products_dataset.csv.swp": b"\x00" * 16})
_folder_case("unknown-file-beside-sidecar", "search", ("notes.txt",),
             lambda c: {**c.landed(), "GENERATED.txt": b"generated\n", "notes.txt": b"hello\n"})
case("sidecar-file-is-kept-unread", "search", Balanced(ROWS["search"]))(
    lambda c: {**c.landed(), "GENERATED.txt": b"\xff not even text"})
case("lookup-file-missing", "olist_catalog",
     Fails(RequiredPartitionMissing, ("product_category_name_translation.csv",), names_file=False))(
    lambda c: {c.name: c.render()})
case("main-file-missing", "olist_catalog",
     Fails(RequiredPartitionMissing, ("olist_products_dataset.csv",), names_file=False),
     target="product_category_name_translation.csv")(lambda c: {c.name: c.render()})
case("delta-without-snapshot-file", "catalog", Balanced(20), target="flipkart_full_columns.csv", fmt="jsonl")(
    lambda c: c.landed())


# == more bytes, encodings and types ================================================================================
case("lone-surrogate-escape", "behavior", Fails(LandingFileError, ("column 'user_id'", "surrogate"), row=6),
     fmt="jsonl")(lambda c: _json_edit(c, 6, lambda r: _replace(r, user_id="\ud800")))
case("lone-surrogate-escape-in-nested-value", "search",
     Fails(LandingFileError, ("column 'query'", "surrogate"), row=11), fmt="jsonl", compression="zst")(
    lambda c: _json_edit(c, 11, lambda r: _replace(r, query={"text": "sofa \udc00"})))
case("json-nested-too-deeply", "behavior", Fails(LandingFileError, ("nested too deeply",), row=2), fmt="jsonl")(
    lambda c: c.landed(b"".join(line.replace(b'"item_id": ', b'"item_id": ' + b"[" * 100_000 + b"]" * 100_000 + b", "
                                             b'"x": ', 1) if n == 2 else line
                                for n, line in enumerate(c.render().splitlines(keepends=True)))))
case("json-empty-object-line", "behavior",
     Balanced(ROWS["behavior"] + 1, {"blank_row": 1}, fields={"blank_row": "*"},
              rows={"blank_row": [ROWS["behavior"]]}), fmt="jsonl")(
    lambda c: c.landed(c.render() + b"{}\n"))
# A row with every field blank is `blank_row` in every format, not the first rule's reason.
case("all-null-row", "olist_catalog",
     Balanced(ROWS["olist_catalog"] + 1, {"blank_row": 1}, fields={"blank_row": "*"},
              rows={"blank_row": [ROWS["olist_catalog"]]}), fmt="parquet")(
    lambda c: c.landed(c.render(c.rows() + [[None] * len(c.columns)])))
case("whitespace-only-row", "orders",
     Balanced(ROWS["orders"] + 1, {"blank_row": 1}, fields={"blank_row": "*"}, rows={"blank_row": [5]}), fmt="tsv")(
    lambda c: c.landed(c.render(c.rows()[:5] + [[" "] * len(c.columns)] + c.rows()[5:])))
case("row-of-empty-fields", "search",
     Balanced(ROWS["search"] + 1, {"blank_row": 1}, fields={"blank_row": "*"}, rows={"blank_row": [ROWS["search"]]}))(
    lambda c: c.landed(c.render(c.rows() + [[""] * len(c.columns)])))
case("utf16-declared-truncated", "orders", Fails(LandingFileError, ("not valid utf-16",)),
     declare={"encoding": "utf-16"})(lambda c: c.landed(c.render().decode().encode("utf-16")[:-1]))
case("cp1252-declared-undefined-byte", "catalog", Fails(LandingFileError, ("not valid cp1252", "0x81"), row=9),
     declare={"encoding": "cp1252"})(
    lambda c: c.landed(b"\n".join(line + b"\x81" if n == c.line(9) - 1 else line
                                  for n, line in enumerate(c.render().split(b"\n")))))
case("binary-file-named-csv", "orders", Fails(LandingFileError, ("not valid UTF-8", "0x89"), line=1))(
    lambda c: c.landed(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00"))
_header_case("trailing-delimiter-in-header", "olist_catalog", lambda h: h + [""], ("unexpected ['']",),
             target="product_category_name_translation.csv")
case("quoted-header-names", "search", Balanced(ROWS["search"]))(
    lambda c: c.landed(",".join(f'"{name}"' for name in c.columns).encode() + b"\n"
                       + delimited(None, c.rows())))
case("lookup-row-with-too-few-fields", "olist_catalog", Fails(LandingFileError, ("expected 2 fields, found 1",),
                                                              row=20), target="product_category_name_translation.csv")(
    lambda c: _line_edit(c, 20, lambda line: line.split(",")[0]))
case("unicode-line-separators-inside-fields", "orders", Balanced(ROWS["orders"]), fmt="tsv")(
    cells("orders", {(3, "Description"): "WHITE\u2028HANGING\u0085HEART"}))
value_case("whitespace-around-numbers-is-stripped", "orders", {(4, "Quantity"): " 6 ", (4, "UnitPrice"): "\t2.55 "},
           {}, {})
_orders("fractional-seconds", {(5, "InvoiceDate"): "2010-12-01 08:26:00.5"}, "invalid_timestamp", "InvoiceDate")
value_case("punctuation-only-query", "search", {(9, "query"): " ?!... "}, {"empty_query": 1}, {"empty_query": "query"})
value_case("empty-user-id-is-kept", "search", {(10, "user_id"): ""}, {}, {}, fmt="tsv")
case("timestamp-typed-column-for-epoch-seconds", "behavior",
     Balanced(ROWS["behavior"], {"invalid_timestamp": ROWS["behavior"]}, fields={"invalid_timestamp": "timestamp"}),
     fmt="parquet")(
    lambda c: c.landed(parquet({**{col: [r[i] for r in c.rows()] for i, col in enumerate(c.columns[:-1])},
                                "timestamp": pa.array([int(r[4]) * 1000 for r in c.rows()], pa.timestamp("ms"))})))
case("dictionary-and-null-typed-columns", "behavior",
     Balanced(ROWS["behavior"], {"invalid_category_id": ROWS["behavior"]}, fields={"invalid_category_id": "category_id"}),
     fmt="parquet")(
    lambda c: c.landed(parquet({"user_id": [r[0] for r in c.rows()], "item_id": [r[1] for r in c.rows()],
                                "category_id": pa.nulls(len(c.rows())),
                                "behavior_type": pa.array([r[3] for r in c.rows()]).dictionary_encode(),
                                "timestamp": [r[4] for r in c.rows()]})))


def _row_groups(c: Ctx) -> Landed:
    rows = c.rows()
    set_cell(rows, c.columns, 20, "product_weight_g", "heavy")
    buffer = io.BytesIO()
    pq.write_table(pa.table({col: [r[i] for r in rows] for i, col in enumerate(c.columns)}), buffer, row_group_size=7)
    return c.landed(buffer.getvalue())


case("several-row-groups", "olist_catalog",
     Balanced(ROWS["olist_catalog"], {"invalid_weight_g": 1}, fields={"invalid_weight_g": "product_weight_g"},
              rows={"invalid_weight_g": [20]}), fmt="parquet")(_row_groups)


def sources_file(cases: list[Case]) -> str:
    """The sources file of the corpus: one source per case."""
    return yaml.safe_dump({c.source_name: c.entry() for c in cases}, sort_keys=False, allow_unicode=True)


def summary(cases: list[Case]) -> dict:
    """How many cases, by source, by format (with compression) and by kind of outcome."""
    def count(key) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in cases:
            counts[key(c)] = counts.get(key(c), 0) + 1
        return dict(sorted(counts.items()))

    return {"cases": len(cases), "by_source": count(lambda c: c.source), "by_format": count(lambda c: c.fmt),
            "by_compression": count(lambda c: c.compression or "none"),
            "by_outcome": count(lambda c: c.expect.kind),
            "by_error": count(lambda c: c.expect.error.__name__ if isinstance(c.expect, Fails) else "-")}
