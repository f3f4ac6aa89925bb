"""Reading one landing file, of any format a `LandingFileSpec` declares, into the frame ingest expects.

This module owns the step from a landing file's bytes to its raw frame:

* reading within bounds (shopflow.ingest.bounded_read): only a regular file, decompressed (gzip and zstd, recognised
  by their magic bytes; a `.gz`, `.zst` or `.zstd` name on other bytes is refused) as a stream with a ceiling on the
  expanded bytes, and a ceiling on the length of a line of a text format;
* the declared text encoding (delimited and JSON-lines files are transcoded to UTF-8 before parsing);
* the four formats: csv and tsv (the delimited parser below, plus the spec's `quotechar`), jsonl (one JSON value
  per physical line, with field paths and an exploded `records` list) and parquet.

Whatever the format, the frame is the one `read_landing_file` gives for CSV: `_source_file` (the file's
name), then exactly the declared columns in order, each pandas "string" ('' for an empty or missing value, never
NA), then `_source_line` (int64: where the row is in the file, see each reader). A file that cannot be read as
declared raises `LandingFileError`, naming the file and, where there is one, the line.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shopflow.common.landing_file import (
    SOURCE_FILE,
    SOURCE_LINE,
    FileFacts,
    LandingFileError,
    constant_strings,
    decode_utf8,
    empty_landing_frame,
)
from shopflow.common.parquet import TEXT_TYPES
from shopflow.common.storage import StoragePath, open_regular
from shopflow.ingest.bounded_read import (
    GZIP_MAGIC,
    ZSTD_MAGIC,
    ReadLimits,
    check_content,
    read_content,
    stream_content,
)
from shopflow.sources.spec import LandingFileSpec

__all__ = ["GZIP_MAGIC", "ZSTD_MAGIC", "Dialect", "as_utf8", "is_line_based", "json_text", "parse_delimited",
           "read_delimited", "read_landing", "read_landing_chunks", "read_landing_file"]


def is_line_based(spec: LandingFileSpec) -> bool:
    """Whether the declared format is text read line by line (csv, tsv, jsonl), whose lines are bounded."""
    return spec.resolved_format != "parquet"


def read_landing(path: StoragePath, spec: LandingFileSpec,
                 limits: ReadLimits | None = None) -> tuple[FileFacts, pd.DataFrame]:
    """The facts of the file's bytes as landed (name, size, sha256) and its frame, read as `spec` declares.

    The file is read from storage once, within `limits` (default: the settings; see shopflow.ingest.bounded_read):
    a regular file, its content decompressed as a stream when it is gzip or zstd (an empty file counts as empty
    content, whatever its suffix). LandingFileError when the file is not a regular file, passes a limit, or cannot
    be read as declared; ValueError when the spec's JSON field paths explode a list other than `records`.
    """
    limits = limits or ReadLimits.from_environment()
    facts, data = read_content(path, lines=is_line_based(spec), limits=limits)
    if spec.resolved_format == "parquet":
        return facts, _read_parquet(path, data, spec, limits)
    return facts, _READERS[spec.resolved_format](path, data, spec)


# Encodings in which a line feed byte is always a line feed (never part of a longer character), so that a file's
# content can be cut into chunks at line feeds before it is decoded.
_CUTTABLE_ENCODINGS = {"utf-8", "ascii", "latin-1", "iso8859-15", "cp1250", "cp1251", "cp1252", "cp1253", "cp1254"}


def can_stream(spec: LandingFileSpec) -> bool:
    """Whether a file of `spec` can be read in chunks (`read_landing_chunks`): Parquet, or line-based text in an
    encoding whose line feed bytes are line feeds."""
    if spec.resolved_format == "parquet":
        return True
    return is_line_based(spec) and codecs.lookup(spec.encoding).name in _CUTTABLE_ENCODINGS


def read_landing_chunks(path: StoragePath, spec: LandingFileSpec,
                        limits: ReadLimits | None = None) -> Generator[pd.DataFrame, None, FileFacts]:
    """The file's frame (as `read_landing` gives it) in chunks of about `limits.chunk_bytes` of content, cut at line
    feeds between records (Parquet: see `_parquet_chunks`); the generator returns the file's facts once exhausted.
    Each chunk's `_source_line` is the line in the whole file, and so is the line a LandingFileError names. A file
    whose content fits in one chunk gives one frame, the very frame `read_landing` gives. For `can_stream` specs.

    A CSV record whose quoted field holds a line feed is never cut: a chunk ends only at a line feed preceded by an
    even number of quote characters (or, when they stay odd for SHOPFLOW_MAX_LINE_BYTES past the chunk, as a quote
    inside an unquoted field makes them, at a line feed). A malformed line in any chunk stops the read there, naming
    file and line."""
    limits = limits or ReadLimits.from_environment()
    if spec.resolved_format == "parquet":
        return (yield from _parquet_chunks(path, spec, limits))
    limits = limits.streamed()
    quote = None if spec.resolved_format == "jsonl" else Dialect.of(spec).quotechar
    pieces = stream_content(path, lines=True, limits=limits)
    pending = bytearray()
    first_line = 1  # the file's line number of pending's first line
    facts = None
    while True:
        if facts is None and len(pending) < limits.chunk_bytes:
            try:
                pending += next(pieces)
            except StopIteration as done:
                facts = done.value
            continue
        cut = _record_end(pending, quote, limits.chunk_bytes) if len(pending) >= limits.chunk_bytes else None
        if cut is None and len(pending) > limits.chunk_bytes + limits.max_line_bytes:
            # The quotes never balance: a quote character inside an unquoted field (`6" RULER`), which the parsers
            # take as a character, or an unbalanced quote, which the parser then reports at the record's line.
            cut = _record_end(pending, None, limits.chunk_bytes)
        if cut is None:
            if facts is None:  # no record ends in what was read so far: read on
                try:
                    pending += next(pieces)
                except StopIteration as done:
                    facts = done.value
                continue
            cut = len(pending)
        if cut == 0 and first_line > 1:
            return facts
        data = bytes(pending[:cut])
        del pending[:cut]
        yield _chunk_frame(path, data, spec, first_line)
        first_line += data.count(b"\n")
        if facts is not None and not pending:
            return facts


def _record_end(data: bytearray, quote: str | None, size: int) -> int | None:
    """Where to cut `data` into a chunk of about `size` bytes: just after the last line feed that ends a record
    (outside quotes) within the first `size` bytes, else after the first one beyond; None when no record ends."""
    view = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(view == 0x0A)
    if quote is not None and ends.size:
        quotes = np.flatnonzero(view == ord(quote))
        ends = ends[np.searchsorted(quotes, ends) % 2 == 0]  # an even number of quotes before: outside a field
    if not ends.size:
        return None
    ends += 1
    within = ends[ends <= size]
    return int(within[-1]) if within.size else int(ends[0])


def _chunk_frame(path: StoragePath, data: bytes, spec: LandingFileSpec, first_line: int) -> pd.DataFrame:
    """One chunk of a file's content as its frame, lines numbered as in the whole file (the header, if the file has
    one, is in the first chunk only)."""
    if first_line == 1:
        return _READERS[spec.resolved_format](path, data, spec)
    offset = first_line - 1
    try:
        if spec.resolved_format == "jsonl":
            frame = _read_jsonl(path, data, spec)
        else:
            frame = parse_delimited(path, as_utf8(path, data, spec.encoding), spec.columns, False, Dialect.of(spec))
    except LandingFileError as exc:
        raise LandingFileError(exc.path, None if exc.line is None else exc.line + offset, exc.message) from exc
    frame[SOURCE_LINE] = frame[SOURCE_LINE] + offset
    return frame


def as_utf8(path: Path, data: bytes, encoding: str) -> bytes:
    """`data`, text in `encoding`, as UTF-8 bytes (unchanged when it is declared UTF-8 already)."""
    if codecs.lookup(encoding).name == "utf-8":
        return data
    try:
        return data.decode(encoding).encode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].decode(encoding, errors="replace").count("\n") + 1
        raise LandingFileError(path, line, f"not valid {encoding} (byte {data[exc.start]:#04x})") from exc


def _string_frame(path: Path, columns: list[str], arrays: list[pa.Array | pa.ChunkedArray],
                  lines: np.ndarray) -> pd.DataFrame:
    frame = pa.table(dict(zip(columns, arrays))).to_pandas(types_mapper=TEXT_TYPES.get)
    frame[SOURCE_LINE] = pd.Series(lines, dtype="int64", index=frame.index)
    frame.insert(0, SOURCE_FILE, constant_strings(path.name, len(frame), frame.index))
    return frame


# --- csv / tsv ------------------------------------------------------------------------------------------------------
# landing_io's parser, with the quoting made a parameter: identical to `landing_io._parse` for quotechar '"'.


@dataclass(frozen=True)
class Dialect:
    """How a delimited file separates and quotes its fields (quotechar None: no quoting at all)."""

    delimiter: str = ","
    quotechar: str | None = '"'

    @classmethod
    def of(cls, spec: LandingFileSpec) -> "Dialect":
        return cls(delimiter=spec.resolved_delimiter, quotechar=spec.quotechar)

    def csv_options(self) -> dict:
        if self.quotechar is None:
            return {"delimiter": self.delimiter, "quoting": csv.QUOTE_NONE}
        return {"delimiter": self.delimiter, "quotechar": self.quotechar}

    def arrow_options(self) -> pacsv.ParseOptions:
        return pacsv.ParseOptions(delimiter=self.delimiter, quote_char=self.quotechar or False,
                                  newlines_in_values=False)


def _read_delimited(path: Path, data: bytes, spec: LandingFileSpec) -> pd.DataFrame:
    return parse_delimited(path, as_utf8(path, data, spec.encoding), spec.columns, spec.header, Dialect.of(spec))


def parse_delimited(path: Path, data: bytes, columns: list[str], has_header: bool, dialect: Dialect) -> pd.DataFrame:
    """UTF-8 delimited bytes as the raw frame. With a header, it must name `columns` (in that order); without one,
    each record must have exactly len(columns) fields. Arrow parses a file with one record per line; otherwise
    (quoted newlines, blank lines, any parse problem) Python's csv module reads it and pinpoints the bad line."""
    if not data or data.isspace():
        if has_header:
            raise LandingFileError(path, 1, "file is empty: expected a header row")
        return empty_landing_frame(columns, path)
    if has_header:
        # The first line ends at the first line break of any style: CR LF, LF, or a lone CR (classic Mac files,
        # which Python's csv module below reads like any other).
        end = min((at for at in (data.find(b"\n"), data.find(b"\r")) if at >= 0), default=-1)
        first_line = decode_utf8(path, data if end < 0 else data[:end])
        try:
            header = [h.strip() for h in next(csv.reader([first_line], **dialect.csv_options()))]
        except csv.Error as exc:
            raise LandingFileError(path, 1, f"malformed header ({exc})") from exc
        if header != columns:
            raise LandingFileError(path, 1, f"header {_shown(header)} does not match the expected columns {columns}: "
                                            f"{_header_difference(header, columns)}")
    frame = _read_delimited_fast(data, columns, has_header, dialect)
    if frame is None:
        frame = _read_delimited_exact(path, decode_utf8(path, data), columns, has_header, dialect)
    frame.insert(0, SOURCE_FILE, constant_strings(path.name, len(frame), frame.index))
    return frame


