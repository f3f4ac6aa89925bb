"""Which files of a landing partition folder are which declared landing file, with nothing ignored silently.

A partition folder (`landing/<source>/ds=YYYY-MM-DD/`) may hold only: files that a declared landing file matches
(by name or glob, optionally with a `.gz`/`.zst` suffix), and the source's declared `sidecar_files` (notes such
as `GENERATED.txt`, kept and never read). Anything else fails the partition with `LandingFolderError` naming the
files: a file no pattern matches (`orders (1).csv`, `behavior.csv ` with a trailing space), two files for one
declared name (`orders.csv` beside `orders.csv.gz`), a sub-folder, a symbolic link, a FIFO, a device or a socket
(landing files must be regular files: a link could make ingest read something outside the landing zone, a FIFO would
hang it, a device such as /dev/zero never ends; on object storage, an object directly in the folder, never a link or
a key that resolves elsewhere). The readers check each file again as they open it (shopflow.ingest.bounded_read).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from dataclasses import dataclass

from shopflow.common import storage
from shopflow.common.storage import StoragePath
from shopflow.sources.spec import LandingFileSpec, SourceSpec


class LandingFolderError(ValueError):
    """The landing folder holds files that are not, or not unambiguously, the source's declared files."""


@dataclass(frozen=True)
class LandingFile:
    spec: LandingFileSpec
    path: StoragePath


def partition_files(folder: StoragePath, spec: SourceSpec) -> list[LandingFile]:
    """The declared landing files present in `folder`, in declaration order (pattern matches by name); [] if the
    folder holds none. Raises LandingFolderError as described in the module docstring."""
    entries = _entries(folder)
    found: dict[str, list[StoragePath]] = {f.name: [] for f in spec.files}
    unmatched, not_regular = [], []
    for path, regular in entries:
        if any(fnmatch.fnmatchcase(path.name, pattern) for pattern in spec.sidecar_files):
            continue
        if not regular:
            not_regular.append(path.name)
            continue
        declared = spec.file_for(path.name)
        if declared is None:
            unmatched.append(path.name)
        else:
            found[declared.name].append(path)
    problems = []
    if not_regular:
        problems.append(f"not regular files (links, folders, FIFOs, devices and sockets are never read): "
                        f"{sorted(not_regular)!r}")
    if unmatched:
        declared = [f.name for f in spec.files] + list(spec.sidecar_files)
        problems.append(f"files that no declared landing file matches: {sorted(unmatched)!r} (declared: {declared})")
    for file_spec in spec.files:
        paths = found[file_spec.name]
        if len(paths) > 1 and not file_spec.is_pattern:
            problems.append(f"{len(paths)} files for the one declared file {file_spec.name!r}: "
                            f"{sorted(p.name for p in paths)!r}; keep exactly one")
    if problems:
        raise LandingFolderError(f"{spec.name} landing folder {folder}: " + "; ".join(problems))
    return [LandingFile(file_spec, path) for file_spec in spec.files
            for path in sorted(found[file_spec.name], key=lambda p: p.name)]


def has_entries(folder: StoragePath) -> bool:
    """Whether the partition folder exists and holds anything at all (one listing, nothing read)."""
    if storage.is_remote(folder):
        base = folder.path.rstrip("/")
        return bool(folder.fs.exists(base) and folder.fs.ls(base))
    if not folder.is_dir():
        return False
    with os.scandir(folder) as scan:
        return next(scan, None) is not None


def _regular_object(info: dict, base: str) -> bool:
    """Whether a listed object is a plain file directly inside the folder `base`: not a "directory" (a common
    prefix, e.g. a key with `../` in it), not a link (fsspec's local and SFTP-like filesystems report `islink`), and
    not a name that would resolve elsewhere."""
    name = info["name"].rstrip("/")
    return (info.get("type") == "file" and not info.get("islink", False)
            and posixpath.dirname(name) == base and posixpath.basename(name) not in ("", ".", ".."))


def _entries(folder: StoragePath) -> list[tuple[StoragePath, bool]]:
    """(path, is a regular file) for each entry directly in `folder`; [] when it does not exist."""
    if storage.is_remote(folder):
        base = folder.path.rstrip("/")
        if not folder.fs.exists(base):
            return []
        return [(folder / posixpath.basename(info["name"].rstrip("/")), _regular_object(info, base))
                for info in sorted(folder.fs.ls(base, detail=True), key=lambda i: i["name"])]
    if not folder.is_dir():
        return []
    with os.scandir(folder) as scan:
        return [(folder / entry.name, entry.is_file(follow_symlinks=False)) for entry in sorted(scan, key=lambda e: e.name)]
