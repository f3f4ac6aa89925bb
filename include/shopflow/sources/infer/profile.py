"""The profile of each column of an export sample: its clean name, type, null spellings, value set, range and id
shape, each with the evidence it rests on; and the sample's candidate key and time zone.

A type is only proposed when the declared cleaner (`shopflow.sources.declared.parse_column`) parses every present
value of the sample as that type, so the draft's schema quarantines none of the sampled rows for their type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from shopflow.sources.declared import parse_column
from shopflow.sources.infer.sample import ExportSample
from shopflow.sources.spec import ColumnSpec

# Spellings of "no value" that exports use; compared case-insensitively after stripping.
NULL_SPELLINGS = ("na", "n/a", "null", "none", "nan", "nil", "-", "--", "?", "#n/a", "undefined")
_BOOL_WORDS = {"true", "false", "t", "f", "yes", "no", "y", "n"}
MAX_CATEGORY_VALUES = 12
MAX_CATEGORY_TEXT = 40  # characters: longer values are text, not labels
MAX_NUMBER_NULL_SPELLINGS = 2  # non-numbers in a numeric column read as null spellings, at most this many distinct
EPOCH_SECONDS = (946_684_800, 4_102_444_800)  # 2000-01-01 .. 2100-01-01
TIME_WORDS = {"time", "timestamp", "ts", "date", "datetime", "at", "created", "updated", "epoch", "when"}
# Money and measures: a float even when the sample's values happen to be whole.
CONTINUOUS_WORDS = {"price", "cost", "amount", "total", "revenue", "weight", "length", "height", "width", "depth",
                    "cm", "mm", "kg", "g", "lb", "rating", "score"}
ID_WORDS = {"id", "key", "uuid", "guid", "sku", "code", "no", "number", "num", "pid", "uid"}
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_START = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{1,2}:\d{2}")
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
_OTHER_TIME_FORMATS = ("%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S",
                       "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%Y/%m/%d %H:%M:%S")
QUIET_LOCAL_HOUR = 4  # where a shop's day is quietest, local time: the hour profile's trough is placed here
ZONE_OF_OFFSET = {0: "Europe/London", 1: "Europe/Berlin", 2: "Europe/Athens", 3: "Europe/Moscow", 4: "Asia/Dubai",
                  5: "Asia/Karachi", 6: "Asia/Dhaka", 7: "Asia/Bangkok", 8: "Asia/Shanghai", 9: "Asia/Tokyo",
                  10: "Australia/Sydney", 11: "Pacific/Noumea", 12: "Pacific/Auckland", -1: "Atlantic/Azores",
                  -2: "America/Noronha", -3: "America/Sao_Paulo", -4: "America/Halifax", -5: "America/New_York",
                  -6: "America/Chicago", -7: "America/Denver", -8: "America/Los_Angeles", -9: "America/Anchorage",
                  -10: "Pacific/Honolulu", -11: "Pacific/Pago_Pago"}
MIN_ROWS_FOR_HOURS = 200
SOME_VALUES = 200


def name_tokens(raw: str) -> list[str]:
    """Words of a column name: `InvoiceNo` -> invoice, no; `product_category_name` -> product, category, name."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", raw))
    return [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]


def snake_name(raw: str) -> str:
    name = "_".join(name_tokens(raw)) or "column"
    return name if name[0].isalpha() else f"c_{name}"


@dataclass
class ColumnProfile:
    raw: str
    name: str  # the clean column's name
    type: str = "string"
    rows: int = 0
    present: int = 0  # values that are not empty nor a null spelling
    distinct: int = 0
    null_values: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)  # a category's values, most frequent first
    unit: str | None = None
    time_format: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    shape: str | None = None  # a regular expression every present value matches (id-like columns)
    examples: list[str] = field(default_factory=list)  # the most frequent values
    some_values: list[str] = field(default_factory=list)  # up to SOME_VALUES distinct values, most frequent first
    leading_letters: dict[str, int] = field(default_factory=dict)  # `C536379`-like ids: letter -> how many values
    type_evidence: str = ""
    parsed: pd.Series | None = None  # the typed values (timestamps and numbers), for the hour profile and ranges

    @property
    def nulls(self) -> int:
        return self.rows - self.present

    @property
    def tokens(self) -> list[str]:
        return name_tokens(self.raw)

    @property
    def unique(self) -> bool:
        return self.present == self.rows > 0 and self.distinct == self.rows

    @property
    def idish(self) -> bool:
        return bool(set(self.tokens) & ID_WORDS) or self.shape is not None

    def column_spec(self) -> ColumnSpec:
        return ColumnSpec(name=self.name, type=self.type, unit=self.unit, format=self.time_format,
                          whole_units=self.unit is not None, null_values=self.null_values,
                          values=self.values or None)

    def summary(self) -> str:
        empty = f"{self.nulls:,} empty" if self.nulls else "none empty"
        shown = ", ".join(_shown(v) for v in self.examples)
        return f"{self.distinct:,} distinct of {self.rows:,}; {empty}; e.g. {shown}"