def _shown(header: list[str], width: int = 40, count: int = 20) -> str:
    """A header as an error shows it: a file that is not what it claims (a secret, a binary) must not be echoed
    whole into task logs and the store, so known secrets are masked (shopflow.common.redaction: before cutting, so that no
    prefix of one is left) and each name and the list are cut short."""
    from shopflow.common.redaction import redact

    names = [redact(name, limit=sys.maxsize) for name in header[:count]]
    names = [name if len(name) <= width else name[:width] + "…" for name in names]
    return repr(names)[:-1] + (f", … {len(header) - count} more]" if len(header) > count else "]")


def _header_difference(header: list[str], columns: list[str]) -> str:
    """What differs between a header and the declared columns, in words: the columns it lacks, the names it has that
    are not declared, the names it repeats, or (when it has exactly the declared names) that their order differs."""
    if [name.casefold() for name in header] == [column.casefold() for column in columns]:
        return "the names differ from the declared columns only in letter case"
    problems = []
    missing = [column for column in columns if column not in header]
    unexpected = [name for name in header if name not in columns]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if missing:
        problems.append(f"missing {missing}")
    if unexpected:
        problems.append(f"unexpected {_shown(unexpected)}")
    if repeated:
        problems.append(f"repeated {_shown(repeated)}")
    return "; ".join(problems) or "the same columns in another order"


