"""Keyed pseudonymisation of user and customer ids (HMAC-SHA256), applied at ingest.

The same raw id always maps to the same token under one key, so joins across days and sources still work,
while the raw id cannot be recovered without the key.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd
import pyarrow as pa

TOKEN_HEX_CHARS = 24

# What the fingerprint HMACs: a fixed constant, so the fingerprint identifies the key without revealing it.
FINGERPRINT_MESSAGE = b"shopflow pseudonymisation key fingerprint v1"
FINGERPRINT_HEX_CHARS = 16


def key_fingerprint(key: bytes) -> str:
    """A short HMAC of a fixed constant under `key`: tells keys apart (a re-keyed dataset), never reveals one."""
    return hmac.new(key, FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:FINGERPRINT_HEX_CHARS]


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
    # One Arrow take of the distinct tokens (a missing id, code -1, takes the trailing null).
    mapped = pa.array(tokens + [None], type=pa.large_string())
    codes = np.where(codes < 0, len(tokens), codes) if len(codes) and codes.min() < 0 else codes
    taken = mapped.take(pa.array(codes))
    return pd.Series(pd.arrays.ArrowStringArray(taken), index=values.index, dtype="string", copy=False)


def pseudonymise_columns(raw: pd.DataFrame, columns: dict[str, str], key: bytes) -> pd.DataFrame:
    """Replace each raw id column (`columns`: raw name -> token name) by its token column, in the same place."""
    for raw_column, token_column in columns.items():
        position = raw.columns.get_loc(raw_column)
        tokens = pseudonymise_series(raw[raw_column], key)
        raw = raw.drop(columns=[raw_column])
        raw.insert(position, token_column, tokens)
    return raw
