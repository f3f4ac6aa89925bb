"""Lake Parquet I/O: atomic, deterministic writes and typed reads of lake files.

Lake files are written atomically (shopflow.common.storage: locally a temporary name in the same folder, fsync,
rename; on an object store one put of the whole object) and deterministically, so re-running a partition leaves
byte-identical Parquet. Text columns read back as pandas' "string" dtype, or dictionary-encoded on request.
"""

from __future__ import annotations

import contextlib

import ctypes
import functools
import sys
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopflow.common import storage
from shopflow.common.landing_file import SOURCE_LINE
from shopflow.common.storage import StoragePath

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
    """Write `frame` to `path` atomically (shopflow.common.storage) and deterministically (same frame -> same bytes).

    zstd-compressed; columns whose values are all distinct (like `_source_line`) are not dictionary-encoded."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    dictionary = [name for name in table.column_names if name not in (SOURCE_LINE, "source_line")]
    # One row group, whatever the size (pyarrow would cut at 1Mi rows): a file of several row groups is a
    # partition written in chunks (ParquetChunks), which the next step reads a row group at a time.
    return storage.write_parquet(table, path, compression="zstd", compression_level=compression_level,
                                 write_statistics=write_statistics, use_dictionary=dictionary,
                                 row_group_size=max(table.num_rows, 1))


class ParquetChunks:
    """A lake file written a frame at a time, one row group per frame, and put in place atomically when the `with`
    block ends without an error (nothing is left behind by one that fails): how a partition too big to hold at once
    is written. The file's schema is the first frame's, with an all-null column typed as text and dictionary
    columns given 32-bit indices, so that every later frame of the same columns fits it. Options as
    `write_parquet_atomic`; a file given no frame holds `empty`'s columns and no row."""


    def __init__(self, path: StoragePath, *, empty: pd.DataFrame | None = None, compression_level: int | None = None,
                 write_statistics: bool = True):
        self.path, self._empty = path, empty
        self._options = {"compression": "zstd", "compression_level": compression_level,
                         "write_statistics": write_statistics}
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def __enter__(self) -> "ParquetChunks":
        self._staged = storage.staged_file(self.path)
        self._tmp = self._staged.__enter__()
        return self

    def write(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            schema = pa.schema([_widened(f) for f in table.schema], metadata=table.schema.metadata)
            dictionary = [name for name in schema.names if name not in (SOURCE_LINE, "source_line")]
            self._writer = pq.ParquetWriter(self._tmp, schema, use_dictionary=dictionary, **self._options)
        self._writer.write_table(table.cast(self._writer.schema))
        self.rows += table.num_rows

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is None:
            try:
                if self._writer is None:
                    if self._empty is None:
                        raise ValueError(f"{self.path}: no frame was written and no empty frame given")
                    self.write(self._empty)
                self._writer.close()
            except BaseException as exc:
                self._staged.__exit__(type(exc), exc, exc.__traceback__)
                raise
            return bool(self._staged.__exit__(None, None, None))
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the error that ended the block is the one to report
                self._writer.close()
        return bool(self._staged.__exit__(kind, error, traceback))


def _widened(field: pa.Field) -> pa.Field:
    if pa.types.is_null(field.type):
        return field.with_type(pa.large_string())
    if pa.types.is_dictionary(field.type):
        return field.with_type(pa.dictionary(pa.int32(), field.type.value_type))
    return field


# Arrow text types -> pandas' "string" dtype (missing = NA): how lake and landing reads type their text.
TEXT_TYPES = {pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}


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
    # A local file is opened once and read through that one handle: writers replace a lake file by renaming a new
    # version over it, and two opens by path (the footer, then the pages) could read two versions at once.
    with contextlib.ExitStack() as stack:
        if filesystem is None:
            source, read_options = stack.enter_context(pa.OSFile(source)), {}
        else:
            read_options = {"filesystem": filesystem}
        if not text_as_dictionary:
            return pq.read_table(source, columns=columns, **read_options).to_pandas(types_mapper=TEXT_TYPES.get)
        schema = pq.read_schema(source, **read_options)
        table = pq.read_table(source, columns=columns, read_dictionary=_text_columns(schema), **read_options)
    return _frame(table, text_as_dictionary=True)


def parquet_row_groups(path: StoragePath | str) -> int:
    """How many row groups a lake file holds (one per chunk of a partition written in chunks)."""
    source, filesystem = storage.arrow_source(path)
    return pq.ParquetFile(source, filesystem=filesystem).metadata.num_row_groups


def read_row_groups(path: StoragePath | str, *, text_as_dictionary: bool = False,
                    columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """A lake file's row groups one after the other, each as `read_parquet` would give it (index from 0 in each),
    through one open handle; a step that streams a partition holds one row group at a time."""
    source, filesystem = storage.arrow_source(path)
    with contextlib.ExitStack() as stack:
        if filesystem is None:
            source = stack.enter_context(pa.OSFile(source))
        parquet = pq.ParquetFile(source, filesystem=filesystem)
        if text_as_dictionary:
            parquet = pq.ParquetFile(source, filesystem=filesystem, read_dictionary=_text_columns(parquet.schema_arrow))
        for group in range(parquet.metadata.num_row_groups):
            yield _frame(parquet.read_row_group(group, columns=columns), text_as_dictionary=text_as_dictionary)


def _text_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def _frame(table: pa.Table, *, text_as_dictionary: bool) -> pd.DataFrame:
    if not text_as_dictionary:
        return table.to_pandas(types_mapper=TEXT_TYPES.get)
    return table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_dictionary(t) else TEXT_TYPES.get(t))


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
