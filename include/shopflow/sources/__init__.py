"""The source registry: `sources.yaml` says what each source is; one cleaner module per source says how to clean it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from types import ModuleType

import yaml


@dataclass(frozen=True)
class LandingFileSpec:
    name: str
    columns: list[str]
    header: bool = True
    delimiter: str = ","
    optional: bool = False


@dataclass(frozen=True)
class SourceSpec:
    name: str
    description: str
    owner: str
    tags: list[str]
    timezone: str
    cleaner: str
    files: list[LandingFileSpec]
    required: bool = False
    generated: bool = False
    load_kind: str = "append"
    currency: str | None = None
    pseudonymise: dict[str, str] = field(default_factory=dict)
    window: dict[str, date] | None = None
    snapshot_file: str | None = None

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(self.cleaner)

    @property
    def clean_schema(self) -> dict[str, str]:
        return dict(self.module.CLEAN_SCHEMA)

    @property
    def key(self) -> list[str]:
        return list(self.module.DEDUP_KEY)


@cache
def load_sources(path: Path | None = None) -> dict[str, SourceSpec]:
    path = path or Path(__file__).resolve().parent.parent / "sources.yaml"
    raw = yaml.safe_load(path.read_text())
    sources = {}
    for name, entry in raw.items():
        files = [LandingFileSpec(**f) for f in entry.pop("files")]
        sources[name] = SourceSpec(name=name, files=files, **entry)
    return sources


def get_source(name: str) -> SourceSpec:
    sources = load_sources()
    if name not in sources:
        raise KeyError(f"unknown source {name!r}; known: {sorted(sources)}")
    return sources[name]
