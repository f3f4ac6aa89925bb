"""Text normalisation shared by the cleaners: HTML entities, Unicode NFKC, whitespace."""

from __future__ import annotations

import html
import re
import unicodedata

import pandas as pd

_WHITESPACE = re.compile(r"\s+")
# Control characters other than whitespace never carry meaning in titles or queries.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalise_text(value: str | None) -> str | None:
    """Unescape HTML entities, NFKC-normalise, drop control characters and collapse whitespace.

    Returns None for a missing or blank value, so emptiness is one thing downstream.
    """
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = html.unescape(str(value))
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub("", text)
    text = _WHITESPACE.sub(" ", text).strip()
    return text or None


def normalise_text_series(values: pd.Series) -> pd.Series:
    """`normalise_text` over a column, computed once per distinct value (catalogue and order text repeats a lot)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    cleaned = [normalise_text(v) for v in uniques]
    mapped = pd.Series(pd.array(cleaned + [None], dtype="string"))
    return pd.Series(mapped.to_numpy()[codes], index=values.index, dtype="string")


def normalise_query(value: str | None) -> str | None:
    """A search query as the shop should count it: `normalise_text`, lower-cased, outer punctuation stripped."""
    text = normalise_text(value)
    if text is None:
        return None
    text = text.casefold().strip(" \t.,;:!?\"'`")
    return _WHITESPACE.sub(" ", text).strip() or None
