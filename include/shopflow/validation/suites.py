"""The expectation suite of a dataset: (severity, GX expectation class name, kwargs) per expectation.

A source declares its suite in the sources file (`expectations:`); one that declares none gets `derived_suite`.
Critical expectations guard what downstream tasks rely on (keys, types, the pseudonymisation contract, business
rules the cleaner enforces); warnings watch for quality drift that should be seen but must not stop the day.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CRITICAL = "critical"
WARNING = "warning"
TOKEN = r"^[0-9a-f]{24}$"


@dataclass(frozen=True)
class ExpectationSpec:
    severity: str
    expectation: str
    kwargs: dict = field(default_factory=dict)


def _c(expectation: str, **kwargs) -> ExpectationSpec:
    return ExpectationSpec(CRITICAL, expectation, kwargs)


def suite_for(dataset: str) -> list[ExpectationSpec]:
    """The suite of the configured sources file's entry `dataset` (see `suite_of`)."""
    from shopflow.sources import get_source

    return suite_of(get_source(dataset))


def suite_of(spec) -> list[ExpectationSpec]:
    """A source's suite: the `expectations` of its sources-file entry, else defaults derived from its declaration,
    so a new source is validated without code (see `derived_suite`)."""
    if spec.expectations is not None:
        return [ExpectationSpec(e.severity, e.expect, e.kwargs) for e in spec.expectations]
    return derived_suite(spec)


def expectation_specs(entries: list[dict]) -> list[ExpectationSpec]:
    """A suite written as expectation dicts, as in the sources file ({"expect": ..., "severity": ..., **kwargs};
    default critical): how a dataset the pipeline derives (no sources-file entry) states its own suite."""
    return [ExpectationSpec(entry.get("severity", CRITICAL), entry["expect"],
                            {k: v for k, v in entry.items() if k not in ("expect", "severity")}) for entry in entries]


def derived_suite(spec) -> list[ExpectationSpec]:
    """Critical expectations that restate what the declaration guarantees, so a broken cleaner or an edited lake file
    is caught: at least one row, the key and required columns never null, pseudonymised columns are tokens,
    category columns within their values, range and set rules hold."""
    schema = spec.clean_schema
    derived = [_c("ExpectTableRowCountToBeBetween", min_value=1)]
    not_null = list(dict.fromkeys([c for c in spec.dedup_key if c in schema]
                                  + [c.name for c in spec.schema_ or [] if c.required]))
    derived += [_c("ExpectColumnValuesToNotBeNull", column=column) for column in not_null]
    derived += [_c("ExpectColumnValuesToMatchRegex", column=token, regex=TOKEN)
                for token in spec.pseudonymise.values() if token in schema]
    for column in spec.schema_ or []:
        if column.type == "category":
            allowed = sorted(set(column.values.values() if isinstance(column.values, dict) else column.values))
            derived.append(_c("ExpectColumnValuesToBeInSet", column=column.name, value_set=allowed))
    for rule in spec.rules if spec.schema_ is not None else []:
        if rule.rule == "range":
            bounds = {k: v for k, v in (("min_value", rule.min), ("max_value", rule.max)) if v is not None}
            derived.append(_c("ExpectColumnValuesToBeBetween", column=rule.column, strict_min=rule.strict_min,
                              strict_max=rule.strict_max, **bounds))
        elif rule.rule == "set":
            derived.append(_c("ExpectColumnValuesToBeInSet", column=rule.column, value_set=list(rule.values)))
    return derived
