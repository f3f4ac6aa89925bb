"""The source-independent half of cleaning: quarantine, exact dedup, typed output and the row ledger."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import pandas_dtype

from shopflow.common.parquet import is_dictionary_text, plain_text, plain_text_frame, release_unused_memory
from shopflow.sources import SourceSpec
from shopflow.sources.cleaner import cleaner_of
from shopflow.sources.ledger import Ledger

REASON = "_reason"
FIELD = "_field"
# What ingest writes instead of a token when a raw user/customer id holds a control character ('17850\x00'): not an
# id of anyone (hashing it would invent a new customer), and not the raw text either. Clean quarantines such rows.
INVALID_ID_TOKEN = "!invalid-id:control-character"
INVALID_ID_REASON = "control_character_in_id"
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"


def ids_with_control_characters(values: pd.Series) -> np.ndarray:
    """Which raw ids (rows of `values`) hold a control character once trimmed; each distinct id is looked at once."""
    codes, uniques = pd.factorize(plain_text(values), use_na_sentinel=True)
    if not len(uniques):
        return np.zeros(len(values), dtype=bool)
    bad = pd.Series(uniques, dtype="string").str.strip().str.contains(_CONTROL, regex=True, na=False)
    bad = np.append(bad.to_numpy(dtype=bool), False)  # code -1 (a missing id) takes the trailing False
    return bad[codes]


class Distinct:
    """A column factorised once: its distinct values (`values`, a Series of the column's dtype; a missing value, if
    the column has any, is the last one) and each row's position in them (`codes`).

    A cleaning step that works value by value (strip, parse, match, normalise) gives the same answer for every copy
    of a value, so it can run on `values` alone and be spread back to the rows with `rows()`: a landing column
    typically has a few thousand distinct values in a million rows.
    """

    def __init__(self, column: pd.Series):
        # `column` may be plain text or dictionary-encoded text (`read_parquet(text_as_dictionary=True)`); `values`
        # is plain text either way. Its entries need not all differ (each is worked on the same way regardless).
        codes, uniques = column.array.factorize(use_na_sentinel=True)
        dtype = column.dtype
        values = pd.Series(uniques, copy=False)
        if is_dictionary_text(dtype):  # a dictionary-encoded text column: its texts, as the plain column holds them
            dtype = pd.StringDtype()
            texts = pa.array(uniques).cast(pa.large_string())  # __arrow_array__, then the type "string" holds
            values = pd.Series(pd.arrays.ArrowStringArray(texts, dtype=dtype), copy=False)
        if len(codes) and codes.min() < 0:
            values = pd.concat([values, pd.Series([None], dtype=dtype)], ignore_index=True)
            codes = np.where(codes < 0, len(uniques), codes)
        if len(values) < 2**31:
            codes = codes.astype(np.int32)  # half the memory of the platform's intp
        self.codes = codes
        self.values = values
        self.index = column.index

    def rows(self, per_value: pd.Series) -> pd.Series:
        """`per_value` (one entry per distinct value, in `values` order) as one entry per row of the column."""
        return pd.Series(per_value.array.take(self.codes), index=self.index, name=per_value.name, copy=False)

    def strings(self, per_value: pd.Series) -> pd.Series:
        """A text `per_value` as one entry per row, dictionary-encoded (Arrow `dictionary<large_string>`): the rows
        hold small integer codes into the distinct texts, so selecting rows or finding duplicates never touches the
        text itself. Each text appears once in the dictionary, so equal codes mean equal texts (and the reverse);
        `cast_to_schema` turns the column into plain strings."""
        value_codes, texts = per_value.array.factorize(use_na_sentinel=True)
        row_codes = value_codes[self.codes].astype(np.int32)
        missing = row_codes < 0
        indices = pa.array(row_codes, mask=missing if missing.any() else None)
        dictionary = pa.array(texts, type=pa.large_string())
        encoded = pa.DictionaryArray.from_arrays(indices, dictionary)
        return pd.Series(pd.arrays.ArrowExtensionArray(encoded), index=self.index, name=per_value.name, copy=False)

    def key_codes(self, per_value: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(codes, uniques) of `per_value` spread to the rows, as `pd.factorize` of the row-level column would give
        them up to numbering (equal codes exactly where the values are equal; -1 for null): for `combine_codes`."""
        value_codes, uniques = pd.factorize(per_value, use_na_sentinel=True)
        return value_codes[self.codes], uniques

    def mask(self, per_value: pd.Series) -> np.ndarray:
        """A boolean `per_value` (missing = false) as a plain boolean array with one entry per row."""
        return per_value.fillna(False).to_numpy(dtype=bool)[self.codes]


