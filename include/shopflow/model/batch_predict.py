"""Batch scoring for users: `python -m shopflow predict --input FILE --output FILE [--model DIR]`.

The input is CSV or JSON lines (by suffix, optionally .gz) holding the catalogue role's fields of the model
catalogue: a title, and where present a brand, a description and an id. A field is found under its role name
(`title`, `brand`, `description`, `id`) or under the model catalogue's column name (`product_name`, ...). The text
the model reads is built exactly as in training (shopflow.model.training.data.product_text). The output (CSV or JSON
lines, by suffix) has, per input row in input order: the id (or the row number), the champion's category, its
calibrated confidence, the top three as (category, probability) pairs, and the second level with its confidence.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from shopflow.model.training.data import product_text
from shopflow.sources import roles

log = logging.getLogger("shopflow.predict")
INPUT_FIELDS = ("id", "title", "brand", "description")


class PredictInputError(ValueError):
    """The input file cannot be scored; the message names the file and what is missing."""


def _read(path: Path) -> pd.DataFrame:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        try:
            return pd.read_json(path, lines=True, dtype=False)
        except ValueError as exc:
            raise PredictInputError(f"{path}: not JSON lines ({exc})") from None
    if name.endswith((".csv", ".tsv")):
        return pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if name.endswith(".tsv") else ",")
    raise PredictInputError(f"{path}: unknown format (use .csv, .tsv or .jsonl, optionally .gz)")


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


def predict_file(input_path: Path, output_path: Path, predictor) -> dict:
    spec = roles.model_catalog_source()
    raw = _read(input_path)
    frame = model_frame(raw, spec, input_path)
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
