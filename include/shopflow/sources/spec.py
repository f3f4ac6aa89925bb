"""The sources file's schema: what a source and each of its landing files may declare, validated on load.

A sources file (YAML) maps source names to entries. Validation is pydantic's: unknown keys, wrong types and
inconsistent combinations are refused with an error that names the source, the key and what is wrong
(`SourcesFileError`). Nothing here reads data; `shopflow.ingest.readers` reads a landing file by its `LandingFileSpec`.

A sources file is data, never code: a derived column's expression is checked against a small declarative language
(`shopflow.sources.expressions`), a regular expression must compile in RE2 (`shopflow.sources.patterns`), and a
landing file's name is a plain name or glob inside its partition folder (no separator, no `..`, not absolute).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import typing
import re
from collections.abc import Mapping
from datetime import date
from types import ModuleType
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shopflow.sources.expressions import ExpressionError, check_expression, compile_expression, kind_of_type
from shopflow.sources.patterns import check_backtracking_safe, compile_pattern

FileFormat = Literal["csv", "tsv", "jsonl", "parquet"]
# Compression suffixes a landing file may carry beyond its declared name (also recognised by magic bytes).
COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd")
_FORMAT_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                     ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
# A JSON field path: dot-separated keys, `[]` after a key that holds a list (the `records` list, exploded).
_FIELD_PATH = re.compile(r"^[^.\[\]]+(\[\])?(\.[^.\[\]]+(\[\])?)*$")


class SourcesFileError(ValueError):
    """The sources file is not valid; the message names the source, the key and what is wrong."""


MAX_FILE_NAME_BYTES = 255  # a file name's limit on common file systems


def check_file_name(name: str) -> str:
    """A landing (or sidecar) file name is a plain name or glob inside the partition folder: never a path."""
    problem = None
    if not name.strip():
        problem = "is empty"
    elif "/" in name or "\\" in name:
        problem = "holds a path separator"
    elif name in (".", ".."):
        problem = "names a folder"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        problem = "holds a control character (NUL, newline, ...)"
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_FILE_NAME_BYTES:
        problem = f"is longer than {MAX_FILE_NAME_BYTES} bytes"
    if problem:
        raise ValueError(f"file name {name!r} {problem}: a file name or glob inside the partition folder, such as "
                         "orders.csv or orders-*.csv (no / or \\, not . or .., not absolute)")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LandingFileSpec(_Strict):
    """One landing file of a partition: by exact name or glob pattern, and how to read it.

    `columns` are the raw column names, in file order for header-less delimited files. A compressed file
    (`.gz`, `.zst`) matches the declared name plus that suffix and is also recognised by its magic bytes.
    For JSON lines, `records` names the list whose items become rows (`events`: one row per event, each keeping
    the line number of its JSON record) and `fields` maps a column to a field path (`session_id`,
    `events[].ts`, `device.os`); a column without a path is the top-level key of its own name (or, with
    `records`, the key of its name inside each record item). A JSON-lines file whose `fields` name all its
    columns may leave `columns` out: they are the keys of `fields`, in order."""

    name: str = Field(description="file name or glob pattern, e.g. orders.csv or orders-*.csv")
    columns: list[str] = Field(min_length=1)
    format: FileFormat | None = None
    header: bool = True
    delimiter: str | None = None
    encoding: str = "utf-8"
    quotechar: str | None = '"'
    optional: bool = False
    records: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _columns_from_fields(cls, data):
        """`columns` left out: the keys of `fields` (a JSON-lines file); the format check below refuses `fields`
        on any other format."""
        if isinstance(data, dict) and data.get("columns") is None:
            fields = data.get("fields")
            if isinstance(fields, dict) and fields:
                data = {**data, "columns": list(fields)}
            else:
                raise ValueError("columns: required (the raw column names; a JSON-lines file may name them in "
                                 "fields instead)")
        return data

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return check_file_name(value)

    @model_validator(mode="after")
    def _consistent(self) -> "LandingFileSpec":
        fmt = self.resolved_format
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns are not unique: {self.columns}")
        if self.delimiter is not None and (fmt not in ("csv", "tsv") or len(self.delimiter) != 1):
            raise ValueError("delimiter: one character, for csv/tsv files only")
        if self.quotechar is not None and len(self.quotechar) != 1:
            raise ValueError("quotechar: one character (or null for no quoting)")
        if (self.records or self.fields) and fmt != "jsonl":
            raise ValueError("records/fields apply to jsonl files only")
        unknown = sorted(set(self.fields) - set(self.columns))
        if unknown:
            raise ValueError(f"fields names columns that are not declared in columns: {unknown}")
        for column, path in self.fields.items():
            if not _FIELD_PATH.match(path):
                raise ValueError(f"fields.{column}: {path!r} is not a field path like 'a.b' or 'events[].ts'")
        if self.records is not None and not _FIELD_PATH.match(self.records):
            raise ValueError(f"records: {self.records!r} is not a field path like 'events' or 'session.events'")
        try:
            "".encode(self.encoding)
        except LookupError as exc:
            raise ValueError(f"encoding: unknown encoding {self.encoding!r}") from exc
        return self

    @property
    def resolved_format(self) -> str:
        """The declared format, else the one its name's extension says (csv when it says none)."""
        if self.format:
            return self.format
        stem = self.name
        for suffix in COMPRESSION_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
        for suffix, fmt in _FORMAT_BY_SUFFIX.items():
            if stem.lower().endswith(suffix):
                return fmt
        return "csv"

    @property
    def resolved_delimiter(self) -> str:
        return self.delimiter or ("\t" if self.resolved_format == "tsv" else ",")

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.name for ch in "*?[")

    def matches(self, file_name: str) -> bool:
        """Whether a landing file name is this file: the name or pattern, optionally plus a compression suffix."""
        candidates = [file_name] + [file_name[: -len(s)] for s in COMPRESSION_SUFFIXES if file_name.endswith(s)]
        return any(fnmatch.fnmatchcase(candidate, self.name) for candidate in candidates)

    def field_path(self, column: str) -> str:
        """The JSON field path of a column (jsonl files)."""
        if column in self.fields:
            return self.fields[column]
        return f"{self.records}[].{column}" if self.records else column


