"""`python -m shopflow sources infer --from EXPORT`: profile an export and draft its sources-file entry.

This package owns inferring a source from its data: `sample` reads a bounded sample of the export (CSV, TSV, JSON
lines with nested records, Parquet; gzip/zstd or not), `profile` types each column and guesses the key and the time
zone, `role` guesses the role and its field mapping, `draft` writes the entry as commented YAML. The draft is
validated as a sources file (`shopflow.sources.spec.parse_sources`) before it is given: a draft that would not load
is a bug here, never the user's to find. It is a draft: every guess carries its evidence, and a sample is not the
whole export (see docs/sources-infer.md for how well it agrees with the hand-written entries).
"""

from __future__ import annotations

import re
from pathlib import Path

from shopflow.sources.infer.draft import PSEUDONYM_ROLE_FIELDS, Draft, render
from shopflow.sources.infer.profile import guess_key, guess_zone, profile_columns
from shopflow.sources.infer.role import guess_role, name_headerless
from shopflow.sources.infer.sample import InferError, read_sample
from shopflow.sources.spec import SourcesFileError, parse_sources

__all__ = ["Draft", "InferError", "draft_text", "infer_draft"]


def infer_draft(path: str | Path, name: str | None = None) -> Draft:
    """The inferred pieces of an export's entry (InferError when the export cannot be profiled)."""
    sample = read_sample(Path(path))
    profiles = profile_columns(sample)
    time_column = _time_column(profiles)
    role = guess_role(profiles, time_column)
    name_headerless(sample, profiles, role)
    key = guess_key(profiles, sample)
    zone = guess_zone(time_column, profiles)
    if role.name == "catalog":
        time_column = None  # a catalogue's time (a crawl or update time) is a column, not the day its rows belong to
    draft = Draft(_source_name(name, sample.landing_name), sample, profiles, key, zone, role, time_column)
    person = PSEUDONYM_ROLE_FIELDS.get(role.name or "")
    if person in role.fields:
        for column in role.fields[person].columns:
            draft.pseudonymised[column.raw] = _token_name(column.name, {p.raw for p in profiles})
    return draft


def draft_text(path: str | Path, name: str | None = None) -> str:
    """The commented YAML entry, checked to load as a sources file."""
    text = render(infer_draft(path, name))
    from shopflow.sources.yaml_limits import load_bounded_yaml_with_lines

    raw, lines = load_bounded_yaml_with_lines(text)
    try:
        parse_sources(raw, "the inferred draft", lines)
    except SourcesFileError as exc:
        raise AssertionError(f"the inferred draft does not load (a bug in shopflow.sources.infer): {exc}\n{text}") from exc
    return text


def _time_column(profiles):
    """The column of the rows' time: a timestamp (a date when there is none), the one with the fewest empties."""
    for wanted in ("timestamp", "date"):
        found = [p for p in profiles if p.type == wanted]
        if found:
            return min(found, key=lambda p: (p.nulls, profiles.index(p)))
    return None


def _source_name(name: str | None, file_name: str) -> str:
    if name:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise InferError(f"--name {name!r}: a source name is lower-case letters, digits and _")
        return name
    stem = re.sub(r"[^a-z0-9]+", "_", file_name.split(".")[0].lower()).strip("_")
    return stem if stem[:1].isalpha() else f"source_{stem}".rstrip("_")


def _token_name(clean: str, raw_columns: set[str]) -> str:
    base = re.sub(r"_(id|no|number|key|uid)$", "", clean) or "person"
    token = f"{base}_key"
    while token in raw_columns:
        token = f"{token}_token"
    return token
