"""Row accounting: every input row ends up clean, quarantined (with a reason) or counted as a duplicate."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


class LedgerMismatch(AssertionError):
    """The row ledger of a partition does not add up: rows were lost or invented."""


@dataclass
class Ledger:
    rows_in: int
    rows_clean: int
    rows_duplicate: int
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined_by_reason.values())

    def check(self, where: str) -> "Ledger":
        total = self.rows_clean + self.rows_quarantined + self.rows_duplicate
        if total != self.rows_in:
            raise LedgerMismatch(
                f"{where}: rows_in={self.rows_in} but clean={self.rows_clean} + quarantined={self.rows_quarantined}"
                f" + duplicate={self.rows_duplicate} = {total}"
            )
        return self

    def as_dict(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "rows_clean": self.rows_clean,
            "rows_quarantined": self.rows_quarantined,
            "rows_duplicate": self.rows_duplicate,
            "quarantined_by_reason": dict(sorted(self.quarantined_by_reason.items())),
        }


class RowVerdicts:
    """Collects the first rejection reason (and the field it concerns) for each row of a raw frame.

    Cleaners call `reject(mask, reason, field)` rule by rule; a row keeps the first reason it earned, so the
    order of the calls is the precedence of the rules.
    """

    def __init__(self, index: pd.Index):
        self.reason = pd.Series(pd.NA, index=index, dtype="string")
        self.field = pd.Series(pd.NA, index=index, dtype="string")

    def reject(self, mask: pd.Series, reason: str, field_name: str) -> None:
        fresh = mask.fillna(False).astype(bool) & self.reason.isna()
        self.reason[fresh] = reason
        self.field[fresh] = field_name

    @property
    def rejected(self) -> pd.Series:
        return self.reason.notna()