_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
SCALAR_TYPES = ("string", "int", "float", "bool", "date", "timestamp", "category")
# strip, nfkc, html (entities), lower, collapse_spaces; text = shopflow.common.text.normalise_text (entities, NFKC, control
# characters, whitespace, to a fixed point); query = shopflow.common.text.normalise_query (text, case-folded, outer
# punctuation stripped).
NORMALISERS = ("strip", "nfkc", "html", "lower", "collapse_spaces", "text", "query")
_REASON = re.compile(r"^[a-z][a-z0-9_]*$")


class ColumnSpec(_Strict):
    """One clean column: where it comes from, its type and how text becomes that type.

    A raw value is normalised (`normalise`, default strip), then one of `null_values` or '' is null; a value that
    does not parse as `type` (or lies outside `min`/`max`, or, for a category, is not in `values`) quarantines
    the row with `invalid_reason` (default `invalid_<name>`); a null in a `required` column with
    `missing_reason` (default `missing_<name>`). The quarantine names the raw column (`from`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    source: str | None = Field(default=None, alias="from")
    type: str = "string"
    format: str | None = None
    unit: Literal["s", "ms"] | None = None
    whole_units: bool = False  # an epoch timestamp must be a whole number of its units
    timezone: str | None = None
    values: dict[str, str] | list[str] | None = None
    normalise: list[Literal["strip", "nfkc", "html", "lower", "collapse_spaces", "text", "query"]] = Field(
        default_factory=lambda: ["strip"])
    expression: str | None = None  # a derived column: shopflow.sources.expressions over the clean columns before it
    null_values: list[str] = Field(default_factory=list)
    required: bool = False
    min: float | None = None
    max: float | None = None
    missing_reason: str | None = None
    invalid_reason: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ColumnSpec":
        if self.expression is not None and (self.source or self.required or self.values or self.format):
            raise ValueError("a derived column (expression) has no from, required, values or format")
        if self.expression is not None:  # the language alone here; the columns it names are the source's check
            try:
                check_expression(self.expression)
            except ExpressionError as exc:
                raise ValueError(f"derived column {self.name!r}: {exc}") from None
        if self.type not in SCALAR_TYPES and not _DECIMAL.match(self.type):
            raise ValueError(f"type {self.type!r}: one of {', '.join(SCALAR_TYPES)} or decimal(p,s)")
        if self.format is not None and self.type not in ("date", "timestamp"):
            raise ValueError("format applies to date and timestamp columns only")
        if (self.unit or self.timezone) and self.type != "timestamp":
            raise ValueError("unit and timezone apply to timestamp columns only")
        if self.whole_units and not self.unit:
            raise ValueError("whole_units applies to epoch timestamps (with unit) only")
        if self.timezone:
            _check_zone(self.timezone)
        if self.type == "category" and not self.values:
            raise ValueError("a category column needs values (a list, or a map such as {pv: view})")
        if self.values is not None and self.type != "category":
            raise ValueError("values applies to category columns only")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float") and not _DECIMAL.match(self.type):
            raise ValueError("min/max apply to int, float and decimal columns")
        for reason in (self.missing_reason, self.invalid_reason):
            if reason is not None and not _REASON.match(reason):
                raise ValueError(f"reason {reason!r}: lower-case letters, digits and _")
        return self

    @property
    def raw(self) -> str:
        return self.source or self.name

    @property
    def decimal(self) -> tuple[int, int] | None:
        match = _DECIMAL.match(self.type)
        return (int(match[1]), int(match[2])) if match else None

    @property
    def dtype(self) -> str:
        """The pandas dtype of the clean column."""
        if self.decimal:
            return "float64"
        return {"string": "string", "category": "string", "int": "Int64", "float": "float64", "bool": "boolean",
                "date": "datetime64[s]", "timestamp": "datetime64[us, UTC]"}[self.type]


RULES = ("not_null", "range", "set", "regex", "max_length", "date_window", "in_partition", "compare")
_COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")


class RuleSpec(_Strict):
    """A row rule on clean columns, applied in order after typing; a row breaking it is quarantined with `reason`
    (the first rule a row breaks wins). Null values pass every rule but `not_null` (and `compare` skips a row
    where either side is null)."""

    rule: Literal["not_null", "range", "set", "regex", "max_length", "date_window", "in_partition", "compare"]
    reason: str
    after: str | None = None  # check right after this column's own checks (default: after every column's)
    column: str | None = None
    field: str | None = None  # the field named in quarantine (default: the column's raw column)
    min: float | None = None
    max: float | None = None
    strict_min: bool = False
    strict_max: bool = False
    values: list[str | int | float | bool] | None = None
    pattern: str | None = None
    length: int | None = None
    start: date | None = None
    end: date | None = None
    left: str | None = None
    op: Literal["<", "<=", ">", ">=", "==", "!="] | None = None
    right: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "RuleSpec":
        if not _REASON.match(self.reason):
            raise ValueError(f"reason {self.reason!r}: lower-case letters, digits and _")
        needs = {"not_null": ["column"], "range": ["column"], "set": ["column", "values"],
                 "regex": ["column", "pattern"], "max_length": ["column", "length"],
                 "date_window": ["column"], "in_partition": ["column"], "compare": ["left", "op", "right"]}
        absent = [key for key in needs[self.rule] if getattr(self, key) is None]
        if absent:
            raise ValueError(f"rule {self.rule} needs {', '.join(absent)}")
        if self.rule == "range" and self.min is None and self.max is None:
            raise ValueError("rule range needs min or max")
        if self.pattern is not None:
            compile_pattern(self.pattern)
        return self

    @property
    def columns(self) -> list[str]:
        return [c for c in (self.column, self.left, self.right) if c]


class ExpectationEntry(_Strict):
    """A Great Expectations expectation of the source's suite: `expect` is the GX class name, the other keys its
    arguments (`column`, `min_value`, `mostly`, ...). Critical ones fail the day; warnings are recorded."""

    model_config = ConfigDict(extra="allow", frozen=True)

    expect: str
    severity: Literal["critical", "warning"] = "critical"

    @field_validator("expect")
    @classmethod
    def _expectation_name(cls, value: str) -> str:
        if not re.fullmatch(r"Expect[A-Z][A-Za-z]+", value):
            raise ValueError(f"{value!r} is not a GX expectation class name such as ExpectColumnValuesToNotBeNull")
        return value

    @model_validator(mode="after")
    def _linear_patterns(self) -> "ExpectationEntry":
        # GX matches with Python's backtracking re: a pattern RE2 refuses (backreferences, lookarounds) or one that
        # nests repetitions is refused here.
        for key in ("regex", "regex_list"):
            value = self.kwargs.get(key)
            for pattern in value if isinstance(value, list) else [value] if value is not None else []:
                if not isinstance(pattern, str):
                    raise ValueError(f"{key}: {pattern!r} is not a regular expression (text)")
                check_backtracking_safe(pattern)
        return self

    @property
    def kwargs(self) -> dict:
        return dict(self.model_extra or {})


class JoinSpec(_Strict):
    """A lookup file joined onto the source's main rows (a left join of `key` to the lookup's `lookup_key`, default
    the same names): its columns become available to the schema. The lookup's rows are reference rows (counted
    in the ledger, not cleaned rows). (Not `on`: YAML reads a bare `on` as true.)"""

    file: str
    key: str | list[str]
    lookup_key: str | list[str] | None = None

    @property
    def left_keys(self) -> list[str]:
        return [self.key] if isinstance(self.key, str) else list(self.key)

    @property
    def right_keys(self) -> list[str]:
        keys = self.lookup_key if self.lookup_key is not None else self.key
        return [keys] if isinstance(keys, str) else list(keys)


# The fields each role may map (role field -> clean column). Only the required ones must be given; a report
# section or model step that needs an absent field says so instead of failing.
ROLE_FIELDS = {
    # group: a product-group id shared by the listings of one product (Flipkart's pid); the grouped split and the
    # near-duplicate check use it.
    "catalog": ("id", "title", "category_path", "category_levels", "category_status", "brand", "price",
                "discounted_price", "description", "group"),
    "orders": ("order_id", "line_id", "customer", "timestamp", "quantity", "unit_price", "cancellation", "product",
               "product_name", "country", "line_type"),
    "events": ("user", "item", "event_type", "timestamp"),
    "search": ("query", "user", "session", "clicked_item", "timestamp"),
}
ROLE_REQUIRED = {"catalog": ("id",), "orders": ("order_id", "timestamp"), "events": ("user", "event_type"),
                 "search": ("query",)}
# An orders source's line_type column marks merchandise lines with this value (others: postage, fees, ...).
MERCHANDISE_LINE = "product"
# An events source's event_type column holds these values (a category column's value map turns pv into view).
EVENT_TYPES = ("view", "favourite", "cart", "buy")


class RoleSpec(_Strict):
    """What the source is to the rest of shopflow (report sections, catalogue view, model branch): the role and
    which clean column plays each of its fields. `category_levels` is a list of columns, the others one column."""

    name: Literal["catalog", "orders", "events", "search"]
    fields: dict[str, str | list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_fields(self) -> "RoleSpec":
        unknown = sorted(set(self.fields) - set(ROLE_FIELDS[self.name]))
        if unknown:
            raise ValueError(f"role {self.name} has no fields {unknown}; its fields: {list(ROLE_FIELDS[self.name])}")
        absent = [f for f in ROLE_REQUIRED[self.name] if f not in self.fields]
        if absent:
            raise ValueError(f"role {self.name} needs the fields {absent}")
        return self

    def column(self, field: str) -> str | None:
        value = self.fields.get(field)
        return value if isinstance(value, str) or value is None else None

    def columns(self, field: str) -> list[str]:
        value = self.fields.get(field)
        return [] if value is None else [value] if isinstance(value, str) else list(value)


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/London)") from exc
    return value


# When a source is expected to land (the report's freshness): `daily` every day, `weekly` once in any 7 days,
# `on_change` only when it changes (never stale for not landing). A source that declares no cadence gets its load
# kind's: an append source is a daily feed, a snapshot (or snapshot + deltas) lands when the data changes.
Cadence = Literal["daily", "weekly", "on_change"]
DEFAULT_CADENCE: dict[str, str] = {"append": "daily", "snapshot": "on_change", "snapshot_or_delta": "on_change"}


class SourceSpec(_Strict):
    """One source: its landing files, how it is cleaned, and what the catalogue of data assets says about it.

    Cleaning is declared (`schema`, `key`, `rules`, `joins`: shopflow.sources.declared) or, as an escape hatch, a
    Python module named by `cleaner` (see docs/sources-file.md, "Cleaner hooks"); a source has one or the other."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    description: str
    owner: str
    tags: list[str] = Field(default_factory=list)
    timezone: str = "UTC"
    cleaner: str | None = None
    files: list[LandingFileSpec] = Field(min_length=1)
    schema_: list[ColumnSpec] | None = Field(default=None, alias="schema")
    key: list[str] | None = None
    rules: list[RuleSpec] = Field(default_factory=list)
    expectations: list[ExpectationEntry] | None = None
    joins: list[JoinSpec] = Field(default_factory=list)
    role: RoleSpec | None = None
    sidecar_files: list[str] = Field(default_factory=list, description="names/globs kept beside the data, never read")
    required: bool = False
    generated: bool = False
    load_kind: Literal["append", "snapshot", "snapshot_or_delta"] = "append"
    cadence: Cadence | None = None  # None: DEFAULT_CADENCE of the load kind (resolved on load)
    # The share of a day's rows that may be quarantined before the report says the day needs attention.
    max_quarantine_share: float = Field(default=0.05, ge=0.0, le=1.0)
    currency: str | None = None
    pseudonymise: dict[str, str] = Field(default_factory=dict)
    window: dict[Literal["start", "end"], date] | None = None
    snapshot_file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_cadence(cls, data):
        if isinstance(data, dict) and data.get("cadence") is None and isinstance(data.get("load_kind", "append"), str):
            data = {**data, "cadence": DEFAULT_CADENCE.get(data.get("load_kind", "append"))}
        return data

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return _check_zone(value)

    @field_validator("sidecar_files")
    @classmethod
    def _plain_sidecar_names(cls, value: list[str]) -> list[str]:
        return [check_file_name(name) for name in value]

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(f"{value!r} is not an ISO 4217 code such as GBP")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "SourceSpec":
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"files: a name is declared twice: {names}")
        if self.snapshot_file is not None and self.snapshot_file not in names:
            raise ValueError(f"snapshot_file {self.snapshot_file!r} is not one of the files {names}")
        if self.load_kind == "snapshot_or_delta" and self.snapshot_file is None:
            raise ValueError("load_kind snapshot_or_delta needs snapshot_file (the file that makes a partition a snapshot)")
        raw_columns = {c for f in self.files for c in f.columns}
        unknown = sorted(set(self.pseudonymise) - raw_columns)
        if unknown:
            hints = [f"{c!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(c, raw_columns, n=1))
                     else repr(c) for c in unknown]
            raise ValueError(f"pseudonymise names columns no file declares: {', '.join(hints)}")
        clashes = sorted(t for r, t in self.pseudonymise.items() if t != r and t in raw_columns)
        if clashes:
            raise ValueError(f"pseudonymise: the token columns {clashes} are already raw columns of a file; "
                             "name the token column something new (e.g. customer_key for CustomerID)")
        if self.window and self.window.get("start") and self.window.get("end") and self.window["start"] > self.window["end"]:
            raise ValueError("window: start is after end")
        if (self.cleaner is None) == (self.schema_ is None):
            raise ValueError("declare either schema (with key) or a cleaner module, not both and not neither")
        if self.schema_ is not None:
            self._check_declared(raw_columns)
        elif self.key is not None or self.rules or self.joins:
            raise ValueError("key, rules and joins belong to a declared schema; a cleaner module defines its own")
        return self

    def _check_declared(self, raw_columns: set[str]) -> None:
        names = [c.name for c in self.schema_]
        if len(set(names)) != len(names):
            raise ValueError(f"schema: a column name is declared twice: {names}")
        lookup_files = [j.file for j in self.joins]
        file_names = [f.name for f in self.files]
        for join in self.joins:
            if join.file not in file_names:
                raise ValueError(f"joins: {join.file!r} is not one of the files {file_names}")
            lookup = next(f for f in self.files if f.name == join.file)
            missing = [k for k in join.right_keys if k not in lookup.columns]
            if missing or len(join.left_keys) != len(join.right_keys):
                raise ValueError(f"joins: {join.file} has no key columns {missing or join.right_keys}")
        if len(lookup_files) >= len(file_names):
            raise ValueError("joins: every file is a lookup; one file must hold the source's rows")
        available = raw_columns | set(self.pseudonymise.values())
        unknown = sorted({c.raw for c in self.schema_ if c.expression is None} - available)
        if unknown:
            raise ValueError(f"schema: raw columns {unknown} are in no file (nor pseudonymised)")
        # A pseudonymised id no schema column reads would be tokenised and then dropped: a misspelling, most likely.
        read = {c.raw for c in self.schema_ if c.expression is None} | {k for j in self.joins for k in j.left_keys}
        for raw, token in self.pseudonymise.items():
            if raw not in read and token not in read:
                raise ValueError(f"pseudonymise: {raw} -> {token} is read by no schema column: declare the column "
                                 f"that keeps the token, e.g. {{name: {token}, from: {raw}}}")
        if not self.key:
            raise ValueError("a declared schema needs key: the clean columns that identify a duplicate")
        rule_columns = [(f"rules[{i}]", r.columns + ([r.after] if r.after else [])) for i, r in enumerate(self.rules)]
        for where, columns in [("key", self.key), *rule_columns]:
            unknown = sorted(set(columns) - set(names))
            if unknown:
                raise ValueError(f"{where}: {unknown} are not clean columns (schema: {names})")
        for i, expectation in enumerate(self.expectations or []):
            named = [v for k, v in expectation.kwargs.items() if k in ("column", "column_A", "column_B")]
            unknown = sorted(set(named) - set(names))
            if unknown:
                raise ValueError(f"expectations[{i}]: {unknown} are not clean columns")
        self._check_expressions()
        for i, rule in enumerate(self.rules):
            if rule.after is not None and rule.after in names:
                typed_by_then = names[: names.index(rule.after) + 1]
                late = [c for c in rule.columns if c not in typed_by_then]
                if late:
                    raise ValueError(f"rules[{i}]: placed after {rule.after!r}, before its column {late[0]!r} is typed")
            if rule.rule == "date_window" and rule.start is None and rule.end is None and not self.window:
                raise ValueError(f"rules[{i}]: date_window needs start or end, or the source's window")
        if self.role:
            problems = self.role_problems(names)
            if problems:
                raise ValueError(problems[0])

    def expression_columns(self, column: ColumnSpec) -> dict[str, str]:
        """The clean columns a derived column's expression may name (those declared before it) and their kinds."""
        before = self.schema_[: next(i for i, c in enumerate(self.schema_) if c is column)]
        return {c.name: kind_of_type(c.type) for c in before}

    def _check_expressions(self) -> None:
        for column in self.schema_:
            if column.expression is None:
                continue
            try:
                compiled = compile_expression(column.expression, self.expression_columns(column))
            except ExpressionError as exc:
                raise ValueError(f"derived column {column.name!r}: {exc}") from None
            # the value's kind is the column type's (a null literal fits any): text never quietly becomes a number
            if compiled.kind not in (kind_of_type(column.type), "null"):
                hint = " (to_number reads text as a number)" if compiled.kind == "text" else ""
                raise ValueError(f"derived column {column.name!r} is {column.type} but its expression "
                                 f"\"{column.expression}\" gives {compiled.kind}{hint}")

    @field_validator("cleaner")
    @classmethod
    def _allowed_cleaner(cls, value: str | None) -> str | None:
        if value is not None:
            check_cleaner_module(value)
        return value

    def cleaner_module(self) -> ModuleType:
        """The cleaner hook module the source names (`cleaner:`); a declared source has none (see
        `shopflow.sources.cleaner.cleaner_of`, which gives either kind)."""
        if self.cleaner is None:
            raise ValueError("a declared source has no cleaner module: use shopflow.sources.cleaner.cleaner_of")
        check_cleaner_module(self.cleaner)
        return importlib.import_module(self.cleaner)

    @property
    def clean_schema(self) -> dict[str, str]:
        if self.schema_ is not None:
            return {c.name: c.dtype for c in self.schema_} | {"source_line": "int64"}
        return dict(self.cleaner_module().CLEAN_SCHEMA)

    @property
    def dedup_key(self) -> list[str]:
        return list(self.key) if self.schema_ is not None else list(self.cleaner_module().DEDUP_KEY)

    def role_problems(self, clean_columns: list[str] | None = None) -> list[str]:
        """Role fields that name no clean column (checked on load for a declared schema, by `sources check` for a
        cleaner module, whose schema is only known once it is imported)."""
        if self.role is None:
            return []
        clean_columns = list(self.clean_schema) if clean_columns is None else clean_columns
        problems = []
        for field_name in self.role.fields:
            unknown = sorted(set(self.role.columns(field_name)) - set(clean_columns))
            if unknown:
                problems.append(f"role.fields.{field_name}: {unknown} are not clean columns")
        return problems

    def role_column(self, field_name: str) -> str | None:
        """The clean column that plays a role field (None when the source has no role or does not map it)."""
        return self.role.column(field_name) if self.role else None

    @property
    def lookup_files(self) -> list[str]:
        return [join.file for join in self.joins]

    def file_for(self, file_name: str) -> LandingFileSpec | None:
        """The declared file a landing file name is, if any (the first declaration that matches)."""
        return next((f for f in self.files if f.matches(file_name)), None)