@dataclass
class CleanResult:
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    ledger: Ledger


BLANK_ROW_REASON = "blank_row"


def blank_rows(raw: pd.DataFrame) -> np.ndarray:
    """The rows whose every landed field is missing or whitespace (a blank line in a CSV file, `{}` in JSON lines, an
    all-null Parquet row): quarantined as `blank_row` rather than under whichever rule looks at its first field.
    Columns named `_...` (the source line, the file) are shopflow's own, not landed fields."""
    candidates = np.arange(len(raw))
    for column in raw.columns:
        if column.startswith("_"):
            continue
        if not len(candidates):
            break
        values = pa.array(plain_text(raw[column].iloc[candidates]).array)
        empty = pc.is_null(values)
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            empty = pc.or_kleene(empty, pc.equal(pc.utf8_trim_whitespace(values), ""))
        candidates = candidates[empty.fill_null(True).to_numpy(zero_copy_only=False)]
    blank = np.zeros(len(raw), dtype=bool)
    blank[candidates] = True
    return blank


def clean_partition(spec: SourceSpec, raw: pd.DataFrame | Callable[[], pd.DataFrame], ds: date,
                    seen: "SeenKeys | None" = None) -> CleanResult:
    """Apply the source's rules to one partition's raw rows.

    Rejected rows go to quarantine with their raw values, a reason code, the field and the source line;
    among the accepted rows, exact duplicates on the source's key are dropped (first kept) and counted.
    `raw` may be a function returning the frame: then the raw rows are freed as soon as they are no longer needed.
    Raw text columns may be dictionary-encoded (if the source's cleaner takes them so); the quarantine holds them
    as plain text either way. With `seen` (a partition cleaned chunk by chunk, `raw` being one chunk), a row whose
    key an earlier chunk kept is a duplicate too, and the keys this chunk keeps are added to `seen`.
    """
    raw = (raw() if callable(raw) else raw).reset_index(drop=True)
    typed, verdicts = cleaner_of(spec).clean(raw, ds, spec)
    verdicts.overrule(blank_rows(raw), BLANK_ROW_REASON, "*")
    for raw_column, token_column in (spec.pseudonymise or {}).items():  # ids ingest refused to pseudonymise
        if token_column in raw.columns:
            verdicts.reject(plain_text(raw[token_column]).eq(INVALID_ID_TOKEN).to_numpy(dtype=bool, na_value=False),
                            INVALID_ID_REASON, raw_column)
    rejected = verdicts.rejected
    rejected_rows = rejected.to_numpy(dtype=bool)
    quarantine = plain_text_frame(select_rows(raw, rejected_rows))
    del raw  # the typed frame and the quarantine hold everything still needed
    reasons, fields = verdicts.reasons_of(rejected_rows)
    quarantine[REASON] = reasons.array
    quarantine[FIELD] = fields.array
    del reasons, fields

    if typed.index.equals(rejected.index):
        # Same rows as `typed.loc[~rejected]` then `.duplicated(subset=spec.dedup_key, keep="first")`, but without first
        # copying every accepted row: one selection of the rows that stay.
        accepted = np.flatnonzero(~rejected_rows)
        kept = accepted[first_occurrences(typed, spec.dedup_key, accepted)]
        if seen is not None:
            kept = kept[seen.first_seen(key_hashes(typed, spec.dedup_key, kept))]
        rows_duplicate = len(accepted) - len(kept)
        keep = np.zeros(len(typed), dtype=bool)
        keep[kept] = True
        clean = select_rows(typed.drop(columns=[KEY_ID], errors="ignore"), keep)  # the id has served its purpose
    else:  # a cleaner that returned its rows in another order: let pandas align the verdicts by label
        accepted_rows = typed.loc[~rejected]
        duplicate = accepted_rows.duplicated(subset=spec.dedup_key, keep="first").to_numpy()
        if seen is not None:
            firsts = np.flatnonzero(~duplicate)
            duplicate[firsts[~seen.first_seen(key_hashes(accepted_rows, spec.dedup_key, firsts))]] = True
        rows_duplicate = int(duplicate.sum())
        clean = accepted_rows.loc[~duplicate].reset_index(drop=True)
    del typed, verdicts, rejected
    release_unused_memory()  # the typed rows' temporaries: the plain-text clean columns are built next
    clean = cast_to_schema(clean, spec.clean_schema)

    ledger = Ledger(
        rows_in=len(rejected_rows),
        rows_clean=len(clean),
        rows_duplicate=rows_duplicate,
        quarantined_by_reason={str(k): int(v) for k, v in quarantine[REASON].value_counts().items()},
    )
    ledger.check(f"{spec.name} {ds}")
    return CleanResult(clean=clean, quarantine=quarantine, ledger=ledger)


