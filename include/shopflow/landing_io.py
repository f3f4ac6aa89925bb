"""Reading landing files and writing lake files.

Landing files are read, never modified. Every parsed record keeps the physical line where it starts
(`_source_line`), so a quarantined row or a parse error can be traced back to the file. Lake files are
written atomically (shopflow.storage: locally a temporary name in the same folder, fsync, rename; on an object store
one put of the whole object) and deterministically, so re-running a partition leaves byte-identical Parquet.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopflow import storage
from shopflow.storage import StoragePath

SOURCE_FILE = "_source_file"
SOURCE_LINE = "_source_line"
_DEFAULT_STR = pd.Series([""]).dtype  # what `frame[column] = "text"` gives: in pandas 3, `str` (Arrow-backed)


class LandingFileError(ValueError):
    """A landing file cannot be read as its source's format. Names the file and the line."""

    def __init__(self, path: Path | str, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class FileFacts:
    name: str
    size_bytes: int
    sha256: str

    def as_dict(self) -> dict:
        return {"name": self.name, "size_bytes": self.size_bytes, "sha256": self.sha256}


def file_facts(path: StoragePath) -> FileFacts:
    return _facts(path, storage.read_bytes(path))


def _facts(path: StoragePath, raw: bytes) -> FileFacts:
    return FileFacts(name=path.name, size_bytes=len(raw), sha256=hashlib.sha256(raw).hexdigest())


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LandingFileError(path, line, f"not valid UTF-8 (byte {data[exc.start]:#04x})") from exc


def read_delimited(path: StoragePath, columns: list[str], *, has_header: bool, delimiter: str = ",") -> pd.DataFrame:
    """Parse a delimited landing file into a frame of strings plus `_source_file` and `_source_line`.

    Every value stays a string ('' for empty) so no information is lost before cleaning decides what it means.
    With a header, the header must name `columns` (in that order); without one, each record must have
    exactly len(columns) fields. Any violation raises LandingFileError with the file and line.
    (`read_landing_file(...)[1]`; shopflow.readers reads every format.)
    """
    return read_landing_file(path, columns, has_header=has_header, delimiter=delimiter)[1]


def read_landing_file(
    path: StoragePath, columns: list[str], *, has_header: bool, delimiter: str = ","
) -> tuple[FileFacts, pd.DataFrame]:
    """`file_facts(path)` and `read_delimited(path, ...)` together, reading the file from disk only once: the CSV
    case of `shopflow.readers.read_landing`."""
    from shopflow.readers import read_landing
    from shopflow.sources.spec import LandingFileSpec

    spec = LandingFileSpec(name=path.name, columns=columns, header=has_header, delimiter=delimiter,
                           format="tsv" if delimiter == "\t" else "csv")
    return read_landing(path, spec)


def constant_strings(value: str, length: int, index: pd.Index | None = None) -> pd.Series:
    """A Series repeating `value`, as inserting the scalar would give it (pandas' default `str` dtype, Arrow-backed),
    built straight from one Arrow buffer instead of a million Python references."""
    if not (isinstance(_DEFAULT_STR, pd.StringDtype) and _DEFAULT_STR.storage == "pyarrow"):
        return pd.Series(value, index=index if index is not None else pd.RangeIndex(length), dtype=_DEFAULT_STR)
    encoded = value.encode("utf-8")
    offsets = np.arange(length + 1, dtype=np.int64) * len(encoded)
    array = pa.LargeStringArray.from_buffers(length, pa.py_buffer(offsets), pa.py_buffer(encoded * length))
    return pd.Series(pd.arrays.ArrowStringArray(array, dtype=_DEFAULT_STR), index=index, copy=False)


def _empty_frame(columns: list[str], path: Path) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series([], dtype="string") for c in columns})
    frame[SOURCE_LINE] = pd.Series([], dtype="int64")
    frame.insert(0, SOURCE_FILE, path.name)
    return frame


