"""Where the landing zone, lake, models and reports live, and every read and write of their files.

`SHOPFLOW_STORAGE_URL` unset: they are local `pathlib.Path`s (`SHOPFLOW_HOME` and the `*_DIR` settings), and a file
is written as it always was: a temporary name in the same folder, fsync, `os.replace`. The temporary name,
`.<name>.tmp-<pid>-<random>`, is the writer's own: the request threads of one api-server process writing the same
file at once never write into one temporary file (the last rename wins, whole). Writers that must not lose each
other's changes (a read-modify-write) also hold a lock, e.g. `MetadataStore.partition_lock`.

`SHOPFLOW_STORAGE_URL` set (`s3://bucket/prefix`, `gs://bucket/prefix`, `file:///abs/path`, any fsspec URL): they
are `upath.UPath`s `<url>/landing`, `<url>/lake`, `<url>/models`, `<url>/reports`. An object is built in memory and
written with one put of its whole content, which S3 and GCS make visible atomically (a reader sees the old object
or the new one, never a part). Credentials and endpoints come from the environment the fsspec driver reads
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_DEFAULT_REGION`,
`GOOGLE_APPLICATION_CREDENTIALS`, ...), never from the repository. The metadata store records the full URLs.

A model directory is written locally (transformers' `save_pretrained` needs a folder: `staged_dir`) and uploaded
file by file; a reader downloads it once into a local cache folder (`local_copy`) and loads it from there.

Only a regular file is ever opened for reading an input (`open_regular`): a FIFO, a character or block device
(`/dev/zero`), a socket or a directory is refused by its `os.stat` before it is opened, and the open itself cannot
block (`O_NONBLOCK`, then `fstat` again), so a path swapped for a FIFO between the two looks never hangs a reader.
This module imports only the standard library: the sources file is read through it at DAG parse time.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator, Union

from shopflow.common.errors import LandingFileError

if TYPE_CHECKING:
    from upath import UPath

StoragePath = Union[Path, "UPath"]


def location(url: str, name: str) -> "UPath":
    """`<url>/<name>` as a UPath; ValueError when `url` is not a URL of a known fsspec protocol."""
    from upath import UPath

    if "://" not in url:
        raise ValueError(f"{url!r} is not a URL (e.g. s3://bucket/prefix or file:///abs/path)")
    try:
        return UPath(url.rstrip("/")) / name
    except (ValueError, ImportError) as exc:
        raise ValueError(f"{url!r}: {exc}") from exc


def as_path(value: str | os.PathLike) -> StoragePath:
    """A recorded path or URL (e.g. a partition's `clean_path`) as a Path or UPath."""
    if isinstance(value, Path) or is_remote(value):
        return value
    text = os.fspath(value)
    if "://" in text:
        from upath import UPath

        return UPath(text)
    return Path(text)


def is_remote(path) -> bool:
    """Whether `path` goes through fsspec (a UPath that is not a plain local path)."""
    return hasattr(path, "fs") and not isinstance(path, Path)


def is_file(path: StoragePath) -> bool:
    return path.is_file()


def read_bytes(path: StoragePath) -> bytes:
    return path.read_bytes()


def write_bytes(path: StoragePath, data: bytes) -> StoragePath:
    """Write `data` to `path` atomically: local temp + fsync + rename, or one put of the whole object."""
    if is_remote(path):
        _make_parent(path)
        path.fs.pipe_file(path.path, data)
    else:
        _replace_atomically(path, lambda tmp: tmp.write_bytes(data))
    return path


def write_parquet(table, path: StoragePath, **options) -> StoragePath:
    """`pyarrow.parquet.write_table(table, ..., **options)` to `path`, atomically as `write_bytes`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not is_remote(path):
        _replace_atomically(path, lambda tmp: pq.write_table(table, tmp, **options))
        return path
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, **options)
    return write_bytes(path, buffer.getvalue().to_pybytes())


def arrow_source(path: str | os.PathLike) -> tuple[str, object | None]:
    """(path, filesystem) for pyarrow's readers (`pq.read_table(path, filesystem=...)`): None = local."""
    path = as_path(path)
    return (path.path, path.fs) if is_remote(path) else (str(path), None)


def size_of(path: StoragePath) -> int:
    """The size in bytes of a file as stored."""
    return path.fs.size(path.path) if is_remote(path) else path.stat().st_size


def remove_tree(path: StoragePath) -> None:
    """Remove a folder (a prefix of objects) and everything under it; nothing when it does not exist."""
    if is_remote(path):
        if path.fs.exists(path.path):
            path.fs.rm(path.path, recursive=True)
    elif path.exists():
        shutil.rmtree(path)


def list_files(folder: StoragePath) -> list[StoragePath]:
    """Every file under `folder` (recursively), sorted; [] when it does not exist."""
    if not is_remote(folder):
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    base = folder.path.rstrip("/")
    found = folder.fs.find(base) if folder.fs.exists(base) else []
    return [folder / posixpath.relpath(name, base) for name in sorted(found)]


def contained(root: StoragePath, stored: str) -> StoragePath | None:
    """`stored` (absolute, a URL, or relative to `root`) as a path if it lies inside `root`, else None."""
    if not is_remote(root):
        root = root.resolve()
        path = (root / stored).resolve()  # an absolute stored path replaces root
        return path if path.is_relative_to(root) else None
    candidate = as_path(stored) if "://" in stored else root / stored
    if not is_remote(candidate) or candidate.protocol != root.protocol:
        return None
    base = posixpath.normpath(root.path)
    inside = posixpath.normpath(candidate.path)
    if not inside.startswith(base.rstrip("/") + "/"):
        return None
    return root / posixpath.relpath(inside, base)


@contextlib.contextmanager
def staged_dir(target: StoragePath) -> Iterator[Path]:
    """A local folder to write a directory into (e.g. `save_pretrained`): `target` itself when it is local; else a
    temporary folder whose files are uploaded under `target` when the block ends without an error."""
    if not is_remote(target):
        target.mkdir(parents=True, exist_ok=True)
        yield target
        return
    local = Path(tempfile.mkdtemp(prefix="shopflow-stage-"))
    try:
        yield local
        for file in list_files(local):
            remote = target / file.relative_to(local).as_posix()
            _make_parent(remote)
            remote.fs.put_file(str(file), remote.path)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def local_copy(source: str | os.PathLike, cache_root: Path) -> Path:
    """A local folder holding the directory `source`: `source` itself when local; else, downloaded once, the cache
    folder `cache_root/<parent name>/<name>` (a model directory is never changed after it is written)."""
    source = as_path(source)
    if not is_remote(source):
        return source
    target = cache_root / source.parent.name / source.name
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        files = list_files(source)
        if not files:
            raise FileNotFoundError(f"{source}: no such model directory")
        for remote in files:
            local = partial / posixpath.relpath(remote.path, source.path)
            local.parent.mkdir(parents=True, exist_ok=True)
            source.fs.get_file(remote.path, str(local))
        try:
            os.replace(partial, target)
        except OSError:  # another process finished the same download first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _make_parent(path: "UPath") -> None:
    if getattr(path.fs, "local_file", False):  # file://: folders are real; object stores have none to make
        path.fs.makedirs(path.parent.path, exist_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def temporary_name(name: str) -> str:
    """The temporary name a writer of the file `name` writes to before its rename: `.<name>.tmp-<pid>-<random>`,
    unique to this writer (process and call), with the pid first so that `sweep_dead_temp_files` knows whose it is."""
    return f".{name}.tmp-{os.getpid()}-{secrets.token_hex(8)}"


def writer_pid(temporary: str) -> int | None:
    """The pid of the writer of a temporary file `.<name>.tmp-<pid>[-<random>]` (older writers left no suffix);
    None when the name is not one."""
    if ".tmp-" not in temporary:
        return None
    pid_text = temporary.rsplit(".tmp-", 1)[1].split("-", 1)[0]
    return int(pid_text) if pid_text.isascii() and pid_text.isdigit() else None


def sweep_dead_temp_files(folder: Path) -> list[Path]:
    """Remove the temporary files (`.<name>.tmp-<pid>-<random>`) that writers of `folder` left when they died: only
    those whose pid is not alive on this machine, never a live writer's (nor this process's). Returns what was
    removed."""
    removed = []
    for tmp in folder.glob(".*.tmp-*"):
        pid = writer_pid(tmp.name)
        if pid is None or pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            tmp.unlink()
        except FileNotFoundError:  # another writer swept it first
            continue
        removed.append(tmp)
    return removed


def _replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    with staged_file(path) as tmp:
        write(tmp)


@contextlib.contextmanager
def staged_file(path: StoragePath) -> Iterator[Path]:
    """A local file to write `path`'s new content into, piece by piece; on a normal exit it becomes `path`
    atomically (locally: fsync + rename; on an object store: one upload of the whole file), on an error it is
    removed and `path` is left as it was."""
    if is_remote(path):
        with tempfile.TemporaryDirectory(prefix="shopflow-staged-") as folder:
            tmp = Path(folder) / path.name
            yield tmp
            _make_parent(path)
            path.fs.put_file(str(tmp), path.path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_dead_temp_files(path.parent)
    tmp = path.with_name(temporary_name(path.name))
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(path: StoragePath, mode: int) -> LandingFileError:
    kind = next((what for is_kind, what in _NOT_REGULAR if is_kind(mode)), "something else")
    link = f" (a symbolic link to {os.path.realpath(path)})" if os.path.islink(path) else ""
    return LandingFileError(path, None, f"not a regular file but {kind}{link}: only regular files are read")


@contextlib.contextmanager
def open_regular(path: StoragePath) -> Iterator[tuple[BinaryIO, int]]:
    """(an unbuffered binary handle, the size in bytes) of the regular file `path`; LandingFileError naming the file
    and what it is when it is not one (FileNotFoundError when it does not exist). On object storage: an object, not
    a "directory" prefix."""
    if is_remote(path):
        info = path.fs.info(path.path)
        if info.get("type") != "file":
            raise LandingFileError(path, None, f"not a regular file but a {info.get('type') or 'non-file'} object: "
                                               "only regular files are read")
        with path.open("rb") as handle:
            yield handle, int(info.get("size") or 0)
        return
    mode = os.stat(path).st_mode  # before opening: opening a device can have effects of its own
    if not stat.S_ISREG(mode):
        raise _not_regular(path, mode)
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        opened = os.fstat(descriptor)
        if not stat.S_ISREG(opened.st_mode):  # replaced between the stat and the open
            raise _not_regular(path, opened.st_mode)
        handle = os.fdopen(descriptor, "rb", buffering=0)
    except BaseException:
        os.close(descriptor)
        raise
    with handle:
        yield handle, opened.st_size
