"""Keyed pseudonymisation of user and customer ids (HMAC-SHA256), applied at ingest.

The same raw id always maps to the same token under one key, so joins across days and sources still work,
while the raw id cannot be recovered without the key.
"""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd

TOKEN_HEX_CHARS = 24


def pseudonymise(raw_id: str, key: bytes) -> str:
    return hmac.new(key, raw_id.encode("utf-8"), hashlib.sha256).hexdigest()[:TOKEN_HEX_CHARS]


def canonical_id(raw: str | None) -> str | None:
    """One spelling per id: trimmed, with the float suffix Spark printed ('17850.0' -> '17850') removed."""
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text


def pseudonymise_series(values: pd.Series, key: bytes) -> pd.Series:
    """Pseudonymise a column of raw ids; blanks stay missing. Hashes each distinct id once."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    tokens = []
    for raw in uniques:
        canon = canonical_id(raw)
        tokens.append(None if canon is None else pseudonymise(canon, key))
    mapped = pd.array(tokens + [None], dtype="string")
    return pd.Series(mapped[codes], index=values.index, dtype="string")
