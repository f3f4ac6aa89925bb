"""The source registry: the sources file (`SHOPFLOW_SOURCES`, default the shipped `sources.yaml`) says what each
source is and how its landing files are read; one cleaner module per source says how to clean it.

The file is validated on load (`shopflow.sources.spec`), each problem named with its line in the file; `python -m
shopflow sources check` prints what it resolves to.

The file is read as untrusted data: from a local path or object storage only (never a web address), at most
`SHOPFLOW_SOURCES_MAX_BYTES` of it, parsed as plain YAML (`shopflow.sources.yaml_limits`: no Python tags, anchors
and aliases allowed but the document as expanded bounded, so that an alias bomb is refused before it is built).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from shopflow.sources.spec import LandingFileSpec, SourcesFileError, SourceSpec, parse_sources
from shopflow.sources.yaml_limits import YamlDocumentError, load_bounded_yaml_with_lines

__all__ = ["DEFAULT_SOURCES_FILE", "LandingFileSpec", "SourceSpec", "SourcesFileError", "get_source",
           "load_sources", "sources_location"]

DEFAULT_SOURCES_FILE = Path(__file__).resolve().parent.parent / "sources.yaml"


def sources_location() -> str:
    """Where the sources file is: SHOPFLOW_SOURCES (a path or storage URL), else the shipped file."""
    from shopflow.config.settings import Settings

    return Settings.from_env().sources_file or str(DEFAULT_SOURCES_FILE)


def load_sources(location: str | Path | None = None) -> dict[str, SourceSpec]:
    return _load(str(location) if location is not None else sources_location())


@cache
def _load(location: str) -> dict[str, SourceSpec]:
    from shopflow.common.errors import ConfigurationError
    from shopflow.config.options import check_location, value

    try:
        check_location(f"sources file {location}", location)
    except ConfigurationError as exc:
        raise SourcesFileError(str(exc)) from None
    limit = value("SHOPFLOW_SOURCES_MAX_BYTES")
    data = _read_at_most(location, limit)
    if len(data) > limit:
        raise SourcesFileError(f"sources file {location}: larger than SHOPFLOW_SOURCES_MAX_BYTES ({limit:,} bytes); "
                               "refused before parsing")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourcesFileError(f"sources file {location}: cannot be read ({exc})") from exc
    try:
        raw, lines = load_bounded_yaml_with_lines(text)
    except YamlDocumentError as exc:
        raise SourcesFileError(f"sources file {location}: {exc}") from None
    return parse_sources(raw, f"sources file {location}", lines)


def _read_at_most(location: str, limit: int) -> bytes:
    """The file's first `limit` + 1 bytes (one more than allowed says it is too large), never the whole of a huge
    file; only a regular file is read (a FIFO would block, a device never end)."""
    from shopflow.common import storage
    from shopflow.common.errors import LandingFileError

    try:
        with storage.open_regular(storage.as_path(location)) as (handle, _size):
            return handle.read(limit + 1)
    except LandingFileError as exc:  # names the file and what it is instead
        raise SourcesFileError(f"sources file {exc}") from None
    except OSError as exc:
        raise SourcesFileError(f"sources file {location}: cannot be read ({exc})") from exc


def get_source(name: str) -> SourceSpec:
    sources = load_sources()
    if name not in sources:
        raise KeyError(f"unknown source {name!r}; the sources file {sources_location()} declares {sorted(sources)}")
    return sources[name]