def profile_columns(sample: ExportSample) -> list[ColumnProfile]:
    profiles, names = [], set()
    for index, raw in enumerate(sample.columns):
        name = snake_name(raw)
        while name in names:
            name = f"{name}_{index + 1}"
        names.add(name)
        profiles.append(_profile(raw, name, pd.Series(sample.column_values(index), dtype="string"),
                                 sample.arrow_types.get(raw), headerless=not sample.header))
    return profiles


def _profile(raw: str, name: str, text: pd.Series, arrow_type: str | None, headerless: bool) -> ColumnProfile:
    stripped = text.str.strip()
    spelled_null = stripped.str.lower().isin(NULL_SPELLINGS).fillna(False)
    profile = ColumnProfile(raw, name, rows=len(text))
    profile.null_values = sorted(set(stripped[spelled_null].dropna()))
    present = stripped[(stripped != "") & ~spelled_null]
    counts = present.value_counts(sort=True)
    profile.present, profile.distinct = len(present), len(counts)
    profile.examples = [str(v) for v in counts.index[:3]]
    profile.some_values = [str(v) for v in counts.index[:SOME_VALUES]]
    if not len(present):
        profile.type_evidence = "no value in the sample: string"
        return profile
    _choose_type(profile, present, counts, arrow_type, headerless)
    if profile.type == "string":
        profile.shape = _id_shape(counts.index.astype(str))
        if profile.shape and "[A-Z]?" in profile.shape:
            letters = present.str[0]
            profile.leading_letters = letters[letters.str.isalpha()].value_counts().astype(int).to_dict()
    return profile


def _choose_type(profile: ColumnProfile, present: pd.Series, counts: pd.Series, arrow_type: str | None,
                 headerless: bool) -> None:
    distinct = pd.Series(counts.index.astype(str), dtype="string")
    lowered = set(distinct.str.lower())
    numbers = pd.to_numeric(distinct, errors="coerce")
    numeric = numbers.notna().to_numpy()
    leading_zero = distinct.str.match(r"^-?0\d").fillna(False).to_numpy()
    if lowered <= _BOOL_WORDS and not lowered <= {"y", "n"} or (arrow_type or "").startswith("bool"):
        _try(profile, present, "bool", f"only {sorted(lowered)}")
    elif numeric.all() and not leading_zero.any():
        whole = bool((numbers == numbers.round()).all()) and float(numbers.abs().max()) < 2**53
        times = bool(set(profile.tokens) & TIME_WORDS) or headerless
        seconds = whole and float(numbers.min()) >= EPOCH_SECONDS[0] and float(numbers.max()) < EPOCH_SECONDS[1]
        millis = whole and float(numbers.min()) >= EPOCH_SECONDS[0] * 1000 and float(numbers.max()) < EPOCH_SECONDS[1] * 1000
        if times and (seconds or millis) and _try(
                profile, present, "timestamp", f"whole numbers {int(numbers.min())} .. {int(numbers.max())}: Unix "
                f"{'seconds' if seconds else 'milliseconds'} between 2000 and 2100", unit="s" if seconds else "ms"):
            pass
        else:
            continuous = bool(set(profile.tokens) & CONTINUOUS_WORDS)
            _try(profile, present, "int" if whole and not continuous else "float",
                 "every value is a number" + (", whole ones, but the name says a price or measure" if whole and continuous
                                              else "" if not whole else ", a whole one"))
    elif numeric.any() and numeric.sum() >= 10 and (~numeric).sum() <= MAX_NUMBER_NULL_SPELLINGS and not leading_zero.any() \
            and not distinct[~numeric].str.contains(r"\d").any():
        spellings = sorted(distinct[~numeric])
        whole = bool((numbers[numeric] == numbers[numeric].round()).all())
        share = counts[spellings].sum() / len(present)
        _try(profile, present, "int" if whole else "float",
             f"numbers but for {', '.join(map(_shown, spellings))} ({share:.0%} of values), read as null",
             null_values=spellings)
    elif distinct.str.match(_ISO_START).all() or (distinct.str.match(_DATE_ONLY).all()):
        date_only = bool(distinct.str.match(_DATE_ONLY).all())
        offsets = distinct.str.contains(_OFFSET).fillna(False)
        what = "ISO dates" if date_only else ("ISO date-times with a UTC offset" if offsets.all()
                                             else "ISO date-times without a zone")
        _try(profile, present, "date" if date_only else "timestamp", what)
    elif distinct.str.match(r"^\d{1,4}[/.]\d{1,2}[/.]\d{2,4}[ T]\d{1,2}:\d{2}").all():
        for time_format in _OTHER_TIME_FORMATS:
            if _try(profile, present, "timestamp", f"date-times written {time_format}", time_format=time_format):
                break
    if profile.type == "string" and MAX_CATEGORY_VALUES >= profile.distinct and profile.present >= max(
            20, 3 * profile.distinct) and int(distinct.str.len().max()) <= MAX_CATEGORY_TEXT:
        profile.type, profile.values = "category", list(distinct)
        profile.type_evidence = (f"{profile.distinct} distinct labels in {profile.present:,} values: a value set "
                                 "(a value outside it quarantines the row: widen it, or make the column string)")
    if not profile.type_evidence:
        profile.type_evidence = "text"


