"""Real rows of the sample data, and the few steps that turn them into landing files and raw frames like ingest does.

The data folder is SHOPFLOW_SOURCE_DATA, or else the repository's sibling `../shared/data` (resolved from this
file, so the tests do not depend on the working directory). Rows are located here with plain `csv`/pandas, never
with the code under test, so the tests compare the library against an independent reading of the files.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import pandas as pd
from shopflow.ingest.pseudonym import pseudonymise_columns
from shopflow.ingest.readers import read_delimited
from shopflow.landing import sample_data as landing
from shopflow.sources import SourceSpec, get_source
from shopflow.sources.cleaner import cleaner_of

TESTS_DIR = Path(__file__).resolve().parent
ORDERS_FILE = landing.ORDERS_FILE
BEHAVIOR_FILE = landing.BEHAVIOR_FILE
CATALOG_NAMES = landing.CATALOG_NAMES
CATALOG_PRICES = landing.CATALOG_PRICES
CATALOG_FULL = landing.CATALOG_FULL
WANDS_QUERIES = "search/wands_query.tsv.gz"
OLIST_TRANSLATION = "catalog/product_category_name_translation.csv.gz"
# A key for tests only; the pipeline never has a built-in key.
TEST_KEY = b"shopflow-tests-not-a-real-key"


def source_data() -> Path:
    configured = os.environ.get("SHOPFLOW_SOURCE_DATA")
    folder = Path(configured) if configured else TESTS_DIR.parents[2] / "shared" / "data"
    folder = folder.resolve()
    if not (folder / "SOURCES.md").is_file():
        raise FileNotFoundError(f"sample data not found in {folder}: set SHOPFLOW_SOURCE_DATA to the data folder")
    return folder


def data_path(relative: str) -> Path:
    return source_data() / relative


# --- exact text of the source files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One CSV record of a source file: where it starts, its fields, and its exact text (line endings included)."""

    line: int
    fields: tuple[str, ...]
    text: str

    @property
    def end_line(self) -> int:
        return self.line + self.text.count("\n") - 1


@cache
def source_text(relative: str) -> str:
    with gzip.open(data_path(relative), "rb") as handle:
        return handle.read().decode("utf-8")


@cache
def physical_lines(relative: str) -> tuple[str, ...]:
    """The file's physical lines (split on '\\n' only), each with its ending; index 0 is line 1."""
    text = source_text(relative)
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return tuple(lines)


@cache
def records(relative: str, delimiter: str = ",") -> tuple[Record, ...]:
    """Every record of a (small) source file with its physical start line; header included as the first record."""
    lines = physical_lines(relative)
    reader = csv.reader(io.StringIO(source_text(relative).lstrip("\ufeff"), newline=""), delimiter=delimiter)
    out = []
    start = 1
    for fields in reader:
        end = reader.line_num
        out.append(Record(start, tuple(fields), "".join(lines[start - 1 : end])))
        start = end + 1
    return tuple(out)


def records_where(relative: str, predicate, *, limit: int | None = None, header: bool = True) -> list[Record]:
    rows = records(relative)[1:] if header else records(relative)
    found = [r for r in rows if predicate(r)]
    return found[:limit] if limit else found


# --- orders: one record per physical line, so a pandas frame with the line number is enough -------------------------


@cache
def orders_frame() -> pd.DataFrame:
    """The whole orders file as strings, read with pandas (not the code under test), with `line` = physical line."""
    frame = pd.read_csv(data_path(ORDERS_FILE), dtype=str, keep_default_na=False, compression="gzip")
    assert len(physical_lines(ORDERS_FILE)) == len(frame) + 1, "orders records are expected one per line"
    frame["line"] = range(2, len(frame) + 2)
    frame["day"] = frame["InvoiceDate"].str[:10]
    return frame


def orders_header() -> str:
    return physical_lines(ORDERS_FILE)[0]


def orders_lines(line_numbers: Iterable[int]) -> list[str]:
    lines = physical_lines(ORDERS_FILE)
    return [lines[n - 1] for n in line_numbers]


def first_order(mask: pd.Series) -> pd.Series:
    """The first real orders row matching `mask` (fails if the data has none)."""
    hits = orders_frame()[mask]
    assert len(hits), "no real orders row matches"
    return hits.iloc[0]


# --- landing files and raw frames --------------------------------------------------------------------------------


def write_landing(folder: Path, name: str, lines: Iterable[str], header: str | None = None) -> Path:
    """Write a landing file from exact source text (header line first, if any). Returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(line if line.endswith("\n") else line + "\n" for line in ([header] if header else []) + list(lines))
    path = folder / name
    path.write_bytes(text.encode("utf-8"))
    return path


def write_csv_landing(folder: Path, name: str, header: list[str] | None, rows: Iterable[Iterable[str]]) -> Path:
    """Write a landing file the way shopflow.landing.sample_data does (csv.writer, '\\n' line ends)."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    path = folder / name
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    return path


def pseudonymise_like_ingest(raw: pd.DataFrame, spec: SourceSpec, key: bytes = TEST_KEY) -> pd.DataFrame:
    """What ingest does: each raw id column is replaced, in place, by its token column."""
    return pseudonymise_columns(raw, spec.pseudonymise, key)


def ingest_like_pipeline(source: str, folder: Path, key: bytes = TEST_KEY) -> pd.DataFrame:
    """The raw frame ingest would build from a landing folder: read, combine (catalog) or concat, pseudonymise."""
    spec = get_source(source)
    frames = {}
    for file_spec in spec.files:
        path = folder / file_spec.name
        path = path if path.is_file() else folder / f"{file_spec.name}.gz"
        if path.is_file():
            frames[file_spec.name] = read_delimited(path, file_spec.columns, has_header=file_spec.header,
                                                    delimiter=file_spec.delimiter)
    assert frames, f"no landing files of {source} in {folder}"
    combine = getattr(cleaner_of(spec), "combine", None)
    raw = combine(frames) if combine else pd.concat(frames.values(), ignore_index=True)
    return pseudonymise_like_ingest(raw, spec, key)


def landing_folder(root: Path, source: str, ds: date) -> Path:
    return root / source / f"ds={ds.isoformat()}"
