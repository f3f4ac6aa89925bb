"""Reading a bounded sample of an export for `sources infer`: which format it is and its first records as text.

Only a regular file is opened (`shopflow.common.storage.open_regular`). At most SAMPLE_BYTES of its content are read
(after gzip or zstd decompression, recognised by magic bytes, so a compression bomb costs one sample), cut at the last
line break, and at most SAMPLE_ROWS records are kept; the profile says how much was read. A Parquet file is read by
its footer and its first batch of SAMPLE_ROWS rows, and refused when that first row group is larger than
PARQUET_MAX_ROW_GROUP_BYTES. Every value becomes the text the landing readers would give (`shopflow.ingest.readers`):
'' for a missing value, JSON values as written, nested values as compact JSON.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shopflow.common.errors import LandingFileError
from shopflow.common.storage import open_regular
from shopflow.sources.spec import COMPRESSION_SUFFIXES

SAMPLE_BYTES = 8 << 20  # of content, after decompression
SAMPLE_ROWS = 20_000
PARQUET_MAX_ROW_GROUP_BYTES = 256 << 20
COMPRESSED_PARQUET_MAX_BYTES = 64 << 20  # a compressed Parquet file must be expanded whole to be read
DELIMITERS = (",", "\t", ";", "|")
GZIP_MAGIC, ZSTD_MAGIC, PARQUET_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"PAR1"
_HEADER_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ .-/()#")


class InferError(ValueError):
    """The export cannot be profiled (empty, binary, not a format the landing readers take); names the file."""


@dataclass
class ExportSample:
    """The first records of an export, every value as text, and what was learnt about the file on the way."""

    path: Path
    file_format: str  # csv, tsv, jsonl or parquet
    columns: list[str]  # raw column names (placeholders column_N for a delimited file without a header row)
    rows: list[list[str]]
    compression: str | None = None
    encoding: str = "utf-8"
    header: bool = True
    delimiter: str | None = None
    records: str | None = None  # JSON lines: the list whose items are rows
    fields: dict[str, str] = field(default_factory=dict)  # JSON lines: column -> field path, where not the default
    arrow_types: dict[str, str] = field(default_factory=dict)  # Parquet: column -> Arrow type
    content_bytes: int = 0  # of content read
    truncated: bool = False  # more content (or rows) than the sample holds
    evidence: dict[str, str] = field(default_factory=dict)  # file-level key -> why

    @property
    def landing_name(self) -> str:
        """The export's name without a compression suffix: what the landing file is declared as."""
        name = self.path.name
        for suffix in COMPRESSION_SUFFIXES:
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return name

    def column_values(self, index: int) -> list[str]:
        return [row[index] for row in self.rows]

    def sample_words(self) -> str:
        read = f"{self.content_bytes:,} bytes" + (f" ({self.compression}-decompressed)" if self.compression else "")
        cut = ", the first part of a longer export" if self.truncated else ", the whole export"
        return f"{len(self.rows):,} records from {read}{cut}"


def read_sample(path: Path) -> ExportSample:
    """The export's format and first records (see the module docstring for the bounds)."""
    path = Path(path)
    try:
        with open_regular(path) as (handle, size):
            if size == 0:
                raise InferError(f"{path}: the file is empty: nothing to infer from")
            head = handle.read(4)
            handle.seek(0)
            if head == PARQUET_MAGIC:
                return _parquet_sample(path, pq.ParquetFile(handle), None, size)
            compression = "gzip" if head.startswith(GZIP_MAGIC) else "zstd" if head.startswith(ZSTD_MAGIC) else None
            content, truncated = _bounded_content(path, handle, compression)
    except LandingFileError as exc:
        raise InferError(str(exc)) from None
    except pa.ArrowException as exc:
        raise InferError(f"{path}: starts like Parquet but cannot be read as Parquet ({exc})") from None
    except OSError as exc:
        raise InferError(f"{path}: {exc.strerror or exc}") from None
    if content.startswith(PARQUET_MAGIC):
        if truncated:
            raise InferError(f"{path}: a {compression}-compressed Parquet file larger than "
                             f"{COMPRESSED_PARQUET_MAX_BYTES:,} bytes expanded: land it uncompressed to infer from it")
        try:
            return _parquet_sample(path, pq.ParquetFile(io.BytesIO(content)), compression, len(content))
        except pa.ArrowException as exc:
            raise InferError(f"{path}: starts like Parquet but cannot be read as Parquet ({exc})") from None
    return _text_sample(path, content, compression, truncated)