def _read_delimited_fast(data: bytes, columns: list[str], has_header: bool, dialect: Dialect) -> pd.DataFrame | None:
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),  # the content as it is, not a copy
            read_options=pacsv.ReadOptions(column_names=columns, skip_rows=1 if has_header else 0),
            parse_options=dialect.arrow_options(),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.large_string() for c in columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    physical_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1) - (1 if has_header else 0)
    if table.num_rows != physical_lines:
        return None  # blank lines were skipped, so line numbers would be wrong: take the exact path
    frame = table.to_pandas(types_mapper=TEXT_TYPES.get)
    frame[SOURCE_LINE] = pd.RangeIndex(table.num_rows) + (2 if has_header else 1)
    return frame


def _read_delimited_exact(path: Path, text: str, columns: list[str], has_header: bool,
                          dialect: Dialect) -> pd.DataFrame:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, **dialect.csv_options())
    records: list[list[str]] = []
    lines: list[int] = []
    start_line = 1
    try:
        for record in reader:
            line = start_line
            start_line = reader.line_num + 1
            if has_header and line == 1:
                continue
            if not record:
                record = [""] * len(columns)  # an empty line carries no record; kept so the ledger still sees it
            if len(record) != len(columns):
                raise LandingFileError(path, line, f"expected {len(columns)} fields, found {len(record)}")
            records.append(record)
            lines.append(line)
    except csv.Error as exc:
        # The parser gives up where it notices (often many lines on, or at the end of the file); the record that
        # broke began at `start_line`: an unbalanced quote there swallowed the lines up to where it gave up.
        spans = f"; the record starting here runs to line {reader.line_num}" if reader.line_num > start_line else ""
        hint = ", an unbalanced quote?" if dialect.quotechar and reader.line_num > start_line else ""
        raise LandingFileError(path, start_line, f"malformed CSV ({exc}{spans}{hint})") from exc
    frame = pd.DataFrame(records, columns=columns, dtype="string") if records else empty_landing_frame(columns, path).drop(
        columns=[SOURCE_FILE, SOURCE_LINE]
    )
    frame[SOURCE_LINE] = pd.Series(lines, dtype="int64")
    return frame


