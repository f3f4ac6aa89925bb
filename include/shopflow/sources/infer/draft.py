"""The draft sources-file entry as YAML text, every guess followed or preceded by a comment with its evidence.

The text is written by hand (not `yaml.dump`) so that comments sit beside what they explain; every value goes through
`flow`, which quotes what plain YAML would misread (`no`, `1.0`, a leading `*`) and escapes what YAML may not hold.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from shopflow.sources.infer.profile import ColumnProfile, KeyGuess, ZoneGuess, shown, time_span
from shopflow.sources.infer.role import RoleGuess
from shopflow.sources.infer.sample import SAMPLE_BYTES, SAMPLE_ROWS, ExportSample
from shopflow.sources.spec import ROLE_REQUIRED

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}
_NOT_PRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
PSEUDONYM_ROLE_FIELDS = {"orders": "customer", "events": "user", "search": "user"}
TOKEN_PATTERN = "^[0-9a-f]{24}$"  # a pseudonym token (shopflow.ingest.pseudonym)
NOT_NULL_MARGIN = 0.05  # a `mostly` below the sample's share, so a day a little worse than the sample still passes


def flow(value) -> str:
    """A value as YAML flow text that reads back as the same value."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{flow(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, float):  # YAML 1.1 reads an exponent without a dot ("1e+20") as text
        mantissa, _, exponent = repr(value).partition("e")
        return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exponent}" if exponent else repr(value)
    if isinstance(value, int):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    quoted = json.dumps(text, ensure_ascii=False)
    return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def comment(text: str, width: int = 240) -> str:
    text = " ".join(str(text).split())
    return "# " + (text if len(text) <= width else text[: width - 1] + "…")


@dataclass
class Draft:
    """What the entry is made of: the inferred pieces plus the names the draft gives them."""

    source_name: str
    sample: ExportSample
    profiles: list[ColumnProfile]
    key: KeyGuess
    zone: ZoneGuess
    role: RoleGuess
    time_column: ColumnProfile | None
    pseudonymised: dict[str, str] = field(default_factory=dict)  # raw column -> token column

    def clean_name(self, profile: ColumnProfile) -> str:
        return self.pseudonymised.get(profile.raw, profile.name)

    @property
    def required(self) -> set[str]:
        """Raw columns whose empty value quarantines a row: the single-column key and the role's required fields,
        where the sample has no empty value in them."""
        names = set(self.key.columns) if len(self.key.columns) == 1 else set()
        if self.role.name:
            for role_field in ROLE_REQUIRED[self.role.name]:
                names |= {c.name for c in self.role.fields[role_field].columns}
        return {p.raw for p in self.profiles if p.name in names and p.nulls == 0}


def render(draft: Draft) -> str:
    sample, role = draft.sample, draft.role
    lines = [comment(f"Draft sources-file entry by `python -m shopflow sources infer` from {sample.path.name}."),
             comment(f"Sample: {sample.sample_words()} (at most {SAMPLE_BYTES >> 20} MiB of content and "
                     f"{SAMPLE_ROWS:,} records are read). Each guess below says what it rests on: review it, "
                     "a sample is not the whole export."),
             f"{draft.source_name}:"]
    what = f"{role.name}-role source" if role.name else "source"
    lines.append(f"  description: {flow(f'DRAFT: {what} inferred from {sample.path.name}; describe it')}")
    lines.append(f"  owner: owner@shop.example  {comment('who answers for this source: set it')}")
    lines.append(f"  tags: {flow(['drafted'] + ([role.name] if role.name else []))}")
    lines.append(f"  timezone: {flow(draft.zone.zone)}  {comment(draft.zone.evidence)}")
    if draft.time_column is not None:
        span = time_span(draft.time_column)
        why = f"rows carry a time ({draft.time_column.raw}{', ' + span if span else ''}): a day lands its own rows"
        lines.append(f"  load_kind: append  {comment(why)}")
    else:
        why = "no time column dates the rows (or it is a catalogue of products): each landing is the whole table"
        lines.append(f"  load_kind: snapshot  {comment(why)}")
    if draft.pseudonymised:
        lines.append(f"  pseudonymise: {flow(draft.pseudonymised)}  "
                     + comment("a person's id is kept only as a keyed token (the role's user/customer)"))
    lines += _file_lines(sample)
    lines += _schema_lines(draft)
    clean = {p.name: draft.clean_name(p) for p in draft.profiles}
    lines.append(f"  key: {flow([clean.get(c, c) for c in draft.key.columns])}  {comment(draft.key.evidence)}")
    if draft.key.also_unique:
        lines.append("  " + comment("also unique in the sample (not proposed: a pair is unique in a sample by chance "
                                    "too often): " + "; ".join(flow(pair) for pair in draft.key.also_unique)))
    if draft.time_column is not None:
        lines.append("  rules:")
        rule = {"rule": "in_partition", "column": draft.clean_name(draft.time_column), "reason": "outside_partition"}
        lines.append(f"    - {flow(rule)}  {comment('a row belongs to the day of its time, in the source zone')}")
    lines += _expectation_lines(draft)
    lines += _role_lines(draft)
    return "\n".join(lines) + "\n"