def _bounded_content(path: Path, handle, compression: str | None) -> tuple[bytes, bool]:
    """Up to SAMPLE_BYTES of content (COMPRESSED_PARQUET_MAX_BYTES for what may be a compressed Parquet file) and
    whether there was more."""
    limit = SAMPLE_BYTES
    try:
        if compression is None:
            data = handle.read(limit + 1)
        else:
            stream = (gzip.GzipFile(fileobj=handle, mode="rb") if compression == "gzip"
                      else pa.CompressedInputStream(pa.PythonFile(handle, mode="r"), "zstd"))
            data = stream.read(len(PARQUET_MAGIC))
            if data == PARQUET_MAGIC:
                limit = COMPRESSED_PARQUET_MAX_BYTES
            data += stream.read(limit + 1 - len(data))
    except (OSError, EOFError, zlib.error, pa.ArrowException) as exc:
        raise InferError(f"{path}: not a readable {compression} file ({exc})") from None
    if not data:
        raise InferError(f"{path}: no content once decompressed: nothing to infer from")
    return bytes(data[:limit]), len(data) > limit


def _parquet_sample(path: Path, parquet: pq.ParquetFile, compression: str | None, size: int) -> ExportSample:
    metadata = parquet.metadata
    if metadata.num_row_groups and metadata.row_group(0).total_byte_size > PARQUET_MAX_ROW_GROUP_BYTES:
        raise InferError(f"{path}: the first row group holds {metadata.row_group(0).total_byte_size:,} bytes, more "
                         f"than the {PARQUET_MAX_ROW_GROUP_BYTES:,} a sample reads")
    batch = next(parquet.iter_batches(batch_size=SAMPLE_ROWS), None)
    if batch is None or batch.num_rows == 0:
        raise InferError(f"{path}: the Parquet file holds no rows: nothing to infer from")
    columns = list(batch.schema.names)
    texts = []
    for values in batch.columns:
        try:
            text = pc.cast(values, pa.large_string())
        except pa.ArrowNotImplementedError:  # nested values: compact JSON, as the landing reader writes them
            text = pa.array([None if v is None else json.dumps(v, separators=(",", ":"), ensure_ascii=False,
                                                               default=str) for v in values.to_pylist()])
        texts.append(pc.fill_null(text, "").to_pylist())
    sample = ExportSample(path, "parquet", columns, [list(row) for row in zip(*texts)], compression=compression,
                          arrow_types={n: str(t) for n, t in zip(columns, batch.schema.types)},
                          content_bytes=size, truncated=metadata.num_rows > batch.num_rows)
    sample.evidence["format"] = f"starts with the Parquet magic bytes PAR1; {metadata.num_rows:,} rows in its footer"
    return sample


# ---- text ---------------------------------------------------------------------------------------------------
def _text_sample(path: Path, content: bytes, compression: str | None, truncated: bool) -> ExportSample:
    if b"\x00" in content[: 1 << 16]:
        raise InferError(f"{path}: binary content (NUL bytes in its first 64 KiB): not a CSV, TSV, JSON-lines or "
                         "Parquet export")
    if truncated:  # a sample ends at its last complete line
        content = content[: content.rfind(b"\n") + 1] or content
    text, encoding, why = _decode(path, content)
    sample_format = _text_format(text, path)
    if sample_format == "jsonl":
        sample = _jsonl_sample(path, text, truncated)
    else:
        sample = _delimited_sample(path, text, sample_format, truncated)
    sample.compression, sample.encoding, sample.content_bytes = compression, encoding, len(content)
    sample.evidence["encoding"] = why
    return sample


