"""Reading a file that a command is handed, within bounds that no content can push past.

Every file that ingest, `land --from` and `predict --input` read comes through here:

* only a regular file is opened (`shopflow.common.landing_file.open_regular`): a FIFO, a character or block device
  (`/dev/zero`, `/dev/urandom`), a socket or a directory is refused before it is read, naming the file and what it is;
* its content is read a chunk at a time and never grows past SHOPFLOW_MAX_EXPANDED_BYTES: a larger file is refused
  by its size, and compressed content (gzip or zstd, recognised by its magic bytes) is decompressed as a stream that
  stops at that ceiling, so a compression bomb costs one ceiling of memory and the compressed bytes are never held;
* a line-based text file (CSV, TSV, JSON lines) holds no line longer than SHOPFLOW_MAX_LINE_BYTES: a file without
  line breaks is refused there instead of being parsed as one record.

The file's facts (name, size and sha256 of the bytes as they lie on disk) are computed while it is read. Every
refusal is a LandingFileError naming the file and, for a ceiling, the limit and the setting that raises it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass, replace
from typing import BinaryIO, Generator, Iterator, Mapping

import numpy as np
import pyarrow as pa

from shopflow.common.landing_file import FileFacts, LandingFileError, open_regular
from shopflow.common.storage import StoragePath
from shopflow.config.options import default, value
from shopflow.sources.spec import COMPRESSION_SUFFIXES

MAX_EXPANDED_BYTES = "SHOPFLOW_MAX_EXPANDED_BYTES"
MAX_LINE_BYTES = "SHOPFLOW_MAX_LINE_BYTES"
CHUNK_BYTES_SETTING = "SHOPFLOW_CHUNK_BYTES"
MAX_STREAMED_BYTES = "SHOPFLOW_MAX_STREAMED_BYTES"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK_BYTES = 1 << 20
_LF, _CR = 0x0A, 0x0D
_GREW = "grew past {:,} bytes while it was read"


@dataclass(frozen=True)
class ReadLimits:
    """The ceilings of one read: bytes of content (after decompression) and bytes of one line of a text file; and
    the chunk a big line-based file streams in (`streamed` gives the ceilings of such a read)."""

    max_expanded_bytes: int = default(MAX_EXPANDED_BYTES)
    max_line_bytes: int = default(MAX_LINE_BYTES)
    chunk_bytes: int = default(CHUNK_BYTES_SETTING)
    max_streamed_bytes: int = default(MAX_STREAMED_BYTES)
    ceiling_setting: str = MAX_EXPANDED_BYTES

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> "ReadLimits":
        return cls(max_expanded_bytes=value(MAX_EXPANDED_BYTES, env), max_line_bytes=value(MAX_LINE_BYTES, env),
                   chunk_bytes=value(CHUNK_BYTES_SETTING, env), max_streamed_bytes=value(MAX_STREAMED_BYTES, env))

    def streamed(self) -> "ReadLimits":
        """The limits of a read that holds one chunk at a time: the whole content may reach SHOPFLOW_MAX_STREAMED_BYTES."""
        return replace(self, max_expanded_bytes=self.max_streamed_bytes, ceiling_setting=MAX_STREAMED_BYTES)


def read_content(path: StoragePath, *, lines: bool,
                 limits: ReadLimits | None = None) -> tuple[FileFacts, bytearray]:
    """(the facts of the bytes on disk, the content decompressed), within the limits; `lines`: a line-based text
    file, whose lines are bounded too."""
    facts, content, _ = _read(path, limits, lines=lines, keep_content=True, keep_raw=False)
    return facts, content


def check_content(path: StoragePath, *, lines: bool, limits: ReadLimits | None = None) -> FileFacts:
    """The facts of the file once its content has been read through (and let go of) within the limits."""
    facts, _, _ = _read(path, limits, lines=lines, keep_content=False, keep_raw=False)
    return facts


def read_checked_raw(path: StoragePath, *, lines: bool, limits: ReadLimits | None = None) -> bytearray:
    """The bytes on disk, unchanged (still compressed), once their content has been read through within the limits:
    what a copy of the file lands."""
    _, _, raw = _read(path, limits, lines=lines, keep_content=False, keep_raw=True)
    return raw


def stream_content(path: StoragePath, *, lines: bool,
                   limits: ReadLimits | None = None) -> Generator[bytes, None, FileFacts]:
    """The file's content decompressed, a piece (of at most CHUNK_BYTES) at a time, within the limits; the generator
    returns the facts of the bytes on disk when it is exhausted (`facts = yield from stream_content(...)`)."""
    facts, _ = yield from _pieces(path, limits or ReadLimits.from_environment(), lines=lines, keep_raw=False)
    return facts


def _read(path: StoragePath, limits: ReadLimits | None, *, lines: bool, keep_content: bool,
          keep_raw: bool) -> tuple[FileFacts, bytearray | None, bytearray | None]:
    content = bytearray() if keep_content else None
    pieces = _pieces(path, limits or ReadLimits.from_environment(), lines=lines, keep_raw=keep_raw)
    while True:
        try:
            piece = next(pieces)
        except StopIteration as done:
            facts, raw = done.value
            return facts, content, raw
        if content is not None:
            content += piece


def _pieces(path: StoragePath, limits: ReadLimits, *, lines: bool,
            keep_raw: bool) -> Generator[bytes, None, tuple[FileFacts, bytearray | None]]:
    """The content, piece by piece, each checked (`_Content`) before it is handed on; returns (facts, raw bytes kept
    when `keep_raw`)."""
    with open_regular(path) as (handle, size):
        if size > limits.max_expanded_bytes:
            raise _too_large(path, limits, f"is {size:,} bytes, more than {limits.max_expanded_bytes:,}")
        on_disk = _CountingReader(handle, path, limits, keep=keep_raw)
        buffered = io.BufferedReader(on_disk, CHUNK_BYTES)
        head = buffered.peek(len(ZSTD_MAGIC))[: len(ZSTD_MAGIC)]
        codec = "gzip" if head.startswith(GZIP_MAGIC) else "zstd" if head.startswith(ZSTD_MAGIC) else None
        content = _Content(path, limits, lines=lines, on_disk=on_disk, codec=codec)
        if codec is None:
            if head and path.suffix.lower() in COMPRESSION_SUFFIXES:
                raise LandingFileError(path, None, f"not a readable gzip/zstd file (the name ends in {path.suffix} "
                                                   "but the content starts with neither the gzip nor the zstd magic "
                                                   "bytes)")
            while chunk := buffered.read(CHUNK_BYTES):
                content.add(chunk)
                yield chunk
        else:
            yield from _decompress(path, codec, buffered, content)
        return on_disk.facts(), on_disk.kept


def _decompress(path: StoragePath, codec: str, compressed: BinaryIO, content: "_Content") -> Iterator[bytes]:
    try:
        if codec == "gzip":
            stream = gzip.GzipFile(fileobj=compressed, mode="rb")
        else:
            stream = pa.CompressedInputStream(pa.PythonFile(compressed, mode="r"), "zstd")
        with stream:  # closing Arrow's stream closes `compressed` too: read it to its end before
            while chunk := stream.read(CHUNK_BYTES):
                content.add(chunk)
                yield chunk
            while compressed.read(CHUNK_BYTES):  # bytes after the compressed stream: the facts cover the whole file
                pass
    except (OSError, EOFError, zlib.error, pa.ArrowException) as exc:
        raise LandingFileError(path, None, f"not a readable gzip/zstd file ({codec}: {exc})") from exc


def _too_large(path: StoragePath, limits: ReadLimits, what: str) -> LandingFileError:
    return LandingFileError(path, None, f"{what} ({limits.ceiling_setting}={limits.max_expanded_bytes}, the most bytes "
                                        "a file may hold; raise that setting to read it)")


class _CountingReader(io.RawIOBase):
    """The bytes of a file as they are read from disk: their count and sha256 (the file's facts), kept only when
    asked, and never more of them than the content ceiling (a file that grows while it is read stops there too)."""

    def __init__(self, handle: BinaryIO, path: StoragePath, limits: ReadLimits, *, keep: bool):
        self._handle, self._path, self._limits = handle, path, limits
        self._digest = hashlib.sha256()
        self.size = 0
        self.kept = bytearray() if keep else None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._handle.readinto(buffer) or 0
        self.size += count
        if self.size > self._limits.max_expanded_bytes:
            raise _too_large(self._path, self._limits, _GREW.format(self._limits.max_expanded_bytes))
        with memoryview(buffer) as whole, whole[:count] as piece:
            self._digest.update(piece)
            if self.kept is not None:
                self.kept += piece
        return count

    def facts(self) -> FileFacts:
        return FileFacts(name=self._path.name, size_bytes=self.size, sha256=self._digest.hexdigest())


class _Content:
    """The content of a file, a chunk at a time: its size against the content ceiling, the length of each line
    (line breaks: LF, CR LF or a lone CR) against the line ceiling."""

    def __init__(self, path: StoragePath, limits: ReadLimits, *, lines: bool, on_disk: _CountingReader,
                 codec: str | None = None):
        self._path, self._limits, self._lines, self._on_disk, self._codec = path, limits, lines, on_disk, codec
        self.size = 0
        self._line_bytes = 0  # of the line still open at the end of the last chunk
        self._line_feeds = 0  # before it: its line number is this + 1

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limits.max_expanded_bytes:
            limit = self._limits.max_expanded_bytes
            what = (f"expands to more than {limit:,} bytes from {self._on_disk.size:,} {self._codec}-compressed "
                    "bytes (a compression bomb?)" if self._codec else _GREW.format(limit))
            raise _too_large(self._path, self._limits, what)
        if self._lines:
            self._check_lines(chunk)

    def _check_lines(self, chunk: bytes) -> None:
        limit = self._limits.max_line_bytes
        view = np.frombuffer(chunk, dtype=np.uint8)
        breaks = np.flatnonzero((view == _LF) | (view == _CR))
        if breaks.size == 0:
            self._line_bytes += view.size
            if self._line_bytes > limit:
                self._line_too_long(self._line_feeds + 1)
            return
        # Each line's length: the first continues the open line, the others lie between two breaks.
        lengths = np.diff(breaks, prepend=-1 - self._line_bytes) - 1
        too_long = np.flatnonzero(lengths > limit)
        if too_long.size:
            first = int(too_long[0])
            start = int(breaks[first - 1]) + 1 if first else 0
            self._line_too_long(self._line_feeds + int(np.count_nonzero(view[:start] == _LF)) + 1)
        self._line_feeds += int(np.count_nonzero(view == _LF))
        self._line_bytes = view.size - 1 - int(breaks[-1])
        if self._line_bytes > limit:
            self._line_too_long(self._line_feeds + 1)

    def _line_too_long(self, line: int) -> None:
        limit = self._limits.max_line_bytes
        raise LandingFileError(self._path, line, f"a line longer than {limit:,} bytes ({MAX_LINE_BYTES}={limit}; "
                                                 "not line-based text, or raise that setting to read it)")
