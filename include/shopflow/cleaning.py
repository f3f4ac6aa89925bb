"""The source-independent half of cleaning: quarantine, exact dedup, typed output and the row ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

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

    accepted = typed.loc[~rejected]
    duplicate = accepted.duplicated(subset=spec.key, keep="first")
    clean = accepted.loc[~duplicate].reset_index(drop=True)
    clean = cast_to_schema(clean, spec.clean_schema)

    ledger = Ledger(
        rows_in=len(raw),
        rows_clean=len(clean),
        rows_duplicate=int(duplicate.sum()),
        quarantined_by_reason={str(k): int(v) for k, v in quarantine[REASON].value_counts().items()},
    )
    ledger.check(f"{spec.name} {ds}")
    return CleanResult(clean=clean, quarantine=quarantine, ledger=ledger)


def cast_to_schema(frame: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise KeyError(f"cleaner did not produce columns {missing}")
    return pd.DataFrame({column: frame[column].astype(dtype) for column, dtype in schema.items()})
