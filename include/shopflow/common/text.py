"""Text normalisation shared by the cleaners: HTML entities, Unicode NFKC, whitespace."""

from __future__ import annotations

import html
import re
import unicodedata

import pandas as pd

_WHITESPACE = re.compile(r"\s+")
# Control characters other than whitespace never carry meaning in titles or queries.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What a query loses at its ends, and how many fold passes it may take to reach its fixed point (two, in practice).
_QUERY_EDGES = " \t.,;:!?\"'`"
_QUERY_PASSES = 8


def normalise_text(value: str | None) -> str | None:
    """Unescape HTML entities, NFKC-normalise, drop control characters and collapse whitespace.

    Returns None for a missing or blank value, so emptiness is one thing downstream.
    """
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = _normalise_once(str(value))
    # Repeat while a pass can still change the text, so the result is a fixed point (idempotent): a double-escaped
    # '&amp;lt;' or a full-width '＆amp;' only becomes plain text on a later pass. Without '&' one pass is final.
    while "&" in text:
        again = _normalise_once(text)
        if again == text:
            break
        text = again
    return text or None


def _normalise_once(text: str) -> str:
    text = html.unescape(text)
    text = unicodedata.normalize("NFKC", text)
    stripped = _CONTROL.sub("", text)
    if stripped != text:
        # A removed control character may have separated a letter from its combining accent: compose them now.
        text = unicodedata.normalize("NFKC", stripped)
    return _WHITESPACE.sub(" ", text).strip()


def normalise_text_series(values: pd.Series) -> pd.Series:
    """`normalise_text` over a column, computed once per distinct value (catalogue and order text repeats a lot)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    cleaned = [normalise_text(v) for v in uniques]
    mapped = pd.Series(pd.array(cleaned + [None], dtype="string"))
    return pd.Series(mapped.to_numpy()[codes], index=values.index, dtype="string")


def normalise_query(value: str | None) -> str | None:
    """A search query as the shop should count it: `normalise_text`, lower-cased, outer punctuation stripped."""
    text = normalise_text(value)
    # Case folding can undo NFKC ('ǰ') or form a new entity ('&AMP;amp;'), so fold until nothing changes.
    for _ in range(_QUERY_PASSES):
        if text is None:
            return None
        folded = normalise_text(text.casefold())
        if folded is not None:
            folded = _WHITESPACE.sub(" ", folded.strip(_QUERY_EDGES)).strip() or None
        if folded == text:
            break
        text = folded
    return text
