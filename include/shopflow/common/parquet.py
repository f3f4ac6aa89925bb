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
    return storage.write_parquet(table, path, compression="zstd", compression_level=compression_level,
                                 write_statistics=write_statistics, use_dictionary=dictionary)


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
        text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        table = pq.read_table(source, columns=columns, read_dictionary=text, **read_options)
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