# Two independent 64-bit hashes of a row's key (pandas' SipHash of each value, under two keys, combined column by
# column): a 128-bit fingerprint. Two different keys share one with a probability of about n**2 / 2**129 (1e-24 for
# 20 million keys in a partition).
_HASH_KEYS = ("shopflow-dedup-1", "shopflow-dedup-2")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it mod 2**64 loses nothing


def key_hashes(frame: pd.DataFrame, key: list[str], rows: np.ndarray) -> np.ndarray:
    """The 128-bit fingerprints (two uint64 columns) of the key columns' values at `rows` (positions): equal for
    equal values (nulls equal to each other) whichever chunk of a partition the rows come from. Each column is
    factorised (natively: Arrow text never becomes Python strings) and only its distinct values are hashed."""
    fingerprints = np.zeros((len(rows), 2), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in key:
            codes, uniques = pd.factorize(frame[column].iloc[rows], use_na_sentinel=True)
            distinct = plain_text(pd.Series(uniques, copy=False))
            for half, hash_key in enumerate(_HASH_KEYS):
                hashed = pd.util.hash_pandas_object(distinct, index=False, hash_key=hash_key).to_numpy()
                per_row = np.append(hashed, np.uint64(0))[codes]  # code -1 (null) takes the trailing 0
                fingerprints[:, half] *= _MIX
                fingerprints[:, half] += per_row
    return fingerprints


class SeenKeys:
    """The key fingerprints (`key_hashes`) of the rows kept so far in a partition cleaned chunk by chunk, so that a
    row of a later chunk is a duplicate exactly when its key was kept in an earlier one: 16 bytes per kept row, in
    sorted runs (two arrays each: the fingerprints' halves). Each chunk adds a run; a run is merged with the one
    before while it is at least as long, so there are at most log2(rows / chunk) runs and each fingerprint is
    copied that many times, not once per chunk."""

    def __init__(self):
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(first) for first, _ in self._runs)

    def first_seen(self, hashes: np.ndarray) -> np.ndarray:
        """Which of `hashes` (distinct keys of one chunk) were not seen before; those are added."""
        order = np.argsort(hashes[:, 0])  # sorted queries: each search starts where the last one ended
        ordered = hashes[order]
        seen_ordered = np.zeros(len(hashes), dtype=bool)
        for run in self._runs:
            seen_ordered |= _in_run(run, ordered)
        new = ordered[~seen_ordered]
        self._runs.append((new[:, 0].copy(), new[:, 1].copy()))
        seen = np.empty(len(hashes), dtype=bool)
        seen[order] = seen_ordered
        while len(self._runs) > 1 and len(self._runs[-1][0]) >= len(self._runs[-2][0]):
            later, earlier = self._runs.pop(), self._runs.pop()
            self._runs.append(_merged(earlier, later))
        return ~seen


