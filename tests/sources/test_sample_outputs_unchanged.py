"""The sample sources keep their outputs byte for byte now that derived columns are evaluated by shopflow's own
expression language (not pandas `eval`) and `regex` rules are matched by RE2 (not Python's `re`).

Every generated search day and the Olist snapshot are landed from the real sample data and cleaned twice: with the
library as it is, and with the former evaluation put back (pandas `DataFrame.eval(..., engine="python")` for
expressions, `Series.str.fullmatch` for regex rules). Clean and quarantine frames, their Parquet bytes and the
ledgers must be identical. The shipped patterns are also compared value by value on real ids and their near misses.
"""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from sample_rows import data_path, ingest_like_pipeline, landing_folder, source_data
from shopflow.config.settings import Settings
from shopflow.landing import sample_data as landing
from shopflow.sources import declared, get_source, load_sources
from shopflow.sources.cleaning import clean_partition
from shopflow.sources.patterns import fully_matching


def _former_derived(column, typed, index, spec):
    """declared.derived as it was: pandas eval over the clean columns before the derived one."""
    frame = pd.DataFrame(typed, index=index)
    values = frame.eval(column.expression, engine="python") if len(frame) else pd.Series([], index=index)
    return pd.Series(values, index=index).astype(column.dtype)


def _former_rule_breaks(current):
    def rule_breaks(rule, typed, ds, spec):
        if rule.rule != "regex":
            return current(rule, typed, ds, spec)
        values = typed[rule.column]
        present = values.notna().to_numpy(bool)
        return present & ~values.astype("string").str.fullmatch(rule.pattern).fillna(False).to_numpy(bool)
    return rule_breaks


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    settings = Settings.from_env({"SHOPFLOW_HOME": str(home), "SHOPFLOW_SOURCE_DATA": str(source_data())})
    days = {"search": sorted(landing.land_search(settings, *landing.SEARCH_DAYS_DEFAULT)),
            "olist_catalog": sorted(landing.land_olist(settings))}
    return settings, days


@pytest.mark.parametrize("source", ["search", "olist_catalog"])
def test_every_sample_day_cleans_to_the_same_bytes_as_before(landed, source, monkeypatch):
    settings, days = landed
    spec = get_source(source)
    assert any(c.expression for c in spec.schema_) or any(r.rule == "regex" for r in spec.rules)
    derived_values = []
    for day in days[source]:
        raw = ingest_like_pipeline(source, landing_folder(settings.landing_dir, source, day))
        now = clean_partition(spec, raw.copy(), day)
        with monkeypatch.context() as former:
            former.setattr(declared, "derived", _former_derived)
            former.setattr(declared, "rule_breaks", _former_rule_breaks(declared.rule_breaks))
            before = clean_partition(spec, raw.copy(), day)
        for name in ("clean", "quarantine"):
            pd.testing.assert_frame_equal(getattr(now, name), getattr(before, name), check_exact=True)
            assert _parquet(getattr(now, name)) == _parquet(getattr(before, name)), f"{source} {day} {name}"
        assert now.ledger == before.ledger
        derived_values += [now.clean[c.name] for c in spec.schema_ if c.expression]
    assert len(days[source]) == (14 if source == "search" else 1)
    if source == "search":  # the derived column is exercised both ways on real rows
        has_click = pd.concat(derived_values)
        assert has_click.sum() > 100 and (~has_click).sum() > 100


def _near_misses(value: str) -> list[str]:
    return [value, value.upper(), value[:-1], value + "0", value + "\n", " " + value, value[:5] + "٣" + value[6:],
            value[:10] + "g" + value[11:], value.replace("a", "A", 1), ""]


def test_the_shipped_patterns_match_what_python_matched_on_real_ids_and_near_misses():
    import gzip

    with gzip.open(data_path(landing.OLIST_PRODUCTS), "rt", encoding="utf-8") as handle:
        product_ids = [line.split(",", 1)[0].strip('"') for line in handle.readlines()[1:2001]]
    values = sorted({near for value in product_ids for near in _near_misses(value)})
    patterns = {r.pattern for s in load_sources().values() for r in s.rules if r.rule == "regex"}
    patterns |= {e.kwargs["regex"] for s in load_sources().values() for e in s.expectations or [] if "regex" in e.kwargs}
    patterns |= {r"[A-Z]{2}", "x", r"^[A-Z]?\d{5,7}$"}  # the tests' and the orders expectation's
    assert {"[0-9a-f]{32}", "^[0-9a-f]{32}$", "^[0-9a-f]{24}$"} <= patterns
    for pattern in sorted(patterns):
        python = [v for v in values if re.fullmatch(pattern, v)]
        assert fully_matching(pattern, values) == python, pattern