def _decode(path: Path, content: bytes) -> tuple[str, str, str]:
    """(text, the encoding to declare, why)."""
    bom = content.startswith(b"\xef\xbb\xbf")
    try:
        text = content.decode("utf-8-sig")
        return text, "utf-8", ("valid UTF-8" + (" starting with a byte-order mark (the reader drops it)" if bom
                                                 else ""))
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    from charset_normalizer import from_bytes

    best = from_bytes(content[: 1 << 20]).best()
    if best is None or best.encoding is None:
        raise InferError(f"{path}: not text in any encoding charset-normalizer knows (byte {first_bad:,} is not "
                         "UTF-8): not a CSV, TSV or JSON-lines export")
    encoding = best.encoding.replace("_", "-")
    try:
        text = content.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise InferError(f"{path}: not UTF-8 and not {encoding} either ({exc})") from None
    return text, encoding, (f"not UTF-8 (byte {first_bad:,}); charset-normalizer reads it as {encoding} "
                            f"(chaos {best.chaos:.2f})")


def _text_format(text: str, path: Path) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first:
        raise InferError(f"{path}: holds only blank lines: nothing to infer from")
    if first.startswith("{"):
        try:
            if isinstance(json.loads(first), dict):
                return "jsonl"
        except ValueError:
            pass
    return "tsv" if ".tsv" in path.name.lower() or ".tab" in path.name.lower() else "csv"


def _delimited_sample(path: Path, text: str, named_format: str, truncated: bool) -> ExportSample:
    delimiter, why = _sniff_delimiter(text, "\t" if named_format == "tsv" else ",")
    file_format = "tsv" if delimiter == "\t" else "csv"
    try:
        records = []
        for record in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"'):
            records.append(record)
            if len(records) > SAMPLE_ROWS + 1:
                truncated = True
                break
    except csv.Error as exc:
        raise InferError(f"{path}: cannot be read as {file_format} ({exc})") from None
    if truncated and len(records) > 1:
        records.pop()  # the last record may have been cut by the sample's end (a quoted field with line breaks)
    blank = sum(1 for r in records if not any(v.strip() for v in r))
    records = [r for r in records if any(v.strip() for v in r)]
    if not records:
        raise InferError(f"{path}: holds no records")
    width = max(len(r) for r in records[:1000])
    header, header_why = _has_header(records)
    columns = _column_names(records[0], width) if header else [f"column_{i + 1}" for i in range(width)]
    body = records[1:] if header else records
    ragged = sum(1 for r in body if len(r) != width)
    rows = [(r + [""] * width)[:width] for r in body[:SAMPLE_ROWS]]
    sample = ExportSample(path, file_format, columns, rows, header=header, delimiter=delimiter,
                          truncated=truncated or len(body) > SAMPLE_ROWS)
    sample.evidence["delimiter"] = why
    sample.evidence["header"] = header_why
    if blank:
        sample.evidence["blank_rows"] = f"{blank:,} blank records (only delimiters) skipped in the sample"
    if ragged:
        sample.evidence["ragged_rows"] = f"{ragged:,} records have a field count other than {width}"
    return sample


def _sniff_delimiter(text: str, default: str) -> tuple[str, str]:
    """The delimiter whose field count is the same on most of the first 200 records (more than one field)."""
    head = text[: 1 << 16]
    best, best_share, best_width = default, 0.0, 1
    for delimiter in DELIMITERS:
        try:
            widths = [len(r) for r, _ in zip(csv.reader(io.StringIO(head, newline=""), delimiter=delimiter), range(200))
                      if any(v.strip() for v in r)]
        except csv.Error:
            continue
        if not widths:
            continue
        width = max(set(widths), key=widths.count)
        share = widths.count(width) / len(widths)
        if width > 1 and (share > best_share or (share == best_share and delimiter == default)):
            best, best_share, best_width = delimiter, share, width
    if best_width == 1:
        return default, f"no delimiter splits the records: one column ({default!r} as the file's name suggests)"
    return best, f"{best!r} splits {best_share:.0%} of the first records into {best_width} fields"


def _has_header(records: list[list[str]]) -> tuple[bool, str]:
    """Whether the first record names the columns: every value a plain name (no other punctuation, not starting
    with a digit), none repeated, and none of them recurring below it in its own column."""
    first, body = records[0], records[1:SAMPLE_ROWS + 1]
    cleaned = [value.strip().lstrip("\ufeff") for value in first]
    bad = next((v for v in cleaned if not v or v[0].isdigit() or not set(v) <= _HEADER_NAME_CHARS or len(v) > 64),
               None)
    if bad is not None:
        return False, f"no header row: the first record holds {_shown(bad)}, not a column name"
    if len(set(cleaned)) != len(cleaned):
        return False, "no header row: the first record repeats a value"
    for index, value in enumerate(cleaned):
        below = {r[index].strip() for r in body if index < len(r)}
        if value in below:
            return False, f"no header row: {_shown(value)} of the first record recurs below it"
        numbers = [v for v in below if v]
        if numbers and sum(_is_number(v) for v in numbers) >= 0.9 * len(numbers) and not _is_number(value):
            return True, f"header row: {_shown(value)} stands above a column of numbers"
    return True, "header row: every value of the first record is a name and none recurs below it"


