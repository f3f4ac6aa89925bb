"""A corpus of hostile inputs for every command that reads a file (issue 18's probe of `land --from`, `run` and
`predict`): tests/ingest/test_hostile_inputs.py hands each case to `land` and `run`, tests/model/test_predict_cli.py
to `predict`.

Each case builds its input at test time, where the command will look for it (an export beside the landing zone, a
landing file in its partition folder, a predict input), from a few REAL orders rows (UCI Online Retail) where it
holds rows at all, and states up front what the refusal names: the file, then each of `names`. Every case must be
refused with that one-line error, fast and within bounded memory, and must write nothing: the landing zone, the
lake and the predict output stay as they were.

Where a case reads a file of a size that makes the point (a 200 MiB line, a 300 MiB file) it is a sparse file, which
costs no disk and reads fast; a compression bomb is kept small by a small ceiling (`env`), the way an operator would
set it, and expands far past it.
"""

from __future__ import annotations

import gzip
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

MIB = 1024 * 1024
LAND, RUN, PREDICT = "land", "run", "predict"
SURFACES = (LAND, RUN, PREDICT)
# A file ingest reads whole stops at SHOPFLOW_MAX_EXPANDED_BYTES; one bigger than a chunk streams, and stops at
# SHOPFLOW_MAX_STREAMED_BYTES.
SMALL_CEILING = {"SHOPFLOW_MAX_EXPANDED_BYTES": str(8 * MIB), "SHOPFLOW_MAX_STREAMED_BYTES": str(8 * MIB)}


@dataclass
class Ctx:
    """What a case's builder works with: the real orders lines (header first, newlines kept) and a folder for
    things that must live outside the landing zone (a link's target, a socket with a short path)."""

    lines: list[str]
    outside: Path

    @property
    def text(self) -> bytes:
        return "".join(self.lines).encode("utf-8")


@dataclass(frozen=True)
class Hostile:
    """One hostile input. `build(target, ctx)` makes it at `target` (a path that does not exist yet, named as the
    surface expects: `orders.csv` plus `suffix`) and returns the path to hand the command (usually `target`).
    `names`: what the error names besides the file, on every surface unless `on` gives a surface its own (the landing
    folder's listing refuses a link or a FIFO before any reader sees it). `where`: the surfaces it is tried on."""

    id: str
    build: Callable[[Path, Ctx], Path]
    names: tuple[str, ...]
    where: tuple[str, ...] = SURFACES
    suffix: str = ""
    env: dict[str, str] = field(default_factory=dict)
    on: dict[str, tuple[str, ...]] = field(default_factory=dict)
    names_file: bool = True  # the error names the path handed over (a folder's entries are named by their name)

    def expected(self, surface: str) -> tuple[str, ...]:
        return self.on.get(surface, self.names)


def _fifo(target: Path, ctx: Ctx) -> Path:
    os.mkfifo(target)
    return target


def _device(device: str) -> Callable[[Path, Ctx], Path]:
    return lambda target, ctx: Path(device)


def _link_to_device(target: Path, ctx: Ctx) -> Path:
    target.symlink_to("/dev/zero")
    return target


def _folder(target: Path, ctx: Ctx) -> Path:
    target.mkdir()
    (target / "orders-2010-12-01.csv").write_bytes(ctx.text)
    return target


def _socket(target: Path, ctx: Ctx) -> Path:
    # A Unix socket's path must be short (at most 107 bytes): beside the target, or else in a short folder of its own.
    path = ctx.outside / target.name
    if len(os.fsencode(path)) > 100:
        path = Path(tempfile.mkdtemp(prefix="sf-", dir="/tmp")) / target.name
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.close()  # the socket file stays: what matters is that a path names one
    return path


def _sparse(size: int) -> Callable[[Path, Ctx], Path]:
    """Real rows, then zero bytes (no line break) up to `size`: a sparse file, no disk spent."""
    def build(target: Path, ctx: Ctx) -> Path:
        target.write_bytes(ctx.text)
        os.truncate(target, size)
        return target
    return build