def _try(profile: ColumnProfile, present: pd.Series, column_type: str, why: str, unit: str | None = None,
         time_format: str | None = None, null_values: list[str] | None = None) -> bool:
    """Adopt the type when the declared cleaner parses every present value as it."""
    spec = ColumnSpec(name="probe", type=column_type, unit=unit, whole_units=unit is not None, format=time_format,
                      null_values=null_values or [])
    parsed, invalid = parse_column(present.reset_index(drop=True), spec, "UTC")
    if invalid.any():
        return False
    profile.type, profile.unit, profile.time_format = column_type, unit, time_format
    profile.null_values = sorted(set(profile.null_values) | set(null_values or []))
    if null_values:
        profile.present -= int(present.isin(null_values).sum())
        profile.distinct -= len(null_values)
        parsed = parsed.dropna()
    profile.type_evidence = f"{why}; all {profile.present:,} parse as {column_type}"
    profile.parsed = parsed
    if column_type in ("int", "float") and len(parsed):
        profile.minimum, profile.maximum = float(parsed.min()), float(parsed.max())
    return True


def _id_shape(values: pd.Index) -> str | None:
    """A plain regular expression every value matches, for id-like text (hex digests, digit codes)."""
    text = pd.Series(values, dtype="string")
    lengths = text.str.len()
    low, high = int(lengths.min()), int(lengths.max())
    span = f"{{{low}}}" if low == high else f"{{{low},{high}}}"
    if low >= 8 and text.str.fullmatch(r"[0-9a-f]+").all():
        return f"^[0-9a-f]{span}$"
    if low >= 8 and text.str.fullmatch(r"[0-9A-F]+").all():
        return f"^[0-9A-F]{span}$"
    if text.str.fullmatch(r"\d+").all():
        return f"^\\d{span}$"
    digits = text.str.extract(r"^[A-Z]?(\d+)$")[0]
    if digits.notna().all() and (text.str.len() > digits.str.len()).any():
        d_low, d_high = int(digits.str.len().min()), int(digits.str.len().max())
        return f"^[A-Z]?\\d{{{d_low},{d_high}}}$" if d_low != d_high else f"^[A-Z]?\\d{{{d_low}}}$"
    return None


# ---- keys ------------------------------------------------------------------------------------------------------
@dataclass
class KeyGuess:
    columns: list[str]  # clean column names
    evidence: str
    also_unique: list[list[str]] = field(default_factory=list)


def guess_key(profiles: list[ColumnProfile], sample: ExportSample) -> KeyGuess:
    """A single column unique and never empty in the sample (an id-like name or shape first); else the whole row,
    so that exact duplicates are dropped. Column pairs unique in the sample are named but not proposed: over a
    sample, a pair is unique by chance too often."""
    unique = [p for p in profiles if p.unique and p.type not in ("float", "bool", "category")]
    unique.sort(key=lambda p: (not p.idish, p.type == "timestamp", profiles.index(p)))
    rows = len(sample.rows)
    if unique:
        best = unique[0]
        return KeyGuess([best.name], f"{best.raw}: {rows:,} distinct values in {rows:,} sampled rows, none empty"
                        + (" (an id-like name or shape)" if best.idish else ""))
    frame = pd.DataFrame(sample.rows, columns=[p.name for p in profiles]) if rows else pd.DataFrame()
    duplicates = int(frame.duplicated().sum()) if rows else 0
    pairs = []
    candidates = [p for p in profiles if p.nulls == 0 and p.type != "float"][:12]
    for i, first in enumerate(candidates):
        for second in candidates[i + 1:]:
            if not frame.duplicated([first.name, second.name]).any():
                pairs.append([first.name, second.name])
    evidence = ("no column is unique and never empty in the sample: the key is the whole row, so exact duplicates "
                f"are dropped ({duplicates:,} in the sample)")
    return KeyGuess([p.name for p in profiles], evidence, pairs[:3])


