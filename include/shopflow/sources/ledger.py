"""Row accounting: every input row ends up clean, quarantined (with a reason) or counted as a duplicate."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa


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

    def __add__(self, other: "Ledger") -> "Ledger":
        """The ledger of two parts of one partition (chunks cleaned one after the other)."""
        reasons = dict(self.quarantined_by_reason)
        for reason, count in other.quarantined_by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + count
        return Ledger(rows_in=self.rows_in + other.rows_in, rows_clean=self.rows_clean + other.rows_clean,
                      rows_duplicate=self.rows_duplicate + other.rows_duplicate, quarantined_by_reason=reasons)

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

    Internally each row holds a small integer: 0 for "not rejected", k for the k-th distinct (reason, field) pair
    seen. `reason` and `field` (string Series, missing where the row was not rejected) are built from it when
    read, so a rule costs a few vectorised operations on integers rather than masked writes into string columns.
    """

    def __init__(self, index: pd.Index):
        self.index = index
        self._codes = np.zeros(len(index), dtype=np.int8)
        self._pairs: list[tuple[str, str]] = []  # code k stands for self._pairs[k - 1]
        self._built: tuple[pd.Series, pd.Series] | None = None

    def reject(self, mask, reason: str, field_name: str) -> None:
        """Reject the rows where `mask` is true (missing counts as false) that no earlier rule rejected.

        `mask` is a boolean Series (plain or nullable, aligned on the frame's index) or a boolean array of the
        frame's length, in the frame's row order.
        """
        hit = self._as_bool(mask)
        fresh = hit & (self._codes == 0)
        if not fresh.any():
            return
        pair = (reason, field_name)
        try:
            code = self._pairs.index(pair) + 1
        except ValueError:
            self._pairs.append(pair)
            code = len(self._pairs)
            if code > np.iinfo(self._codes.dtype).max:
                self._codes = self._codes.astype(np.int32)
        self._codes[fresh] = code
        self._built = None

    def overrule(self, mask, reason: str, field_name: str) -> None:
        """Give the rows where `mask` is true this reason, whatever earlier rules said (for a verdict that explains
        a row better than any rule can, e.g. a blank row, which every rule would reject for its first field)."""
        hit = self._as_bool(mask)
        if not hit.any():
            return
        self._codes[hit] = 0
        self.reject(hit, reason, field_name)

    def _as_bool(self, mask) -> np.ndarray:
        if isinstance(mask, pd.Series):
            if not mask.index.equals(self.index):
                mask = mask.reindex(self.index)  # as `&` between misaligned Series would: absent rows are false
            if mask.dtype == bool:
                return mask.to_numpy()
            return mask.fillna(False).astype(bool).to_numpy()
        values = np.asarray(mask)
        if values.shape != self._codes.shape:
            raise ValueError(f"mask of shape {values.shape} for {len(self._codes)} rows")
        if values.dtype != bool:
            values = pd.Series(values).fillna(False).astype(bool).to_numpy()
        return values

    def _build(self) -> tuple[pd.Series, pd.Series]:
        if self._built is None:
            self._built = (self._column(0), self._column(1))
        return self._built

    def _column(self, part: int, rows: np.ndarray | None = None) -> pd.Series:
        names = pa.array([None] + [pair[part] for pair in self._pairs], type=pa.large_string())
        codes = self._codes if rows is None else self._codes[rows]
        values = names.take(pa.array(codes))
        index = self.index if rows is None else self.index[rows]
        return pd.Series(pd.arrays.ArrowStringArray(values), index=index, dtype="string", copy=False)

    def reasons_of(self, rows: np.ndarray) -> tuple[pd.Series, pd.Series]:
        """(`reason[rows]`, `field[rows]`) for a boolean array `rows`, without building the columns for every row."""
        if self._built is not None:
            return self._built[0][rows], self._built[1][rows]
        return self._column(0, rows), self._column(1, rows)

    @property
    def codes(self) -> np.ndarray:
        """The per-row integer verdicts (0 = not rejected); read-only view."""
        view = self._codes.view()
        view.flags.writeable = False
        return view

    @property
    def reason(self) -> pd.Series:
        return self._build()[0]

    @property
    def field(self) -> pd.Series:
        return self._build()[1]

    @property
    def rejected(self) -> pd.Series:
        return pd.Series(self._codes != 0, index=self.index)