def gzip_bomb(target: Path, prefix: bytes, expanded: int) -> None:
    """`prefix` then zeros up to `expanded` bytes, streamed through gzip (about 1000:1)."""
    zeros = bytes(MIB)
    with open(target, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
        packed.write(prefix)
        for _ in range((expanded - len(prefix)) // MIB):
            packed.write(zeros)


def zstd_bomb(target: Path, prefix: bytes, expanded: int) -> None:
    zeros = bytes(MIB)
    with pa.output_stream(str(target), compression="zstd") as packed:
        packed.write(prefix)
        for _ in range((expanded - len(prefix)) // MIB):
            packed.write(zeros)


def concatenated_gzip_bomb(target: Path, line: bytes, expanded: int, header: bytes = b"") -> None:
    """One gzip member of `line` repeated to 16 MiB, written again and again up to `expanded` bytes: a file of a
    few MB that is valid gzip (members may follow one another) expanding to `expanded`, built in a moment; after a
    first member holding `header`, if given."""
    member = gzip.compress(line * (16 * MIB // len(line)), compresslevel=9, mtime=0)
    with open(target, "wb") as raw:
        if header:
            raw.write(gzip.compress(header, mtime=0))
        for _ in range(expanded // (16 * MIB)):
            raw.write(member)


def _bomb(kind: str, expanded: int) -> Callable[[Path, Ctx], Path]:
    def build(target: Path, ctx: Ctx) -> Path:
        (gzip_bomb if kind == "gzip" else zstd_bomb)(target, ctx.text, expanded)
        return target
    return build


_NOT_LISTED = ("not regular files",)  # the landing folder's listing, before any reader
_LINE = ("a line longer than 16,777,216 bytes", "SHOPFLOW_MAX_LINE_BYTES=16777216")
_CEILING = ("SHOPFLOW_MAX_EXPANDED_BYTES=8388608",)
_STREAMED_CEILING = ("SHOPFLOW_MAX_STREAMED_BYTES=8388608",)

CASES: list[Hostile] = [
    Hostile("fifo", _fifo, ("not a regular file but a FIFO",), on={RUN: _NOT_LISTED}),
    Hostile("dev-zero", _device("/dev/zero"), ("not a regular file but a character device",), where=(LAND, PREDICT)),
    Hostile("dev-urandom", _device("/dev/urandom"), ("not a regular file but a character device",),
            where=(LAND, PREDICT)),
    Hostile("link-to-dev-zero", _link_to_device, ("a character device", "a symbolic link to /dev/zero"),
            on={RUN: _NOT_LISTED}),
    Hostile("socket", _socket, ("not a regular file but a socket",), where=(LAND, PREDICT)),
    Hostile("directory", _folder, ("not a regular file but a directory",), where=(RUN, PREDICT),
            on={RUN: _NOT_LISTED}),
    # Within the default content ceiling (256 MiB): a line of 200 MiB; past it, a file of 300 MiB (the probe's
    # 300 MiB line with no newline is refused by its size before its line is looked at). Ingest streams a landing
    # file bigger than a chunk, under the streamed ceiling (64 GiB): there the 300 MiB line is what stops it.
    Hostile("line-of-200-mib", _sparse(200 * MIB), _LINE),
    Hostile("file-of-300-mib", _sparse(300 * MIB),
            ("is 314,572,800 bytes, more than 268,435,456", "SHOPFLOW_MAX_EXPANDED_BYTES=268435456"),
            on={RUN: _LINE}),
    Hostile("gzip-bomb", _bomb("gzip", 64 * MIB), ("expands to more than 8,388,608 bytes", "gzip-compressed",
                                                    *_CEILING), suffix=".gz", env=SMALL_CEILING,
            on={RUN: ("expands to more than 8,388,608 bytes", "gzip-compressed", *_STREAMED_CEILING)}),
    Hostile("zstd-bomb", _bomb("zstd", 64 * MIB), ("expands to more than 8,388,608 bytes", "zstd-compressed",
                                                    *_CEILING), suffix=".zst", env=SMALL_CEILING,
            on={RUN: ("expands to more than 8,388,608 bytes", "zstd-compressed", *_STREAMED_CEILING)}),
    Hostile("gzip-bomb-without-line-breaks", lambda target, ctx: (gzip_bomb(target, b"", 64 * MIB), target)[1],
            _LINE, suffix=".gz"),
]


def cases(surface: str) -> list[Hostile]:
    return [case for case in CASES if surface in case.where]


def day_spread_export(lines: list[str], days: int) -> bytes:
    """Real orders rows, each moved to its own day (2010-12-01 onwards): an export over `days` distinct days."""
    from datetime import date, timedelta

    header, *rows = lines
    spread = []
    for n, row in enumerate(rows[:days]):
        fields = row.split(",")
        at = next(i for i, value in enumerate(fields) if value.startswith("2010-12-01 "))
        fields[at] = fields[at].replace("2010-12-01", (date(2010, 12, 1) + timedelta(days=n)).isoformat())
        spread.append(",".join(fields))
    assert len(spread) == days
    return (header + "".join(spread)).encode("utf-8")


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry under `root` (links not followed): its kind, size and modification time; {} when absent."""
    if not root.exists():
        return {}
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        found[str(path.relative_to(root))] = (kind, info.st_size, info.st_mtime_ns)
    return found