# The raw zone is written once and read back once (by clean), whole: column statistics (min/max of every string
# column) serve no reader there, and a light zstd level compresses these columns nearly as well as the default.
RAW_ZONE_OPTIONS = {"compression_level": 1, "write_statistics": False}


def release_unused_memory() -> None:
    """Give memory that was freed, but that the allocators keep for reuse, back to the system: Arrow's pool, and on
    glibc the C heap (numpy's buffers), which otherwise keeps what big temporary arrays once used. Called between
    the big phases of a step so that the next phase's frames do not stack on the previous phase's leftovers."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only; musl and others have no malloc_trim
    except (OSError, AttributeError):
        return None


def write_parquet_atomic(frame: pd.DataFrame, path: StoragePath, *, compression_level: int | None = None,
                         write_statistics: bool = True) -> StoragePath:
    """Write `frame` to `path` atomically (shopflow.storage) and deterministically (same frame -> same bytes).

    zstd-compressed; columns whose values are all distinct (like `_source_line`) are not dictionary-encoded."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    dictionary = [name for name in table.column_names if name not in (SOURCE_LINE, "source_line")]
    return storage.write_parquet(table, path, compression="zstd", compression_level=compression_level,
                                 write_statistics=write_statistics, use_dictionary=dictionary)


_TEXT_TYPES = {pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}


def parquet_columns(path: StoragePath | str) -> list[str]:
    """The column names of a lake file, from its footer."""
    source, filesystem = storage.arrow_source(path)
    return pq.read_schema(source, filesystem=filesystem).names


def read_parquet(path: StoragePath | str, *, text_as_dictionary: bool = False, columns: list[str] | None = None) -> pd.DataFrame:
    """A lake file as a frame; text columns are pandas' "string" dtype (Arrow-backed, missing = NA).

    With `text_as_dictionary`, text columns come back dictionary-encoded instead (`pd.ArrowDtype` of Arrow
    `dictionary<string>`): one small integer per row and each distinct text once, which is how Parquet stores them,
    so a column of a million repeated texts costs a few MiB instead of tens. `plain_text` turns such columns (or a
    selection of their rows) back into what the default read gives. `columns` reads only those columns.
    """
    source, filesystem = storage.arrow_source(path)
    if not text_as_dictionary:
        return pq.read_table(source, columns=columns, filesystem=filesystem).to_pandas(types_mapper=_TEXT_TYPES.get)
    schema = pq.read_schema(source, filesystem=filesystem)
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    table = pq.read_table(source, columns=columns, read_dictionary=text, filesystem=filesystem)
    return table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_dictionary(t) else _TEXT_TYPES.get(t))


def is_dictionary_text(dtype) -> bool:
    """Whether `dtype` is a dictionary-encoded text column (see `read_parquet(text_as_dictionary=True)`)."""
    if not isinstance(dtype, pd.ArrowDtype) or not pa.types.is_dictionary(dtype.pyarrow_dtype):
        return False
    value_type = dtype.pyarrow_dtype.value_type
    return pa.types.is_string(value_type) or pa.types.is_large_string(value_type)


def plain_text(values: pd.Series, dtype: pd.StringDtype | None = None) -> pd.Series:
    """A dictionary-encoded text column decoded to `dtype` (default: "string", as `read_parquet` gives it), in
    Arrow: pandas' own astype would go through Python strings. Any other column is returned as it is."""
    if not is_dictionary_text(values.dtype):
        return values
    dtype = pd.StringDtype() if dtype is None else dtype
    if dtype.storage != "pyarrow":
        return values.astype(dtype)
    decoded = pa.array(values.array).cast(pa.large_string())  # __arrow_array__: no copy before the cast
    return pd.Series(pd.arrays.ArrowStringArray(decoded, dtype=dtype), index=values.index, name=values.name,
                     copy=False)


def plain_text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """`plain_text` of every column."""
    if not any(is_dictionary_text(dtype) for dtype in frame.dtypes):
        return frame
    return pd.DataFrame({name: plain_text(frame[name]) for name in frame.columns}, columns=frame.columns,
                        index=frame.index)