def parse_sources(raw: object, origin: str, lines: Mapping[tuple, int] | None = None) -> dict[str, SourceSpec]:
    """Validate the parsed YAML of a sources file; errors name the source and the key (`orders.files[0].format`),
    and, given `lines` (key path -> 1-based line, as `load_bounded_yaml_with_lines` builds it), the line of the
    file they point at (`line 14: orders.files.0.name: ...`)."""
    if not isinstance(raw, dict) or not raw:
        raise SourcesFileError(f"{origin}: expected a mapping of source names to source entries")
    sources, problems = {}, []

    def problem(path: tuple, text: str) -> None:
        problems.append(_at_line(lines, path, text))

    for name, entry in raw.items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            problem((name,), f"{name!r}: a source name is lower-case letters, digits and _ (it names folders, "
                    "tables and Airflow task groups)")
            continue
        if not isinstance(entry, dict):
            problem((name,), f"{name}: expected a mapping of keys, got {type(entry).__name__}")
            continue
        try:
            sources[name] = SourceSpec(name=name, **entry)
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(part) for part in error["loc"])
                message = error["msg"].removeprefix("Value error, ")
                if error["type"] == "extra_forbidden":
                    message = _unknown_key_message(error["loc"])
                problem((name, *error["loc"]), f"{name}.{where}: {message}" if where else f"{name}: {message}")
        except TypeError as exc:  # e.g. a duplicate `name` key in the entry
            problem((name,), f"{name}: {exc}")
    if problems:
        raise SourcesFileError(f"{origin} is not a valid sources file:\n  " + "\n  ".join(problems))
    return sources