def _merged(run_a: tuple[np.ndarray, np.ndarray], run_b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted runs as one, in one pass: each of b's entries goes after the entries of a not greater than it."""
    (first_a, second_a), (first_b, second_b) = run_a, run_b
    size = len(first_a) + len(first_b)
    at_b = np.searchsorted(first_a, first_b, side="right") + np.arange(len(first_b))
    from_a = np.ones(size, dtype=bool)
    from_a[at_b] = False
    merged = []
    for a, b in ((first_a, first_b), (second_a, second_b)):
        out = np.empty(size, dtype=np.uint64)
        out[at_b] = b
        out[from_a] = a
        merged.append(out)
    return merged[0], merged[1]


def _in_run(run: tuple[np.ndarray, np.ndarray], hashes: np.ndarray) -> np.ndarray:
    first, second = run
    at = np.searchsorted(first, hashes[:, 0], side="left")
    found = np.zeros(len(hashes), dtype=bool)
    inside = at < len(first)
    rows = np.flatnonzero(inside)
    same_first = first[at[rows]] == hashes[rows, 0]
    rows, at_rows = rows[same_first], at[rows][same_first]
    found[rows] = second[at_rows] == hashes[rows, 1]
    # A first half shared by several fingerprints (a 64-bit collision): look at every second half of that span.
    for row in rows[~found[rows]]:
        end = np.searchsorted(first, hashes[row, 0], side="right")
        found[row] = bool((second[at[row]:end] == hashes[row, 1]).any())
    return found


def first_occurrences(frame: pd.DataFrame, key: list[str], rows: np.ndarray) -> np.ndarray:
    """Indexes into `rows` (ascending) of the rows that `frame.iloc[rows].duplicated(subset=key, keep="first")`
    would not flag: the first row of each distinct combination of the key columns, nulls equal to each other.

    Each key column is factorised once over the whole frame (so the subset is never copied), the codes of the rows
    are combined into one id per row, and the ids are checked for repeats, as `DataFrame.duplicated` does. A frame
    with a KEY_ID column (see there) is taken at its word: its ids are used as they are.
    """
    if len(rows) == 0:
        return np.arange(0)
    if KEY_ID in frame.columns:
        ids = frame[KEY_ID].to_numpy()
    else:
        ids = combine_codes(pd.factorize(frame[column], use_na_sentinel=True) for column in key)
    return np.flatnonzero(~pd.Series(ids[rows]).duplicated(keep="first").to_numpy())


# A cleaner may add this int64 column to its typed frame: one id per row, equal for two rows exactly when they hold
# the same values in every DEDUP_KEY column (nulls equal to each other), e.g. `combine_codes` of per-column codes it
# already has. Duplicates are then found from it instead of by factorising every key column; `cast_to_schema`
# leaves it out of the clean output.
KEY_ID = "_key_id"


def combine_codes(columns) -> np.ndarray:
    """One int64 id per row from (codes, uniques) pairs, one pair per column (codes -1 = null, as pd.factorize
    gives them): equal ids exactly where every column's code is equal."""
    ids = None
    distinct = 1  # ids lie in [0, distinct)
    for codes, uniques in columns:
        if ids is None:
            ids = np.zeros(len(codes), dtype=np.int64)
        size = len(uniques) + 1  # code -1 (null) becomes 0: a value of its own
        if distinct * size >= 2**62:  # compress the ids before they could overflow
            ids, seen = pd.factorize(ids)
            distinct = len(seen)
        ids *= size
        ids += codes
        ids += 1
        distinct *= size
    return np.zeros(0, dtype=np.int64) if ids is None else ids


def select_rows(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """`frame.loc[rows].reset_index(drop=True)` for a boolean array `rows`, done column by column: an Arrow-backed
    column is filtered chunk by chunk, where a take (what `.loc` does) would first concatenate its chunks."""
    if len(frame) == 0 or frame.columns.has_duplicates:
        return frame.loc[rows].reset_index(drop=True)
    return pd.DataFrame({name: frame[name].array[rows] for name in frame.columns}, columns=frame.columns,
                        index=pd.RangeIndex(int(np.count_nonzero(rows))))


def cast_to_schema(frame: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise KeyError(f"cleaner did not produce columns {missing}")
    return pd.DataFrame({column: _as_dtype(frame[column], dtype) for column, dtype in schema.items()})


def _as_dtype(values: pd.Series, dtype: str) -> pd.Series:
    target = pandas_dtype(dtype)
    if values.dtype == target:
        return values
    if is_dictionary_text(values.dtype) and isinstance(target, pd.StringDtype):
        return plain_text(values, target)
    return values.astype(target)
