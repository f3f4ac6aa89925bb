"""Batch scoring for users: `python -m shopflow predict --input FILE --output FILE [--model DIR]`.

The input is CSV or JSON lines (by suffix, optionally .gz or .zst) holding the catalogue role's fields of the model
catalogue: a title, and where present a brand, a description and an id. A field is found under its role name
(`title`, `brand`, `description`, `id`) or under the model catalogue's column name (`product_name`, ...). The text
the model reads is built exactly as in training (shopflow.model.training.data.product_text). The output (CSV or JSON
lines, by suffix) has, per input row in input order: the id (or the row number), the champion's category, its
calibrated confidence, the top three as (category, probability) pairs, and the second level with its confidence.

The input is read within the bounds every command keeps (shopflow.ingest.bounded_read: a regular file, its content
and lines within SHOPFLOW_MAX_EXPANDED_BYTES and SHOPFLOW_MAX_LINE_BYTES) and checked before any model is loaded
(`read_input`): an output path that is the input file, an empty file, bytes that are not UTF-8 text, or no title
column is a one-line PredictInputError naming the file.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from shopflow.common.landing_file import LandingFileError, open_regular
from shopflow.ingest.bounded_read import read_content
from shopflow.model.training.data import product_text
from shopflow.sources import roles
from shopflow.sources.spec import COMPRESSION_SUFFIXES, SourceSpec

log = logging.getLogger("shopflow.predict")
INPUT_FIELDS = ("id", "title", "brand", "description")


class PredictInputError(ValueError):
    """The input file cannot be scored; the message names the file and what is missing."""


def _without_compression(name: str) -> str:
    return next((name.removesuffix(suffix) for suffix in COMPRESSION_SUFFIXES if name.endswith(suffix)), name)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def check_paths(input_path: Path, output_path: Path) -> None:
    """Refuse an output that is the input: the same path once resolved, or the same file by another name (a hard or
    symbolic link), which writing the predictions would replace."""
    same = input_path.resolve() == output_path.resolve()
    if not same and input_path.exists() and output_path.exists():
        same = os.path.samefile(input_path, output_path)
    if same:
        raise PredictInputError(f"{output_path}: the output is the input file {input_path}; writing the predictions "
                                "would replace it: choose another --output")


def _read(path: Path) -> pd.DataFrame:
    name = _without_compression(path.name.lower())
    try:
        with open_regular(path):  # what the path is comes first: /dev/zero is no file, whatever its name
            pass
        if not name.endswith((".jsonl", ".ndjson", ".json", ".csv", ".tsv")):
            raise PredictInputError(f"{path}: unknown format (use .csv, .tsv or .jsonl, optionally .gz or .zst)")
        _, content = read_content(path, lines=True)
    except LandingFileError as exc:
        raise PredictInputError(str(exc)) from None
    if not content.strip():
        raise PredictInputError(f"{path}: the file is empty: nothing to score (a header row and one product a line "
                                "are expected)")
    if b"\x00" in content:
        raise PredictInputError(f"{path}: a binary file (it holds NUL bytes), not CSV/TSV or JSON-lines text")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        raise PredictInputError(f"{path}, line {line}: not UTF-8 text (byte {content[exc.start]:#04x}): a binary "
                                "file, or text in another encoding") from None
    del content
    try:
        if name.endswith((".jsonl", ".ndjson", ".json")):
            return pd.read_json(io.StringIO(text), lines=True, dtype=False)
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                           sep="\t" if name.endswith(".tsv") else ",")
    except (ValueError, pd.errors.ParserError) as exc:
        kind = "JSON lines" if name.endswith((".jsonl", ".ndjson", ".json")) else "CSV/TSV"
        raise PredictInputError(f"{path}: not {kind} ({_first_line(exc)})") from None


def model_frame(raw: pd.DataFrame, spec, path: Path) -> pd.DataFrame:
    """The input's fields under the model catalogue's column names (what product_text reads)."""
    frame = pd.DataFrame(index=raw.index)
    for field in INPUT_FIELDS:
        column = spec.role_column(field)
        if column is None:
            continue
        source = field if field in raw else column if column in raw else None
        if source is not None:
            frame[column] = raw[source].astype("string").replace("", pd.NA)
    title = spec.role_column("title")
    if title not in frame:
        raise PredictInputError(f"{path}: no title field: a column named 'title' or '{title}' is needed "
                                f"(columns: {', '.join(map(str, raw.columns[:20]))})")
    return frame


@dataclass(frozen=True)
class PredictInput:
    """An input file read and checked: its path, the model catalogue's source spec, and its fields under the
    model catalogue's column names."""

    path: Path
    spec: SourceSpec
    frame: pd.DataFrame


def read_input(input_path: Path, output_path: Path) -> PredictInput:
    """The checked input of a prediction (before any model is loaded); PredictInputError, one line naming the file,
    when it cannot be scored or the output would replace it (FileNotFoundError when it does not exist)."""
    check_paths(input_path, output_path)
    spec = roles.model_catalog_source()
    raw = _read(input_path)
    if raw.empty:
        raise PredictInputError(f"{input_path}: no products to score (columns: "
                                f"{', '.join(map(str, raw.columns[:20])) or 'none'})")
    return PredictInput(input_path, spec, model_frame(raw, spec, input_path))


def predict_file(input_path: Path, output_path: Path, predictor) -> dict:
    return predict_input(read_input(input_path, output_path), output_path, predictor)


def predict_input(checked: PredictInput, output_path: Path, predictor) -> dict:
    """Score a checked input with `predictor` and write the output; the summary of what was done."""
    input_path, spec, frame = checked.path, checked.spec, checked.frame
    texts = product_text(frame, spec).fillna("").tolist()
    top = predictor.predict(texts)
    second = predictor.predict(texts, level="l2")
    id_column = spec.role_column("id")
    ids = frame[id_column].astype("string") if id_column in frame else pd.Series(range(1, len(frame) + 1)).astype("string")
    out = pd.DataFrame({
        "id": ids.to_numpy(), "category": top["label"].to_numpy(), "confidence": top["confidence"].to_numpy(),
        "top3": [[list(pair) for pair in row] for row in top["top3"]],
        "category_l2": second["label"].to_numpy(), "confidence_l2": second["confidence"].to_numpy(),
    })
    output_path.parent.mkdir(parents=True, exist_ok=True)
    name = output_path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        out.to_json(output_path, orient="records", lines=True, force_ascii=False)
    else:
        out.assign(top3=out["top3"].map(json.dumps)).to_csv(output_path, index=False)
    untitled = int((frame[spec.role_column("title")].isna()).sum())
    summary = {"input": str(input_path), "output": str(output_path), "rows": len(out), "without_title": untitled,
               "model": predictor.source, "serving": predictor.selected}
    log.info("scored %d products of %s with %s (%s) -> %s", len(out), input_path, predictor.source,
             predictor.selected, output_path)
    return summary
