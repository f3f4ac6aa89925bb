"""The source registry: the sources file (`SHOPFLOW_SOURCES`, default the shipped `sources.yaml`) says what each
source is and how its landing files are read; one cleaner module per source says how to clean it.

The file is validated on load (`shopflow.sources.spec`); `python -m shopflow sources check` prints what it resolves to.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from shopflow.sources.spec import LandingFileSpec, SourcesFileError, SourceSpec, parse_sources

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
    from shopflow.common import storage

    try:
        text = storage.read_bytes(storage.as_path(location)).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourcesFileError(f"sources file {location}: cannot be read ({exc})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SourcesFileError(f"sources file {location}: not valid YAML ({exc})") from exc
    return parse_sources(raw, f"sources file {location}")


def get_source(name: str) -> SourceSpec:
    sources = load_sources()
    if name not in sources:
        raise KeyError(f"unknown source {name!r}; the sources file {sources_location()} declares {sorted(sources)}")
    return sources[name]
