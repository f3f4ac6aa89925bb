"""The landing-file contract every reader keeps: the two provenance columns (`_source_file`, `_source_line`),
the file's facts (name, size, sha256), UTF-8 decoding that names the failing line, and the error that names the file
and the line.

Landing files are read, never modified. Every parsed record keeps the physical line where it starts
(`_source_line`), so a quarantined row or a parse error can be traced back to the file.

Only a regular file is ever opened (`open_regular`, defined in `common.storage` and re-exported here): a FIFO, a
device, a socket or a directory is refused before it is read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from shopflow.common.errors import LandingFileError
from shopflow.common.storage import StoragePath, open_regular

__all__ = ["SOURCE_FILE", "SOURCE_LINE", "FileFacts", "LandingFileError", "constant_strings", "decode_utf8",
           "empty_landing_frame", "facts_of_bytes", "file_facts", "open_regular"]

SOURCE_FILE = "_source_file"
SOURCE_LINE = "_source_line"
_DEFAULT_STR = pd.Series([""]).dtype  # what `frame[column] = "text"` gives: in pandas 3, `str` (Arrow-backed)


@dataclass(frozen=True)
class FileFacts:
    name: str
    size_bytes: int
    sha256: str

    def as_dict(self) -> dict:
        return {"name": self.name, "size_bytes": self.size_bytes, "sha256": self.sha256}


def file_facts(path: StoragePath) -> FileFacts:
    """The facts of a regular file, hashed as it is read (a chunk at a time, whatever its size)."""
    digest, size = hashlib.sha256(), 0
    with open_regular(path) as (handle, _):
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return FileFacts(name=path.name, size_bytes=size, sha256=digest.hexdigest())


def facts_of_bytes(path: StoragePath, raw: bytes) -> FileFacts:
    return FileFacts(name=path.name, size_bytes=len(raw), sha256=hashlib.sha256(raw).hexdigest())


def decode_utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LandingFileError(path, line, f"not valid UTF-8 (byte {data[exc.start]:#04x})") from exc


def constant_strings(value: str, length: int, index: pd.Index | None = None) -> pd.Series:
    """A Series repeating `value`, as inserting the scalar would give it (pandas' default `str` dtype, Arrow-backed),
    built straight from one Arrow buffer instead of a million Python references."""
    if not (isinstance(_DEFAULT_STR, pd.StringDtype) and _DEFAULT_STR.storage == "pyarrow"):
        return pd.Series(value, index=index if index is not None else pd.RangeIndex(length), dtype=_DEFAULT_STR)
    encoded = value.encode("utf-8")
    offsets = np.arange(length + 1, dtype=np.int64) * len(encoded)
    array = pa.LargeStringArray.from_buffers(length, pa.py_buffer(offsets), pa.py_buffer(encoded * length))
    return pd.Series(pd.arrays.ArrowStringArray(array, dtype=_DEFAULT_STR), index=index, copy=False)


def empty_landing_frame(columns: list[str], path: Path) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series([], dtype="string") for c in columns})
    frame[SOURCE_LINE] = pd.Series([], dtype="int64")
    frame.insert(0, SOURCE_FILE, path.name)
    return frame
