"""The declared cleaner: a source's `schema`, `key`, `rules` and `joins` from the sources file, applied to its raw
rows with no Python of the source's own.

For each clean column, in schema order: the raw text is normalised, '' and `null_values` become null, a null in a
`required` column is rejected with its missing reason, a value that does not parse as the type (or breaks the
column's min/max, or is no category value) with its invalid reason. Then the rules run in their order. A row keeps
the first reason it earns (shopflow.sources.ledger.RowVerdicts), and the quarantine names the raw column. The typed frame
holds the schema's columns plus `source_line`; shopflow.sources.cleaning does the dedup on `key` and the ledger.
A derived column (`expression`) is evaluated by shopflow.sources.expressions, a `regex` rule matched by RE2
(shopflow.sources.patterns): nothing in a sources file runs as code or backtracks.

Joins (`combine`): the first file that is not a lookup holds the source's rows (several such files are
concatenated); each lookup file is left-joined on its keys. A lookup key that appears twice is an error naming the
file and line, since either match would be a guess.
"""

from __future__ import annotations

import html
import operator
import re
from dataclasses import dataclass, field
from typing import ClassVar
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from shopflow.common.landing_file import SOURCE_FILE, SOURCE_LINE, LandingFileError
from shopflow.common.parquet import plain_text
from shopflow.common.text import normalise_query, normalise_text
from shopflow.sources.expressions import ExpressionError, compile_expression
from shopflow.sources.ledger import RowVerdicts
from shopflow.sources.patterns import fully_matching
from shopflow.sources.spec import ColumnSpec, RuleSpec, SourceSpec

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
EARLIEST, LATEST = pd.Timestamp("1970-01-01", tz="UTC"), pd.Timestamp("2100-01-01", tz="UTC")
_AWARE = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
MAX_EXACT_INTEGER = 2**53
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
            "!=": operator.ne}