# --- jsonl ----------------------------------------------------------------------------------------------------------


class _JsonLiteral(str):
    """Text that goes into JSON as it is, unquoted."""


class _JsonNumber(_JsonLiteral):
    """A JSON number kept as its literal text (17850, 2.55, 1.0, 1e5), so nested values re-serialise unchanged."""


# Numbers kept as their literal text: a line re-serialised (landing.export splits lines by day) keeps 1.10 as 1.10.
JSON_DECODER = json.JSONDecoder(parse_int=_JsonNumber, parse_float=_JsonNumber, parse_constant=_JsonNumber)
_JSON_WHITESPACE = " \t\r"
_quote: Callable[[str], str] = json.encoder.encode_basestring  # json.dumps(text, ensure_ascii=False)


def json_text(value) -> str:
    """A decoded JSON value as a column's text: strings as they are, numbers as written, true/false as such,
    null as '', objects and arrays as compact JSON (numbers as written, non-ASCII unescaped)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return _compact_json(value)


def _compact_json(value) -> str:
    """Compact JSON of a decoded value, without recursion: a value nested as deeply as the decoder allows fits."""
    parts: list[str] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, _JsonLiteral):
            parts.append(item)
        elif isinstance(item, str):
            parts.append(_quote(item))
        elif type(item) is dict:
            tokens: list = [_OPEN_OBJECT]
            for key, member in item.items():
                tokens += [_JsonLiteral(("," if len(tokens) > 1 else "") + _quote(key) + ":"), member]
            tokens.append(_CLOSE_OBJECT)
            pending.extend(reversed(tokens))
        elif type(item) is list:
            tokens = [_OPEN_ARRAY]
            for position, member in enumerate(item):
                tokens += [_COMMA, member] if position else [member]
            tokens.append(_CLOSE_ARRAY)
            pending.extend(reversed(tokens))
        else:
            parts.append(json.dumps(item))  # null, true, false
    return "".join(parts)


_OPEN_OBJECT, _CLOSE_OBJECT, _OPEN_ARRAY, _CLOSE_ARRAY, _COMMA = map(_JsonLiteral, "{}[],")


def json_kind(value) -> str:
    if isinstance(value, _JsonNumber):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    return {dict: "an object", list: "an array", type(None): "null"}[type(value)]


class _NotAnObject(Exception):
    def __init__(self, depth: int, value):
        self.depth, self.value = depth, value


def _walk(value, keys: tuple[str, ...]):
    """The value at `keys` below `value`: None where a key is absent or a value on the way is null."""
    for depth, key in enumerate(keys):
        if type(value) is dict:
            value = value.get(key)
        elif value is None:
            return None
        else:
            raise _NotAnObject(depth, value)
    return value


@dataclass(frozen=True)
class _JsonColumn:
    """One column of a JSON-lines read: where its value is, and the values read so far."""

    name: str
    path: str
    keys: tuple[str, ...]  # from the record, or (inside the records list) from each item
    values: list

    def describe(self) -> str:
        return f"column {self.name!r}: field path {self.path!r}"


@dataclass(frozen=True)
class _JsonColumns:
    """The columns of one JSON-lines read: those read by keys from the line's object (`outer`), and those inside the
    exploded `records` list, read by keys from each of its items (`inner`)."""

    records: tuple[str, ...] | None
    records_path: str | None
    outer: tuple[_JsonColumn, ...]
    inner: tuple[_JsonColumn, ...]

    @classmethod
    def of(cls, spec: LandingFileSpec) -> "_JsonColumns":
        """The columns of `spec`, none read yet. ValueError when a field path explodes a list other than
        `records` (one list per file is exploded)."""
        records = spec.records.removesuffix("[]") if spec.records else None
        if records is not None and "[]" in records:
            raise ValueError(f"records {spec.records!r}: only one list can be exploded (no [] inside it)")
        list_prefix = f"{records}[]" if records else None
        outer, inner = [], []
        for column in spec.columns:
            path = spec.field_path(column)
            if list_prefix and (path == list_prefix or path.startswith(list_prefix + ".")):
                rest = path[len(list_prefix) + 1:]
                inner.append(_JsonColumn(column, path, tuple(rest.split(".")) if rest else (), []))
            elif "[]" in path:
                raise ValueError(f"column {column!r}: field path {path!r} explodes a list, which only the records "
                                 f"list ({spec.records!r}) may do")
            else:
                outer.append(_JsonColumn(column, path, tuple(path.split(".")), []))
        return cls(tuple(records.split(".")) if records else None, spec.records, tuple(outer), tuple(inner))


def _read_jsonl(path: Path, data: bytes, spec: LandingFileSpec) -> pd.DataFrame:
    """One JSON object per physical line; blank lines are skipped. `_source_line` is the physical line (1-based) of
    the JSON record a row comes from. With `records`, each item of that list is a row (columns inside it read from
    the item, the others repeat the record's value), and a record whose list is empty, null or absent gives no
    rows. A value path through null or a missing key gives ''; through any other non-object it is an error."""
    plan = _JsonColumns.of(spec)
    text = decode_utf8(path, as_utf8(path, data, spec.encoding))
    lines: list[int] = []
    for line_number, record in _json_objects(path, text):
        if plan.records is None:
            _take_values(path, line_number, record, plan.outer, 1)
            lines.append(line_number)
            continue
        items = _records_list(path, line_number, record, plan)
        if not items:
            continue
        _take_values(path, line_number, record, plan.outer, len(items))
        for column in plan.inner:
            column.values.extend(_item_values(path, line_number, items, column, plan))
        lines.extend([line_number] * len(items))
    columns = {column.name: column.values for column in (*plan.outer, *plan.inner)}
    try:
        arrays = [pa.array(columns[name], type=pa.large_string()) for name in spec.columns]
    except UnicodeEncodeError:
        raise _not_a_character(path, columns, lines) from None
    return _string_frame(path, spec.columns, arrays, np.array(lines, dtype=np.int64))


def _not_a_character(path: Path, columns: dict[str, list[str]], lines: list[int]) -> LandingFileError:
    """The error for a JSON string whose escape is no character (a lone UTF-16 surrogate such as `\\ud800`, which
    JSON's grammar allows but no text can hold): it names the first such value's line and column."""
    found = []
    for name, values in columns.items():
        for row, text in enumerate(values):
            if text is None:
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                found.append((row, name, ord(text[exc.start])))
                break
    row, name, code = min(found)
    return LandingFileError(path, lines[row], f"column {name!r}: the JSON string escape \\u{code:04x} is a lone "
                                              "UTF-16 surrogate, not a character")


def _json_objects(path: Path, text: str):
    decode = JSON_DECODER.decode
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip(_JSON_WHITESPACE):
            continue
        try:
            record = decode(line)
        except json.JSONDecodeError as exc:
            raise LandingFileError(path, line_number, f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
        except RecursionError as exc:
            raise LandingFileError(path, line_number, "invalid JSON (nested too deeply)") from exc
        if type(record) is not dict:
            raise LandingFileError(path, line_number, f"expected a JSON object, found {json_kind(record)}")
        yield line_number, record


def _take_values(path: Path, line_number: int, record: dict, columns: tuple[_JsonColumn, ...], repeat: int) -> None:
    for column in columns:
        try:
            value = record.get(column.keys[0]) if len(column.keys) == 1 else _walk(record, column.keys)
        except _NotAnObject as exc:
            raise _crossing_error(path, line_number, column.describe(), column.keys[: exc.depth], exc.value) from None
        text = value if isinstance(value, str) else json_text(value)
        if repeat == 1:
            column.values.append(text)
        else:
            column.values.extend([text] * repeat)


def _records_list(path: Path, line_number: int, record: dict, plan: _JsonColumns) -> list | None:
    try:
        items = _walk(record, plan.records)
    except _NotAnObject as exc:
        what = f"records path {plan.records_path!r}"
        raise _crossing_error(path, line_number, what, plan.records[: exc.depth], exc.value) from None
    if items is None or type(items) is list:
        return items
    raise LandingFileError(path, line_number, f"records path {plan.records_path!r} is {json_kind(items)}, "
                                              "not an array")


def _item_values(path: Path, line_number: int, items: list, column: _JsonColumn, plan: _JsonColumns) -> list[str]:
    keys = column.keys
    texts = []
    for position, item in enumerate(items):
        try:
            value = item.get(keys[0]) if len(keys) == 1 and type(item) is dict else _walk(item, keys)
        except _NotAnObject as exc:
            crossed = (f"{'.'.join(plan.records)}[{position}]", *keys[: exc.depth])
            raise _crossing_error(path, line_number, column.describe(), crossed, exc.value) from None
        texts.append(value if isinstance(value, str) else json_text(value))
    return texts


def _crossing_error(path: Path, line_number: int, what: str, crossed: tuple[str, ...], value) -> LandingFileError:
    return LandingFileError(path, line_number, f"{what} crosses {'.'.join(crossed)!r}, which is {json_kind(value)}, "
                                               "not an object")


# --- parquet --------------------------------------------------------------------------------------------------------


PARQUET_MAGIC = b"PAR1"


def _read_parquet(path: Path, data: bytes, spec: LandingFileSpec, limits: ReadLimits) -> pd.DataFrame:
    """The declared columns of a Parquet file (others are not read), each as text: Arrow's cast to string
    (timestamps in ISO form with their unit's precision, e.g. `2017-11-25 08:00:01.000` for milliseconds; booleans
    as true/false), nested values as compact JSON, nulls as ''. For Parquet the "line" is the row: `_source_line`
    is the 1-based row number. The declared columns' pages, as the file's metadata gives their size once
    decompressed, must fit the content ceiling."""
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        _check_parquet_columns(path, parquet, spec.columns)
        _check_parquet_size(path, parquet.metadata, spec.columns, limits)
        table = parquet.read(columns=spec.columns)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable_parquet(path, exc) from exc
    return _parquet_frame(path, spec.columns, [table.column(name) for name in spec.columns], first_row=1)


def _parquet_chunks(path: StoragePath, spec: LandingFileSpec,
                    limits: ReadLimits) -> Generator[pd.DataFrame, None, FileFacts]:
    """A Parquet file's frame in batches of rows, each about `limits.chunk_bytes` of the declared columns as text
    (as a sample of the first rows measures them: pages are dictionary-encoded and compressed, so their size says
    little of the frame's); rows numbered as in the whole file. The file is read through first for its facts (size,
    sha256) within SHOPFLOW_MAX_STREAMED_BYTES, then opened for the random access Parquet needs (the footer first),
    the declared columns only; a batch never holds more than a row group. A file whose declared columns fit in one
    chunk, or that is compressed as a whole (gzip or zstd, not Parquet on disk), is read whole by `read_landing`."""
    streamed = limits.streamed()
    with open_regular(path) as (handle, _):
        plain = handle.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC
        rows, text_bytes = _parquet_text_bytes(path, handle, spec.columns, streamed) if plain else (0, 0)
    if text_bytes <= limits.chunk_bytes:
        facts, frame = read_landing(path, spec, limits)
        yield frame
        return facts
    facts = check_content(path, lines=False, limits=streamed)
    with open_regular(path) as (handle, size):
        if size != facts.size_bytes:
            raise LandingFileError(path, None, f"changed while it was read ({facts.size_bytes:,} bytes, then "
                                               f"{size:,})")
        try:
            parquet = pq.ParquetFile(handle)
            _check_parquet_columns(path, parquet, spec.columns)
            _check_parquet_size(path, parquet.metadata, spec.columns, streamed)
            batch_rows = max(1, rows * limits.chunk_bytes // text_bytes)
            batches = parquet.iter_batches(batch_size=batch_rows, columns=spec.columns, use_threads=False)
            first_row = 1
            while (batch := next(batches, None)) is not None:
                frame = _parquet_frame(path, spec.columns, batch.columns, first_row)
                first_row += batch.num_rows
                del batch
                yield frame
            if first_row == 1:  # row groups without rows: the day's one, empty, frame
                yield _parquet_frame(path, spec.columns, [pa.array([], pa.large_string())] * len(spec.columns), 1)
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable_parquet(path, exc) from exc
    return facts


PARQUET_SAMPLE_ROWS = 4096


def _parquet_text_bytes(path: StoragePath, handle, columns: list[str], limits: ReadLimits) -> tuple[int, int]:
    """(the file's rows, about how many bytes its declared columns hold as text): the rows times the text size of
    its first PARQUET_SAMPLE_ROWS rows; (0, 0) for a file that is not readable Parquet (the whole read says why).
    Declared pages that expand past the ceiling are not sampled: their size is the answer, and the streamed read
    refuses them before it reads a page."""
    try:
        handle.seek(0)
        parquet = pq.ParquetFile(handle)
        rows = parquet.metadata.num_rows
        expanded = _expanded_bytes(parquet.metadata, columns)
        if not rows or expanded > limits.max_expanded_bytes:
            return rows, expanded if rows else 0
        _check_parquet_columns(path, parquet, columns)
        sample = next(parquet.iter_batches(batch_size=PARQUET_SAMPLE_ROWS, columns=columns, use_threads=False))
        size = sum(_parquet_text(path, name, column).nbytes for name, column in zip(columns, sample.columns))
        return rows, rows * size // max(sample.num_rows, 1)
    except (pa.ArrowException, OSError, StopIteration, LandingFileError):
        return 0, 0


def _parquet_frame(path: StoragePath, columns: list[str], values: list, first_row: int) -> pd.DataFrame:
    arrays = [_parquet_text(path, name, column) for name, column in zip(columns, values)]
    rows = len(arrays[0]) if arrays else 0
    return _string_frame(path, columns, arrays, np.arange(first_row, first_row + rows, dtype=np.int64))


def _unreadable_parquet(path: StoragePath, exc: Exception) -> LandingFileError:
    return LandingFileError(path, None, f"not a readable Parquet file ({exc})")


def _check_parquet_columns(path: StoragePath, parquet: pq.ParquetFile, columns: list[str]) -> None:
    names = parquet.schema_arrow.names
    missing = [column for column in columns if column not in names]
    if missing:
        raise LandingFileError(path, None, f"missing columns {missing}; the file has {names}")
    doubled = sorted({column for column in columns if names.count(column) > 1})
    if doubled:
        raise LandingFileError(path, None, f"columns {doubled} appear more than once in the file")


def _expanded_bytes(metadata: pq.FileMetaData, columns: list[str]) -> int:
    """Bytes of the declared columns' pages once decompressed, as the file's metadata gives them."""
    wanted = set(columns)
    return sum(group.column(i).total_uncompressed_size
               for group in map(metadata.row_group, range(metadata.num_row_groups))
               for i in range(group.num_columns) if group.column(i).path_in_schema.split(".")[0] in wanted)


def _check_parquet_size(path: Path, metadata: pq.FileMetaData, columns: list[str], limits: ReadLimits) -> None:
    """Refuse, before they are read, declared columns whose pages expand past the content ceiling (the compression
    bomb of Parquet: pages are compressed one by one inside the file)."""
    expanded = _expanded_bytes(metadata, columns)
    if expanded > limits.max_expanded_bytes:
        raise LandingFileError(path, None, f"the declared columns expand to {expanded:,} bytes, more than "
                                           f"{limits.max_expanded_bytes:,} ({limits.ceiling_setting}="
                                           f"{limits.max_expanded_bytes}, the most bytes a file may hold; raise that "
                                           "setting to read it)")


def _parquet_text(path: Path, name: str, values: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    try:
        text = pc.cast(values, pa.large_string())
    except pa.ArrowNotImplementedError:
        text = pa.array([None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                                                                default=str)
                         for value in values.to_pylist()], type=pa.large_string())
    except pa.ArrowInvalid as exc:
        raise LandingFileError(path, None, f"column {name!r} ({values.type}) cannot be read as text ({exc})") from exc
    return pc.fill_null(text, "")


_READERS: dict[str, Callable[[Path, bytes, LandingFileSpec], pd.DataFrame]] = {
    "csv": _read_delimited,
    "tsv": _read_delimited,
    "jsonl": _read_jsonl,
}


# The CSV facade: a delimited file read with columns and a header flag instead of a LandingFileSpec.
def read_delimited(path: StoragePath, columns: list[str], *, has_header: bool, delimiter: str = ",") -> pd.DataFrame:
    """Parse a delimited landing file into a frame of strings plus `_source_file` and `_source_line`.

    Every value stays a string ('' for empty) so no information is lost before cleaning decides what it means.
    With a header, the header must name `columns` (in that order); without one, each record must have
    exactly len(columns) fields. Any violation raises LandingFileError with the file and line.
    (`read_landing_file(...)[1]`; `read_landing` reads every format.)
    """
    return read_landing_file(path, columns, has_header=has_header, delimiter=delimiter)[1]


def read_landing_file(
    path: StoragePath, columns: list[str], *, has_header: bool, delimiter: str = ","
) -> tuple[FileFacts, pd.DataFrame]:
    """`file_facts(path)` and `read_delimited(path, ...)` together, reading the file from disk only once: the CSV
    case of `read_landing`."""
    spec = LandingFileSpec(name=path.name, columns=columns, header=has_header, delimiter=delimiter,
                           format="tsv" if delimiter == "\t" else "csv")
    return read_landing(path, spec)