def _file_lines(sample: ExportSample) -> list[str]:
    lines = ["  files:", f"    - name: {flow(sample.landing_name)}"
             + (f"  {comment(f'{sample.compression}-compressed: the landing file may keep the suffix')}"
                if sample.compression else ""),
             f"      format: {sample.file_format}  "
             + comment(sample.evidence.get("format", "the delimiter splits the records"))]
    if sample.file_format in ("csv", "tsv"):
        lines.append(f"      header: {flow(sample.header)}  {comment(sample.evidence['header'])}")
        lines.append(f"      delimiter: {flow(sample.delimiter)}  {comment(sample.evidence['delimiter'])}")
    if sample.file_format != "parquet":
        if sample.encoding != "utf-8":
            lines.append(f"      encoding: {flow(sample.encoding)}  {comment(sample.evidence['encoding'])}")
        else:
            lines.append("      " + comment(f"encoding utf-8 (the default): {sample.evidence['encoding']}"))
    if sample.records:
        lines.append(f"      records: {flow(sample.records)}  {comment(sample.evidence['records'])}")
    if sample.fields:
        lines.append(f"      fields: {flow(sample.fields)}  {comment('nested fields: column -> JSON field path')}")
    for key in ("blank_rows", "ragged_rows"):
        if key in sample.evidence:
            lines.append("      " + comment(sample.evidence[key]))
    lines.append(f"      columns: {flow(sample.columns)}")
    return lines


def _schema_lines(draft: Draft) -> list[str]:
    lines = ["  schema:"]
    required = draft.required
    for profile in draft.profiles:
        token = draft.pseudonymised.get(profile.raw)
        column: dict = {"name": token or profile.name}
        if column["name"] != profile.raw:
            column["from"] = profile.raw
        if token:
            lines.append("    " + comment(f"{profile.raw}: pseudonymised, read as its token; {profile.summary()}"))
        else:
            lines.append("    " + comment(f"{profile.raw}: {profile.type_evidence}; {profile.summary()}"))
            column |= _typing(profile, draft.role)
        if profile.raw in required:
            column["required"] = True
        lines.append(f"    - {flow(column)}")
    for derived in draft.role.derived:
        lines.append("    " + comment(derived.evidence))
        lines.append(f"    - {flow({'name': derived.name, 'type': derived.type, 'expression': derived.expression})}")
    return lines


def _typing(profile: ColumnProfile, role: RoleGuess) -> dict:
    typing: dict = {}
    if profile.type != "string":
        typing["type"] = profile.type
    if profile.unit:
        typing |= {"unit": profile.unit, "whole_units": True}
    if profile.time_format:
        typing["format"] = profile.time_format
    if profile.type == "category":
        event_field = role.fields.get("event_type")
        if event_field is not None and profile in event_field.columns:
            typing |= {"normalise": ["strip", "lower"], "values": dict(role.event_values)}
        else:
            typing["values"] = list(profile.values)
    if profile.null_values:
        typing["null_values"] = list(profile.null_values)
    return typing


def _expectation_lines(draft: Draft) -> list[str]:
    lines = ["  expectations:",
             f"    - {flow({'expect': 'ExpectTableRowCountToBeBetween', 'min_value': 1})}"]

    def add(expectation: dict, why: str) -> None:
        lines.append(f"    - {flow(expectation)}  {comment(why)}")

    required = draft.required
    for profile in draft.profiles:
        name = draft.clean_name(profile)
        if profile.raw in required:
            add({"expect": "ExpectColumnValuesToNotBeNull", "column": name}, "required: an empty value quarantines "
                "the row, so none reaches the clean data")
        elif profile.present and not profile.nulls:
            add({"expect": "ExpectColumnValuesToNotBeNull", "severity": "warning", "column": name},
                f"no empty value in {profile.rows:,} sampled rows")
        elif profile.present:
            share = profile.present / profile.rows
            mostly = math.floor((share - NOT_NULL_MARGIN) * 100) / 100
            if mostly >= 0.01:
                add({"expect": "ExpectColumnValuesToNotBeNull", "severity": "warning", "column": name,
                     "mostly": mostly}, f"{share:.1%} of sampled values are present")
        if profile.raw in draft.pseudonymised:
            add({"expect": "ExpectColumnValuesToMatchRegex", "severity": "warning", "column": name,
                 "regex": TOKEN_PATTERN}, "a pseudonym token")
            continue
        if len(draft.key.columns) == 1 and draft.key.columns == [profile.name]:
            add({"expect": "ExpectColumnValuesToBeUnique", "column": name}, "the key: duplicates are dropped by it")
        if profile.type == "category":
            values = sorted(set(_typing(profile, draft.role)["values"].values())) if isinstance(
                _typing(profile, draft.role)["values"], dict) else list(profile.values)
            add({"expect": "ExpectColumnValuesToBeInSet", "severity": "warning", "column": name, "value_set": values},
                "the sample's value set")
        if profile.type in ("int", "float") and profile.minimum is not None:
            add({"expect": "ExpectColumnValuesToBeBetween", "severity": "warning", "column": name,
                 "min_value": profile.minimum, "max_value": profile.maximum, "mostly": 0.99},
                f"the sample's range {flow(profile.minimum)} .. {flow(profile.maximum)}")
        if profile.shape:
            add({"expect": "ExpectColumnValuesToMatchRegex", "severity": "warning", "column": name,
                 "regex": profile.shape, "mostly": 0.99}, "every sampled value has this shape")
    return lines


def _role_lines(draft: Draft) -> list[str]:
    role = draft.role
    if role.name is None:
        return ["  " + comment(f"role: {role.evidence}")]
    lines = ["  role:", f"    name: {role.name}  {comment(role.evidence)}", "    fields:"]
    for role_field, guess in role.fields.items():
        columns = [draft.clean_name(c) for c in guess.columns] or [guess.derived]
        value = columns if role_field == "category_levels" else columns[0]
        lines.append(f"      {role_field}: {flow(value)}  {comment(guess.evidence)}")
    return lines


__all__ = ["Draft", "comment", "flow", "render", "shown"]