@dataclass
class DeclaredCleaner:
    """Duck-types a cleaner module: CLEAN_SCHEMA, DEDUP_KEY, clean() and, with joins, combine()."""

    spec: SourceSpec
    # Types, derived columns and rules all look at one row at a time (lookups are joined in ingest), so a day too
    # big for one chunk is cleaned chunk by chunk.
    ROW_LOCAL: ClassVar[bool] = True
    CLEAN_SCHEMA: dict[str, str] = field(init=False)
    DEDUP_KEY: list[str] = field(init=False)

    def __post_init__(self):
        self.CLEAN_SCHEMA = self.spec.clean_schema
        self.DEDUP_KEY = list(self.spec.key or [])
        if self.spec.joins:
            self.combine = self._combine

    def _combine(self, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
        lookups = set(self.spec.lookup_files)
        main = [frames[f.name] for f in self.spec.files if f.name not in lookups and f.name in frames]
        if not main:
            raise LandingFileError(self.spec.name, None, "only lookup files landed: no file with the source's rows")
        rows = pd.concat(main, ignore_index=True) if len(main) > 1 else main[0].reset_index(drop=True)
        for join in self.spec.joins:
            if join.file not in frames:
                continue  # an optional lookup that did not land: its columns are null (schema columns say so)
            rows = _left_join(rows, frames[join.file], join.left_keys, join.right_keys, join.file)
        return rows

    def clean(self, raw: pd.DataFrame, ds: date, spec: SourceSpec) -> tuple[pd.DataFrame, RowVerdicts]:
        verdicts = RowVerdicts(raw.index)
        typed: dict[str, pd.Series] = {}
        placed = {rule.after for rule in spec.rules if rule.after}
        for column in spec.schema_:
            if column.expression is not None:
                typed[column.name] = derived(column, typed, raw.index, spec)
            else:
                self._type_column(raw, column, spec, typed, verdicts)
            if column.name in placed:
                self._apply_rules([r for r in spec.rules if r.after == column.name], typed, ds, spec, verdicts)
        self._apply_rules([r for r in spec.rules if not r.after], typed, ds, spec, verdicts)
        typed["source_line"] = raw[SOURCE_LINE] if SOURCE_LINE in raw.columns else pd.Series(
            np.arange(1, len(raw) + 1), index=raw.index)
        return pd.DataFrame(typed, index=raw.index), verdicts

    @staticmethod
    def _type_column(raw: pd.DataFrame, column: ColumnSpec, spec: SourceSpec, typed: dict, verdicts: RowVerdicts):
        raw_name = spec.pseudonymise.get(column.raw, column.raw)  # ids are tokens by now
        if raw_name in raw.columns:
            text = plain_text(raw[raw_name])
        else:  # a column of an optional lookup that did not land
            text = pd.Series("", index=raw.index, dtype="string")
        values, invalid = parse_column(text, column, spec.timezone)
        if column.required:
            verdicts.reject(values.isna() & ~invalid, column.missing_reason or f"missing_{column.name}", column.raw)
        verdicts.reject(invalid, column.invalid_reason or f"invalid_{column.name}", column.raw)
        typed[column.name] = values

    @staticmethod
    def _apply_rules(rules: list[RuleSpec], typed: dict, ds: date, spec: SourceSpec, verdicts: RowVerdicts):
        for rule in rules:
            broken = rule_breaks(rule, typed, ds, spec)
            verdicts.reject(broken, rule.reason, rule.field or _raw_of(spec, rule.column or rule.left))


def derived(column: ColumnSpec, typed: dict[str, pd.Series], index: pd.Index, spec: SourceSpec) -> pd.Series:
    """A derived column: the expression evaluated over the clean columns declared before it."""
    compiled = compile_expression(column.expression, spec.expression_columns(column))
    try:
        values = pd.Series(compiled.evaluate({name: typed[name] for name in compiled.columns}, index), index=index)
        if column.type == "int" and pd.api.types.is_float_dtype(values.dtype):
            present = values.dropna().astype("float64")
            fractional = present[present != np.round(present)]
            if len(fractional):  # pandas would cut 2.5 to 2 without a word
                raise ExpressionError(f"gives {float(fractional.iloc[0])!r}, not a whole number (round() it, or declare "
                                      "the column float)")
        return values.astype(column.dtype)
    except (ExpressionError, TypeError, ValueError, OverflowError) as exc:
        raise ExpressionError(f"{spec.name}: derived column {column.name!r}: {exc}") from exc


_CLEANERS: dict[int, DeclaredCleaner] = {}


def declared_cleaner(spec: SourceSpec) -> DeclaredCleaner:
    """The spec's cleaner, built once per spec object (specs hold lists, so they are not hashable)."""
    cleaner = _CLEANERS.get(id(spec))
    if cleaner is None or cleaner.spec is not spec:
        cleaner = _CLEANERS[id(spec)] = DeclaredCleaner(spec)
    return cleaner


def _raw_of(spec: SourceSpec, clean_name: str) -> str:
    return next((c.raw for c in spec.schema_ if c.name == clean_name), clean_name)


def _left_join(rows: pd.DataFrame, lookup: pd.DataFrame, left: list[str], right: list[str], name: str) -> pd.DataFrame:
    lookup = lookup.drop(columns=[SOURCE_FILE]).rename(columns={SOURCE_LINE: "_lookup_line"})
    repeated = lookup.duplicated(subset=right, keep="first")
    if repeated.any():
        first = lookup.loc[repeated].iloc[0]
        raise LandingFileError(name, int(first["_lookup_line"]),
                               f"lookup key {dict(zip(right, first[right].tolist()))} appears more than once")
    lookup = lookup.drop(columns=["_lookup_line"])
    renamed = dict(zip(right, left))
    joined = rows.merge(lookup.rename(columns=renamed), how="left", on=left, sort=False)
    added = [c for c in lookup.columns if c not in right]
    joined[added] = joined[added].fillna("")  # an unmatched key: empty text, as an empty field would be
    return joined


# ---- typing --------------------------------------------------------------------------------------------------
def normalise(text: pd.Series, steps: list[str]) -> pd.Series:
    values = text.astype("string")
    for step in steps:
        if step in ("text", "query"):
            function = normalise_text if step == "text" else normalise_query
            distinct = values.dropna().unique()
            values = values.map(dict(zip(distinct, (function(v) for v in distinct)))).astype("string")
            continue
        if step == "strip":
            values = values.str.strip()
        elif step == "nfkc":
            values = values.str.normalize("NFKC")
        elif step == "html":
            distinct = values.dropna().unique()
            values = values.map(dict(zip(distinct, (html.unescape(v) for v in distinct)))).astype("string")
        elif step == "lower":
            values = values.str.lower()
        elif step == "collapse_spaces":
            values = values.str.replace(r"\s+", " ", regex=True)
    return values


def parse_column(text: pd.Series, column: ColumnSpec, source_zone: str) -> tuple[pd.Series, np.ndarray]:
    """(typed values, invalid mask): invalid where a non-null value does not parse or breaks the column's bounds."""
    values = normalise(text, column.normalise)
    null = values.isna() | (values == "") | values.isin(column.null_values)
    values = values.mask(null)
    if column.type == "string":
        parsed = values
    elif column.type == "category":
        mapping = column.values if isinstance(column.values, dict) else {v: v for v in column.values}
        parsed = values.map(mapping).astype("string")
    elif column.type == "bool":
        lowered = values.str.lower()
        parsed = pd.Series(pd.NA, index=values.index, dtype="boolean")
        parsed[lowered.isin(_TRUE).fillna(False).to_numpy(bool)] = True
        parsed[lowered.isin(_FALSE).fillna(False).to_numpy(bool)] = False
    elif column.type in ("int", "float") or column.decimal:
        parsed = _number(values, column)
    elif column.type == "date":
        stamps = pd.to_datetime(values, format=column.format or "ISO8601", errors="coerce")
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = stamps.dt.tz_localize(None)
        parsed = stamps.dt.normalize().astype("datetime64[s]")
    else:
        parsed = _timestamp(values, column, source_zone)
    invalid = (~null & parsed.isna()).to_numpy(dtype=bool)
    return parsed, invalid


def _number(values: pd.Series, column: ColumnSpec) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    valid = np.isfinite(numbers)
    if column.type == "int":
        # below 2**53 every float is exact; at or above it a parsed integer may already have been rounded
        valid &= (numbers == np.round(numbers)) & (numbers.abs() < MAX_EXACT_INTEGER)
    if column.decimal:
        precision, scale = column.decimal
        numbers = numbers.round(scale)
        valid &= numbers.abs() < 10.0 ** (precision - scale)
    if column.min is not None:
        valid &= numbers >= column.min
    if column.max is not None:
        valid &= numbers <= column.max
    numbers = numbers.where(valid)
    return numbers.astype("Int64") if column.type == "int" else numbers


def _timestamp(values: pd.Series, column: ColumnSpec, source_zone: str) -> pd.Series:
    zone = column.timezone or source_zone
    if column.unit:
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        usable = np.isfinite(numbers) & (numbers.abs() < 1e15)
        if column.whole_units:
            usable &= numbers == np.round(numbers)
        stamps = pd.to_datetime(numbers.where(usable), unit=column.unit, utc=True, errors="coerce")
    else:
        aware = values.str.contains(_AWARE).fillna(False).to_numpy(bool) if column.format is None else None
        if aware is not None and aware.any():
            stamps = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
            stamps[aware] = pd.to_datetime(values[aware], format="ISO8601", utc=True, errors="coerce")
            stamps[~aware] = _localised(values[~aware], None, zone)
        else:
            stamps = _localised(values, column.format, zone)
    stamps = stamps.astype("datetime64[us, UTC]")
    return stamps.where((stamps >= EARLIEST) & (stamps < LATEST))


def _localised(values: pd.Series, fmt: str | None, zone: str) -> pd.Series:
    stamps = pd.to_datetime(values, format=fmt or "ISO8601", errors="coerce")
    if getattr(stamps.dt, "tz", None) is None:
        stamps = stamps.dt.tz_localize(ZoneInfo(zone), ambiguous="NaT", nonexistent="NaT")
    return stamps.dt.tz_convert("UTC")


# ---- rules ---------------------------------------------------------------------------------------------------
def rule_breaks(rule: RuleSpec, typed: dict[str, pd.Series], ds: date, spec: SourceSpec) -> np.ndarray:
    """Where a row breaks the rule (nulls pass every rule but not_null)."""
    if rule.rule == "compare":
        left, right = typed[rule.left], typed[rule.right]
        both = (left.notna() & right.notna()).to_numpy(bool)
        holds = np.zeros(len(left), dtype=bool)
        if both.any():
            holds[both] = _COMPARE[rule.op](left[both], right[both]).to_numpy(bool)
        return both & ~holds
    values = typed[rule.column]
    present = values.notna().to_numpy(bool)
    if rule.rule == "not_null":
        return ~present
    if rule.rule == "range":
        ok = np.ones(len(values), dtype=bool)
        numbers = values.astype("float64").to_numpy()
        with np.errstate(invalid="ignore"):
            if rule.min is not None:
                ok &= numbers > rule.min if rule.strict_min else numbers >= rule.min
            if rule.max is not None:
                ok &= numbers < rule.max if rule.strict_max else numbers <= rule.max
        return present & ~ok
    if rule.rule == "set":
        return present & ~values.isin(rule.values).fillna(False).to_numpy(bool)
    if rule.rule == "regex":  # the whole value must match, as str.fullmatch; each distinct value is matched once
        text = values.astype("string")
        matching = fully_matching(rule.pattern, text.dropna().unique())
        return present & ~text.isin(matching).to_numpy(bool)
    if rule.rule == "max_length":
        return present & (values.astype("string").str.len() > rule.length).fillna(False).to_numpy(bool)
    local = _local_dates(values, spec.timezone)
    if rule.rule == "in_partition":
        return present & (local != ds)
    start = rule.start or (spec.window or {}).get("start")
    end = rule.end or (spec.window or {}).get("end")
    outside = np.zeros(len(values), dtype=bool)
    if start is not None:
        outside |= local < start
    if end is not None:
        outside |= local > end
    return present & outside


def _local_dates(values: pd.Series, zone: str) -> np.ndarray:
    """The calendar day of each timestamp in the source's time zone (dates as they are), as an object array."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert(zone).dt.tz_localize(None)
    days = values.dt.date.to_numpy(dtype=object)
    return np.where(pd.isna(days), date.max, days)