def _column_names(first: list[str], width: int) -> list[str]:
    names, seen = [], set()
    for index in range(width):
        name = first[index].strip().lstrip("\ufeff") if index < len(first) else ""
        name = name or f"column_{index + 1}"
        while name in seen:
            name = f"{name}_{index + 1}"
        seen.add(name)
        names.append(name)
    return names


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def _shown(value: str, width: int = 40) -> str:
    return repr(value if len(value) <= width else value[: width - 1] + "…")


# ---- JSON lines -----------------------------------------------------------------------------------------------
def _jsonl_sample(path: Path, text: str, truncated: bool) -> ExportSample:
    objects = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            if truncated and number == len(text.splitlines()):
                break
            raise InferError(f"{path}: line {number} is not JSON ({exc}): not a JSON-lines export") from None
        if not isinstance(value, dict):
            raise InferError(f"{path}: line {number} is a JSON {type(value).__name__}, not an object")
        objects.append(value)
        if len(objects) >= SAMPLE_ROWS:
            truncated = True
            break
    records = _records_path(objects)
    paths: dict[str, None] = {}
    rows_as_maps = []
    for obj in objects:
        flat = _flatten(obj, skip=records)
        items = _at(obj, records) if records else None
        if records and isinstance(items, list):
            for item in items[: SAMPLE_ROWS]:
                row = dict(flat)
                if isinstance(item, dict):
                    row.update({f"{records}[].{k}": v for k, v in _flatten(item).items()})
                rows_as_maps.append(row)
        elif not records:
            rows_as_maps.append(flat)
        if len(rows_as_maps) >= SAMPLE_ROWS:
            truncated = True
            break
    for row in rows_as_maps:
        paths.update(dict.fromkeys(row))
    if not paths:
        raise InferError(f"{path}: its JSON objects hold no fields")
    columns, fields = _json_columns(list(paths), records)
    rows = [[_json_text(row.get(p)) for p in paths] for row in rows_as_maps[:SAMPLE_ROWS]]
    sample = ExportSample(path, "jsonl", columns, rows, records=records, fields=fields, truncated=truncated)
    sample.evidence["format"] = "every line is a JSON object"
    if records:
        sample.evidence["records"] = (f"{records!r} holds a list of objects in most lines: one row per item "
                                      f"({len(rows):,} rows from {len(objects):,} lines)")
    return sample


def _records_path(objects: list[dict]) -> str | None:
    """The field (path) holding a list of objects in at least half the objects, the one with the most items."""
    counts: dict[str, list[int]] = {}
    for obj in objects:
        for key, value in _flatten(obj, keep_lists=True).items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                counts.setdefault(key, []).append(len(value))
    usable = {k: sum(v) for k, v in counts.items() if len(v) * 2 >= len(objects)}
    return max(usable, key=usable.get) if usable else None


def _flatten(obj: dict, prefix: str = "", skip: str | None = None, keep_lists: bool = False) -> dict:
    out = {}
    for key, value in obj.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if path == skip:
            continue
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path, skip, keep_lists))
        else:
            out[path] = value
    return out


def _at(obj: dict, path: str):
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _json_columns(paths: list[str], records: str | None) -> tuple[list[str], dict[str, str]]:
    """Column names (snake-ish, unique) for field paths, and the `fields` entries the names do not imply."""
    columns, fields, seen = [], {}, set()
    for field_path in paths:
        in_item = records is not None and field_path.startswith(f"{records}[].")
        inner = field_path[len(records) + 3:] if in_item else field_path
        name = inner.replace(".", "_")
        if name in seen:
            name = field_path.replace("[]", "").replace(".", "_")
        seen.add(name)
        columns.append(name)
        default = f"{records}[].{name}" if records else name
        if field_path != default:
            fields[name] = field_path
    return columns, fields


def _json_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