def _at_line(lines: Mapping[tuple, int] | None, path: tuple, text: str) -> str:
    """`text` prefixed with the line of the deepest prefix of `path` whose line is known (`line 14: ...`); as it
    is when there is none (the data did not come from a file)."""
    if lines:
        for end in range(len(path), 0, -1):
            line = lines.get(tuple(path[:end]))
            if line is not None:
                return f"line {line}: {text}"
    return text


def _keys_of(model: type[BaseModel]) -> list[str]:
    """The keys a model accepts in the file (a field's alias where it has one: `schema`, `from`)."""
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_in(annotation) -> type[BaseModel] | None:
    """The model a field holds, directly or inside a list, dict or optional (`list[ColumnSpec] | None`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _unknown_key_message(loc: tuple) -> str:
    """The message for an unknown key at `loc` (`files.0.colums`): which keys the entry takes, and the closest
    one ("did you mean 'columns'?") when the key looks like a misspelling."""
    model: type[BaseModel] | None = SourceSpec
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        model = _model_in(field.annotation) if field is not None else None
    key = str(loc[-1])
    if model is None:
        return "Extra inputs are not permitted (an unknown key)"
    keys = [k for k in _keys_of(model) if not (model is SourceSpec and k == "name")]
    close = difflib.get_close_matches(key, keys, n=2, cutoff=0.6)
    if close:
        return f"Extra inputs are not permitted: unknown key {key!r}; did you mean {' or '.join(map(repr, close))}?"
    return f"Extra inputs are not permitted: unknown key {key!r}; the keys here are: {', '.join(keys)}"


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def allowed_cleaner_packages() -> tuple[str, ...]:
    """SHOPFLOW_CLEANER_MODULES: the packages or modules a `cleaner:` hook may come from."""
    from shopflow.config.options import value

    return tuple(p.strip() for p in value("SHOPFLOW_CLEANER_MODULES").split(",") if p.strip())


def check_cleaner_module(name: str) -> None:
    """ValueError unless `name` is a module path inside one of the allowed packages (SHOPFLOW_CLEANER_MODULES)."""
    if not _MODULE_NAME.fullmatch(name) or any(part.startswith("__") for part in name.split(".")):
        raise ValueError(f"cleaner {name!r} is not a module path (dotted names such as shopflow.sources.orders)")
    allowed = allowed_cleaner_packages()
    if not any(name == package or name.startswith(package + ".") for package in allowed):
        raise ValueError(f"cleaner {name!r} is outside the packages a sources file may name ({', '.join(allowed)}): "
                         f"a deployment allows its own hooks with SHOPFLOW_CLEANER_MODULES")