# ---- time zone ---------------------------------------------------------------------------------------------------
@dataclass
class ZoneGuess:
    zone: str
    evidence: str


def guess_zone(time_column: ColumnProfile | None, profiles: list[ColumnProfile]) -> ZoneGuess:
    """The zone, from (in this order) UTC offsets in the time values, a country column's most common value, the
    daily trough of epoch timestamps; UTC when nothing says."""
    if time_column is not None and time_column.type == "timestamp" and time_column.unit is None and \
            time_column.examples and all(_OFFSET.search(v) for v in time_column.examples):
        offsets = sorted({_OFFSET.search(v)[0] for v in time_column.examples})
        hours = {0 if o == "Z" else int(o[:3]) for o in offsets}
        zone = ZONE_OF_OFFSET.get(hours.pop(), "UTC") if len(hours) == 1 and offsets != ["Z"] else "UTC"
        zone = "UTC" if offsets in (["Z"], ["+0000"], ["+00:00"]) else zone
        return ZoneGuess(zone, f"{time_column.raw} carries its UTC offset ({', '.join(offsets)}): the values say "
                         "the instant; the zone only decides the business day: set the shop's own")
    country = next((p for p in profiles if "country" in p.tokens and p.present), None)
    if country is not None:
        zone = _zone_of_country(country.examples[0])
        if zone:
            return ZoneGuess(zone, f"{country.raw} is most often {_shown(country.examples[0])}: its first zone")
    if time_column is not None and time_column.parsed is not None and len(time_column.parsed) >= MIN_ROWS_FOR_HOURS:
        hours = pd.DatetimeIndex(time_column.parsed.dropna()).hour
        counts = pd.Series(hours).value_counts().reindex(range(24), fill_value=0).to_numpy()
        window = [counts[(h - 1) % 24] + counts[h] + counts[(h + 1) % 24] for h in range(24)]
        quiet = int(min(range(24), key=window.__getitem__))
        if window[quiet] * 24 < 0.5 * 3 * counts.sum():  # a clear daily trough
            if time_column.unit is None:
                return ZoneGuess("UTC", f"{time_column.raw} has no zone; its quietest hours are around {quiet:02d}:00, "
                                 "as local time would be: the zone is not in the data, set the shop's own")
            offset = (QUIET_LOCAL_HOUR - quiet + 12) % 24 - 12
            zone = ZONE_OF_OFFSET.get(offset, "UTC")
            return ZoneGuess(zone, f"{time_column.raw} (Unix time, UTC) is quietest around {quiet:02d}:00 UTC; placing "
                             f"that trough at {QUIET_LOCAL_HOUR:02d}:00 local gives UTC{offset:+d} (any zone of that "
                             "offset fits as well)")
    return ZoneGuess("UTC", "nothing in the sample says the zone (no offsets, no country, no time column with a "
                     "daily rhythm): UTC, set the shop's own")


# Country spellings that pytz's ISO 3166 names do not match ("Britain (UK)").
COUNTRY_ALIASES = {"united kingdom": "GB", "uk": "GB", "great britain": "GB", "england": "GB", "usa": "US",
                   "united states of america": "US", "eire": "IE", "russia": "RU", "south korea": "KR",
                   "czech republic": "CZ", "holland": "NL"}


def _zone_of_country(value: str) -> str | None:
    import pytz

    wanted = value.strip().lower()
    code = COUNTRY_ALIASES.get(wanted) or next(
        (c for c, name in pytz.country_names.items() if name.lower() == wanted or c.lower() == wanted), None)
    zones = pytz.country_timezones.get(code) if code else None
    return zones[0] if zones else None


def time_span(column: ColumnProfile) -> str:
    values = column.parsed.dropna() if column.parsed is not None else []
    if not len(values):
        return ""
    first, last = values.min(), values.max()
    if isinstance(first, datetime) and first.tzinfo is not None:
        first, last = first.astimezone(timezone.utc), last.astimezone(timezone.utc)
    return f"{first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M}" + (" UTC" if column.unit else "")


def _shown(value: str, width: int = 30) -> str:
    value = str(value).replace("\n", " ").replace("\r", " ")
    return repr(value if len(value) <= width else value[: width - 1] + "…")


shown = _shown
