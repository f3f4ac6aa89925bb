"""The source-independent half of cleaning: quarantine, exact dedup, typed output and the row ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from shopflow.ledger import Ledger
from shopflow.sources import SourceSpec

REASON = "_reason"
FIELD = "_field"


@dataclass
class CleanResult:
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    ledger: Ledger


def clean_partition(spec: SourceSpec, raw: pd.DataFrame, ds: date) -> CleanResult:
    """Apply the source's rules to one partition's raw rows.

    Rejected rows go to quarantine with their raw values, a reason code, the field and the source line;
    among the accepted rows, exact duplicates on the source's key are dropped (first kept) and counted.
    """
    raw = raw.reset_index(drop=True)
    typed, verdicts = spec.module.clean(raw, ds, spec)
    rejected = verdicts.rejected
    quarantine = raw.loc[rejected].copy()
    quarantine[REASON] = verdicts.reason[rejected]
    quarantine[FIELD] = verdicts.field[rejected]
    quarantine = quarantine.reset_index(drop=True)

    if typed.index.equals(rejected.index):
        # Same rows as `typed.loc[~rejected]` then `.duplicated(subset=spec.key, keep="first")`, but without first
        # copying every accepted row: one take of the rows that stay.
        accepted = np.flatnonzero(~rejected.to_numpy(dtype=bool))
        kept = accepted[first_occurrences(typed, spec.key, accepted)]
        rows_duplicate = len(accepted) - len(kept)
        clean = typed.take(kept)
    else:  # a cleaner that returned its rows in another order: let pandas align the verdicts by label
        accepted_rows = typed.loc[~rejected]
        duplicate = accepted_rows.duplicated(subset=spec.key, keep="first")
        rows_duplicate = int(duplicate.sum())
        clean = accepted_rows.loc[~duplicate]
    clean = cast_to_schema(clean.reset_index(drop=True), spec.clean_schema)

    ledger = Ledger(
        rows_in=len(raw),
        rows_clean=len(clean),
        rows_duplicate=rows_duplicate,
        quarantined_by_reason={str(k): int(v) for k, v in quarantine[REASON].value_counts().items()},
    )
    ledger.check(f"{spec.name} {ds}")
    return CleanResult(clean=clean, quarantine=quarantine, ledger=ledger)


def first_occurrences(frame: pd.DataFrame, key: list[str], rows: np.ndarray) -> np.ndarray:
    """Indexes into `rows` (ascending) of the rows that `frame.iloc[rows].duplicated(subset=key, keep="first")`
    would not flag: the first row of each distinct combination of the key columns, nulls equal to each other.

    Each key column is factorised once over the whole frame (so the subset is never copied), the codes of the rows
    are combined into one id per row, and the ids are checked for repeats, as `DataFrame.duplicated` does.
    """
    if len(rows) == 0:
        return np.arange(0)
    ids = np.zeros(len(frame), dtype=np.int64)
    distinct = 1  # ids lie in [0, distinct)
    for column in key:
        codes, uniques = pd.factorize(frame[column], use_na_sentinel=True)
        size = len(uniques) + 1  # code -1 (null) becomes 0: a value of its own
        if distinct * size >= 2**62:  # compress the ids before they could overflow
            ids, seen = pd.factorize(ids)
            distinct = len(seen)
        ids *= size
        ids += codes
        ids += 1
        distinct *= size
    return np.flatnonzero(~pd.Series(ids[rows]).duplicated(keep="first").to_numpy())


def cast_to_schema(frame: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise KeyError(f"cleaner did not produce columns {missing}")
    return pd.DataFrame({column: frame[column].astype(dtype) for column, dtype in schema.items()})
